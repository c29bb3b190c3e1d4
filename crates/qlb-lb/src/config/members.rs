//! Backends from elsewhere than the file (the members of a fleet on etcd), added to a
//! configuration one by one: each is checked as a `[[backend]]` table would be, and one that
//! does not fit is left out with why, rather than refusing the whole fleet.

use std::collections::HashSet;

use super::error::ConfigError;
use super::schema::{BackendConfig, ClusterConfig, LbConfig};
use super::validation::{gue_backend, server_id_fits};

/// A member left out of the configuration, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    /// The member's name.
    pub name: String,
    /// Why it does not fit.
    pub why: String,
}

impl LbConfig {
    /// This configuration with `cluster`'s QUIC-LB tables and secret instead of the file's
    /// (the cluster's record on etcd rules), refused if a `[[backend]]` of the file does
    /// not fit its tables.
    pub fn with_cluster(&self, cluster: ClusterConfig) -> Result<LbConfig, ConfigError> {
        for (i, backend) in self.backends.iter().enumerate() {
            server_id_fits(&backend.server_id, &cluster.quic_lb)
                .map_err(|why| ConfigError::invalid(format!("backend[{i}].server_id"), why))?;
        }
        Ok(LbConfig {
            cluster,
            ..self.clone()
        })
    }

    /// This configuration with `members` routed to after the file's backends, in the order
    /// given. A member is left out when its name or server ID is already taken (by the file
    /// or an earlier member), its server ID's length differs from the `[[quic_lb]]` tables',
    /// or, in `gue` mode, its addresses do not suit the GUE sockets.
    ///
    /// ```
    /// use qlb_lb::config::LbConfig;
    ///
    /// let file = LbConfig::from_toml(r#"
    ///     listen = ["127.0.0.1:4433"]
    ///     [[backend]]
    ///     name = "b1"
    ///     addr = "127.0.0.1:5001"
    ///     server_id = "01"
    /// "#, ".".as_ref())?;
    /// let mut member = file.backends[0].clone();
    /// member.name = "b2".into();
    /// let (merged, left_out) = file.with_members(vec![member.clone()]);
    /// assert_eq!(left_out[0].why, "server ID 01 is b1's");
    /// member.server_id = "02".parse()?;
    /// let (merged, left_out) = file.with_members(vec![member]);
    /// assert!(left_out.is_empty() && merged.backends.len() == 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_members(&self, members: Vec<BackendConfig>) -> (LbConfig, Vec<LeftOut>) {
        let mut merged = self.clone();
        let mut names: HashSet<String> = self.backends.iter().map(|b| b.name.clone()).collect();
        let mut left_out = Vec::new();
        for member in members {
            match self.fits(&merged.backends, &names, &member) {
                Ok(()) => {
                    names.insert(member.name.clone());
                    merged.backends.push(member);
                }
                Err(why) => left_out.push(LeftOut {
                    name: member.name,
                    why,
                }),
            }
        }
        (merged, left_out)
    }

    /// Whether `member` may join `backends` (named `names`) under this configuration.
    fn fits(
        &self,
        backends: &[BackendConfig],
        names: &HashSet<String>,
        member: &BackendConfig,
    ) -> Result<(), String> {
        if names.contains(&member.name) {
            return Err(format!("the name {} is taken", member.name));
        }
        if let Some(holder) = backends.iter().find(|b| b.server_id == member.server_id) {
            return Err(format!(
                "server ID {} is {}'s",
                member.server_id, holder.name
            ));
        }
        server_id_fits(&member.server_id, &self.cluster.quic_lb)
            .map_err(|problem| format!("server ID {}: {problem}", member.server_id))?;
        if let Some(gue) = self.mode.gue() {
            gue_backend(gue, member, &self.health)
                .map_err(|(key, problem)| format!("{key}: {problem}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, addr: &str, server_id: &str) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            addr: addr.parse().expect("addr"),
            health_addr: None,
            server_id: server_id.parse().expect("server ID"),
            weight: 1,
            state: qlb_router::BackendState::Active,
        }
    }

    #[test]
    fn members_that_do_not_fit_are_left_out_one_by_one() {
        let file = LbConfig::from_toml(
            r#"
            listen = ["127.0.0.1:4433"]
            [[quic_lb]]
            config_id = 0
            server_id_len = 2
            nonce_len = 6
            [[backend]]
            name = "b1"
            addr = "127.0.0.1:5001"
            server_id = "0001"
            "#,
            ".".as_ref(),
        )
        .expect("valid");
        let (merged, left_out) = file.with_members(vec![
            member("m1", "127.0.0.1:6001", "0002"),
            member("b1", "127.0.0.1:6002", "0003"),
            member("m2", "127.0.0.1:6003", "0002"),
            member("m3", "127.0.0.1:6004", "03"),
            member("m4", "127.0.0.1:6005", "0004"),
        ]);
        let names: Vec<&str> = merged.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["b1", "m1", "m4"]);
        let why: Vec<(&str, &str)> = left_out
            .iter()
            .map(|l| (l.name.as_str(), l.why.as_str()))
            .collect();
        assert_eq!(why[0], ("b1", "the name b1 is taken"));
        assert_eq!(why[1], ("m2", "server ID 0002 is m1's"));
        assert!(why[2].1.contains("takes server_id_len = 2"), "{why:?}");
        assert!(merged.pool(|_| false).is_ok());
    }

    #[test]
    fn gue_members_need_their_family_and_a_health_address() {
        let file = LbConfig::from_toml(
            "listen = [\"127.0.0.1:4433\"]\nmode = \"gue\"",
            ".".as_ref(),
        )
        .expect("valid");
        let mut checked = member("m1", "127.0.0.1:6080", "01");
        checked.health_addr = Some("127.0.0.1:4433".parse().expect("addr"));
        let (merged, left_out) = file.with_members(vec![
            member("m0", "127.0.0.1:6081", "02"),
            member("m2", "[::1]:6080", "03"),
            checked,
        ]);
        assert_eq!(merged.backends.len(), 1);
        assert!(
            left_out[0].why.starts_with("health_addr: required"),
            "{left_out:?}"
        );
        assert!(
            left_out[1].why.starts_with("addr: [::1]:6080 is IPv6"),
            "{left_out:?}"
        );
    }
}
