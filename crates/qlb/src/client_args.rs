//! What `qlb get` and `qlb load` share: the URL they fetch and the TLS trust they use.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use qlb_client::{Target, Trust};

/// `--insecure | --ca PEM`.
#[derive(Args, Debug)]
pub(crate) struct TrustArgs {
    /// Accept any server certificate (self-signed test servers).
    #[arg(long, short = 'k', conflicts_with = "ca")]
    insecure: bool,
    /// Trust the CA certificates in this PEM file [default: the system's web roots are not
    /// bundled, so give one of --ca or --insecure].
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
}

impl TrustArgs {
    /// The trust these flags ask for.
    pub(crate) fn trust(&self) -> Result<Trust> {
        match &self.ca {
            Some(path) => {
                Trust::from_pem_file(path).with_context(|| format!("--ca {}", path.display()))
            }
            None if self.insecure => Ok(Trust::Insecure),
            None => {
                bail!("give --ca PEM (the CA that signed the server's certificate) or --insecure")
            }
        }
    }
}

/// An `https://host[:port]/path` URL, split into what a client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    /// The backend(s): the URL's host and port.
    pub target: String,
    /// The name presented in TLS and in the request's authority.
    pub host: String,
    /// Path and query.
    pub path: http::uri::PathAndQuery,
}

impl std::str::FromStr for Url {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let uri: http::Uri = text
            .parse()
            .with_context(|| format!("URL {text:?}: expected https://host[:port]/path"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(other) => bail!("URL {text:?}: HTTP/3 needs https://, not {other}://"),
            None => bail!("URL {text:?}: expected https://host[:port]/path"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("URL {text:?}: no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(443);
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        Ok(Self {
            target,
            host: host.to_owned(),
            path,
        })
    }
}

impl Url {
    /// The client target for the URL's host and port.
    pub(crate) fn target(&self) -> Result<Target> {
        self.target
            .parse()
            .with_context(|| format!("host {:?}", self.target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let url: Url = "https://127.0.0.1:4433/whoami?x=1".parse().expect("valid");
        assert_eq!(url.target, "127.0.0.1:4433");
        assert_eq!(url.host, "127.0.0.1");
        assert_eq!(url.path.as_str(), "/whoami?x=1");
        let url: Url = "https://localhost".parse().expect("valid");
        assert_eq!(
            (url.target.as_str(), url.path.as_str()),
            ("localhost:443", "/")
        );
        let url: Url = "https://[::1]:8443/".parse().expect("valid");
        assert_eq!(
            (url.target.as_str(), url.host.as_str()),
            ("[::1]:8443", "::1")
        );
    }

    #[test]
    fn refuses_what_is_not_https() {
        for (url, expected) in [
            ("http://localhost/", "needs https"),
            ("localhost:4433/x", "expected https"),
            ("https:///nohost", "URL"),
        ] {
            let err = url.parse::<Url>().expect_err(url).to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}
