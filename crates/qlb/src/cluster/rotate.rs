//! `qlb cluster rotate`: a new QUIC-LB key for the whole fleet, in the order that keeps every
//! connection routable. The rotation is a record on etcd, so each step is a transaction
//! against the records it read and a run that was interrupted resumes where it stopped; the
//! decisions are [`qlb_etcd::next_step`]'s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use qlb_etcd::{
    ClusterKeys, ClusterRecord, EtcdClient, FleetView, RotationRecord, Snapshot, Step, Transaction,
    Versioned, next_step,
};
use quic_lb::Key;

use crate::durations::{up_to_a_day, up_to_a_year};
use crate::etcd_access::ClusterAt;

/// How often the rotation looks at etcd while it waits.
const POLL: Duration = Duration::from_millis(200);
/// How much longer than the retirement wait the whole run may take by default.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(15 * 60);

#[derive(Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    at: ClusterAt,
    /// How long after every server moved the old codepoint stays decodable, at least: the
    /// longest connection lifetime a server publishes (its max connection age, jitter and
    /// grace) if that is longer. Taken when the rotation starts.
    #[arg(long, value_parser = up_to_a_year, default_value = "1h")]
    retire_after: Duration,
    /// Only resume the rotation in progress; fail if there is none.
    #[arg(long)]
    resume: bool,
    /// Stop waiting for this load balancer (repeat, or separate with commas): it was live
    /// when the rotation began and has no record now. Only for one that is gone for good: a
    /// load balancer cut off from etcd still forwards with the tables it knew.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    forget_lb: Vec<String>,
    /// Give up (the rotation stays where it is, to resume) after this long [default: the
    /// retirement wait plus 15 minutes].
    #[arg(long, value_parser = up_to_a_day)]
    timeout: Option<Duration>,
}

impl RotateArgs {
    pub(super) async fn run(self) -> Result<()> {
        let (etcd, keys) = self.at.open()?;
        let timeout = self
            .timeout
            .unwrap_or(self.retire_after.saturating_add(TIMEOUT_MARGIN));
        let rotation = Rotation {
            etcd: &etcd,
            keys: &keys,
            retire_after: self.retire_after,
            resume_only: self.resume,
            forgotten: &self.forget_lb,
        };
        tokio::time::timeout(timeout, rotation.run())
            .await
            .map_err(|_| {
                anyhow!(
                    "gave up after {timeout:?}: the rotation stays where it is; run `qlb cluster \
                     rotate --resume` to go on with it"
                )
            })?
    }
}

struct Rotation<'a> {
    etcd: &'a EtcdClient,
    keys: &'a ClusterKeys,
    retire_after: Duration,
    resume_only: bool,
    forgotten: &'a [String],
}

