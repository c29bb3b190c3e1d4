//! etcd v3's JSON gateway, as much of it as qlb uses: the request and answer bodies of
//! `/v3/kv/*` and `/v3/lease/*`. Keys and values travel base64-encoded and 64-bit integers
//! as decimal strings (proto3's JSON mapping); absent fields are their zero values.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Octets as base64 text.
pub(crate) mod b64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(octets: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(octets))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A 64-bit integer as proto3 JSON writes it: a string (a number is accepted too).
pub(crate) mod int64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(i64),
        }
        match Either::deserialize(d)? {
            Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Either::Number(number) => Ok(number),
        }
    }
}

/// Every answer's header.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Header {
    #[serde(default, with = "int64")]
    pub(crate) revision: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LeaseGrant {
    #[serde(rename = "TTL", with = "int64")]
    pub(crate) ttl: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LeaseGranted {
    #[serde(rename = "ID", with = "int64")]
    pub(crate) id: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LeaseId {
    #[serde(rename = "ID", with = "int64")]
    pub(crate) id: i64,
}

/// `/v3/lease/keepalive` answers one message of its stream, wrapped.
#[derive(Debug, Deserialize)]
pub(crate) struct KeptAlive {
    pub(crate) result: KeptAliveResult,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KeptAliveResult {
    /// 0 (or absent) when the lease is gone.
    #[serde(rename = "TTL", default, with = "int64")]
    pub(crate) ttl: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Put {
    #[serde(with = "b64")]
    pub(crate) key: Vec<u8>,
    #[serde(with = "b64")]
    pub(crate) value: Vec<u8>,
    #[serde(with = "int64")]
    pub(crate) lease: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Range {
    #[serde(with = "b64")]
    pub(crate) key: Vec<u8>,
    #[serde(with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub(crate) range_end: Vec<u8>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ranged {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) kvs: Vec<KeyValue>,
}

/// A key and its value as etcd stores it. `Debug` shows the value's length only: the
/// cluster's record holds its keys and secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The value (empty when absent).
    #[serde(default, with = "b64")]
    pub value: Vec<u8>,
    /// The lease the key lives under (0: none).
    #[serde(default, with = "int64")]
    pub lease: i64,
    /// The revision that last changed it.
    #[serde(default, with = "int64")]
    pub mod_revision: i64,
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value", &format_args!("{} octets", self.value.len()))
            .field("lease", &self.lease)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct DeleteRange {
    #[serde(with = "b64")]
    pub(crate) key: Vec<u8>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Compaction {
    #[serde(with = "int64")]
    pub(crate) revision: i64,
}

/// An answer's header alone: the store revision it was made at.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Headed {
    #[serde(default)]
    pub(crate) header: Header,
}

/// `/v3/auth/authenticate`'s request: a user's name and password.
#[derive(Serialize)]
pub(crate) struct Authenticate<'a> {
    pub(crate) name: &'a str,
    pub(crate) password: &'a str,
}

/// `/v3/auth/authenticate`'s answer: the token later requests carry.
#[derive(Deserialize)]
pub(crate) struct Authenticated {
    #[serde(default)]
    pub(crate) token: String,
}

/// A transaction that puts `put` only if its key's last change is the one expected.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Txn {
    pub(crate) compare: Vec<Compare>,
    pub(crate) success: Vec<RequestOp>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Compare {
    #[serde(with = "b64")]
    pub(crate) key: Vec<u8>,
    pub(crate) target: &'static str,
    pub(crate) result: &'static str,
    #[serde(with = "int64")]
    pub(crate) mod_revision: i64,
}

/// One operation of a transaction: a put or a delete.
#[derive(Debug, Serialize)]
pub(crate) enum RequestOp {
    #[serde(rename = "requestPut")]
    Put(Put),
    #[serde(rename = "requestDeleteRange")]
    Delete(DeleteRange),
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TxnDone {
    #[serde(default)]
    pub(crate) header: Header,
    /// Absent (false) when the comparison failed.
    #[serde(default)]
    pub(crate) succeeded: bool,
}

/// `/v3/watch`'s request: a watch of one range from a revision.
#[derive(Debug, Serialize)]
pub(crate) struct WatchRequest {
    pub(crate) create_request: WatchCreate,
}

#[derive(Debug, Serialize)]
pub(crate) struct WatchCreate {
    #[serde(with = "b64")]
    pub(crate) key: Vec<u8>,
    #[serde(with = "b64")]
    pub(crate) range_end: Vec<u8>,
    #[serde(with = "int64")]
    pub(crate) start_revision: i64,
}

/// One message of `/v3/watch`'s answer, which streams them for as long as the watch lives:
/// its `result`, or the gateway's `error`.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchMessage {
    #[serde(default)]
    pub(crate) result: Option<WatchResult>,
    #[serde(default)]
    pub(crate) error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WatchResult {
    #[serde(default)]
    pub(crate) header: Header,
    /// The watch's first message.
    #[serde(default)]
    pub(crate) created: bool,
    /// The watch ended; with `compact_revision` set, its start revision was compacted.
    #[serde(default)]
    pub(crate) canceled: bool,
    #[serde(default, with = "int64")]
    pub(crate) compact_revision: i64,
    #[serde(default)]
    pub(crate) cancel_reason: String,
    #[serde(default)]
    pub(crate) events: Vec<WatchEvent>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WatchEvent {
    /// `DELETE`, or absent for a put (proto3 leaves out the zero value).
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    pub(crate) kv: KeyValue,
}

/// The first key after every key that starts with `prefix`: a range's end for a prefix.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every octet was 0xff: to the end of the keyspace.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_proto3_json() {
        let put = Put {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            lease: 7587899299239988229,
        };
        assert_eq!(
            serde_json::to_string(&put).expect("json"),
            r#"{"key":"Zm9v","value":"YmFy","lease":"7587899299239988229"}"#
        );
        let txn = Txn {
            compare: vec![Compare {
                key: b"foo".to_vec(),
                target: "MOD",
                result: "EQUAL",
                mod_revision: 0,
            }],
            success: vec![
                RequestOp::Put(put),
                RequestOp::Delete(DeleteRange {
                    key: b"old".to_vec(),
                }),
            ],
        };
        let text = serde_json::to_string(&txn).expect("json");
        assert!(text.contains(r#""target":"MOD""#) && text.contains(r#""requestPut":{"key""#));
        assert!(
            text.contains(r#"{"requestDeleteRange":{"key":"b2xk"}}"#),
            "{text}"
        );
    }

    #[test]
    fn answers_parse_with_their_zero_values_left_out() {
        let granted: LeaseGranted = serde_json::from_str(
            r#"{"header":{"revision":"1"},"ID":"7587899299239988229","TTL":"10"}"#,
        )
        .expect("parses");
        assert_eq!(granted.id, 7587899299239988229);
        let failed: TxnDone =
            serde_json::from_str(r#"{"header":{"revision":"2"}}"#).expect("parses");
        assert!(!failed.succeeded);
        let empty: Ranged = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).expect("parses");
        assert!(empty.kvs.is_empty());
        assert_eq!(empty.header.revision, 3);
        let ranged: Ranged = serde_json::from_str(
            r#"{"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#,
        )
        .expect("parses");
        assert_eq!(ranged.kvs[0].key, b"foo");
        assert_eq!(ranged.kvs[0].value, b"bar");
        assert_eq!(ranged.kvs[0].mod_revision, 2);
        let gone: KeptAlive = serde_json::from_str(r#"{"result":{"ID":"5"}}"#).expect("parses");
        assert_eq!(gone.result.ttl, 0);
    }

    #[test]
    fn watch_messages_parse_as_etcd_3_4_streams_them() {
        let created: WatchMessage = serde_json::from_str(
            r#"{"result":{"header":{"cluster_id":"3","revision":"2","raft_term":"2"},"created":true}}"#,
        )
        .expect("parses");
        let created = created.result.expect("a result");
        assert!(created.created && created.events.is_empty());
        let events: WatchMessage = serde_json::from_str(
            r#"{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"L2EvMQ==","mod_revision":"2","value":"eA=="}},{"type":"DELETE","kv":{"key":"L2EvMQ==","mod_revision":"3"}}]}}"#,
        )
        .expect("parses");
        let events = events.result.expect("a result").events;
        assert_eq!(
            (events[0].kind.as_str(), events[1].kind.as_str()),
            ("", "DELETE")
        );
        assert_eq!(events[1].kv.key, b"/a/1");
        let compacted: WatchMessage = serde_json::from_str(
            r#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"3"}}"#,
        )
        .expect("parses");
        assert_eq!(compacted.result.expect("a result").compact_revision, 3);
        let request = WatchRequest {
            create_request: WatchCreate {
                key: b"/a/".to_vec(),
                range_end: prefix_end(b"/a/"),
                start_revision: 7,
            },
        };
        assert_eq!(
            serde_json::to_string(&request).expect("json"),
            r#"{"create_request":{"key":"L2Ev","range_end":"L2Ew","start_revision":"7"}}"#
        );
    }

    #[test]
    fn bad_answers_are_refused() {
        assert!(serde_json::from_str::<Ranged>(r#"{"kvs":[{"key":"%%%"}]}"#).is_err());
        assert!(serde_json::from_str::<LeaseGranted>(r#"{"ID":"x"}"#).is_err());
    }

    #[test]
    fn a_prefix_ends_at_its_successor() {
        assert_eq!(prefix_end(b"/qlb/a/"), b"/qlb/a0");
        assert_eq!(prefix_end(&[0x61, 0xff]), vec![0x62]);
        assert_eq!(prefix_end(&[0xff, 0xff]), vec![0]);
    }
}
