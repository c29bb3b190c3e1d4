//! A backend's membership of a fleet: it takes a server ID nobody holds, publishes what the
//! load balancers need to reach it, keeps both alive, says when it drains, and leaves.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quic_lb::ServerId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::allocate::candidates;
use crate::client::{EtcdClient, Lease};
use crate::error::EtcdError;
use crate::keys::{ClusterKeys, valid_name};
use crate::lb_record::LbRecord;

/// Server IDs tried before joining gives up.
const ALLOCATION_TRIES: usize = 64;

/// What a member is doing, as the load balancers read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Takes new connections.
    Serving,
    /// Finishing its connections before it leaves: no new ones.
    Draining,
}

/// A member's record, as stored under `members/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name, unique in the cluster.
    pub name: String,
    /// Where the load balancers send its datagrams (its GUE address in GUE mode).
    pub addr: SocketAddr,
    /// Where the load balancers' health checks reach it, if not at `addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_addr: Option<SocketAddr>,
    /// Its QUIC-LB server ID, lowercase hex.
    pub server_id: String,
    /// Serving or draining.
    pub state: MemberState,
    /// The QUIC-LB codepoint its new connection IDs use, when it says (`qlb cluster
    /// rotate` waits for every serving member to report the new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codepoint: Option<u8>,
    /// How long its connections may live at most, in milliseconds (max connection age,
    /// jitter and grace): a rotation keeps the old codepoint at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_lifetime_ms: Option<u64>,
}

/// How a member joins.
#[derive(Clone, Debug)]
pub struct JoinSpec {
    /// The cluster (`[a-zA-Z0-9._-]`, up to 64).
    pub cluster: String,
    /// The member's name, unique in the cluster.
    pub name: String,
    /// Octets of the server ID (the cluster's QUIC-LB `server_id_len`).
    pub server_id_len: usize,
    /// This server ID and no other (refused if someone holds it); `None`: any free one.
    pub server_id: Option<ServerId>,
    /// How long its record outlives it if it dies without leaving: the load balancers stop
    /// sending it new connections this long after a crash at most.
    pub member_ttl: Duration,
    /// How long its server ID stays taken after it leaves or dies: at least the fleet's max
    /// connection age, so that no later member receives a connection of this one.
    pub quarantine: Duration,
    /// The QUIC-LB codepoint it issues under, published in its record.
    pub codepoint: Option<u8>,
    /// How long its connections may live at most (none: unbounded), published in its
    /// record.
    pub max_connection_lifetime: Option<Duration>,
}

/// A member's two leases, renewed in a task until stopped.
#[derive(Debug)]
struct Leases {
    /// The record's: short, so a dead member's record goes soon.
    member: Lease,
    /// The server ID's: as long as the quarantine.
    id: Lease,
    /// Stops the renewal task when sent or dropped.
    stop: watch::Sender<bool>,
}

/// A server ID taken for a member not published yet: build and bind the server with
/// [`server_id`](Self::server_id), then [`publish`](Self::publish) where the load balancers
/// reach it. Its leases are renewed meanwhile; dropped unpublished, the ID is given back.
#[derive(Debug)]
pub struct Reservation {
    etcd: Arc<EtcdClient>,
    keys: ClusterKeys,
    spec: JoinSpec,
    server_id: ServerId,
    /// Taken out by `publish`.
    leases: Option<Leases>,
}

/// A member of a fleet, alive while this lives (its leases are renewed in a task; dropped
/// without [`leave`](Self::leave), as in a crash, its record expires after `member_ttl`).
///
/// ```no_run
/// # async fn run() -> Result<(), qlb_etcd::EtcdError> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use qlb_etcd::{EtcdClient, JoinSpec, Membership};
///
/// let etcd = Arc::new(EtcdClient::new(["http://127.0.0.1:2379"])?);
/// let reserved = Membership::reserve(etcd, JoinSpec {
///     cluster: "edge".into(),
///     name: "b1".into(),
///     server_id_len: 2,
///     server_id: None,
///     member_ttl: Duration::from_secs(10),
///     quarantine: Duration::from_secs(3600),
///     codepoint: Some(0),
///     max_connection_lifetime: Some(Duration::from_secs(660)),
/// })
/// .await?;
/// println!("serving as server ID {}", reserved.server_id());
/// // ... build and bind the server with that ID, then:
/// let member = reserved.publish("10.0.0.5:4433".parse().unwrap(), None).await?;
/// // ... serve; when told to stop:
/// member.drain().await?;
/// // ... graceful shutdown ...
/// member.leave().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Membership {
    etcd: Arc<EtcdClient>,
    keys: ClusterKeys,
    /// Held across each write, so that two changes (a drain, a new codepoint) land in the
    /// order they were made and neither undoes the other.
    record: tokio::sync::Mutex<Member>,
    server_id: ServerId,
    leases: Leases,
}

