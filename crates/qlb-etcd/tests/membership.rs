//! Members joining a fleet on a real etcd (started by the test): distinct server IDs under
//! a race, records that say serving then draining, a clean leave that keeps the ID in
//! quarantine, a crash whose record expires while the ID stays taken, names held once, and
//! an etcd nobody answers.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qlb_etcd::{ClusterKeys, EtcdClient, EtcdError, JoinSpec, Member, MemberState, Membership};
use qlb_testkit::{Etcd, TestResult, etcd_available};

const ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6080);
const HEALTH: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4433);

fn spec(name: &str, server_id_len: usize) -> JoinSpec {
    JoinSpec {
        cluster: "test".into(),
        name: name.into(),
        server_id_len,
        server_id: None,
        // etcd's shortest lease is about 2 s (a few election timeouts).
        member_ttl: Duration::from_secs(3),
        quarantine: Duration::from_secs(6),
        codepoint: Some(0),
        max_connection_lifetime: None,
    }
}

async fn record(etcd: &EtcdClient, name: &str) -> TestResult<Option<Member>> {
    let key = ClusterKeys::new("test").member(name);
    Ok(match etcd.get(key.as_bytes()).await? {
        Some(kv) => Some(serde_json::from_slice(&kv.value)?),
        None => None,
    })
}

async fn id_held(etcd: &EtcdClient, hex: &str) -> TestResult<bool> {
    let key = ClusterKeys::new("test").server_id(hex);
    Ok(etcd.get(key.as_bytes()).await?.is_some())
}

