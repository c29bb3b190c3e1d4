//! The request loops: `concurrency` tasks, each sending one request at a time through the
//! clients in turn, until a duration, a request count, or `stop`; and, when asked, a task
//! that migrates one connection every period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use qlb_client::{Client, Connection, Error, HashKey, Http3ErrorKind, ServedBy};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::balancing::Balancing;
use super::connections::{Connections, Resumption};
use super::migrate::migrate;
use super::tally::{Summary, Tally};

/// When a load run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    /// After this long (requests in flight then finish and count).
    Duration(Duration),
    /// After this many requests.
    Requests(u64),
    /// When [`Load::stop`] is called.
    Manual,
}

/// What to send, how much, and how often to migrate.
#[derive(Clone, Debug)]
pub(crate) struct LoadSpec {
    /// The request's path and query (`/whoami`); `/whoami` answers are tallied by server ID.
    pub path: http::uri::PathAndQuery,
    /// Request loops running at once.
    pub concurrency: usize,
    /// When to stop.
    pub limit: Limit,
    /// Migrate one connection (probe + switch to a new local port) every period.
    pub migrate_every: Option<Duration>,
    /// Affinity keys the requests carry, for the hashing pickers.
    pub keys: Option<Keys>,
}

/// Each request carries one of `count` keys (`key-0` ...), at random: in the `header`
/// field, or else as a [`HashKey`] extension.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub count: u64,
    pub header: Option<http::HeaderName>,
}

impl Keys {
    /// `request` with key number `draw % count`.
    fn apply<B>(&self, request: &mut http::Request<B>, draw: u64) {
        let key = format!("key-{}", draw % self.count.max(1));
        match &self.header {
            Some(name) => {
                if let Ok(value) = http::HeaderValue::try_from(key) {
                    request.headers_mut().insert(name.clone(), value);
                }
            }
            None => {
                request.extensions_mut().insert(HashKey::new(key));
            }
        }
    }
}

/// A running load: read its tally while it runs, stop it, collect the summary.
pub(crate) struct Load {
    clients: Arc<[Client]>,
    tally: Arc<Mutex<Tally>>,
    started: Instant,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Load {
    /// Starts `spec` over `clients` (requests go to them in turn). Inside a tokio runtime.
    pub(crate) fn start(clients: Vec<Client>, spec: LoadSpec) -> Self {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (stop, stopped) = watch::channel(false);
        let clients: Arc<[Client]> = clients.into();
        let issued = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let backend_label = BackendLabel::for_path(spec.path.path());
        for worker in 0..spec.concurrency.max(1) {
            let request_loop = RequestLoop {
                clients: clients.clone(),
                next_client: worker,
                path: spec.path.clone(),
                keys: spec.keys.clone(),
                backend_label,
                limit: spec.limit,
                issued: issued.clone(),
                tally: tally.clone(),
                stopped: stopped.clone(),
            };
            tasks.spawn(request_loop.run());
        }
        if let Some(every) = spec.migrate_every {
            tasks.spawn(migrations(
                clients.clone(),
                every,
                tally.clone(),
                stopped.clone(),
            ));
        }
        if let Limit::Duration(duration) = spec.limit {
            let stop = stop.clone();
            tasks.spawn(async move {
                tokio::time::sleep(duration).await;
                stop.send_replace(true);
            });
        }
        Self {
            clients,
            tally,
            started: Instant::now(),
            stop,
            tasks,
        }
    }

    /// A view of the counts, to watch while [`Load::finish`] waits.
    pub(crate) fn view(&self) -> LoadView {
        LoadView {
            tally: self.tally.clone(),
            started: self.started,
        }
    }

    /// Asks the loops to end after their current request.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits for the run to end (by its limit, or after [`Load::stop`]) and sums it up.
    pub(crate) async fn finish(mut self) -> Summary {
        // A task ends only once the run is over (stopped, timed out, or out of request
        // tickets, which are then out for every loop): stop the others too.
        while self.tasks.join_next().await.is_some() {
            self.stop.send_replace(true);
        }
        let elapsed = self.started.elapsed();
        let mut summary = {
            let tally = lock(&self.tally);
            let mut summary = tally.summary(elapsed);
            summary.latency_plot = tally.latency_plot();
            summary
        };
        let snapshots: Vec<_> = self.clients.iter().map(Client::snapshot).collect();
        summary.balancing = Balancing::of(&snapshots);
        summary.connections = Connections::of(&snapshots);
        summary.resumption = Resumption::of(&snapshots);
        summary
    }
}

/// The live counts of a [`Load`].
#[derive(Clone)]
pub(crate) struct LoadView {
    tally: Arc<Mutex<Tally>>,
    started: Instant,
}

impl LoadView {
    /// The counts so far.
    pub(crate) fn tally(&self) -> Tally {
        lock(&self.tally).clone()
    }

    /// Since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    // A poisoned tally is still a count; keep going.
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an answered request is attributed to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackendLabel {
    /// The `server_id` of a `/whoami` JSON answer.
    WhoamiServerId,
    /// The backend address the client sent it to.
    Address,
}

impl BackendLabel {
    fn for_path(path: &str) -> Self {
        if path.ends_with("/whoami") {
            Self::WhoamiServerId
        } else {
            Self::Address
        }
    }
}

struct RequestLoop {
    clients: Arc<[Client]>,
    next_client: usize,
    path: http::uri::PathAndQuery,
    keys: Option<Keys>,
    backend_label: BackendLabel,
    limit: Limit,
    issued: Arc<AtomicU64>,
    tally: Arc<Mutex<Tally>>,
    stopped: watch::Receiver<bool>,
}

impl RequestLoop {
    async fn run(mut self) {
        while !*self.stopped.borrow() && self.claim() {
            let client = &self.clients[self.next_client % self.clients.len()];
            self.next_client = self.next_client.wrapping_add(1);
            let started = Instant::now();
            let outcome = self.request(client).await;
            let mut tally = lock(&self.tally);
            match outcome {
                Ok(backend) => tally.success(started.elapsed(), backend.as_deref()),
                Err(kind) => tally.error(&kind),
            }
        }
    }

