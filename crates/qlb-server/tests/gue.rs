//! GUE mode on loopback: a hand-made encapsulating relay stands in for the load balancer
//! (it receives a client's datagrams on a "VIP" socket, encapsulates them with the client as
//! inner source and the VIP as inner destination, and sends them to the server's GUE
//! socket; through the load balancer, it decapsulates the server's replies and sends them on
//! from the VIP). The server sees the clients' real addresses, answers through the relay or
//! straight from the VIP, follows a migrating client, and counts malformed input.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qlb_gue::{Ecn, decapsulate, encapsulate};
use qlb_server::GueReturn;
use qlb_testkit::{eventually, within};
use socket2::{Domain, Protocol, Socket, Type};
use support::{H3Client, Running, TestResult, builder, start_builtin};
use tokio::net::UdpSocket;

/// What the relay saw of the server's replies.
#[derive(Default)]
struct Seen {
    /// Encapsulated replies from the server's GUE address with the VIP as inner source.
    replies: AtomicUsize,
    /// Anything else on the relay's outer socket.
    wrong: AtomicUsize,
}

/// The load balancer in GUE mode, reduced to its I/O.
struct Relay {
    vip: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays between clients on `vip` and the server's GUE address `backend`.
    async fn start(vip: std::net::UdpSocket, backend: SocketAddr) -> TestResult<Self> {
        vip.set_nonblocking(true)?;
        let vip = UdpSocket::from_std(vip)?;
        let outer = UdpSocket::bind("127.0.0.1:0").await?;
        let seen = Arc::new(Seen::default());
        let vip_addr = vip.local_addr()?;
        let task = tokio::spawn(relay(vip, outer, backend, seen.clone()));
        Ok(Self {
            vip: vip_addr,
            seen,
            task,
        })
    }

