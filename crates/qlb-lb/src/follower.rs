//! Following the fleet on etcd: list its members and the cluster's record (QUIC-LB tables
//! and secret), apply them, watch from the next revision and apply every change, each
//! through the control plane's reload path. The data plane
//! never waits on etcd: while etcd cannot be reached the last fleet stays in force, and the
//! watch resumes from the revision after the last one applied, so that no change is missed.
//!
//! This load balancer's record (`lbs/<name>`) says which revision it applied, under a lease
//! whose renewals double as the check that etcd still answers (a watch on a silent etcd
//! would wait forever).

use std::sync::{Arc, Weak};
use std::time::Duration;

use qlb_etcd::{Backoff, ClusterKeys, EtcdClient, EtcdError, Lease};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::EtcdConfig;
use crate::control_plane::{ControlPlane, Fleet};

/// The follower task; stopped by [`FollowerTask::stop`], or when dropped (its stop channel
/// closes).
#[derive(Debug)]
pub(crate) struct FollowerTask {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl FollowerTask {
    /// Starts following `config`'s fleet for `control`; the receiver fires once the first
    /// listing has been applied.
    pub(crate) fn spawn(
        control: &Arc<ControlPlane>,
        config: &EtcdConfig,
    ) -> Result<(Self, oneshot::Receiver<()>), EtcdError> {
        let (synced, first_sync) = oneshot::channel();
        let (stop, stopped) = watch::channel(false);
        let follower = Follower {
            control: Arc::downgrade(control),
            etcd: config.client()?,
            keys: ClusterKeys::checked(&config.cluster)?,
            config: config.clone(),
            lease: None,
            fleet: None,
            listed_at: 0,
            synced: Some(synced),
        };
        let task = tokio::spawn(follower.run(stopped));
        Ok((Self { task, stop }, first_sync))
    }

    /// Stops following and deletes this load balancer's record (bounded in time: etcd may
    /// be gone, and then the record expires with its lease).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

struct Follower {
    control: Weak<ControlPlane>,
    etcd: EtcdClient,
    keys: ClusterKeys,
    config: EtcdConfig,
    /// The lease of this load balancer's record, once granted.
    lease: Option<Lease>,
    /// The fleet as etcd has it (the control plane may have refused some of it).
    fleet: Option<Fleet>,
    /// The revision the fleet was last listed at.
    listed_at: i64,
    /// Told once, when the first listing is applied.
    synced: Option<oneshot::Sender<()>>,
}

impl Follower {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        loop {
            let outcome = tokio::select! {
                outcome = self.follow() => outcome,
                _ = stopped.changed() => break,
            };
            let Some(control) = self.control.upgrade() else {
                return;
            };
            match outcome {
                // A compaction: list afresh, at once.
                Ok(()) => backoff.reset(),
                Err(error) => {
                    let revision = self.fleet.as_ref().map_or(0, Fleet::revision);
                    if control.fleet_lost(error.to_string()) {
                        tracing::warn!(
                            %error,
                            revision,
                            "lost etcd: forwarding goes on with the last fleet known"
                        );
                    }
                    drop(control);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_wait()) => {}
                        _ = stopped.changed() => break,
                    }
                }
            }
        }
        self.leave().await;
    }

    /// Lists the fleet if need be, then applies its changes until the watch breaks (an
    /// error) or etcd says its history no longer reaches back far enough (`Ok`).
    async fn follow(&mut self) -> Result<(), EtcdError> {
        let mut fleet = match self.fleet.take() {
            Some(fleet) => fleet,
            None => {
                let (listing, at) = self.etcd.get_prefix(self.keys.fleet().as_bytes()).await?;
                self.listed_at = at;
                let fleet = Fleet::listed(&self.keys, listing);
                self.apply(&fleet).await;
                fleet
            }
        };
        let from = fleet.revision() + 1;
        self.fleet = Some(fleet.clone());
        let mut watch = self
            .etcd
            .watch_prefix(self.keys.fleet().as_bytes(), from)
            .await?;
        self.reached();
        self.record().await?;
        let mut renewals = tokio::time::interval(self.config.ttl / 3);
        renewals.tick().await;
        loop {
            tokio::select! {
                changes = watch.next() => match changes {
                    Ok(changes) => {
                        fleet.apply(&changes);
                        self.apply(&fleet).await;
                        self.fleet = Some(fleet.clone());
                        self.record().await?;
                    }
                    Err(EtcdError::Compacted { revision }) => {
                        if fleet.revision() < self.listed_at && revision <= self.listed_at + 1 {
                            // Deletions since the newest record are gone from the history,
                            // but the listing had them: go on from where it was read.
                            fleet.caught_up_to(self.listed_at);
                            self.apply(&fleet).await;
                            self.fleet = Some(fleet);
                        } else {
                            tracing::info!(revision, "etcd compacted past this fleet: listing again");
                            self.fleet = None;
                        }
                        return Ok(());
                    }
                    Err(error) => return Err(error),
                },
                _ = renewals.tick() => self.renew().await?,
            }
        }
    }

    /// Hands `fleet` to the control plane (which logs what it refuses and keeps the last).
    async fn apply(&mut self, fleet: &Fleet) {
        let Some(control) = self.control.upgrade() else {
            return;
        };
        let _ = control.apply_fleet(fleet.clone()).await;
        if let Some(synced) = self.synced.take() {
            let _ = synced.send(());
        }
    }

    fn reached(&self) {
        if let Some(control) = self.control.upgrade() {
            control.fleet_reached();
        }
    }

    /// Writes this load balancer's record, under its lease (granted if need be).
    async fn record(&mut self) -> Result<(), EtcdError> {
        let Some(record) = self.control.upgrade().and_then(|c| c.fleet_record()) else {
            return Ok(());
        };
        let lease = match self.lease {
            Some(lease) => lease,
            None => {
                let lease = self.etcd.grant(self.config.ttl).await?;
                self.lease = Some(lease);
                lease
            }
        };
        // A record of strings and numbers always serializes.
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let key = self.keys.load_balancer(&self.config.name);
        self.etcd.put(key.as_bytes(), &value, Some(lease)).await?;
        Ok(())
    }

    /// Renews the record's lease; a lease found expired (etcd was gone longer than the
    /// TTL) is replaced and the record written again.
    async fn renew(&mut self) -> Result<(), EtcdError> {
        let Some(lease) = self.lease else {
            return self.record().await;
        };
        if self.etcd.keep_alive(lease).await?.is_none() {
            self.lease = None;
            self.record().await?;
        }
        self.reached();
        Ok(())
    }

    /// Deletes this load balancer's record, if etcd answers soon.
    async fn leave(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Err(error) = self.etcd.revoke(lease).await {
                tracing::warn!(%error, "could not delete this load balancer's record on etcd; it expires");
            }
        }
    }
}