    /// Takes a ticket under a request limit.
    fn claim(&self) -> bool {
        match self.limit {
            Limit::Requests(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            Limit::Duration(_) | Limit::Manual => true,
        }
    }

    /// One request: the backend it was served by, or the kind of error.
    async fn request(&self, client: &Client) -> Result<Option<String>, String> {
        let mut request = http::Request::get(self.path.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|_| "invalid_request".to_owned())?;
        if let Some(keys) = &self.keys {
            keys.apply(&mut request, rand::random());
        }
        let response = client.send(request).await.map_err(|err| failed(&err))?;
        let status = response.status();
        let served_by = response.extensions().get::<ServedBy>().copied();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| failed(&err))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("status_{}", status.as_u16()));
        }
        Ok(match self.backend_label {
            BackendLabel::WhoamiServerId => whoami_server_id(&body),
            BackendLabel::Address => served_by.map(|served| served.backend.to_string()),
        })
    }
}

/// The `server_id` of a `/whoami` answer.
fn whoami_server_id(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    json.get("server_id")?.as_str().map(str::to_owned)
}

/// Logs a failed request (at debug: under load there may be many) and names its kind.
fn failed(err: &Error) -> String {
    tracing::debug!("request failed: {err}");
    error_kind(err)
}

/// A short, stable name for a request error, for the summary.
fn error_kind(err: &Error) -> String {
    match err {
        Error::NoBackends(_) => "no_backends",
        Error::NoHealthyBackends(_) => "no_healthy_backends",
        Error::Timeout(_) => "timeout",
        Error::Connect { .. } => "connect",
        Error::GoingAway => "going_away",
        Error::Rejected => "rejected",
        Error::Http3(err) => return http3_error_kind(err.kind()),
        Error::RequestBody(_) => "request_body",
        Error::InvalidRequest(_) => "invalid_request",
        _ => "other",
    }
    .to_owned()
}

/// `http3` and what happened, with its code: a count of errors says which failure it was.
fn http3_error_kind(kind: Http3ErrorKind) -> String {
    let what = match kind {
        Http3ErrorKind::StreamReset { code } => format!("stream_reset 0x{code:x}"),
        Http3ErrorKind::StreamFailed { code } => format!("stream_failed 0x{code:x}"),
        Http3ErrorKind::GoingAway => "going_away".to_owned(),
        Http3ErrorKind::HeaderTooBig => "header_too_big".to_owned(),
        Http3ErrorKind::ConnectionClosed { code } => format!("closed_by_peer 0x{code:x}"),
        Http3ErrorKind::LocallyClosed { code: Some(code) } => format!("closed 0x{code:x}"),
        Http3ErrorKind::LocallyClosed { code: None } => "closed".to_owned(),
        Http3ErrorKind::Quic(quic) => format!("quic {quic:?}"),
        Http3ErrorKind::TimedOut => "timed_out".to_owned(),
        _ => "other".to_owned(),
    };
    format!("http3 {what}")
}

/// Every `every`, migrates the next connection of the clients (in turn).
async fn migrations(
    clients: Arc<[Client]>,
    every: Duration,
    tally: Arc<Mutex<Tally>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut turn = 0_usize;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
        // Only connections past their handshake may move (RFC 9000 section 9).
        let connections: Vec<_> = clients
            .iter()
            .flat_map(Client::connections)
            .filter(Connection::is_handshake_confirmed)
            .collect();
        let Some(connection) = connections.get(turn % connections.len().max(1)) else {
            continue;
        };
        turn = turn.wrapping_add(1);
        let outcome = migrate(connection).await;
        let mut tally = lock(&tally);
        match outcome {
            Ok(_) => tally.migration(),
            // It drained (GOAWAY, max age) while it was being moved: nothing left to move.
            Err(_) if connection.is_draining() => tally.migration_skipped(),
            Err(kind) => tally.migration_failed(kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoami_answers_are_labelled_by_server_id() {
        assert_eq!(
            BackendLabel::for_path("/whoami"),
            BackendLabel::WhoamiServerId
        );
        assert_eq!(BackendLabel::for_path("/bytes/10"), BackendLabel::Address);
        let body = br#"{"name":"b1","server_id":"0001","peer":"127.0.0.1:5"}"#;
        assert_eq!(whoami_server_id(body).as_deref(), Some("0001"));
        assert_eq!(whoami_server_id(b"not json"), None);
        assert_eq!(whoami_server_id(br#"{"server_id":1}"#), None);
    }

    #[test]
    fn error_kinds_are_short_names() {
        assert_eq!(
            error_kind(&Error::Timeout(Duration::from_secs(1))),
            "timeout"
        );
        assert_eq!(error_kind(&Error::GoingAway), "going_away");
        assert_eq!(
            http3_error_kind(Http3ErrorKind::StreamReset { code: 0x10c }),
            "http3 stream_reset 0x10c"
        );
    }
}
