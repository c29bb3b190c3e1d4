//! `qlb serve`: an HTTP/3 backend for the load balancer, serving the built-in routes
//! (`/whoami`, `/healthz`, `/bytes/N`, `/delay/MS`, `/echo`) with QUIC-LB connection IDs,
//! until SIGTERM or SIGINT starts a graceful shutdown. Scripts rely on this interface:
//! extend it, do not rename.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::durations::{up_to_a_day, up_to_a_year};
use crate::etcd_access::EtcdAccess;
use crate::process::{Threads, runtime};
use anyhow::{Context, Result, anyhow};
use axum::response::IntoResponse;
use clap::Args;
use prometheus_client::registry::Registry;
use qlb_etcd::{ClusterFollower, EtcdClient, JoinSpec, Membership, Reservation};
use qlb_lb::config::ClusterConfig;
use qlb_server::{GueReturn, GueSource, Identity, Server, builtin_routes};
use quic_lb::{Config, ServerId};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// UDP address to serve HTTP/3 on.
    #[arg(long)]
    listen: SocketAddr,
    /// This server's name, reported by /whoami.
    #[arg(long)]
    name: String,
    /// This server's QUIC-LB server ID, hex (the load balancer's `backend.server_id`). With
    /// --etcd it is allocated when not given, and claimed (refused if held) when given.
    #[arg(long, required_unless_present = "etcd")]
    server_id: Option<ServerId>,
    /// Join the fleet on etcd at these endpoints (`http://HOST:PORT` or `https://HOST:PORT`,
    /// comma-separated): take a server ID nobody holds, publish this server's addresses and
    /// state, mark it draining before a graceful shutdown and delete it at exit.
    #[arg(long, value_name = "URL", value_delimiter = ',', requires = "cluster")]
    etcd: Vec<String>,
    /// The fleet's name on etcd (keys under `/qlb/NAME/`).
    #[arg(long, value_name = "NAME", requires = "etcd")]
    cluster: Option<String>,
    #[command(flatten)]
    etcd_access: EtcdAccess,
    /// The address published on etcd for the load balancers [default: the bound --gue
    /// address, or the --listen one; refused when it is a wildcard].
    #[arg(long, value_name = "ADDR", requires = "etcd")]
    advertise: Option<SocketAddr>,
    /// How long this server's record on etcd outlives a crash (its lease).
    #[arg(long, value_parser = up_to_a_day, default_value = "10s", requires = "etcd")]
    etcd_ttl: Duration,
    /// How long this server's ID stays taken after it leaves or dies [default: the max
    /// connection age and grace plus 10%, or 1h without them].
    #[arg(long, value_parser = up_to_a_year, requires = "etcd")]
    server_id_quarantine: Option<Duration>,
    /// The cluster file: its [[quic_lb]] tables and cluster secret. A load balancer's whole
    /// file does too: the load balancer's own sections are ignored. With --etcd, the
    /// cluster's record on etcd (`qlb cluster init`) takes precedence and the file is needed
    /// only when there is none.
    #[arg(long, required_unless_present = "etcd")]
    config: Option<PathBuf>,
    /// Issue CIDs under this config rotation codepoint [default: the file's first table;
    /// with a cluster record on etcd, the record's, and this is refused].
    #[arg(long)]
    config_id: Option<u8>,
    /// TLS certificate chain, PEM [default: a fresh self-signed certificate for localhost].
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// TLS private key, PEM.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this TCP address (path /metrics).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// On SIGTERM/SIGINT, close connections still busy after this long.
    #[arg(long, value_parser = up_to_a_day, default_value = "30s")]
    shutdown_timeout: Duration,
    /// Drain connections (GOAWAY) once this old, +-10% jitter [default: never].
    #[arg(long, value_parser = up_to_a_year)]
    max_connection_age: Option<Duration>,
    /// After the max-age GOAWAY, close connections this much later [default: never].
    #[arg(long, value_parser = up_to_a_year)]
    max_connection_age_grace: Option<Duration>,
    /// Drain connections that have had no request in flight for this long [default: never].
    #[arg(long, value_parser = up_to_a_day)]
    idle_timeout: Option<Duration>,
    /// Also receive datagrams a load balancer in `mode = "gue"` encapsulates, on this UDP
    /// address (the load balancer's `backend.addr`). Replies go back encapsulated to the
    /// load balancer that sent the client's latest datagram, unless --direct-return.
    #[arg(long)]
    gue: Option<SocketAddr>,
    /// Answer GUE clients directly from the VIP address they sent to (direct server
    /// return); the VIP must be a local address (`ip addr add VIP/32 dev lo`).
    #[arg(long, requires = "gue")]
    direct_return: bool,
    /// Accept GUE only from these networks: the load balancers (`10.0.0.0/29`, `10.0.0.7`,
    /// `2001:db8::/64`; repeat or separate with commas) [default: any source, with a warning
    /// in the log].
    #[arg(long, requires = "gue", value_name = "NETWORK", value_delimiter = ',')]
    gue_allow: Vec<GueSource>,
    /// Advertise this address as the server's preferred address (RFC 9000 section 9.6):
    /// clients that support it (ngtcp2, Chromium) move to it after the handshake, so the load
    /// balancer carries only the handshake. It must reach this server directly; port 0: the
    /// port of `--listen`.
    #[arg(long, value_name = "ADDR")]
    preferred_address: Option<SocketAddr>,
    /// Refuse 0-RTT early data (on by default when the cluster file has a cluster_secret:
    /// resuming clients may then send safe requests, GET/HEAD/OPTIONS, before the handshake
    /// ends; others get 425 Too Early). Session tickets are still issued.
    #[arg(long = "no-0rtt")]
    no_0rtt: bool,
}