impl Membership {
    /// Takes a server ID that no live or quarantined member holds (a create-if-absent
    /// transaction per candidate, under a lease as long as the quarantine), renewed from
    /// now on.
    pub async fn reserve(etcd: Arc<EtcdClient>, spec: JoinSpec) -> Result<Reservation, EtcdError> {
        let keys = ClusterKeys::checked(&spec.cluster)?;
        if !valid_name(&spec.name) {
            return Err(EtcdError::MemberName(spec.name));
        }
        let id_lease = etcd.grant(spec.quarantine).await?;
        let member_lease = etcd.grant(spec.member_ttl).await?;
        let server_id = match allocate(&etcd, &keys, &spec, id_lease).await {
            Ok(id) => id,
            Err(error) => {
                revoke_quietly(&etcd, [id_lease, member_lease]).await;
                return Err(error);
            }
        };
        let (stop, stopped) = watch::channel(false);
        let renew_every = spec.member_ttl.min(spec.quarantine) / 3;
        tokio::spawn(renew(
            Arc::clone(&etcd),
            [member_lease, id_lease],
            renew_every.max(Duration::from_millis(100)),
            stopped,
        ));
        Ok(Reservation {
            etcd,
            keys,
            spec,
            server_id,
            leases: Some(Leases {
                member: member_lease,
                id: id_lease,
                stop,
            }),
        })
    }

    /// [`reserve`](Self::reserve) then [`publish`](Reservation::publish), for a member
    /// whose addresses are known before it binds.
    pub async fn join(
        etcd: Arc<EtcdClient>,
        spec: JoinSpec,
        addr: SocketAddr,
        health_addr: Option<SocketAddr>,
    ) -> Result<Self, EtcdError> {
        Self::reserve(etcd, spec)
            .await?
            .publish(addr, health_addr)
            .await
    }

    /// The server ID this member holds.
    pub fn server_id(&self) -> ServerId {
        self.server_id
    }

    /// The member's record as published.
    pub async fn record(&self) -> Member {
        self.record.lock().await.clone()
    }

    /// Marks the member draining, so the load balancers send it no new connections; call
    /// before its graceful shutdown starts, and let [`await_load_balancers`](Self::await_load_balancers)
    /// see the load balancers take it (they apply it a moment later). Returns the revision
    /// of the change.
    pub async fn drain(&self) -> Result<i64, EtcdError> {
        self.republish(|record| record.state = MemberState::Draining)
            .await
    }

    /// Waits, for at most `within`, until every live load balancer's record (`lbs/`) shows
    /// `revision` or a later one applied; whether they all did. Before a graceful shutdown,
    /// after [`drain`](Self::drain): a load balancer still sending new connections here
    /// would see them refused.
    pub async fn await_load_balancers(
        &self,
        revision: i64,
        within: Duration,
    ) -> Result<bool, EtcdError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (records, _) = self
                .etcd
                .get_prefix(self.keys.load_balancers().as_bytes())
                .await?;
            let caught_up = records.iter().all(|kv| {
                serde_json::from_slice::<LbRecord>(&kv.value)
                    .is_ok_and(|lb| lb.revision >= revision)
            });
            if caught_up {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Says that the member's new connection IDs use `codepoint` from now on (after a
    /// rotation told it to move).
    pub async fn issuing_under(&self, codepoint: u8) -> Result<(), EtcdError> {
        self.republish(|record| record.codepoint = Some(codepoint))
            .await?;
        Ok(())
    }

    /// Changes the record with `change` and writes it again, under the member's lease; the
    /// revision of the write.
    async fn republish(&self, change: impl FnOnce(&mut Member)) -> Result<i64, EtcdError> {
        let mut record = self.record.lock().await;
        change(&mut record);
        self.etcd
            .put(
                self.keys.member(&record.name).as_bytes(),
                &json(&record),
                Some(self.leases.member),
            )
            .await
    }

    /// Deletes the member's record and stops renewing; its server ID stays taken until the
    /// quarantine runs out.
    pub async fn leave(self) -> Result<(), EtcdError> {
        let _ = self.leases.stop.send(true);
        self.etcd.revoke(self.leases.member).await?;
        tracing::info!(name = %self.record.lock().await.name, "left the fleet on etcd");
        Ok(())
    }
}

impl Reservation {
    /// The server ID taken.
    pub fn server_id(&self) -> ServerId {
        self.server_id
    }

