//! Everything etcd holds of a cluster, read at one revision: what `qlb cluster status`
//! shows and what `qlb cluster rotate` decides by.

use crate::client::EtcdClient;
use crate::cluster_record::{ClusterRecord, RecordError, json_problem};
use crate::error::EtcdError;
use crate::keys::ClusterKeys;
use crate::lb_record::LbRecord;
use crate::membership::Member;
use crate::rotation::RotationRecord;
use crate::wire::KeyValue;

/// A record and the revision of its last change (to write it back only if unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The record.
    pub record: T,
    /// The store revision of its last change.
    pub mod_revision: i64,
}

/// A cluster on etcd at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store revision it was read at.
    pub revision: i64,
    /// The cluster's record, if `qlb cluster init` wrote one (or why it does not parse).
    pub cluster: Option<Versioned<Result<ClusterRecord, RecordError>>>,
    /// The rotation in progress, if any (or why its record does not parse).
    pub rotation: Option<Versioned<Result<RotationRecord, String>>>,
    /// The live members, by name.
    pub members: Vec<Member>,
    /// Member records that do not parse: the key's name and why.
    pub unreadable: Vec<(String, String)>,
    /// The live load balancers' records, by name.
    pub lbs: Vec<LbRecord>,
    /// The server IDs taken (live or quarantined) and who took them.
    pub server_ids: Vec<(String, String)>,
}

impl Snapshot {
    /// Reads cluster `keys` from `etcd`, in one request.
    pub async fn read(etcd: &EtcdClient, keys: &ClusterKeys) -> Result<Self, EtcdError> {
        let (listing, revision) = etcd.get_prefix(keys.root().as_bytes()).await?;
        Ok(Self::of(keys, listing, revision))
    }

    /// The snapshot of `listing`, read at `revision`.
    pub fn of(keys: &ClusterKeys, listing: Vec<KeyValue>, revision: i64) -> Self {
        let mut snapshot = Self {
            revision,
            ..Self::default()
        };
        let (cluster, rotation) = (keys.cluster(), keys.rotation());
        let (members, lbs, ids) = (keys.members(), keys.load_balancers(), keys.server_ids());
        for kv in listing {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let mod_revision = kv.mod_revision;
            if key == cluster {
                let record = ClusterRecord::from_json(&kv.value);
                snapshot.cluster = Some(Versioned {
                    record,
                    mod_revision,
                });
            } else if key == rotation {
                let record = serde_json::from_slice(&kv.value).map_err(|e| json_problem(&e));
                snapshot.rotation = Some(Versioned {
                    record,
                    mod_revision,
                });
            } else if let Some(name) = key.strip_prefix(&members) {
                match serde_json::from_slice::<Member>(&kv.value) {
                    Ok(member) => snapshot.members.push(member),
                    Err(e) => snapshot
                        .unreadable
                        .push((name.to_owned(), json_problem(&e))),
                }
            } else if key.starts_with(&lbs) {
                // A record that does not parse is not a live load balancer's.
                if let Ok(lb) = serde_json::from_slice::<LbRecord>(&kv.value) {
                    snapshot.lbs.push(lb);
                }
            } else if let Some(id) = key.strip_prefix(&ids) {
                let holder = String::from_utf8_lossy(&kv.value).into_owned();
                snapshot.server_ids.push((id.to_owned(), holder));
            }
        }
        snapshot.members.sort_by(|a, b| a.name.cmp(&b.name));
        snapshot.lbs.sort_by(|a, b| a.name.cmp(&b.name));
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_record::TableRecord;
    use crate::rotation::Phase;

    fn kv(key: String, value: &[u8], mod_revision: i64) -> KeyValue {
        KeyValue {
            key: key.into_bytes(),
            value: value.to_vec(),
            lease: 0,
            mod_revision,
        }
    }

    #[test]
    fn a_listing_sorts_into_the_cluster_s_records() {
        let keys = ClusterKeys::new("edge");
        let record = ClusterRecord {
            quic_lb: vec![TableRecord::plaintext(0, 2, 6)],
            issuing: 0,
            cluster_secret: None,
        };
        let lb = LbRecord {
            name: "lb1".into(),
            revision: 9,
            members: 1,
            codepoints: vec![0],
        };
        let listing =
            vec![
            kv(keys.cluster(), &record.to_json(), 4),
            kv(keys.rotation(), &RotationRecord::published(0, 1, 10, Vec::new()).to_json(), 8),
            kv(
                keys.member("b2"),
                br#"{"name":"b2","addr":"127.0.0.1:5002","server_id":"0002","state":"serving"}"#,
                6,
            ),
            kv(keys.member("b1"), b"not json", 5),
            kv(keys.load_balancer("lb1"), &serde_json::to_vec(&lb).unwrap_or_default(), 9),
            kv(keys.load_balancer("lb2"), b"{}", 9),
            kv(keys.server_id("0002"), b"b2", 3),
        ];
        let snapshot = Snapshot::of(&keys, listing, 12);
        assert_eq!(snapshot.revision, 12);
        let cluster = snapshot.cluster.as_ref().expect("the cluster's record");
        assert_eq!(cluster.mod_revision, 4);
        assert_eq!(cluster.record.as_ref().ok(), Some(&record));
        let rotation = snapshot.rotation.as_ref().expect("the rotation");
        assert_eq!(
            rotation.record.as_ref().map(|r| r.phase),
            Ok(Phase::Published)
        );
        assert_eq!(snapshot.members.len(), 1);
        assert_eq!(snapshot.members[0].codepoint, None);
        assert_eq!(snapshot.unreadable[0].0, "b1");
        assert_eq!(snapshot.lbs, [lb]);
        assert_eq!(snapshot.server_ids, [("0002".to_owned(), "b2".to_owned())]);
    }
}