impl ServeArgs {
    pub(crate) fn run(self) -> Result<ExitCode> {
        crate::process::init_logging("info");
        let runtime = runtime(Threads::PerCore)?;
        runtime.block_on(self.serve())?;
        Ok(ExitCode::SUCCESS)
    }

    async fn serve(self) -> Result<()> {
        let etcd = match self.etcd.is_empty() {
            true => None,
            false => Some(Arc::new(self.etcd_access.client(&self.etcd)?)),
        };
        let (cluster, config, follower) = self.cluster_config(etcd.as_ref()).await?;
        let reservation = self.reserve_on_etcd(etcd.as_ref(), &config).await?;
        let codepoint = config.id().get();
        let server_id = match (&reservation, self.server_id) {
            (Some(reservation), _) => reservation.server_id(),
            (None, Some(server_id)) => server_id,
            (None, None) => return Err(anyhow!("--server-id is needed without --etcd")),
        };
        let mut builder = Server::builder(config, server_id).name(&self.name);
        match &cluster.cluster_secret {
            Some(secret) => builder = builder.cluster_secret(secret.as_bytes()),
            None => tracing::warn!(
                "the cluster has no cluster_secret: stateless resets will not work across servers"
            ),
        }
        if self.no_0rtt {
            builder = builder.zero_rtt(false);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            builder = builder.identity(Identity::from_pem_files(cert, key)?);
        }
        if let Some(age) = self.max_connection_age {
            builder = builder.max_connection_age(age);
        }
        if let Some(grace) = self.max_connection_age_grace {
            builder = builder.max_connection_age_grace(grace);
        }
        if let Some(idle) = self.idle_timeout {
            builder = builder.max_connection_idle(idle);
        }
        let gue_return = match self.direct_return {
            true => GueReturn::Direct,
            false => GueReturn::ThroughLoadBalancer,
        };
        if let Some(preferred) = self.preferred_address {
            builder = builder.preferred_address(preferred);
        }
        if let Some(gue) = self.gue {
            builder = builder
                .gue(gue, gue_return)
                .gue_sources(self.gue_allow.iter().copied());
        }
        let server = builder.bind(self.listen)?;
        let addr = server.local_addr().context("reading the bound address")?;
        if let Some(gue) = server.gue_addr() {
            match gue_return {
                GueReturn::ThroughLoadBalancer => tracing::info!(
                    "receiving GUE on {gue}; replies return through the load balancer \
                     (encapsulated to the sender of each client's latest datagram)"
                ),
                GueReturn::Direct => tracing::info!(
                    "receiving GUE on {gue}; replies return directly from the VIP (direct \
                     server return: each VIP must be a local address of this host)"
                ),
            }
            if !self.gue_allow.is_empty() {
                let sources: Vec<String> = self.gue_allow.iter().map(|s| s.to_string()).collect();
                tracing::info!("accepting GUE only from {}", sources.join(", "));
            }
        }

        if let Some(metrics_addr) = self.metrics {
            let listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("--metrics {metrics_addr}"))?;
            let bound = listener
                .local_addr()
                .context("reading the metrics address")?;
            tracing::info!("metrics on http://{bound}/metrics");
            tokio::spawn(serve_metrics(listener, server.metrics().clone()));
        }

