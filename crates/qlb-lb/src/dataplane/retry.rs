//! Retry offload (draft-ietf-quic-retry-offload-00 behaviour, quinn's token format:
//! `docs/retry.md`): a worker answers token-less client Initials with a Retry from the
//! listening socket, whose SCID is a QUIC-LB CID of the backend the fallback picks, so the
//! client's next Initial routes by CID to it. It keeps no state per client: a token carries
//! everything. A valid token's Initial is forwarded with its token exchanged for one minted
//! for the flow's upstream address, the client address the backend sees and checks.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use qlb_retry::{Initial, TokenError, TokenKeys, ValidToken, replace_token, retry_packet};
use qlb_router::{Pool, Router};
use quic_lb::{ConfigId, Encoder};

/// The smallest datagram a client Initial may come in (RFC 9000 section 14.1); smaller ones
/// get no Retry (the router drops them), so a Retry never amplifies.
const MIN_INITIAL_DATAGRAM: usize = 1200;

/// When token-less Initials are answered with a Retry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RetryTrigger {
    /// Every one.
    Always,
    /// Once a worker has seen more than this many token-less Initials in the current or the
    /// previous second, so it stays on for a whole quiet second before it stops.
    Above(u32),
}

/// Retry offload settings of a data plane.
#[derive(Clone)]
pub struct RetryOffload {
    /// When to send Retries.
    pub trigger: RetryTrigger,
    /// The token keys: the cluster's, and the previous one during a rotation.
    pub keys: Arc<TokenKeys>,
    /// The QUIC-LB configuration the Retry SCIDs are encoded under.
    pub config_id: ConfigId,
}

impl fmt::Debug for RetryOffload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryOffload")
            .field("trigger", &self.trigger)
            .field("config_id", &self.config_id)
            .finish_non_exhaustive()
    }
}

/// What Retry offload makes of a client datagram.
pub(super) enum Verdict {
    /// Not its business: route it.
    Route,
    /// Answer the client with this Retry; forward nothing.
    Reply(Vec<u8>),
    /// Route it, with the token exchanged for one naming the upstream address.
    Exchange(ValidToken),
    /// Drop it (counted).
    Drop,
}

/// Retry counters of a worker, or summed over workers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize)]
pub struct RetryCounts {
    /// Retry packets sent.
    pub sent: u64,
    /// Initials with a valid Retry token, forwarded (a handshake's first with the token
    /// exchanged for the backend).
    pub tokens_valid: u64,
    /// Initials with a token that did not open or named another address, dropped.
    pub tokens_invalid: u64,
    /// Initials with an expired token (answered with a Retry when Retries are on, else
    /// dropped).
    pub tokens_expired: u64,
    /// Initials with a backend's NEW_TOKEN token (answered with a Retry when Retries are on,
    /// else forwarded for the backend to judge).
    pub tokens_new_token: u64,
}

impl RetryCounts {
    pub(crate) fn merge(&mut self, other: &Self) {
        self.sent += other.sent;
        self.tokens_valid += other.tokens_valid;
        self.tokens_invalid += other.tokens_invalid;
        self.tokens_expired += other.tokens_expired;
        self.tokens_new_token += other.tokens_new_token;
    }
}

/// A worker's Retry offload: the settings, one QUIC-LB encoder per backend, the Initial rate.
pub(super) struct RetryState {
    offload: RetryOffload,
    encoders: HashMap<usize, Encoder>,
    /// (second, token-less Initials in it, in the second before).
    rate: (u64, u32, u32),
    pub(super) counts: RetryCounts,
}

impl RetryState {
    pub(super) fn new(offload: RetryOffload) -> Self {
        Self {
            offload,
            encoders: HashMap::new(),
            rate: (0, 0, 0),
            counts: RetryCounts::default(),
        }
    }

    /// Encoders belong to the backends of one pool.
    pub(super) fn set_pool(&mut self) {
        self.encoders.clear();
    }

    /// The keys tokens are minted under.
    pub(super) fn keys(&self) -> &TokenKeys {
        &self.offload.keys
    }

