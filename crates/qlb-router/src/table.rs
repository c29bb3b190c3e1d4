//! A bounded map whose entries lapse after an idle timeout: the memory behind the flow tables.
//!
//! Entries sit on a recency list (least recently used first). A lookup ignores a lapsed entry;
//! an insert reuses the least recently used slot when that entry has lapsed or the table is
//! full, so lapsed entries go first, the table never grows past its capacity however many
//! new keys arrive, and every operation is O(1). Keys come from the network, so the index is
//! a `HashMap` with the standard library's randomly seeded hasher (no HashDoS).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How large the flow tables may grow and how long an idle entry lives.
///
/// ```
/// use std::time::Duration;
/// use qlb_router::TableLimits;
///
/// let limits = TableLimits { capacity: 1 << 20, ..TableLimits::default() };
/// assert_eq!(limits.idle_timeout, Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TableLimits {
    /// The most entries each table (DCID, 4-tuple) holds; 0 turns the tables off.
    pub capacity: usize,
    /// An entry not used for this long is forgotten.
    pub idle_timeout: Duration,
}

impl Default for TableLimits {
    /// 65536 entries per table, 30 s idle timeout.
    fn default() -> Self {
        Self {
            capacity: 1 << 16,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// "No slot": the end of the recency list.
const NONE: usize = usize::MAX;

struct Slot<K, V> {
    key: K,
    value: V,
    last_used: Instant,
    /// The next less recently used slot, or NONE.
    older: usize,
    /// The next more recently used slot, or NONE.
    newer: usize,
}

pub(crate) struct IdleTable<K, V> {
    index: HashMap<K, usize>,
    slots: Vec<Slot<K, V>>,
    oldest: usize,
    newest: usize,
    limits: TableLimits,
}

impl<K, V> std::fmt::Debug for IdleTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleTable")
            .field("entries", &self.index.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Copy, V> IdleTable<K, V> {
    pub(crate) fn new(limits: TableLimits) -> Self {
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            oldest: NONE,
            newest: NONE,
            limits,
        }
    }

    /// The value under `key`, unless it has lapsed by `now`.
    pub(crate) fn get(&self, key: &K, now: Instant) -> Option<&V> {
        let slot = self.slots.get(*self.index.get(key)?)?;
        (!self.lapsed(slot, now)).then_some(&slot.value)
    }

    /// Sets `key` to `value`, used at `now`, making room if needed: a lapsed entry goes
    /// first, the least recently used one when the table is full.
    pub(crate) fn insert(&mut self, key: K, value: V, now: Instant) {
        if self.limits.capacity == 0 {
            return;
        }
        let at = match self.index.get(&key) {
            Some(&at) => at,
            None => self.claim_slot(key, now),
        };
        match self.slots.get_mut(at) {
            Some(slot) => {
                slot.key = key;
                slot.value = value;
                slot.last_used = now;
            }
            None => self.slots.push(Slot {
                key,
                value,
                last_used: now,
                older: NONE,
                newer: NONE,
            }),
        }
        self.unlink(at);
        self.push_newest(at);
    }

    /// The slot for a new key, indexed under it: the least recently used slot if its entry has
    /// lapsed or the table is full, else the next fresh one (`slots.len()`, not yet pushed).
    fn claim_slot(&mut self, key: K, now: Instant) -> usize {
        let full = self.slots.len() >= self.limits.capacity;
        let at = match self.slots.get(self.oldest) {
            Some(oldest) if full || self.lapsed(oldest, now) => {
                self.index.remove(&oldest.key);
                self.oldest
            }
            _ => self.slots.len(),
        };
        self.index.insert(key, at);
        at
    }

    fn lapsed(&self, slot: &Slot<K, V>, now: Instant) -> bool {
        now.saturating_duration_since(slot.last_used) >= self.limits.idle_timeout
    }

    /// Takes slot `at` out of the recency list (a slot not on it is left alone).
    fn unlink(&mut self, at: usize) {
        let Some(slot) = self.slots.get(at) else {
            return;
        };
        let (older, newer) = (slot.older, slot.newer);
        match self.slots.get_mut(older) {
            Some(slot) => slot.newer = newer,
            None if self.oldest == at => self.oldest = newer,
            None => {}
        }
        match self.slots.get_mut(newer) {
            Some(slot) => slot.older = older,
            None if self.newest == at => self.newest = older,
            None => {}
        }
        if let Some(slot) = self.slots.get_mut(at) {
            slot.older = NONE;
            slot.newer = NONE;
        }
    }

    /// Puts the unlinked slot `at` at the most recently used end.
    fn push_newest(&mut self, at: usize) {
        let previous = self.newest;
        if let Some(slot) = self.slots.get_mut(at) {
            slot.older = previous;
            slot.newer = NONE;
        }
        match self.slots.get_mut(previous) {
            Some(slot) => slot.newer = at,
            None => self.oldest = at,
        }
        self.newest = at;
    }

    /// How many entries the table holds, lapsed ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    /// The keys from least to most recently used, read along the recency list.
    #[cfg(test)]
    fn keys_by_recency(&self) -> Vec<K> {
        let mut keys = Vec::new();
        let mut at = self.oldest;
        while let Some(slot) = self.slots.get(at) {
            keys.push(slot.key);
            at = slot.newer;
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IDLE: Duration = Duration::from_secs(30);

    fn table(capacity: usize) -> IdleTable<u32, u32> {
        IdleTable::new(TableLimits {
            capacity,
            idle_timeout: IDLE,
        })
    }

    #[test]
    fn entries_lapse_when_idle_and_use_keeps_them() {
        let t0 = Instant::now();
        let mut table = table(8);
        table.insert(1, 10, t0);
        table.insert(2, 20, t0);
        assert_eq!(
            table.get(&1, t0 + IDLE - Duration::from_millis(1)),
            Some(&10)
        );
        table.insert(2, 21, t0 + Duration::from_secs(20));
        assert_eq!(table.get(&1, t0 + IDLE), None);
        assert_eq!(table.get(&2, t0 + IDLE), Some(&21));
        // Time going backwards (another worker's clock reading) does not lapse anything.
        assert_eq!(table.get(&2, t0), Some(&21));
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_used_entry() {
        let t0 = Instant::now();
        let mut table = table(2);
        table.insert(1, 10, t0);
        table.insert(2, 20, t0);
        table.insert(1, 11, t0);
        table.insert(3, 30, t0);
        assert_eq!(table.get(&2, t0), None);
        assert_eq!(
            (table.get(&1, t0), table.get(&3, t0)),
            (Some(&11), Some(&30))
        );
        assert_eq!(table.keys_by_recency(), [1, 3]);
    }

    #[test]
    fn lapsed_entries_make_room_before_the_table_grows() {
        let t0 = Instant::now();
        let mut table = table(100);
        table.insert(1, 10, t0);
        table.insert(2, 20, t0 + IDLE);
        assert_eq!(table.len(), 1);
        assert_eq!(table.slots.len(), 1);
        assert_eq!(table.get(&2, t0 + IDLE), Some(&20));
    }

    #[test]
    fn a_flood_of_new_keys_never_grows_past_the_capacity() {
        let t0 = Instant::now();
        let mut table = table(64);
        for key in 0..10_000 {
            table.insert(key, key, t0);
            assert!(table.len() <= 64 && table.slots.len() <= 64);
        }
        let newest: Vec<u32> = (10_000 - 64..10_000).collect();
        assert_eq!(table.keys_by_recency(), newest);
    }

    #[test]
    fn capacity_zero_stores_nothing() {
        let t0 = Instant::now();
        let mut table = table(0);
        table.insert(1, 10, t0);
        assert_eq!(table.get(&1, t0), None);
        assert_eq!(table.len(), 0);
    }

    /// The table's documented behaviour, spelled out as a list in recency order.
    #[derive(Default)]
    struct Model(Vec<(u32, u32, Instant)>);

    impl Model {
        fn insert(&mut self, capacity: usize, key: u32, value: u32, now: Instant) {
            if let Some(at) = self.0.iter().position(|e| e.0 == key) {
                self.0.remove(at);
            } else if let Some(oldest) = self.0.first()
                && (self.0.len() >= capacity || now.saturating_duration_since(oldest.2) >= IDLE)
            {
                self.0.remove(0);
            }
            self.0.push((key, value, now));
        }

        fn get(&self, key: u32, now: Instant) -> Option<u32> {
            let entry = self.0.iter().find(|e| e.0 == key)?;
            (now.saturating_duration_since(entry.2) < IDLE).then_some(entry.1)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn behaves_like_its_model(
            capacity in 1usize..8,
            ops in proptest::collection::vec((0u32..12, any::<u32>(), 0u64..20), 1..200),
        ) {
            let t0 = Instant::now();
            let mut table = table(capacity);
            let mut model = Model::default();
            let mut seconds = 0;
            for (key, value, step) in ops {
                seconds += step;
                let now = t0 + Duration::from_secs(seconds);
                table.insert(key, value, now);
                model.insert(capacity, key, value, now);
                prop_assert!(table.len() <= capacity);
                let order: Vec<u32> = model.0.iter().map(|e| e.0).collect();
                prop_assert_eq!(table.keys_by_recency(), order);
                for probe in 0..12 {
                    prop_assert_eq!(table.get(&probe, now).copied(), model.get(probe, now));
                }
            }
        }
    }
}