        let membership = match reservation {
            Some(reservation) => {
                let (published, health) = self.published_addrs(addr, server.gue_addr())?;
                Some(Arc::new(
                    reservation
                        .publish(published, health)
                        .await
                        .context("publishing this server on etcd")?,
                ))
            }
            None => None,
        };
        let issuing = follower.map(|follower| {
            let server = server.clone();
            let rotate = move |config| server.rotate_config(config).map_err(|e| e.to_string());
            tokio::spawn(follower.follow_issuing(membership.clone(), codepoint, rotate))
        });
        let serving = tokio::spawn({
            let server = server.clone();
            let routes = builtin_routes(server.drain_state());
            async move { server.serve(routes).await }
        });
        tracing::info!(
            name = %self.name,
            server_id = %server.server_id(),
            "serving HTTP/3 on {addr}"
        );

        let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT")?;
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        if let Some(membership) = &membership {
            // Before the GOAWAYs: the load balancers stop sending new connections here.
            match membership.drain().await {
                Ok(revision) => {
                    tracing::info!("marked draining on etcd");
                    // New connections still on their way would be refused once the
                    // shutdown starts: let the load balancers take the drain first.
                    match membership
                        .await_load_balancers(revision, DRAIN_PROPAGATION)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            "not every load balancer applied the drain within {DRAIN_PROPAGATION:?}; shutting down anyway"
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "could not read the load balancers' records on etcd")
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "could not mark this server draining on etcd"),
            }
        }
        tracing::info!(timeout = ?self.shutdown_timeout, "shutting down");
        let shutdown = server.shutdown(self.shutdown_timeout);
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            // A second signal: close what is left now (still with H3_NO_ERROR).
            _ = async { tokio::select! { _ = terminate.recv() => {}, _ = interrupt.recv() => {} } } => {
                tracing::info!("second signal: closing every connection now");
                server.shutdown(Duration::ZERO).await;
                shutdown.await;
            }
        }
        serving.await.context("the server task failed")?;
        if let Some(issuing) = issuing {
            issuing.abort();
            let _ = issuing.await;
        }
        if let Some(membership) = membership.and_then(Arc::into_inner) {
            if let Err(error) = membership.leave().await {
                tracing::warn!(%error, "could not delete this server's record on etcd; it expires");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// The cluster's QUIC-LB tables and secret, the table to issue under, and with --etcd
    /// a follower of the cluster's record: from that record when etcd has one, else from
    /// the --config file.
    async fn cluster_config(
        &self,
        etcd: Option<&Arc<EtcdClient>>,
    ) -> Result<(ClusterConfig, Config, Option<ClusterFollower>)> {
        let (found, follower) = match (etcd, &self.cluster) {
            (Some(etcd), Some(cluster)) => {
                let (now, follower) = ClusterFollower::read(etcd.clone(), cluster)
                    .await
                    .with_context(|| format!("reading cluster `{cluster}` on etcd"))?;
                (now.context("the cluster's record on etcd")?, Some(follower))
            }
            _ => (None, None),
        };
        if let Some(record) = found {
            if let Some(id) = self.config_id {
                return Err(anyhow!(
                    "--config-id {id}: the cluster's record on etcd says which codepoint to \
                     issue under ({}); `qlb cluster rotate` changes it",
                    record.issuing
                ));
            }
            let cluster =
                ClusterConfig::from_record(&record).context("the cluster's record on etcd")?;
            let config = record
                .issuing_config()
                .context("the cluster's record on etcd")?;
            tracing::info!(
                codepoint = record.issuing,
                "QUIC-LB tables and cluster secret from etcd"
            );
            return Ok((cluster, config, follower));
        }
        let Some(path) = &self.config else {
            return Err(anyhow!(
                "--config: the cluster has no record on etcd (`qlb cluster init` writes \
                 one), so its QUIC-LB tables must come from a file"
            ));
        };
        let cluster =
            ClusterConfig::load(path).with_context(|| format!("reading {}", path.display()))?;
        let config = select_config(&cluster.quic_lb, self.config_id)
            .with_context(|| format!("{}: quic_lb", path.display()))?;
        Ok((cluster, config, follower))
    }

    /// With --etcd: a server ID taken on etcd for this server, before it binds.
    async fn reserve_on_etcd(
        &self,
        etcd: Option<&Arc<EtcdClient>>,
        config: &Config,
    ) -> Result<Option<Reservation>> {
        let (Some(cluster), Some(etcd)) = (&self.cluster, etcd) else {
            return Ok(None);
        };
        let quarantine = self.server_id_quarantine.unwrap_or_else(|| {
            match self.max_connection_age {
                // The last connection may live the max age (+10% jitter) and the grace.
                Some(age) => (age + self.max_connection_age_grace.unwrap_or_default()).mul_f64(1.1),
                None => DEFAULT_QUARANTINE,
            }
        });
        let spec = JoinSpec {
            cluster: cluster.clone(),
            name: self.name.clone(),
            server_id_len: config.server_id_len(),
            server_id: self.server_id,
            member_ttl: self.etcd_ttl,
            quarantine,
            codepoint: Some(config.id().get()),
            max_connection_lifetime: self.max_connection_lifetime(),
        };
        let reservation = Membership::reserve(etcd.clone(), spec)
            .await
            .with_context(|| format!("joining cluster `{cluster}` on etcd"))?;
        tracing::info!(
            server_id = %reservation.server_id(),
            ?quarantine,
            "took server ID {} on etcd", reservation.server_id()
        );
        Ok(Some(reservation))
    }

    /// How long a connection may live at most: the max connection age with its jitter
    /// (+10%), then the grace; unbounded without both.
    fn max_connection_lifetime(&self) -> Option<Duration> {
        let (age, grace) = (self.max_connection_age?, self.max_connection_age_grace?);
        Some(age.mul_f64(1.1).saturating_add(grace))
    }

    /// What etcd publishes: where the load balancers send datagrams (--advertise, the GUE
    /// socket, or the plain one) and, in GUE mode, where their health checks go.
    fn published_addrs(
        &self,
        listen: SocketAddr,
        gue: Option<SocketAddr>,
    ) -> Result<(SocketAddr, Option<SocketAddr>)> {
        let reachable = |addr: SocketAddr| -> Result<SocketAddr> {
            match (addr.ip().is_unspecified(), self.advertise) {
                (false, _) => Ok(addr),
                (true, Some(advertise)) => Ok(SocketAddr::new(advertise.ip(), addr.port())),
                (true, None) => Err(anyhow!(
                    "--advertise: this server is bound to {addr}, which the load balancers \
                     cannot be told to reach"
                )),
            }
        };
        match gue {
            Some(gue) => Ok((
                self.advertise.map_or_else(|| reachable(gue), Ok)?,
                Some(reachable(listen)?),
            )),
            None => Ok((self.advertise.map_or_else(|| reachable(listen), Ok)?, None)),
        }
    }
}

/// How long a server waits for the load balancers to take its drain before its shutdown.
const DRAIN_PROPAGATION: Duration = Duration::from_secs(3);

/// How long a server ID stays taken after its server leaves, when no max connection age
/// bounds its connections' lives.
const DEFAULT_QUARANTINE: Duration = Duration::from_secs(3600);

/// The `[[quic_lb]]` table with codepoint `config_id`, or the first one.
fn select_config(configs: &[Config], config_id: Option<u8>) -> Result<Config> {
    let found = match config_id {
        Some(id) => configs.iter().find(|config| config.id().get() == id),
        None => configs.first(),
    };
    found.cloned().ok_or_else(|| match config_id {
        Some(id) => anyhow!("no [[quic_lb]] table has config_id = {id} (--config-id)"),
        None => anyhow!("no [[quic_lb]] table: the server needs one to issue routable CIDs"),
    })
}

/// Answers `GET /metrics` with the server's metrics in the Prometheus text format.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: qlb_server::Metrics) {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let registry = std::sync::Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    );
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(%err, "metrics endpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quic_lb::ConfigId;

    fn config(id: u8) -> Config {
        Config::new(ConfigId::new(id).expect("codepoint"), 2, 6, None).expect("valid")
    }

    #[test]
    fn picks_the_asked_codepoint_or_the_first_table() {
        let configs = [config(3), config(1)];
        assert_eq!(select_config(&configs, None).expect("first").id().get(), 3);
        assert_eq!(
            select_config(&configs, Some(1)).expect("found").id().get(),
            1
        );
        let err = select_config(&configs, Some(5)).expect_err("absent");
        assert!(err.to_string().contains("config_id = 5"), "{err}");
        assert!(select_config(&[], None).is_err());
    }
}
