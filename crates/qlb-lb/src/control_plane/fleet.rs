//! The fleet on etcd as this load balancer knows it: the members listed at a revision, kept
//! current by the watch's changes, and what the link to etcd is doing. Pure: the follower
//! task reads etcd and hands the results here.

use std::collections::BTreeMap;

use qlb_etcd::{Change, Changes, ClusterKeys, ClusterRecord, KeyValue, Member, MemberState};
use qlb_router::BackendState;
use serde::Serialize;

use crate::config::{BackendConfig, ClusterConfig, ConfigError, EtcdConfig, LeftOut};

/// The members of a fleet, and the cluster's shared configuration, at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fleet {
    /// The key every member's record starts with.
    prefix: Vec<u8>,
    /// The key of the cluster's record.
    cluster_key: Vec<u8>,
    /// The store revision of the last change applied: every change up to it is in.
    revision: i64,
    /// Each record by the name in its key: the member, or why its record does not parse.
    members: BTreeMap<String, Result<Member, String>>,
    /// The cluster's shared configuration (QUIC-LB tables and secret) from the last usable
    /// version of its record, if `qlb cluster init` wrote one. Kept when a later version
    /// cannot be used or the record is deleted: the servers still issue under its tables,
    /// and falling back to the file's could misroute their connections.
    cluster: Option<ClusterConfig>,
    /// Why the record's newest version is not the one in use, if it is not.
    cluster_problem: Option<Unusable>,
}

/// Why the cluster's record cannot be used: the record's field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unusable {
    field: String,
    problem: String,
}

impl Fleet {
    /// The fleet of cluster `keys` from a listing of its `fleet/` prefix. Its revision is
    /// the newest record's: a watch from the next one replays the deletions since, so that
    /// every load balancer ends at the revision of the fleet's last change, however late it
    /// listed.
    pub(crate) fn listed(keys: &ClusterKeys, listing: Vec<KeyValue>) -> Self {
        let mut fleet = Self {
            prefix: keys.members().into_bytes(),
            cluster_key: keys.cluster().into_bytes(),
            revision: 0,
            members: BTreeMap::new(),
            cluster: None,
            cluster_problem: None,
        };
        for kv in listing {
            fleet.revision = fleet.revision.max(kv.mod_revision);
            fleet.put(&kv);
        }
        fleet
    }

    /// The store revision of the last change applied.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// Raises the revision to `revision`, when a watch cannot replay what came between.
    pub(crate) fn caught_up_to(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// Applies a watch's batch; whether the fleet changed (a batch of changes elsewhere,
    /// or of deletions already applied, changes nothing).
    pub(crate) fn apply(&mut self, changes: &Changes) -> bool {
        let before = (
            self.members.clone(),
            self.cluster.clone(),
            self.cluster_problem.clone(),
        );
        for change in &changes.changes {
            match change {
                Change::Put(kv) => self.put(kv),
                Change::Delete { key } if *key == self.cluster_key => {
                    self.cluster_problem = Some(Unusable {
                        field: "(record)".into(),
                        problem: "deleted: the last tables stay in use".into(),
                    });
                }
                Change::Delete { key } => {
                    if let Some(name) = self.name(key) {
                        self.members.remove(&name);
                    }
                }
            }
        }
        self.revision = self.revision.max(changes.revision);
        (&self.members, &self.cluster, &self.cluster_problem) != (&before.0, &before.1, &before.2)
    }

    /// The cluster's shared configuration from etcd: its record's last usable version.
    pub(crate) fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref()
    }

    /// Why the record's newest version is not in use (it cannot be, or it was deleted).
    pub(crate) fn cluster_problem(&self) -> Option<String> {
        self.cluster_problem
            .as_ref()
            .map(|u| ConfigError::etcd_record(&u.field, u.problem.clone()).to_string())
    }

