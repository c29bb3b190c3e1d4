//! What a reload may change and what it did change, decided from the running and the new
//! configuration alone.

use std::fmt;

use qlb_router::PoolError;
use serde::Serialize;
use thiserror::Error;

use crate::config::{ConfigError, ForwardingMode, LbConfig, RetryMode};

/// Why a reload was refused. The running configuration stays in every case.
///
/// ```
/// use qlb_lb::daemon::ReloadError;
///
/// let err = ReloadError::NeedsRestart {
///     field: "workers".into(),
///     running: "2".into(),
///     file: "4".into(),
/// };
/// assert!(err.to_string().starts_with("workers: cannot change while running"), "{err}");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new configuration is invalid (the message names the field).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The new configuration's backends do not form a valid pool (the message names the
    /// field; [`LbConfig`] validation normally catches this first).
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// The new configuration changes a setting that only a restart can change.
    #[error(
        "{field}: cannot change while running ({running} running, {file} in the new \
         configuration); restart the load balancer to change it"
    )]
    NeedsRestart {
        /// The field.
        field: String,
        /// Its running value.
        running: String,
        /// Its new value.
        file: String,
    },
    /// [`Balancer::reload`](crate::Balancer::reload) on a balancer started without a file.
    #[error("config: the load balancer was started without a configuration file to re-read")]
    NoConfigFile,
    /// The load balancer has been shut down.
    #[error("the load balancer has stopped")]
    Stopped,
}

impl ReloadError {
    /// Whether the refusal is the new configuration's fault (unreadable files included)
    /// rather than the balancer's state: the admin API answers those with 422.
    ///
    /// ```
    /// assert!(!qlb_lb::daemon::ReloadError::Stopped.is_invalid_config());
    /// ```
    pub fn is_invalid_config(&self) -> bool {
        match self {
            Self::Config(_) | Self::Pool(_) | Self::NeedsRestart { .. } => true,
            Self::NoConfigFile | Self::Stopped => false,
        }
    }
}

/// Refuses a new configuration that changes what the running data plane or admin listener
/// was built with: the listening sockets and worker threads, the forwarding mode and its GUE
/// sockets, the flow expiry and caps the workers were given, the Retry offload settings and
/// keys, and the admin API's socket.
pub(crate) fn check_live_changes(running: &LbConfig, new: &LbConfig) -> Result<(), ReloadError> {
    fn refuse(field: &str, running: impl fmt::Debug, file: impl fmt::Debug) -> ReloadError {
        ReloadError::NeedsRestart {
            field: field.to_owned(),
            running: format!("{running:?}"),
            file: format!("{file:?}"),
        }
    }
    if running.listen != new.listen {
        return Err(refuse("listen", &running.listen, &new.listen));
    }
    if running.workers != new.workers {
        return Err(refuse("workers", running.workers, new.workers));
    }
    if running.mode.as_str() != new.mode.as_str() {
        return Err(refuse("mode", running.mode.as_str(), new.mode.as_str()));
    }
    if let (Some(running), Some(new)) = (running.mode.gue(), new.mode.gue()) {
        if running.bind != new.bind {
            return Err(refuse("gue.bind", running.bind, new.bind));
        }
        if running.ports != new.ports {
            return Err(refuse("gue.ports", running.ports, new.ports));
        }
    }
    if let (ForwardingMode::Xdp(running), ForwardingMode::Xdp(new)) = (running.mode, new.mode) {
        if running.interface != new.interface {
            return Err(refuse("xdp.interface", running.interface, new.interface));
        }
        if running.attach != new.attach {
            return Err(refuse(
                "xdp.attach",
                running.attach.as_str(),
                new.attach.as_str(),
            ));
        }
    }
    if running.flow_idle_timeout != new.flow_idle_timeout {
        return Err(refuse(
            "flow_idle_timeout",
            running.flow_idle_timeout,
            new.flow_idle_timeout,
        ));
    }
    for (field, running, file) in [
        ("max_flows", running.max_flows, new.max_flows),
        (
            "max_unconfirmed_flows",
            running.max_unconfirmed_flows,
            new.max_unconfirmed_flows,
        ),
    ] {
        if running != file {
            return Err(refuse(field, running, file));
        }
    }
    // The workers hold the Retry settings and the token keys derived from the secret.
    if running.retry != new.retry {
        return Err(refuse("retry", running.retry.mode, new.retry.mode));
    }
    if running.retry.mode != RetryMode::Off
        && running.cluster.cluster_secret != new.cluster.cluster_secret
    {
        return Err(refuse("cluster_secret", "(secret)", "(another secret)"));
    }
    if running.etcd != new.etcd {
        let cluster = |config: &LbConfig| config.etcd.as_ref().map(|e| e.cluster.clone());
        return Err(refuse("etcd", cluster(running), cluster(new)));
    }
    let admin_listen = |config: &LbConfig| config.admin.as_ref().map(|a| a.listen);
    if admin_listen(running) != admin_listen(new) {
        return Err(refuse(
            "admin.listen",
            admin_listen(running),
            admin_listen(new),
        ));
    }
    Ok(())
}

