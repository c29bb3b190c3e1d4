//! The validators: each turns one raw field (or table) into its typed value, or refuses it
//! naming the field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use qlb_router::BackendState;
use quic_lb::{Config, ConfigId, Key, ServerId};

use super::duration::parse_duration;
use super::error::{ConfigError, field_error, read_file};
use super::raw::{RawAdmin, RawBackend, RawEtcd, RawGue, RawHealth, RawQuicLb, RawRetry, RawXdp};
use super::schema::{
    AdminConfig, BackendConfig, ClusterConfig, EtcdConfig, ForwardingMode, GueConfig, HealthConfig,
    InterfaceName, RetryConfig, RetryMode, XdpAttach, XdpConfig,
};
use super::secret::Secret;
use crate::dataplane::{DataplaneOptions, GueOptions, MAX_GUE_PORTS};

/// The shortest cluster secret accepted, in octets.
const MIN_CLUSTER_SECRET_LEN: usize = 16;

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

pub(super) fn listen_addresses(raw: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
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

pub(super) fn workers(raw: Option<i64>) -> Result<NonZeroUsize, ConfigError> {
    match raw {
        None => Ok(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
        Some(n) => usize::try_from(n)
            .ok()
            .and_then(NonZeroUsize::new)
            .filter(|n| n.get() <= 1024)
            .ok_or_else(|| ConfigError::invalid("workers", format!("must be 1..=1024, got {n}"))),
    }
}

/// The most flows a worker may hold: more would only be file descriptors the process's limit
/// refuses anyway.
const MAX_FLOWS_LIMIT: usize = 1 << 24;

/// `max_flows` (default 65536) and `max_unconfirmed_flows` (default 4096, or `max_flows` if
/// that is smaller), each at least 1, the second at most the first.
pub(super) fn flow_caps(
    max_flows: Option<i64>,
    max_unconfirmed: Option<i64>,
) -> Result<(usize, usize), ConfigError> {
    let defaults = DataplaneOptions::default();
    let count = |field: &str, raw: i64, max: usize| {
        usize::try_from(raw)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ConfigError::invalid(field, format!("must be 1..={max}, got {raw}")))
    };
    let flows = max_flows.map_or(Ok(defaults.max_flows), |raw| {
        count("max_flows", raw, MAX_FLOWS_LIMIT)
    })?;
    let unconfirmed = match max_unconfirmed {
        None => defaults.max_unconfirmed_flows.min(flows),
        Some(raw) => count("max_unconfirmed_flows", raw, flows)?,
    };
    Ok((flows, unconfirmed))
}

/// The first GUE port by default: the one Katran and the usual `fou` set-ups use for GUE.
const DEFAULT_GUE_PORT: u16 = 6080;
/// GUE ports by default: enough outer source ports for a backend's RSS to spread clients
/// over 8 receive queues.
const DEFAULT_GUE_PORTS: u16 = 8;

/// `mode`, with the `[gue]` table that only `mode = "gue"` and `"xdp"` take and the `[xdp]`
/// table that only `"xdp"` takes (as `[retry] threshold` only goes with `mode = "above"`: a
/// table that would do nothing is refused, not ignored).
pub(super) fn mode(
    raw: Option<&str>,
    gue: Option<&RawGue>,
    xdp: Option<&RawXdp>,
    listen: &[SocketAddr],
) -> Result<ForwardingMode, ConfigError> {
    let mode = raw.unwrap_or("proxy");
    if xdp.is_some() && mode != "xdp" {
        return Err(ConfigError::invalid("xdp", "only with mode = \"xdp\""));
    }
    match (mode, gue) {
        ("proxy", None) => Ok(ForwardingMode::Proxy),
        ("proxy", Some(_)) => Err(ConfigError::invalid(
            "gue",
            "only with mode = \"gue\" or \"xdp\"",
        )),
        ("gue", gue) => Ok(ForwardingMode::Gue(gue_table(gue, listen)?)),
        ("xdp", gue) => Ok(ForwardingMode::Xdp(xdp_table(
            gue_table(gue, listen)?,
            xdp,
        )?)),
        (other, _) => Err(ConfigError::invalid(
            "mode",
            format!("unsupported {other:?}; supported: \"proxy\", \"gue\", \"xdp\""),
        )),
    }
}

/// The `[xdp]` table: `interface` (required) and `attach` (`"auto"`, `"native"`,
/// `"generic"`); the program writes the GUE packets' outer headers itself, so `gue.bind` must
/// be a concrete address and port.
fn xdp_table(gue: GueConfig, raw: Option<&RawXdp>) -> Result<XdpConfig, ConfigError> {
    if gue.bind.ip().is_unspecified() || gue.bind.port() == 0 {
        return Err(ConfigError::invalid(
            "gue.bind",
            format!(
                "{} cannot be the XDP program's outer source: mode = \"xdp\" needs an \
                 address of the interface and a port",
                gue.bind
            ),
        ));
    }
    let interface = match raw.and_then(|r| r.interface.as_deref()) {
        None => {
            return Err(ConfigError::invalid(
                "xdp.interface",
                "required with mode = \"xdp\"",
            ));
        }
        Some(name) => InterfaceName::new(name).ok_or_else(|| {
            ConfigError::invalid(
                "xdp.interface",
                format!("{name:?} is not an interface name (1 to 15 octets, no '/' or space)"),
            )
        })?,
    };
    let attach = match raw.and_then(|r| r.attach.as_deref()) {
        None | Some("auto") => XdpAttach::Auto,
        Some("native") => XdpAttach::Native,
        Some("generic") => XdpAttach::Generic,
        Some(other) => {
            return Err(ConfigError::invalid(
                "xdp.attach",
                format!("unsupported {other:?}; supported: \"auto\", \"native\", \"generic\""),
            ));
        }
    };
    Ok(XdpConfig {
        gue,
        interface,
        attach,
    })
}

/// The `[gue]` table: `bind` (default port 6080 on the unspecified address, IPv6 when every
/// listening address is) and `ports` (1..=256, default 8), none of them a listening address.
fn gue_table(raw: Option<&RawGue>, listen: &[SocketAddr]) -> Result<GueConfig, ConfigError> {
    let ipv6 = !listen.is_empty() && listen.iter().all(SocketAddr::is_ipv6);
    let any: IpAddr = match ipv6 {
        true => Ipv6Addr::UNSPECIFIED.into(),
        false => Ipv4Addr::UNSPECIFIED.into(),
    };
    let bind = match raw.and_then(|r| r.bind.as_deref()) {
        Some(text) => socket_addr("gue.bind", text)?,
        None => SocketAddr::new(any, DEFAULT_GUE_PORT),
    };
    let ports = match raw.and_then(|r| r.ports) {
        None => DEFAULT_GUE_PORTS,
        Some(n) => u16::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_GUE_PORTS).contains(n))
            .ok_or_else(|| {
                ConfigError::invalid("gue.ports", format!("must be 1..={MAX_GUE_PORTS}, got {n}"))
            })?,
    };
    let options = GueOptions { bind, ports };
    if options.addresses().is_err() {
        return Err(ConfigError::invalid(
            "gue.ports",
            format!("{ports} ports from {bind} run past port 65535"),
        ));
    }
    if let Some(i) = options.overlap(listen) {
        return Err(ConfigError::invalid(
            "gue.bind",
            format!(
                "the {ports} GUE ports from {bind} include listen[{i}] ({}): they would split \
                 its datagrams",
                listen[i]
            ),
        ));
    }
    Ok(GueConfig { bind, ports })
}

