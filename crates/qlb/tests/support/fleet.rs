//! A fleet on a real etcd (started here): `qlb lb` instances following cluster `edge`
//! through their `[etcd]` table, and `qlb serve --etcd` backends that join it with server
//! IDs etcd allocates. Admin APIs as [`Spec::checked`] has them; tolerant health checks
//! ([`HealthChecks::TOLERANT`]): members leave through etcd.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use qlb_etcd::{ClusterKeys, EtcdAuth, EtcdClient, EtcdTls, Snapshot};
use qlb_testkit::{ETCD_USER, Etcd, Polled, poll_blocking};
use serde_json::Value;

use super::TestResult;
use super::cluster::{HealthChecks, Spec, config_text, spawn_lb, spawn_serve, write_keys};
use super::http;
use super::process::{Process, run};

/// The cluster's name on etcd.
pub(crate) const CLUSTER: &str = "edge";

/// How long a backend's record outlives a crash (`qlb serve --etcd-ttl`).
pub(crate) const MEMBER_TTL: Duration = Duration::from_secs(3);

/// The running fleet; every process (etcd included) is killed when it is dropped.
pub(crate) struct Fleet {
    pub etcd: Etcd,
    pub lbs: Vec<FleetLb>,
    /// The backends by name.
    pub backends: BTreeMap<String, Process>,
    /// What the backends read (`--config`): the QUIC-LB table and the secret.
    cluster_file: PathBuf,
    /// `qlb serve` and `qlb cluster`'s flags for a secure etcd (TLS and a user).
    access: Vec<String>,
    dir: tempfile::TempDir,
}

/// One `qlb lb` of the fleet.
pub(crate) struct FleetLb {
    pub name: String,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub process: Process,
}

impl Fleet {
    /// Starts etcd and `lbs` load balancers following it (no backends yet).
    pub(crate) fn start(lbs: usize) -> TestResult<Self> {
        Self::start_on(Etcd::start()?, lbs)
    }

    /// [`Fleet::start`] on an etcd with TLS and authentication, which every process of the
    /// fleet reaches with the CA and user [`Etcd::start_secure`] made.
    pub(crate) fn start_secure(lbs: usize) -> TestResult<Self> {
        Self::start_on(Etcd::start_secure()?, lbs)
    }

