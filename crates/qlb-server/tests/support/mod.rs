//! The server harness of the integration tests: a server on loopback and metric reads,
//! over the shared test kit (qlb-testkit: the h3 client, the peers, the fixtures). Each
//! test binary uses a different subset.
#![allow(dead_code)]

pub(crate) mod hold;
pub(crate) mod raw_h3;

use std::net::SocketAddr;
use std::time::Duration;

use qlb_server::{HttpService, Identity, ResponseBody, Server, ServerBuilder};
use qlb_testkit::{SelfSigned, fixtures, init_tracing};
use quic_lb::{Config, Decoder};
use rustls::pki_types::CertificateDer;

pub(crate) use qlb_testkit::{H3Client, TestResult};

/// The codepoint of the servers' configuration.
const CODEPOINT: u8 = 1;

/// A keyed four-pass configuration (2-octet server ID, 6-octet nonce: 9-octet CIDs).
pub(crate) fn quic_lb_config() -> Config {
    fixtures::config(CODEPOINT)
}

/// A decoder for [`quic_lb_config`], as the load balancer would hold it.
pub(crate) fn decoder() -> Decoder {
    fixtures::decoder(&[CODEPOINT])
}

/// A builder for server `server_id` under [`quic_lb_config`].
pub(crate) fn builder(server_id: &str) -> ServerBuilder {
    Server::builder(quic_lb_config(), server_id.parse().expect("hex server id"))
}

/// A server serving on 127.0.0.1 with a self-signed certificate for localhost.
pub(crate) struct Running {
    pub server: Server,
    pub addr: SocketAddr,
    pub certificate: CertificateDer<'static>,
    pub serving: tokio::task::JoinHandle<()>,
}

/// Binds `builder` to an ephemeral loopback port and serves what `service` makes for it.
pub(crate) fn start<S, B>(
    builder: ServerBuilder,
    service: impl FnOnce(&Server) -> S,
) -> TestResult<Running>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    start_at(builder, "127.0.0.1:0".parse()?, service)
}

/// Like [`start`], on `addr`.
pub(crate) fn start_at<S, B>(
    builder: ServerBuilder,
    addr: SocketAddr,
    service: impl FnOnce(&Server) -> S,
) -> TestResult<Running>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    init_tracing();
    let identity = SelfSigned::localhost()?;
    let certificate = identity.certificate().clone();
    let server = builder
        .identity(Identity::new(
            vec![certificate.clone()],
            identity.private_key(),
        ))
        .bind(addr)?;
    let addr = server.local_addr()?;
    let service = service(&server);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(service).await }
    });
    Ok(Running {
        server,
        addr,
        certificate,
        serving,
    })
}

/// A server with the built-in routes.
pub(crate) fn start_builtin(builder: ServerBuilder) -> TestResult<Running> {
    start(builder, |server| {
        qlb_server::builtin_routes(server.drain_state())
    })
}

impl Running {
    /// A new client connection to this server.
    pub(crate) async fn connect(&self) -> TestResult<H3Client> {
        H3Client::connect(self.addr, &self.certificate).await
    }

    /// Starts a graceful shutdown (deadline `timeout` from now) in a task.
    pub(crate) fn shutdown_in_background(&self, timeout: Duration) -> tokio::task::JoinHandle<()> {
        let server = self.server.clone();
        tokio::spawn(async move { server.shutdown(timeout).await })
    }

    /// Waits until `count` connections have sent their final GOAWAY.
    pub(crate) async fn final_goaways_sent(&self, count: f64) -> TestResult {
        self.wait_for_metric(
            "qlb_server_goaways_sent_total{kind=\"final\"}",
            count,
            Duration::from_secs(5),
        )
        .await
    }

    /// The value of one metric line, `name{labels}` exactly as in the text format; 0 if absent.
    pub(crate) fn metric(&self, series: &str) -> f64 {
        let mut registry = prometheus_client::registry::Registry::default();
        self.server.metrics().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (up to 5 s) until `series` reaches `value`, then checks it did not overshoot.
    /// Request statuses are counted when the server's handler task ends, which may be just
    /// after the client has its response.
    pub(crate) async fn expect_metric(&self, series: &str, value: f64) -> TestResult {
        self.wait_for_metric(series, value, Duration::from_secs(5))
            .await?;
        let now = self.metric(series);
        if now != value {
            return Err(format!("{series} is {now}, want {value}").into());
        }
        Ok(())
    }

    /// Waits until `series` reaches `value`, up to `limit`.
    pub(crate) async fn wait_for_metric(
        &self,
        series: &str,
        value: f64,
        limit: Duration,
    ) -> TestResult {
        let until = tokio::time::Instant::now() + limit;
        while self.metric(series) < value {
            if tokio::time::Instant::now() > until {
                return Err(format!(
                    "{series} is {} after {limit:?}, want {value}",
                    self.metric(series)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}
