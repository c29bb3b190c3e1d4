//! An etcd v3 client over the JSON gateway every etcd since 3.4 serves on its client port
//! (`POST /v3/kv/range` and so on, HTTP/1.1): nothing to generate, no protoc. Each call
//! tries the endpoints in turn, starting with the one that answered last.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::error::EtcdError;
use crate::wire::{self, KeyValue};

/// How long one request to one endpoint may take, connection included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read: a fleet's members are far smaller.
pub(crate) const MAX_ANSWER: usize = 16 << 20;

/// A lease: keys put under it disappear when it expires or is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lease(i64);

impl Lease {
    /// etcd's ID of the lease.
    pub fn id(self) -> i64 {
        self.0
    }
}

/// A client of one etcd cluster.
///
/// ```no_run
/// # async fn run() -> Result<(), qlb_etcd::EtcdError> {
/// let etcd = qlb_etcd::EtcdClient::new(["http://10.0.0.2:2379", "http://10.0.0.3:2379"])?;
/// let lease = etcd.grant(std::time::Duration::from_secs(10)).await?;
/// let created = etcd.create(b"/qlb/demo/lock", b"me", Some(lease)).await?;
/// assert!(created || etcd.get(b"/qlb/demo/lock").await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EtcdClient {
    endpoints: Vec<String>,
    /// The endpoint that answered last, tried first.
    preferred: AtomicUsize,
}

impl EtcdClient {
    /// A client of the etcd cluster at `endpoints` (`http://HOST:PORT`, tried in turn).
    /// Refuses an empty list and anything but plain `http` URLs.
    pub fn new<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self, EtcdError> {
        let endpoints = endpoints
            .into_iter()
            .map(|url| authority(url.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(EtcdError::Endpoint(String::new()));
        }
        Ok(Self {
            endpoints,
            preferred: AtomicUsize::new(0),
        })
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, EtcdError> {
        let ttl = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let granted: wire::LeaseGranted = self
            .call("/v3/lease/grant", &wire::LeaseGrant { ttl })
            .await?;
        Ok(Lease(granted.id))
    }

    /// Renews `lease`; returns its new time to live, or `None` if it is gone (expired or
    /// revoked: its keys are gone too).
    pub async fn keep_alive(&self, lease: Lease) -> Result<Option<Duration>, EtcdError> {
        let kept: wire::KeptAlive = self
            .call("/v3/lease/keepalive", &wire::LeaseId { id: lease.0 })
            .await?;
        Ok(u64::try_from(kept.result.ttl)
            .ok()
            .filter(|&ttl| ttl > 0)
            .map(Duration::from_secs))
    }

    /// Revokes `lease`, deleting its keys at once.
    pub async fn revoke(&self, lease: Lease) -> Result<(), EtcdError> {
        let _: serde_json::Value = self
            .call("/v3/lease/revoke", &wire::LeaseId { id: lease.0 })
            .await?;
        Ok(())
    }

    /// Sets `key` to `value`, under `lease` if given.
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<Lease>,
    ) -> Result<(), EtcdError> {
        let _: serde_json::Value = self.call("/v3/kv/put", &put(key, value, lease)).await?;
        Ok(())
    }

    /// Creates `key` with `value` (under `lease` if given) only if it does not exist, in one
    /// transaction; whether it was created.
    pub async fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<Lease>,
    ) -> Result<bool, EtcdError> {
        Ok(self.put_if(key, value, lease, 0).await?.is_some())
    }

    /// Sets `key` to `value` (under `lease` if given) only if its last change is at
    /// `mod_revision` (0: only if it does not exist), in one transaction: the store's
    /// revision after the put, or `None` if someone changed the key meanwhile.
    pub async fn put_if(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<Lease>,
        mod_revision: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let txn = wire::Txn {
            compare: vec![wire::Compare {
                key: key.to_vec(),
                target: "MOD",
                result: "EQUAL",
                mod_revision,
            }],
            success: vec![wire::RequestOp::Put(put(key, value, lease))],
        };
        self.txn(&txn).await
    }

    /// Runs `txn`: the store's revision after it, or `None` if a comparison failed.
    pub(crate) async fn txn(&self, txn: &wire::Txn) -> Result<Option<i64>, EtcdError> {
        let done: wire::TxnDone = self.call("/v3/kv/txn", txn).await?;
        Ok(done.succeeded.then_some(done.header.revision))
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let ranged: wire::Ranged = self
            .call(
                "/v3/kv/range",
                &wire::Range {
                    key: key.to_vec(),
                    range_end: Vec::new(),
                },
            )
            .await?;
        Ok(ranged.kvs.into_iter().next())
    }

