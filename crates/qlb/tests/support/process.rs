//! A child process of a test: its stderr collected line by line, waits with deadlines, and
//! killed when dropped so that no test leaves processes behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::TestResult;

/// How often waits look again.
const POLL: Duration = Duration::from_millis(10);

/// A running child with its stderr log; SIGKILLed on drop.
pub(crate) struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread collecting the log; joined once the child has exited, so that its last
    /// lines are in.
    reader: Option<JoinHandle<()>>,
}

impl Process {
    /// Spawns `command` (stdout discarded, stderr collected); `name` labels errors.
    pub(crate) fn spawn(name: &str, command: &mut Command) -> TestResult<Self> {
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("{name}: cannot start: {err}"))?;
        let stderr = child.stderr.take().ok_or("stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lock(&log).push(line);
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            reader: Some(reader),
        })
    }

    /// Waits up to `timeout` for a log line containing `needle`; returns what follows it.
    /// Fails, with the log, if the process exits first.
    pub(crate) fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> TestResult<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.exited()?;
            let found = lock(&self.log)
                .iter()
                .find_map(|line| Some(line.split_once(needle)?.1.to_owned()));
            if let Some(rest) = found {
                return Ok(rest);
            }
            if let Some(status) = exited {
                return Err(self.failure(&format!("exited ({status}) before logging {needle:?}")));
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!("did not log {needle:?} within {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The log so far, one entry per line.
    pub(crate) fn lines(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// SIGTERMs the process (it may take its time to exit: [`Process::wait`]).
    pub(crate) fn terminate(&mut self) -> TestResult {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .map_err(|err| format!("{}: SIGTERM: {err}", self.name).into())
    }

    /// SIGKILLs the process and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has not exited yet.
    pub(crate) fn running(&mut self) -> TestResult<bool> {
        Ok(self.exited()?.is_none())
    }

    /// Its exit status if it has exited, with its whole log collected by then.
    fn exited(&mut self) -> TestResult<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
        Ok(status)
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait(&mut self, timeout: Duration) -> TestResult<ExitStatus> {
        wait_child(&mut self.child, &self.name, timeout)?;
        self.exited()?
            .ok_or_else(|| format!("{} has no exit status", self.name).into())
    }

    /// An error naming the process, with its log.
    pub(crate) fn failure(&self, what: &str) -> Box<dyn std::error::Error + Send + Sync> {
        format!("{} {what}; its log:\n{}", self.name, self.log_text()).into()
    }

    /// Everything it logged so far.
    fn log_text(&self) -> String {
        lock(&self.log).join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` to completion, killed if it takes longer than `timeout`: its exit status
/// and output.
pub(crate) fn run(name: &str, command: &mut Command, timeout: Duration) -> TestResult<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("{name}: cannot start: {err}"))?;
    let mut stdout = child.stdout.take().ok_or("stdout")?;
    let mut stderr = child.stderr.take().ok_or("stderr")?;
    // Read both pipes while it runs, so that a chatty child never blocks on a full pipe.
    let read = |pipe: &mut dyn std::io::Read| {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    };
    let (status, stdout, stderr) = std::thread::scope(|scope| {
        let stdout = scope.spawn(|| read(&mut stdout));
        let stderr = scope.spawn(|| read(&mut stderr));
        let status = wait_child(&mut child, name, timeout);
        (status, stdout.join(), stderr.join())
    });
    Ok(Output {
        status: status?,
        stdout: stdout.map_err(|_| "stdout reader panicked")?,
        stderr: stderr.map_err(|_| "stderr reader panicked")?,
    })
}

/// Waits up to `timeout` for `child` to exit; kills it and fails at the deadline.
fn wait_child(child: &mut Child, name: &str, timeout: Duration) -> TestResult<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} did not finish within {timeout:?}: killed").into());
        }
        std::thread::sleep(POLL);
    }
}

/// The log survives a panicking reader: a poisoned lock still holds the lines.
fn lock(log: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `qlb get URL --insecure` (wrapped by `wrap`, to run it elsewhere, or not), which must
/// succeed within `timeout`: the body as JSON.
pub(crate) fn qlb_get_json(
    url: &str,
    wrap: impl FnOnce(Command) -> Command,
    timeout: Duration,
) -> TestResult<serde_json::Value> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qlb"));
    command.args(["get", url, "--insecure"]);
    let output = run("qlb get", &mut wrap(command), timeout)?;
    if !output.status.success() {
        return Err(format!(
            "qlb get {url} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