/// What `gue` mode asks of the backends: addresses of the GUE sockets' family, and with
/// health checks on, a `health_addr` (their `addr` speaks only GUE).
pub(super) fn gue_backends(
    gue: &GueConfig,
    backends: &[BackendConfig],
    health: &HealthConfig,
) -> Result<(), ConfigError> {
    for (i, backend) in backends.iter().enumerate() {
        gue_backend(gue, backend, health).map_err(|(key, problem)| {
            ConfigError::invalid(format!("backend[{i}].{key}"), problem)
        })?;
    }
    Ok(())
}

/// What `gue` mode asks of one backend; if it falls short, the key at fault and why.
pub(super) fn gue_backend(
    gue: &GueConfig,
    backend: &BackendConfig,
    health: &HealthConfig,
) -> Result<(), (&'static str, String)> {
    let family = |address: SocketAddr| if address.is_ipv4() { "IPv4" } else { "IPv6" };
    if backend.addr.is_ipv4() != gue.bind.is_ipv4() {
        return Err((
            "addr",
            format!(
                "{} is {}, but gue.bind ({}) is {}: the GUE sockets reach backends of their \
                 own family",
                backend.addr,
                family(backend.addr),
                gue.bind,
                family(gue.bind)
            ),
        ));
    }
    if health.enabled && backend.health_addr.is_none() {
        return Err((
            "health_addr",
            "required in mode = \"gue\" with health checks on: addr receives GUE only; give \
             the backend's plain QUIC address (qlb serve --listen), or set [health] enabled = \
             false"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The longest duration any field of the file may hold. Every one of them (flow idle
/// timeout, health interval and timeout) is added to an `Instant` in a worker or task, where
/// an absurd value would overflow and panic; a day is far beyond any sensible timer here.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn duration(field: &str, raw: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    let value = raw.map_or(Ok(default), |text| {
        parse_duration(text).map_err(|problem| ConfigError::invalid(field, problem))
    })?;
    if value > MAX_DURATION {
        return Err(ConfigError::invalid(
            field,
            format!("{value:?} exceeds the maximum of {MAX_DURATION:?} (1 day)"),
        ));
    }
    Ok(value)
}

pub(super) fn positive_duration(
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

pub(super) fn quic_lb_configs(raw: &[RawQuicLb], base: &Path) -> Result<Vec<Config>, ConfigError> {
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

/// Whether `server_id` has the length every `[[quic_lb]]` table takes; if not, why.
pub(super) fn server_id_fits(server_id: &ServerId, quic_lb: &[Config]) -> Result<(), String> {
    match quic_lb
        .iter()
        .enumerate()
        .find(|(_, c)| c.server_id_len() != server_id.len())
    {
        Some((j, config)) => Err(format!(
            "{} octets, but quic_lb[{j}] (config {}) takes server_id_len = {}",
            server_id.len(),
            config.id(),
            config.server_id_len()
        )),
        None => Ok(()),
    }
}

pub(super) fn backends(
    raw: &[RawBackend],
    quic_lb: &[Config],
) -> Result<Vec<BackendConfig>, ConfigError> {
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
            server_id_fits(&server_id, quic_lb)
                .map_err(|problem| ConfigError::invalid(field("server_id"), problem))?;
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
                health_addr: b
                    .health_addr
                    .as_deref()
                    .map(|text| socket_addr(&field("health_addr"), text))
                    .transpose()?,
                server_id,
                weight: count(&field("weight"), b.weight, 1)?,
                state,
            })
        })
        .collect()
}

