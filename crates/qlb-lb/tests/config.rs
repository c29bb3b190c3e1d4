//! The load balancer's configuration file: the documented example loads, and every bad
//! value is refused with a message that names its field.

use std::fs;
use std::path::Path;
use std::time::Duration;

use qlb_lb::config::{
    ClusterConfig, ConfigError, ForwardingMode, GueConfig, LbConfig, RetryConfig, RetryMode,
    XdpAttach,
};
use qlb_router::BackendState;
use quic_lb::Mode;

/// The example of `docs/config.md`, with its files.
const EXAMPLE: &str = r#"
cluster_secret_file = "cluster.secret"
listen = ["127.0.0.1:4433", "[::1]:4433"]
workers = 2
mode = "proxy"
flow_idle_timeout = "60s"

[[quic_lb]]
config_id = 0
server_id_len = 2
nonce_len = 6
key = "00112233445566778899aabbccddeeff"
length_self_encoding = true

[[quic_lb]]
config_id = 1
server_id_len = 2
nonce_len = 14
key_file = "quic_lb_1.key"

[[backend]]
name = "b1"
addr = "127.0.0.1:5001"
server_id = "0001"
weight = 1
state = "active"

[[backend]]
name = "b2"
addr = "127.0.0.1:5002"
server_id = "0002"
weight = 3
state = "draining"

[health]
enabled = true
interval = "1s"
timeout = "500ms"
path = "/healthz"
healthy_threshold = 2
unhealthy_threshold = 3

[admin]
listen = "0.0.0.0:9901"
token_file = "admin.token"
allowed_hosts = ["lb-1.internal"]
"#;

fn with_files(dir: &Path) {
    fs::write(
        dir.join("cluster.secret"),
        "00112233445566778899aabbccddeeff0011\n",
    )
    .expect("write");
    fs::write(
        dir.join("quic_lb_1.key"),
        "ffeeddccbbaa99887766554433221100\n",
    )
    .expect("write");
    fs::write(dir.join("admin.token"), "s3cret-token\n").expect("write");
}

fn load(text: &str) -> Result<LbConfig, ConfigError> {
    load_with(text, LbConfig::from_file)
}

/// The shared part of `text`, as a backend reads it.
fn load_cluster(text: &str) -> Result<ClusterConfig, ConfigError> {
    load_with(text, ClusterConfig::load)
}

/// `text` written to a file beside the example's files, read by `read`.
fn load_with<T>(
    text: &str,
    read: impl FnOnce(&Path) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    with_files(dir.path());
    let path = dir.path().join("lb.toml");
    fs::write(&path, text).expect("write");
    read(&path)
}

/// The example with `from` replaced by `to`; the replacement must apply.
fn variant(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "example lacks {from:?}");
    EXAMPLE.replacen(from, to, 1)
}