    /// What to do with `datagram` from `client` at `now` (Unix seconds).
    pub(super) fn inspect(
        &mut self,
        datagram: &[u8],
        client: SocketAddr,
        router: &Router,
        now: u64,
    ) -> Verdict {
        if datagram.len() < MIN_INITIAL_DATAGRAM {
            return Verdict::Route;
        }
        let Ok(initial) = Initial::parse(datagram) else {
            return Verdict::Route;
        };
        if initial.token.is_empty() {
            return match self.retrying(now) {
                true => self.retry(&initial, datagram, client, router, now),
                false => Verdict::Route,
            };
        }
        match self.offload.keys.validate(initial.token, client, now) {
            // Counted once forwarded.
            Ok(valid) => Verdict::Exchange(valid),
            // A backend's NEW_TOKEN token: the backend could not check it against the
            // address it sees, so it proves nothing there; a Retry does.
            Err(TokenError::NewToken) => {
                self.counts.tokens_new_token += 1;
                match self.retrying(now) {
                    true => self.retry(&initial, datagram, client, router, now),
                    false => Verdict::Route,
                }
            }
            Err(TokenError::Expired) => {
                self.counts.tokens_expired += 1;
                match self.retrying(now) {
                    true => self.retry(&initial, datagram, client, router, now),
                    false => Verdict::Drop,
                }
            }
            Err(TokenError::Invalid | TokenError::WrongAddress | TokenError::CidTooLong) => {
                self.counts.tokens_invalid += 1;
                Verdict::Drop
            }
        }
    }

    /// Counts a token-less Initial and says whether it gets a Retry.
    fn retrying(&mut self, now: u64) -> bool {
        let RetryTrigger::Above(threshold) = self.offload.trigger else {
            return true;
        };
        let (second, count, before) = &mut self.rate;
        if *second != now {
            *before = if *second + 1 == now { *count } else { 0 };
            (*second, *count) = (now, 0);
        }
        *count = count.saturating_add(1);
        *count > threshold || *before > threshold
    }

    fn retry(
        &mut self,
        initial: &Initial<'_>,
        datagram: &[u8],
        client: SocketAddr,
        router: &Router,
        now: u64,
    ) -> Verdict {
        let Some(scid) = self.scid(datagram, client, router) else {
            // No backend takes new connections, or it has no server ID under the Retry
            // configuration: the router decides (and counts) as without offload.
            return Verdict::Route;
        };
        let Ok(token) = self
            .offload
            .keys
            .mint(client, initial.dcid, now, rand::random())
        else {
            return Verdict::Route;
        };
        match retry_packet(
            initial.version,
            initial.scid,
            &scid,
            initial.dcid,
            &token,
            rand::random(),
        ) {
            Ok(packet) => {
                self.counts.sent += 1;
                Verdict::Reply(packet)
            }
            Err(_) => Verdict::Route,
        }
    }

    /// A fresh QUIC-LB CID of the backend the fallback picks.
    fn scid(&mut self, datagram: &[u8], client: SocketAddr, router: &Router) -> Option<Vec<u8>> {
        let index = router.fallback_choice(datagram, client)?;
        let encoder = match self.encoders.entry(index.get()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(encoder(router.pool(), index.get(), self.offload.config_id)?)
            }
        };
        Some(encoder.generate().to_vec())
    }
}

/// An encoder of backend `index`'s server ID under configuration `config_id`.
fn encoder(pool: &Pool, index: usize, config_id: ConfigId) -> Option<Encoder> {
    let backend = pool.backends().get(index)?;
    let config = pool.decoder().get(config_id)?;
    Encoder::new(config.clone(), *backend.server_id(config_id)?).ok()
}

/// Now in Unix seconds, the tokens' clock.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `datagram` with its token replaced by one for `seen_as` (same ODCID and issue time).
pub(super) fn exchange(
    keys: &TokenKeys,
    datagram: &[u8],
    valid: &ValidToken,
    seen_as: SocketAddr,
) -> Option<Vec<u8>> {
    let token = keys
        .mint(seen_as, valid.odcid(), valid.issued, rand::random())
        .ok()?;
    replace_token(datagram, &token).ok()
}

#[cfg(test)]
mod tests {
    use qlb_retry::{Initial, TokenKey};
    use qlb_router::Backend;
    use qlb_testkit::fixtures;

    use super::*;

    const NOW: u64 = 1_000;

    fn state(trigger: RetryTrigger) -> RetryState {
        RetryState::new(RetryOffload {
            trigger,
            keys: Arc::new(TokenKeys::new(
                TokenKey::from_cluster_secret(fixtures::CLUSTER_SECRET),
                None,
                10,
            )),
            config_id: fixtures::config(1).id(),
        })
    }

