//! The third-party QUIC clients as the end-to-end tests drive them: ngtcp2's `gtlsclient`
//! (Debian `ngtcp2-client`) and aioquic's HTTP/3 client (PyPI), found and checked by the
//! test kit (`qlb_testkit::peers`: on CI a missing peer fails the test).

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qlb_testkit::netns::Host;
use qlb_testkit::peers::aioquic;
use serde_json::Value;

use super::TestResult;
use super::process::{Process, run};

/// A gtlsclient transfer: `size` random octets uploaded to `/echo` and downloaded back.
pub(crate) struct Echo {
    payload: Vec<u8>,
    upload: PathBuf,
    downloads: PathBuf,
}

impl Echo {
    /// Writes the payload into `dir` (which also receives the download).
    pub(crate) fn new(dir: &Path, size: usize) -> TestResult<Self> {
        // The kernel's generator: a debug build's would take seconds for 50 MB.
        let mut payload = Vec::with_capacity(size);
        std::fs::File::open("/dev/urandom")?
            .take(size as u64)
            .read_to_end(&mut payload)?;
        let upload = dir.join("upload");
        std::fs::write(&upload, &payload)?;
        let downloads = dir.join("downloads");
        std::fs::create_dir(&downloads)?;
        Ok(Self {
            payload,
            upload,
            downloads,
        })
    }

    /// The octets sent.
    pub(crate) fn size(&self) -> usize {
        self.payload.len()
    }

    /// gtlsclient POSTing the payload to `server`'s `/echo` (https://localhost:PORT/echo),
    /// `extra` options added: no dumps of frames and bodies, exit once the request is done.
    pub(crate) fn gtlsclient(&self, server: SocketAddr, extra: &[&str]) -> Command {
        let mut command = qlb_testkit::peers::gtlsclient(server, "POST", "/echo");
        command
            .arg(format!("--data={}", self.upload.display()))
            .arg(format!("--download={}", self.downloads.display()))
            .args(extra);
        command
    }

    /// Checks that the whole payload came back unchanged.
    pub(crate) fn check(&self) -> TestResult {
        let echoed = std::fs::read(self.downloads.join("echo"))?;
        if echoed != self.payload {
            return Err(format!(
                "echo differs: {} of {} octets",
                echoed.len(),
                self.payload.len()
            )
            .into());
        }
        Ok(())
    }
}

/// Runs `command` (a gtlsclient) within `timeout`: fails with the end of its log unless it
/// exits 0. Returns its log (stderr).
pub(crate) fn run_gtlsclient(command: &mut Command, timeout: Duration) -> TestResult<String> {
    let output = run("gtlsclient", command, timeout)?;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(format!(
            "gtlsclient failed ({}); the end of its log, last line first:\n{}",
            output.status,
            log_tail(&log)
        )
        .into());
    }
    Ok(log)
}

/// The last lines of a gtlsclient log, last line first, for a failure message.
pub(crate) fn log_tail(log: &str) -> String {
    log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
}

/// aioquic downloading one path, with a keep-alive PING at a fixed interval.
pub(crate) struct Download {
    process: Process,
    body: PathBuf,
    result: PathBuf,
}

/// How a [`Download`] ended.
#[derive(Debug)]
pub(crate) struct Downloaded {
    /// The response status.
    pub status: u16,
    /// Octets received.
    pub length: u64,
    /// From the first Initial to the end of the body.
    pub elapsed: Duration,
    /// The longest time without body data.
    pub longest_pause: Duration,
}

impl Download {
    /// Starts downloading `path` from `server` into a file in `dir`.
    pub(crate) fn start(
        server: SocketAddr,
        path: &str,
        dir: &Path,
        keep_alive: Duration,
    ) -> TestResult<Self> {
        let body = dir.join("body");
        let result = dir.join("result.json");
        let process = Process::spawn(
            "aioquic download",
            aioquic("download", server)
                .arg(path)
                .arg(&body)
                .arg(&result)
                .arg(keep_alive.as_millis().to_string()),
        )?;
        Ok(Self {
            process,
            body,
            result,
        })
    }

