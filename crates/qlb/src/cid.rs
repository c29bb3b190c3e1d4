//! `qlb cid`: encode and decode QUIC-LB connection IDs, one at a time or as JSON lines, and
//! generate fresh configurations. Scripts rely on this interface; keep it stable.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use quic_lb::{Config, ConfigId, ConnectionId, Decoder, Key, ServerId};
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub(crate) enum CidCommand {
    /// Print the CID for a server ID and nonce, as lower-case hex.
    Encode(EncodeArgs),
    /// Print the server ID a CID carries, as lower-case hex; exit 1 if it is unroutable.
    Decode(DecodeArgs),
    /// Print a fresh random keyed configuration as a `[[quic_lb]]` TOML table.
    GenConfig(GenConfigArgs),
}

#[derive(Args)]
pub(crate) struct EncodeArgs {
    /// Config rotation codepoint, 0..=6.
    #[arg(long, required_unless_present = "batch")]
    config_id: Option<u8>,
    /// Server ID, hex.
    #[arg(long, required_unless_present = "batch")]
    server_id: Option<String>,
    /// Nonce, hex (its length sets nonce_len).
    #[arg(long, required_unless_present = "batch")]
    nonce: Option<String>,
    /// 16-octet AES key, hex; without it the CID is plaintext.
    #[arg(long)]
    key: Option<String>,
    /// Leave the five low bits of the first octet zero instead of `len(CID) - 1`.
    #[arg(long)]
    no_length_encoding: bool,
    /// Read JSON lines on stdin: {"config_id", "server_id", "nonce", "key": hex|null,
    /// "length_self_encoding"?}; write {"cid"} or {"error"} per line.
    #[arg(long, conflicts_with_all = ["config_id", "server_id", "nonce", "key", "no_length_encoding"])]
    batch: bool,
}

#[derive(Args)]
pub(crate) struct DecodeArgs {
    /// Server ID length in octets.
    #[arg(long, required_unless_present = "batch")]
    server_id_len: Option<usize>,
    /// Nonce length in octets.
    #[arg(long, required_unless_present = "batch")]
    nonce_len: Option<usize>,
    /// 16-octet AES key, hex; without it the CID is read as plaintext.
    #[arg(long)]
    key: Option<String>,
    /// The connection ID, hex. Its first octet selects the config rotation codepoint.
    #[arg(required_unless_present = "batch")]
    cid: Option<String>,
    /// Read JSON lines on stdin: {"server_id_len", "nonce_len", "key": hex|null, "cid"};
    /// write {"server_id"} or {"error"} per line.
    #[arg(long, conflicts_with_all = ["server_id_len", "nonce_len", "key", "cid"])]
    batch: bool,
}

#[derive(Args)]
pub(crate) struct GenConfigArgs {
    /// Config rotation codepoint, 0..=6.
    #[arg(long, default_value_t = 0)]
    config_id: u8,
    /// Server ID length in octets.
    #[arg(long, default_value_t = 2)]
    server_id_len: usize,
    /// Nonce length in octets.
    #[arg(long, default_value_t = 6)]
    nonce_len: usize,
}

/// One `encode --batch` input line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncodeRequest {
    config_id: u8,
    server_id: String,
    nonce: String,
    key: Option<String>,
    #[serde(default = "yes")]
    length_self_encoding: bool,
}

fn yes() -> bool {
    true
}

/// One `decode --batch` input line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeRequest {
    server_id_len: usize,
    nonce_len: usize,
    key: Option<String>,
    cid: String,
}

/// One `--batch` output line.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Cid(String),
    ServerId(String),
    Error(String),
}

