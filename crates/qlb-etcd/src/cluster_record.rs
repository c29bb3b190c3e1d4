//! The cluster's shared configuration as etcd holds it (`fleet/cluster`): the QUIC-LB tables
//! the load balancers decode with, the codepoint the servers issue under, and the cluster
//! secret. Keys and the secret are secret material: the record's `Debug` hides them, and
//! nothing here logs.

use std::fmt;

use quic_lb::{Config, ConfigId, Key};
use serde::{Deserialize, Serialize};

/// The highest QUIC-LB codepoint a configuration may use (7 marks unroutable CIDs).
const MAX_CODEPOINT: u8 = 6;

/// The cluster's shared configuration on etcd.
///
/// ```
/// use qlb_etcd::{ClusterRecord, TableRecord};
///
/// let record = ClusterRecord {
///     quic_lb: vec![TableRecord::plaintext(0, 2, 6)],
///     issuing: 0,
///     cluster_secret: Some("00112233445566778899aabbccddeeff".into()),
/// };
/// assert_eq!(record.issuing_config()?.server_id_len(), 2);
/// assert_eq!(record.next_codepoint(), Some(1));
/// assert!(!format!("{record:?}").contains("0011"), "the secret stays hidden");
/// # Ok::<(), qlb_etcd::RecordError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The QUIC-LB tables in use, one per codepoint: the load balancers decode them all.
    pub quic_lb: Vec<TableRecord>,
    /// The codepoint the servers issue new connection IDs under.
    pub issuing: u8,
    /// The cluster secret, hex (stateless resets, tokens, session tickets, the fallback
    /// hash key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<String>,
}

/// One `[[quic_lb]]` table of a [`ClusterRecord`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    /// The codepoint (config rotation bits), 0 to 6.
    pub config_id: u8,
    /// Server ID octets.
    pub server_id_len: u8,
    /// Nonce octets.
    pub nonce_len: u8,
    /// The AES-128 key, 32 hex digits; none for plaintext CIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whether the first octet's low bits carry the CID length.
    #[serde(default = "yes")]
    pub length_self_encoding: bool,
}

fn yes() -> bool {
    true
}

/// Why a [`ClusterRecord`] cannot be used; names the field.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("the cluster record on etcd: {field}: {reason}")]
pub struct RecordError {
    /// The field, as `quic_lb[1].key`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RecordError {
    fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl TableRecord {
    /// A table without a key (plaintext CIDs).
    pub fn plaintext(config_id: u8, server_id_len: u8, nonce_len: u8) -> Self {
        Self {
            config_id,
            server_id_len,
            nonce_len,
            key: None,
            length_self_encoding: true,
        }
    }

    /// The record of `config`, key included.
    pub fn of(config: &Config) -> Self {
        Self {
            config_id: config.id().get(),
            // Lengths are at most 20: they fit.
            server_id_len: u8::try_from(config.server_id_len()).unwrap_or(u8::MAX),
            nonce_len: u8::try_from(config.nonce_len()).unwrap_or(u8::MAX),
            key: config.key().map(|key| hex::encode(key.as_bytes())),
            length_self_encoding: config.length_self_encoding(),
        }
    }

    /// The same layout at `config_id` with `key`: what a rotation publishes.
    pub fn successor(&self, config_id: u8, key: &Key) -> Self {
        Self {
            config_id,
            key: Some(hex::encode(key.as_bytes())),
            ..self.clone()
        }
    }

    /// The table as a QUIC-LB configuration; `field` names it in errors.
    fn config(&self, field: &str) -> Result<Config, RecordError> {
        let id = ConfigId::new(self.config_id)
            .map_err(|e| RecordError::new(format!("{field}.config_id"), e))?;
        let key = self
            .key
            .as_deref()
            .map(str::parse::<Key>)
            .transpose()
            .map_err(|e| RecordError::new(format!("{field}.key"), e))?;
        Config::new(
            id,
            usize::from(self.server_id_len),
            usize::from(self.nonce_len),
            key,
        )
        .map(|config| config.with_length_self_encoding(self.length_self_encoding))
        .map_err(|e| RecordError::new(field, e))
    }
}

impl ClusterRecord {
    /// The record of a cluster file's tables and secret, issuing under `issuing`.
    pub fn new(quic_lb: &[Config], issuing: u8, cluster_secret: Option<&[u8]>) -> Self {
        Self {
            quic_lb: quic_lb.iter().map(TableRecord::of).collect(),
            issuing,
            cluster_secret: cluster_secret.map(hex::encode),
        }
    }

