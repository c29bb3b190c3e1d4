//! Where a cluster's state lives in etcd: every key under `/qlb/<cluster>/`.
//!
//! * `members/<name>`: a [`Member`](crate::Member) record (JSON), under the member's short
//!   lease: it disappears soon after the member dies.
//! * `server-ids/<hex>`: the member holding that server ID, under a lease as long as the
//!   quarantine: a departed member's ID stays taken until no connection of it can remain.

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

    /// Every member's record starts with this.
    pub fn members(&self) -> String {
        format!("{}members/", self.root)
    }

    /// The record of the member named `name`.
    pub fn member(&self, name: &str) -> String {
        format!("{}{name}", self.members())
    }

    /// Every server ID's holder starts with this.
    pub fn server_ids(&self) -> String {
        format!("{}server-ids/", self.root)
    }

    /// Who holds server ID `hex`.
    pub fn server_id(&self, hex: &str) -> String {
        format!("{}{hex}", self.server_ids())
    }
}

/// A cluster name: what goes between `/qlb/` and the next `/`.
pub(crate) fn valid_name(name: &str) -> bool {
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
        assert_eq!(keys.member("b1"), "/qlb/edge/members/b1");
        assert_eq!(keys.server_id("0a01"), "/qlb/edge/server-ids/0a01");
        assert!(keys.member("b1").starts_with(&keys.members()));
    }

    #[test]
    fn names_are_plain() {
        assert!(valid_name("edge-1.eu_west"));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
