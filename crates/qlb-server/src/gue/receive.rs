//! Receiving GUE datagrams into buffers of our own, decapsulating them, and handing quinn
//! the inner datagrams as if they had arrived from the clients at the VIP.
//!
//! One received buffer may hold several datagrams from one load balancer coalesced by GRO
//! (`stride` apart) whose inner sources differ; quinn needs one [`RecvMeta`] per source, so
//! each buffer is split into datagrams and handed on in runs of the same inner source,
//! destination and ECN (each run a GRO buffer of its own for quinn). Every payload is copied
//! once, from our buffer into quinn's.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::ops::Range;

use qlb_gue::{DecapError, Ecn};
use quinn::udp::RecvMeta;

use super::ecn;
use super::return_map::Route;
use super::sources::GueSources;

/// Buffers received in one system call.
pub(crate) const BUFFERS: usize = 8;
/// Octets per buffer: the largest GRO aggregate (and the largest UDP datagram) fits.
pub(crate) const BUFFER_LEN: usize = 64 * 1024;

/// Why a received GUE datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// It is not a GUE packet carrying a UDP datagram.
    Decap(DecapError),
    /// The inner UDP datagram is empty: not QUIC.
    Empty,
    /// The inner datagram does not fit quinn's receive buffer.
    TooLong,
    /// The outer source is not among the load balancers the server accepts GUE from.
    Source,
}

impl Dropped {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Decap(DecapError::Truncated) => "truncated",
            Self::Decap(DecapError::Version) => "version",
            Self::Decap(DecapError::Control) => "control",
            Self::Decap(DecapError::Protocol) => "protocol",
            Self::Decap(DecapError::NotUdp) => "not_udp",
            Self::Decap(DecapError::Fragment) => "fragment",
            Self::Decap(DecapError::Length) => "length",
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::Source => "source",
        }
    }
}

/// One decapsulated datagram waiting in a receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inner {
    /// The receive buffer and where the payload lies in it.
    pub(crate) buffer: usize,
    pub(crate) payload: Range<usize>,
    /// The inner source: the client.
    pub(crate) client: SocketAddr,
    /// The inner destination: the VIP.
    pub(crate) vip: SocketAddr,
    pub(crate) ecn: Ecn,
}

impl Inner {
    fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether `self` and `other` can be in one GRO buffer for quinn.
    fn same_flow(&self, other: &Self) -> bool {
        self.client == other.client && self.vip == other.vip && self.ecn == other.ecn
    }
}

/// How many datagrams from the start of `waiting` quinn can take as one buffer of `room`
/// octets: the same flow, all as long as the first but the last, which may be shorter
/// (quinn splits a buffer at `stride` = the first's length). 0 if the first does not fit.
pub(crate) fn run_len(waiting: &[Inner], room: usize) -> usize {
    let Some(first) = waiting.first() else {
        return 0;
    };
    if first.len() > room {
        return 0;
    }
    let mut used = first.len();
    let mut count = 1;
    for next in &waiting[1..] {
        if !first.same_flow(next) || next.len() > first.len() || used + next.len() > room {
            break;
        }
        used += next.len();
        count += 1;
        if next.len() < first.len() {
            break;
        }
    }
    count
}

/// Decapsulates the datagrams of one received buffer, `stride` apart (the last may be
/// shorter): for each, the payload's range in `data` and its inner addresses, or why it
/// is dropped.
pub(crate) fn split(
    data: &[u8],
    stride: usize,
) -> impl Iterator<Item = Result<(Range<usize>, SocketAddr, SocketAddr, Ecn), Dropped>> + '_ {
    // A stride of 0 would be a socket layer's bug; read it as one datagram.
    let stride = if stride == 0 { data.len() } else { stride };
    // An empty datagram has no chunk, but it is a malformed one all the same.
    let empty = data
        .is_empty()
        .then_some(Err(Dropped::Decap(DecapError::Truncated)));
    empty.into_iter().chain(
        data.chunks(stride.max(1))
            .enumerate()
            .map(move |(index, datagram)| {
                let packet = qlb_gue::decapsulate(datagram).map_err(Dropped::Decap)?;
                if packet.payload.is_empty() {
                    return Err(Dropped::Empty);
                }
                // The payload is the datagram's tail: the inner lengths were checked against it.
                let end = index * stride + datagram.len();
                let start = end - packet.payload.len();
                Ok((start..end, packet.source, packet.destination, packet.ecn))
            }),
    )
}

