//! Headless Chromium driven over the DevTools protocol (CDP), for tests in which a real
//! browser is the client: Debian's `chromium` (`scripts/test.sh` installs it; in CI a
//! missing browser fails the test, [`crate::peers::require`]).
//!
//! The protocol runs over `--remote-debugging-pipe` (Chromium reads commands on its fd 3 and
//! writes answers on fd 4, each a JSON text ended by a NUL), so no websocket client is
//! needed: a shell hands the child's stdin and stdout to Chromium as fds 3 and 4. One thread
//! reads the answers; every call waits with a deadline.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::TestResult;

/// The browser's program (Debian's `chromium` wrapper script).
pub const PROGRAM: &str = "chromium";

/// How long one protocol call may take (a loaded two-core CI machine, a cold browser).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Page::wait_for`] evaluates its condition.
const POLL: Duration = Duration::from_millis(50);

/// Whether Chromium runs ([`crate::peers::require`]: in CI a missing browser fails).
pub fn available() -> bool {
    crate::peers::require(
        "chromium",
        PROGRAM,
        &["--version"],
        "apt-get install chromium",
    )
}

/// How every browser resolves names: `localhost` to 127.0.0.1 only (the load balancers
/// listen there), every other name to nothing, so the browser's own background traffic
/// (sign-in, updates) never leaves the machine; IP literals as they are.
const RESOLVER_RULES: &str =
    "--host-resolver-rules=MAP localhost 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1";

/// The flags that make Chromium speak HTTP/3 to `origin` (`localhost:PORT`) at once, with
/// no TCP first, trusting the certificate whose SPKI hash is `spki` (base64 SHA-256,
/// [`crate::SelfSigned::spki_sha256_base64`]).
pub fn quic_flags(origin: &str, spki: &str) -> Vec<String> {
    vec![
        "--enable-quic".to_owned(),
        format!("--origin-to-force-quic-on={origin}"),
        format!("--ignore-certificate-errors-spki-list={spki}"),
    ]
}

/// A headless Chromium with a fresh profile; killed (and its profile removed) on drop.
pub struct Browser {
    child: Child,
    commands: Mutex<Commands>,
    /// The browser's log (stderr), kept for failures.
    log: PathBuf,
    profile: tempfile::TempDir,
}

struct Commands {
    to_browser: ChildStdin,
    from_browser: Receiver<Value>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium headless with `extra` flags (for example [`quic_flags`] and
    /// `--log-net-log=FILE`) and a window of `width` by `height` pixels.
    pub fn launch(extra: &[String], (width, height): (u32, u32)) -> TestResult<Self> {
        let profile = tempfile::tempdir()?;
        let log = profile.path().join("chromium.log");
        let mut command = Command::new("sh");
        // fd 3 and 4 are the protocol's; Chromium's own stdout joins its log.
        command
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 0</dev/null 1>&2")
            .arg(PROGRAM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                "--no-proxy-server",
                RESOLVER_RULES,
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        let mut child = command.spawn()?;
        let (to_browser, from_chromium) = match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => (stdin, stdout),
            _ => return Err("chromium: no pipes".into()),
        };
        let (sender, from_browser) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_chromium);
            let mut message = Vec::new();
            // Ends when the browser exits (EOF) or the receiver is gone.
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if sender.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        let browser = Self {
            child,
            commands: Mutex::new(Commands {
                to_browser,
                from_browser,
                next_id: 1,
            }),
            log,
            profile,
        };
        browser.call(None, "Browser.getVersion", json!({}))?;
        Ok(browser)
    }

