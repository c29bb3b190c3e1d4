//! The demo's verdict: the numbers it gathered, the checks they must pass, and the table it
//! prints at the end. Pure: the run fills a [`Report`], this module judges and renders it.

use std::fmt;

use crate::traffic::Summary;

/// What a demo run measured.
#[derive(Clone, Debug, Default)]
pub(super) struct Report {
    /// The load balancer's address.
    pub vip: String,
    /// Requests, errors, latency, migrations, answers per server ID.
    pub traffic: Option<Summary>,
    /// Backends: name and server ID, in order.
    pub backends: Vec<(String, String)>,
    /// The clients' first connections (nothing to resume yet): one per client.
    pub first_connections: u64,
    /// The restarted backend's name.
    pub restarted: String,
    /// Requests the restarted backend answered after its restart.
    pub served_after_restart: u64,
    /// Connections open when the restarted backend was drained.
    pub restart_cohort: Cohort,
    /// The codepoints before and after the rotation.
    pub rotation: (u8, u8),
    /// Connections open when the load balancer learnt the new codepoint.
    pub rotation_cohort: Cohort,
}

/// What became of the connections open at one moment of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Cohort {
    /// Connections open then.
    pub open: u64,
    /// Of those, still serving requests at the end of the run.
    pub kept_serving: u64,
    /// Of those, drained gracefully (GOAWAY or max age) and replaced.
    pub drained: u64,
    /// Of those, neither: a request on it failed.
    pub failed: u64,
}

impl Report {
    /// The checks a run must pass, with whether it did.
    pub(super) fn checks(&self) -> Vec<(String, bool)> {
        let traffic = self.traffic.as_ref();
        let requests = traffic.map_or(0, |t| t.requests);
        let errors = traffic.map_or(0, |t| t.errors);
        let migrations = traffic.map_or(0, |t| t.migrations);
        let migrations_failed: u64 = traffic.map_or(0, |t| t.migrations_failed.values().sum());
        let lost = traffic.map_or(0, |t| t.connections.lost);
        let zero_rtt = traffic.map_or(0, |t| t.resumption.zero_rtt_accepted);
        let mut checks = vec![
            (
                format!("{requests} requests, {errors} failed"),
                requests > 0 && errors == 0,
            ),
            (
                format!("{migrations} migrations, {migrations_failed} failed"),
                migrations > 0 && migrations_failed == 0,
            ),
            (format!("{lost} connections lost"), lost == 0),
            (
                format!("{zero_rtt} reconnects resumed with 0-RTT"),
                zero_rtt > 0,
            ),
            (
                format!(
                    "{} answered {} requests after its restart",
                    self.restarted, self.served_after_restart
                ),
                self.served_after_restart > 0,
            ),
            (
                format!(
                    "{} connections failed across the restart",
                    self.restart_cohort.failed
                ),
                self.restart_cohort.failed == 0,
            ),
            (
                format!(
                    "{} connections failed across the rotation",
                    self.rotation_cohort.failed
                ),
                self.rotation_cohort.failed == 0,
            ),
        ];
        for (name, server_id) in &self.backends {
            let served = traffic.and_then(|t| t.per_backend.get(server_id)).copied();
            let served = served.unwrap_or(0);
            checks.push((format!("{name} answered {served} requests"), served > 0));
        }
        checks
    }