fn refusal(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_documented_example_loads() {
    let config = load(EXAMPLE).expect("valid");
    assert_eq!(config.listen.len(), 2);
    assert_eq!(config.workers.get(), 2);
    assert_eq!(config.flow_idle_timeout, Duration::from_secs(60));
    assert_eq!(config.cluster.quic_lb.len(), 2);
    assert_eq!(config.cluster.quic_lb[0].mode(), Mode::FourPass);
    assert_eq!(config.cluster.quic_lb[1].mode(), Mode::SinglePass);
    assert_eq!(
        config.cluster.quic_lb[1]
            .key()
            .map(|k| hex::encode(k.as_bytes())),
        Some("ffeeddccbbaa99887766554433221100".to_owned())
    );
    assert_eq!(config.backends[1].weight, 3);
    assert_eq!(config.backends[1].state, BackendState::Draining);
    assert_eq!(config.health.unhealthy_threshold, 3);
    let admin = config.admin.as_ref().expect("admin");
    assert_eq!(
        admin.token.as_ref().map(|t| t.as_bytes()),
        Some(&b"s3cret-token"[..])
    );
    assert_eq!(admin.allowed_hosts, ["lb-1.internal"]);
    assert_eq!(
        config
            .cluster
            .cluster_secret
            .as_ref()
            .map(|s| s.as_bytes().len()),
        Some(18)
    );
    let pool = config.pool(|name| name == "b1").expect("pool");
    assert_eq!(pool.backends().len(), 2);
}

#[test]
fn secrets_never_show_in_debug_output() {
    let shown = format!("{:?}", load(EXAMPLE).expect("valid"));
    for secret in ["s3cret-token", "0011223344", "ffeeddcc", "00, 17, 34"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = load(
        r#"
        listen = ["127.0.0.1:4433"]
        [[backend]]
        name = "b1"
        addr = "127.0.0.1:5001"
        server_id = "01"
        "#,
    )
    .expect("valid");
    assert!(config.health.enabled);
    assert_eq!(config.health.interval, Duration::from_secs(1));
    assert_eq!(config.health.path, "/healthz");
    assert!(config.admin.is_none());
    assert!(config.cluster.cluster_secret.is_none());
    assert_eq!(config.backends[0].weight, 1);
    assert_eq!(config.backends[0].state, BackendState::Active);
}

#[test]
fn flow_caps_default_and_follow_each_other() {
    let defaults = load(EXAMPLE).expect("valid");
    assert_eq!(
        (defaults.max_flows, defaults.max_unconfirmed_flows),
        (65536, 4096)
    );
    let flow_idle = "flow_idle_timeout = \"60s\"";
    let small = load(&variant(flow_idle, "max_flows = 1000")).expect("valid");
    assert_eq!((small.max_flows, small.max_unconfirmed_flows), (1000, 1000));
    let both = variant(flow_idle, "max_flows = 1000\nmax_unconfirmed_flows = 10");
    let both = load(&both).expect("valid");
    assert_eq!((both.max_flows, both.max_unconfirmed_flows), (1000, 10));
}

#[test]
fn every_bad_value_is_refused_naming_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("workers = 2", "workerz = 2", "workerz"),
        ("workers = 2", "workers = 0", "workers:"),
        ("mode = \"proxy\"", "mode = \"dsr\"", "mode:"),
        (
            "flow_idle_timeout = \"60s\"",
            "flow_idle_timeout = \"60\"",
            "flow_idle_timeout:",
        ),
        (
            "flow_idle_timeout = \"60s\"",
            "flow_idle_timeout = \"0s\"",
            "flow_idle_timeout:",
        ),
        // Past a day: it would overflow an `Instant` in a worker instead.
        (
            "flow_idle_timeout = \"60s\"",
            "flow_idle_timeout = \"1000000000h\"",
            "flow_idle_timeout:",
        ),
        (
            "flow_idle_timeout = \"60s\"",
            "flow_idle_timeout = \"25h\"",
            "flow_idle_timeout:",
        ),
        (
            "interval = \"1s\"",
            "interval = \"1000000000h\"",
            "health.interval:",
        ),
        (
            "timeout = \"500ms\"",
            "timeout = \"1000000000h\"",
            "health.timeout:",
        ),
        (
            "flow_idle_timeout = \"60s\"",
            "max_flows = 0",
            "max_flows: must be 1..=",
        ),
        (
            "flow_idle_timeout = \"60s\"",
            "max_flows = 100\nmax_unconfirmed_flows = 101",
            "max_unconfirmed_flows: must be 1..=100, got 101",
        ),
        (
            "flow_idle_timeout = \"60s\"",
            "max_unconfirmed_flows = 0",
            "max_unconfirmed_flows:",
        ),
        (
            "listen = [\"127.0.0.1:4433\", \"[::1]:4433\"]",
            "listen = []",
            "listen:",
        ),
        ("\"[::1]:4433\"", "\"localhost:4433\"", "listen[1]:"),
        (
            "\"[::1]:4433\"",
            "\"[::1]:4433\", \"127.0.0.1:4433\"",
            "listen[2]: 127.0.0.1:4433 is also listen[0]",
        ),
        ("config_id = 1", "config_id = 7", "quic_lb[1].config_id:"),
        (
            "config_id = 1",
            "config_id = 0",
            "quic_lb[1].config_id: 0 is already used",
        ),
        ("config_id = 1", "config_id = 300", "quic_lb[1].config_id:"),
        ("nonce_len = 6", "nonce_len = 3", "quic_lb[0].nonce_len:"),
        ("nonce_len = 14", "nonce_len = 18", "quic_lb[1].nonce_len:"),
        (
            "server_id_len = 2\nnonce_len = 6",
            "server_id_len = 0\nnonce_len = 6",
            "quic_lb[0].server_id_len:",
        ),
        (
            "key = \"00112233445566778899aabbccddeeff\"",
            "key = \"0011\"",
            "quic_lb[0].key:",
        ),
        (
            "key_file = \"quic_lb_1.key\"",
            "key_file = \"missing.key\"",
            "quic_lb[1].key_file: cannot read",
        ),
        (
            "key_file = \"quic_lb_1.key\"",
            "key_file = \"quic_lb_1.key\"\nkey = \"00112233445566778899aabbccddeeff\"",
            "quic_lb[1].key: give quic_lb[1].key or quic_lb[1].key_file, not both",
        ),
        (
            "server_id = \"0001\"",
            "server_id = \"01\"",
            "backend[0].server_id: 1 octets",
        ),
        (
            "server_id = \"0001\"",
            "server_id = \"zz\"",
            "backend[0].server_id:",
        ),
        (
            "server_id = \"0002\"",
            "server_id = \"0001\"",
            "backend[1].server_id:",
        ),
        ("name = \"b2\"", "name = \"b1\"", "backend[1].name:"),
        ("name = \"b2\"", "name = \" \"", "backend[1].name:"),
        (
            "addr = \"127.0.0.1:5002\"",
            "addr = \"nowhere\"",
            "backend[1].addr:",
        ),
        ("weight = 3", "weight = 0", "backend[1].weight:"),
        (
            "state = \"draining\"",
            "state = \"down\"",
            "backend[1].state:",
        ),
        (
            "interval = \"1s\"",
            "interval = \"100ms\"",
            "health.timeout:",
        ),
        ("path = \"/healthz\"", "path = \"healthz\"", "health.path:"),
        (
            "allowed_hosts = [\"lb-1.internal\"]",
            "allowed_hosts = [\"lb.internal\", \"evil host\"]",
            "admin.allowed_hosts[1]:",
        ),
        (
            "healthy_threshold = 2",
            "healthy_threshold = 0",
            "health.healthy_threshold:",
        ),
        (
            "token_file = \"admin.token\"",
            "",
            "admin.token_file: required",
        ),
        (
            "token_file = \"admin.token\"",
            "token_file = \"nope\"",
            "admin.token_file: cannot read",
        ),
        (
            "token_file = \"admin.token\"",
            "token_file = \"admin.token\"\ntoken = \"inline\"",
            "admin.token: give admin.token or admin.token_file, not both",
        ),
        (
            "token_file = \"admin.token\"",
            "token = \"  \"",
            "admin.token: the token is empty",
        ),
        (
            "cluster_secret_file = \"cluster.secret\"",
            "cluster_secret = \"0011\"",
            "cluster_secret: at least 16 octets",
        ),
        (
            "cluster_secret_file = \"cluster.secret\"",
            "cluster_secret = \"xyz\"",
            "cluster_secret: must be hex",
        ),
        (
            "cluster_secret_file = \"cluster.secret\"",
            "cluster_secret_file = \"cluster.secret\"\ncluster_secret = \"00112233445566778899aabbccddeeff\"",
            "cluster_secret: give cluster_secret or cluster_secret_file, not both",
        ),
    ];
    for &(from, to, expected) in cases {
        let message = refusal(&variant(from, to));
        assert!(
            message.contains(expected),
            "{to:?}: expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let err = LbConfig::from_file(Path::new("/nonexistent/lb.toml")).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("config: cannot read /nonexistent/lb.toml"),
        "{err}"
    );
}

#[test]
fn syntax_errors_name_the_line_without_quoting_it() {
    // A line holding a key, broken: the message must not repeat it (it reaches logs).
    let broken = variant(
        "key = \"00112233445566778899aabbccddeeff\"",
        "key = \"00112233445566778899aabbccddeeff",
    );
    let message = refusal(&broken);
    assert!(message.starts_with("line 12: "), "{message}");
    assert!(!message.contains("0011223344"), "{message}");
}

#[test]
fn an_inline_admin_token_and_repeated_free_ports_are_accepted() {
    let config = load(&variant(
        "token_file = \"admin.token\"",
        "token = \" inline-token \"",
    ))
    .expect("valid");
    let token = config.admin.and_then(|a| a.token);
    assert_eq!(
        token.as_ref().map(|t| t.as_bytes()),
        Some(&b"inline-token"[..])
    );
    let two_free_ports = variant(
        "listen = [\"127.0.0.1:4433\", \"[::1]:4433\"]",
        "listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]",
    );
    assert_eq!(load(&two_free_ports).expect("valid").listen.len(), 2);
}

/// The example's shared part alone: what a cluster file holds.
fn cluster_only() -> String {
    let lb_own = EXAMPLE.find("[[backend]]").expect("backends");
    let shared = EXAMPLE.get(..lb_own).expect("prefix");
    ["listen", "workers", "mode", "flow_idle_timeout"]
        .iter()
        .fold(shared.to_owned(), |text, key| {
            text.lines()
                .filter(|line| !line.starts_with(key))
                .collect::<Vec<_>>()
                .join("\n")
        })
}

#[test]
fn a_cluster_file_holds_the_shared_part_alone_and_the_lb_needs_more() {
    let text = cluster_only();
    assert!(
        !text.contains("listen") && !text.contains("[[backend]]"),
        "{text}"
    );
    let cluster = load_cluster(&text).expect("valid");
    assert_eq!(cluster.quic_lb.len(), 2);
    assert_eq!(cluster.quic_lb[1].mode(), Mode::SinglePass);
    assert_eq!(
        cluster.cluster_secret.as_ref().map(|s| s.as_bytes().len()),
        Some(18)
    );
    // The load balancer needs its listeners.
    assert!(refusal(&text).starts_with("listen:"), "{}", refusal(&text));
}

#[test]
fn the_whole_lb_file_yields_the_same_shared_part() {
    let cluster = load_cluster(EXAMPLE).expect("valid");
    assert_eq!(cluster, load(EXAMPLE).expect("valid").cluster);
    assert_eq!(cluster, load_cluster(&cluster_only()).expect("valid"));
    // The load balancer's own sections are skipped, not validated.
    let bad_lb_part = variant("workers = 2", "workers = 0");
    assert_eq!(load_cluster(&bad_lb_part).expect("valid"), cluster);
}

#[test]
fn the_shared_part_is_refused_naming_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("config_id = 1", "config_id = 7", "quic_lb[1].config_id:"),
        ("nonce_len = 6", "nonce_len = 3", "quic_lb[0].nonce_len:"),
        (
            "key_file = \"quic_lb_1.key\"",
            "key_file = \"missing.key\"",
            "quic_lb[1].key_file: cannot read",
        ),
        (
            "cluster_secret_file = \"cluster.secret\"",
            "cluster_secret = \"xyz\"",
            "cluster_secret: must be hex",
        ),
        ("workers = 2", "workerz = 2", "workerz"),
    ];
    for &(from, to, expected) in cases {
        for text in [variant(from, to), cluster_only().replacen(from, to, 1)] {
            if !text.contains(to) {
                continue; // the cluster file lacks the load balancer's keys
            }
            let message = load_cluster(&text).expect_err(to).to_string();
            assert!(
                message.contains(expected),
                "{to:?}: expected {expected:?} in {message:?}"
            );
        }
    }
}