    /// Every table as a QUIC-LB configuration, checked: valid tables, each codepoint once,
    /// one server ID length, and the issuing codepoint among them.
    pub fn configs(&self) -> Result<Vec<Config>, RecordError> {
        let mut configs: Vec<Config> = Vec::with_capacity(self.quic_lb.len());
        for (i, table) in self.quic_lb.iter().enumerate() {
            let field = format!("quic_lb[{i}]");
            let config = table.config(&field)?;
            if let Some(j) = configs.iter().position(|c| c.id() == config.id()) {
                return Err(RecordError::new(
                    format!("{field}.config_id"),
                    format!("{} is already used by quic_lb[{j}]", config.id()),
                ));
            }
            if let Some(first) = configs.first() {
                if first.server_id_len() != config.server_id_len() {
                    return Err(RecordError::new(
                        format!("{field}.server_id_len"),
                        format!(
                            "{}, but quic_lb[0] has {}",
                            config.server_id_len(),
                            first.server_id_len()
                        ),
                    ));
                }
            }
            configs.push(config);
        }
        if !self.quic_lb.iter().any(|t| t.config_id == self.issuing) {
            return Err(RecordError::new(
                "issuing",
                format!("codepoint {} has no quic_lb table", self.issuing),
            ));
        }
        Ok(configs)
    }

    /// The configuration servers issue under.
    pub fn issuing_config(&self) -> Result<Config, RecordError> {
        let configs = self.configs()?;
        configs
            .into_iter()
            .find(|c| c.id().get() == self.issuing)
            .ok_or_else(|| RecordError::new("issuing", "no table"))
    }

    /// The cluster secret's bytes.
    pub fn secret(&self) -> Result<Option<Vec<u8>>, RecordError> {
        self.cluster_secret
            .as_deref()
            .map(|text| {
                hex::decode(text).map_err(|_| RecordError::new("cluster_secret", "must be hex"))
            })
            .transpose()
    }

    /// The codepoints of its tables, in record order.
    pub fn codepoints(&self) -> Vec<u8> {
        self.quic_lb.iter().map(|t| t.config_id).collect()
    }

    /// The next codepoint after the issuing one (cyclically, 0 to 6) that no table uses.
    pub fn next_codepoint(&self) -> Option<u8> {
        (1..=MAX_CODEPOINT)
            .map(|step| {
                ((u16::from(self.issuing) + u16::from(step)) % u16::from(MAX_CODEPOINT + 1)) as u8
            })
            .find(|id| !self.codepoints().contains(id))
    }

    /// The record with `table` added (decoded by the load balancers; not issued under).
    pub fn with_table(&self, table: TableRecord) -> Self {
        let mut next = self.clone();
        next.quic_lb.retain(|t| t.config_id != table.config_id);
        next.quic_lb.push(table);
        next
    }

    /// The record with the servers issuing under `codepoint`.
    pub fn issuing_under(&self, codepoint: u8) -> Self {
        Self {
            issuing: codepoint,
            ..self.clone()
        }
    }

    /// The record without the table of `codepoint` (never the issuing one).
    pub fn without(&self, codepoint: u8) -> Self {
        let mut next = self.clone();
        if codepoint != self.issuing {
            next.quic_lb.retain(|t| t.config_id != codepoint);
        }
        next
    }

    /// The record as stored.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, numbers and booleans always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored record.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(|e| RecordError::new("(record)", json_problem(&e)))
    }
}

