//! How `qlb serve --etcd` and `qlb cluster` reach etcd: the endpoints and cluster name of
//! `qlb cluster`, and for a secured etcd TLS (`https://` endpoints with the cluster's CA, a
//! client certificate when etcd asks for one) and a user. The password is read from a file,
//! never taken on the command line, where `ps` would show it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use qlb_etcd::{ClusterKeys, EtcdAuth, EtcdClient, EtcdTls};

#[derive(Args, Clone, Debug, Default)]
pub(crate) struct EtcdAccess {
    /// CA certificates (PEM) to check etcd's certificate against: for https:// endpoints.
    #[arg(long, value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// This process's certificate chain (PEM), for an etcd that asks for client
    /// certificates.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_key", "etcd_ca"])]
    etcd_cert: Option<PathBuf>,
    /// The private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// Authenticate to etcd as this user.
    #[arg(long, value_name = "NAME", requires = "etcd_password_file")]
    etcd_user: Option<String>,
    /// The file holding --etcd-user's password (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
}

impl EtcdAccess {
    /// A client of etcd at `endpoints`, as the flags say.
    pub(crate) fn client(&self, endpoints: &[String]) -> Result<EtcdClient> {
        let mut builder = EtcdClient::builder(endpoints);
        if let Some(ca) = &self.etcd_ca {
            let identity = self.etcd_cert.as_deref().zip(self.etcd_key.as_deref());
            builder = builder.tls(EtcdTls::from_pem_files(ca, identity).context("--etcd-ca")?);
        }
        if let (Some(user), Some(file)) = (&self.etcd_user, &self.etcd_password_file) {
            let password = std::fs::read_to_string(file)
                .with_context(|| format!("--etcd-password-file {}", file.display()))?;
            let password = password.trim();
            builder = builder.auth(EtcdAuth::new(user, password));
        }
        builder.build().context("--etcd")
    }
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
    /// The cluster's name.
    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// A client of etcd and the cluster's keys.
    pub(crate) fn open(&self) -> Result<(Arc<EtcdClient>, ClusterKeys)> {
        let etcd = self.access.client(&self.etcd)?;
        let keys = ClusterKeys::checked(&self.cluster).context("--cluster")?;
        Ok((Arc::new(etcd), keys))
    }
}
