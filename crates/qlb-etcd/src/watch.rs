//! Watching a prefix: etcd's `/v3/watch` answers one request with a stream of JSON
//! messages, one per batch of changes, for as long as the connection lives. A watch that
//! breaks is started again from the revision after the last one seen, so no change is lost.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::task::JoinHandle;

use crate::client::{EtcdClient, MAX_ANSWER, REQUEST_TIMEOUT, decode};
use crate::error::EtcdError;
use crate::transport::{Endpoint, EtcdTls, SendError, send};
use crate::wire::{self, KeyValue, WatchMessage, WatchResult};

const PATH: &str = "/v3/watch";

/// One change to a watched key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key was created or set.
    Put(KeyValue),
    /// The key was deleted (or its lease ended).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// The changes of one store revision (or several, in order), as etcd sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// The revision of the last of them: watch again from the next one.
    pub revision: i64,
    /// What changed, in order.
    pub changes: Vec<Change>,
}

/// A live watch of a prefix ([`EtcdClient::watch_prefix`]); dropped, it ends.
#[derive(Debug)]
pub struct Watch {
    body: Incoming,
    /// Received octets not yet parsed into a message.
    pending: Vec<u8>,
    endpoint: String,
    /// Drives the connection; aborted on drop.
    driver: JoinHandle<()>,
}