/// The receive buffers and the decapsulated datagrams not yet handed to quinn.
pub(crate) struct Batch {
    storage: Box<[u8]>,
    metas: [RecvMeta; BUFFERS],
    waiting: Vec<Inner>,
    next: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("waiting", &(self.waiting.len() - self.next))
            .finish_non_exhaustive()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            storage: vec![0; BUFFERS * BUFFER_LEN].into_boxed_slice(),
            metas: [RecvMeta::default(); BUFFERS],
            waiting: Vec::with_capacity(BUFFERS),
            next: 0,
        }
    }
}

impl Batch {
    /// Whether datagrams wait to be handed to quinn.
    pub(crate) fn has_waiting(&self) -> bool {
        self.next < self.waiting.len()
    }

    /// Lets `recv` fill the receive buffers and returns what it returns (how many buffers
    /// it filled, for [`Batch::decode`]). Call only when nothing waits.
    pub(crate) fn receive<R>(
        &mut self,
        recv: impl FnOnce(&mut [IoSliceMut<'_>], &mut [RecvMeta]) -> R,
    ) -> R {
        self.waiting.clear();
        self.next = 0;
        let mut chunks = self.storage.chunks_exact_mut(BUFFER_LEN);
        let mut bufs: [IoSliceMut<'_>; BUFFERS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        recv(&mut bufs, &mut self.metas)
    }

    /// Decapsulates the first `filled` buffers from the admitted `sources`: each datagram
    /// waits for [`Batch::deliver`], `learn` hears its client and route, `drop` hears why one
    /// was dropped.
    pub(crate) fn decode(
        &mut self,
        filled: usize,
        sources: &GueSources,
        mut learn: impl FnMut(SocketAddr, Route),
        mut drop: impl FnMut(Dropped),
    ) {
        for (buffer, meta) in self.metas.iter().take(filled).enumerate() {
            let start = buffer * BUFFER_LEN;
            let Some(data) = self.storage.get(start..start + meta.len.min(BUFFER_LEN)) else {
                continue;
            };
            if !sources.admits(meta.addr.ip()) {
                // Every datagram of a GRO buffer counts, as for the other reasons.
                for _ in 0..data.len().div_ceil(meta.stride.max(1)).max(1) {
                    drop(Dropped::Source);
                }
                continue;
            }
            for datagram in split(data, meta.stride) {
                match datagram {
                    Ok((payload, client, vip, ecn)) => {
                        learn(
                            client,
                            Route {
                                vip,
                                lb: meta.addr,
                                local: meta.dst_ip,
                            },
                        );
                        self.waiting.push(Inner {
                            buffer,
                            payload,
                            client,
                            vip,
                            ecn,
                        });
                    }
                    Err(reason) => drop(reason),
                }
            }
        }
    }

    /// Copies waiting datagrams into quinn's buffers, one run of one flow per buffer;
    /// returns how many buffers it filled. A datagram too long for quinn's buffer is
    /// dropped (`drop` hears it).
    pub(crate) fn deliver(
        &mut self,
        bufs: &mut [IoSliceMut<'_>],
        metas: &mut [RecvMeta],
        mut drop: impl FnMut(Dropped),
    ) -> usize {
        let mut filled = 0;
        'buffers: for (buf, meta) in bufs.iter_mut().zip(metas.iter_mut()) {
            loop {
                let waiting = self.waiting.get(self.next..).unwrap_or_default();
                let Some(first) = waiting.first() else {
                    break 'buffers;
                };
                let run = run_len(waiting, buf.len());
                if run == 0 {
                    drop(Dropped::TooLong);
                    self.next += 1;
                    continue;
                }
                let mut len = 0;
                for inner in &waiting[..run] {
                    let source = inner.buffer * BUFFER_LEN;
                    let payload = (source + inner.payload.start)..(source + inner.payload.end);
                    if let (Some(from), Some(to)) = (
                        self.storage.get(payload),
                        buf.get_mut(len..len + inner.len()),
                    ) {
                        to.copy_from_slice(from);
                    }
                    len += inner.len();
                }
                *meta = RecvMeta {
                    addr: first.client,
                    len,
                    stride: first.len(),
                    ecn: ecn::to_quinn(first.ecn),
                    dst_ip: Some(first.vip.ip()),
                };
                self.next += run;
                filled += 1;
                break;
            }
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    const LB: &str = "10.0.0.1:6080";
    const VIP: &str = "198.51.100.1:443";

    fn gue(client: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        qlb_gue::encapsulate(&mut out, addr(client), addr(VIP), Ecn::Ect0, payload)
            .expect("encapsulates");
        out
    }

    type Decoded = (Batch, Vec<(SocketAddr, Route)>, Vec<Dropped>);

    /// Receives `buffers` (each: the octets and the stride) into a batch and decodes them.
    fn received(buffers: &[(Vec<u8>, usize)]) -> Decoded {
        received_admitting(buffers, &GueSources::default())
    }

    /// [`received`], accepting GUE only from `sources` (the sender is [`LB`]).
    fn received_admitting(buffers: &[(Vec<u8>, usize)], sources: &GueSources) -> Decoded {
        let mut batch = Batch::default();
        let filled = batch.receive(|bufs, metas| {
            for ((data, stride), (buf, meta)) in
                buffers.iter().zip(bufs.iter_mut().zip(metas.iter_mut()))
            {
                buf[..data.len()].copy_from_slice(data);
                *meta = RecvMeta {
                    addr: addr(LB),
                    len: data.len(),
                    stride: *stride,
                    ecn: None,
                    dst_ip: Some("10.0.0.9".parse().expect("ip")),
                };
            }
            buffers.len()
        });
        let (mut learned, mut dropped) = (Vec::new(), Vec::new());
        batch.decode(
            filled,
            sources,
            |client, route| learned.push((client, route)),
            |reason| dropped.push(reason),
        );
        (batch, learned, dropped)
    }

    /// Delivers into `count` quinn buffers of `room` octets: each buffer's meta and octets.
    fn delivered(batch: &mut Batch, count: usize, room: usize) -> Vec<(RecvMeta, Vec<u8>)> {
        let mut storage = vec![vec![0u8; room]; count];
        let mut metas = vec![RecvMeta::default(); count];
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let filled = batch.deliver(&mut bufs, &mut metas, |_| {});
        drop(bufs);
        metas
            .into_iter()
            .zip(storage)
            .take(filled)
            .map(|(meta, buf)| {
                let data = buf[..meta.len].to_vec();
                (meta, data)
            })
            .collect()
    }

    #[test]
    fn a_single_datagram_arrives_from_the_client_at_the_vip() {
        let (mut batch, learned, dropped) = received(&[(gue("192.0.2.7:5000", b"quic"), 0)]);
        assert!(dropped.is_empty());
        assert_eq!(
            learned,
            vec![(
                addr("192.0.2.7:5000"),
                Route {
                    vip: addr(VIP),
                    lb: addr(LB),
                    local: Some("10.0.0.9".parse().expect("ip")),
                }
            )]
        );
        let out = delivered(&mut batch, 4, 1500);
        assert_eq!(out.len(), 1);
        let (meta, data) = &out[0];
        assert_eq!(data, b"quic");
        assert_eq!(meta.addr, addr("192.0.2.7:5000"));
        assert_eq!(meta.dst_ip, Some(addr(VIP).ip()));
        assert_eq!(meta.ecn, Some(quinn::udp::EcnCodepoint::Ect0));
        assert_eq!((meta.len, meta.stride), (4, 4));
        assert!(!batch.has_waiting());
    }

    #[test]
    fn a_gro_buffer_of_several_clients_is_split_by_client() {
        // Six datagrams of one stride (the last shorter): clients a, a, b, b, a, a.
        let payloads: [(&str, Vec<u8>); 6] = [
            ("192.0.2.1:1", vec![1; 100]),
            ("192.0.2.1:1", vec![2; 100]),
            ("192.0.2.2:2", vec![3; 100]),
            ("192.0.2.2:2", vec![4; 100]),
            ("192.0.2.1:1", vec![5; 100]),
            ("192.0.2.1:1", vec![6; 40]),
        ];
        let mut data = Vec::new();
        for (client, payload) in &payloads {
            data.extend(gue(client, payload));
        }
        let stride = gue("192.0.2.1:1", &[0; 100]).len();
        let (mut batch, learned, dropped) = received(&[(data, stride)]);
        assert!(dropped.is_empty());
        assert_eq!(learned.len(), 6);
        // Two quinn buffers now, the rest on the next call.
        let first = delivered(&mut batch, 2, 64 * 1024);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].0.addr, addr("192.0.2.1:1"));
        assert_eq!((first[0].0.len, first[0].0.stride), (200, 100));
        assert_eq!(first[0].1, [vec![1; 100], vec![2; 100]].concat());
        assert_eq!(first[1].0.addr, addr("192.0.2.2:2"));
        assert_eq!(first[1].1, [vec![3; 100], vec![4; 100]].concat());
        assert!(batch.has_waiting());
        let rest = delivered(&mut batch, 2, 64 * 1024);
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].0.len, rest[0].0.stride), (140, 100));
        assert_eq!(rest[0].1, [vec![5; 100], vec![6; 40]].concat());
        assert!(!batch.has_waiting());
    }

