//! TLS 1.3 session tickets every server of a cluster can read: sealed with AES-256-GCM under
//! a key derived from the cluster secret and the rotation period, so that a client resumes
//! (and sends 0-RTT) on whichever backend the load balancer picks.
//!
//! A ticket is `version (1) || period (8, big-endian) || nonce (12) || AES-256-GCM(state)`,
//! the first 9 octets authenticated as associated data. The key of period `N` (`N` =
//! unix time / period length) is `derive_cluster_key(secret, LABEL || N)`; tickets of the
//! current and the previous period open, older ones do not (the client then does a full
//! handshake).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qlb_retry::derive_cluster_key;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// HKDF-Expand label of the ticket keys; the period number follows it.
const TICKET_LABEL: &[u8] = b"qlb session ticket";
/// The ticket format's first octet.
const VERSION: u8 = 1;
/// Octets before the sealed state: version and period.
const HEADER_LEN: usize = 1 + 8;
/// Octets of a random secret (no cluster secret).
const RANDOM_SECRET_LEN: usize = 32;
/// The default rotation period.
pub(crate) const DEFAULT_PERIOD: Duration = Duration::from_secs(12 * 3600);

/// The rotation period number of `unix_secs`, for periods of `period_secs` (> 0).
fn period_of(unix_secs: u64, period_secs: u64) -> u64 {
    unix_secs / period_secs.max(1)
}

/// The ticket key of period `period`.
fn period_key(secret: &[u8], period: u64) -> LessSafeKey {
    let mut label = TICKET_LABEL.to_vec();
    label.extend_from_slice(&period.to_be_bytes());
    let key = derive_cluster_key(secret, &label);
    // AES-256 takes exactly the 32 octets the derivation gives.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-octet AES-256 key"))
}

/// The ticket keys of a cluster (or of one process), rotated by period. `Debug` never shows
/// a key or the secret.
pub(crate) struct Ticketer {
    secret: Vec<u8>,
    period_secs: u64,
    /// The keys of the last period used and of the one before it.
    cache: Mutex<Option<CachedKeys>>,
}

struct CachedKeys {
    period: u64,
    current: LessSafeKey,
    previous: LessSafeKey,
}

impl Ticketer {
    /// Keys derived from the cluster secret, rotated every `period` (at least a second).
    pub(crate) fn from_cluster_secret(secret: &[u8], period: Duration) -> Self {
        Self {
            secret: secret.to_vec(),
            period_secs: period.as_secs().max(1),
            cache: Mutex::new(None),
        }
    }

    /// Keys from a random secret: tickets only this process reads.
    pub(crate) fn random(period: Duration) -> Self {
        Self::from_cluster_secret(&rand::random::<[u8; RANDOM_SECRET_LEN]>(), period)
    }

    /// The period number at `now`.
    fn period_at(&self, now: SystemTime) -> u64 {
        let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        period_of(unix, self.period_secs)
    }

    /// Runs `f` with the keys of `period` and `period - 1`, deriving them on a period change.
    fn with_keys<T>(&self, period: u64, f: impl FnOnce(&CachedKeys) -> T) -> T {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.as_ref().is_some_and(|keys| keys.period != period) {
            *cache = None;
        }
        f(cache.get_or_insert_with(|| CachedKeys {
            period,
            current: period_key(&self.secret, period),
            previous: period_key(&self.secret, period.wrapping_sub(1)),
        }))
    }

