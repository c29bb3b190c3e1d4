//! `qlb cluster init`: a cluster file's tables and secret onto etcd, once.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use qlb_etcd::ClusterRecord;
use qlb_lb::config::ClusterConfig;

use crate::etcd_access::ClusterAt;

#[derive(Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    at: ClusterAt,
    /// The cluster file: its [[quic_lb]] tables and cluster secret (a load balancer's
    /// whole file does too: its own sections are ignored).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The codepoint the servers issue under [default: the file's first table].
    #[arg(long)]
    issuing: Option<u8>,
}

impl InitArgs {
    pub(super) async fn run(self) -> Result<()> {
        let cluster = ClusterConfig::load(&self.from)
            .with_context(|| format!("reading {}", self.from.display()))?;
        let issuing = match self.issuing {
            Some(id) => id,
            None => cluster
                .quic_lb
                .first()
                .map(|config| config.id().get())
                .ok_or_else(|| anyhow!("{}: no [[quic_lb]] table", self.from.display()))?,
        };
        let record = ClusterRecord::new(
            &cluster.quic_lb,
            issuing,
            cluster.cluster_secret.as_ref().map(|s| s.as_bytes()),
        );
        record.configs().context("--issuing")?;
        let (etcd, keys) = self.at.open()?;
        let created = etcd
            .create(keys.cluster().as_bytes(), &record.to_json(), None)
            .await
            .context("writing the cluster's record on etcd")?;
        if !created {
            return Err(anyhow!(
                "cluster `{}` has its record on etcd already: `qlb cluster status` shows it, \
                 `qlb cluster rotate` changes its key",
                self.at.cluster()
            ));
        }
        println!(
            "cluster `{}` on etcd: codepoints {:?}, servers issue under {issuing}; cluster \
             secret {}",
            self.at.cluster(),
            record.codepoints(),
            if record.cluster_secret.is_some() {
                "set"
            } else {
                "not set"
            }
        );
        Ok(())
    }
}