    #[test]
    fn runs_end_at_a_shorter_datagram_and_at_the_buffers_end() {
        let inner = |client: &str, len: usize| Inner {
            buffer: 0,
            payload: 0..len,
            client: addr(client),
            vip: addr(VIP),
            ecn: Ecn::NotEct,
        };
        let a = "192.0.2.1:1";
        let waiting = [inner(a, 100), inner(a, 100), inner(a, 50), inner(a, 50)];
        assert_eq!(run_len(&waiting, 1000), 3);
        assert_eq!(run_len(&waiting, 250), 3);
        assert_eq!(run_len(&waiting, 249), 2);
        assert_eq!(run_len(&waiting, 99), 0);
        assert_eq!(run_len(&[], 1000), 0);
        // A longer one after the first starts a new run.
        assert_eq!(run_len(&[inner(a, 50), inner(a, 100)], 1000), 1);
        let mut other_ecn = inner(a, 100);
        other_ecn.ecn = Ecn::Ce;
        assert_eq!(run_len(&[inner(a, 100), other_ecn], 1000), 1);
    }

    #[test]
    fn datagrams_from_a_host_that_is_not_an_admitted_load_balancer_are_dropped_each() {
        let mut data = gue("192.0.2.7:5000", b"quic");
        let stride = data.len();
        data.extend(gue("192.0.2.8:5000", b"quic"));
        data.extend(gue("192.0.2.9:5000", b"qu"));
        let elsewhere = GueSources::new(vec!["10.0.1.0/24".parse().expect("valid")]);
        let (batch, learned, dropped) = received_admitting(&[(data.clone(), stride)], &elsewhere);
        assert_eq!(dropped, vec![Dropped::Source; 3]);
        assert!(learned.is_empty() && !batch.has_waiting());

        let ours = GueSources::new(vec!["10.0.0.0/24".parse().expect("valid")]);
        let (batch, learned, dropped) = received_admitting(&[(data, stride)], &ours);
        assert!(dropped.is_empty());
        assert_eq!(learned.len(), 3);
        assert!(batch.has_waiting());
    }