#[test]
fn the_retry_table_loads_and_bad_values_are_refused_naming_their_field() {
    let with = |table: &str| format!("{EXAMPLE}\n[retry]\n{table}\n");
    assert_eq!(load(EXAMPLE).expect("valid").retry, RetryConfig::default());
    let config = load(&with(
        "mode = \"above\"\nthreshold = 500\ntoken_lifetime = \"5s\"\n\
         previous_cluster_secret = \"ffeeddccbbaa99887766554433221100\"",
    ))
    .expect("valid");
    assert_eq!(config.retry.mode, RetryMode::Above(500));
    assert_eq!(config.retry.token_lifetime, Duration::from_secs(5));
    assert!(config.retry.previous_cluster_secret.is_some());
    assert_eq!(
        load(&with("mode = \"always\"")).expect("valid").retry.mode,
        RetryMode::Always
    );
    for (table, field) in [
        ("mode = \"sometimes\"", "retry.mode:"),
        ("mode = \"above\"", "retry.threshold:"),
        ("mode = \"always\"\nthreshold = 5", "retry.threshold:"),
        ("mode = \"above\"\nthreshold = -1", "retry.threshold:"),
        ("token_lifetime = \"16s\"", "retry.token_lifetime:"),
        ("token_lifetime = \"1500ms\"", "retry.token_lifetime:"),
        ("token_lifetime = \"0s\"", "retry.token_lifetime:"),
        (
            "previous_cluster_secret = \"zz\"",
            "retry.previous_cluster_secret:",
        ),
        ("modes = \"always\"", "modes"),
    ] {
        let message = refusal(&with(table));
        assert!(message.contains(field), "{table}: {message}");
    }
    let no_secret =
        with("mode = \"always\"").replacen("cluster_secret_file = \"cluster.secret\"\n", "", 1);
    assert!(
        refusal(&no_secret).starts_with("retry.mode: needs cluster_secret"),
        "{}",
        refusal(&no_secret)
    );
    // A backend reading the shared part ignores the table.
    assert!(load_cluster(&with("mode = \"always\"")).is_ok());
}