impl EtcdClient {
    /// Watches every key that starts with `prefix`, from `start_revision` on (changes at
    /// that revision included). Returns once etcd has created the watch; a start revision
    /// already compacted away is reported by the first [`Watch::next`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), qlb_etcd::EtcdError> {
    /// let etcd = qlb_etcd::EtcdClient::new(["http://127.0.0.1:2379"])?;
    /// let (_, revision) = etcd.get_prefix(b"/qlb/edge/members/").await?;
    /// let mut watch = etcd.watch_prefix(b"/qlb/edge/members/", revision + 1).await?;
    /// let changes = watch.next().await?;
    /// println!("{} change(s) up to revision {}", changes.changes.len(), changes.revision);
    /// # Ok(()) }
    /// ```
    pub async fn watch_prefix(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<Watch, EtcdError> {
        let request = wire::WatchRequest {
            create_request: wire::WatchCreate {
                key: prefix.to_vec(),
                range_end: wire::prefix_end(prefix),
                start_revision,
            },
        };
        let body = Bytes::from(serde_json::to_vec(&request).map_err(|e| EtcdError::Decode {
            path: PATH,
            reason: e.to_string(),
        })?);
        let token = self.token().await?;
        let mut last = String::new();
        for (index, endpoint) in self.endpoints_in_order() {
            let authority = &endpoint.authority;
            let open = open(endpoint, self.tls(), token.as_deref(), body.clone());
            let opened = tokio::time::timeout(REQUEST_TIMEOUT, open)
                .await
                .map_err(|_| format!("{authority}: no answer within {REQUEST_TIMEOUT:?}"))
                .and_then(|opened| opened.map_err(|e| format!("{authority}: {e}")));
            match opened {
                Ok(Opened::Watching(watch)) => {
                    self.answered(index);
                    return Ok(watch);
                }
                Ok(Opened::Refused(error)) => {
                    // An expired token is forgotten: the next watch gets a new one.
                    self.token_expired(&error);
                    return Err(error);
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

impl Watch {
    /// The next batch of changes. An error ends the watch: [`EtcdError::Compacted`] when
    /// its start revision is gone from etcd's history (read afresh), anything else when
    /// the connection broke or etcd ended it (watch again from the last revision + 1).
    pub async fn next(&mut self) -> Result<Changes, EtcdError> {
        loop {
            let result = self.message().await?;
            if result.canceled {
                return Err(ended(&result));
            }
            if result.created || result.events.is_empty() {
                continue; // the creation echo, or a progress notification
            }
            // The header's revision is the store's when etcd sent the batch, which other
            // keys' writes may have moved past the batch's own changes.
            let revision = result
                .events
                .iter()
                .map(|event| event.kv.mod_revision)
                .max()
                .filter(|&revision| revision > 0)
                .unwrap_or(result.header.revision);
            let changes = result
                .events
                .into_iter()
                .map(|event| match event.kind.as_str() {
                    "DELETE" => Change::Delete { key: event.kv.key },
                    _ => Change::Put(event.kv),
                })
                .collect();
            return Ok(Changes { revision, changes });
        }
    }

    /// The next message's result, reading as much of the stream as it takes.
    async fn message(&mut self) -> Result<WatchResult, EtcdError> {
        loop {
            match parse_one(&mut self.pending)? {
                Some(WatchMessage {
                    result: Some(result),
                    ..
                }) => return Ok(result),
                Some(WatchMessage { error, .. }) => {
                    return Err(EtcdError::WatchEnded {
                        reason: error.map_or_else(|| "an empty message".into(), |e| e.to_string()),
                    });
                }
                None => {}
            }
            let broke = |why: String| EtcdError::Unreachable {
                endpoints: self.endpoint.clone(),
                last: why,
            };
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if self.pending.len() + data.len() > MAX_ANSWER {
                            return Err(broke(format!("a watch message over {MAX_ANSWER} octets")));
                        }
                        self.pending.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => return Err(broke(format!("the watch broke: {error}"))),
                None => return Err(broke("etcd closed the watch".into())),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

enum Opened {
    Watching(Watch),
    /// etcd answered, but not with a watch: no other endpoint would do better.
    Refused(EtcdError),
}

/// Opens the watch at `endpoint` and waits for its creation (or its immediate end).
async fn open(
    endpoint: &Endpoint,
    tls: Option<&EtcdTls>,
    token: Option<&str>,
    body: Bytes,
) -> Result<Opened, SendError> {
    let (response, driver) = send(endpoint, tls, token, PATH, body).await?;
    let status = response.status().as_u16();
    if status != 200 {
        let octets = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await?
            .to_bytes();
        driver.abort();
        return Ok(Opened::Refused(
            decode::<serde_json::Value>(PATH, status, &octets)
                .err()
                .unwrap_or_else(|| EtcdError::WatchEnded {
                    reason: format!("answered {status}"),
                }),
        ));
    }
    let mut watch = Watch {
        body: response.into_body(),
        pending: Vec::new(),
        endpoint: endpoint.authority.clone(),
        driver,
    };
    let first = match watch.message().await {
        Ok(first) => first,
        Err(EtcdError::Unreachable { last, .. }) => return Err(last.into()),
        Err(error) => return Ok(Opened::Refused(error)),
    };
    if first.canceled {
        return Ok(Opened::Refused(ended(&first)));
    }
    // A watch's first message says it was created; anything else came too early.
    if !first.created {
        return Ok(Opened::Refused(EtcdError::WatchEnded {
            reason: "etcd sent changes before creating the watch".into(),
        }));
    }
    Ok(Opened::Watching(watch))
}

/// Why etcd cancelled a watch.
fn ended(result: &WatchResult) -> EtcdError {
    if result.compact_revision > 0 {
        EtcdError::Compacted {
            revision: result.compact_revision,
        }
    } else {
        EtcdError::WatchEnded {
            reason: result.cancel_reason.clone(),
        }
    }
}

/// Takes one whole message off the front of `pending`, if it holds one.
fn parse_one(pending: &mut Vec<u8>) -> Result<Option<WatchMessage>, EtcdError> {
    let mut stream = serde_json::Deserializer::from_slice(pending).into_iter::<WatchMessage>();
    match stream.next() {
        None => Ok(None),
        Some(Err(error)) if error.is_eof() => Ok(None),
        Some(Err(error)) => Err(EtcdError::Decode {
            path: PATH,
            reason: error.to_string(),
        }),
        Some(Ok(message)) => {
            let used = stream.byte_offset();
            pending.drain(..used);
            Ok(Some(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_whole_as_they_arrive() {
        let stream = concat!(
            r#"{"result":{"header":{"revision":"2"},"created":true}}"#,
            "\n",
            r#"{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"YQ=="}}]}}"#,
            "\n"
        )
        .as_bytes();
        let mut pending = Vec::new();
        let mut taken = Vec::new();
        // Octet by octet: a message is only taken once it is whole.
        for &octet in stream {
            pending.push(octet);
            while let Some(message) = parse_one(&mut pending).expect("well formed") {
                taken.push(message.result.expect("a result").header.revision);
            }
        }
        assert_eq!(taken, [2, 3]);
        assert!(pending.iter().all(u8::is_ascii_whitespace));
        let mut garbage = b"{\"result\": nope}".to_vec();
        assert!(parse_one(&mut garbage).is_err());
    }
}
