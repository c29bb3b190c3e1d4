//! The load balancer's configuration file, validated.
//!
//! Every refusal names the field at fault (`backend[1].server_id: ...`), and nothing is
//! half-loaded: a file either yields a whole [`LbConfig`] or an error, so a bad reload can
//! keep the running configuration. Relative file paths (`cluster_secret_file`, `key_file`,
//! `token_file`) are resolved against the directory of the configuration file.
//! `docs/config.md` documents every field.

mod duration;
mod raw;
mod secret;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qlb_router::{Backend, BackendState, Pool, PoolError};
use quic_lb::{Config, ConfigId, Decoder, Key, ServerId};
use thiserror::Error;

pub use duration::parse_duration;
use raw::{RawAdmin, RawBackend, RawConfig, RawHealth, RawQuicLb};
pub use secret::Secret;

/// The shortest cluster secret accepted, in octets.
const MIN_CLUSTER_SECRET_LEN: usize = 16;

/// Why a configuration file was refused.
///
/// ```
/// use qlb_lb::config::{ConfigError, LbConfig};
///
/// let err = LbConfig::from_toml("listen = [\"nowhere\"]", ".".as_ref()).unwrap_err();
/// assert!(matches!(&err, ConfigError::Invalid { field, .. } if field == "listen[0]"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file, or a file it names, could not be read.
    #[error("{field}: cannot read {}: {cause}", path.display())]
    Read {
        /// The field naming the file (`config` for the configuration file itself).
        field: String,
        /// The path as resolved.
        path: PathBuf,
        /// What the operating system said. Part of the message, so deliberately not
        /// `source()` too: error chains would print it twice.
        cause: std::io::Error,
    },
    /// Not valid TOML, or a key of the wrong type or an unknown key. The message is the
    /// parser's without the quoted source line, which may hold a secret.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Syntax {
        /// The line at fault, from 1, when the parser says.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A field with a value that is not allowed.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, as `section[index].key`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// How the load balancer forwards datagrams.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [[backend]]
///     name = "b1"
///     addr = "127.0.0.1:5001"
///     server_id = "01"
/// "#, ".".as_ref())?;
/// assert_eq!(config.mode, qlb_lb::config::ForwardingMode::Proxy);
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ForwardingMode {
    /// The load balancer relays both directions through a per-flow upstream socket;
    /// clients only ever see the listening address.
    Proxy,
}

/// One `[[backend]]` table.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [[backend]]
///     name = "b1"
///     addr = "127.0.0.1:5001"
///     server_id = "01"
/// "#, ".".as_ref())?;
/// assert_eq!(config.backends[0].server_id.to_string(), "01");
/// assert_eq!(config.backends[0].weight, 1);
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BackendConfig {
    /// Unique name, used by the admin API and in metrics.
    pub name: String,
    /// Where its datagrams go.
    pub addr: SocketAddr,
    /// Its server ID, the same under every `[[quic_lb]]` configuration.
    pub server_id: ServerId,
    /// Share of new connections relative to the other backends, at least 1.
    pub weight: u32,
    /// `Active`, or `Draining` (no new connections).
    pub state: BackendState,
}

/// The `[health]` table: active HTTP/3 health checks.
///
/// ```
/// use qlb_lb::config::HealthConfig;
/// use std::time::Duration;
///
/// let health = HealthConfig::default();
/// assert_eq!((health.interval, health.unhealthy_threshold), (Duration::from_secs(1), 2));
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HealthConfig {
    /// Off: every backend is assumed up.
    pub enabled: bool,
    /// Time between checks of one backend.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// The path of the HTTP/3 GET.
    pub path: String,
    /// Consecutive successes that make a down backend up.
    pub healthy_threshold: u32,
    /// Consecutive failures that make an up backend down.
    pub unhealthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            path: "/healthz".to_owned(),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

/// The `[admin]` table: the HTTP admin API.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [admin]
/// "#, ".".as_ref())?;
/// assert_eq!(config.admin.map(|a| a.listen.to_string()), Some("127.0.0.1:9901".to_owned()));
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AdminConfig {
    /// Its TCP address.
    pub listen: SocketAddr,
    /// The bearer token requests must carry; required when `listen` is not loopback.
    pub token: Option<Secret>,
}

/// A validated load balancer configuration.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let err = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [[quic_lb]]
///     config_id = 7
///     server_id_len = 2
///     nonce_len = 6
/// "#, ".".as_ref()).unwrap_err();
/// assert!(err.to_string().starts_with("quic_lb[0].config_id:"), "{err}");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LbConfig {
    /// UDP addresses to receive client datagrams on.
    pub listen: Vec<SocketAddr>,
    /// Data-plane threads.
    pub workers: NonZeroUsize,
    /// How datagrams are forwarded.
    pub mode: ForwardingMode,
    /// How long a proxy-mode flow lives without traffic.
    pub flow_idle_timeout: Duration,
    /// The QUIC-LB configurations, one per codepoint in use, in file order.
    pub quic_lb: Vec<Config>,
    /// The backends, in file order.
    pub backends: Vec<BackendConfig>,
    /// Health checking.
    pub health: HealthConfig,
    /// The admin API, if the file has an `[admin]` table.
    pub admin: Option<AdminConfig>,
    /// The secret backends derive their stateless-reset and token keys from; the load
    /// balancer itself does not use it.
    pub cluster_secret: Option<Secret>,
}

