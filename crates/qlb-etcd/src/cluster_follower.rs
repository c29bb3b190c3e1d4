//! A server's view of the cluster's record on etcd: read once at start, then each new
//! version as a rotation changes it. etcd failures are retried here, with backoff, so the
//! caller sees only versions of the record.

use std::sync::Arc;
use std::time::Duration;

use quic_lb::Config;

use crate::backoff::Backoff;
use crate::client::EtcdClient;
use crate::cluster_record::{ClusterRecord, RecordError};
use crate::error::EtcdError;
use crate::keys::ClusterKeys;
use crate::membership::Membership;
use crate::watch::{Change, Watch};

/// One version of the record: the record, `None` once deleted, or why it cannot be used.
pub type Version = Result<Option<ClusterRecord>, RecordError>;

/// Follows the cluster's record from the revision it was read at.
///
/// ```no_run
/// # async fn demo(etcd: std::sync::Arc<qlb_etcd::EtcdClient>) -> Result<(), qlb_etcd::EtcdError> {
/// use qlb_etcd::ClusterFollower;
///
/// let (now, mut follower) = ClusterFollower::read(etcd, "edge").await?;
/// println!("issuing under {:?}", now.ok().flatten().map(|r| r.issuing));
/// loop {
///     if let Ok(Some(record)) = follower.next().await {
///         println!("issuing under {} from now on", record.issuing);
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ClusterFollower {
    etcd: Arc<EtcdClient>,
    key: Vec<u8>,
    /// The revision the record is known at: the watch starts after it.
    revision: i64,
    watch: Option<Watch>,
}

impl ClusterFollower {
    /// Reads cluster `cluster`'s record now; returns it and a follower of its later
    /// versions.
    pub async fn read(etcd: Arc<EtcdClient>, cluster: &str) -> Result<(Version, Self), EtcdError> {
        let key = ClusterKeys::checked(cluster)?.cluster().into_bytes();
        let mut follower = Self {
            etcd,
            key,
            revision: 0,
            watch: None,
        };
        let now = follower.reread().await?;
        Ok((now, follower))
    }

    /// The record's next version; waits for it, retrying etcd as long as it takes (drop
    /// the future to stop).
    pub async fn next(&mut self) -> Version {
        let mut backoff = Backoff::default();
        loop {
            match self.step().await {
                Ok(Some(version)) => return version,
                Ok(None) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(%error, "following the cluster's record on etcd; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    /// Keeps a server issuing under the codepoint the record says, from `issuing` on:
    /// whenever a rotation (`qlb cluster rotate`) moves it, hands the new table to `rotate`
    /// (`qlb_server::Server::rotate_config`, say) and, once that took, writes the codepoint
    /// into `membership`'s record, which the rotation waits for (retried until etcd takes
    /// it). A record that cannot be used, or a table `rotate` refuses, changes nothing and
    /// is logged. Runs until dropped (spawn it, abort it before leaving the fleet).
    pub async fn follow_issuing(
        mut self,
        membership: Option<Arc<Membership>>,
        mut issuing: u8,
        mut rotate: impl FnMut(Config) -> Result<(), String>,
    ) {
        loop {
            let record = match self.next().await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    tracing::warn!(
                        "the cluster's record left etcd: issuing under codepoint {issuing} still"
                    );
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "issuing under codepoint {issuing} still");
                    continue;
                }
            };
            if record.issuing == issuing {
                continue;
            }
            let moved = record
                .issuing_config()
                .map_err(|e| e.to_string())
                .and_then(&mut rotate);
            if let Err(error) = moved {
                tracing::warn!(%error, "cannot issue under codepoint {}: issuing under {issuing} still", record.issuing);
                continue;
            }
            issuing = record.issuing;
            tracing::info!("issuing under codepoint {issuing}, as the cluster's record says");
            if let Some(membership) = &membership {
                while let Err(error) = membership.issuing_under(issuing).await {
                    tracing::warn!(%error, "cannot tell etcd this server issues under codepoint {issuing}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// One batch of the watch: the record's newest version in it, if it has one.
    async fn step(&mut self) -> Result<Option<Version>, EtcdError> {
        let watch = match &mut self.watch {
            Some(watch) => watch,
            None => self
                .watch
                .insert(self.etcd.watch_prefix(&self.key, self.revision + 1).await?),
        };
        match watch.next().await {
            Ok(changes) => {
                self.revision = self.revision.max(changes.revision);
                Ok(changes
                    .changes
                    .iter()
                    .rev()
                    .find_map(|change| match change {
                        Change::Put(kv) if kv.key == self.key => {
                            Some(ClusterRecord::from_json(&kv.value).map(Some))
                        }
                        Change::Delete { key } if *key == self.key => Some(Ok(None)),
                        _ => None,
                    }))
            }
            Err(EtcdError::Compacted { .. }) => {
                // The changes in between are gone: read the record as it is now.
                self.watch = None;
                self.reread().await.map(Some)
            }
            Err(error) => {
                self.watch = None;
                Err(error)
            }
        }
    }

    /// Reads the record and the revision it was read at.
    async fn reread(&mut self) -> Result<Version, EtcdError> {
        let (found, revision) = self.etcd.get_prefix(&self.key).await?;
        self.revision = revision;
        Ok(match found.into_iter().find(|kv| kv.key == self.key) {
            Some(kv) => ClusterRecord::from_json(&kv.value).map(Some),
            None => Ok(None),
        })
    }
}