/// What a reload changed. Backends are told apart by name, QUIC-LB configurations by
/// codepoint.
///
/// ```
/// use qlb_lb::daemon::ReloadReport;
///
/// let report = ReloadReport::default();
/// assert!(report.is_empty());
/// assert_eq!(report.to_string(), "no change");
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct ReloadReport {
    /// Backends in the new configuration only.
    pub backends_added: Vec<String>,
    /// Backends in the running configuration only.
    pub backends_removed: Vec<String>,
    /// Backends in both whose address, server ID, weight or state changed.
    pub backends_changed: Vec<String>,
    /// Codepoints of `[[quic_lb]]` tables in the new configuration only.
    pub quic_lb_added: Vec<u8>,
    /// Codepoints of `[[quic_lb]]` tables in the running configuration only.
    pub quic_lb_removed: Vec<u8>,
    /// Codepoints whose table changed (lengths, key, length self-encoding).
    pub quic_lb_changed: Vec<u8>,
    /// Whether the `[health]` table changed.
    pub health_changed: bool,
    /// Whether the admin API's token changed.
    pub admin_token_changed: bool,
}

impl ReloadReport {
    /// Compares the running configuration with the new one.
    pub(crate) fn between(running: &LbConfig, new: &LbConfig) -> Self {
        let backend = |config: &LbConfig, name: &str| {
            config.backends.iter().find(|b| b.name == name).cloned()
        };
        let quic_lb = |config: &LbConfig, id: u8| {
            config
                .cluster
                .quic_lb
                .iter()
                .find(|c| c.id().get() == id)
                .cloned()
        };
        let mut report = Self::default();
        for b in &new.backends {
            match backend(running, &b.name) {
                None => report.backends_added.push(b.name.clone()),
                Some(old) if old != *b => report.backends_changed.push(b.name.clone()),
                Some(_) => {}
            }
        }
        report.backends_removed = running
            .backends
            .iter()
            .filter(|b| backend(new, &b.name).is_none())
            .map(|b| b.name.clone())
            .collect();
        for config in &new.cluster.quic_lb {
            let id = config.id().get();
            match quic_lb(running, id) {
                None => report.quic_lb_added.push(id),
                Some(old) if old != *config => report.quic_lb_changed.push(id),
                Some(_) => {}
            }
        }
        report.quic_lb_removed = running
            .cluster
            .quic_lb
            .iter()
            .map(|c| c.id().get())
            .filter(|&id| quic_lb(new, id).is_none())
            .collect();
        report.health_changed = running.health != new.health;
        let token = |config: &LbConfig| config.admin.as_ref().and_then(|a| a.token.clone());
        report.admin_token_changed = token(running) != token(new);
        report
    }