pub(super) fn health(raw: Option<&RawHealth>) -> Result<HealthConfig, ConfigError> {
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

pub(super) fn admin(raw: &RawAdmin, base: &Path) -> Result<AdminConfig, ConfigError> {
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
    let allowed_hosts = raw
        .allowed_hosts
        .iter()
        .enumerate()
        .map(|(i, host)| allowed_host(&format!("admin.allowed_hosts[{i}]"), host))
        .collect::<Result<_, _>>()?;
    Ok(AdminConfig {
        listen,
        token: token.map(|t| Secret::new(t.into_bytes())),
        allowed_hosts,
    })
}

/// A name as a `Host` header carries it, lowercased: letters, digits, `-` and `.`, with an
/// optional `:port`.
fn allowed_host(field: &str, text: &str) -> Result<String, ConfigError> {
    let (name, port) = text.rsplit_once(':').unwrap_or((text, "0"));
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !name_ok || port.parse::<u16>().is_err() {
        return Err(ConfigError::invalid(
            field,
            format!("expected a host name, optionally with :port, got {text:?}"),
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// The longest lease a load balancer's record may have: a dead one lingers this long at
/// most in `qlb cluster status` and holds up rotations as long.
const MAX_ETCD_TTL: Duration = Duration::from_secs(300);

pub(super) fn etcd(raw: &RawEtcd, base: &Path) -> Result<EtcdConfig, ConfigError> {
    if raw.endpoints.is_empty() {
        return Err(ConfigError::invalid(
            "etcd.endpoints",
            "list at least one etcd client URL (http://HOST:PORT or https://HOST:PORT)",
        ));
    }
    for (i, url) in raw.endpoints.iter().enumerate() {
        // (An https:// URL without a CA is the CA's fault: found below.)
        if let Err(e @ qlb_etcd::EtcdError::Endpoint(_)) = qlb_etcd::EtcdClient::new([url]) {
            return Err(ConfigError::invalid(
                format!("etcd.endpoints[{i}]"),
                e.to_string(),
            ));
        }
    }
    let cluster = raw
        .cluster
        .clone()
        .ok_or_else(|| ConfigError::invalid("etcd.cluster", "required: the fleet's name"))?;
    qlb_etcd::ClusterKeys::checked(&cluster)
        .map_err(|e| ConfigError::invalid("etcd.cluster", e.to_string()))?;
    let name = match &raw.name {
        Some(name) => name.clone(),
        None => host_name().ok_or_else(|| {
            ConfigError::invalid("etcd.name", "required: this host's name is not a valid one")
        })?,
    };
    if !qlb_etcd::valid_name(&name) {
        return Err(ConfigError::invalid(
            "etcd.name",
            format!("{name:?}: use 1 to 64 of a-z, A-Z, 0-9, `.`, `_`, `-`"),
        ));
    }
    let ttl = positive_duration("etcd.ttl", raw.ttl.as_deref(), Duration::from_secs(10))?;
    if ttl < Duration::from_secs(2) || ttl > MAX_ETCD_TTL || ttl.subsec_nanos() != 0 {
        return Err(ConfigError::invalid(
            "etcd.ttl",
            format!("whole seconds from 2s to {MAX_ETCD_TTL:?} (etcd's leases count seconds)"),
        ));
    }
    let identity = match (&raw.cert_file, &raw.key_file) {
        (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "etcd.key_file",
                "required with etcd.cert_file",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "etcd.cert_file",
                "required with etcd.key_file",
            ));
        }
    };
    let password = inline_or_file(
        "etcd.password",
        raw.password.as_deref(),
        raw.password_file.as_deref(),
        base,
    )?;
    let user = match (&raw.user, password) {
        (Some(user), Some(password)) => Some((user.clone(), Secret::new(password.into_bytes()))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "etcd.password",
                "required with etcd.user (or etcd.password_file)",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "etcd.user",
                "required with etcd.password",
            ));
        }
    };
    let config = EtcdConfig {
        endpoints: raw.endpoints.clone(),
        cluster,
        name,
        ttl,
        ca_file: raw.ca_file.as_ref().map(|ca| base.join(ca)),
        identity,
        user,
    };
    // Reads the PEM files: a file that cannot be used is refused now, not at the first
    // connection.
    if let Err(error) = config.client() {
        let field = match (&error, &config.ca_file) {
            (qlb_etcd::EtcdError::Tls(_), None) => "etcd.ca_file",
            (qlb_etcd::EtcdError::Tls(why), Some(ca))
                if why.contains(&ca.display().to_string()) =>
            {
                "etcd.ca_file"
            }
            (qlb_etcd::EtcdError::Tls(_), Some(_)) => "etcd.cert_file",
            _ => "etcd.endpoints",
        };
        return Err(ConfigError::invalid(field, error.to_string()));
    }
    Ok(config)
}

/// This host's name, if it is fit for a key.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    qlb_etcd::valid_name(name).then(|| name.to_owned())
}