    /// Opens a new tab on `about:blank`.
    pub fn new_page(&self) -> TestResult<Page<'_>> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target = target["targetId"].as_str().ok_or("no targetId")?;
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("no sessionId")?
            .to_owned();
        let page = Page {
            browser: self,
            session,
        };
        page.call("Page.enable", json!({}))?;
        page.call("Runtime.enable", json!({}))?;
        Ok(page)
    }

    /// The end of the browser's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The browser's profile directory (a place for the test's netlog, say).
    pub fn dir(&self) -> &Path {
        self.profile.path()
    }

    /// Sends `method` (to the tab of `session`, or to the browser) and waits for its answer.
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> TestResult<Value> {
        let mut commands = self
            .commands
            .lock()
            .map_err(|_| "the browser's pipe is poisoned")?;
        let id = commands.next_id;
        commands.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        commands.to_browser.write_all(&bytes)?;
        commands.to_browser.flush()?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        // Events in between are of no interest: tests poll the page's state instead.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match commands.from_browser.recv_timeout(left) {
                Ok(answer) if answer["id"] == id => {
                    if let Some(error) = answer.get("error") {
                        return Err(format!("{method}: {error}").into());
                    }
                    return Ok(answer["result"].clone());
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{method}: no answer in {CALL_TIMEOUT:?}").into());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "{method}: the browser has gone; its log:\n{}",
                        self.log_tail()
                    )
                    .into());
                }
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked to close, the browser takes its helper processes with it; killed, it may
        // leave them behind. (`sh` exec'd Chromium: the child is the browser itself.)
        if let Ok(commands) = self.commands.get_mut() {
            let close = b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0";
            let _ = commands.to_browser.write_all(close);
            let _ = commands.to_browser.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab of a [`Browser`].
pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

impl Page<'_> {
    /// Sends `method` to this tab and waits for its answer.
    pub fn call(&self, method: &str, params: Value) -> TestResult<Value> {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Navigates to `url` and waits up to `timeout` until the document has loaded.
    pub fn navigate(&self, url: &str, timeout: Duration) -> TestResult {
        // The answer comes once the new document is committed: the old one is gone.
        let answer = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(error) = answer.get("errorText") {
            return Err(format!("navigating to {url}: {error}").into());
        }
        self.wait_for("document.readyState === 'complete'", timeout)
    }

    /// Evaluates `expression` in the page (awaiting it if it is a promise); returns its
    /// value as JSON, or the page's exception as the error.
    pub fn evaluate(&self, expression: &str) -> TestResult<Value> {
        let answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        )?;
        if let Some(exception) = answer.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}").into());
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Evaluates `condition` every 50 ms until it is `true`, for up to `timeout`.
    pub fn wait_for(&self, condition: &str, timeout: Duration) -> TestResult {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.evaluate(condition);
            if matches!(last, Ok(Value::Bool(true))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{condition}: not true after {timeout:?} ({last:?})").into());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `headers` (name to value) with every request of this tab.
    pub fn set_extra_headers(&self, headers: Value) -> TestResult {
        self.call("Network.enable", json!({}))?;
        self.call("Network.setExtraHTTPHeaders", json!({"headers": headers}))?;
        Ok(())
    }

    /// Writes a PNG of what the tab shows to `path`.
    pub fn screenshot(&self, path: &Path) -> TestResult {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        std::fs::write(
            path,
            base64::engine::general_purpose::STANDARD.decode(data)?,
        )?;
        Ok(())
    }
}

/// A Chromium netlog (`--log-net-log=FILE`, complete once the browser has exited): what the
/// network stack did, to prove QUIC was used and to see why when it was not.
pub struct NetLog {
    /// Event type names by number, from the log's constants.
    names: std::collections::HashMap<u64, String>,
    events: Vec<Value>,
}

impl NetLog {
    /// Reads the netlog at `path`.
    pub fn read(path: &Path) -> TestResult<Self> {
        let log: Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let names = log["constants"]["logEventTypes"]
            .as_object()
            .ok_or("a netlog without event types")?
            .iter()
            .filter_map(|(name, id)| Some((id.as_u64()?, name.clone())))
            .collect();
        let events = log["events"].as_array().cloned().unwrap_or_default();
        Ok(Self { names, events })
    }

    /// The parameters of every event of type `name` (`HTTP3_GOAWAY_RECEIVED`, ...), in order.
    pub fn params(&self, name: &str) -> Vec<&Value> {
        self.named()
            .filter(|(n, _)| *n == name)
            .map(|(_, event)| &event["params"])
            .collect()
    }

    /// One line per event whose type name contains any of `words`, in order, with its time
    /// and parameters: the story of a connection for a failure message.
    pub fn story(&self, words: &[&str]) -> String {
        self.named()
            .filter(|(name, _)| words.iter().any(|word| name.contains(word)))
            .map(|(name, event)| format!("{} {name} {}\n", event["time"], event["params"]))
            .collect()
    }

    /// Every event with its type's name.
    fn named(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.events.iter().filter_map(|event| {
            let name = self.names.get(&event["type"].as_u64()?)?;
            Some((name.as_str(), event))
        })
    }
}
