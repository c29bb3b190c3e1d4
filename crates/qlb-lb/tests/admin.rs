//! The admin HTTP API over real TCP, in front of a real load balancer with HTTP/3 backends:
//! status, drain and undrain (and where new connections go meanwhile), reload, metrics, and
//! the bearer token off loopback, and the Host and Origin checks that stop web pages.

mod quic;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use qlb_testkit::TestResult;
use quic::{
    Backend, FAST_HEALTH, LbFile, NO_HEALTH, Setup, admin, admin_with, connection_to, lb_toml,
    new_connections_reach, setup, setup_up,
};

const LOOPBACK_ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_undrain_over_http() -> TestResult {
    let Setup::<2> { balancer, lb, .. } = setup(&format!("{NO_HEALTH}{LOOPBACK_ADMIN}")).await?;
    let api = balancer.admin_addr().ok_or("admin")?;
    let mut on_b1 = connection_to(lb, "b1").await?;

    let drained = admin(api, "POST", "/backends/b1/drain", None).await?;
    assert_eq!(drained.status, 200, "{drained:?}");
    assert_eq!(drained.json()?["effective_state"], "draining");
    let status = admin(api, "GET", "/status", None).await?.json()?;
    let b1_status = &status["backends"][0];
    assert_eq!(
        (
            &b1_status["name"],
            &b1_status["admin_override"],
            &b1_status["configured_state"],
            &b1_status["effective_state"]
        ),
        (
            &"b1".into(),
            &"drain".into(),
            &"active".into(),
            &"draining".into()
        )
    );
    let reached: BTreeSet<String> = new_connections_reach(lb, 8).await?.into_iter().collect();
    assert_eq!(reached, BTreeSet::from(["b2".to_owned()]));
    assert_eq!(
        on_b1.backend().await?,
        "b1",
        "a drained backend keeps its connections"
    );

    let unknown = admin(api, "POST", "/backends/b9/drain", None).await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()?["error"], "no backend named \"b9\"");
    assert_eq!(
        admin(api, "POST", "/backends/b9/undrain", None)
            .await?
            .status,
        404
    );
    assert_eq!(
        admin(api, "GET", "/backends/b1/drain", None).await?.status,
        405
    );

    let undrained = admin(api, "POST", "/backends/b1/undrain", None).await?;
    assert_eq!(undrained.status, 200);
    assert_eq!(undrained.json()?["effective_state"], "active");
    assert_eq!(undrained.json()?["admin_override"], serde_json::Value::Null);
    connection_to(lb, "b1").await?;
    balancer.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_off_loopback_and_not_on_it() -> TestResult {
    let b1 = Backend::start("b1", "0001", 0)?;
    let file = LbFile::new(&lb_toml(
        &[0],
        &[&b1],
        &format!("{NO_HEALTH}[admin]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"admin.token\"\n"),
    ))?;
    file.write_beside("admin.token", "tok-3f9a\n")?;
    let balancer = file.start().await?;
    // Bound to every address; reached through loopback, still not a loopback listener.
    let api = SocketAddr::from(([127, 0, 0, 1], balancer.admin_addr().ok_or("admin")?.port()));

    for path in ["/status", "/metrics"] {
        let refused = admin(api, "GET", path, None).await?;
        assert_eq!(refused.status, 401, "{path}");
        assert!(
            refused
                .headers
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{refused:?}"
        );
        assert_eq!(admin(api, "GET", path, Some("tok-3f9")).await?.status, 401);
        assert_eq!(admin(api, "GET", path, Some("tok-3f9a")).await?.status, 200);
    }
    for (method, path) in [("POST", "/backends/b1/drain"), ("POST", "/reload")] {
        assert_eq!(admin(api, method, path, None).await?.status, 401, "{path}");
    }
    assert_eq!(
        admin(api, "POST", "/backends/b1/drain", Some("tok-3f9a"))
            .await?
            .status,
        200
    );

    // A new token takes effect at reload.
    file.write_beside("admin.token", "tok-new\n")?;
    let report = admin(api, "POST", "/reload", Some("tok-3f9a")).await?;
    assert_eq!(report.status, 200, "{report:?}");
    assert_eq!(report.json()?["admin_token_changed"], true);
    assert_eq!(
        admin(api, "GET", "/status", Some("tok-3f9a")).await?.status,
        401
    );
    assert_eq!(
        admin(api, "GET", "/status", Some("tok-new")).await?.status,
        200
    );
    balancer.shutdown().await?;

    // On loopback without a token, nothing is asked.
    let file = LbFile::new(&lb_toml(
        &[0],
        &[&b1],
        &format!("{NO_HEALTH}{LOOPBACK_ADMIN}"),
    ))?;
    let balancer = file.start().await?;
    let api = balancer.admin_addr().ok_or("admin")?;
    assert_eq!(admin(api, "GET", "/status", None).await?.status, 200);
    balancer.shutdown().await?;
    assert!(
        admin(api, "GET", "/status", None).await.is_err(),
        "the admin API stops with the balancer"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_hosts_and_cross_site_posts_are_refused_token_or_not() -> TestResult {
    let b1 = Backend::start("b1", "0001", 0)?;
    let file = LbFile::new(&lb_toml(
        &[0],
        &[&b1],
        &format!(
            "{NO_HEALTH}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok-7c1e\"\n\
             allowed_hosts = [\"lb.internal\"]\n"
        ),
    ))?;
    let balancer = file.start().await?;
    let api = balancer.admin_addr().ok_or("admin")?;
    let port = api.port();
    let token = Some("tok-7c1e");
    let request = |method, path, headers: Vec<(&'static str, String)>| async move {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        admin_with(api, method, path, token, &headers).await
    };

    // The API's own names: its address, localhost, loopback literals, the configured name.
    for host in [
        api.to_string(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("lb.internal:{port}"),
    ] {
        let reply = request("GET", "/status", vec![("Host", host.clone())]).await?;
        assert_eq!(reply.status, 200, "{host}: {reply:?}");
    }
    // A page whose name was rebound to 127.0.0.1, with the right token or not.
    let evil = format!("evil.example:{port}");
    for (method, path) in [("GET", "/status"), ("GET", "/metrics"), ("POST", "/reload")] {
        let reply = request(method, path, vec![("Host", evil.clone())]).await?;
        assert_eq!(reply.status, 421, "{method} {path}: {reply:?}");
        assert!(reply.body.contains("admin.allowed_hosts"), "{reply:?}");
    }
    // No Host at all is no better.
    assert_eq!(request("GET", "/status", vec![]).await?.status, 421);
    // A cross-site POST: the right Host, a foreign Origin.
    let own = vec![("Host", api.to_string())];
    let with_origin = |origin: &str| {
        let mut headers = own.clone();
        headers.push(("Origin", origin.to_owned()));
        headers
    };
    let reply = request(
        "POST",
        "/backends/b1/drain",
        with_origin("http://evil.example"),
    )
    .await?;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        backend_state(api).await?,
        "active",
        "the drain did not happen"
    );
    let reply = request(
        "POST",
        "/backends/b1/drain",
        with_origin(&format!("http://{api}")),
    )
    .await?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(backend_state(api).await?, "draining");

    let status = admin(api, "GET", "/status", token).await?.json()?;
    assert_eq!(status["admin_refused"]["host"], 4, "{status}");
    assert_eq!(status["admin_refused"]["origin"], 1, "{status}");
    let metrics = admin(api, "GET", "/metrics", token).await?.body;
    assert!(
        metrics.contains("qlb_lb_admin_refused_total{reason=\"host\"} 4"),
        "{metrics}"
    );
    balancer.shutdown().await?;
    Ok(())
}

/// The effective state of backend b1, through the API.
async fn backend_state(api: SocketAddr) -> TestResult<String> {
    let status = admin(api, "GET", "/status", Some("tok-7c1e"))
        .await?
        .json()?;
    Ok(status["backends"][0]["effective_state"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_over_http_reports_changes_and_refusals() -> TestResult {
    let b1 = Backend::start("b1", "0001", 0)?;
    let b2 = Backend::start("b2", "0002", 0)?;
    let rest = format!("{NO_HEALTH}{LOOPBACK_ADMIN}");
    let file = LbFile::new(&lb_toml(&[0], &[&b1], &rest))?;
    let balancer = file.start().await?;
    let api = balancer.admin_addr().ok_or("admin")?;

    file.write(&lb_toml(&[0, 1], &[&b1, &b2], &rest))?;
    let applied = admin(api, "POST", "/reload", None).await?;
    assert_eq!(applied.status, 200, "{applied:?}");
    let report = applied.json()?;
    assert_eq!(report["backends_added"], serde_json::json!(["b2"]));
    assert_eq!(report["quic_lb_added"], serde_json::json!([1]));

    file.write(&lb_toml(&[0, 1], &[&b1, &b2], &rest).replace("nonce_len = 6", "nonce_len = 2"))?;
    let refused = admin(api, "POST", "/reload", None).await?;
    assert_eq!(refused.status, 422, "{refused:?}");
    let message = refused.json()?["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.starts_with("quic_lb[0].nonce_len:"), "{message}");

    let status = admin(api, "GET", "/status", None).await?.json()?;
    assert_eq!(status["quic_lb_config_ids"], serde_json::json!([0, 1]));
    assert_eq!(status["backends"].as_array().map(Vec::len), Some(2));
    assert_eq!(status["reloads"]["applied"], 1);
    assert_eq!(status["reloads"]["refused"], 1);
    balancer.shutdown().await?;
    Ok(())
}

/// One parsed sample line: `name{labels} value`.
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses OpenMetrics text strictly enough to catch a malformed exposition: metadata lines,
/// samples with well-formed labels and a number, and the final `# EOF`. Returns the families
/// (from `# TYPE`) and the samples.
fn parse_metrics(text: &str) -> TestResult<(HashMap<String, String>, Vec<Sample>)> {
    let mut families = HashMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    if lines.last() != Some(&"# EOF") {
        return Err("no # EOF at the end".into());
    }
    let valid_name = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
            families.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or(format!("bad sample: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').ok_or("unclosed {")?),
            None => (series, ""),
        };
        if !valid_name(name) {
            return Err(format!("bad metric name: {line}").into());
        }
        let labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').ok_or(format!("bad label: {line}"))?;
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or(format!("unquoted label value: {line}"))?;
                Ok((key.to_owned(), value.to_owned()))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: value.parse().map_err(|_| format!("bad value: {line}"))?,
        });
    }
    Ok((families, samples))
}

/// What the key rotation procedure (docs/operations.md) watches: CID-routed decisions by
/// codepoint, in `/status` and `/metrics` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cid_decisions_are_counted_by_codepoint() -> TestResult {
    let old = Backend::start("b1", "0001", 0)?;
    let new = Backend::start("b2", "0002", 1)?;
    let file = LbFile::new(&lb_toml(
        &[0, 1],
        &[&old, &new],
        &format!("{NO_HEALTH}{LOOPBACK_ADMIN}"),
    ))?;
    let balancer = file.start().await?;
    let (lb, api) = (
        balancer.listen_addrs()[0],
        balancer.admin_addr().ok_or("admin")?,
    );
    for name in ["b1", "b2"] {
        let mut client = connection_to(lb, name).await?;
        client.get("/bytes/20000").await?;
    }
    let status = admin(api, "GET", "/status", None).await?.json()?;
    let by_codepoint = &status["routed_by_codepoint"];
    let count = |id: &str| by_codepoint[id].as_u64().unwrap_or_default();
    assert!(count("0") > 0 && count("1") > 0, "{by_codepoint}");
    assert_eq!(
        count("0") + count("1"),
        status["routed"]["cid"].as_u64().unwrap_or_default(),
        "{status}"
    );

    let metrics = admin(api, "GET", "/metrics", None).await?.body;
    let (_, samples) = parse_metrics(&metrics)?;
    let sample = |id: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == "qlb_lb_codepoint_decisions_total"
                    && s.labels.get("config_id").map(String::as_str) == Some(id)
            })
            .map(|s| s.value)
    };
    assert!(sample("0") >= Some(count("0") as f64), "{metrics}");
    assert!(sample("1") >= Some(count("1") as f64), "{metrics}");
    assert_eq!(sample("3"), None, "not configured, never seen");
    balancer.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_cover_every_family() -> TestResult {
    let Setup::<1> { balancer, lb, .. } =
        setup_up(&format!("{FAST_HEALTH}{LOOPBACK_ADMIN}")).await?;
    let api = balancer.admin_addr().ok_or("admin")?;
    let mut client = quic::connect(lb).await?;
    client.get("/bytes/100000").await?;

    let reply = admin(api, "GET", "/metrics", None).await?;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{}",
        reply.headers
    );
    let (families, samples) = parse_metrics(&reply.body)?;
    assert!(
        reply.body.lines().any(|l| l == "qlb_lb_flows_active 1"),
        "unlabelled samples have no braces:\n{}",
        reply.body
    );
    let expected = [
        ("qlb_lb_packets", "counter"),
        ("qlb_lb_bytes", "counter"),
        ("qlb_lb_decisions", "counter"),
        ("qlb_lb_dropped", "counter"),
        ("qlb_lb_receive_errors", "counter"),
        ("qlb_lb_flows_active", "gauge"),
        ("qlb_lb_flows_unconfirmed", "gauge"),
        ("qlb_lb_flows_created", "counter"),
        ("qlb_lb_flows_confirmed", "counter"),
        ("qlb_lb_flows_expired", "counter"),
        ("qlb_lb_flows_evicted", "counter"),
        ("qlb_lb_flows_refused", "counter"),
        ("qlb_lb_backend_state", "gauge"),
        ("qlb_lb_backend_health", "gauge"),
        ("qlb_lb_health_checks", "counter"),
        ("qlb_lb_health_transitions", "counter"),
        ("qlb_lb_reloads", "counter"),
        ("qlb_lb_codepoint_decisions", "counter"),
        ("qlb_lb_admin_refused", "counter"),
    ];
    for (family, kind) in expected {
        assert_eq!(
            families.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    };
    let to_client = [("backend", "b1"), ("direction", "to_client")];
    assert!(value("qlb_lb_bytes_total", &to_client) > Some(100_000.0));
    assert!(
        value(
            "qlb_lb_packets_total",
            &[("backend", "b1"), ("direction", "to_backend")]
        ) > Some(0.0)
    );
    assert!(value("qlb_lb_decisions_total", &[("kind", "cid")]) > Some(0.0));
    assert!(value("qlb_lb_decisions_total", &[("kind", "fallback")]) > Some(0.0));
    assert!(
        value(
            "qlb_lb_dropped_total",
            &[("stage", "router"), ("reason", "no_backend")]
        )
        .is_some()
    );
    assert_eq!(
        value(
            "qlb_lb_dropped_total",
            &[("stage", "dataplane"), ("reason", "flow_table_full")]
        ),
        Some(0.0)
    );
    assert_eq!(value("qlb_lb_flows_active", &[]), Some(1.0));
    // The H3 client's flow was answered by its backend.
    assert_eq!(value("qlb_lb_flows_unconfirmed", &[]), Some(0.0));
    for reason in ["unconfirmed_cap", "table_full"] {
        assert_eq!(
            value("qlb_lb_flows_evicted_total", &[("reason", reason)]),
            Some(0.0)
        );
    }
    for reason in ["table_full", "upstream_socket"] {
        assert_eq!(
            value("qlb_lb_flows_refused_total", &[("reason", reason)]),
            Some(0.0)
        );
    }
    assert_eq!(
        value(
            "qlb_lb_backend_health",
            &[("backend", "b1"), ("state", "up")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            "qlb_lb_health_checks_total",
            &[("backend", "b1"), ("result", "passed")]
        ) > Some(0.0)
    );
    assert_eq!(
        value(
            "qlb_lb_health_transitions_total",
            &[("backend", "b1"), ("to", "up")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("qlb_lb_reloads_total", &[("result", "applied")]),
        Some(0.0)
    );
    balancer.shutdown().await?;
    Ok(())
}

/// Basic credentials for user `operator` with password `token`, as a browser sends them.
fn basic(token: &str) -> String {
    use base64::Engine as _;
    let credentials = format!("operator:{token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_under_the_token_and_its_posts_need_its_header() -> TestResult {
    let b1 = Backend::start("b1", "0001", 0)?;
    let file = LbFile::new(&lb_toml(
        &[0],
        &[&b1],
        &format!("{NO_HEALTH}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok-d45h\"\n"),
    ))?;
    let balancer = file.start().await?;
    let api = balancer.admin_addr().ok_or("admin")?;
    let host = api.to_string();
    let request = |method, path, headers: Vec<(&'static str, String)>| {
        let host = host.clone();
        async move {
            let mut all = vec![("Host", host)];
            all.extend(headers);
            let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_str())).collect();
            admin_with(api, method, path, None, &all).await
        }
    };

    // Without the token: 401, and a Basic challenge that makes a browser ask for it.
    let refused = request("GET", "/", vec![]).await?;
    assert_eq!(refused.status, 401, "{refused:?}");
    let headers = refused.headers.to_ascii_lowercase();
    assert!(headers.contains("www-authenticate: bearer"), "{headers}");
    assert!(
        headers.contains("www-authenticate: basic realm="),
        "{headers}"
    );
    let wrong = request("GET", "/", vec![("Authorization", basic("tok-d45"))]).await?;
    assert_eq!(wrong.status, 401);

    // With it, as a bearer token or a Basic password: the page, self-contained.
    for authorization in [basic("tok-d45h"), "Bearer tok-d45h".to_owned()] {
        let page = request("GET", "/", vec![("Authorization", authorization)]).await?;
        assert_eq!(page.status, 200, "{page:?}");
        let headers = page.headers.to_ascii_lowercase();
        assert!(headers.contains("content-type: text/html"), "{headers}");
        assert!(headers.contains("content-security-policy: default-src 'none'"));
        assert!(headers.contains("x-frame-options: deny"), "{headers}");
        assert!(
            page.body.contains("fetch(api(\"status\")"),
            "the page reads /status"
        );
    }
    let status = request("GET", "/status", vec![("Authorization", basic("tok-d45h"))]).await?;
    assert_eq!(status.status, 200);

    // A POST riding on a browser's Basic credentials needs the dashboard's header (and a
    // same-origin Origin and fetch metadata, which a browser adds).
    let drain = "/backends/b1/drain";
    let origin = ("Origin", format!("http://{api}"));
    let credentials = ("Authorization", basic("tok-d45h"));
    let forged = request("POST", drain, vec![credentials.clone(), origin.clone()]).await?;
    assert_eq!(forged.status, 403, "{forged:?}");
    let cross_site = request(
        "POST",
        drain,
        vec![
            credentials.clone(),
            ("X-Qlb-Dashboard", "1".into()),
            ("Sec-Fetch-Site", "same-site".into()),
        ],
    )
    .await?;
    assert_eq!(cross_site.status, 403, "{cross_site:?}");
    assert_eq!(backend_status_of(&balancer, "b1").await, "active");
    let from_the_page = request(
        "POST",
        drain,
        vec![
            credentials,
            origin,
            ("X-Qlb-Dashboard", "1".into()),
            ("Sec-Fetch-Site", "same-origin".into()),
        ],
    )
    .await?;
    assert_eq!(from_the_page.status, 200, "{from_the_page:?}");
    assert_eq!(backend_status_of(&balancer, "b1").await, "draining");
    let status = admin(api, "GET", "/status", Some("tok-d45h"))
        .await?
        .json()?;
    assert_eq!(status["admin_refused"]["origin"], 2, "{status}");
    assert_eq!(status["admin_refused"]["token"], 2, "{status}");
    balancer.shutdown().await?;
    Ok(())
}

async fn backend_status_of(balancer: &qlb_lb::Balancer, name: &str) -> String {
    quic::backend_status(balancer, name).await["effective_state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// What the dashboard fetches every second from a fleet of 500 backends: reported, not
/// judged (its rendering cost is measured in headless Chromium, e2e_chromium); the test
/// checks that every backend is in it and the page is the same whatever the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_dashboard_with_500_backends() -> TestResult {
    let mut text = String::from("listen = [\"127.0.0.1:0\"]\nworkers = 1\n");
    text.push_str(&qlb_testkit::fixtures::table(0));
    for i in 1..=500u32 {
        // Nothing listens there: without health checks nobody notices.
        text.push_str(&format!(
            "[[backend]]\nname = \"backend-{i:03}\"\naddr = \"127.0.0.1:{}\"\n\
             server_id = \"{i:04x}\"\n",
            20_000 + i
        ));
    }
    text.push_str(&format!("{NO_HEALTH}{LOOPBACK_ADMIN}"));
    let balancer = LbFile::new(&text)?.start().await?;
    let api = balancer.admin_addr().ok_or("admin")?;
    let status = admin(api, "GET", "/status", None).await?;
    assert_eq!(status.status, 200);
    let backends = status.json()?["backends"].as_array().map(Vec::len);
    assert_eq!(backends, Some(500));
    let page = admin(api, "GET", "/", None).await?;
    assert_eq!(page.status, 200);
    eprintln!(
        "500 backends: GET /status is {} octets ({} per backend), GET / {} octets",
        status.body.len(),
        status.body.len() / 500,
        page.body.len()
    );
    balancer.shutdown().await?;
    Ok(())
}
