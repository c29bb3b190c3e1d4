//! `qlb cluster`: the cluster's shared configuration on etcd. `init` puts a cluster file's
//! QUIC-LB tables and secret there, `status` shows the fleet (never a key or the secret),
//! `rotate` moves the fleet to a new QUIC-LB key without losing a connection. Scripts rely
//! on this interface: extend it, do not rename.

mod init;
mod rotate;
mod status;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

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