    fn replies(&self) -> usize {
        self.seen.replies.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(vip: UdpSocket, outer: UdpSocket, backend: SocketAddr, seen: Arc<Seen>) {
    let Ok(vip_addr) = vip.local_addr() else {
        return;
    };
    let (mut from_client, mut from_backend) = (vec![0; 65_536], vec![0; 65_536]);
    let mut packet = Vec::new();
    loop {
        tokio::select! {
            received = vip.recv_from(&mut from_client) => {
                let Ok((len, client)) = received else { continue };
                packet.clear();
                if encapsulate(&mut packet, client, vip_addr, Ecn::NotEct, &from_client[..len]).is_ok() {
                    let _ = outer.send_to(&packet, backend).await;
                }
            }
            received = outer.recv_from(&mut from_backend) => {
                let Ok((len, from)) = received else { continue };
                match decapsulate(&from_backend[..len]) {
                    Ok(inner) if from == backend && inner.source == vip_addr => {
                        seen.replies.fetch_add(1, Ordering::Relaxed);
                        let _ = vip.send_to(inner.payload, inner.destination).await;
                    }
                    _ => {
                        seen.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// A server with the built-in routes and a GUE socket on loopback returning `ret`.
fn gue_server(ret: GueReturn) -> TestResult<(Running, SocketAddr)> {
    let running = start_builtin(builder("0a01").name("gue").gue("127.0.0.1:0".parse()?, ret))?;
    let gue = running.server.gue_addr().ok_or("no GUE address")?;
    Ok((running, gue))
}

/// A UDP socket on `addr` that shares it (SO_REUSEPORT), as a VIP on a host whose backend
/// also binds it for direct return.
fn shared_socket(addr: SocketAddr) -> TestResult<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `/whoami`'s peer.
async fn peer(client: &mut H3Client) -> TestResult<String> {
    Ok(client.whoami().await?["peer"]
        .as_str()
        .ok_or("no peer in /whoami")?
        .to_owned())
}

#[tokio::test]
async fn through_the_lb_the_server_sees_the_real_client_and_answers_via_the_lb() -> TestResult {
    let (running, gue) = gue_server(GueReturn::ThroughLoadBalancer)?;
    let relay = Relay::start(std::net::UdpSocket::bind("127.0.0.1:0")?, gue).await?;
    let mut client = H3Client::connect(relay.vip, &running.certificate).await?;

    for _ in 0..3 {
        assert_eq!(
            peer(&mut client).await?,
            client.endpoint.local_addr()?.to_string()
        );
    }
    let download = client.get("/bytes/200000").await?;
    assert_eq!(download.body.len(), 200_000);
    assert!(relay.replies() > 0);
    assert_eq!(relay.seen.wrong.load(Ordering::Relaxed), 0);
    assert!(running.metric("qlb_server_gue_received_total") > 0.0);
    assert!(running.metric("qlb_server_gue_sent_total{path=\"through_lb\"}") > 0.0);
    assert_eq!(
        running.metric("qlb_server_gue_sent_total{path=\"direct\"}"),
        0.0
    );

    // The plain socket still serves clients that reach the server directly.
    let mut direct = running.connect().await?;
    assert_eq!(
        peer(&mut direct).await?,
        direct.endpoint.local_addr()?.to_string()
    );
    Ok(())
}

#[tokio::test]
async fn direct_return_answers_from_the_vip_without_the_lb() -> TestResult {
    let (running, gue) = gue_server(GueReturn::Direct)?;
    // 127.0.0.0/8 is all local on Linux: 127.0.0.2 is a VIP on lo. The relay receives on
    // it and the server sends from it; the server's socket is send-only, so the relay
    // keeps every client datagram.
    let relay = Relay::start(shared_socket("127.0.0.2:0".parse()?)?, gue).await?;
    // The client's QUIC connection accepts datagrams only from the address it connected
    // to: answers that reach it came from the VIP.
    let mut client = H3Client::connect(relay.vip, &running.certificate).await?;

    assert_eq!(
        peer(&mut client).await?,
        client.endpoint.local_addr()?.to_string()
    );
    let download = client.get("/bytes/100000").await?;
    assert_eq!(download.body.len(), 100_000);
    assert_eq!(relay.replies(), 0, "replies went through the relay");
    assert!(running.metric("qlb_server_gue_sent_total{path=\"direct\"}") > 0.0);
    assert_eq!(
        running.metric("qlb_server_gue_sent_total{path=\"through_lb\"}"),
        0.0
    );
    Ok(())
}

#[tokio::test]
async fn direct_return_to_a_vip_that_is_not_local_is_dropped_and_counted() -> TestResult {
    let (running, gue) = gue_server(GueReturn::Direct)?;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
    // 192.0.2.0/24 (TEST-NET-1) is no address of this host: the VIP cannot be bound.
    let vip: SocketAddr = "192.0.2.1:443".parse()?;
    for round in 0..3u8 {
        sender.send_to(&encapsulated_probe(sender.local_addr()?, vip, round)?, gue)?;
    }
    running
        .wait_for_metric(
            "qlb_server_gue_send_dropped_total{reason=\"direct_bind\"}",
            3.0,
            Duration::from_secs(5),
        )
        .await?;
    // Still serving.
    assert!(running.connect().await?.whoami().await.is_ok());
    Ok(())
}

#[tokio::test]
async fn a_client_that_changes_its_address_is_seen_to_migrate() -> TestResult {
    let (running, gue) = gue_server(GueReturn::ThroughLoadBalancer)?;
    let relay = Relay::start(std::net::UdpSocket::bind("127.0.0.1:0")?, gue).await?;
    let mut client = H3Client::connect(relay.vip, &running.certificate).await?;
    let before = peer(&mut client).await?;
    assert_eq!(before, client.endpoint.local_addr()?.to_string());
    let connection = client.quic.stable_id();

    client.rebind()?;
    let whoami = client.whoami().await?;
    let after = whoami["peer"].as_str().ok_or("no peer")?;
    assert_eq!(after, client.endpoint.local_addr()?.to_string());
    assert_ne!(after, before);
    assert_eq!(whoami["requests_on_connection"], 2);
    assert_eq!(client.quic.stable_id(), connection);
    running
        .expect_metric("qlb_server_peer_address_changes_total", 1.0)
        .await?;
    Ok(())
}

/// A long-header datagram of an unsupported version (padded to 1,200 octets, as servers
/// answer only those) with source CID `[id; 8]`: quinn answers it with a Version
/// Negotiation packet, statelessly.
fn version_negotiation_probe(id: u8) -> Vec<u8> {
    let mut probe = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
    probe.extend([0x55; 8]);
    probe.push(8);
    probe.extend([id; 8]);
    probe.resize(1200, 0);
    probe
}

/// [`version_negotiation_probe`] encapsulated from `client` to `vip`.
fn encapsulated_probe(client: SocketAddr, vip: SocketAddr, id: u8) -> TestResult<Vec<u8>> {
    let mut packet = Vec::new();
    encapsulate(
        &mut packet,
        client,
        vip,
        Ecn::NotEct,
        &version_negotiation_probe(id),
    )?;
    Ok(packet)
}

/// Receives encapsulated Version Negotiation replies on `lb` until `count` have come:
/// each one's inner source, inner destination and the CID it answers.
async fn negotiations(
    lb: &UdpSocket,
    count: usize,
) -> TestResult<Vec<(SocketAddr, SocketAddr, u8)>> {
    let mut replies = Vec::new();
    let mut buf = vec![0; 65_536];
    while replies.len() < count {
        let len = within(
            Duration::from_secs(5),
            "a version negotiation",
            lb.recv(&mut buf),
        )
        .await??;
        let inner = decapsulate(&buf[..len])?;
        // Version 0, then the destination CID: the probe's source CID.
        let payload = inner.payload;
        if payload.len() < 14 || payload[1..5] != [0; 4] || payload[5] != 8 {
            return Err(format!("not a version negotiation: {payload:02x?}").into());
        }
        replies.push((inner.source, inner.destination, payload[6]));
    }
    Ok(replies)
}

#[tokio::test]
async fn coalesced_datagrams_of_several_clients_are_answered_each_to_its_own() -> TestResult {
    let (_running, gue) = gue_server(GueReturn::ThroughLoadBalancer)?;
    let vip: SocketAddr = "203.0.113.1:443".parse()?;
    let clients: Vec<SocketAddr> = ["192.0.2.1:1001", "192.0.2.2:1002", "198.51.100.9:3000"]
        .iter()
        .map(|c| c.parse())
        .collect::<Result<_, _>>()?;
    // One GSO send of three equal-size GUE datagrams from three clients: on loopback the
    // server's GRO socket may receive them as one buffer, which must be split by client.
    let lb = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let state = quinn::udp::UdpSocketState::new((&lb).into())?;
    let mut contents = Vec::new();
    for (id, &client) in clients.iter().enumerate() {
        contents.extend(encapsulated_probe(client, vip, id as u8)?);
    }
    let stride = contents.len() / clients.len();
    let transmit = quinn::udp::Transmit {
        destination: gue,
        ecn: None,
        contents: &contents,
        segment_size: (state.max_gso_segments() > 1).then_some(stride),
        src_ip: None,
    };
    if transmit.segment_size.is_some() {
        state.try_send((&lb).into(), &transmit)?;
    } else {
        for datagram in contents.chunks(stride) {
            lb.send_to(datagram, gue)?;
        }
    }
    let lb = UdpSocket::from_std(lb)?;
    let mut replies = negotiations(&lb, 3).await?;
    replies.sort_by_key(|&(_, _, id)| id);
    for (id, (source, destination, answered)) in replies.into_iter().enumerate() {
        assert_eq!(answered, id as u8);
        assert_eq!(source, vip);
        assert_eq!(destination, clients[id]);
    }
    Ok(())
}

#[tokio::test]
async fn only_the_named_load_balancers_may_send_gue() -> TestResult {
    let running = start_builtin(
        builder("0a01")
            .gue("127.0.0.1:0".parse()?, GueReturn::ThroughLoadBalancer)
            .gue_sources(["127.0.0.1".parse()?]),
    )?;
    let gue = running.server.gue_addr().ok_or("no GUE address")?;
    let probe = encapsulated_probe("192.0.2.1:1001".parse()?, "203.0.113.1:443".parse()?, 9)?;
    // 127.0.0.2 is this host too (all of 127/8 is loopback), but not a named balancer.
    let stranger = UdpSocket::bind("127.0.0.2:0").await?;
    stranger.send_to(&probe, gue).await?;
    running
        .wait_for_metric(
            "qlb_server_gue_dropped_total{reason=\"source\"}",
            1.0,
            Duration::from_secs(5),
        )
        .await?;
    let mut reply = [0; 1500];
    let answered =
        tokio::time::timeout(Duration::from_millis(200), stranger.recv(&mut reply)).await;
    assert!(answered.is_err(), "a stranger's GUE was answered");

    let lb = UdpSocket::bind("127.0.0.1:0").await?;
    lb.send_to(&probe, gue).await?;
    assert_eq!(negotiations(&lb, 1).await?[0].2, 9);
    assert_eq!(running.metric("qlb_server_gue_received_total"), 1.0);
    Ok(())
}

#[tokio::test]
async fn malformed_gue_input_is_counted_and_harms_nothing() -> TestResult {
    let (running, gue) = gue_server(GueReturn::ThroughLoadBalancer)?;
    let lb = UdpSocket::bind("127.0.0.1:0").await?;
    let good = encapsulated_probe("192.0.2.1:1001".parse()?, "203.0.113.1:443".parse()?, 7)?;
    let mut control = good.clone();
    control[0] = 0x20;
    let mut tcp = good.clone();
    tcp[4 + 9] = 6;
    let mut long = good.clone();
    long.push(0);
    for bad in [
        vec![],
        vec![0xff; 3],
        control,
        tcp,
        long,
        good[..10].to_vec(),
    ] {
        lb.send_to(&bad, gue).await?;
    }
    for (reason, count) in [
        ("truncated", 2.0),
        ("version", 1.0),
        ("control", 1.0),
        ("not_udp", 1.0),
        ("length", 1.0),
    ] {
        running
            .wait_for_metric(
                &format!("qlb_server_gue_dropped_total{{reason=\"{reason}\"}}"),
                count,
                Duration::from_secs(5),
            )
            .await?;
    }
    // The socket still works: a good datagram after them is answered.
    lb.send_to(&good, gue).await?;
    let replies = negotiations(&lb, 1).await?;
    assert_eq!(replies[0].2, 7);
    eventually(Duration::from_secs(5), "one datagram received", || {
        running.metric("qlb_server_gue_received_total") >= 1.0
    })
    .await?;
    Ok(())
}
