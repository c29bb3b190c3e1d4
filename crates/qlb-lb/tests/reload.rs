//! Reloads with real HTTP/3 traffic going through: a valid configuration swaps in while a
//! client keeps making requests, none of which fails; an invalid one is refused naming the
//! field and changes nothing; a QUIC-LB key rotation (add a codepoint, servers move to it,
//! remove the old one) loses no connection.

mod quic;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qlb_lb::config::LbConfig;
use qlb_lb::daemon::ReloadError;
use qlb_router::Route;
use qlb_testkit::fixtures::config as quic_lb_config;
use qlb_testkit::{H3Client, Reply, TestResult, eventually, fetch};
use quic::{Backend, LbFile, Mode, NO_HEALTH, WAIT, connection_to, lb_toml};
use tokio::task::JoinHandle;

/// Requests on one connection, one after another, until stopped: every answer's backend
/// name, and every failure.
struct Traffic {
    stop: Arc<AtomicBool>,
    served_by: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(client: &H3Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served_by = Arc::new(Mutex::new(Vec::new()));
        let mut send = client.sender();
        let task = tokio::spawn({
            let (stop, served_by) = (stop.clone(), served_by.clone());
            async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match fetch(&mut send, "GET", "/whoami", Vec::new()).await {
                        Ok(Reply { status, body }) if status == http::StatusCode::OK => {
                            let json: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let name = json["name"].as_str().unwrap_or("?").to_owned();
                            served_by.lock().expect("lock").push(name);
                        }
                        Ok(reply) => failures.push(reply.status.to_string()),
                        Err(err) => failures.push(err.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                failures
            }
        });
        Self {
            stop,
            served_by,
            task,
        }
    }

    /// Lets at least 5 requests complete, stops, checks that nothing failed and that one
    /// backend served everything, and returns it.
    async fn finish(self) -> TestResult<String> {
        let served = || self.served_by.lock().expect("lock").len();
        eventually(WAIT, "5 requests", || async { served() >= 5 }).await?;
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await?;
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        let served_by = self.served_by.lock().expect("lock").clone();
        let first = served_by[0].clone();
        assert!(served_by.iter().all(|name| *name == first), "{served_by:?}");
        Ok(first)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_reload_swaps_in_without_losing_a_request() -> TestResult {
    let b1 = Backend::start("b1", "0001", 0)?;
    let b2 = Backend::start("b2", "0002", 0)?;
    let file = LbFile::new(&lb_toml(&[0], &[&b1], NO_HEALTH))?;
    let balancer = file.start().await?;
    let lb = balancer.listen_addrs()[0];
    let client = quic::connect(lb).await?;
    let traffic = Traffic::start(&client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let flows_before = balancer.status().await.flows;

    let with_b2 = lb_toml(&[0], &[&b1, &b2], NO_HEALTH).replace(
        &format!("server_id = \"{}\"\n", b2.server_id),
        &format!("server_id = \"{}\"\nweight = 3\n", b2.server_id),
    );
    file.write(&with_b2)?;
    let report = balancer.reload().await?;
    assert_eq!(report.backends_added, ["b2"]);
    assert!(report.backends_removed.is_empty() && report.backends_changed.is_empty());
    connection_to(lb, "b2").await?;

    assert_eq!(traffic.finish().await?, "b1");
    let status = balancer.status().await;
    assert_eq!(status.backends.len(), 2);
    assert_eq!(status.backends[1].weight, 3);
    assert_eq!(status.reloads.applied, 1);
    assert!(
        status.flows.created > flows_before.created,
        "new connections, new flows"
    );
    assert!(
        status.flows.active > flows_before.active,
        "the old flow is still there"
    );
    balancer.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_refused_and_the_running_config_stays() -> TestResult {
    let b1 = Backend::start("b1", "0001", 0)?;
    let b2 = Backend::start("b2", "0002", 0)?;
    let running = lb_toml(&[0], &[&b1], NO_HEALTH);
    let file = LbFile::new(&running)?;
    let balancer = file.start().await?;
    let lb = balancer.listen_addrs()[0];
    let client = quic::connect(lb).await?;
    let traffic = Traffic::start(&client);

    let wrong_server_id = format!("{running}{}", b2.table()).replace("\"0002\"", "\"02\"");
    let refusals = [
        (wrong_server_id, "backend[1].server_id: 1 octets"),
        (
            running.replace("workers = 1", "workers = 2"),
            "workers: cannot change",
        ),
        (
            running.replace("127.0.0.1:0\"]", "127.0.0.1:0\", \"[::1]:0\"]"),
            "listen: cannot change",
        ),
        (
            format!("{running}\n[admin]\n"),
            "admin.listen: cannot change",
        ),
        (
            format!(
                "{running}[[quic_lb]]\nconfig_id = 1\nserver_id_len = 2\nnonce_len = 6\n\
                 key_file = \"missing.key\"\n"
            ),
            "quic_lb[1].key_file: cannot read",
        ),
        ("listen = [".to_owned(), "line 1: "),
    ];
    for (text, expected) in &refusals {
        file.write(text)?;
        let err = balancer.reload().await.expect_err("refused");
        assert!(
            err.to_string().starts_with(expected),
            "{expected:?}: got {err}"
        );
        assert!(err.is_invalid_config(), "{err}");
    }
    std::fs::remove_file(&file.path)?;
    let unreadable = balancer.reload().await.expect_err("no file");
    assert!(
        unreadable.to_string().starts_with("config: cannot read"),
        "{unreadable}"
    );

    let status = balancer.status().await;
    assert_eq!(status.backends.len(), 1, "the running configuration stays");
    assert_eq!(status.reloads.refused, refusals.len() as u64 + 1);
    assert_eq!(status.reloads.applied, 0);
    assert_eq!(traffic.finish().await?, "b1");

    // In memory, without the file.
    let config = LbConfig::from_toml(&lb_toml(&[0], &[&b1, &b2], NO_HEALTH), ".".as_ref())?;
    assert_eq!(balancer.reload_from(config).await?.backends_added, ["b2"]);
    balancer.shutdown().await?;
    assert!(matches!(
        balancer
            .reload_from(LbConfig::from_toml(&running, ".".as_ref())?)
            .await,
        Err(ReloadError::Stopped)
    ));
    Ok(())
}

/// The datagrams routed some other way than by connection ID so far.
async fn routed_without_cid(balancer: &qlb_lb::Balancer) -> u64 {
    let status = balancer.status().await;
    Route::ALL
        .iter()
        .filter(|route| **route != Route::Cid)
        .map(|route| status.routed[route.as_str()])
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_by_codepoint_loses_no_connection() -> TestResult {
    key_rotation(Mode::Proxy).await
}

/// The same rotation with the balancer encapsulating (GUE) and the backends answering back
/// through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_gue_mode_a_key_rotation_by_codepoint_loses_no_connection() -> TestResult {
    key_rotation(Mode::Gue).await
}

async fn key_rotation(mode: Mode) -> TestResult {
    let (b1, b2) = (
        mode.backend("b1", "0001", 0)?,
        mode.backend("b2", "0002", 0)?,
    );
    let file = LbFile::new(&mode.lb_toml(&[0], &[&b1, &b2], NO_HEALTH))?;
    let balancer = file.start().await?;
    let lb = balancer.listen_addrs()[0];
    let mut client = quic::connect(lb).await?;
    let traffic = Traffic::start(&client);

    // 1. The load balancers learn the new codepoint.
    file.write(&mode.lb_toml(&[0, 1], &[&b1, &b2], NO_HEALTH))?;
    assert_eq!(balancer.reload().await?.quic_lb_added, [1]);

    // 2. The servers issue CIDs under it from now on; the client moves onto new CIDs as it
    // migrates (quinn takes the next CID at each new path and the server replaces the one
    // retired), past every CID issued before the rotation.
    b1.server.rotate_config(quic_lb_config(1))?;
    b2.server.rotate_config(quic_lb_config(1))?;
    for i in 0..10 {
        client.rebind()?;
        client
            .whoami()
            .await
            .map_err(|e| format!("rebind {i}: {e}"))?;
    }

    // 3. The old codepoint goes.
    file.write(&mode.lb_toml(&[1], &[&b1, &b2], NO_HEALTH))?;
    assert_eq!(balancer.reload().await?.quic_lb_removed, [0]);
    let before = routed_without_cid(&balancer).await;
    let backend = client.backend().await?;
    for _ in 0..10 {
        assert_eq!(client.backend().await?, backend);
    }
    client.rebind()?;
    assert_eq!(
        client.backend().await?,
        backend,
        "a migration still finds it"
    );
    assert_eq!(
        routed_without_cid(&balancer).await,
        before,
        "every datagram of the connection was routed by a codepoint-1 CID"
    );
    assert_eq!(traffic.finish().await?, backend);

    // New connections get codepoint-1 CIDs and work too.
    let mut fresh = quic::connect(lb).await?;
    fresh.whoami().await?;
    let status = balancer.status().await;
    assert_eq!(status.quic_lb_config_ids, [1]);
    assert!(status.routed[Route::Cid.as_str()] > 0);
    balancer.shutdown().await?;
    Ok(())
}
