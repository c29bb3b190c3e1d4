//! Servers of one cluster share their stateless-reset key through the cluster secret: a
//! server that receives packets of a dead server's connections (restarted under the same
//! server ID, or another backend the load balancer sent them to) resets them, so clients
//! learn at once instead of waiting for an idle timeout. A server with another secret sends
//! no reset the client would accept.

mod support;

use std::time::Duration;

use qlb_server::builtin_routes;
use qlb_testkit::{H3Client, SelfSigned};
use support::{TestResult, builder, start_at, start_builtin};

const SECRET: &[u8] = b"cluster secret for the reset test";

/// Serves one connection from a server that then dies without a word (its runtime is
/// dropped: no CONNECTION_CLOSE), starts `successor` on the same address, and returns how
/// the client's connection ends once it sends again.
async fn client_fate_after_restart(
    successor: qlb_server::ServerBuilder,
) -> TestResult<quinn::ConnectionError> {
    let doomed_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let doomed = {
        let _inside = doomed_runtime.enter();
        start_builtin(builder("0c01").cluster_secret(SECRET))?
    };
    let addr = doomed.addr;
    let config = SelfSigned::client_config_for(&doomed.certificate, Duration::from_secs(1))?;
    let mut client = H3Client::connect_with(addr, config).await?;
    assert_eq!(client.get("/whoami").await?.json()?["server_id"], "0c01");

    drop(doomed);
    // Dropping a runtime blocks until its tasks (the endpoint and its socket) are gone.
    tokio::task::spawn_blocking(move || doomed_runtime.shutdown_timeout(Duration::from_secs(5)))
        .await?;
    let _successor = start_at(successor, addr, |server| {
        builtin_routes(server.drain_state())
    })?;

    assert!(client.get("/whoami").await.is_err());
    Ok(tokio::time::timeout(Duration::from_secs(10), client.closed()).await?)
}

#[tokio::test]
async fn any_server_with_the_cluster_secret_resets_a_dead_servers_connections() -> TestResult {
    for successor in [
        builder("0c01").cluster_secret(SECRET),
        builder("0c02").cluster_secret(SECRET),
    ] {
        let fate = client_fate_after_restart(successor).await?;
        assert!(matches!(fate, quinn::ConnectionError::Reset), "{fate}");
    }
    Ok(())
}

#[tokio::test]
async fn a_server_with_another_secret_sends_no_valid_reset() -> TestResult {
    let fate =
        client_fate_after_restart(builder("0c01").cluster_secret(b"another cluster")).await?;
    assert!(matches!(fate, quinn::ConnectionError::TimedOut), "{fate}");
    Ok(())
}
