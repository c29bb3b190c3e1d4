//! Live QUIC-LB configuration rotation: after `Server::rotate_config`, new connections get
//! CIDs at the new codepoint, while connections opened before keep working on their old
//! CIDs (the load balancers decode both codepoints during a rotation).

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use quic_lb::{Config, ConfigId, Key};
use support::{TestResult, builder, quic_lb_config, start_builtin};
use tokio::net::UdpSocket;

/// A UDP relay between one client and `server` that records what `classify` says of every
/// datagram the client sends.
struct Relay {
    addr: SocketAddr,
    codepoints: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    async fn start(
        server: SocketAddr,
        classify: impl Fn(&[u8]) -> Option<u8> + Send + 'static,
    ) -> TestResult<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        back.connect(server).await?;
        let addr = front.local_addr()?;
        let codepoints = Arc::new(Mutex::new(Vec::new()));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        tokio::spawn({
            let (front, back, client, codepoints) = (
                front.clone(),
                back.clone(),
                client.clone(),
                codepoints.clone(),
            );
            async move {
                let mut buffer = vec![0; 65536];
                while let Ok((len, from)) = front.recv_from(&mut buffer).await {
                    *client.lock().expect("lock") = Some(from);
                    if let Some(codepoint) = classify(&buffer[..len]) {
                        codepoints.lock().expect("lock").push(codepoint);
                    }
                    let _ = back.send(&buffer[..len]).await;
                }
            }
        });
        tokio::spawn(async move {
            let mut buffer = vec![0; 65536];
            while let Ok(len) = back.recv(&mut buffer).await {
                let to = *client.lock().expect("lock");
                if let Some(to) = to {
                    let _ = front.send_to(&buffer[..len], to).await;
                }
            }
        });
        Ok(Self { addr, codepoints })
    }

    fn take(&self) -> HashSet<u8> {
        self.codepoints.lock().expect("lock").drain(..).collect()
    }
}

/// The codepoint of a short-header datagram's DCID: the top three bits of its second octet.
fn short_header_codepoint(datagram: &[u8]) -> Option<u8> {
    match datagram {
        [first, cid_first, ..] if first & 0x80 == 0 => Some(cid_first >> 5),
        _ => None,
    }
}

#[tokio::test]
async fn rotation_moves_new_connections_and_keeps_old_ones() -> TestResult {
    let running = start_builtin(builder("0b01"))?;
    assert_eq!(running.server.config().id().get(), 1);

    let old_relay = Relay::start(running.addr, short_header_codepoint).await?;
    let mut old = support::H3Client::connect(old_relay.addr, &running.certificate).await?;
    assert_eq!(old.get("/whoami").await?.json()?["server_id"], "0b01");
    assert_eq!(old_relay.take(), HashSet::from([1]));

    let new_config = Config::new(ConfigId::new(2)?, 2, 6, Some(Key::random()))?;
    running.server.rotate_config(new_config)?;
    assert_eq!(running.server.config().id().get(), 2);

    let new_relay = Relay::start(running.addr, short_header_codepoint).await?;
    let mut new = support::H3Client::connect(new_relay.addr, &running.certificate).await?;
    for _ in 0..3 {
        assert_eq!(new.get("/whoami").await?.json()?["server_id"], "0b01");
        assert_eq!(old.get("/whoami").await?.json()?["server_id"], "0b01");
    }
    assert_eq!(
        new_relay.take(),
        HashSet::from([2]),
        "new connection: new codepoint"
    );
    assert_eq!(
        old_relay.take(),
        HashSet::from([1]),
        "old connection: its own CIDs"
    );
    Ok(())
}

#[tokio::test]
async fn rotation_refuses_the_same_codepoint_and_another_cid_length() -> TestResult {
    let running = start_builtin(builder("0b02"))?;
    let same = running.server.rotate_config(quic_lb_config());
    assert!(same.is_err_and(|err| err.to_string().contains("another config_id")));
    let longer = Config::new(ConfigId::new(3)?, 2, 7, None)?;
    let err = running.server.rotate_config(longer).expect_err("refused");
    assert!(err.to_string().contains("9-octet to 10-octet"), "{err}");
    assert_eq!(
        running.server.config().id().get(),
        1,
        "the running config stays"
    );
    Ok(())
}