impl Rotation<'_> {
    async fn run(&self) -> Result<()> {
        let mut said = String::new();
        // Whether this run is in a rotation: once it is, no rotation record means done.
        let mut started = false;
        loop {
            let snapshot = Snapshot::read(self.etcd, self.keys)
                .await
                .context("reading the cluster on etcd")?;
            let cluster = cluster(&snapshot)?;
            let Some(rotation) = &snapshot.rotation else {
                if started {
                    return Ok(());
                }
                if self.resume_only {
                    return Err(anyhow!("--resume: no rotation is in progress"));
                }
                started = self.start(&cluster, &snapshot).await?;
                continue;
            };
            let record = rotation
                .record
                .as_ref()
                .map_err(|e| anyhow!("the rotation's record on etcd does not parse: {e}"))?;
            if !started {
                println!(
                    "resuming the rotation from codepoint {} to {} ({:?})",
                    record.from, record.to, record.phase
                );
                started = true;
            }
            let unreadable: Vec<String> =
                snapshot.unreadable.iter().map(|(n, _)| n.clone()).collect();
            let fleet = FleetView {
                published_at: cluster.mod_revision,
                lbs: &snapshot.lbs,
                members: &snapshot.members,
                unreadable: &unreadable,
                forgotten: self.forgotten,
            };
            let step = next_step(record, &fleet, unix_ms());
            // A write that fails its comparison means someone else wrote first (another
            // rotation, an operator): the loop reads again.
            match &step {
                Step::AwaitLoadBalancers(behind) => {
                    let names: Vec<String> = behind
                        .iter()
                        .map(|(name, revision)| match revision {
                            Some(revision) => format!("{name} (at revision {revision})"),
                            None => format!(
                                "{name} (no record: down or cut off from etcd; --forget-lb \
                                 {name} if it is gone for good)"
                            ),
                        })
                        .collect();
                    let line = format!(
                        "waiting for load balancers to decode codepoint {}: {}",
                        record.to,
                        names.join(", ")
                    );
                    say(&mut said, line);
                }
                Step::Issue => {
                    let next = cluster.record.issuing_under(record.to);
                    if self
                        .write(&cluster, &next, rotation, Some(&record.issuing()))
                        .await?
                    {
                        println!(
                            "every load balancer decodes codepoint {}; servers issue under it \
                             from now on",
                            record.to
                        );
                    }
                    continue;
                }
                Step::AwaitServers(behind) => {
                    let line = format!(
                        "waiting for servers to issue under codepoint {}: {}",
                        record.to,
                        behind.join(", ")
                    );
                    say(&mut said, line);
                }
                Step::StartRetiring => {
                    let retiring = record.retiring(unix_ms(), &snapshot.members);
                    let (left, unbounded) = record.retire_after(&snapshot.members);
                    if self
                        .write(&cluster, &cluster.record, rotation, Some(&retiring))
                        .await?
                    {
                        println!(
                            "every server issues under codepoint {}; codepoint {} retires in {left:?}",
                            record.to, record.from
                        );
                        if !unbounded.is_empty() {
                            println!(
                                "warning: {} publish no max connection age and grace: their \
                                 connections older than that will not be routable",
                                unbounded.join(", ")
                            );
                        }
                        said = countdown(record.from, left);
                    }
                    continue;
                }
                Step::AwaitRetirement(left) => say(&mut said, countdown(record.from, *left)),
                Step::Retire => {
                    let next = cluster.record.without(record.from);
                    if self.write(&cluster, &next, rotation, None).await? {
                        println!(
                            "codepoint {} retired: the fleet uses codepoint {} alone; rotation done",
                            record.from, record.to
                        );
                        return Ok(());
                    }
                    continue;
                }
            }
            let nap = match step {
                Step::AwaitRetirement(left) => left.min(Duration::from_secs(1)),
                _ => POLL,
            };
            tokio::time::sleep(nap).await;
        }
    }

    /// Publishes a new table at the next free codepoint, with a fresh key, and the
    /// rotation's record with it; whether it did (someone else may have written first).
    async fn start(&self, cluster: &Versioned<ClusterRecord>, snapshot: &Snapshot) -> Result<bool> {
        let record = &cluster.record;
        let to = record.next_codepoint().ok_or_else(|| {
            anyhow!("every codepoint (0 to 6) has a table: none is free to rotate to")
        })?;
        let issuing = record
            .quic_lb
            .iter()
            .find(|t| t.config_id == record.issuing)
            .ok_or_else(|| {
                anyhow!(
                    "the cluster's record has no table for codepoint {}",
                    record.issuing
                )
            })?;
        let next = record.with_table(issuing.successor(to, &Key::random()));
        next.configs().context("the new table")?;
        let retire_after_ms = u64::try_from(self.retire_after.as_millis()).unwrap_or(u64::MAX);
        let lbs = snapshot.lbs.iter().map(|lb| lb.name.clone()).collect();
        let rotation = RotationRecord::published(record.issuing, to, retire_after_ms, lbs);
        let txn = Transaction::new()
            .if_at(self.keys.cluster().as_bytes(), cluster.mod_revision)
            .if_at(self.keys.rotation().as_bytes(), 0)
            .put(self.keys.cluster().as_bytes(), &next.to_json())
            .put(self.keys.rotation().as_bytes(), &rotation.to_json());
        let committed = self
            .etcd
            .commit(&txn)
            .await
            .context("publishing the new codepoint")?;
        match committed {
            Some(revision) => println!(
                "published codepoint {to} (a new key, beside codepoint {}) at revision {revision}",
                record.issuing
            ),
            None => println!("the cluster changed meanwhile: reading it again"),
        }
        Ok(committed.is_some())
    }

    /// Writes the cluster's record (checked first) and the rotation's (or deletes it)
    /// together, if neither changed since read; whether it did.
    async fn write(
        &self,
        cluster: &Versioned<ClusterRecord>,
        next: &ClusterRecord,
        rotation: &Versioned<Result<RotationRecord, String>>,
        next_rotation: Option<&RotationRecord>,
    ) -> Result<bool> {
        next.configs()
            .context("the cluster's record this step would write")?;
        let (cluster_key, rotation_key) = (self.keys.cluster(), self.keys.rotation());
        let mut txn = Transaction::new()
            .if_at(cluster_key.as_bytes(), cluster.mod_revision)
            .if_at(rotation_key.as_bytes(), rotation.mod_revision);
        if *next != cluster.record {
            txn = txn.put(cluster_key.as_bytes(), &next.to_json());
        }
        txn = match next_rotation {
            Some(record) => txn.put(rotation_key.as_bytes(), &record.to_json()),
            None => txn.delete(rotation_key.as_bytes()),
        };
        let committed = self
            .etcd
            .commit(&txn)
            .await
            .context("writing the rotation on etcd")?;
        Ok(committed.is_some())
    }
}

/// The cluster's record, which a rotation needs, checked.
fn cluster(snapshot: &Snapshot) -> Result<Versioned<ClusterRecord>> {
    let found = snapshot.cluster.as_ref().ok_or_else(|| {
        anyhow!("the cluster has no record on etcd: `qlb cluster init` writes one")
    })?;
    let record = found.record.as_ref().map_err(|err| anyhow!("{err}"))?;
    record.configs()?;
    Ok(Versioned {
        record: record.clone(),
        mod_revision: found.mod_revision,
    })
}

/// How long codepoint `from` has left, in whole seconds (rounded up).
fn countdown(from: u8, left: Duration) -> String {
    format!("codepoint {from} retires in {}s", left.as_secs_f64().ceil())
}

/// Prints `line` unless it was the last thing said.
fn say(said: &mut String, line: String) {
    if *said != line {
        println!("{line}");
        *said = line;
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
