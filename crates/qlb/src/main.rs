//! `qlb`: QUIC-LB tooling, and (as the project grows) the load balancer, the HTTP/3 server
//! and client, and the demo that runs them together.

mod cid;
mod client_args;
mod cluster;
mod demo;
mod durations;
mod etcd_access;
mod get;
mod lb;
mod load;
mod process;
mod serve;
mod traffic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keep QUIC connections alive behind load balancers.
#[derive(Parser)]
#[command(name = "qlb", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// QUIC-LB connection IDs: encode, decode, generate a configuration.
    #[command(subcommand)]
    Cid(cid::CidCommand),
    /// The cluster's QUIC-LB tables and secret on etcd: init, status, key rotation.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Run an HTTP/3 backend with QUIC-LB connection IDs and a graceful shutdown.
    Serve(Box<serve::ServeArgs>),
    /// Run the QUIC load balancer (`--config FILE`), or validate a file (`--check-config FILE`).
    Lb(lb::LbArgs),
    /// Fetch one HTTP/3 URL: the body to stdout (`-v`: the heads to stderr).
    Get(get::GetArgs),
    /// Run it all on loopback: a load balancer, three backends, clients; migrations, a
    /// backend restart and a key rotation under load; then a report.
    Demo(demo::DemoArgs),
    /// Load-test an HTTP/3 URL with the balancing client: progress, then a summary.
    Load(load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cid(command) => command.run(),
        Command::Cluster(command) => command.run(),
        Command::Serve(args) => args.run(),
        Command::Lb(args) => args.run(),
        Command::Get(args) => args.run(),
        Command::Load(args) => args.run(),
        Command::Demo(args) => args.run(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("qlb: {err:#}");
            ExitCode::FAILURE
        }
    }
}
