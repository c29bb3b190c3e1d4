//! Distinct backends behind the load balancer's VIP, with the client in-process and `qlb lb`
//! and four `qlb serve` as processes: a client asked for four connections while only two
//! backends take new connections ends with two distinct ones, and finds the other two once
//! they join.

mod support;

use std::time::Duration;

use qlb_client::{Client, Trust};
use qlb_testkit::{TestResult, eventually};
use support::cluster::{Cluster, Spec};

/// Generous for what should happen soon on a loaded machine.
const SOON: Duration = Duration::from_secs(15);

/// The servers the client's connections reached (one entry per connection that knows).
fn servers(client: &Client) -> Vec<String> {
    let mut ids: Vec<String> = client
        .snapshot()
        .backends
        .iter()
        .flat_map(|backend| backend.server_ids.clone())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_connections_find_the_backends_that_join_behind_the_vip() -> TestResult {
    let cluster = Cluster::start(Spec {
        backends: 4,
        admin: true,
        ..Spec::default()
    })?;
    let lb = &cluster.lbs[0];
    // b3 and b4 take no new connections: the fleet behind the VIP is two backends.
    for name in ["b3", "b4"] {
        lb.drain(name)?;
    }
    let client = Client::builder(lb.addr.into(), Trust::Insecure)
        .server_name("localhost")
        .min_connections(4)
        .distinct_backends(true)
        .distinct_redial_interval(Duration::from_millis(100))
        .timeout(SOON)
        .build()?;
    eventually(SOON, "four connections to the two backends", || {
        let ids = servers(&client);
        let mut distinct = ids.clone();
        distinct.dedup();
        ids.len() == 4 && distinct == ["0001", "0002"]
    })
    .await
    .map_err(|err| format!("{err}: {:?}", servers(&client)))?;

    for name in ["b3", "b4"] {
        lb.undrain(name)?;
    }
    eventually(SOON, "a connection to each of the four backends", || {
        servers(&client) == ["0001", "0002", "0003", "0004"]
    })
    .await
    .map_err(|err| format!("{err}: {:?}", servers(&client)))?;
    let duplicates: u64 = client
        .snapshot()
        .backends
        .iter()
        .map(|b| b.connections_closed.get(qlb_client::CloseReason::Duplicate))
        .sum();
    assert!(duplicates >= 2, "{duplicates} duplicates replaced");
    Ok(())
}
