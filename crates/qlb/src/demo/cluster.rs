//! The demo's cluster, in this process on loopback: three `qlb-server` backends and a
//! `qlb-lb` load balancer, configured from a TOML document generated on the fly (a random
//! QUIC-LB key and cluster secret: no files). The steps of the script act on it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use qlb_lb::Balancer;
use qlb_lb::config::LbConfig;
use qlb_server::{Server, builtin_routes};
use quic_lb::{Config, ConfigId, Key, ServerId};
use rand::RngExt;

/// Backends of the demo: name and server ID.
const BACKENDS: [(&str, &str); 3] = [("b1", "0001"), ("b2", "0002"), ("b3", "0003")];
/// Single-pass AES CIDs: 2 octets of server ID + 14 of nonce.
const SERVER_ID_LEN: usize = 2;
const NONCE_LEN: usize = 14;

/// One `[[quic_lb]]` table: codepoint and key.
#[derive(Clone)]
struct QuicLbTable {
    config_id: u8,
    key_hex: String,
}

impl QuicLbTable {
    fn random(config_id: u8) -> Self {
        Self {
            config_id,
            key_hex: hex::encode(rand::rng().random::<[u8; 16]>()),
        }
    }
}

/// A backend of the demo.
pub(super) struct Backend {
    /// Its name (`b1`).
    pub name: &'static str,
    /// Its server ID.
    pub server_id: ServerId,
    /// Its UDP address.
    pub addr: SocketAddr,
    server: Option<Server>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

/// The running cluster.
pub(super) struct Cluster {
    /// The load balancer.
    pub balancer: Balancer,
    /// The address clients send to.
    pub vip: SocketAddr,
    /// The backends, in [`BACKENDS`] order.
    pub backends: Vec<Backend>,
    tables: Vec<QuicLbTable>,
    cluster_secret: [u8; 32],
    max_connection_age: Duration,
}

impl Cluster {
    /// Starts the backends, then the load balancer in front of them. Backends recycle their
    /// connections after `max_connection_age` (+-10%), as a deployment with gRPC-style max
    /// connection age does.
    pub(super) async fn start(max_connection_age: Duration) -> Result<Self> {
        let mut cluster_secret = [0; 32];
        rand::rng().fill(&mut cluster_secret[..]);
        let tables = vec![QuicLbTable::random(0)];
        let config = parse_quic_lb(&tables[0])?;
        let mut backends = Vec::new();
        for (name, server_id) in BACKENDS {
            let server_id: ServerId = server_id.parse().context("server id")?;
            let mut backend = Backend {
                name,
                server_id,
                addr: "127.0.0.1:0".parse().context("address")?,
                server: None,
                serving: None,
            };
            backend.start(&config, &cluster_secret, max_connection_age)?;
            backends.push(backend);
        }
        let lb_config = lb_config(&tables, &backends)?;
        let balancer = Balancer::start(lb_config, None)
            .await
            .context("starting the load balancer")?;
        let vip = *balancer
            .listen_addrs()
            .first()
            .context("the load balancer listens nowhere")?;
        Ok(Self {
            balancer,
            vip,
            backends,
            tables,
            cluster_secret,
            max_connection_age,
        })
    }

    /// Asks the load balancer to send no new connection to backend `index`.
    pub(super) async fn drain_at_load_balancer(&self, index: usize) -> Result<()> {
        self.balancer
            .drain(self.backends[index].name)
            .await
            .context("admin drain")?;
        Ok(())
    }

    /// Shuts backend `index` down gracefully (GOAWAY, then in-flight requests finish),
    /// waiting up to `timeout`.
    pub(super) async fn shut_down(&mut self, index: usize, timeout: Duration) -> Result<()> {
        let backend = &mut self.backends[index];
        if let Some(server) = backend.server.take() {
            server.shutdown(timeout).await;
        }
        if let Some(serving) = backend.serving.take() {
            serving.await.context("the backend's task failed")?;
        }
        Ok(())
    }