    /// Publishes the member's record, serving: the load balancers send its datagrams to
    /// `addr` and check its health at `health_addr` (or `addr`). Refused if a member of that
    /// name is registered; the server ID is then given back.
    pub async fn publish(
        mut self,
        addr: SocketAddr,
        health_addr: Option<SocketAddr>,
    ) -> Result<Membership, EtcdError> {
        let Some(leases) = self.leases.take() else {
            return Err(EtcdError::ClusterName(self.spec.cluster.clone()));
        };
        let record = Member {
            name: self.spec.name.clone(),
            addr,
            health_addr,
            server_id: self.server_id.to_string(),
            state: MemberState::Serving,
            codepoint: self.spec.codepoint,
            max_connection_lifetime_ms: self
                .spec
                .max_connection_lifetime
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let created = self
            .etcd
            .create(
                self.keys.member(&self.spec.name).as_bytes(),
                &json(&record),
                Some(leases.member),
            )
            .await;
        match created {
            Ok(true) => {}
            outcome => {
                // The ID goes back at once: no client has a connection under it yet.
                let _ = leases.stop.send(true);
                revoke_quietly(&self.etcd, [leases.id, leases.member]).await;
                outcome?;
                return Err(EtcdError::NameTaken {
                    cluster: self.spec.cluster.clone(),
                    name: self.spec.name.clone(),
                });
            }
        }
        tracing::info!(
            cluster = %self.spec.cluster,
            name = %self.spec.name,
            server_id = %self.server_id,
            "joined the fleet on etcd"
        );
        Ok(Membership {
            etcd: Arc::clone(&self.etcd),
            keys: self.keys.clone(),
            record: tokio::sync::Mutex::new(record),
            server_id: self.server_id,
            leases,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Published, the leases moved on; dropped unpublished, the ID is given back.
        let Some(leases) = self.leases.take() else {
            return;
        };
        let _ = leases.stop.send(true);
        let etcd = Arc::clone(&self.etcd);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { revoke_quietly(&etcd, [leases.id, leases.member]).await });
        }
    }
}

/// Takes `spec.server_id`, or tries free server IDs until one is created for `spec.name`,
/// under `lease`.
async fn allocate(
    etcd: &EtcdClient,
    keys: &ClusterKeys,
    spec: &JoinSpec,
    lease: Lease,
) -> Result<ServerId, EtcdError> {
    if let Some(wanted) = spec.server_id {
        let key = keys.server_id(&wanted.to_string());
        return match etcd
            .create(key.as_bytes(), spec.name.as_bytes(), Some(lease))
            .await?
        {
            true => Ok(wanted),
            false => Err(EtcdError::ServerIdTaken {
                cluster: spec.cluster.clone(),
                server_id: wanted.to_string(),
            }),
        };
    }
    let prefix = keys.server_ids();
    let (held, _) = etcd.get_prefix(prefix.as_bytes()).await?;
    let taken: HashSet<String> = held
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(prefix.as_bytes()))
        .map(|hex| String::from_utf8_lossy(hex).into_owned())
        .collect();
    let offered = candidates(spec.server_id_len, &taken, ALLOCATION_TRIES);
    let tries = offered.len();
    for id in offered {
        let key = keys.server_id(&id.to_string());
        if etcd
            .create(key.as_bytes(), spec.name.as_bytes(), Some(lease))
            .await?
        {
            return Ok(id);
        }
    }
    Err(EtcdError::NoFreeServerId {
        cluster: spec.cluster.clone(),
        len: spec.server_id_len,
        tries,
    })
}

/// Renews `leases` every `every` until told to stop; a lease found gone is reported (the
/// member's record or its server ID has lapsed, as after a long partition from etcd).
async fn renew(
    etcd: Arc<EtcdClient>,
    leases: [Lease; 2],
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        for lease in leases {
            match etcd.keep_alive(lease).await {
                Ok(Some(_)) => {}
                Ok(None) => tracing::error!(
                    lease = lease.id(),
                    "an etcd lease of this member has expired: the load balancers may have \
                     dropped it; restart it to join again"
                ),
                Err(error) => tracing::warn!(%error, "cannot renew a lease on etcd; retrying"),
            }
        }
    }
}

async fn revoke_quietly(etcd: &EtcdClient, leases: [Lease; 2]) {
    for lease in leases {
        if let Err(error) = etcd.revoke(lease).await {
            tracing::warn!(%error, "could not revoke an etcd lease; it will expire");
        }
    }
}

fn json(record: &Member) -> Vec<u8> {
    // A record of strings and addresses always serializes.
    serde_json::to_vec(record).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written() {
        let record = Member {
            name: "b1".into(),
            addr: "10.0.0.5:6080".parse().expect("addr"),
            health_addr: Some("10.0.0.5:4433".parse().expect("addr")),
            server_id: "0a01".into(),
            state: MemberState::Draining,
            codepoint: Some(3),
            max_connection_lifetime_ms: None,
        };
        let text = String::from_utf8(json(&record)).expect("utf-8");
        assert!(text.contains(r#""state":"draining""#), "{text}");
        assert_eq!(
            serde_json::from_str::<Member>(&text).expect("parses"),
            record
        );
    }
}
