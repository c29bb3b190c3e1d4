//! Where a cluster's state lives in etcd: every key under `/qlb/<cluster>/`.
//!
//! * `fleet/members/<name>`: a [`Member`](crate::Member) record (JSON), under the member's
//!   short lease: it disappears soon after the member dies.
//! * `server-ids/<hex>`: the member holding that server ID, under a lease as long as the
//!   quarantine: a departed member's ID stays taken until no connection of it can remain.
//! * `lbs/<name>`: a load balancer's [`LbRecord`](crate::LbRecord), under its lease: the
//!   fleet revision it applied last.
//!
//! What the load balancers route by lives under `fleet/`, which they watch as one range;
//! what only members and tools read (server IDs, load balancers) lives beside it, so that
//! a load balancer's own writes never wake the others.

use crate::error::EtcdError;

/// The keys of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterKeys {
    root: String,
}

impl ClusterKeys {
    /// The keys of cluster `name`.
    pub fn new(name: &str) -> Self {
        Self {
            root: format!("/qlb/{name}/"),
        }
    }

    /// The keys of cluster `name`, refused unless it is 1 to 64 of `[a-zA-Z0-9._-]`.
    ///
    /// ```
    /// assert!(qlb_etcd::ClusterKeys::checked("edge-1").is_ok());
    /// assert!(qlb_etcd::ClusterKeys::checked("a/b").is_err());
    /// ```
    pub fn checked(name: &str) -> Result<Self, EtcdError> {
        match valid_name(name) {
            true => Ok(Self::new(name)),
            false => Err(EtcdError::ClusterName(name.to_owned())),
        }
    }

    /// Every key of the cluster starts with this.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Everything the load balancers route by starts with this.
    pub fn fleet(&self) -> String {
        format!("{}fleet/", self.root)
    }

    /// Every member's record starts with this.
    pub fn members(&self) -> String {
        format!("{}members/", self.fleet())
    }

    /// The record of the member named `name`.
    pub fn member(&self, name: &str) -> String {
        format!("{}{name}", self.members())
    }

    /// The cluster's shared configuration (QUIC-LB tables, the codepoint servers issue
    /// under, the cluster secret): under `fleet/`, so a load balancer's watch of the fleet
    /// sees it, and the revision it records covers it.
    pub fn cluster(&self) -> String {
        format!("{}cluster", self.fleet())
    }

    /// The key rotation in progress, if any (`qlb cluster rotate`).
    pub fn rotation(&self) -> String {
        format!("{}rotation", self.root)
    }

    /// Every server ID's holder starts with this.
    pub fn server_ids(&self) -> String {
        format!("{}server-ids/", self.root)
    }

    /// Who holds server ID `hex`.
    pub fn server_id(&self, hex: &str) -> String {
        format!("{}{hex}", self.server_ids())
    }

    /// Every load balancer's record starts with this.
    pub fn load_balancers(&self) -> String {
        format!("{}lbs/", self.root)
    }

    /// The record of the load balancer named `name`.
    pub fn load_balancer(&self, name: &str) -> String {
        format!("{}{name}", self.load_balancers())
    }
}

/// A cluster, member or load balancer name: plain enough to sit in a key.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_the_cluster() {
        let keys = ClusterKeys::new("edge");
        assert_eq!(keys.member("b1"), "/qlb/edge/fleet/members/b1");
        assert_eq!(keys.server_id("0a01"), "/qlb/edge/server-ids/0a01");
        assert_eq!(keys.load_balancer("lb1"), "/qlb/edge/lbs/lb1");
        assert!(keys.member("b1").starts_with(&keys.fleet()));
        assert_eq!(keys.cluster(), "/qlb/edge/fleet/cluster");
        assert!(!keys.cluster().starts_with(&keys.members()));
        assert_eq!(keys.rotation(), "/qlb/edge/rotation");
        assert!(!keys.load_balancer("lb1").starts_with(&keys.fleet()));
        assert!(!keys.server_id("01").starts_with(&keys.fleet()));
    }

    #[test]
    fn names_are_plain() {
        assert!(valid_name("edge-1.eu_west"));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
            assert!(ClusterKeys::checked(bad).is_err());
        }
    }
}
