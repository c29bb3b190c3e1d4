//! Watching a prefix on a real etcd (started by the test): puts and deletes arrive in order
//! with their revisions, a compacted start revision is reported as such, and a watch broken
//! by etcd's death is taken up again from the next revision once etcd is back.

use std::time::Duration;

use qlb_etcd::{Change, EtcdClient, EtcdError};
use qlb_testkit::{Etcd, TestResult, etcd_available};

const PREFIX: &[u8] = b"/qlb/test/fleet/";

/// The next batch, bounded in time.
async fn next(watch: &mut qlb_etcd::Watch) -> TestResult<qlb_etcd::Changes> {
    Ok(tokio::time::timeout(Duration::from_secs(10), watch.next()).await??)
}

#[tokio::test]
async fn changes_arrive_in_order_and_a_broken_watch_resumes_where_it_stopped() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let mut etcd = Etcd::start()?;
    let client = EtcdClient::new([etcd.url()])?;
    client.put(b"/qlb/test/fleet/a", b"1", None).await?;
    let (listed, revision) = client.get_prefix(PREFIX).await?;
    assert_eq!(listed.len(), 1);

    let mut watch = client.watch_prefix(PREFIX, revision + 1).await?;
    client.put(b"/qlb/test/other", b"not watched", None).await?;
    client.put(b"/qlb/test/fleet/b", b"2", None).await?;
    client.delete(b"/qlb/test/fleet/a").await?;
    let put = next(&mut watch).await?;
    assert_eq!(
        put.revision,
        revision + 2,
        "the unwatched put took a revision"
    );
    match &put.changes[..] {
        [Change::Put(kv)] => assert_eq!(
            (&kv.key[..], &kv.value[..]),
            (&b"/qlb/test/fleet/b"[..], &b"2"[..])
        ),
        other => return Err(format!("{other:?}").into()),
    }
    let deleted = next(&mut watch).await?;
    assert_eq!(
        deleted.changes,
        [Change::Delete {
            key: b"/qlb/test/fleet/a".to_vec()
        }]
    );
    let last = deleted.revision;

    etcd.kill()?;
    let broken = tokio::time::timeout(Duration::from_secs(10), watch.next()).await?;
    assert!(
        matches!(broken, Err(EtcdError::Unreachable { .. })),
        "{broken:?}"
    );
    let refused = client.watch_prefix(PREFIX, last + 1).await;
    assert!(
        matches!(refused, Err(EtcdError::Unreachable { .. })),
        "{refused:?}"
    );
    etcd.restart()?;
    let mut watch = client.watch_prefix(PREFIX, last + 1).await?;
    client.put(b"/qlb/test/fleet/c", b"3", None).await?;
    let resumed = next(&mut watch).await?;
    assert_eq!(
        resumed.revision,
        last + 1,
        "nothing between was skipped or replayed"
    );
    Ok(())
}

#[tokio::test]
async fn a_compacted_start_revision_is_reported() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let etcd = Etcd::start()?;
    let client = EtcdClient::new([etcd.url()])?;
    for n in 0..3u8 {
        client.put(b"/qlb/test/fleet/a", &[n], None).await?;
    }
    let (_, revision) = client.get_prefix(PREFIX).await?;
    client.compact(revision).await?;
    // etcd creates the watch, then cancels it: the compaction is the first thing read.
    let mut stale = client.watch_prefix(PREFIX, 1).await?;
    match tokio::time::timeout(Duration::from_secs(10), stale.next()).await? {
        Err(EtcdError::Compacted {
            revision: compacted,
        }) => assert_eq!(compacted, revision),
        other => return Err(format!("expected a compaction, got {other:?}").into()),
    }
    let mut watch = client.watch_prefix(PREFIX, revision + 1).await?;
    client.put(b"/qlb/test/fleet/a", b"x", None).await?;
    assert_eq!(next(&mut watch).await?.revision, revision + 1);
    Ok(())
}