    fn start_on(etcd: Etcd, lbs: usize) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let password_file = dir.path().join("etcd-password");
        std::fs::write(&password_file, format!("{}\n", ETCD_USER.1))?;
        let (access, lb_access) = match etcd.ca_file() {
            Some(ca) => (
                vec![
                    "--etcd-ca".to_owned(),
                    ca.display().to_string(),
                    "--etcd-user".to_owned(),
                    ETCD_USER.0.to_owned(),
                    "--etcd-password-file".to_owned(),
                    password_file.display().to_string(),
                ],
                format!(
                    "ca_file = \"{}\"\nuser = \"{}\"\npassword_file = \"{}\"\n",
                    ca.display(),
                    ETCD_USER.0,
                    password_file.display()
                ),
            ),
            None => (Vec::new(), String::new()),
        };
        write_keys(dir.path())?;
        let spec = Spec {
            health: Some(HealthChecks::TOLERANT),
            ..Spec::checked()
        };
        let cluster_file = dir.path().join("cluster.toml");
        std::fs::write(&cluster_file, config_text(&spec, &[])?)?;
        let lbs = (1..=lbs)
            .map(|i| {
                let name = format!("lb{i}");
                let config = dir.path().join(format!("{name}.toml"));
                let text = format!(
                    "{}\n[etcd]\nendpoints = [\"{}\"]\ncluster = \"{CLUSTER}\"\nname = \"{name}\"\n\
                     ttl = \"3s\"\n{lb_access}",
                    config_text(&spec, &[])?,
                    etcd.url()
                );
                std::fs::write(&config, text)?;
                let (process, addr, admin) = spawn_lb(&name, &config, true)?;
                Ok(FleetLb {
                    name,
                    addr,
                    admin: admin.ok_or("no admin API")?,
                    process,
                })
            })
            .collect::<TestResult<Vec<_>>>()?;
        Ok(Self {
            etcd,
            lbs,
            backends: BTreeMap::new(),
            cluster_file,
            access,
            dir,
        })
    }

    /// Starts backend `name`, joining the fleet; its HTTP/3 address.
    pub(crate) fn add_backend(&mut self, name: &str) -> TestResult<SocketAddr> {
        self.add_backend_with(name, &[])
    }

    /// [`Fleet::add_backend`] with more `qlb serve` arguments.
    pub(crate) fn add_backend_with(
        &mut self,
        name: &str,
        extra: &[&str],
    ) -> TestResult<SocketAddr> {
        let url = self.etcd.url();
        let ttl = format!("{}s", MEMBER_TTL.as_secs());
        let args = [
            "--etcd",
            url.as_str(),
            "--cluster",
            CLUSTER,
            "--etcd-ttl",
            ttl.as_str(),
            "--server-id-quarantine",
            "1h",
        ];
        let access = self.access.iter().map(String::as_str);
        let args: Vec<&str> = args
            .iter()
            .copied()
            .chain(access)
            .chain(extra.iter().copied())
            .collect();
        let (process, addr, _) = spawn_serve(name, None, "127.0.0.1:0", &self.cluster_file, &args)?;
        self.backends.insert(name.to_owned(), process);
        Ok(addr)
    }

    /// `qlb cluster SUBCOMMAND --etcd URL --cluster edge`, to run.
    pub(crate) fn cluster_command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qlb"));
        command
            .args(["cluster", subcommand, "--etcd", &self.etcd.url()])
            .args(["--cluster", CLUSTER])
            .args(&self.access);
        command
    }

    /// `qlb cluster init` from the backends' cluster file: its table and secret go to etcd.
    pub(crate) fn init_cluster(&self) -> TestResult<String> {
        let output = run(
            "qlb cluster init",
            self.cluster_command("init")
                .arg("--from")
                .arg(&self.cluster_file),
            Duration::from_secs(30),
        )?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!(
                "qlb cluster init: {}: {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(stdout)
    }

    /// Everything etcd holds of the cluster now.
    pub(crate) fn snapshot(&self) -> TestResult<Snapshot> {
        let mut etcd = EtcdClient::builder([self.etcd.url()]);
        if let Some(ca) = self.etcd.ca_file() {
            etcd = etcd
                .tls(EtcdTls::from_pem_files(ca, None)?)
                .auth(EtcdAuth::new(ETCD_USER.0, ETCD_USER.1));
        }
        let etcd = etcd.build()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(Snapshot::read(&etcd, &ClusterKeys::new(CLUSTER)))?)
    }

    /// The temporary directory, for the test's own files.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl FleetLb {
    /// `GET /status`.
    pub(crate) fn status(&self) -> TestResult<Value> {
        http::json(self.admin, "GET", "/status")
    }

    /// The backends' names in `/status`, by effective state.
    pub(crate) fn backends(&self) -> TestResult<BTreeMap<String, String>> {
        Ok(self.status()?["backends"]
            .as_array()
            .ok_or("no backends in /status")?
            .iter()
            .map(|b| {
                let state = match b["health"]["state"].as_str() {
                    Some("up") | None => b["effective_state"].as_str(),
                    Some(health) => Some(health),
                };
                (
                    b["name"].as_str().unwrap_or_default().to_owned(),
                    state.unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// Waits up to `timeout` until `done` holds of `/status`; returns that status.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> TestResult<Value> {
        match poll_blocking(timeout, || self.status(), done)? {
            Polled::Held(status) => Ok(status),
            Polled::TimedOut(status) => Err(format!(
                "{}: not {what} after {timeout:?}: fleet {}, backends {:?}",
                self.name,
                status["fleet"],
                self.backends()?
            )
            .into()),
        }
    }

    /// Waits until exactly `names` are routed to, each up and active.
    pub(crate) fn wait_for_members(&self, names: &[&str], timeout: Duration) -> TestResult<Value> {
        let want: BTreeMap<String, String> = names
            .iter()
            .map(|n| (n.to_string(), "active".to_owned()))
            .collect();
        let described = format!("routing to {names:?}, all up");
        self.wait_for(&described, timeout, |_| {
            self.backends().is_ok_and(|have| have == want)
        })
    }
}
