//! A backend that runs itself on a fleet on etcd, as `qlb serve --etcd` does: the cluster's
//! QUIC-LB tables and secret from its record on etcd (`qlb cluster init` put them there), a
//! server ID nobody holds, its record published under a lease, the codepoint followed
//! through key rotations (`qlb cluster rotate`), and on Ctrl-C: draining on etcd first, then
//! GOAWAY, then leaving.
//!
//! ```text
//! etcd --data-dir /tmp/etcd &
//! qlb cluster init --etcd http://127.0.0.1:2379 --cluster edge --from cluster.toml
//! cargo run -p qlb-server --example fleet_member -- http://127.0.0.1:2379 edge 127.0.0.1:5001
//! ```

use std::sync::Arc;
use std::time::Duration;

use qlb_etcd::{ClusterFollower, EtcdClient, JoinSpec, Membership};
use qlb_server::{Server, builtin_routes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let mut args = std::env::args().skip(1);
    let etcd_url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:2379".into());
    let cluster = args.next().unwrap_or_else(|| "edge".into());
    let addr: std::net::SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:5001".into())
        .parse()?;
    let etcd = Arc::new(EtcdClient::new([etcd_url])?);

    // The tables and the secret, and a follower of their later versions.
    let (now, follower) = ClusterFollower::read(etcd.clone(), &cluster).await?;
    let record = now?.ok_or("the cluster has no record on etcd: run `qlb cluster init`")?;
    let config = record.issuing_config()?;
    let reservation = Membership::reserve(
        etcd,
        JoinSpec {
            cluster,
            name: format!("example-{}", addr.port()),
            server_id_len: config.server_id_len(),
            server_id: None,
            member_ttl: Duration::from_secs(10),
            quarantine: Duration::from_secs(3600),
            codepoint: Some(record.issuing),
            max_connection_lifetime: None,
        },
    )
    .await?;
    let mut builder = Server::builder(config, reservation.server_id()).name("example");
    if let Some(secret) = record.secret()? {
        builder = builder.cluster_secret(&secret);
    }
    let server = builder.bind(addr)?;
    let member = Arc::new(reservation.publish(server.local_addr()?, None).await?);
    println!(
        "serving HTTP/3 on {} as server ID {}",
        server.local_addr()?,
        member.server_id()
    );

    let issuing = tokio::spawn({
        let server = server.clone();
        let rotate = move |config| server.rotate_config(config).map_err(|e| e.to_string());
        follower.follow_issuing(Some(member.clone()), record.issuing, rotate)
    });
    let serving = tokio::spawn({
        let server = server.clone();
        let routes = builtin_routes(server.drain_state());
        async move { server.serve(routes).await }
    });
    tokio::signal::ctrl_c().await?;
    // The load balancers send no new connection from now on, once they took the drain.
    let drained = member.drain().await?;
    member
        .await_load_balancers(drained, Duration::from_secs(3))
        .await?;
    server.shutdown(Duration::from_secs(10)).await;
    serving.await?;
    issuing.abort();
    let _ = issuing.await;
    if let Some(member) = Arc::into_inner(member) {
        member.leave().await?;
    }
    Ok(())
}
