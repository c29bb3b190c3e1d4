//! Which servers to trust, as a quinn client configuration speaking HTTP/3.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;

/// The ALPN protocol identifier of HTTP/3 (RFC 9114 section 3.1).
pub const ALPN_H3: &[u8] = b"h3";

/// Session tickets a client keeps (rustls keeps a few per server name, the oldest names go
/// first).
const SESSIONS_KEPT: usize = 256;

/// Why a client TLS configuration could not be built.
///
/// ```
/// use qlb_client::{TlsError, Trust};
///
/// let err = Trust::from_pem_file("/nonexistent/ca.pem".as_ref()).unwrap_err();
/// assert!(matches!(err, TlsError::Pem { .. }));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {problem}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// rustls refused the configuration; the source is rustls's reason.
    #[error("TLS: {0}")]
    Rustls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// QUIC refused the rustls configuration (no TLS 1.3 suite, say).
    #[error("QUIC TLS: {0}")]
    Quic(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Which server certificates a client accepts.
///
/// ```
/// use qlb_client::Trust;
///
/// let config = Trust::Insecure.client_config()?;
/// # Ok::<(), qlb_client::TlsError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Trust {
    /// Any certificate: for health checks of backends with self-signed certificates, and
    /// `qlb get --insecure`. Handshake signatures are still verified.
    Insecure,
    /// Certificates that chain to these roots.
    Roots(Vec<CertificateDer<'static>>),
}

impl Trust {
    /// Roots read from a PEM file.
    ///
    /// ```no_run
    /// let trust = qlb_client::Trust::from_pem_file("ca.pem".as_ref())?;
    /// # Ok::<(), qlb_client::TlsError>(())
    /// ```
    pub fn from_pem_file(path: &Path) -> Result<Self, TlsError> {
        let pem_error = |problem: String| TlsError::Pem {
            path: path.display().to_string(),
            problem,
        };
        let roots = CertificateDer::pem_file_iter(path)
            .map_err(|e| pem_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(e.to_string()))?;
        if roots.is_empty() {
            return Err(pem_error("no certificate in it".to_owned()));
        }
        Ok(Self::Roots(roots))
    }

    /// A quinn client configuration with this trust, TLS 1.3 and ALPN `h3`.
    ///
    /// ```
    /// let config = qlb_client::Trust::Insecure.client_config()?;
    /// # Ok::<(), qlb_client::TlsError>(())
    /// ```
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        self.quic_config(self.rustls_config()?)
    }

    /// A configuration like [`client_config`](Self::client_config) that remembers up to
    /// [`SESSIONS_KEPT`] session tickets (one store for every connection made with it) and
    /// resumes with them, sending 0-RTT early data if `zero_rtt`.
    pub(crate) fn resuming_client_config(
        &self,
        zero_rtt: bool,
    ) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls = self.rustls_config()?;
        tls.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS_KEPT);
        tls.enable_early_data = zero_rtt;
        self.quic_config(tls)
    }

    fn quic_config(&self, tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|err| TlsError::Quic(Box::new(err)))?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(refused)?;
        let mut tls = match self {
            Self::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            Self::Roots(roots) => {
                let mut store = RootCertStore::empty();
                for root in roots {
                    store.add(root.clone()).map_err(refused)?;
                }
                builder.with_root_certificates(store).with_no_client_auth()
            }
        };
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        Ok(tls)
    }
}

/// A rustls refusal as a [`TlsError`].
fn refused(err: rustls::Error) -> TlsError {
    TlsError::Rustls(Box::new(err))
}

/// Accepts any certificate chain, but checks that the handshake was signed by its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
