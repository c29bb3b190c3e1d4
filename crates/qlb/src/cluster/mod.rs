//! `qlb cluster`: the cluster's shared configuration on etcd. `init` puts a cluster file's
//! QUIC-LB tables and secret there, `status` shows the fleet (never a key or the secret),
//! `rotate` moves the fleet to a new QUIC-LB key without losing a connection. Scripts rely
//! on this interface: extend it, do not rename.

mod init;
mod rotate;
mod status;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use qlb_etcd::{ClusterKeys, EtcdClient};

use crate::etcd_access::EtcdAccess;
use crate::process::{Threads, runtime};

#[derive(Subcommand)]
pub(crate) enum ClusterCommand {
    /// Put a cluster file's [[quic_lb]] tables and cluster secret on etcd, for every load
    /// balancer and server of the cluster (refused if the cluster has them already).
    Init(init::InitArgs),
    /// Show the cluster: codepoints, members and their server IDs, which revision each load
    /// balancer applied, the rotation in progress. No key or secret is printed.
    Status(status::StatusArgs),
    /// Rotate the QUIC-LB key: publish a new codepoint, wait until every load balancer
    /// decodes it, tell the servers to issue under it, retire the old one after the max
    /// connection age. Resumes a rotation that was interrupted.
    Rotate(rotate::RotateArgs),
}

/// Where the cluster is: every `qlb cluster` command takes these.
#[derive(Args)]
pub(crate) struct ClusterAt {
    /// etcd's client URLs (`http://HOST:PORT` or `https://HOST:PORT`, comma-separated).
    #[arg(long, value_name = "URL", value_delimiter = ',', required = true)]
    etcd: Vec<String>,
    /// The cluster's name on etcd (keys under `/qlb/NAME/`).
    #[arg(long, value_name = "NAME")]
    cluster: String,
    #[command(flatten)]
    access: EtcdAccess,
}

impl ClusterAt {
    /// A client of etcd and the cluster's keys.
    fn open(&self) -> Result<(Arc<EtcdClient>, ClusterKeys)> {
        let etcd = self.access.client(&self.etcd)?;
        let keys = ClusterKeys::checked(&self.cluster).context("--cluster")?;
        Ok((Arc::new(etcd), keys))
    }
}

impl ClusterCommand {
    pub(crate) fn run(self) -> Result<ExitCode> {
        crate::process::init_logging("warn");
        let runtime = runtime(Threads::One)?;
        runtime.block_on(async {
            match self {
                Self::Init(args) => args.run().await,
                Self::Status(args) => args.run().await,
                Self::Rotate(args) => args.run().await,
            }
        })?;
        Ok(ExitCode::SUCCESS)
    }
}
