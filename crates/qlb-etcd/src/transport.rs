//! How requests reach etcd: its endpoints (`http://` or `https://`), TLS with the cluster's
//! CA and, for client-certificate authentication, a certificate of our own, and one HTTP/1.1
//! POST per connection.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::task::JoinHandle;

use crate::error::EtcdError;

/// What [`send`] fails with: anything of TCP, TLS, HTTP or the body, as text in the end.
pub(crate) type SendError = Box<dyn std::error::Error + Send + Sync>;

/// One etcd client URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host:port`, as the `Host` field and for messages.
    pub(crate) authority: String,
    /// The host, as the TLS server name.
    host: String,
    /// `https://`.
    tls: bool,
}

impl Endpoint {
    /// `http://host:port[/]` or `https://host:port[/]`.
    pub(crate) fn parse(url: &str) -> Result<Self, EtcdError> {
        let refused = || EtcdError::Endpoint(url.to_owned());
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(refused()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(refused)?;
        if host.is_empty() || port.parse::<u16>().is_err() || rest.contains('/') {
            return Err(refused());
        }
        Ok(Self {
            authority: rest.to_owned(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            tls,
        })
    }

    /// Whether it is an `https://` URL.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }
}

/// TLS to etcd: the CAs its certificates are checked against and, when etcd asks for client
/// certificates (`--client-cert-auth`), ours. Built from PEM files.
///
/// ```no_run
/// let tls = qlb_etcd::EtcdTls::from_pem_files("/etc/etcd/ca.pem", None)?;
/// let etcd = qlb_etcd::EtcdClient::builder(["https://etcd-0:2379"]).tls(tls).build()?;
/// # Ok::<(), qlb_etcd::EtcdError>(())
/// ```
#[derive(Clone)]
pub struct EtcdTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdTls(..)")
    }
}

impl EtcdTls {
    /// Trusts the CA certificates in `ca` (PEM) and, with `identity` (a certificate chain
    /// and its private key, PEM), presents it to etcd.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, EtcdError> {
        let ca = ca.as_ref();
        let unreadable = |path: &Path| {
            let path = path.display().to_string();
            move |e: rustls::pki_types::pem::Error| EtcdError::Tls(format!("{path}: {e}"))
        };
        let mut roots = rustls::RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(unreadable(ca))?;
        if cas.is_empty() {
            return Err(EtcdError::Tls(format!("{}: no certificate", ca.display())));
        }
        for cert in cas {
            roots
                .add(cert)
                .map_err(|e| EtcdError::Tls(format!("{}: {e}", ca.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EtcdError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(unreadable(cert))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(unreadable(key))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| EtcdError::Tls(format!("{}: {e}", cert.display())))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Sends one POST of `body` to `path` at `endpoint` on a fresh connection (TLS when the
/// endpoint is `https://`), with `token` as etcd's `Authorization`; the answer's head, and
/// the task driving the connection (abort it when done with the body).
pub(crate) async fn send(
    endpoint: &Endpoint,
    tls: Option<&EtcdTls>,
    token: Option<&str>,
    path: &'static str,
    body: Bytes,
) -> Result<(http::Response<Incoming>, JoinHandle<()>), SendError> {
    let stream = tokio::net::TcpStream::connect(&endpoint.authority).await?;
    let (mut sender, driver) = match (endpoint.tls, tls) {
        (false, _) => handshake(stream).await?,
        (true, None) => {
            return Err(
                format!("{}: https without a CA (TLS settings)", endpoint.authority).into(),
            );
        }
        (true, Some(tls)) => {
            let name = ServerName::try_from(endpoint.host.clone())?;
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            handshake(connector.connect(name, stream).await?).await?
        }
    };
    let mut request = http::Request::post(path)
        .header(http::header::HOST, &endpoint.authority)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, token);
    }
    match sender.send_request(request.body(Full::new(body))?).await {
        Ok(response) => Ok((response, driver)),
        Err(error) => {
            driver.abort();
            Err(error.into())
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// HTTP/1.1 over `io`, its connection driven by a task.
async fn handshake<T>(io: T) -> Result<(Sender, JoinHandle<()>), SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, driver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_or_https_urls() -> Result<(), EtcdError> {
        let plain = Endpoint::parse("http://127.0.0.1:2379")?;
        assert_eq!(
            (plain.authority.as_str(), plain.is_tls()),
            ("127.0.0.1:2379", false)
        );
        let secure = Endpoint::parse("https://etcd-0:2379/")?;
        assert_eq!(
            (secure.authority.as_str(), secure.host.as_str()),
            ("etcd-0:2379", "etcd-0")
        );
        assert!(secure.is_tls());
        assert_eq!(Endpoint::parse("https://[::1]:2379")?.host, "::1");
        for bad in [
            "etcd:2379",
            "ftp://etcd:2379",
            "http://etcd",
            "http://:2379",
            "http://e:1/v3",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn unreadable_pem_files_are_named() {
        let err = EtcdTls::from_pem_files("/nonexistent/ca.pem", None).expect_err("no file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
