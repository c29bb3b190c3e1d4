//! A Retry token minted by `qlb-retry` (what `qlb lb` sends under Retry offload) is one quinn
//! validates under the cluster's token key: a client retried by that code completes its
//! handshake with a real server, which took the ODCID from the token and the RSCID from the
//! client's second Initial (the client checks both, RFC 9000 section 7.3). This pins the token
//! format of `docs/retry.md` to quinn's: a quinn upgrade that changes it fails here. Tokens
//! under another key or for another address fail, so the server validates them itself.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use qlb_retry::{Initial, TokenKey, TokenKeys, retry_packet};
use qlb_testkit::{H3Client, SelfSigned};
use support::{TestResult, builder, start_builtin};
use tokio::net::UdpSocket;

const SECRET: &[u8] = b"cluster secret of the retry test";

/// Whose address a relay's tokens name.
#[derive(Clone, Copy)]
enum MintFor {
    /// The relay's upstream socket: the address the server sees.
    Upstream,
    /// The client: not the address the server sees.
    Client,
}

/// A relay in front of `server` that answers token-less Initials with a Retry minted under
/// `secret` and forwards everything else; returns its address and a count of Retries sent.
async fn retrying_relay(
    server: SocketAddr,
    secret: &'static [u8],
    mint_for: MintFor,
) -> TestResult<(SocketAddr, Arc<AtomicUsize>)> {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    upstream.connect(server).await?;
    let addr = front.local_addr()?;
    let upstream_addr = upstream.local_addr()?;
    let retries = Arc::new(AtomicUsize::new(0));
    let (client_tx, mut client_rx) = tokio::sync::watch::channel(None::<SocketAddr>);
    let keys = TokenKeys::new(TokenKey::from_cluster_secret(secret), None, 15);
    let (front_in, upstream_out, sent) = (front.clone(), upstream.clone(), retries.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, client)) = front_in.recv_from(&mut buf).await {
            client_tx.send_replace(Some(client));
            let datagram = &buf[..len];
            match Initial::parse(datagram) {
                Ok(initial) if initial.token.is_empty() => {
                    let named = match mint_for {
                        MintFor::Upstream => upstream_addr,
                        MintFor::Client => client,
                    };
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let scid: [u8; 8] = rand::random();
                    let token = keys
                        .mint(named, initial.dcid, now, rand::random())
                        .expect("a short ODCID");
                    let retry = retry_packet(
                        initial.version,
                        initial.scid,
                        &scid,
                        initial.dcid,
                        &token,
                        0,
                    )
                    .expect("short CIDs");
                    sent.fetch_add(1, Ordering::Relaxed);
                    let _ = front_in.send_to(&retry, client).await;
                }
                _ => {
                    let _ = upstream_out.send(datagram).await;
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(len) = upstream.recv(&mut buf).await {
            let client = *client_rx.borrow_and_update();
            if let Some(client) = client {
                let _ = front.send_to(&buf[..len], client).await;
            }
        }
    });
    Ok((addr, retries))
}

async fn connect_through_relay(
    secret: &'static [u8],
    mint_for: MintFor,
) -> TestResult<(TestResult<H3Client>, usize)> {
    let server = start_builtin(builder("0c01").cluster_secret(SECRET))?;
    let (relay, retries) = retrying_relay(server.addr, secret, mint_for).await?;
    let config = SelfSigned::client_config_for(&server.certificate, Duration::from_secs(2))?;
    let client = H3Client::connect_with(relay, config).await;
    let client = match client {
        Ok(mut client) => {
            assert_eq!(client.get("/whoami").await?.json()?["server_id"], "0c01");
            Ok(client)
        }
        Err(e) => Err(e),
    };
    Ok((client, retries.load(Ordering::Relaxed)))
}

#[tokio::test]
async fn a_client_retried_with_a_minted_token_completes_its_handshake() -> TestResult {
    let (client, retries) = connect_through_relay(SECRET, MintFor::Upstream).await?;
    client?;
    assert_eq!(retries, 1);
    Ok(())
}

#[tokio::test]
async fn the_server_refuses_tokens_under_another_key_or_for_another_address() -> TestResult {
    for (secret, mint_for) in [
        (&b"another cluster"[..], MintFor::Upstream),
        (SECRET, MintFor::Client),
    ] {
        let (client, retries) = connect_through_relay(secret, mint_for).await?;
        assert!(client.is_err(), "the handshake succeeded");
        assert_eq!(retries, 1);
    }
    Ok(())
}
