//! An etcd v3 client over the JSON gateway every etcd since 3.4 serves on its client port
//! (`POST /v3/kv/range` and so on, HTTP/1.1): nothing to generate, no protoc. Each call
//! tries the endpoints in turn, starting with the one that answered last. TLS and etcd's
//! user authentication are optional ([`EtcdClientBuilder`]).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::EtcdError;
use crate::transport::{Endpoint, EtcdTls, SendError, send};
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
pub struct EtcdClient {
    endpoints: Vec<Endpoint>,
    /// The endpoint that answered last, tried first.
    preferred: AtomicUsize,
    tls: Option<EtcdTls>,
    auth: Option<EtcdAuth>,
    /// The token of the authenticated user, once etcd gave one.
    token: Mutex<Option<Arc<str>>>,
}

/// An etcd user's name and password (etcd's `auth enable`): requests carry the token etcd
/// gives for them, renewed when it expires. The password is not shown by `Debug`.
#[derive(Clone)]
pub struct EtcdAuth {
    user: String,
    password: String,
}

impl EtcdAuth {
    /// The user `user` with `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the token: it is as good as the password until it expires.
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoint_list())
            .field("tls", &self.tls.is_some())
            .field("user", &self.auth.as_ref().map(|a| &a.user))
            .finish()
    }
}

impl fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("user", &self.user)
            .field("password", &"..")
            .finish()
    }
}

/// How to reach etcd: endpoints, TLS, a user.
///
/// ```
/// use qlb_etcd::{EtcdAuth, EtcdClient};
///
/// let etcd = EtcdClient::builder(["http://127.0.0.1:2379"])
///     .auth(EtcdAuth::new("qlb", "s3cret"))
///     .build()?;
/// assert!(!format!("{etcd:?}").contains("s3cret"));
/// assert!(format!("{etcd:?}").contains("qlb"));
/// // https:// needs a CA to check etcd's certificate against.
/// assert!(EtcdClient::builder(["https://127.0.0.1:2379"]).build().is_err());
/// # Ok::<(), qlb_etcd::EtcdError>(())
/// ```
#[derive(Debug)]
pub struct EtcdClientBuilder {
    urls: Vec<String>,
    tls: Option<EtcdTls>,
    auth: Option<EtcdAuth>,
}

impl EtcdClientBuilder {
    /// Checks etcd's certificates (and presents ours) as `tls` says: for `https://` URLs.
    pub fn tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Authenticates as `auth`'s user.
    pub fn auth(mut self, auth: EtcdAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The client. Refuses an empty list, URLs other than `http://HOST:PORT` and
    /// `https://HOST:PORT`, and `https://` without [`tls`](Self::tls).
    pub fn build(self) -> Result<EtcdClient, EtcdError> {
        let endpoints = self
            .urls
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(EtcdError::Endpoint(String::new()));
        }
        if self.tls.is_none() && endpoints.iter().any(Endpoint::is_tls) {
            return Err(EtcdError::Tls(
                "https:// endpoints need a CA to check etcd's certificate against".into(),
            ));
        }
        Ok(EtcdClient {
            endpoints,
            preferred: AtomicUsize::new(0),
            tls: self.tls,
            auth: self.auth,
            token: Mutex::new(None),
        })
    }
}

impl EtcdClient {
    /// A client of the etcd cluster at `endpoints` (`http://HOST:PORT`, tried in turn),
    /// without TLS or a user. Refuses an empty list and malformed URLs.
    pub fn new<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self, EtcdError> {
        Self::builder(endpoints).build()
    }

