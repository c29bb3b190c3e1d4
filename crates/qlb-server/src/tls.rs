//! The server's TLS identity (certificate chain and key) and its QUIC TLS configuration:
//! TLS 1.3 on ring, ALPN `h3`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::TlsError;

/// The ALPN protocol of HTTP/3 (RFC 9114 section 3.1).
pub const ALPN_H3: &[u8] = b"h3";

/// Session tickets sent after each full handshake (rustls's default): a client may open
/// two connections from one handshake's tickets.
const TICKETS_PER_HANDSHAKE: usize = 2;

/// How a server issues TLS 1.3 session tickets: stateless, sealed by `ticketer` (with the
/// cluster's keys every server of the cluster resumes them), and with early data (0-RTT)
/// accepted or not. rustls accepts early data with stateful tickets only; the workspace builds
/// it with that check lifted (`vendor/README.md`), because a fleet's tickets must open on every
/// backend, and replay is bounded instead by serving only requests safe to replay early.
pub(crate) struct Tickets {
    pub(crate) ticketer: Arc<dyn rustls::server::ProducesTickets>,
    pub(crate) early_data: bool,
}

/// A certificate chain and its private key. `Debug` shows the chain length, never the key.
///
/// ```
/// use qlb_server::Identity;
///
/// let identity = Identity::self_signed(&["localhost"])?;
/// assert_eq!(identity.certificate_chain().len(), 1);
/// assert_eq!(format!("{identity:?}"), "Identity { certificates: 1, key: .. }");
/// # Ok::<(), qlb_server::TlsError>(())
/// ```
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// An identity from DER values.
    ///
    /// ```
    /// use qlb_server::Identity;
    ///
    /// let generated = Identity::self_signed(&["example.test"])?;
    /// let copy = Identity::new(generated.certificate_chain().to_vec(), generated.private_key());
    /// assert_eq!(copy.certificate_chain(), generated.certificate_chain());
    /// # Ok::<(), qlb_server::TlsError>(())
    /// ```
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self { chain, key }
    }

    /// A fresh self-signed certificate for `names` (DNS names or IP addresses).
    ///
    /// ```
    /// let identity = qlb_server::Identity::self_signed(&["localhost", "127.0.0.1"])?;
    /// # Ok::<(), qlb_server::TlsError>(())
    /// ```
    pub fn self_signed(names: &[&str]) -> Result<Self, TlsError> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|err| TlsError::SelfSigned(err.into()))?;
        Ok(Self {
            chain: vec![certified.cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()).into(),
        })
    }

    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// ```
    /// let err = qlb_server::Identity::from_pem_files("/nonexistent.pem", "/nonexistent.key")
    ///     .err()
    ///     .unwrap();
    /// assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
    /// ```
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let pem_error = |path: &Path| {
            let path = path.display().to_string();
            move |source: rustls::pki_types::pem::Error| TlsError::Pem {
                path,
                source: source.into(),
            }
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(pem_error(cert))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(cert.display().to_string()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
        Ok(Self { chain, key })
    }

    /// The certificate chain, leaf first (clients of a self-signed server trust its leaf).
    ///
    /// ```
    /// let identity = qlb_server::Identity::self_signed(&["localhost"])?;
    /// assert!(!identity.certificate_chain()[0].is_empty());
    /// # Ok::<(), qlb_server::TlsError>(())
    /// ```
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A copy of the private key.
    ///
    /// ```
    /// let identity = qlb_server::Identity::self_signed(&["localhost"])?;
    /// assert!(matches!(identity.private_key(), rustls::pki_types::PrivateKeyDer::Pkcs8(_)));
    /// # Ok::<(), qlb_server::TlsError>(())
    /// ```
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The QUIC server TLS configuration: TLS 1.3 only, ring, ALPN `h3`, session tickets
    /// as `tickets` says.
    pub(crate) fn quic_server_config(
        &self,
        tickets: Tickets,
    ) -> Result<QuicServerConfig, TlsError> {
        QuicServerConfig::try_from(self.rustls_server_config(tickets)?)
            .map_err(|_| TlsError::NoQuicCipherSuite)
    }

    /// The rustls configuration of [`quic_server_config`](Self::quic_server_config).
    fn rustls_server_config(&self, tickets: Tickets) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let refused = |err: rustls::Error| TlsError::Rustls(err.into());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(refused)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(refused)?;
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        tls.send_tls13_tickets = TICKETS_PER_HANDSHAKE;
        tls.ticketer = tickets.ticketer;
        if tickets.early_data {
            // QUIC allows only 0 (no early data) and 0xffffffff (RFC 9001 section 4.6.1).
            tls.max_early_data_size = u32::MAX;
        }
        Ok(tls)
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self::new(self.chain.clone(), self.key.clone_key())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity {{ certificates: {}, key: .. }}",
            self.chain.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rustls::pki_types::ServerName;

    use super::*;

    /// One certificate for every server of the in-memory tests (tickets do not depend on
    /// it), which their client trusts.
    fn identity() -> &'static Identity {
        static IDENTITY: OnceLock<Identity> = OnceLock::new();
        IDENTITY.get_or_init(|| Identity::self_signed(&["localhost"]).expect("rcgen"))
    }

    #[test]
    fn self_signed_identity_makes_a_quic_config() {
        let identity = Identity::self_signed(&["localhost"]).expect("rcgen");
        assert!(identity.quic_server_config(cluster_tickets()).is_ok());
        let early = Tickets {
            early_data: true,
            ..cluster_tickets()
        };
        assert!(identity.quic_server_config(early).is_ok());
    }

    fn cluster_tickets() -> Tickets {
        Tickets {
            ticketer: Arc::new(crate::tickets::Ticketer::random(
                crate::tickets::DEFAULT_PERIOD,
            )),
            early_data: false,
        }
    }

    #[test]
    fn pem_files_round_trip_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("qlb-server-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, certified.cert.pem()).expect("write");
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write");

        let identity = Identity::from_pem_files(&cert_path, &key_path).expect("valid PEM");
        assert_eq!(identity.certificate_chain()[0], *certified.cert.der());
        assert!(identity.quic_server_config(cluster_tickets()).is_ok());

        // The key file holds no certificate, the certificate file no key.
        let err = Identity::from_pem_files(&key_path, &key_path).expect_err("no cert");
        assert!(err.to_string().contains("key.pem"), "{err}");
        let err = Identity::from_pem_files(&cert_path, &cert_path).expect_err("no key");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A TLS client (over memory, not QUIC) that remembers sessions, sends early data when it
    /// may, and trusts the tests' [`identity`].
    fn resuming_client() -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(identity().certificate_chain()[0].clone())
            .expect("a CA certificate");
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_H3.to_vec()];
        config.resumption = rustls::client::Resumption::in_memory_sessions(16);
        config.enable_early_data = true;
        Arc::new(config)
    }

    /// How a handshake went: resumed or not, and what the server read as early data.
    #[derive(PartialEq, Debug)]
    struct Outcome {
        kind: rustls::HandshakeKind,
        early: Vec<u8>,
    }

    /// Runs one handshake of `client` with `server` in memory, the client writing `EARLY` as
    /// early data if its session allows, then lets the client read the server's tickets.
    fn handshake(
        client: &Arc<rustls::ClientConfig>,
        server: &Arc<rustls::ServerConfig>,
    ) -> Outcome {
        use std::io::{Read, Write};
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(client.clone(), name).expect("client");
        let mut server = rustls::ServerConnection::new(server.clone()).expect("server");
        if let Some(mut early) = client.early_data() {
            early.write_all(EARLY).expect("early data fits");
        }
        let mut early = Vec::new();
        for _ in 0..10 {
            let mut octets = Vec::new();
            client.write_tls(&mut octets).expect("client writes");
            server.read_tls(&mut &octets[..]).expect("server reads");
            server.process_new_packets().expect("server processes");
            if let Some(mut data) = server.early_data() {
                data.read_to_end(&mut early).expect("early data");
            }
            octets.clear();
            server.write_tls(&mut octets).expect("server writes");
            client.read_tls(&mut &octets[..]).expect("client reads");
            client.process_new_packets().expect("client processes");
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(client.is_early_data_accepted(), !early.is_empty());
        Outcome {
            kind: client.handshake_kind().expect("handshake done"),
            early,
        }
    }

    const EARLY: &[u8] = b"GET / early";

    fn server(tickets: Tickets) -> Arc<rustls::ServerConfig> {
        Arc::new(identity().rustls_server_config(tickets).expect("config"))
    }

    fn cluster(secret: &[u8], early_data: bool) -> Tickets {
        Tickets {
            ticketer: Arc::new(crate::tickets::Ticketer::from_cluster_secret(
                secret,
                crate::tickets::DEFAULT_PERIOD,
            )),
            early_data,
        }
    }

    fn full() -> Outcome {
        Outcome {
            kind: rustls::HandshakeKind::Full,
            early: Vec::new(),
        }
    }

    fn resumed(early: &[u8]) -> Outcome {
        Outcome {
            kind: rustls::HandshakeKind::Resumed,
            early: early.to_vec(),
        }
    }

    #[test]
    fn cluster_tickets_resume_on_every_server_of_the_cluster_only() {
        let client = resuming_client();
        let (a, b) = (
            server(cluster(b"cluster", false)),
            server(cluster(b"cluster", false)),
        );
        assert_eq!(handshake(&client, &a), full());
        // Another server, same cluster secret: resumed, no early data.
        assert_eq!(handshake(&client, &b), resumed(b""));
        // Stateless tickets resume any number of times.
        assert_eq!(handshake(&client, &a), resumed(b""));

        let other = resuming_client();
        assert_eq!(handshake(&other, &a), full());
        assert_eq!(
            handshake(&other, &server(cluster(b"another", false))),
            full()
        );
    }

    #[test]
    fn early_data_is_read_on_another_server_of_the_cluster() {
        let client = resuming_client();
        let (a, b) = (
            server(cluster(b"cluster", true)),
            server(cluster(b"cluster", true)),
        );
        assert_eq!(handshake(&client, &a), full());
        assert_eq!(handshake(&client, &b), resumed(EARLY), "0-RTT on b");
        // A server with 0-RTT off resumes the ticket but reads no early data (rustls rejects
        // it; the client sends it again after the handshake).
        let off = server(cluster(b"cluster", false));
        assert_eq!(handshake(&client, &off), resumed(b""));
        // A ticket of another cluster: a full handshake, the early data rejected.
        assert_eq!(
            handshake(&client, &server(cluster(b"another", true))),
            full()
        );
    }

    #[test]
    fn early_data_is_offered_when_on_only() {
        for (early_data, offered) in [(true, u32::MAX), (false, 0)] {
            let tls = server(cluster(b"s", early_data));
            assert_eq!(tls.max_early_data_size, offered);
        }
    }
}
