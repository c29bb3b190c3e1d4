//! `qlb serve --etcd URL --cluster NAME` against a real etcd (started by the test): two
//! backends without `--server-id` get distinct IDs, publish where they serve, and on SIGTERM
//! mark themselves draining before the GOAWAYs and delete their record at exit, while the
//! ID stays taken for the quarantine.

mod support;

use std::time::Duration;

use qlb_etcd::{ClusterKeys, EtcdClient, Member, MemberState};
use qlb_testkit::{Etcd, etcd_available, fixtures};
use support::TestResult;
use support::cluster::spawn_serve;

#[test]
fn backends_take_distinct_ids_publish_and_drain_then_leave() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let etcd = Etcd::start()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, fixtures::table(0))?;
    let url = etcd.url();
    let args = [
        "--etcd",
        url.as_str(),
        "--cluster",
        "edge",
        "--server-id-quarantine",
        "1h",
    ];
    let (mut b1, addr1, _) = spawn_serve("b1", None, "127.0.0.1:0", &config, &args)?;
    let (mut b2, addr2, _) = spawn_serve("b2", None, "127.0.0.1:0", &config, &args)?;

    let runtime = tokio::runtime::Runtime::new()?;
    let client = EtcdClient::new([url.as_str()])?;
    let keys = ClusterKeys::new("edge");
    let member = |name: &str| -> TestResult<Option<Member>> {
        runtime.block_on(async {
            Ok(match client.get(keys.member(name).as_bytes()).await? {
                Some(kv) => Some(serde_json::from_slice(&kv.value)?),
                None => None,
            })
        })
    };
    let (m1, m2) = (member("b1")?.ok_or("no b1")?, member("b2")?.ok_or("no b2")?);
    assert_ne!(m1.server_id, m2.server_id);
    assert_eq!((m1.addr, m2.addr), (addr1, addr2));
    assert_eq!(m1.state, MemberState::Serving);

    b1.terminate()?;
    b1.wait_for_log("stopped", Duration::from_secs(30))?;
    let lines = b1.lines();
    let at = |needle: &str| lines.iter().position(|line| line.contains(needle));
    let drained = at("marked draining on etcd").ok_or("never marked draining")?;
    let shutting = at("shutting down").ok_or("never shut down")?;
    assert!(
        drained < shutting,
        "draining is published before the GOAWAYs"
    );
    assert_eq!(member("b1")?, None, "the record is deleted at exit");
    let held = runtime.block_on(client.get(keys.server_id(&m1.server_id).as_bytes()))?;
    assert!(held.is_some(), "the ID stays taken for the quarantine");
    assert!(member("b2")?.is_some());
    b2.terminate()?;
    Ok(())
}