    /// Octets of the body written so far.
    pub(crate) fn arrived(&self) -> u64 {
        std::fs::metadata(&self.body).map_or(0, |m| m.len())
    }

    /// Whether it is still downloading.
    pub(crate) fn running(&mut self) -> TestResult<bool> {
        self.process.running()
    }

    /// The body's file.
    pub(crate) fn body(&self) -> &Path {
        &self.body
    }

    /// Waits up to `timeout` for the download to end; fails with the client's log if it
    /// failed.
    pub(crate) fn finish(&mut self, timeout: Duration) -> TestResult<Downloaded> {
        let status = self.process.wait(timeout)?;
        if !status.success() {
            return Err(self.process.failure(&format!("failed ({status})")));
        }
        let result: Value = serde_json::from_str(&std::fs::read_to_string(&self.result)?)?;
        let millis =
            |key: &str| Duration::from_secs_f64(result[key].as_f64().unwrap_or_default() / 1000.0);
        Ok(Downloaded {
            status: result["status"]
                .as_u64()
                .and_then(|s| s.try_into().ok())
                .unwrap_or_default(),
            length: result["length"].as_u64().unwrap_or_default(),
            elapsed: millis("elapsed_ms"),
            longest_pause: millis("longest_pause_ms"),
        })
    }
}

/// What one aioquic connection got, or why it failed.
pub(crate) type WhoamiAnswers = Result<Whoami, String>;

/// One aioquic connection's `/whoami` answers.
#[derive(Debug)]
pub(crate) struct Whoami {
    /// From its first Initial to the handshake's end.
    pub handshake: Duration,
    /// The server's answers, in order.
    pub answers: Vec<Value>,
}

/// Opens `connections` concurrent aioquic connections to `server`, each asking `/whoami`
/// `requests` times in a row. With `split_hello`, each connection's ClientHello takes two
/// Initial datagrams (as a post-quantum key share makes it), both with the client's DCID.
pub(crate) fn aioquic_whoami(
    server: SocketAddr,
    connections: usize,
    requests: usize,
    split_hello: bool,
    timeout: Duration,
) -> TestResult<Vec<WhoamiAnswers>> {
    aioquic_whoami_on(None, server, connections, requests, split_hello, timeout)
}

/// [`aioquic_whoami`] run on `host` (a network namespace), or here.
pub(crate) fn aioquic_whoami_on(
    host: Option<&Host>,
    server: SocketAddr,
    connections: usize,
    requests: usize,
    split_hello: bool,
    timeout: Duration,
) -> TestResult<Vec<WhoamiAnswers>> {
    let mut command = aioquic("whoami", server);
    command
        .args([connections.to_string(), requests.to_string()])
        .args(split_hello.then_some("split-hello"));
    if let Some(host) = host {
        command = host.wrap(&command);
    }
    let output = run("aioquic client", &mut command, timeout)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("aioquic client failed ({}): {stderr}", output.status).into());
    }
    let reply: Value = serde_json::from_slice(&output.stdout)?;
    let answers = reply["connections"]
        .as_array()
        .ok_or_else(|| format!("no connections in {reply}"))?;
    Ok(answers
        .iter()
        .map(|answer| match answer["error"].as_str() {
            Some(error) => Err(error.to_owned()),
            None => Ok(Whoami {
                handshake: Duration::from_secs_f64(
                    answer["handshake_ms"].as_f64().unwrap_or_default() / 1000.0,
                ),
                answers: answer["whoami"].as_array().cloned().unwrap_or_default(),
            }),
        })
        .collect())
}

/// The median and the longest handshake of the connections that succeeded, for reports.
pub(crate) fn handshake_times(connections: &[WhoamiAnswers]) -> String {
    let mut times: Vec<Duration> = connections
        .iter()
        .filter_map(|c| Some(c.as_ref().ok()?.handshake))
        .collect();
    times.sort();
    match (times.get(times.len() / 2), times.last()) {
        (Some(median), Some(max)) => format!("handshake median {median:.1?}, max {max:.1?}"),
        _ => "no handshake".to_owned(),
    }
}