    /// How many records the fleet holds, readable or not.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// The members as backends, by name, and the records that cannot be one.
    pub(crate) fn backends(&self) -> (Vec<BackendConfig>, Vec<LeftOut>) {
        let mut backends = Vec::new();
        let mut left_out = Vec::new();
        for (name, record) in &self.members {
            match record.as_ref().map_err(Clone::clone).and_then(backend) {
                Ok(backend) => backends.push(backend),
                Err(why) => left_out.push(LeftOut {
                    name: name.clone(),
                    why,
                }),
            }
        }
        (backends, left_out)
    }

    fn put(&mut self, kv: &KeyValue) {
        if kv.key == self.cluster_key {
            match cluster_config(&kv.value) {
                Ok(cluster) => {
                    self.cluster = Some(cluster);
                    self.cluster_problem = None;
                }
                Err(problem) => self.cluster_problem = Some(problem),
            }
            return;
        }
        let Some(name) = self.name(&kv.key) else {
            return;
        };
        let record = serde_json::from_slice::<Member>(&kv.value)
            .map_err(|e| format!("its record does not parse: {e}"))
            .and_then(|member| match member.name == name {
                true => Ok(member),
                false => Err(format!("its record names {:?}", member.name)),
            });
        self.members.insert(name, record);
    }

    /// The member name a key of the prefix ends with.
    fn name(&self, key: &[u8]) -> Option<String> {
        let name = key.strip_prefix(self.prefix.as_slice())?;
        Some(String::from_utf8_lossy(name).into_owned())
    }
}

/// The cluster's record as a configuration.
fn cluster_config(value: &[u8]) -> Result<ClusterConfig, Unusable> {
    ClusterRecord::from_json(value)
        .and_then(|record| ClusterConfig::from_record(&record))
        .map_err(|e| Unusable {
            field: e.field,
            problem: e.reason,
        })
}

/// A member's record as a backend: weight 1, draining when it says so.
fn backend(member: &Member) -> Result<BackendConfig, String> {
    Ok(BackendConfig {
        name: member.name.clone(),
        addr: member.addr,
        health_addr: member.health_addr,
        server_id: member
            .server_id
            .parse()
            .map_err(|e| format!("server ID {:?}: {e}", member.server_id))?,
        weight: 1,
        state: match member.state {
            MemberState::Serving => BackendState::Active,
            MemberState::Draining => BackendState::Draining,
        },
    })
}

/// How this load balancer follows its fleet on etcd, as `/status` shows it.
///
/// ```
/// let status: qlb_lb::daemon::FleetStatus = Default::default();
/// assert!(!status.connected && status.revision == 0);
/// ```
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct FleetStatus {
    /// The cluster followed.
    pub cluster: String,
    /// This load balancer's name in the cluster's records.
    pub name: String,
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// Whether the last exchange with etcd succeeded: when not, forwarding goes on with
    /// the last fleet known.
    pub connected: bool,
    /// Why etcd could not be reached or read, last time it could not.
    pub last_error: Option<String>,
    /// The store revision of the last fleet change applied (0 before the first listing).
    pub revision: i64,
    /// Members routed to.
    pub members: usize,
    /// Members left out, and why (a server ID already held, a record that does not parse).
    pub left_out: BTreeMap<String, String>,
    /// Why the cluster's record on etcd is not the one in use, if it is not (it cannot be
    /// used, or it was deleted): its last usable version stays.
    pub cluster_problem: Option<String>,
    /// Fleet changes applied since start.
    pub updates: u64,
    /// Times the link to etcd was lost since start.
    pub disconnects: u64,
}

impl FleetStatus {
    /// The status of a load balancer that has not reached etcd yet.
    pub(crate) fn new(config: &EtcdConfig) -> Self {
        Self {
            cluster: config.cluster.clone(),
            name: config.name.clone(),
            endpoints: config.endpoints.clone(),
            ..Self::default()
        }
    }

    /// Records an exchange with etcd that succeeded.
    pub(crate) fn reached(&mut self) {
        self.connected = true;
    }

