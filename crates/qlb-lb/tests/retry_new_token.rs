//! Retry offload and the backends' NEW_TOKEN tokens, through a real data plane: a quinn
//! server under the cluster's token key sends its clients NEW_TOKEN frames, and a client that
//! presents one in a later connection's first Initial is answered with a Retry (the backend
//! could not have checked that token against the address it sees, so it proves nothing) when
//! Retries are on, and forwarded for the backend to judge when they are not; both are counted.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use qlb_lb::dataplane::{Dataplane, DataplaneOptions, RetryCounts, RetryOffload, RetryTrigger};
use qlb_retry::{TokenKey, TokenKeys};
use qlb_router::{Backend, Pool};
use qlb_testkit::fixtures::{self, CLUSTER_SECRET};
use qlb_testkit::{SelfSigned, TestResult, eventually, init_tracing, within};

const WAIT: Duration = Duration::from_secs(20);

/// The client's token store, counting what the server gave and what the client presented.
#[derive(Default)]
struct CountingStore {
    inner: quinn::TokenMemoryCache,
    received: AtomicUsize,
    presented: AtomicUsize,
}

impl quinn::TokenStore for CountingStore {
    fn insert(&self, server_name: &str, token: Bytes) {
        self.received.fetch_add(1, Ordering::SeqCst);
        self.inner.insert(server_name, token);
    }

    fn take(&self, server_name: &str) -> Option<Bytes> {
        let token = self.inner.take(server_name);
        if token.is_some() {
            self.presented.fetch_add(1, Ordering::SeqCst);
        }
        token
    }
}

/// A quinn server that accepts every connection, with the cluster's token key, sending one
/// NEW_TOKEN token per validated connection.
fn server(identity: &SelfSigned) -> TestResult<quinn::Endpoint> {
    let mut config = identity.server_config()?;
    config.token_key(Arc::new(
        TokenKey::from_cluster_secret(CLUSTER_SECRET).prk().clone(),
    ));
    let mut tokens = quinn::ValidationTokenConfig::default();
    tokens.sent(1);
    config.validation_token_config(tokens);
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                if let Ok(connection) = incoming.await {
                    connection.closed().await;
                }
            });
        }
    });
    Ok(endpoint)
}

/// A data plane in front of `backend` with Retry offload under the cluster's token key.
fn lb(backend: SocketAddr, trigger: RetryTrigger) -> TestResult<Dataplane> {
    // Retry SCIDs are QUIC-LB CIDs of the backend under codepoint 1.
    let config_id = fixtures::config(1).id();
    let backend = Backend::new("b1", backend).with_server_id(config_id, "0a0b".parse()?);
    let pool = Pool::new(fixtures::decoder(&[1]), [backend])?;
    let options = DataplaneOptions {
        retry: Some(RetryOffload {
            trigger,
            keys: Arc::new(TokenKeys::new(
                TokenKey::from_cluster_secret(CLUSTER_SECRET),
                None,
                10,
            )),
            config_id,
        }),
        ..DataplaneOptions::default()
    };
    Ok(Dataplane::start(
        &["127.0.0.1:0".parse()?],
        NonZeroUsize::MIN,
        Arc::new(pool),
        options,
    )?)
}

/// Connects twice through `lb` from one client endpoint: the first connection receives a
/// NEW_TOKEN token, the second presents it. Returns the Retry counters after each.
async fn two_connections(
    lb: &Dataplane,
    identity: &SelfSigned,
) -> TestResult<(RetryCounts, RetryCounts)> {
    let store = Arc::new(CountingStore::default());
    let mut config = identity.client_config(WAIT)?;
    config.token_store(Arc::clone(&store) as Arc<dyn quinn::TokenStore>);
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(config);
    let target = lb.local_addrs()[0];

    let first = within(
        WAIT,
        "the first handshake",
        client.connect(target, "localhost")?,
    )
    .await??;
    eventually(WAIT, "a NEW_TOKEN token arrives", || {
        store.received.load(Ordering::SeqCst) > 0
    })
    .await?;
    first.close(0u32.into(), b"done");
    let after_first = lb.stats().retry;

    let second = within(
        WAIT,
        "the second handshake",
        client.connect(target, "localhost")?,
    )
    .await??;
    assert_eq!(
        store.presented.load(Ordering::SeqCst),
        1,
        "the token was presented"
    );
    second.close(0u32.into(), b"done");
    client.wait_idle().await;
    Ok((after_first, lb.stats().retry))
}

#[tokio::test]
async fn a_new_token_token_is_answered_with_a_retry_while_retries_are_on() -> TestResult {
    init_tracing();
    let identity = SelfSigned::localhost()?;
    let backend = server(&identity)?;
    let lb = lb(backend.local_addr()?, RetryTrigger::Always)?;
    let (first, second) = two_connections(&lb, &identity).await?;
    assert_eq!((first.sent, first.tokens_new_token), (1, 0), "{first:?}");
    // The second connection's NEW_TOKEN token got a Retry, whose token then validated.
    // (Every Initial of a handshake repeats its token: one or more per connection.)
    assert_eq!(second.sent, 2, "{second:?}");
    assert!(second.tokens_new_token >= 1, "{second:?}");
    assert!(second.tokens_valid > first.tokens_valid, "{second:?}");
    assert_eq!(second.tokens_invalid, 0, "{second:?}");
    Ok(())
}

#[tokio::test]
async fn below_the_threshold_a_new_token_token_goes_to_the_backend() -> TestResult {
    init_tracing();
    let identity = SelfSigned::localhost()?;
    let backend = server(&identity)?;
    let lb = lb(backend.local_addr()?, RetryTrigger::Above(1_000))?;
    let (first, second) = two_connections(&lb, &identity).await?;
    assert_eq!(
        first,
        RetryCounts::default(),
        "no Retry below the threshold"
    );
    assert_eq!(second.sent, 0, "{second:?}");
    assert!(second.tokens_new_token >= 1, "{second:?}");
    assert_eq!(second.tokens_invalid, 0, "{second:?}");
    Ok(())
}
