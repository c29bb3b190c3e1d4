//! The client: picks a backend per request, sends it on a pooled connection, retries
//! elsewhere what no server processed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body::Body;
use prometheus_client::registry::Registry;
use tokio::task::AbortHandle;

use crate::balancing::affinity::key::{HashKey, HashPolicy};
use crate::balancing::balancer::Balancer;
use crate::builder::ClientBuilder;
use crate::connection::Connection;
use crate::discovery::target::Target;
use crate::error::{BoxError, Error};
use crate::requests::body::{Deadline, ResponseBody};
use crate::requests::request::{Failure, RequestHead};
use crate::requests::retry::RetryBudget;
use crate::stats::prometheus::Collector;
use crate::stats::snapshot::ClientSnapshot;
use crate::tls::Trust;

/// A request extension that overrides the client's timeout for one request.
///
/// ```
/// use std::time::Duration;
///
/// let mut request = http::Request::get("/delay/100").body(String::new())?;
/// request.extensions_mut().insert(qlb_client::RequestTimeout(Duration::from_secs(2)));
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// An HTTP/3 client that balances requests over the backends of a [`Target`] itself: a
/// resolver finds the backends (static, a [`BackendList`](crate::BackendList), or DNS polled),
/// optionally subsetted; a picker chooses one per request among the healthy ones; each
/// backend has a pool of connections with a minimum size, a max lifetime (the replacement is
/// ready before the old connection stops taking requests) and an idle timeout. After GOAWAY a
/// connection takes no new request and is replaced; a request no server processed (GOAWAY,
/// H3_REQUEST_REJECTED, no connection) is retried once on another backend, and one that
/// never left the client (its connection had read a GOAWAY) does not use up that retry;
/// every other error goes back to the caller.
///
/// Clones share everything. Dropping the last one stops its tasks and drains its connections.
///
/// ```no_run
/// use std::time::Duration;
/// use http_body_util::BodyExt;
/// use qlb_client::{Client, HealthCheck, PickerKind, Trust};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder("dns://backends.default.svc.cluster.local:443".parse()?, Trust::Insecure)
///     .picker(PickerKind::PeakEwma)
///     .min_connections(1)
///     .max_lifetime(Duration::from_secs(300))
///     .health_check(HealthCheck::default())
///     .build()?;
/// let response = client.send(http::Request::get("/whoami").body(String::new())?).await?;
/// let body = response.into_body().collect().await?.to_bytes();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) server_name: Arc<str>,
    pub(crate) timeout: Duration,
    /// Where the hashing pickers find a request's key without a [`HashKey`].
    pub(crate) hash_policy: HashPolicy,
    pub(crate) retries: Arc<AtomicU64>,
    /// The resolver, maintenance and health-check tasks.
    pub(crate) tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.balancer.close();
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server_name", &self.inner.server_name)
            .field("backends", &self.inner.balancer.backends().len())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts configuring a client for `target`, trusting `trust`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = qlb_client::Client::builder("127.0.0.1:4433".parse()?, qlb_client::Trust::Insecure)
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(target: Target, trust: Trust) -> ClientBuilder {
        ClientBuilder::new(target, trust)
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sends `request` to a backend the picker chooses and returns the response once its
    /// headers arrive; the body streams in as it is read, the request body streams out from
    /// a task. A relative URI (`/path`) goes to the client's server name.
    ///
    /// The timeout (the client's, or the request's [`RequestTimeout`]) covers the whole
    /// exchange, waiting for the first resolution and reading the body included. A request
    /// no server processed is retried once on another backend (the same one if it is the
    /// only healthy one), within the same timeout; one that never left the client, because
    /// its connection had read a GOAWAY, goes out again without using up that retry (at most
    /// four attempts in all).
    ///
    /// ```no_run
    /// # async fn demo(client: qlb_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use http_body_util::BodyExt;
    ///
    /// let response = client.send(http::Request::get("/whoami").body(String::new())?).await?;
    /// assert!(response.status().is_success());
    /// let whoami = response.into_body().collect().await?.to_bytes();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, Error>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let timeout = request
            .extensions()
            .get::<RequestTimeout>()
            .map_or(self.inner.timeout, |timeout| timeout.0);
        let deadline = tokio::time::Instant::now() + timeout;
        let key = request
            .extensions()
            .get::<HashKey>()
            .map(HashKey::hash)
            .or_else(|| self.inner.hash_policy.key(request.headers()));
        let (parts, body) = request.into_parts();
        let head = RequestHead::new(parts, &self.inner.server_name)?;
        let attempts = self.attempts(&head, key, body, (deadline, timeout));
        tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or(Err(Error::Timeout(timeout)))
    }

    /// The first attempt, and the retries of an unprocessed request on another backend
    /// that its [`RetryBudget`] allows.
    async fn attempts<B>(
        &self,
        head: &RequestHead,
        key: Option<u64>,
        body: B,
        deadline: Deadline,
    ) -> Result<http::Response<ResponseBody>, Error>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let balancer = &self.inner.balancer;
        let mut budget = RetryBudget::default();
        let (mut body, mut previous) = (body, None);
        loop {
            let picked = balancer.pick(previous, key).await?;
            let addr = picked.addr();
            let (error, unsent) = match picked.send(head, body, deadline).await {
                Ok(response) => return Ok(response),
                Err(Failure::Failed(error)) => return Err(error),
                Err(Failure::Unprocessed { error, body }) => (error, body),
            };
            if !budget.again_after(&error) {
                return Err(error);
            }
            tracing::debug!(backend = %addr, %error, "not processed: retrying on another backend");
            self.inner.retries.fetch_add(1, Ordering::Relaxed);
            (body, previous) = (unsent, Some(addr));
        }
    }

    /// The connections that take requests now, over all backends: for a load generator
    /// that migrates them ([`Connection::add_path`]).
    ///
    /// ```no_run
    /// # fn demo(client: qlb_client::Client) {
    /// for connection in client.connections() {
    ///     println!("{} -> {}", connection.id(), connection.remote_addr());
    /// }
    /// # }
    /// ```
    pub fn connections(&self) -> Vec<Connection> {
        self.inner
            .balancer
            .backends()
            .iter()
            .flat_map(|backend| backend.pool.ready())
            .map(Connection::new)
            .collect()
    }

    /// The client's numbers now: per backend in flight, requests, errors, connections
    /// opened and closed by reason, replacements; and retries.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = qlb_client::Client::builder("127.0.0.1:4433".parse()?, qlb_client::Trust::Insecure)
    ///     .build()?;
    /// assert_eq!(client.snapshot().requests(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn snapshot(&self) -> ClientSnapshot {
        self.inner
            .balancer
            .snapshot(self.inner.retries.load(Ordering::Relaxed))
    }

    /// Registers the client's metrics (`qlb_client_*`, labelled by backend) in `registry`;
    /// they are read from the live counters at each scrape.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = qlb_client::Client::builder("127.0.0.1:4433".parse()?, qlb_client::Trust::Insecure)
    ///     .build()?;
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// client.register_metrics(&mut registry);
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry)?;
    /// assert!(text.contains("qlb_client_retries_total 0"), "{text}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn register_metrics(&self, registry: &mut Registry) {
        // The balancer is held weakly so that a registry outliving the client keeps nothing
        // alive (it then reports no backends).
        let balancer = Arc::downgrade(&self.inner.balancer);
        let retries = self.inner.retries.clone();
        let collector = Collector::new(move || {
            balancer
                .upgrade()
                .map_or_else(ClientSnapshot::default, |balancer| {
                    balancer.snapshot(retries.load(Ordering::Relaxed))
                })
        });
        registry
            .sub_registry_with_prefix("qlb_client")
            .register_collector(Box::new(collector));
    }
}