impl LbConfig {
    /// Reads and validates the file at `path`.
    ///
    /// ```no_run
    /// let config = qlb_lb::config::LbConfig::from_file("lb.toml".as_ref())?;
    /// # Ok::<(), qlb_lb::config::ConfigError>(())
    /// ```
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file("config", path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            line: e.span().map(|span| {
                1 + text
                    .get(..span.start)
                    .map_or(0, |t| t.matches('\n').count())
            }),
            message: e.message().trim().to_owned(),
        })?;
        let quic_lb = quic_lb_configs(&raw.quic_lb, base)?;
        let config = Self {
            listen: listen_addresses(&raw.listen)?,
            workers: workers(raw.workers)?,
            mode: mode(raw.mode.as_deref())?,
            flow_idle_timeout: positive_duration(
                "flow_idle_timeout",
                raw.flow_idle_timeout.as_deref(),
                Duration::from_secs(60),
            )?,
            backends: backends(&raw.backend, &quic_lb)?,
            quic_lb,
            health: health(raw.health.as_ref())?,
            admin: raw.admin.as_ref().map(|a| admin(a, base)).transpose()?,
            cluster_secret: cluster_secret(&raw, base)?,
        };
        // Duplicate server IDs and the like are the pool's to find; finding them here makes
        // `--check-config` and reloads refuse them too.
        config
            .pool(|_| false)
            .map_err(|e| field_error(&e.to_string(), None, "backend"))?;
        Ok(config)
    }

    /// The routing pool this configuration describes, with the backends for which `is_down`
    /// says so marked down (health checks decide that, not the file).
    ///
    /// ```
    /// use qlb_lb::config::LbConfig;
    ///
    /// let config = LbConfig::from_toml(r#"
    ///     listen = ["127.0.0.1:4433"]
    ///     [[backend]]
    ///     name = "b1"
    ///     addr = "127.0.0.1:5001"
    ///     server_id = "01"
    /// "#, ".".as_ref())?;
    /// assert_eq!(config.pool(|_| false)?.backends().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool(&self, is_down: impl Fn(&str) -> bool) -> Result<Pool, PoolError> {
        self.pool_with(|b| {
            if is_down(&b.name) {
                BackendState::Down
            } else {
                b.state
            }
        })
    }

    /// The routing pool this configuration describes, each backend in the state `state_of`
    /// gives it (the daemon combines the file's state, admin drains and health this way).
    ///
    /// ```
    /// use qlb_lb::config::LbConfig;
    /// use qlb_router::BackendState;
    ///
    /// let config = LbConfig::from_toml(r#"
    ///     listen = ["127.0.0.1:4433"]
    ///     [[backend]]
    ///     name = "b1"
    ///     addr = "127.0.0.1:5001"
    ///     server_id = "01"
    /// "#, ".".as_ref())?;
    /// let pool = config.pool_with(|_| BackendState::Draining)?;
    /// assert_eq!(pool.backends()[0].state(), BackendState::Draining);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_with(
        &self,
        state_of: impl Fn(&BackendConfig) -> BackendState,
    ) -> Result<Pool, PoolError> {
        let mut decoder = Decoder::new();
        for config in &self.quic_lb {
            decoder.insert(config.clone());
        }
        let backends = self.backends.iter().map(|b| {
            self.quic_lb.iter().fold(
                Backend::new(b.name.clone(), b.addr)
                    .with_weight(b.weight)
                    .with_state(state_of(b)),
                |backend, config| backend.with_server_id(config.id(), b.server_id),
            )
        });
        Pool::new(decoder, backends)
    }
}

/// quic-lb's and qlb-router's errors start with the field they concern ("field: problem");
/// this makes one ours, its field placed under `table` (e.g. `quic_lb[0]`) when given, and
/// named `whole` when the message names no field.
fn field_error(message: &str, table: Option<&str>, whole: &str) -> ConfigError {
    match (message.split_once(": "), table) {
        (Some((field, problem)), Some(table)) => {
            ConfigError::invalid(format!("{table}.{field}"), problem)
        }
        (Some((field, problem)), None) => ConfigError::invalid(field, problem),
        (None, _) => ConfigError::invalid(whole, message),
    }
}