impl CidCommand {
    pub(crate) fn run(self) -> Result<ExitCode> {
        match self {
            Self::Encode(args) if args.batch => batch(encode_line),
            Self::Encode(args) => {
                let cid = encode(&EncodeRequest {
                    config_id: args.config_id.context("--config-id is required")?,
                    server_id: args.server_id.context("--server-id is required")?,
                    nonce: args.nonce.context("--nonce is required")?,
                    key: args.key,
                    length_self_encoding: !args.no_length_encoding,
                })?;
                println!("{cid}");
                Ok(ExitCode::SUCCESS)
            }
            Self::Decode(args) if args.batch => batch(decode_line),
            Self::Decode(args) => {
                let request = DecodeRequest {
                    server_id_len: args.server_id_len.context("--server-id-len is required")?,
                    nonce_len: args.nonce_len.context("--nonce-len is required")?,
                    key: args.key,
                    cid: args.cid.context("CID_HEX is required")?,
                };
                match decode(&request)? {
                    Ok(server_id) => {
                        println!("{server_id}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(reason) => {
                        eprintln!("unroutable: {reason}");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
            Self::GenConfig(args) => {
                print!("{}", gen_config(&args)?);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn parse_key(key: Option<&str>) -> Result<Option<Key>> {
    key.map(str::parse).transpose().map_err(Into::into)
}

fn encode(request: &EncodeRequest) -> Result<ConnectionId> {
    let server_id: ServerId = request.server_id.parse()?;
    let nonce = hex::decode(&request.nonce).context("nonce: must be hex")?;
    let config = Config::new(
        ConfigId::new(request.config_id)?,
        server_id.len(),
        nonce.len(),
        parse_key(request.key.as_deref())?,
    )?
    .with_length_self_encoding(request.length_self_encoding);
    Ok(config.encode(&server_id, &nonce, &[], 0)?)
}

/// The outer `Result` is a bad request; the inner one is the decoder's answer.
fn decode(request: &DecodeRequest) -> Result<Result<ServerId, String>> {
    let cid: ConnectionId = request.cid.parse()?;
    let key = parse_key(request.key.as_deref())?;
    let Some(codepoint) = cid.codepoint() else {
        return Ok(Err(quic_lb::Unroutable::Empty.to_string()));
    };
    let mut decoder = Decoder::new();
    // The CID's own codepoint picks the config slot; 7 has none and stays unroutable.
    if let Ok(id) = ConfigId::new(codepoint) {
        decoder.insert(Config::new(
            id,
            request.server_id_len,
            request.nonce_len,
            key,
        )?);
    } else {
        // Still validate the parameters, so a bad request is reported as such.
        Config::new(
            ConfigId::new(0)?,
            request.server_id_len,
            request.nonce_len,
            key,
        )?;
    }
    Ok(decoder
        .decode(&cid)
        .map(|decoded| decoded.server_id)
        .map_err(|reason| reason.to_string()))
}

fn encode_line(line: &str) -> Reply {
    match serde_json::from_str(line)
        .map_err(Into::into)
        .and_then(|r| encode(&r))
    {
        Ok(cid) => Reply::Cid(cid.to_string()),
        Err(err) => Reply::Error(format!("{err:#}")),
    }
}

fn decode_line(line: &str) -> Reply {
    match serde_json::from_str(line)
        .map_err(Into::into)
        .and_then(|r| decode(&r))
    {
        Ok(Ok(server_id)) => Reply::ServerId(server_id.to_string()),
        Ok(Err(reason)) => Reply::Error(format!("unroutable: {reason}")),
        Err(err) => Reply::Error(format!("{err:#}")),
    }
}

/// One reply line per input line, in order, each flushed at once so that a script can also
/// drive it one request at a time.
fn batch(handle: fn(&str) -> Reply) -> Result<ExitCode> {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).context("reading stdin")? == 0 {
            break;
        }
        let reply = handle(line.trim_end_matches(['\r', '\n']));
        serde_json::to_writer(&mut output, &reply)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn gen_config(args: &GenConfigArgs) -> Result<String> {
    let key = Key::random();
    // Validate through the codec, so the table is always loadable.
    let config = Config::new(
        ConfigId::new(args.config_id)?,
        args.server_id_len,
        args.nonce_len,
        Some(key.clone()),
    )?;
    Ok(format!(
        "[[quic_lb]]\nconfig_id = {}\nserver_id_len = {}\nnonce_len = {}\nkey = \"{}\"\nlength_self_encoding = true\n",
        config.id(),
        config.server_id_len(),
        config.nonce_len(),
        hex::encode(key.as_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(reply: &Reply) -> String {
        serde_json::to_string(reply).expect("serializable")
    }

    #[test]
    fn encode_line_matches_the_draft_and_reports_errors() {
        assert_eq!(
            json(&encode_line(
                r#"{"config_id":0,"server_id":"ed793a","nonce":"ee080dbf","key":"8f95f09245765f80256934e50c66207f"}"#
            )),
            r#"{"cid":"0720b1d07b359d3c"}"#
        );
        let err = json(&encode_line(
            r#"{"config_id":7,"server_id":"01","nonce":"00000000","key":null}"#,
        ));
        assert!(err.contains(r#""error":"config_id:"#), "{err}");
        assert!(json(&encode_line("not json")).starts_with(r#"{"error":"#));
    }

    #[test]
    fn decode_line_reads_the_codepoint_from_the_cid() {
        assert_eq!(
            json(&decode_line(
                r#"{"server_id_len":8,"nonce_len":8,"key":"8f95f09245765f80256934e50c66207f","cid":"504dd2d05a7b0de9b2b9907afb5ecf8cc3"}"#
            )),
            r#"{"server_id":"ed793a51d49b8f5f"}"#
        );
        let err = json(&decode_line(
            r#"{"server_id_len":3,"nonce_len":4,"key":null,"cid":"e001020304050607"}"#,
        ));
        assert_eq!(
            err,
            r#"{"error":"unroutable: config-failover codepoint 7"}"#
        );
        let err = json(&decode_line(
            r#"{"server_id_len":0,"nonce_len":4,"key":null,"cid":"e001020304050607"}"#,
        ));
        assert!(err.contains("server_id_len:"), "{err}");
    }

    #[test]
    fn gen_config_is_a_valid_keyed_table() {
        let args = GenConfigArgs {
            config_id: 3,
            server_id_len: 2,
            nonce_len: 14,
        };
        let table = gen_config(&args).expect("valid");
        assert!(table.starts_with("[[quic_lb]]\nconfig_id = 3\n"), "{table}");
        assert_ne!(table, gen_config(&args).expect("valid"));
        let bad = GenConfigArgs {
            config_id: 7,
            ..args
        };
        assert!(gen_config(&bad).is_err());
    }
}
