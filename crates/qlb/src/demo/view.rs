//! The demo's live view: a few lines redrawn in place on a terminal (elapsed time, the
//! current step, requests, errors, migrations, and each backend's share and state). Without
//! a terminal, steps are printed as lines as they happen and the view stays quiet.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::traffic::Tally;

/// One backend's line.
pub(super) struct BackendLine {
    /// `b1`.
    pub name: String,
    /// `0001`.
    pub server_id: String,
    /// The load balancer's word for it: `active`, `draining`, `down`.
    pub state: String,
}

/// The live view.
pub(super) struct LiveView {
    terminal: bool,
    drawn: usize,
    total: Duration,
}

impl LiveView {
    /// A view of a run of `total`.
    pub(super) fn new(total: Duration) -> Self {
        Self {
            terminal: std::io::stdout().is_terminal(),
            drawn: 0,
            total,
        }
    }

    /// Reports a step: a line above the live block (or a plain line without a terminal).
    pub(super) fn step(&mut self, at: Duration, text: &str) {
        let mut out = std::io::stdout().lock();
        self.erase(&mut out);
        let _ = writeln!(out, "[{:5.1} s] {text}", at.as_secs_f64());
        let _ = out.flush();
    }

    /// Redraws the live block.
    pub(super) fn draw(&mut self, at: Duration, tally: &Tally, backends: &[BackendLine]) {
        if !self.terminal {
            return;
        }
        let lines = render(at, self.total, tally, backends);
        let mut out = std::io::stdout().lock();
        self.erase(&mut out);
        for line in &lines {
            let _ = writeln!(out, "{line}\x1b[K");
        }
        let _ = out.flush();
        self.drawn = lines.len();
    }

    /// Removes the live block (before the final report).
    pub(super) fn clear(&mut self) {
        let mut out = std::io::stdout().lock();
        self.erase(&mut out);
        let _ = out.flush();
    }

    fn erase(&mut self, out: &mut impl Write) {
        if self.terminal && self.drawn > 0 {
            // Up to the block's first line, and clear to the end of the screen.
            let _ = write!(out, "\x1b[{}A\r\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }
}

/// The lines of the live block.
fn render(at: Duration, total: Duration, tally: &Tally, backends: &[BackendLine]) -> Vec<String> {
    const BAR: usize = 24;
    let summary = tally.summary(at);
    let mut lines = vec![format!(
        "  {:5.1} s / {:.0} s   {} requests ({:.0}/s)   {} errors   {} migrations",
        at.as_secs_f64(),
        total.as_secs_f64(),
        summary.requests,
        summary.rps,
        summary.errors,
        summary.migrations
    )];
    let answered: u64 = summary.per_backend.values().sum();
    for backend in backends {
        let count = summary
            .per_backend
            .get(&backend.server_id)
            .copied()
            .unwrap_or(0);
        let share = if answered > 0 {
            count as f64 / answered as f64
        } else {
            0.0
        };
        let filled = ((share * BAR as f64).round() as usize).min(BAR);
        lines.push(format!(
            "  {:<4} {}  {}{} {:5.1}%  {}",
            backend.name,
            backend.server_id,
            "#".repeat(filled),
            ".".repeat(BAR - filled),
            share * 100.0,
            backend.state
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_shares() {
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.success(Duration::from_millis(1), Some("0001"));
        }
        tally.success(Duration::from_millis(1), Some("0002"));
        let backends = [("b1", "0001", "active"), ("b2", "0002", "draining")].map(
            |(name, server_id, state)| BackendLine {
                name: name.into(),
                server_id: server_id.into(),
                state: state.into(),
            },
        );
        let lines = render(
            Duration::from_secs(2),
            Duration::from_secs(20),
            &tally,
            &backends,
        );
        assert!(lines[0].contains("4 requests (2/s)"), "{lines:?}");
        assert!(
            lines[1].contains(&format!(
                "{}  75.0%  active",
                "#".repeat(18) + &".".repeat(6)
            )),
            "{lines:?}"
        );
        assert!(lines[2].ends_with("25.0%  draining"), "{lines:?}");
    }
}