/// What is wrong with a record's JSON, without serde's message, which may quote a value
/// (a key, the secret).
pub(crate) fn json_problem(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a field is missing or of the wrong type",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

impl fmt::Debug for ClusterRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRecord")
            .field("quic_lb", &self.quic_lb)
            .field("issuing", &self.issuing)
            .field(
                "cluster_secret",
                &self.cluster_secret.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

impl fmt::Debug for TableRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableRecord")
            .field("config_id", &self.config_id)
            .field("server_id_len", &self.server_id_len)
            .field("nonce_len", &self.nonce_len)
            .field("key", &self.key.as_ref().map(|_| ".."))
            .field("length_self_encoding", &self.length_self_encoding)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f";

    fn keyed(id: u8) -> TableRecord {
        TableRecord {
            key: Some(KEY.into()),
            ..TableRecord::plaintext(id, 2, 6)
        }
    }

    #[test]
    fn a_record_round_trips_and_becomes_configs() -> Result<(), RecordError> {
        let record = ClusterRecord {
            quic_lb: vec![keyed(0), TableRecord::plaintext(3, 2, 4)],
            issuing: 3,
            cluster_secret: Some("0a0b".into()),
        };
        assert_eq!(ClusterRecord::from_json(&record.to_json())?, record);
        let configs = record.configs()?;
        assert_eq!(configs.len(), 2);
        assert!(configs[0].key().is_some());
        assert_eq!(record.issuing_config()?.id().get(), 3);
        assert_eq!(record.secret()?, Some(vec![0x0a, 0x0b]));
        let again = ClusterRecord::new(&configs, 3, Some(&[0x0a, 0x0b]));
        assert_eq!(again, record);
        Ok(())
    }

    #[test]
    fn bad_records_are_refused_naming_the_field() {
        let refused =
            |record: ClusterRecord| record.configs().map(|_| ()).expect_err("refused").field;
        let base = ClusterRecord {
            quic_lb: vec![keyed(0)],
            issuing: 0,
            cluster_secret: None,
        };
        let mut bad_key = base.clone();
        bad_key.quic_lb[0].key = Some("xyz".into());
        assert_eq!(refused(bad_key), "quic_lb[0].key");
        assert_eq!(
            refused(base.with_table(TableRecord::plaintext(7, 2, 6))),
            "quic_lb[1].config_id"
        );
        assert_eq!(
            refused(base.with_table(TableRecord::plaintext(1, 3, 6))),
            "quic_lb[1].server_id_len"
        );
        assert_eq!(refused(base.issuing_under(4)), "issuing");
        let bad_secret = ClusterRecord {
            cluster_secret: Some("not hex".into()),
            ..base
        };
        assert_eq!(
            bad_secret.secret().expect_err("refused").field,
            "cluster_secret"
        );
        assert!(ClusterRecord::from_json(b"{").is_err());
        // serde's message would quote the value: the error names the place only.
        let err = ClusterRecord::from_json(br#"{"quic_lb":[],"issuing":0,"cluster_secret":4242}"#)
            .expect_err("a number");
        assert!(!err.to_string().contains("4242"), "{err}");
        let odd = ClusterRecord {
            issuing: 255,
            ..ClusterRecord::from_json(br#"{"quic_lb":[],"issuing":0}"#).expect("parses")
        };
        assert_eq!(odd.next_codepoint(), Some(4), "(255 + 1) % 7, no overflow");
    }

    #[test]
    fn a_rotation_adds_a_table_then_issues_under_it_then_drops_the_old_one() {
        let start = ClusterRecord {
            quic_lb: vec![keyed(5), keyed(6)],
            issuing: 6,
            cluster_secret: None,
        };
        // After 6 comes 0 (7 marks unroutable CIDs).
        let next = start.next_codepoint();
        assert_eq!(next, Some(0));
        let new = start.quic_lb[1].successor(0, &Key::new([9; 16]));
        assert_eq!(new.key.as_deref(), Some("09090909090909090909090909090909"));
        let published = start.with_table(new);
        assert_eq!(published.codepoints(), [5, 6, 0]);
        assert_eq!(published.issuing, 6);
        let issuing = published.issuing_under(0);
        assert_eq!(issuing.without(0), issuing, "never the issuing table");
        let retired = issuing.without(6);
        assert_eq!(retired.codepoints(), [5, 0]);
        let full = ClusterRecord {
            quic_lb: (0..=6).map(keyed).collect(),
            issuing: 2,
            cluster_secret: None,
        };
        assert_eq!(full.next_codepoint(), None);
    }

    #[test]
    fn debug_output_hides_keys_and_the_secret() {
        let record = ClusterRecord {
            quic_lb: vec![keyed(0)],
            issuing: 0,
            cluster_secret: Some("5ec7e7".into()),
        };
        let shown = format!("{record:?}");
        assert!(!shown.contains(KEY) && !shown.contains("5ec7e7"), "{shown}");
    }
}