fn read_file(field: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        field: field.to_owned(),
        path: path.to_owned(),
        cause,
    })
}

/// A secret given either inline (`name`) or in a file (`name_file`), not both.
fn inline_or_file(
    field: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base: &Path,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            field,
            format!("give {field} or {field}_file, not both"),
        )),
        (Some(text), None) => Ok(Some(text.trim().to_owned())),
        (None, Some(path)) => {
            let field = format!("{field}_file");
            Ok(Some(read_file(&field, &base.join(path))?.trim().to_owned()))
        }
        (None, None) => Ok(None),
    }
}

fn listen_addresses(raw: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::invalid(
            "listen",
            "at least one UDP address is required, e.g. [\"127.0.0.1:4433\"]",
        ));
    }
    let mut addresses: Vec<SocketAddr> = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        let field = format!("listen[{i}]");
        let address = socket_addr(&field, text)?;
        // Port 0 asks for a free port, a different one each time it is listed.
        if let Some(first) = addresses
            .iter()
            .position(|a| *a == address && address.port() != 0)
        {
            return Err(ConfigError::invalid(
                field,
                format!("{address} is also listen[{first}]"),
            ));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

fn socket_addr(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            field,
            format!("expected ip:port, e.g. \"127.0.0.1:4433\" or \"[::1]:4433\", got {text:?}"),
        )
    })
}

fn workers(raw: Option<i64>) -> Result<NonZeroUsize, ConfigError> {
    match raw {
        None => Ok(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
        Some(n) => usize::try_from(n)
            .ok()
            .and_then(NonZeroUsize::new)
            .filter(|n| n.get() <= 1024)
            .ok_or_else(|| ConfigError::invalid("workers", format!("must be 1..=1024, got {n}"))),
    }
}

fn mode(raw: Option<&str>) -> Result<ForwardingMode, ConfigError> {
    match raw.unwrap_or("proxy") {
        "proxy" => Ok(ForwardingMode::Proxy),
        other => Err(ConfigError::invalid(
            "mode",
            format!("unsupported {other:?}; supported: \"proxy\""),
        )),
    }
}

fn duration(field: &str, raw: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    raw.map_or(Ok(default), |text| {
        parse_duration(text).map_err(|problem| ConfigError::invalid(field, problem))
    })
}

fn positive_duration(
    field: &str,
    raw: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = duration(field, raw, default)?;
    if value.is_zero() {
        return Err(ConfigError::invalid(field, "must be more than zero"));
    }
    Ok(value)
}

fn count(field: &str, raw: Option<i64>, default: u32) -> Result<u32, ConfigError> {
    raw.map_or(Ok(default), |n| {
        u32::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| ConfigError::invalid(field, format!("must be at least 1, got {n}")))
    })
}

fn small_number(field: &str, value: i64) -> Result<u8, ConfigError> {
    u8::try_from(value).map_err(|_| ConfigError::invalid(field, format!("out of range: {value}")))
}

fn quic_lb_configs(raw: &[RawQuicLb], base: &Path) -> Result<Vec<Config>, ConfigError> {
    let mut configs: Vec<Config> = Vec::with_capacity(raw.len());
    for (i, table) in raw.iter().enumerate() {
        let prefix = format!("quic_lb[{i}]");
        let in_table =
            |e: quic_lb::ConfigError| field_error(&e.to_string(), Some(&prefix), &prefix);
        let id = ConfigId::new(small_number(
            &format!("{prefix}.config_id"),
            table.config_id,
        )?)
        .map_err(in_table)?;
        if let Some(j) = configs.iter().position(|c| c.id() == id) {
            return Err(ConfigError::invalid(
                format!("{prefix}.config_id"),
                format!("{id} is already used by quic_lb[{j}]"),
            ));
        }
        let key = inline_or_file(
            &format!("{prefix}.key"),
            table.key.as_deref(),
            table.key_file.as_deref(),
            base,
        )?
        .map(|hex| hex.parse::<Key>())
        .transpose()
        .map_err(in_table)?;
        let config = Config::new(
            id,
            usize::from(small_number(
                &format!("{prefix}.server_id_len"),
                table.server_id_len,
            )?),
            usize::from(small_number(
                &format!("{prefix}.nonce_len"),
                table.nonce_len,
            )?),
            key,
        )
        .map_err(in_table)?
        .with_length_self_encoding(table.length_self_encoding.unwrap_or(true));
        configs.push(config);
    }
    Ok(configs)
}