    /// Seals `plain` under the key of the period at `now`.
    pub(crate) fn seal_at(&self, plain: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let period = self.period_at(now);
        let nonce = rand::random::<[u8; NONCE_LEN]>();
        let mut ticket = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plain.len() + 16);
        ticket.push(VERSION);
        ticket.extend_from_slice(&period.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        let header: [u8; HEADER_LEN] = ticket[..HEADER_LEN].try_into().ok()?;
        self.with_keys(period, |keys| {
            keys.current.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut sealed,
            )
        })
        .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    /// Opens a ticket issued in the period at `now` or the one before; `None` for anything
    /// else (older, newer, another secret, altered, not a ticket).
    pub(crate) fn open_at(&self, ticket: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let (header, rest) = ticket.split_at_checked(HEADER_LEN)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let (&version, period) = header.split_first()?;
        if version != VERSION {
            return None;
        }
        let period = u64::from_be_bytes(period.try_into().ok()?);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let header: [u8; HEADER_LEN] = header.try_into().ok()?;
        let now = self.period_at(now);
        let mut plain = sealed.to_vec();
        let opened = self.with_keys(now, |keys| {
            let key = if period == now {
                &keys.current
            } else if period == now.wrapping_sub(1) {
                &keys.previous
            } else {
                return None;
            };
            key.open_in_place(nonce, Aad::from(header), &mut plain)
                .ok()
                .map(|opened| opened.len())
        })?;
        plain.truncate(opened);
        Some(plain)
    }
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ticketer {{ period_secs: {}, keys: .. }}",
            self.period_secs
        )
    }
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.period_secs).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, SystemTime::now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn period_arithmetic() {
        assert_eq!(period_of(0, 3600), 0);
        assert_eq!(period_of(3599, 3600), 0);
        assert_eq!(period_of(3600, 3600), 1);
        assert_eq!(period_of(7 * 3600 + 5, 3600), 7);
        // A zero period is taken as one second, never a division by zero.
        assert_eq!(period_of(42, 0), 42);
    }

    #[test]
    fn every_server_of_the_cluster_opens_every_ticket() {
        let a = Ticketer::from_cluster_secret(b"cluster", HOUR);
        let b = Ticketer::from_cluster_secret(b"cluster", HOUR);
        let now = at(100 * 3600 + 10);
        let ticket = a.seal_at(b"session state", now).expect("sealed");
        assert_eq!(
            b.open_at(&ticket, now).as_deref(),
            Some(&b"session state"[..])
        );
        assert_eq!(
            a.open_at(&ticket, now).as_deref(),
            Some(&b"session state"[..])
        );
    }

    #[test]
    fn a_ticket_opens_one_rotation_later_but_not_two() {
        let ticketer = Ticketer::from_cluster_secret(b"cluster", HOUR);
        let ticket = ticketer.seal_at(b"state", at(5 * 3600)).expect("sealed");
        assert!(ticketer.open_at(&ticket, at(5 * 3600 + 3599)).is_some());
        // The previous period's key still opens it.
        assert!(ticketer.open_at(&ticket, at(6 * 3600 + 3599)).is_some());
        // Two periods on, it is gone.
        assert!(ticketer.open_at(&ticket, at(7 * 3600)).is_none());
        // A ticket from the future (a skewed clock) is refused too.
        assert!(ticketer.open_at(&ticket, at(4 * 3600)).is_none());
    }

    #[test]
    fn another_secret_or_a_random_ticketer_cannot_open_it() {
        let now = at(3600);
        let ticket = Ticketer::from_cluster_secret(b"cluster", HOUR)
            .seal_at(b"state", now)
            .expect("sealed");
        assert!(
            Ticketer::from_cluster_secret(b"other", HOUR)
                .open_at(&ticket, now)
                .is_none()
        );
        assert!(Ticketer::random(HOUR).open_at(&ticket, now).is_none());
    }

    #[test]
    fn altered_or_truncated_tickets_are_refused() {
        let ticketer = Ticketer::from_cluster_secret(b"cluster", HOUR);
        let now = at(3600);
        let ticket = ticketer.seal_at(b"state", now).expect("sealed");
        for index in 0..ticket.len() {
            let mut altered = ticket.clone();
            altered[index] ^= 1;
            assert!(ticketer.open_at(&altered, now).is_none(), "octet {index}");
        }
        for len in 0..ticket.len() {
            assert!(
                ticketer.open_at(&ticket[..len], now).is_none(),
                "length {len}"
            );
        }
    }

    #[test]
    fn tickets_carry_their_period_and_a_fresh_nonce() {
        let ticketer = Ticketer::from_cluster_secret(b"cluster", HOUR);
        let now = at(9 * 3600);
        let a = ticketer.seal_at(b"state", now).expect("sealed");
        let b = ticketer.seal_at(b"state", now).expect("sealed");
        assert_eq!(a[0], VERSION);
        assert_eq!(a[1..9], 9u64.to_be_bytes());
        assert_ne!(a[9..21], b[9..21], "nonces differ");
        assert_ne!(a, b);
    }

    #[test]
    fn lifetime_is_the_period_and_debug_shows_no_key() {
        use rustls::server::ProducesTickets;
        let ticketer = Ticketer::from_cluster_secret(b"s3cret", DEFAULT_PERIOD);
        assert_eq!(ticketer.lifetime(), 12 * 3600);
        assert!(ticketer.enabled());
        let debug = format!("{ticketer:?}");
        assert_eq!(debug, "Ticketer { period_secs: 43200, keys: .. }");
        let ticket = ticketer.encrypt(b"x").expect("sealed");
        assert_eq!(ticketer.decrypt(&ticket).as_deref(), Some(&b"x"[..]));
    }
}
