//! One backend of a client: its connection pool, health, latency estimate, load-report
//! weight and counters; it tells outlier detection how its requests end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body::Body;

use crate::balancing::ewma::PeakEwma;
use crate::balancing::health::{HealthCheck, HealthTracker};
use crate::balancing::outlier::Outliers;
use crate::balancing::picker::Load;
use crate::balancing::wrr::report::{LOAD_HEADER, LoadReport};
use crate::balancing::wrr::weight::{Weight, WrrSettings};
use crate::connections::lease::RequestObserver;
use crate::connections::plan;
use crate::connections::pool::Pool;
use crate::connections::shared::ConnectSettings;
use crate::error::BoxError;
use crate::requests::body::{Deadline, ResponseBody};
use crate::requests::request::{self, Failure, RequestHead};
use crate::stats::snapshot::{BackendSnapshot, bump, read};
use crate::sync::lock;

/// A backend address and everything the client keeps about it.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) pool: Arc<Pool>,
    health: Mutex<HealthTracker>,
    latency: Mutex<PeakEwma>,
    weight: Mutex<Weight>,
    wrr: WrrSettings,
    /// Requests picked for it that have no connection yet ([`Picked`]): counted as load
    /// already, so that load-aware pickers (bounded loads above all) see a burst before its
    /// handshake ends, and the next pick sees this one.
    connecting: AtomicU64,
    /// The client's outlier detection, if on (shared by its backends).
    outliers: Option<Arc<Mutex<Outliers>>>,
}

/// What a backend shares with the other backends of its client.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Arc<ConnectSettings>,
    pub(crate) limits: plan::Limits,
    pub(crate) wrr: WrrSettings,
    pub(crate) outliers: Option<Arc<Mutex<Outliers>>>,
}

impl Backend {
    pub(crate) fn new(addr: SocketAddr, shared: &Shared) -> Arc<Self> {
        Arc::new(Self {
            addr,
            pool: Pool::new(addr, shared.settings.clone(), shared.limits),
            health: Mutex::default(),
            latency: Mutex::default(),
            weight: Mutex::default(),
            connecting: AtomicU64::new(0),
            outliers: shared.outliers.clone(),
            wrr: shared.wrr,
        })
    }

    /// Counts one request as load here from now on: the picker chose this backend, and the
    /// request is on its way to a connection.
    pub(crate) fn reserve(self: &Arc<Self>) -> Picked {
        bump(&self.connecting);
        Picked(self.clone())
    }

    /// Whether health checks find it healthy (always, without health checks).
    pub(crate) fn is_healthy(&self) -> bool {
        lock(&self.health).is_healthy()
    }

    /// Whether its last connection attempt failed.
    pub(crate) fn is_failing(&self) -> bool {
        self.pool.is_failing()
    }

    /// Records a health check result; returns the new state when it changed.
    pub(crate) fn observe_health(&self, ok: bool, check: &HealthCheck) -> Option<bool> {
        lock(&self.health).observe(ok, check)
    }

    /// What the picker needs to know now.
    pub(crate) fn load(&self, now: Instant) -> Load {
        let in_flight = read(&self.pool.stats.in_flight) + read(&self.connecting);
        Load {
            in_flight: usize::try_from(in_flight).unwrap_or(usize::MAX),
            latency: lock(&self.latency).estimate(now),
            weight: lock(&self.weight).current(now, &self.wrr),
        }
    }

    /// Whether outlier detection has it ejected now.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.outliers
            .as_ref()
            .is_some_and(|outliers| lock(outliers).standing(self.addr, now).ejected)
    }

    /// Tells outlier detection how a request ended.
    fn outcome(&self, ok: bool) {
        if let Some(outliers) = &self.outliers {
            lock(outliers).observe(self.addr, ok, Instant::now());
        }
    }

    pub(crate) fn snapshot(&self) -> BackendSnapshot {
        let stats = &self.pool.stats;
        let now = Instant::now();
        let outlier = self
            .outliers
            .as_ref()
            .map(|outliers| lock(outliers).standing(self.addr, now))
            .unwrap_or_default();
        BackendSnapshot {
            addr: self.addr,
            healthy: self.is_healthy(),
            failing: self.is_failing(),
            in_flight: read(&stats.in_flight),
            requests: read(&stats.requests),
            errors: read(&stats.errors),
            connections_open: self.pool.open_count() as u64,
            server_ids: self.pool.server_ids(),
            connections_opened: read(&stats.connections_opened),
            connect_failures: read(&stats.connect_failures),
            connections_closed: stats.close_counts(),
            replacements: read(&stats.replacements),
            resumed: read(&stats.resumed),
            zero_rtt_accepted: read(&stats.zero_rtt_accepted),
            zero_rtt_rejected: read(&stats.zero_rtt_rejected),
            latency: lock(&self.latency).estimate(now),
            weight: lock(&self.weight).current(now, &self.wrr),
            ejected: outlier.ejected,
            ejections: outlier.ejections,
        }
    }
}

/// A backend a picker chose for one attempt, counted as load there from the pick until the
/// attempt has its connection (its lease counts it from then on), or is dropped.
pub(crate) struct Picked(Arc<Backend>);

impl Picked {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Sends the attempt: a connection from the pool, then the exchange. A failed
    /// connection attempt leaves the request unprocessed.
    pub(crate) async fn send<B>(
        self,
        head: &RequestHead,
        body: B,
        deadline: Deadline,
    ) -> Result<http::Response<ResponseBody>, Failure<B>>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let backend = self.0.clone();
        let acquired = backend.pool.acquire(backend.clone()).await;
        drop(self);
        let lease = match acquired {
            Ok(lease) => lease,
            Err(error) => {
                // Counted here: no lease was made to count it.
                bump(&backend.pool.stats.requests);
                backend.failed(true);
                return Err(Failure::Unprocessed { error, body });
            }
        };
        request::send_on(lease, head, body, Some(deadline)).await
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestObserver for Backend {
    fn started(&self) {
        let stats = &self.pool.stats;
        bump(&stats.requests);
        bump(&stats.in_flight);
    }

    fn responded(&self, latency: Duration, status: http::StatusCode, headers: &http::HeaderMap) {
        let now = Instant::now();
        lock(&self.latency).observe(latency, now);
        if let Some(report) = headers.get(LOAD_HEADER).and_then(LoadReport::parse) {
            lock(&self.weight).observe(&report, now, &self.wrr);
        }
        self.outcome(!status.is_server_error());
    }

    fn failed(&self, unanswered: bool) {
        bump(&self.pool.stats.errors);
        if unanswered {
            self.outcome(false);
        }
    }

    fn ended(&self) {
        self.pool.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.pool.touch();
    }
}
