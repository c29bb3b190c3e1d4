//! `qlb cid` as scripts use it: the real binary, every published vector through `--batch`,
//! and the single-shot forms with their exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn qlb(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qlb"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qlb runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("qlb exits")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// Runs `qlb cid COMMAND --batch` on `input` and parses its JSON lines.
fn batch(command: &str, input: &str) -> Vec<Value> {
    let output = qlb(&["cid", command, "--batch"], input);
    assert!(output.status.success());
    stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The `ok` vectors, plus erratum 2's config-3 variant of B.2 row 3.
fn ok_vectors() -> Vec<Value> {
    let all: Value = serde_json::from_str(include_str!(
        "../../quic-lb/tests/data/quic-lb-vectors.json"
    ))
    .expect("JSON");
    let mut vectors: Vec<Value> = all["vectors"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|v| v["status"] == "ok")
        .cloned()
        .collect();
    let mut row3 = all["vectors"]
        .as_array()
        .expect("array")
        .iter()
        .find(|v| v["id"] == "d21-B2-3")
        .expect("row 3")
        .clone();
    row3["config_id"] = json!(3);
    row3["expected_cid"] = json!("725779c9cc86beb3a3a4a3ca96fce4bfe0cdbc");
    vectors.push(row3);
    vectors
}

#[test]
fn batch_encode_and_decode_reproduce_every_vector_in_order() {
    // Appended octets are not part of `qlb cid encode`; the one such vector is decode-only.
    let vectors: Vec<Value> = ok_vectors()
        .into_iter()
        .filter(|v| v["extra_bytes"] == "")
        .collect();
    let encode_input: String = vectors
        .iter()
        .map(|v| {
            json!({
                "config_id": v["config_id"], "server_id": v["server_id"],
                "nonce": v["nonce"], "key": v["key"],
                "length_self_encoding": v["length_self_encoding"],
            })
            .to_string()
                + "\n"
        })
        .collect::<String>()
        + "{\"config_id\": 0}\n";
    let lines = batch("encode", &encode_input);
    assert_eq!(lines.len(), vectors.len() + 1);
    for (v, line) in vectors.iter().zip(&lines) {
        assert_eq!(line["cid"], v["expected_cid"], "{}", v["id"]);
    }
    let last = lines.last().expect("error line");
    assert!(
        last["error"].as_str().expect("error").contains("server_id"),
        "{last}"
    );

    let all = ok_vectors();
    let decode_input: String = all
        .iter()
        .map(|v| {
            json!({
                "server_id_len": v["server_id_len"], "nonce_len": v["nonce_len"],
                "key": v["key"], "cid": v["expected_cid"],
            })
            .to_string()
                + "\n"
        })
        .collect::<String>()
        + "{\"server_id_len\": 3, \"nonce_len\": 4, \"key\": null, \"cid\": \"ff\"}\n";
    let lines = batch("decode", &decode_input);
    assert_eq!(lines.len(), all.len() + 1);
    for (v, line) in all.iter().zip(&lines) {
        assert_eq!(line["server_id"], v["server_id"], "{}", v["id"]);
    }
    assert_eq!(
        lines.last().expect("line")["error"],
        "unroutable: config-failover codepoint 7"
    );
}

#[test]
fn single_shot_forms_print_hex_and_exit_nonzero_when_unroutable() {
    let key = "8f95f09245765f80256934e50c66207f";
    let out = qlb(
        &[
            "cid",
            "encode",
            "--config-id",
            "1",
            "--server-id",
            "ed793a51d49b8f5fab65",
            "--nonce",
            "ee080dbf48",
            "--key",
            key,
        ],
        "",
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out), "2fcc381bc74cb4fbad2823a3d1f8fed2\n");

    let out = qlb(
        &[
            "cid",
            "decode",
            "--server-id-len",
            "10",
            "--nonce-len",
            "5",
            "--key",
            key,
            "2fcc381bc74cb4fbad2823a3d1f8fed2",
        ],
        "",
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out), "ed793a51d49b8f5fab65\n");

    let out = qlb(
        &[
            "cid",
            "decode",
            "--server-id-len",
            "3",
            "--nonce-len",
            "4",
            "00010203040506",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("too short"), "{stderr}");

    let out = qlb(
        &[
            "cid",
            "encode",
            "--config-id",
            "0",
            "--server-id",
            "0102",
            "--nonce",
            "00000000",
            "--no-length-encoding",
        ],
        "",
    );
    assert_eq!(stdout(&out), "00010200000000\n");
}

#[test]
fn gen_config_output_round_trips_through_encode_and_decode() {
    let out = qlb(
        &[
            "cid",
            "gen-config",
            "--config-id",
            "4",
            "--server-id-len",
            "3",
        ],
        "",
    );
    assert!(out.status.success());
    let table = stdout(&out);
    let key = table
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .and_then(|k| k.strip_suffix('"'))
        .expect("key line");
    assert_eq!(key.len(), 32);
    let cid = qlb(
        &[
            "cid",
            "encode",
            "--config-id",
            "4",
            "--server-id",
            "abcdef",
            "--nonce",
            "010203040506",
            "--key",
            key,
        ],
        "",
    );
    let cid = stdout(&cid);
    let out = qlb(
        &[
            "cid",
            "decode",
            "--server-id-len",
            "3",
            "--nonce-len",
            "6",
            "--key",
            key,
            cid.trim(),
        ],
        "",
    );
    assert_eq!(stdout(&out), "abcdef\n");
}
