//! `qlb load` in the background, through a load balancer, for the scenarios that change the
//! fleet under traffic; its JSON summary at the end.

use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::TestResult;
use super::process::run;

/// A `qlb load` run.
pub(crate) struct LoadRun {
    thread: JoinHandle<TestResult<(Value, String)>>,
}

impl LoadRun {
    /// Starts `qlb load URL --insecure --json --duration DURATION` with `extra` arguments.
    pub(crate) fn start(url: &str, duration: Duration, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qlb"));
        command
            .args(["load", url, "--insecure", "--json"])
            .args(["--duration", &format!("{}ms", duration.as_millis())])
            .args(extra);
        let thread = std::thread::spawn(move || {
            let output = run("qlb load", &mut command, duration + Duration::from_secs(60))?;
            let log = String::from_utf8_lossy(&output.stderr).into_owned();
            let summary: Value = serde_json::from_slice(&output.stdout).map_err(|err| {
                format!(
                    "qlb load printed no summary ({err}; {}): {log}",
                    output.status
                )
            })?;
            Ok((summary, log))
        });
        Self { thread }
    }

    /// Whether the run has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the end: the summary, checked to have answered every request it sent.
    pub(crate) fn finish_without_errors(self) -> TestResult<Value> {
        let (summary, log) = self
            .thread
            .join()
            .map_err(|_| "the load thread panicked")??;
        eprintln!("qlb load summary: {summary}");
        if summary["errors"] != 0 {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            return Err(format!(
                "failed requests, by kind: {}; the end of qlb load's log, last line first:\n{}",
                summary["errors_by_kind"],
                tail.join("\n")
            )
            .into());
        }
        let answered: u64 = summary["per_backend"]
            .as_object()
            .ok_or("no per_backend in the summary")?
            .values()
            .filter_map(Value::as_u64)
            .sum();
        if Some(answered) != summary["requests"].as_u64() || answered == 0 {
            return Err(format!("not every request was answered by a backend: {summary}").into());
        }
        Ok(summary)
    }
}