    fn router() -> Router {
        let backend = Backend::new("b1", "192.0.2.10:4433".parse().expect("addr"))
            .with_server_id(fixtures::config(1).id(), "0a0b".parse().expect("server id"));
        Router::new(Arc::new(
            Pool::new(fixtures::decoder(&[1]), [backend]).expect("pool"),
        ))
    }

    /// A v1 Initial header (DCID 8 x 0x0d, SCID 0x5c) with `token`, padded to `len`.
    fn initial(dcid: &[u8], token: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0xc0, 0, 0, 0, 1, dcid.len() as u8];
        out.extend_from_slice(dcid);
        out.extend_from_slice(&[1, 0x5c, 0x40 | (token.len() >> 8) as u8, token.len() as u8]);
        out.extend_from_slice(token);
        out.resize(len, 0);
        out
    }

    fn client() -> SocketAddr {
        "198.51.100.7:5000".parse().expect("addr")
    }

    #[test]
    fn a_retry_names_the_fallback_backend_and_its_token_validates() {
        let (mut retry, router) = (state(RetryTrigger::Always), router());
        let Verdict::Reply(packet) =
            retry.inspect(&initial(&[0x0d; 8], b"", 1200), client(), &router, NOW)
        else {
            panic!("no Retry");
        };
        // Retry: first octet, version, DCID (the client's SCID), SCID, then the token and tag.
        assert_eq!(packet[0] & 0xf0, 0xf0);
        assert_eq!(&packet[5..7], &[1, 0x5c]);
        let scid_len = usize::from(packet[7]);
        let scid = &packet[8..8 + scid_len];
        let decoded = router.pool().decoder().decode(scid).expect("a QUIC-LB CID");
        assert_eq!(decoded.server_id, "0a0b".parse().expect("server id"));
        let token = &packet[8 + scid_len..packet.len() - 16];
        let valid = retry.keys().validate(token, client(), NOW).expect("valid");
        assert_eq!(valid.odcid(), [0x0d; 8]);
        assert_eq!(retry.counts.sent, 1);

        // The client's next Initial, to the Retry's SCID with the token, is forwarded.
        let next = initial(scid, token, 1200);
        assert_eq!(Initial::parse(&next).map(|i| i.token), Ok(token));
        assert!(matches!(
            retry.inspect(&next, client(), &router, NOW + 10),
            Verdict::Exchange(v) if v.odcid() == [0x0d; 8]
        ));
        // From another address, or too late, it is not.
        let other = "198.51.100.7:5001".parse().expect("addr");
        assert!(matches!(
            retry.inspect(&next, other, &router, NOW),
            Verdict::Drop
        ));
        assert!(matches!(
            retry.inspect(&next, client(), &router, NOW + 11),
            Verdict::Reply(_)
        ));
        let forged = initial(scid, &[7; 40], 1200);
        assert!(matches!(
            retry.inspect(&forged, client(), &router, NOW),
            Verdict::Drop
        ));
        assert_eq!(
            (
                retry.counts.tokens_invalid,
                retry.counts.tokens_expired,
                retry.counts.sent
            ),
            (2, 1, 2)
        );
    }

    #[test]
    fn small_datagrams_and_other_packets_are_the_routers() {
        let (mut retry, router) = (state(RetryTrigger::Always), router());
        let small = initial(&[0x0d; 8], b"", 1199);
        assert!(matches!(
            retry.inspect(&small, client(), &router, NOW),
            Verdict::Route
        ));
        let mut handshake = initial(&[0x0d; 8], b"", 1200);
        handshake[0] = 0xe0;
        assert!(matches!(
            retry.inspect(&handshake, client(), &router, NOW),
            Verdict::Route
        ));
        assert_eq!(retry.counts, RetryCounts::default());
    }

    #[test]
    fn above_a_threshold_retries_start_and_last_a_quiet_second() {
        let mut retry = state(RetryTrigger::Above(2));
        let seconds = [100, 100, 100, 101, 102, 102, 102, 104];
        let retrying: Vec<bool> = seconds.iter().map(|&s| retry.retrying(s)).collect();
        assert_eq!(
            retrying,
            [false, false, true, true, false, false, true, false]
        );
    }
}
