//! Reading a file: parse the raw schema, then validate it field by field.

use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, field_error, parse, read_file};
use super::raw::{RawCluster, RawConfig, RawQuicLb};
use super::schema::{ClusterConfig, LbConfig};
use super::secret::Secret;
use super::validation::{
    admin, backends, cluster_secret, etcd, flow_caps, gue_backends, health, listen_addresses, mode,
    positive_duration, quic_lb_configs, retry, workers,
};

impl LbConfig {
    /// Reads and validates the file at `path`.
    ///
    /// ```no_run
    /// let config = qlb_lb::config::LbConfig::from_file("lb.toml".as_ref())?;
    /// # Ok::<(), qlb_lb::config::ConfigError>(())
    /// ```
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file("config", path)?;
        Self::from_toml(&text, parent(path))
    }

    /// Validates TOML text; relative paths in it are resolved against `base`.
    ///
    /// ```
    /// use qlb_lb::config::LbConfig;
    ///
    /// let err = LbConfig::from_toml("listen = [\"127.0.0.1:4433\"]\nworkerz = 2", ".".as_ref())
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("workerz"), "{err}");
    /// ```
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse(text)?;
        let cluster = ClusterConfig::from_raw(
            &raw.quic_lb,
            raw.cluster_secret.as_deref(),
            raw.cluster_secret_file.as_deref(),
            base,
        )?;
        let (max_flows, max_unconfirmed_flows) =
            flow_caps(raw.max_flows, raw.max_unconfirmed_flows)?;
        let listen = listen_addresses(&raw.listen)?;
        let config = Self {
            workers: workers(raw.workers)?,
            mode: mode(
                raw.mode.as_deref(),
                raw.gue.as_ref(),
                raw.xdp.as_ref(),
                &listen,
            )?,
            listen,
            flow_idle_timeout: positive_duration(
                "flow_idle_timeout",
                raw.flow_idle_timeout.as_deref(),
                Duration::from_secs(60),
            )?,
            max_flows,
            max_unconfirmed_flows,
            backends: backends(&raw.backend, &cluster.quic_lb)?,
            retry: retry(raw.retry.as_ref(), &cluster, base)?,
            cluster,
            health: health(raw.health.as_ref())?,
            admin: raw.admin.as_ref().map(|a| admin(a, base)).transpose()?,
            etcd: raw.etcd.as_ref().map(|e| etcd(e, base)).transpose()?,
        };
        if let Some(gue) = config.mode.gue() {
            gue_backends(gue, &config.backends, &config.health)?;
        }
        // Duplicate server IDs and the like are the pool's to find; finding them here makes
        // `--check-config` and reloads refuse them too.
        config
            .pool(|_| false)
            .map_err(|e| field_error(&e.to_string(), None, "backend"))?;
        Ok(config)
    }
}

impl ClusterConfig {
    /// Reads and validates the shared part of the file at `path`: a cluster file, or a load
    /// balancer's whole file (its own sections are skipped, not validated).
    ///
    /// ```no_run
    /// let cluster = qlb_lb::config::ClusterConfig::load("cluster.toml".as_ref())?;
    /// # Ok::<(), qlb_lb::config::ConfigError>(())
    /// ```
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file("config", path)?;
        Self::from_toml(&text, parent(path))
    }

    /// Validates the shared part of TOML text, as [`ClusterConfig::load`] does; relative
    /// paths in it are resolved against `base`.
    ///
    /// ```
    /// use qlb_lb::config::ClusterConfig;
    ///
    /// // A load balancer's file: `listen` and `[[backend]]` are its own, and skipped.
    /// let cluster = ClusterConfig::from_toml(r#"
    ///     listen = ["127.0.0.1:4433"]
    ///     [[backend]]
    ///     name = "b1"
    /// "#, ".".as_ref())?;
    /// assert!(cluster.quic_lb.is_empty());
    /// let err = ClusterConfig::from_toml("cluster_secret = \"xyz\"", ".".as_ref()).unwrap_err();
    /// assert!(err.to_string().starts_with("cluster_secret: "), "{err}");
    /// # Ok::<(), qlb_lb::config::ConfigError>(())
    /// ```
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawCluster = parse(text)?;
        Self::from_raw(
            &raw.quic_lb,
            raw.cluster_secret.as_deref(),
            raw.cluster_secret_file.as_deref(),
            base,
        )
    }

    /// The shared part from the cluster's record on etcd (`qlb cluster init` put it
    /// there); errors name the record's field.
    ///
    /// ```
    /// use qlb_etcd::{ClusterRecord, TableRecord};
    /// use qlb_lb::config::ClusterConfig;
    ///
    /// let record = ClusterRecord {
    ///     quic_lb: vec![TableRecord::plaintext(0, 2, 6)],
    ///     issuing: 0,
    ///     cluster_secret: None,
    /// };
    /// assert_eq!(ClusterConfig::from_record(&record)?.quic_lb.len(), 1);
    /// let err = ClusterConfig::from_record(&record.issuing_under(3)).unwrap_err();
    /// assert_eq!(err.field, "issuing");
    /// # Ok::<(), qlb_etcd::RecordError>(())
    /// ```
    pub fn from_record(record: &qlb_etcd::ClusterRecord) -> Result<Self, qlb_etcd::RecordError> {
        Ok(Self {
            quic_lb: record.configs()?,
            cluster_secret: record.secret()?.map(Secret::new),
        })
    }

    /// The shared part from its raw fields, whichever file they came from.
    fn from_raw(
        quic_lb: &[RawQuicLb],
        secret: Option<&str>,
        secret_file: Option<&str>,
        base: &Path,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            quic_lb: quic_lb_configs(quic_lb, base)?,
            cluster_secret: cluster_secret(secret, secret_file, base)?,
        })
    }
}

/// The directory relative paths in the file at `path` are resolved against.
fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}
