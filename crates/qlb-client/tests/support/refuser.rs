//! A real HTTP/3 server (quinn + h3) that resets every request stream with one error code:
//! H3_REQUEST_REJECTED plays a server that refuses work unprocessed, any other code one that
//! failed mid-request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use h3::error::Code;
use qlb_testkit::SelfSigned;

use super::TestResult;

/// The running server; its endpoint closes on drop.
pub(crate) struct Refuser {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    endpoint: quinn::Endpoint,
}

impl Refuser {
    /// Listens on a free loopback port and resets every request with `code`.
    pub(crate) fn start(code: Code) -> TestResult<Self> {
        let endpoint = quinn::Endpoint::server(
            SelfSigned::localhost()?.server_config()?,
            "127.0.0.1:0".parse()?,
        )?;
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        tokio::spawn({
            let (endpoint, requests, connections) =
                (endpoint.clone(), requests.clone(), connections.clone());
            async move {
                while let Some(incoming) = endpoint.accept().await {
                    tokio::spawn(refuse(
                        incoming,
                        code,
                        requests.clone(),
                        connections.clone(),
                    ));
                }
            }
        });
        Ok(Self {
            addr: endpoint.local_addr()?,
            requests,
            connections,
            endpoint,
        })
    }

    /// Connections established so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received (and refused) so far.
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Refuser {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"");
    }
}

async fn refuse(
    incoming: quinn::Incoming,
    code: Code,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
) {
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    let Ok(conn) = connecting.await else {
        return;
    };
    connections.fetch_add(1, Ordering::SeqCst);
    let Ok(mut h3) = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    else {
        return;
    };
    while let Ok(Some(resolver)) = h3.accept().await {
        let Ok((_request, mut stream)) = resolver.resolve_request().await else {
            continue;
        };
        requests.fetch_add(1, Ordering::SeqCst);
        stream.stop_sending(code);
        stream.stop_stream(code);
    }
}