/// A `gue` mode file: its table, and a backend whose health checks go to its QUIC address.
const GUE: &str = r#"
listen = ["127.0.0.1:4433"]
mode = "gue"
[gue]
bind = "127.0.0.1:6080"
ports = 4
[[backend]]
name = "b1"
addr = "127.0.0.1:6001"
health_addr = "127.0.0.1:5001"
server_id = "01"
"#;

/// [`GUE`] with `from` replaced by `to`; the replacement must apply.
fn gue_variant(from: &str, to: &str) -> String {
    assert!(GUE.contains(from), "GUE lacks {from:?}");
    GUE.replacen(from, to, 1)
}

#[test]
fn gue_mode_loads_with_its_table_defaults_and_health_addresses() {
    let config = load(GUE).expect("valid");
    let gue = |bind: &str, ports| {
        ForwardingMode::Gue(GueConfig {
            bind: bind.parse().expect("address"),
            ports,
        })
    };
    assert_eq!(config.mode, gue("127.0.0.1:6080", 4));
    assert_eq!(config.mode.as_str(), "gue");
    let backend = &config.backends[0];
    assert_eq!(backend.health_check_addr().to_string(), "127.0.0.1:5001");
    assert_eq!(backend.addr.to_string(), "127.0.0.1:6001");
    // The pool routes to the GUE address.
    let pool = config.pool(|_| false).expect("pool");
    assert_eq!(pool.backends()[0].address(), backend.addr);

    let bare = gue_variant("[gue]\nbind = \"127.0.0.1:6080\"\nports = 4\n", "");
    assert_eq!(load(&bare).expect("valid").mode, gue("0.0.0.0:6080", 8));
    let ipv6 = bare
        .replace("127.0.0.1:4433", "[::1]:4433")
        .replace("127.0.0.1:6001", "[::1]:6001");
    assert_eq!(load(&ipv6).expect("valid").mode, gue("[::]:6080", 8));
    // Without health checks nothing needs a health address.
    let unchecked =
        gue_variant("health_addr = \"127.0.0.1:5001\"\n", "") + "[health]\nenabled = false\n";
    assert!(
        load(&unchecked).expect("valid").backends[0]
            .health_addr
            .is_none()
    );
    // Proxy mode takes one too.
    let proxy = variant(
        "server_id = \"0001\"",
        "server_id = \"0001\"\nhealth_addr = \"127.0.0.1:7001\"",
    );
    assert_eq!(
        load(&proxy).expect("valid").backends[0]
            .health_check_addr()
            .to_string(),
        "127.0.0.1:7001"
    );
    // A backend reading the shared part skips the table.
    assert!(load_cluster(GUE).is_ok());
}