    /// A client of `endpoints` with TLS or a user: see [`EtcdClientBuilder`].
    pub fn builder<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> EtcdClientBuilder {
        EtcdClientBuilder {
            urls: endpoints
                .into_iter()
                .map(|u| u.as_ref().to_owned())
                .collect(),
            tls: None,
            auth: None,
        }
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

    /// Sets `key` to `value`, under `lease` if given; the store's revision after the put
    /// (the key's new `mod_revision`).
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<Lease>,
    ) -> Result<i64, EtcdError> {
        let done: wire::Headed = self.call("/v3/kv/put", &put(key, value, lease)).await?;
        Ok(done.header.revision)
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

    /// The endpoints in the order calls try them: the last good one first.
    pub(crate) fn endpoints_in_order(&self) -> impl Iterator<Item = (usize, &Endpoint)> {
        let first = self.preferred.load(Ordering::Relaxed);
        (0..self.endpoints.len()).map(move |offset| {
            let index = (first + offset) % self.endpoints.len();
            (index, &self.endpoints[index])
        })
    }

    /// The TLS settings, for `https://` endpoints.
    pub(crate) fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// The token requests carry, with a user: the one etcd gave, or a new one.
    pub(crate) async fn token(&self) -> Result<Option<Arc<str>>, EtcdError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        if let Some(token) = self.cached_token() {
            return Ok(Some(token));
        }
        let request = wire::Authenticate {
            name: &auth.user,
            password: &auth.password,
        };
        let body = encode("/v3/auth/authenticate", &request)?;
        let answer: wire::Authenticated =
            self.call_with("/v3/auth/authenticate", &body, None).await?;
        let token: Arc<str> = answer.token.into();
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(Some(token))
    }

    fn cached_token(&self) -> Option<Arc<str>> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the token if `error` says it expired (etcd: `Unauthenticated`, HTTP 401);
    /// whether it did, so that the request may be sent again with a new one.
    pub(crate) fn token_expired(&self, error: &EtcdError) -> bool {
        let expired = self.auth.is_some()
            && match error {
                EtcdError::Status {
                    status, message, ..
                } => *status == 401 || message.contains("invalid auth token"),
                _ => false,
            };
        if expired {
            *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        expired
    }

    /// Remembers that endpoint `index` answered.
    pub(crate) fn answered(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    /// Every endpoint, comma-separated, for messages.
    pub(crate) fn endpoint_list(&self) -> String {
        let authorities: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| e.authority.as_str())
            .collect();
        authorities.join(", ")
    }

    /// POSTs `body` to `path`, trying every endpoint once, the last good one first; with a
    /// user, once more with a new token if etcd says the token expired.
    pub(crate) async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Q,
    ) -> Result<A, EtcdError> {
        let body = encode(path, body)?;
        let token = self.token().await?;
        match self.call_with(path, &body, token.as_deref()).await {
            Err(error) if self.token_expired(&error) => {
                let token = self.token().await?;
                self.call_with(path, &body, token.as_deref()).await
            }
            outcome => outcome,
        }
    }

    /// POSTs `body` to `path` with `token`, trying every endpoint once.
    async fn call_with<A: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Bytes,
        token: Option<&str>,
    ) -> Result<A, EtcdError> {
        let mut last = String::new();
        for (index, endpoint) in self.endpoints_in_order() {
            let authority = &endpoint.authority;
            let post = post(endpoint, self.tls(), token, path, body.clone());
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, post)
                .await
                .map_err(|_| format!("{authority}: no answer within {REQUEST_TIMEOUT:?}"))
                .and_then(|answer| answer.map_err(|e| format!("{authority}: {e}")));
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

/// `body` as JSON.
fn encode<Q: Serialize>(path: &'static str, body: &Q) -> Result<Bytes, EtcdError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| EtcdError::Decode {
            path,
            reason: e.to_string(),
        })
}

/// One POST on a fresh connection: the status and the body.
async fn post(
    endpoint: &Endpoint,
    tls: Option<&EtcdTls>,
    token: Option<&str>,
    path: &'static str,
    body: Bytes,
) -> Result<(u16, Bytes), SendError> {
    let (response, driver) = send(endpoint, tls, token, path, body).await?;
    let status = response.status().as_u16();
    let octets = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await?
        .to_bytes();
    driver.abort();
    Ok((status, octets))
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
    fn a_client_needs_an_endpoint() {
        assert!(EtcdClient::new(Vec::<String>::new()).is_err());
        assert!(EtcdClient::new(["etcd:2379"]).is_err());
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
