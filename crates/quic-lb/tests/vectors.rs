//! Every published QUIC-LB test vector (`tests/data/quic-lb-vectors.json`, a copy of the
//! project's spec file), with the errata of the spec summary's section 12 applied.

use quic_lb::{Config, ConfigId, ConnectionId, Decoder, Key, ServerId, Unroutable};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/quic-lb-vectors.json")).expect("valid JSON")
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name)
        .unwrap_or_else(|| panic!("vector lacks {name}: {v}"))
}

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    field(v, name)
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not a string: {v}"))
}

fn number(v: &Value, name: &str) -> usize {
    field(v, name)
        .as_u64()
        .unwrap_or_else(|| panic!("{name} is not a number: {v}")) as usize
}

/// The vector with this id among the main vectors.
fn vector(all: &Value, id: &str) -> Value {
    field(all, "vectors")
        .as_array()
        .expect("array")
        .iter()
        .find(|v| text(v, "id") == id)
        .unwrap_or_else(|| panic!("no vector {id}"))
        .clone()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn config_from(v: &Value, config_id: usize) -> Config {
    let key = field(v, "key")
        .as_str()
        .map(|k| k.parse::<Key>().expect("key"));
    let self_encoding = v
        .get("length_self_encoding")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Config::new(
        ConfigId::new(config_id as u8).expect("config id"),
        number(v, "server_id_len"),
        number(v, "nonce_len"),
        key,
    )
    .expect("valid config")
    .with_length_self_encoding(self_encoding)
}

/// Encodes and decodes one vector under `config_id`, expecting `expected_cid`.
fn check(v: &Value, config_id: usize, expected_cid: &str) {
    let id = text(v, "id");
    let config = config_from(v, config_id);
    let server_id: ServerId = text(v, "server_id").parse().expect("server id");
    let expected = unhex(expected_cid);
    // Without self-encoding the low five bits are the encoder's choice: take the vector's.
    let low_bits = expected[0] & 0x1f;
    let cid = config
        .encode(
            &server_id,
            &unhex(text(v, "nonce")),
            &unhex(text(v, "extra_bytes")),
            low_bits,
        )
        .expect("encodes");
    assert_eq!(cid.to_string(), expected_cid, "encode {id}");

    let mut decoder = Decoder::new();
    decoder.insert(config);
    let decoded = decoder.decode(&expected).expect("routable");
    assert_eq!(decoded.server_id, server_id, "decode {id}");
    assert_eq!(
        usize::from(decoded.config_id.get()),
        config_id,
        "decode {id}"
    );
}

#[test]
fn every_ok_vector_encodes_and_decodes_exactly() {
    let all = vectors();
    let mut checked = 0;
    for v in field(&all, "vectors").as_array().expect("array") {
        if text(v, "status") == "ok" {
            check(v, number(v, "config_id"), text(v, "expected_cid"));
            checked += 1;
        }
    }
    assert_eq!(checked, 11);
}

/// Erratum 2: B.2 row 3 is labelled config 3 but printed with first octet 0x12 (config 0).
/// Both corrections hold: the printed CID under config 0, and 0x72... under config 3.
#[test]
fn b2_row3_holds_under_both_corrections() {
    let all = vectors();
    let row = &vector(&all, "d21-B2-3");
    let variants = field(row, "corrected_variants").as_array().expect("array");
    assert_eq!(variants.len(), 2);
    for variant in variants {
        check(
            row,
            number(variant, "config_id"),
            text(variant, "expected_cid"),
        );
    }
}

/// Erratum 1: B.1 row 1 has a 9-digit nonce and cannot be a CID; it is not used as a vector,
/// and it is refused as input.
#[test]
fn b1_row1_is_refused_as_defective() {
    let all = vectors();
    let row = &vector(&all, "d21-B1-1");
    assert_eq!(text(row, "status"), "defective_in_source");
    assert!(hex::decode(text(row, "nonce")).is_err());
}

#[test]
fn decode_vectors_route_or_refuse_as_expected() {
    let all = vectors();
    for v in field(&all, "decode_vectors").as_array().expect("array") {
        let id = text(v, "id");
        let mut decoder = Decoder::new();
        let config = field(v, "config");
        if !config.is_null() {
            decoder.insert(config_from(config, number(config, "config_id")));
        }
        let result = decoder.decode(&unhex(text(v, "cid")));
        let expect = field(v, "expect");
        if field(expect, "routable").as_bool().expect("bool") {
            let sid = result.unwrap_or_else(|e| panic!("{id}: {e}")).server_id;
            assert_eq!(sid.to_string(), text(expect, "server_id"), "{id}");
        } else {
            assert!(result.is_err(), "{id}: {result:?}");
        }
    }
}

/// The reasons behind the negative decode vectors, one by one.
#[test]
fn unroutable_reasons_are_precise() {
    let mut decoder = Decoder::new();
    decoder.insert(Config::new(ConfigId::new(1).expect("id"), 3, 4, None).expect("valid"));
    assert_eq!(decoder.decode(&[]), Err(Unroutable::Empty));
    assert_eq!(decoder.decode(&[0xff]), Err(Unroutable::FailoverCodepoint));
    assert_eq!(
        decoder.decode(&unhex("e001020304050607")),
        Err(Unroutable::FailoverCodepoint)
    );
    assert_eq!(
        decoder.decode(&unhex("0001020304050607")),
        Err(Unroutable::UnknownConfig(0))
    );
    assert_eq!(
        decoder.decode(&unhex("20010203040506")),
        Err(Unroutable::TooShort { needed: 8, got: 7 })
    );
    // Erratum 10: QUICHE's 0b111 CID without self-encoded length is unroutable all the same.
    assert_eq!(
        decoder.decode(&unhex("e35d52de4de3e721")),
        Err(Unroutable::FailoverCodepoint)
    );
}

/// The draft -17 four-pass vectors used the old `expand()` layout and must *not* match;
/// its single-pass row is unchanged and must.
#[test]
fn draft17_vectors_match_only_where_the_algorithm_is_unchanged() {
    let all = vectors();
    let superseded = field(field(&all, "superseded_vectors_draft17"), "vectors")
        .as_array()
        .expect("array");
    for v in superseded {
        let config = config_from(v, number(v, "config_id"));
        let server_id: ServerId = text(v, "server_id").parse().expect("server id");
        let cid = config
            .encode(&server_id, &unhex(text(v, "nonce")), &[], 0)
            .expect("encodes");
        let matches = cid.to_string() == text(v, "expected_cid");
        let valid = field(v, "valid_for_draft_21").as_bool().expect("bool");
        assert_eq!(matches, valid, "{}", text(v, "id"));
    }
}

/// Erratum 7: with appended octets, the self-encoded length covers the whole CID.
#[test]
fn self_encoded_length_includes_appended_octets() {
    let config = Config::new(ConfigId::new(0).expect("id"), 3, 4, None).expect("valid");
    let sid: ServerId = "c4605e".parse().expect("sid");
    let cid: ConnectionId = config
        .encode(&sid, &unhex("4504cc4f"), &[0xaa, 0xbb], 0)
        .expect("encodes");
    assert_eq!(cid.to_string(), "09c4605e4504cc4faabb");
}