pub(super) fn cluster_secret(
    inline: Option<&str>,
    file: Option<&str>,
    base: &Path,
) -> Result<Option<Secret>, ConfigError> {
    hex_secret("cluster_secret", inline, file, base)
}

/// A cluster secret in hex, inline (`name`) or in a file (`name_file`).
fn hex_secret(
    name: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base: &Path,
) -> Result<Option<Secret>, ConfigError> {
    let Some(hex_text) = inline_or_file(name, inline, file, base)? else {
        return Ok(None);
    };
    let field = if inline.is_some() {
        name.to_owned()
    } else {
        format!("{name}_file")
    };
    let bytes = hex::decode(&hex_text).map_err(|_| {
        ConfigError::invalid(&field, "must be hex (e.g. from `openssl rand -hex 32`)")
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

/// The longest Retry token lifetime: quinn's `retry_token_lifetime` on the backends (15 s),
/// which check it again.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(15);

/// The `[retry]` table, which needs the cluster secret (the backends' token key derives from
/// it) and a `[[quic_lb]]` table (Retry SCIDs are QUIC-LB CIDs) unless it is off.
pub(super) fn retry(
    raw: Option<&RawRetry>,
    cluster: &ClusterConfig,
    base: &Path,
) -> Result<RetryConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(RetryConfig::default());
    };
    let mode = match (raw.mode.as_deref().unwrap_or("off"), raw.threshold) {
        ("off", None) => RetryMode::Off,
        ("always", None) => RetryMode::Always,
        ("above", Some(n)) => RetryMode::Above(u32::try_from(n).map_err(|_| {
            ConfigError::invalid(
                "retry.threshold",
                format!("must be 0..=4294967295, got {n}"),
            )
        })?),
        ("above", None) => {
            return Err(ConfigError::invalid(
                "retry.threshold",
                "required with mode = \"above\" (token-less Initials per second per worker)",
            ));
        }
        ("off" | "always", Some(_)) => {
            return Err(ConfigError::invalid(
                "retry.threshold",
                "only with mode = \"above\"",
            ));
        }
        (other, _) => {
            return Err(ConfigError::invalid(
                "retry.mode",
                format!("expected \"off\", \"always\" or \"above\", got {other:?}"),
            ));
        }
    };
    let token_lifetime = positive_duration(
        "retry.token_lifetime",
        raw.token_lifetime.as_deref(),
        Duration::from_secs(10),
    )?;
    if token_lifetime > MAX_TOKEN_LIFETIME || token_lifetime.subsec_nanos() != 0 {
        return Err(ConfigError::invalid(
            "retry.token_lifetime",
            "whole seconds, at most 15s (the backends' token lifetime)",
        ));
    }
    let previous_cluster_secret = hex_secret(
        "retry.previous_cluster_secret",
        raw.previous_cluster_secret.as_deref(),
        raw.previous_cluster_secret_file.as_deref(),
        base,
    )?;
    if mode != RetryMode::Off {
        if cluster.cluster_secret.is_none() {
            return Err(ConfigError::invalid(
                "retry.mode",
                "needs cluster_secret: the backends' token key derives from it",
            ));
        }
        if cluster.quic_lb.is_empty() {
            return Err(ConfigError::invalid(
                "retry.mode",
                "needs a [[quic_lb]] table: Retry SCIDs are QUIC-LB CIDs",
            ));
        }
    }
    Ok(RetryConfig {
        mode,
        token_lifetime,
        previous_cluster_secret,
    })
}
