//! The live progress line of a load run, redrawn in place on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::tally::Tally;

/// Draws `[=====>    ]  45%  1234 req  0 err  2345 req/s  3 migrations` on stderr, when stderr
/// is a terminal; otherwise does nothing (logs and pipes stay clean).
pub(crate) struct Progress {
    enabled: bool,
    total: Option<Duration>,
}

impl Progress {
    /// A progress line for a run of `total` (None: no bar, counts only).
    pub(crate) fn new(total: Option<Duration>) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            total,
        }
    }

    /// Redraws the line for `tally` after `elapsed`.
    pub(crate) fn draw(&self, tally: &Tally, elapsed: Duration) {
        if self.enabled {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{}\x1b[K", line(tally, elapsed, self.total));
            let _ = stderr.flush();
        }
    }

    /// Clears the line.
    pub(crate) fn clear(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// The text of the progress line.
fn line(tally: &Tally, elapsed: Duration, total: Option<Duration>) -> String {
    const WIDTH: usize = 30;
    let seconds = elapsed.as_secs_f64();
    let rps = if seconds > 0.0 {
        tally.requests() as f64 / seconds
    } else {
        0.0
    };
    let bar = match total {
        Some(total) if !total.is_zero() => {
            let fraction = (seconds / total.as_secs_f64()).clamp(0.0, 1.0);
            let filled = (fraction * WIDTH as f64) as usize;
            let head = if filled < WIDTH { ">" } else { "" };
            format!(
                "[{}{head}{}] {:3.0}%  ",
                "=".repeat(filled),
                " ".repeat(WIDTH.saturating_sub(filled + head.len())),
                fraction * 100.0
            )
        }
        _ => String::new(),
    };
    let summary = tally.summary(elapsed);
    format!(
        "{bar}{} req  {} err  {rps:.0} req/s  {} migrations",
        summary.requests, summary.errors, summary.migrations
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_bar_and_counts() {
        let mut tally = Tally::default();
        for _ in 0..10 {
            tally.success(Duration::from_millis(1), None);
        }
        tally.error("timeout");
        let text = line(&tally, Duration::from_secs(1), Some(Duration::from_secs(2)));
        assert!(text.starts_with("[==============="), "{text}");
        assert!(text.contains(" 50%"), "{text}");
        assert!(text.contains("11 req  1 err  11 req/s"), "{text}");
        let done = line(&tally, Duration::from_secs(3), Some(Duration::from_secs(2)));
        assert!(
            done.contains(&format!("[{}] 100%", "=".repeat(30))),
            "{done}"
        );
        assert!(!line(&tally, Duration::from_secs(1), None).contains('['));
    }
}