    /// Records an exchange with etcd that failed, and why; whether the link was up until now.
    pub(crate) fn lost(&mut self, why: String) -> bool {
        let was = self.connected;
        if was {
            self.disconnects += 1;
        }
        self.connected = false;
        self.last_error = Some(why);
        was
    }

    /// Records `fleet` applied (a change on etcd), with the members the configuration left
    /// out.
    pub(crate) fn applied(&mut self, fleet: &Fleet, routed: usize, left_out: &[LeftOut]) {
        self.cluster_problem = fleet.cluster_problem();
        self.rerouted(fleet, routed, left_out);
        self.updates += 1;
    }

    /// Records what `fleet` routes to after the file was reloaded: the same fleet, so not
    /// an update, but the file may have made room for a member or taken it.
    pub(crate) fn rerouted(&mut self, fleet: &Fleet, routed: usize, left_out: &[LeftOut]) {
        self.revision = fleet.revision();
        self.members = routed;
        self.left_out = left_out
            .iter()
            .map(|l| (l.name.clone(), l.why.clone()))
            .collect();
    }

    /// Whether `member` is left out for a reason not recorded yet: worth a warning, once.
    pub(crate) fn newly_left_out(&self, member: &LeftOut) -> bool {
        self.left_out.get(&member.name) != Some(&member.why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(name: &str, revision: i64, value: &str) -> KeyValue {
        KeyValue {
            key: ClusterKeys::new("t").member(name).into_bytes(),
            value: value.as_bytes().to_vec(),
            lease: 0,
            mod_revision: revision,
        }
    }

    fn record(name: &str, server_id: &str, state: &str) -> String {
        format!(
            r#"{{"name":"{name}","addr":"127.0.0.1:5001","server_id":"{server_id}","state":"{state}"}}"#
        )
    }

    #[test]
    fn a_listing_then_changes_make_the_fleet_at_the_last_changes_revision() {
        let keys = ClusterKeys::new("t");
        let mut fleet = Fleet::listed(
            &keys,
            vec![
                kv("b1", 5, &record("b1", "01", "serving")),
                kv("b2", 9, &record("b2", "02", "serving")),
            ],
        );
        assert_eq!((fleet.revision(), fleet.len()), (9, 2));
        let deleted_already = Changes {
            revision: 11,
            changes: vec![Change::Delete {
                key: keys.member("b0").into_bytes(),
            }],
        };
        assert!(!fleet.apply(&deleted_already), "nothing to delete");
        assert_eq!(fleet.revision(), 11, "yet the revision is the change's");
        let drained = Changes {
            revision: 12,
            changes: vec![
                Change::Put(kv("b2", 12, &record("b2", "02", "draining"))),
                Change::Delete {
                    key: keys.member("b1").into_bytes(),
                },
            ],
        };
        assert!(fleet.apply(&drained));
        let (backends, left_out) = fleet.backends();
        assert!(left_out.is_empty());
        assert_eq!(backends.len(), 1);
        assert_eq!(backends[0].state, BackendState::Draining);
        assert_eq!(fleet.revision(), 12);
    }

    #[test]
    fn records_that_cannot_be_backends_are_left_out_with_why() {
        let keys = ClusterKeys::new("t");
        let fleet = Fleet::listed(
            &keys,
            vec![
                kv("b1", 1, "not json"),
                kv("b2", 2, &record("b3", "03", "serving")),
                kv("b4", 3, &record("b4", "zz", "serving")),
                kv("b5", 4, &record("b5", "05", "serving")),
            ],
        );
        let (backends, left_out) = fleet.backends();
        assert_eq!(backends.len(), 1);
        let why: Vec<&str> = left_out.iter().map(|l| l.why.as_str()).collect();
        assert!(why[0].starts_with("its record does not parse"), "{why:?}");
        assert_eq!(why[1], "its record names \"b3\"");
        assert!(why[2].starts_with("server ID \"zz\""), "{why:?}");
    }

    #[test]
    fn the_link_counts_each_loss_once() {
        let mut status = FleetStatus::default();
        assert!(!status.lost("down".into()), "never up");
        status.reached();
        assert!(status.lost("down".into()));
        assert!(!status.lost("still down".into()));
        assert_eq!(status.disconnects, 1);
        assert_eq!(status.last_error.as_deref(), Some("still down"));
    }

    #[test]
    fn the_cluster_s_record_rides_along_and_its_last_usable_version_stays() {
        let keys = ClusterKeys::new("t");
        let shared = qlb_etcd::ClusterRecord {
            quic_lb: vec![qlb_etcd::TableRecord::plaintext(2, 1, 6)],
            issuing: 2,
            cluster_secret: None,
        };
        let cluster_kv = |revision: i64, value: Vec<u8>| KeyValue {
            key: keys.cluster().into_bytes(),
            value,
            lease: 0,
            mod_revision: revision,
        };
        let mut fleet = Fleet::listed(
            &keys,
            vec![
                kv("b1", 5, &record("b1", "01", "serving")),
                cluster_kv(7, shared.to_json()),
            ],
        );
        assert_eq!(
            (fleet.revision(), fleet.len()),
            (7, 1),
            "the record is no member"
        );
        let codepoint = |fleet: &Fleet| fleet.cluster().map(|c| c.quic_lb[0].id().get());
        assert_eq!(codepoint(&fleet), Some(2));
        assert_eq!(fleet.cluster_problem(), None);
        // A version that cannot be used: the last usable one stays, and members still move.
        let broken = Changes {
            revision: 8,
            changes: vec![
                Change::Put(cluster_kv(8, shared.issuing_under(5).to_json())),
                Change::Put(kv("b1", 8, &record("b1", "01", "draining"))),
            ],
        };
        assert!(fleet.apply(&broken));
        assert_eq!(codepoint(&fleet), Some(2));
        let problem = fleet.cluster_problem().expect("a problem");
        assert!(
            problem.starts_with("etcd fleet/cluster: issuing: "),
            "{problem}"
        );
        assert_eq!(fleet.backends().0[0].state, BackendState::Draining);
        // Deleted: the servers still issue under its tables, which stay.
        let deleted = Changes {
            revision: 9,
            changes: vec![Change::Delete {
                key: keys.cluster().into_bytes(),
            }],
        };
        assert!(fleet.apply(&deleted));
        assert_eq!(codepoint(&fleet), Some(2));
        assert!(
            fleet
                .cluster_problem()
                .is_some_and(|p| p.contains("deleted"))
        );
        let fixed = Changes {
            revision: 10,
            changes: vec![Change::Put(cluster_kv(10, shared.to_json()))],
        };
        assert!(fleet.apply(&fixed));
        assert_eq!(fleet.cluster_problem(), None);
    }

    #[test]
    fn only_fleet_changes_count_as_updates_and_each_reason_is_new_once() {
        let keys = ClusterKeys::new("t");
        let fleet = Fleet::listed(&keys, vec![kv("b1", 5, &record("b1", "01", "serving"))]);
        let taken = LeftOut {
            name: "b1".into(),
            why: "server ID 01 is a1's".into(),
        };
        let mut status = FleetStatus::default();
        assert!(status.newly_left_out(&taken));
        status.applied(&fleet, 0, std::slice::from_ref(&taken));
        assert_eq!((status.updates, status.members, status.revision), (1, 0, 5));
        assert!(!status.newly_left_out(&taken), "warned of already");
        let other = LeftOut {
            why: "name b1 is the file's".into(),
            ..taken.clone()
        };
        assert!(status.newly_left_out(&other), "a new reason");
        // The file changed and made room: the same fleet routes to it, no update.
        status.rerouted(&fleet, 1, &[]);
        assert_eq!((status.updates, status.members), (1, 1));
        assert!(status.left_out.is_empty());
    }
}