fn backends(raw: &[RawBackend], quic_lb: &[Config]) -> Result<Vec<BackendConfig>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, b)| {
            let field = |name: &str| format!("backend[{i}].{name}");
            if b.name.trim().is_empty() {
                return Err(ConfigError::invalid(field("name"), "must not be empty"));
            }
            let server_id: ServerId = b.server_id.parse().map_err(|e: quic_lb::ConfigError| {
                ConfigError::invalid(field("server_id"), e.to_string())
            })?;
            if let Some((j, config)) = quic_lb
                .iter()
                .enumerate()
                .find(|(_, c)| c.server_id_len() != server_id.len())
            {
                return Err(ConfigError::invalid(
                    field("server_id"),
                    format!(
                        "{} octets, but quic_lb[{j}] (config {}) takes server_id_len = {}",
                        server_id.len(),
                        config.id(),
                        config.server_id_len()
                    ),
                ));
            }
            let state = match b.state.as_deref().unwrap_or("active") {
                "active" => BackendState::Active,
                "draining" => BackendState::Draining,
                other => {
                    return Err(ConfigError::invalid(
                        field("state"),
                        format!("expected \"active\" or \"draining\", got {other:?}"),
                    ));
                }
            };
            Ok(BackendConfig {
                name: b.name.clone(),
                addr: socket_addr(&field("addr"), &b.addr)?,
                server_id,
                weight: count(&field("weight"), b.weight, 1)?,
                state,
            })
        })
        .collect()
}

fn health(raw: Option<&RawHealth>) -> Result<HealthConfig, ConfigError> {
    let default = HealthConfig::default();
    let Some(raw) = raw else { return Ok(default) };
    let health = HealthConfig {
        enabled: raw.enabled.unwrap_or(default.enabled),
        interval: positive_duration("health.interval", raw.interval.as_deref(), default.interval)?,
        timeout: positive_duration("health.timeout", raw.timeout.as_deref(), default.timeout)?,
        path: raw.path.clone().unwrap_or(default.path),
        healthy_threshold: count(
            "health.healthy_threshold",
            raw.healthy_threshold,
            default.healthy_threshold,
        )?,
        unhealthy_threshold: count(
            "health.unhealthy_threshold",
            raw.unhealthy_threshold,
            default.unhealthy_threshold,
        )?,
    };
    if !health.path.starts_with('/') {
        return Err(ConfigError::invalid(
            "health.path",
            format!("must start with '/', got {:?}", health.path),
        ));
    }
    if health.timeout > health.interval {
        return Err(ConfigError::invalid(
            "health.timeout",
            format!(
                "{:?} exceeds health.interval {:?}: checks of one backend would overlap",
                health.timeout, health.interval
            ),
        ));
    }
    Ok(health)
}

fn admin(raw: &RawAdmin, base: &Path) -> Result<AdminConfig, ConfigError> {
    let listen = socket_addr(
        "admin.listen",
        raw.listen.as_deref().unwrap_or("127.0.0.1:9901"),
    )?;
    let token = inline_or_file(
        "admin.token",
        raw.token.as_deref(),
        raw.token_file.as_deref(),
        base,
    )?;
    let token_field = if raw.token.is_some() {
        "admin.token"
    } else {
        "admin.token_file"
    };
    if token.as_deref() == Some("") {
        return Err(ConfigError::invalid(token_field, "the token is empty"));
    }
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(ConfigError::invalid(
            "admin.token_file",
            format!(
                "required (or admin.token) when admin.listen ({listen}) is not a loopback address"
            ),
        ));
    }
    Ok(AdminConfig {
        listen,
        token: token.map(|t| Secret::new(t.into_bytes())),
    })
}

fn cluster_secret(raw: &RawConfig, base: &Path) -> Result<Option<Secret>, ConfigError> {
    let Some(hex_text) = inline_or_file(
        "cluster_secret",
        raw.cluster_secret.as_deref(),
        raw.cluster_secret_file.as_deref(),
        base,
    )?
    else {
        return Ok(None);
    };
    let field = if raw.cluster_secret.is_some() {
        "cluster_secret"
    } else {
        "cluster_secret_file"
    };
    let bytes = hex::decode(&hex_text).map_err(|_| {
        ConfigError::invalid(field, "must be hex (e.g. from `openssl rand -hex 32`)")
    })?;
    if bytes.len() < MIN_CLUSTER_SECRET_LEN {
        return Err(ConfigError::invalid(
            field,
            format!(
                "at least {MIN_CLUSTER_SECRET_LEN} octets ({} hex digits) needed, got {}",
                2 * MIN_CLUSTER_SECRET_LEN,
                bytes.len()
            ),
        ));
    }
    Ok(Some(Secret::new(bytes)))
}
