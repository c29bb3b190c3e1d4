//! A `dns://` target against a real resolver path: hickory asks a DNS responder on loopback
//! whose answers the test changes; the backends listen on 127.0.0.1, .2 and .3 with one port.

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use qlb_client::{Client, Trust};
use qlb_testkit::{TestResult, eventually};
use support::dns::Dns;
use support::{Backend, SOON, ready_check, whoami};

/// Up to two polls at the minimum interval (5 s), with room for a loaded machine.
const TWO_POLLS: Duration = Duration::from_secs(15);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Backends `dns-N` on 127.0.0.N for each N of `lasts`, all on one port; returns the port.
fn family(lasts: &[u8]) -> TestResult<(u16, Vec<Backend>)> {
    let start = |last: u8, port: u16| {
        Backend::start_with(
            &format!("dns-{last}"),
            &format!("00{last:02x}"),
            SocketAddr::from((ip(last), port)),
            |builder| builder,
        )
    };
    let mut last_error = None;
    // The port is free on the first address; another address may have it taken: try again.
    for _ in 0..10 {
        let first = start(lasts[0], 0)?;
        let port = first.addr.port();
        match lasts[1..]
            .iter()
            .map(|&last| start(last, port))
            .collect::<TestResult<Vec<_>>>()
        {
            Ok(rest) => return Ok((port, std::iter::once(first).chain(rest).collect())),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| "no common port".into()))
}

fn addrs(client: &Client) -> HashSet<SocketAddr> {
    client.snapshot().backends.iter().map(|b| b.addr).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_target_follows_its_records() -> TestResult {
    let (port, _backends) = family(&[1, 2, 3])?;
    let dns = Dns::start(&[ip(1)]).await?;
    let client = Client::builder(
        format!("dns://backends.test:{port}").parse()?,
        Trust::Insecure,
    )
    .server_name("localhost")
    .dns_nameserver(dns.addr)
    .dns_interval(Duration::from_secs(5))
    .build()?;
    assert_eq!(whoami(&client).await?, "dns-1");

    dns.set(&[ip(1), ip(2), ip(3)]);
    eventually(TWO_POLLS, "three backends", || addrs(&client).len() == 3).await?;
    let mut served = HashSet::new();
    for _ in 0..9 {
        served.insert(whoami(&client).await?);
    }
    assert_eq!(served.len(), 3, "{served:?}");

    dns.set(&[ip(3)]);
    let only_third = HashSet::from([SocketAddr::from((ip(3), port))]);
    eventually(TWO_POLLS, "only the third", || addrs(&client) == only_third).await?;
    for _ in 0..3 {
        assert_eq!(whoami(&client).await?, "dns-3");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_backends_unhealthy_resolves_again_early() -> TestResult {
    // Nothing listens on 127.0.0.2.
    let (port, _backends) = family(&[1, 3])?;
    let dns = Dns::start(&[ip(1), ip(2)]).await?;
    let check = ready_check();
    let client = Client::builder(
        format!("dns://backends.test:{port}").parse()?,
        Trust::Insecure,
    )
    .server_name("localhost")
    .dns_nameserver(dns.addr)
    .dns_interval(Duration::from_secs(60))
    .health_check(check)
    .build()?;
    let started = Instant::now();
    eventually(SOON, "both resolved", || addrs(&client).len() == 2).await?;
    assert_eq!(whoami(&client).await?, "dns-1");
    eventually(SOON, "127.0.0.2 unhealthy", || {
        client.snapshot().backends.iter().any(|b| !b.healthy)
    })
    .await?;

    // Well before the 60 s interval, the client asks again and finds the new backend.
    dns.set(&[ip(1), ip(3)]);
    let expected = HashSet::from([
        SocketAddr::from((ip(1), port)),
        SocketAddr::from((ip(3), port)),
    ]);
    eventually(TWO_POLLS, "the replacement backend", || {
        addrs(&client) == expected
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(dns.queries() >= 2);
    let mut served = HashSet::new();
    for _ in 0..10 {
        served.insert(whoami(&client).await?);
    }
    assert_eq!(
        served,
        HashSet::from(["dns-1".to_owned(), "dns-3".to_owned()])
    );
    Ok(())
}
