//! Servers of one cluster share their stateless-reset key through the cluster secret: a
//! server that receives packets of a dead server's connections (restarted under the same
//! server ID, or another backend the load balancer sent them to) resets them, so clients
//! learn at once instead of waiting for an idle timeout. A server with another secret sends
//! no reset the client would accept.
//! And a server resets only what it lost: a late packet of a connection it still holds is
//! dropped.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use qlb_server::builtin_routes;
use qlb_testkit::{H3Client, SelfSigned};
use support::{TestResult, builder, start_at, start_builtin};
use tokio::net::UdpSocket;

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

/// A relay in front of a server that keeps a copy of the first 1-RTT (short-header)
/// datagram the client sent through it. The server sees one address (the relay's), whatever
/// port the client moves to.
struct Tap {
    addr: SocketAddr,
    first_short: Arc<Mutex<Option<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn start(server: SocketAddr) -> TestResult<Self> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(server).await?;
        let addr = front.local_addr()?;
        let first_short = Arc::new(Mutex::new(None));
        let copy = Arc::clone(&first_short);
        let task = tokio::spawn(async move {
            let (mut up, mut down) = (vec![0; 65_536], vec![0; 65_536]);
            let mut client = None;
            loop {
                tokio::select! {
                    Ok((len, from)) = front.recv_from(&mut up) => {
                        client = Some(from);
                        if up[0] & 0x80 == 0 {
                            copy.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .get_or_insert_with(|| up[..len].to_vec());
                        }
                        back.send(&up[..len]).await.ok();
                    }
                    Ok(len) = back.recv(&mut down) => {
                        if let Some(client) = client {
                            front.send_to(&down[..len], client).await.ok();
                        }
                    }
                }
            }
        });
        Ok(Self {
            addr,
            first_short,
            task,
        })
    }

    fn first_short(&self) -> Option<Vec<u8>> {
        self.first_short
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A packet that arrives after its client retired the connection ID it carries (sent on the
/// old path just before the client moved) is dropped, not answered with a stateless reset:
/// some clients (ngtcp2 0.12) wrongly act on a retired ID's reset and close a live connection.
#[tokio::test]
async fn a_late_packet_for_a_retired_cid_is_dropped_without_a_reset() -> TestResult {
    let running = start_builtin(builder("0c01").cluster_secret(SECRET))?;
    let tap = Tap::start(running.addr).await?;
    let mut client = H3Client::connect(tap.addr, &running.certificate).await?;
    client.get("/whoami").await?;
    let late = tap.first_short().ok_or("no 1-RTT datagram went through")?;

    // A new local port: quinn moves to the server's next CID and retires the first one.
    client.rebind()?;
    client.get("/whoami").await?;

    // The copy, replayed from elsewhere until the server has processed the retirement
    // (bounded): each replay before is a duplicate packet of a known connection.
    let stranger = UdpSocket::bind("127.0.0.1:0").await?;
    let withheld = "qlb_server_stateless_resets_withheld_total";
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while running.metric(withheld) < 1.0 {
        if tokio::time::Instant::now() > until {
            return Err("the server never saw the retired CID as unknown".into());
        }
        stranger.send_to(&late, running.addr).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answer = [0; 1500];
    let reply = tokio::time::timeout(Duration::from_millis(300), stranger.recv(&mut answer)).await;
    assert!(
        reply.is_err(),
        "the server answered the late packet: {reply:?}"
    );
    assert_eq!(client.whoami().await?["server_id"], "0c01");
    Ok(())
}