/// Waits (bounded) until `check` holds.
async fn until(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> TestResult<bool>,
) -> TestResult {
    let deadline = Instant::now() + limit;
    while !check().await? {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn start() -> TestResult<Option<(Etcd, Arc<EtcdClient>)>> {
    if !etcd_available() {
        return Ok(None);
    }
    let etcd = Etcd::start()?;
    let client = Arc::new(EtcdClient::new([etcd.url()])?);
    Ok(Some((etcd, client)))
}

#[tokio::test]
async fn members_racing_to_join_get_distinct_server_ids() -> TestResult {
    let Some((_etcd, client)) = start()? else {
        return Ok(());
    };
    // One-octet IDs: 255 of them, so sixteen members racing would collide often if the
    // choice were not etcd's.
    let joins = (0..16).map(|i| {
        Membership::join(
            Arc::clone(&client),
            spec(&format!("m{i}"), 1),
            ADDR,
            Some(HEALTH),
        )
    });
    let members = futures_join_all(joins).await?;
    let ids: HashSet<String> = members.iter().map(|m| m.server_id().to_string()).collect();
    assert_eq!(ids.len(), 16, "{ids:?}");
    for member in &members {
        let stored = record(&client, &member.record().await.name)
            .await?
            .ok_or("no record")?;
        assert_eq!(stored, member.record().await);
        assert_eq!(stored.state, MemberState::Serving);
        assert!(id_held(&client, &stored.server_id).await?);
    }
    Ok(())
}

/// Joins every future concurrently (a tiny `join_all`, to need no futures crate).
async fn futures_join_all(
    joins: impl Iterator<Item = impl Future<Output = Result<Membership, EtcdError>> + Send + 'static>,
) -> TestResult<Vec<Membership>> {
    let tasks: Vec<_> = joins.map(tokio::spawn).collect();
    let mut members = Vec::new();
    for task in tasks {
        members.push(task.await??);
    }
    Ok(members)
}

#[tokio::test]
async fn a_member_drains_then_leaves_and_its_id_stays_taken_for_the_quarantine() -> TestResult {
    let Some((_etcd, client)) = start()? else {
        return Ok(());
    };
    let member = Membership::join(Arc::clone(&client), spec("b1", 2), ADDR, Some(HEALTH)).await?;
    let id = member.server_id().to_string();
    member.drain().await?;
    let stored = record(&client, "b1").await?.ok_or("no record")?;
    assert_eq!(stored.state, MemberState::Draining);

    let left = Instant::now();
    member.leave().await?;
    assert_eq!(
        record(&client, "b1").await?,
        None,
        "the record goes at once"
    );
    assert!(id_held(&client, &id).await?, "the ID stays taken");
    until("the quarantine ends", Duration::from_secs(20), async || {
        Ok(!id_held(&client, &id).await?)
    })
    .await?;
    assert!(
        left.elapsed() >= Duration::from_secs(5),
        "{:?}",
        left.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_crashed_members_record_expires_and_its_id_outlives_it() -> TestResult {
    let Some((_etcd, client)) = start()? else {
        return Ok(());
    };
    let crashed = Membership::join(Arc::clone(&client), spec("b1", 2), ADDR, Some(HEALTH)).await?;
    let id = crashed.server_id().to_string();
    // While it lives, renewal keeps it past its TTL.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        record(&client, "b1").await?.is_some(),
        "renewed past its TTL"
    );
    // A crash: no leave, no more renewals.
    drop(crashed);
    until("the record expires", Duration::from_secs(15), async || {
        Ok(record(&client, "b1").await?.is_none())
    })
    .await?;
    assert!(id_held(&client, &id).await?, "the ID outlives the record");
    // A successor of the same name joins and does not get the ID in quarantine.
    let successor =
        Membership::join(Arc::clone(&client), spec("b1", 2), ADDR, Some(HEALTH)).await?;
    assert_ne!(successor.server_id().to_string(), id);
    Ok(())
}

#[tokio::test]
async fn a_server_id_asked_for_is_taken_or_refused_while_held() -> TestResult {
    let Some((_etcd, client)) = start()? else {
        return Ok(());
    };
    let mut first = spec("b1", 2);
    first.server_id = Some("0a0b".parse()?);
    let holder = Membership::join(Arc::clone(&client), first.clone(), ADDR, Some(HEALTH)).await?;
    assert_eq!(holder.server_id().to_string(), "0a0b");
    first.name = "b2".into();
    let refused = Membership::join(Arc::clone(&client), first, ADDR, Some(HEALTH))
        .await
        .expect_err("held");
    assert!(
        matches!(refused, EtcdError::ServerIdTaken { .. }),
        "{refused}"
    );
    assert!(record(&client, "b2").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_name_is_held_once_and_a_refused_join_holds_no_id() -> TestResult {
    let Some((_etcd, client)) = start()? else {
        return Ok(());
    };
    let _first = Membership::join(Arc::clone(&client), spec("b1", 1), ADDR, Some(HEALTH)).await?;
    let refused = Membership::join(Arc::clone(&client), spec("b1", 1), ADDR, Some(HEALTH))
        .await
        .expect_err("the name is taken");
    assert!(matches!(refused, EtcdError::NameTaken { .. }), "{refused}");
    let prefix = ClusterKeys::new("test").server_ids();
    let (held, _) = client.get_prefix(prefix.as_bytes()).await?;
    assert_eq!(held.len(), 1, "only the first member's ID: {held:?}");
    Ok(())
}

#[tokio::test]
async fn an_etcd_nobody_answers_is_named_in_the_error() -> TestResult {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let client = Arc::new(EtcdClient::new([format!("http://127.0.0.1:{port}")])?);
    let error = Membership::join(client, spec("b1", 1), ADDR, Some(HEALTH))
        .await
        .expect_err("no etcd");
    assert!(
        matches!(error, EtcdError::Unreachable { .. })
            && error.to_string().contains(&port.to_string()),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn a_reservation_never_published_gives_its_id_back() -> TestResult {
    let Some((_etcd, client)) = start()? else {
        return Ok(());
    };
    let reserved = Membership::reserve(Arc::clone(&client), spec("b1", 2)).await?;
    let id = reserved.server_id().to_string();
    assert!(id_held(&client, &id).await?);
    // A server that failed to bind after taking its ID.
    drop(reserved);
    until("the ID is given back", Duration::from_secs(5), async || {
        Ok(!id_held(&client, &id).await?)
    })
    .await?;
    assert!(record(&client, "b1").await?.is_none());
    Ok(())
}