    /// Starts backend `index` again on its address with the current config, and undrains it.
    pub(super) async fn restart(&mut self, index: usize) -> Result<()> {
        let config = parse_quic_lb(self.current_table())?;
        self.backends[index].start(&config, &self.cluster_secret, self.max_connection_age)?;
        self.balancer
            .undrain(self.backends[index].name)
            .await
            .context("admin undrain")?;
        Ok(())
    }

    /// Adds a QUIC-LB table with a new key at the next codepoint to the load balancer (both
    /// decode now). Returns the new codepoint.
    pub(super) async fn add_config_at_load_balancer(&mut self) -> Result<u8> {
        let next = (self.current_table().config_id + 1) % 7;
        self.tables.push(QuicLbTable::random(next));
        let config = lb_config(&self.tables, &self.backends)?;
        self.balancer
            .reload_from(config)
            .await
            .context("reloading the load balancer")?;
        Ok(next)
    }

    /// Moves every backend to the newest QUIC-LB table: their new CIDs use its codepoint.
    pub(super) fn rotate_backends(&self) -> Result<()> {
        let config = parse_quic_lb(self.current_table())?;
        for backend in &self.backends {
            if let Some(server) = &backend.server {
                server
                    .rotate_config(config.clone())
                    .with_context(|| format!("rotating {}", backend.name))?;
            }
        }
        Ok(())
    }

    /// The newest table.
    fn current_table(&self) -> &QuicLbTable {
        // `start` puts one in and nothing removes any.
        &self.tables[self.tables.len() - 1]
    }

    /// Stops everything: backends gracefully, then the load balancer.
    pub(super) async fn stop(mut self) -> Result<()> {
        for index in 0..self.backends.len() {
            self.shut_down(index, Duration::from_secs(2)).await?;
        }
        self.balancer
            .shutdown()
            .await
            .context("stopping the load balancer")?;
        Ok(())
    }
}

impl Backend {
    /// Binds (port 0 the first time, its address after) and serves the built-in routes.
    fn start(&mut self, config: &Config, secret: &[u8], max_age: Duration) -> Result<()> {
        let server = Server::builder(config.clone(), self.server_id)
            .name(self.name)
            .cluster_secret(secret)
            .max_connection_age(max_age)
            .max_connection_age_grace(max_age)
            .bind(self.addr)
            .with_context(|| format!("starting backend {}", self.name))?;
        self.addr = server.local_addr().context("backend address")?;
        let routes = builtin_routes(server.drain_state());
        self.serving = Some(tokio::spawn({
            let server = server.clone();
            async move { server.serve(routes).await }
        }));
        self.server = Some(server);
        Ok(())
    }
}

/// The load balancer's configuration, as the TOML an operator would write.
fn lb_config(tables: &[QuicLbTable], backends: &[Backend]) -> Result<LbConfig> {
    let mut toml = String::from(
        "listen = [\"127.0.0.1:0\"]\n\
         workers = 2\n\
         [health]\n\
         interval = \"500ms\"\n\
         timeout = \"400ms\"\n\
         [admin]\n\
         listen = \"127.0.0.1:0\"\n",
    );
    for table in tables {
        toml += &quic_lb_toml(table);
    }
    for backend in backends {
        toml += &format!(
            "[[backend]]\nname = \"{}\"\naddr = \"{}\"\nserver_id = \"{}\"\n",
            backend.name, backend.addr, backend.server_id
        );
    }
    LbConfig::from_toml(&toml, ".".as_ref()).context("the demo's load balancer configuration")
}

fn quic_lb_toml(table: &QuicLbTable) -> String {
    format!(
        "[[quic_lb]]\nconfig_id = {}\nserver_id_len = {SERVER_ID_LEN}\nnonce_len = {NONCE_LEN}\nkey = \"{}\"\n",
        table.config_id, table.key_hex
    )
}

/// The `quic_lb::Config` of `table`, for the backends.
fn parse_quic_lb(table: &QuicLbTable) -> Result<Config> {
    let key: Key = table.key_hex.parse().context("the demo's QUIC-LB key")?;
    let id = ConfigId::new(table.config_id).context("the demo's QUIC-LB codepoint")?;
    Config::new(id, SERVER_ID_LEN, NONCE_LEN, Some(key)).context("the demo's QUIC-LB table")
}