    /// Whether every check passed.
    pub(super) fn passed(&self) -> bool {
        self.checks().iter().all(|(_, ok)| *ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(traffic) = &self.traffic else {
            return writeln!(f, "FAIL: no traffic ran");
        };
        writeln!(
            f,
            "\nqlb demo: {:.1} s of HTTP/3 through the load balancer at {}\n",
            traffic.elapsed_s, self.vip
        )?;
        writeln!(
            f,
            "  requests      {} ({:.0} req/s), errors {}",
            traffic.requests, traffic.rps, traffic.errors
        )?;
        for (kind, count) in &traffic.errors_by_kind {
            writeln!(f, "                {count} {kind}")?;
        }
        let latency = &traffic.latency_ms;
        writeln!(
            f,
            "  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            latency.p50, latency.p90, latency.p99, latency.max
        )?;
        let failed: u64 = traffic.migrations_failed.values().sum();
        writeln!(
            f,
            "  migrations    {} (new local port: probe, then switch), {failed} failed",
            traffic.migrations
        )?;
        for (kind, count) in &traffic.migrations_failed {
            writeln!(f, "                {count} {kind}")?;
        }
        if traffic.migrations_skipped > 0 {
            writeln!(
                f,
                "                {} skipped: the connection drained (GOAWAY) while it moved",
                traffic.migrations_skipped
            )?;
        }
        let (c, r) = (&traffic.connections, &traffic.resumption);
        writeln!(
            f,
            "  connections   {} opened; {} drained by GOAWAY (restart, max age), {} retired by the client; {} lost",
            c.opened, c.goaway, c.retired, c.lost
        )?;
        writeln!(
            f,
            "  resumption    {} of the {} opened after the first resumed a session, {} with 0-RTT accepted",
            r.resumed,
            c.opened.saturating_sub(self.first_connections),
            r.zero_rtt_accepted
        )?;
        let r = &self.restart_cohort;
        writeln!(
            f,
            "  restart       {}: of {} connections open at its drain, {} kept serving, {} drained and replaced, {} failed",
            self.restarted, r.open, r.kept_serving, r.drained, r.failed
        )?;
        let r = &self.rotation_cohort;
        writeln!(
            f,
            "  key rotation  codepoint {} -> {}: of {} connections open at the rotation, {} kept serving on their old CIDs, {} drained and replaced, {} failed",
            self.rotation.0, self.rotation.1, r.open, r.kept_serving, r.drained, r.failed
        )?;
        writeln!(f, "\n  backend  server id  requests   share")?;
        let answered: u64 = traffic.per_backend.values().sum();
        for (name, server_id) in &self.backends {
            let count = traffic.per_backend.get(server_id).copied().unwrap_or(0);
            let share = if answered > 0 {
                100.0 * count as f64 / answered as f64
            } else {
                0.0
            };
            writeln!(f, "  {name:<8} {server_id:<10} {count:>8}  {share:5.1}%")?;
        }
        writeln!(f)?;
        for (check, ok) in self.checks() {
            writeln!(f, "  {} {check}", if ok { "ok  " } else { "FAIL" })?;
        }
        writeln!(
            f,
            "\n{}",
            if self.passed() {
                "PASS: every request answered, no connection lost"
            } else {
                "FAIL: see the checks above"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Connections, Resumption, Tally};
    use std::time::Duration;

    fn passing() -> Report {
        let mut tally = Tally::default();
        for server_id in ["0001", "0002", "0003"] {
            tally.success(Duration::from_millis(2), Some(server_id));
        }
        tally.migration();
        let mut traffic = tally.summary(Duration::from_secs(1));
        traffic.connections = Connections {
            opened: 3,
            goaway: 1,
            retired: 0,
            lost: 0,
        };
        traffic.resumption = Resumption {
            resumed: 2,
            zero_rtt_accepted: 2,
            zero_rtt_rejected: 0,
        };
        Report {
            vip: "127.0.0.1:4433".into(),
            traffic: Some(traffic),
            backends: [("b1", "0001"), ("b2", "0002"), ("b3", "0003")]
                .map(|(n, s)| (n.to_owned(), s.to_owned()))
                .to_vec(),
            first_connections: 1,
            restarted: "b2".into(),
            served_after_restart: 1,
            restart_cohort: Cohort {
                open: 3,
                kept_serving: 2,
                drained: 1,
                failed: 0,
            },
            rotation: (0, 1),
            rotation_cohort: Cohort {
                open: 3,
                kept_serving: 3,
                drained: 0,
                failed: 0,
            },
        }
    }

    #[test]
    fn a_clean_run_passes_and_says_so() {
        let report = passing();
        assert!(report.passed(), "{:?}", report.checks());
        let text = report.to_string();
        assert!(text.contains("PASS"), "{text}");
        assert!(text.contains("b2       0002"), "{text}");
        assert!(text.contains("codepoint 0 -> 1"), "{text}");
        assert!(
            text.contains("2 of the 2 opened after the first resumed"),
            "{text}"
        );
    }

    #[test]
    fn any_failure_fails_the_run() {
        let mut lost = passing();
        if let Some(traffic) = lost.traffic.as_mut() {
            traffic.connections.lost = 1;
        }
        let mut error = passing();
        let mut tally = Tally::default();
        tally.error("timeout");
        error.traffic = Some(tally.summary(Duration::from_secs(1)));
        let mut idle_backend = passing();
        if let Some(traffic) = idle_backend.traffic.as_mut() {
            traffic.per_backend.remove("0003");
        }
        let mut not_back = passing();
        not_back.served_after_restart = 0;
        let mut rotation = passing();
        rotation.rotation_cohort.failed = 1;
        let mut no_0rtt = passing();
        if let Some(traffic) = no_0rtt.traffic.as_mut() {
            traffic.resumption.zero_rtt_accepted = 0;
        }
        for report in [
            lost,
            no_0rtt,
            error,
            idle_backend,
            not_back,
            rotation,
            Report::default(),
        ] {
            assert!(!report.passed(), "{:?}", report.checks());
            assert!(report.to_string().contains("FAIL"));
        }
    }
}