#[test]
fn gue_mode_refuses_bad_values_naming_their_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ports = 4",
            "ports = 0",
            "gue.ports: must be 1..=256, got 0",
        ),
        ("ports = 4", "ports = 257", "gue.ports: must be 1..=256"),
        (
            "bind = \"127.0.0.1:6080\"",
            "bind = \"127.0.0.1:65534\"",
            "gue.ports: 4 ports from 127.0.0.1:65534 run past port 65535",
        ),
        (
            "bind = \"127.0.0.1:6080\"",
            "bind = \"lb:6080\"",
            "gue.bind: expected ip:port",
        ),
        (
            "bind = \"127.0.0.1:6080\"",
            "bind = \"0.0.0.0:4430\"",
            "gue.bind: the 4 GUE ports from 0.0.0.0:4430 include listen[0] (127.0.0.1:4433)",
        ),
        ("ports = 4", "portz = 4", "portz"),
        (
            "health_addr = \"127.0.0.1:5001\"\n",
            "",
            "backend[0].health_addr: required in mode = \"gue\" with health checks on",
        ),
        (
            "health_addr = \"127.0.0.1:5001\"",
            "health_addr = \"nowhere\"",
            "backend[0].health_addr: expected ip:port",
        ),
        (
            "addr = \"127.0.0.1:6001\"",
            "addr = \"[::1]:6001\"",
            "backend[0].addr: [::1]:6001 is IPv6, but gue.bind (127.0.0.1:6080) is IPv4",
        ),
        (
            "mode = \"gue\"",
            "mode = \"proxy\"",
            "gue: only with mode = \"gue\" or \"xdp\"",
        ),
        (
            "mode = \"gue\"",
            "mode = \"dsr\"",
            "mode: unsupported \"dsr\"; supported: \"proxy\", \"gue\", \"xdp\"",
        ),
    ];
    for &(from, to, expected) in cases {
        let message = refusal(&gue_variant(from, to));
        assert!(
            message.contains(expected),
            "{to:?}: expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn xdp_mode_is_gue_mode_with_an_interface_and_refuses_what_the_program_cannot_use() {
    let xdp = gue_variant("mode = \"gue\"", "mode = \"xdp\"") + "[xdp]\ninterface = \"veth0\"\n";
    let config = load(&xdp).expect("valid");
    let ForwardingMode::Xdp(table) = config.mode else {
        panic!("{:?}", config.mode)
    };
    assert_eq!(config.mode.as_str(), "xdp");
    assert_eq!(table.interface.as_str(), "veth0");
    assert_eq!(table.attach, XdpAttach::Auto);
    assert_eq!(config.mode.gue(), Some(&table.gue));
    assert_eq!(table.gue.bind.to_string(), "127.0.0.1:6080");
    // gue mode's rules hold: the backends need health addresses.
    assert!(
        refusal(&xdp.replacen("health_addr = \"127.0.0.1:5001\"\n", "", 1))
            .contains("backend[0].health_addr: required")
    );
    let generic = xdp.replace(
        "interface = \"veth0\"",
        "interface = \"veth0\"\nattach = \"generic\"",
    );
    let ForwardingMode::Xdp(table) = load(&generic).expect("valid").mode else {
        panic!("xdp")
    };
    assert_eq!(table.attach, XdpAttach::Generic);

    let cases: &[(&str, &str, &str)] = &[
        (
            "interface = \"veth0\"\n",
            "",
            "xdp.interface: required with mode = \"xdp\"",
        ),
        (
            "interface = \"veth0\"",
            "interface = \"a-name-far-too-long\"",
            "xdp.interface: \"a-name-far-too-long\" is not an interface name",
        ),
        (
            "interface = \"veth0\"",
            "interface = \"veth0\"\nattach = \"offload\"",
            "xdp.attach: unsupported \"offload\"",
        ),
        (
            "bind = \"127.0.0.1:6080\"",
            "bind = \"0.0.0.0:6080\"",
            "gue.bind: 0.0.0.0:6080 cannot be the XDP program's outer source",
        ),
        (
            "mode = \"xdp\"",
            "mode = \"gue\"",
            "xdp: only with mode = \"xdp\"",
        ),
        (
            "interface = \"veth0\"",
            "interfaces = \"veth0\"",
            "interfaces",
        ),
    ];
    for &(from, to, expected) in cases {
        assert!(xdp.contains(from), "{from:?}");
        let message = refusal(&xdp.replacen(from, to, 1));
        assert!(
            message.contains(expected),
            "{to:?}: expected {expected:?} in {message:?}"
        );
    }
    // A backend reading the shared part skips both tables.
    assert!(load_cluster(&xdp).is_ok());
}

/// An `[etcd]` table reaching `endpoint`, with `more` lines.
fn etcd_table(endpoint: &str, more: &str) -> String {
    format!(
        "listen = [\"127.0.0.1:4433\"]\n[etcd]\nendpoints = [\"{endpoint}\"]\ncluster = \"edge\"\n\
         name = \"lb-1\"\n{more}"
    )
}

#[test]
fn etcd_tls_and_user_settings_are_checked_naming_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("https://etcd-0:2379", "", "etcd.ca_file:"),
        (
            "https://etcd-0:2379",
            "ca_file = \"missing.pem\"",
            "missing.pem",
        ),
        (
            "http://etcd-0:2379",
            "cert_file = \"c.pem\"",
            "etcd.key_file:",
        ),
        ("http://etcd-0:2379", "user = \"qlb\"", "etcd.password:"),
        (
            "http://etcd-0:2379",
            "password_file = \"admin.token\"",
            "etcd.user:",
        ),
        (
            "http://etcd-0:2379",
            "user = \"qlb\"\npassword = \"a\"\npassword_file = \"admin.token\"",
            "etcd.password:",
        ),
        ("etcd-0:2379", "", "etcd.endpoints[0]:"),
    ];
    for (endpoint, more, field) in cases {
        let refused = refusal(&etcd_table(endpoint, more));
        assert!(refused.contains(field), "{more}: {refused}");
    }
    let config = load(&etcd_table(
        "http://etcd-0:2379",
        "user = \"qlb\"\npassword_file = \"admin.token\"",
    ))
    .expect("valid");
    let etcd = config.etcd.expect("an [etcd] table");
    let (user, password) = etcd.user.as_ref().expect("a user");
    assert_eq!(
        (user.as_str(), password.as_bytes()),
        ("qlb", &b"s3cret-token"[..])
    );
    assert!(!format!("{etcd:?}").contains("s3cret"), "{etcd:?}");
}
