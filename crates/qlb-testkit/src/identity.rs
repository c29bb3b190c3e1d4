//! A self-signed TLS identity for `localhost`, with the quinn configurations a test server
//! and a test client that trusts it need (TLS 1.3, ALPN `h3`).

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::TestResult;
use crate::h3_client::transport;

/// HTTP/3's ALPN protocol name.
const ALPN_H3: &[u8] = b"h3";

/// A fresh self-signed certificate for `localhost` and its private key.
///
/// ```
/// use std::time::Duration;
/// use qlb_testkit::SelfSigned;
///
/// let identity = SelfSigned::localhost()?;
/// let _server = identity.server_config()?;
/// let _client = identity.client_config(Duration::from_secs(10))?;
/// # Ok::<(), qlb_testkit::BoxError>(())
/// ```
pub struct SelfSigned {
    certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    certificate_pem: String,
    private_key_pem: String,
    /// The SubjectPublicKeyInfo (DER), which browsers pin by hash.
    spki: Vec<u8>,
}

impl SelfSigned {
    /// Generates a certificate for `localhost`.
    pub fn localhost() -> TestResult<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&certified.signing_key);
        Ok(Self {
            spki,
            certificate: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
            certificate_pem: certified.cert.pem(),
            private_key_pem: certified.signing_key.serialize_pem(),
        })
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The private key (PKCS #8 DER).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The certificate in PEM, for peers that read files (ngtcp2's servers).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The private key in PEM.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// The base64 SHA-256 of the certificate's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust it.
    pub fn spki_sha256_base64(&self) -> String {
        use base64::Engine as _;
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.spki);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }

    /// Writes the certificate and the key as `cert.pem` and `key.pem` into `dir` (for
    /// `qlb serve --cert --key`); returns their paths.
    pub fn write_pem(
        &self,
        dir: &std::path::Path,
    ) -> TestResult<(std::path::PathBuf, std::path::PathBuf)> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.certificate_pem)?;
        std::fs::write(&key, &self.private_key_pem)?;
        Ok((cert, key))
    }

    /// A quinn server configuration presenting this identity.
    pub fn server_config(&self) -> TestResult<quinn::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![self.certificate.clone()], self.private_key())?;
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        let crypto = QuicServerConfig::try_from(tls)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// A quinn client configuration trusting only this certificate, with QUIC idle timeout
    /// `idle`.
    pub fn client_config(&self, idle: Duration) -> TestResult<quinn::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.certificate.clone())?;
        trusting(roots, idle)
    }

    /// [`SelfSigned::client_config`] for a certificate given on its own.
    pub fn client_config_for(
        certificate: &CertificateDer<'static>,
        idle: Duration,
    ) -> TestResult<quinn::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate.clone())?;
        trusting(roots, idle)
    }
}

fn trusting(roots: rustls::RootCertStore, idle: Duration) -> TestResult<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport(idle, None)?);
    Ok(config)
}
