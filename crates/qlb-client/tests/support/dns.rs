//! A tiny authoritative DNS responder on loopback UDP: every A query gets the current list of
//! IPv4 addresses (TTL 1 s), every other query an empty answer. The test changes the list
//! while the client polls.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::UdpSocket;

use super::TestResult;

const TYPE_A: u16 = 1;

/// The responder; its task stops when it is dropped.
pub(crate) struct Dns {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    pub(crate) async fn start(records: &[Ipv4Addr]) -> TestResult<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let records = Arc::new(Mutex::new(records.to_vec()));
        let queries = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (records, queries) = (records.clone(), queries.clone());
            async move {
                let mut buf = [0u8; 1500];
                while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                    let current = records
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    if let Some((reply, qtype)) = answer(&buf[..len], &current) {
                        if qtype == TYPE_A {
                            queries.fetch_add(1, Ordering::SeqCst);
                        }
                        let _ = socket.send_to(&reply, from).await;
                    }
                }
            }
        });
        Ok(Self {
            addr,
            records,
            queries,
            task,
        })
    }

    /// Answers with `records` from now on.
    pub(crate) fn set(&self, records: &[Ipv4Addr]) {
        *self.records.lock().unwrap_or_else(PoisonError::into_inner) = records.to_vec();
    }

    /// A queries answered so far.
    pub(crate) fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to `query` (one question), and the question's type; None if malformed.
fn answer(query: &[u8], records: &[Ipv4Addr]) -> Option<(Vec<u8>, u16)> {
    let header = query.get(..12)?;
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..end + 4)?;
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let answers: &[Ipv4Addr] = if qtype == TYPE_A { records } else { &[] };

    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&header[..2]); // id
    let recursion_desired = header[2] & 0x01;
    reply.extend_from_slice(&[0x84 | recursion_desired, 0x80]); // response, authoritative, RA
    reply.extend_from_slice(&1u16.to_be_bytes()); // one question
    reply.extend_from_slice(&u16::try_from(answers.len()).ok()?.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional records
    reply.extend_from_slice(question);
    for ip in answers {
        reply.extend_from_slice(&[0xc0, 0x0c]); // the name of the question
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes()); // IN
        reply.extend_from_slice(&1u32.to_be_bytes()); // TTL
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&ip.octets());
    }
    Some((reply, qtype))
}