    /// Whether nothing changed.
    ///
    /// ```
    /// let report = qlb_lb::daemon::ReloadReport { health_changed: true, ..Default::default() };
    /// assert!(!report.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A one-line summary for logs: `backends +b3 -b1 ~b2; quic_lb +1 -0; health; admin token`.
impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(parts: &mut Vec<String>, what: &str, lists: [(&str, &[T]); 3]) {
            let items: Vec<String> = lists
                .iter()
                .flat_map(|(sign, items)| items.iter().map(move |item| format!("{sign}{item}")))
                .collect();
            if !items.is_empty() {
                parts.push(format!("{what} {}", items.join(" ")));
            }
        }
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut parts = Vec::new();
        list(
            &mut parts,
            "backends",
            [
                ("+", &self.backends_added),
                ("-", &self.backends_removed),
                ("~", &self.backends_changed),
            ],
        );
        list(
            &mut parts,
            "quic_lb",
            [
                ("+", &self.quic_lb_added),
                ("-", &self.quic_lb_removed),
                ("~", &self.quic_lb_changed),
            ],
        );
        if self.health_changed {
            parts.push("health".to_owned());
        }
        if self.admin_token_changed {
            parts.push("admin token".to_owned());
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::fixture::{CONFIG, config, variant};

    #[test]
    fn settings_built_into_sockets_and_threads_need_a_restart() {
        let running = config(CONFIG);
        let cases = [
            ("\"127.0.0.1:4433\"]", "\"127.0.0.1:4434\"]", "listen"),
            ("workers = 1", "workers = 2", "workers"),
            (
                "workers = 1",
                "flow_idle_timeout = \"5s\"\nworkers = 1",
                "flow_idle_timeout",
            ),
            ("workers = 1", "max_flows = 100\nworkers = 1", "max_flows"),
            (
                "workers = 1",
                "max_unconfirmed_flows = 100\nworkers = 1",
                "max_unconfirmed_flows",
            ),
            (
                "listen = \"127.0.0.1:9901\"",
                "listen = \"127.0.0.1:9902\"",
                "admin.listen",
            ),
            ("[admin]\nlisten = \"127.0.0.1:9901\"\n", "", "admin.listen"),
            (
                "[admin]\n",
                "[retry]\ntoken_lifetime = \"5s\"\n[admin]\n",
                "retry",
            ),
        ];
        for (from, to, field) in cases {
            let err = check_live_changes(&running, &variant(from, to)).expect_err(field);
            assert!(
                err.to_string()
                    .starts_with(&format!("{field}: cannot change")),
                "{err}"
            );
            assert!(err.is_invalid_config());
        }
        assert!(check_live_changes(&running, &config(CONFIG)).is_ok());
    }

    #[test]
    fn gue_sockets_need_a_restart_and_the_pool_does_not() {
        let gue = |table: &str| {
            let text = CONFIG
                .replacen("workers = 1", "workers = 1\nmode = \"gue\"", 1)
                .replacen(
                    "unhealthy_threshold = 2",
                    &format!("unhealthy_threshold = 2\nenabled = false\n{table}"),
                    1,
                );
            config(&text)
        };
        let running = gue("");
        for (table, field) in [
            ("[gue]\nbind = \"127.0.0.1:6080\"", "gue.bind"),
            ("[gue]\nports = 4", "gue.ports"),
        ] {
            let err = check_live_changes(&running, &gue(table)).expect_err(field);
            assert!(
                err.to_string()
                    .starts_with(&format!("{field}: cannot change")),
                "{err}"
            );
        }
        let err = check_live_changes(&running, &config(CONFIG)).expect_err("to proxy");
        assert!(err.to_string().starts_with("mode: cannot change"), "{err}");
        let mut moved = gue("");
        moved.backends[0].addr = "127.0.0.1:6001".parse().expect("addr");
        assert!(check_live_changes(&running, &moved).is_ok());
        assert!(check_live_changes(&running, &gue("[gue]\nports = 8")).is_ok());
    }

    #[test]
    fn the_report_names_what_changed() {
        let running = config(CONFIG);
        let new = config(
            &CONFIG
                .replacen("name = \"b1\"", "name = \"b3\"", 1)
                .replacen("\"127.0.0.1:5002\"", "\"127.0.0.1:6002\"", 1)
                .replacen(
                    "[[backend]]",
                    "[[quic_lb]]\nconfig_id = 1\nserver_id_len = 2\nnonce_len = 6\n[[backend]]",
                    1,
                )
                .replacen("unhealthy_threshold = 2", "unhealthy_threshold = 3", 1),
        );
        let report = ReloadReport::between(&running, &new);
        assert_eq!(report.backends_added, ["b3"]);
        assert_eq!(report.backends_removed, ["b1"]);
        assert_eq!(report.backends_changed, ["b2"]);
        assert_eq!(report.quic_lb_added, [1]);
        assert!(report.quic_lb_removed.is_empty() && report.quic_lb_changed.is_empty());
        assert!(report.health_changed && !report.admin_token_changed);
        assert_eq!(
            report.to_string(),
            "backends +b3 -b1 ~b2; quic_lb +1; health"
        );
        assert!(ReloadReport::between(&running, &config(CONFIG)).is_empty());
    }

    #[test]
    fn a_new_key_under_a_codepoint_is_a_change() {
        let running = config(CONFIG);
        let new = variant(
            "nonce_len = 6",
            "nonce_len = 6\nkey = \"00112233445566778899aabbccddeeff\"",
        );
        let report = ReloadReport::between(&running, &new);
        assert_eq!(report.quic_lb_changed, [0]);
        assert_eq!(report.to_string(), "quic_lb ~0");
    }
}