    /// Every key that starts with `prefix`, and the store's revision they were read at.
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let ranged: wire::Ranged = self
            .call(
                "/v3/kv/range",
                &wire::Range {
                    key: prefix.to_vec(),
                    range_end: wire::prefix_end(prefix),
                },
            )
            .await?;
        Ok((ranged.kvs, ranged.header.revision))
    }

    /// Drops the store's history before `revision`: watches cannot start earlier.
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let _: serde_json::Value = self
            .call("/v3/kv/compaction", &wire::Compaction { revision })
            .await?;
        Ok(())
    }

    /// Deletes `key` (nothing happens if it does not exist).
    pub async fn delete(&self, key: &[u8]) -> Result<(), EtcdError> {
        let _: serde_json::Value = self
            .call(
                "/v3/kv/deleterange",
                &wire::DeleteRange { key: key.to_vec() },
            )
            .await?;
        Ok(())
    }

    /// The endpoints (`host:port`) in the order calls try them: the last good one first.
    pub(crate) fn endpoints_in_order(&self) -> impl Iterator<Item = (usize, &str)> {
        let first = self.preferred.load(Ordering::Relaxed);
        (0..self.endpoints.len()).map(move |offset| {
            let index = (first + offset) % self.endpoints.len();
            (index, self.endpoints[index].as_str())
        })
    }

    /// Remembers that endpoint `index` answered.
    pub(crate) fn answered(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    /// Every endpoint, comma-separated, for messages.
    pub(crate) fn endpoint_list(&self) -> String {
        self.endpoints.join(", ")
    }

    /// POSTs `body` to `path`, trying every endpoint once, the last good one first.
    async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Q,
    ) -> Result<A, EtcdError> {
        let body = Bytes::from(serde_json::to_vec(body).map_err(|e| EtcdError::Decode {
            path,
            reason: e.to_string(),
        })?);
        let mut last = String::new();
        for (index, endpoint) in self.endpoints_in_order() {
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, post(endpoint, path, body.clone()))
                .await
                .map_err(|_| format!("{endpoint}: no answer within {REQUEST_TIMEOUT:?}"))
                .and_then(|answer| answer.map_err(|e| format!("{endpoint}: {e}")));
            match answer {
                Ok((status, octets)) => {
                    self.answered(index);
                    return decode(path, status, &octets);
                }
                Err(error) => last = error,
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoint_list(),
            last,
        })
    }
}

pub(crate) fn put(key: &[u8], value: &[u8], lease: Option<Lease>) -> wire::Put {
    wire::Put {
        key: key.to_vec(),
        value: value.to_vec(),
        lease: lease.map_or(0, Lease::id),
    }
}

/// `host:port` of an `http://host:port[/]` URL.
fn authority(url: &str) -> Result<String, EtcdError> {
    let refused = || EtcdError::Endpoint(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(refused)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok || rest.contains('/') {
        return Err(refused());
    }
    Ok(rest.to_owned())
}

/// What [`send`] fails with: anything of TCP, HTTP or the body, as text in the end.
pub(crate) type SendError = Box<dyn std::error::Error + Send + Sync>;

/// One HTTP/1.1 POST on a fresh connection: the status and the body.
async fn post(authority: &str, path: &'static str, body: Bytes) -> Result<(u16, Bytes), SendError> {
    let (response, driver) = send(authority, path, body).await?;
    let status = response.status().as_u16();
    let octets = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await?
        .to_bytes();
    driver.abort();
    Ok((status, octets))
}

/// Sends one POST on a fresh connection; the answer's head, and the task driving the
/// connection (abort it when done with the body).
pub(crate) async fn send(
    authority: &str,
    path: &'static str,
    body: Bytes,
) -> Result<(http::Response<Incoming>, JoinHandle<()>), SendError> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    match sender.send_request(request).await {
        Ok(response) => Ok((response, driver)),
        Err(error) => {
            driver.abort();
            Err(error.into())
        }
    }
}

/// etcd's answer: the documented body on 200, its error message otherwise.
pub(crate) fn decode<A: DeserializeOwned>(
    path: &'static str,
    status: u16,
    octets: &[u8],
) -> Result<A, EtcdError> {
    if status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(octets)
            .ok()
            .and_then(|body| {
                body.get("message")
                    .or_else(|| body.get("error"))
                    .and_then(|m| m.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(octets).into_owned());
        return Err(EtcdError::Status {
            status,
            path,
            message,
        });
    }
    serde_json::from_slice(octets).map_err(|e| EtcdError::Decode {
        path,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_plain_http_urls() {
        assert_eq!(
            authority("http://127.0.0.1:2379").expect("ok"),
            "127.0.0.1:2379"
        );
        assert_eq!(authority("http://etcd-0:2379/").expect("ok"), "etcd-0:2379");
        assert_eq!(authority("http://[::1]:2379").expect("ok"), "[::1]:2379");
        for bad in [
            "https://etcd:2379",
            "etcd:2379",
            "http://etcd",
            "http://:2379",
            "http://e:1/v3",
        ] {
            assert!(authority(bad).is_err(), "{bad}");
        }
        assert!(EtcdClient::new(Vec::<String>::new()).is_err());
    }

    #[test]
    fn errors_carry_etcds_message() {
        let error = decode::<serde_json::Value>(
            "/v3/kv/put",
            400,
            br#"{"error":"etcdserver: requested lease not found","code":5}"#,
        )
        .expect_err("an error");
        assert!(
            error.to_string().contains("requested lease not found"),
            "{error}"
        );
        let error = decode::<wire::TxnDone>("/v3/kv/txn", 200, b"not json").expect_err("bad");
        assert!(matches!(
            error,
            EtcdError::Decode {
                path: "/v3/kv/txn",
                ..
            }
        ));
    }
}
