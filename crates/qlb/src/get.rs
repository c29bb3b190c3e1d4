//! `qlb get URL`: one HTTP/3 request, curl-like: the response body to stdout as it arrives;
//! with `-v`, the connection and both heads to stderr. Exit 0 for a 1xx-3xx answer, 22 for
//! an HTTP error status (as `curl --fail`), 1 when no answer came.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use http_body_util::BodyExt;
use qlb_client::{Connection, Trust};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use crate::client_args::{TrustArgs, Url};
use crate::durations::up_to_a_day;
use crate::process::{Threads, runtime};

/// The exit code for an HTTP error status, as `curl --fail`.
const HTTP_ERROR_EXIT: u8 = 22;

#[derive(Args)]
pub(crate) struct GetArgs {
    /// The https:// URL to fetch.
    url: Url,
    #[command(flatten)]
    trust: TrustArgs,
    /// Show the connection and the request and response heads on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// Give up when the whole exchange takes longer.
    #[arg(long, value_parser = up_to_a_day, default_value = "30s")]
    timeout: Duration,
}

impl GetArgs {
    pub(crate) fn run(self) -> Result<ExitCode> {
        let runtime = runtime(Threads::One)?;
        let url = format!("https://{}{}", self.url.target, self.url.path);
        runtime
            .block_on(self.fetch(&url))
            .with_context(|| format!("GET {url}"))
    }

    async fn fetch(self, url: &str) -> Result<ExitCode> {
        let deadline = Instant::now() + self.timeout;
        let late = || anyhow!("no complete answer within {:?} (--timeout)", self.timeout);
        let trust = self.trust.trust()?;
        let host = &self.url.host;
        let addrs: Vec<SocketAddr> =
            timeout_at(deadline, tokio::net::lookup_host(&self.url.target))
                .await
                .map_err(|_| late())?
                .with_context(|| format!("resolving {host}"))?
                .collect();
        let connection = timeout_at(deadline, first_connection(&addrs, host, &trust))
            .await
            .map_err(|_| late())??;
        let request = http::Request::get(url)
            .header(
                http::header::USER_AGENT,
                concat!("qlb/", env!("CARGO_PKG_VERSION")),
            )
            .body(String::new())?;
        if self.verbose {
            eprintln!(
                "* connected to {} from {}",
                connection.remote_addr(),
                connection.local_addr()?
            );
            eprintln!("> {} {} HTTP/3", request.method(), self.url.path);
            eprintln!("> host: {}", self.url.target);
            print_headers('>', request.headers());
            eprintln!(">");
        }

        let response = timeout_at(deadline, connection.send(request))
            .await
            .map_err(|_| late())??;
        let status = response.status();
        if self.verbose {
            eprintln!("< HTTP/3 {status}");
            print_headers('<', response.headers());
            eprintln!("<");
        }
        let mut body = response.into_body();
        let mut stdout = std::io::stdout().lock();
        while let Some(frame) = timeout_at(deadline, body.frame())
            .await
            .map_err(|_| late())?
        {
            if let Ok(data) = frame?.into_data() {
                stdout.write_all(&data).context("writing to stdout")?;
            }
        }
        stdout.flush().context("writing to stdout")?;
        if status.is_client_error() || status.is_server_error() {
            eprintln!("qlb: GET {url}: the server answered {status}");
            return Ok(ExitCode::from(HTTP_ERROR_EXIT));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Connects to every address at once and keeps the first connection that comes up (a name
/// such as localhost may resolve to addresses the server does not listen on).
async fn first_connection(
    addrs: &[SocketAddr],
    server_name: &str,
    trust: &Trust,
) -> Result<Connection> {
    let mut attempts = JoinSet::new();
    for &addr in addrs {
        let (server_name, trust) = (server_name.to_owned(), trust.clone());
        attempts.spawn(async move {
            Connection::connect(addr, &server_name, &trust)
                .await
                .with_context(|| format!("connecting to {addr}"))
        });
    }
    let mut last_error = anyhow!("no address to connect to");
    while let Some(attempt) = attempts.join_next().await {
        match attempt.context("a connection attempt failed")? {
            Ok(connection) => return Ok(connection),
            Err(err) => last_error = err,
        }
    }
    Err(last_error)
}

fn print_headers(direction: char, headers: &http::HeaderMap) {
    for (name, value) in headers {
        eprintln!(
            "{direction} {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
}