    #[test]
    fn malformed_datagrams_are_dropped_with_their_reason_and_the_rest_kept() {
        let good = gue("192.0.2.1:1", b"quic");
        let mut bad_version = good.clone();
        bad_version[0] = 0xc0;
        let empty = gue("192.0.2.1:1", b"");
        let (mut batch, learned, dropped) = received(&[
            (vec![], 0),
            (bad_version, 0),
            (good[..10].to_vec(), 0),
            (empty, 0),
            (good.clone(), 0),
        ]);
        assert_eq!(
            dropped,
            [
                Dropped::Decap(DecapError::Truncated),
                Dropped::Decap(DecapError::Version),
                Dropped::Decap(DecapError::Truncated),
                Dropped::Empty,
            ]
        );
        assert_eq!(learned.len(), 1);
        let out = delivered(&mut batch, 8, 1500);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, b"quic");
    }

    #[test]
    fn a_datagram_too_long_for_quinn_is_dropped_not_truncated() {
        let (mut batch, _, _) = received(&[
            (gue("192.0.2.1:1", &[7; 2000]), 0),
            (gue("192.0.2.1:1", b"fits"), 0),
        ]);
        let mut dropped = Vec::new();
        let mut room = vec![0u8; 1500];
        let mut bufs = [IoSliceMut::new(&mut room)];
        let mut metas = [RecvMeta::default()];
        assert_eq!(
            batch.deliver(&mut bufs, &mut metas, |reason| dropped.push(reason)),
            1
        );
        assert_eq!(dropped, [Dropped::TooLong]);
        assert_eq!(metas[0].len, 4);
        assert_eq!(&room[..4], b"fits");
    }
}
