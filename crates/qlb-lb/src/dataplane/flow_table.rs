//! The proxy's flow table, without I/O: a bounded map from flow key to flow whose entries
//! lapse after an idle timeout.
//!
//! Entries live in slots (a slot number is the flow's identity, and names its socket to the
//! event loop) and on a recency list, least recently used first, so that finding the lapsed
//! entries and the next expiry are O(1) each. Unlike the router's tables, a full table refuses
//! new keys instead of evicting live ones: an established flow owns a socket and a client
//! address, and a flood of new clients must not push it out.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// "No slot": the end of the recency list.
const NONE: usize = usize::MAX;

/// A flow's slot: stable while the flow lives, reused after it is gone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FlowId(usize);

impl FlowId {
    pub(crate) fn new(slot: usize) -> Self {
        Self(slot)
    }

    pub(crate) fn slot(self) -> usize {
        self.0
    }
}

struct Entry<K, V> {
    key: K,
    value: V,
    last_used: Instant,
    /// The next less recently used slot, or NONE.
    older: usize,
    /// The next more recently used slot, or NONE.
    newer: usize,
}

pub(crate) struct FlowTable<K, V> {
    index: HashMap<K, usize>,
    slots: Vec<Option<Entry<K, V>>>,
    free: Vec<usize>,
    oldest: usize,
    newest: usize,
    capacity: usize,
    idle_timeout: Duration,
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    /// A table of at most `capacity` flows (0 refuses every flow) that forgets a flow
    /// `idle_timeout` (at least 1 ns) after its last use.
    pub(crate) fn new(capacity: usize, idle_timeout: Duration) -> Self {
        // Never zero, so that a flow used at `now` does not lapse at `now`: the worker holds
        // the IDs of a batch's flows until it sends, while opening others may expire some.
        let idle_timeout = idle_timeout.max(Duration::from_nanos(1));
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            oldest: NONE,
            newest: NONE,
            capacity,
            idle_timeout,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// The flow of `key`, marked used at `now`.
    pub(crate) fn find(&mut self, key: &K, now: Instant) -> Option<FlowId> {
        let slot = *self.index.get(key)?;
        self.touch(FlowId(slot), now);
        Some(FlowId(slot))
    }

    /// Adds a flow used at `now`; a full table hands the value back. The caller looks the key
    /// up first: an existing flow of `key` is replaced, its value dropped.
    pub(crate) fn insert(&mut self, key: K, value: V, now: Instant) -> Result<FlowId, V> {
        if let Some(old) = self.index.get(&key).copied() {
            self.remove(FlowId(old));
        }
        if self.is_full() {
            return Err(value);
        }
        let entry = Entry {
            key: key.clone(),
            value,
            last_used: now,
            older: self.newest,
            newer: NONE,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(vacant) = self.slots.get_mut(slot) {
                    *vacant = Some(entry);
                }
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.set_newer(self.newest, slot);
        self.newest = slot;
        if self.oldest == NONE {
            self.oldest = slot;
        }
        self.index.insert(key, slot);
        Ok(FlowId(slot))
    }

    /// The value of flow `id`, if it lives.
    pub(crate) fn get(&self, id: FlowId) -> Option<&V> {
        Some(&self.slots.get(id.0)?.as_ref()?.value)
    }

    /// The key and value of flow `id`, if it lives.
    pub(crate) fn get_mut(&mut self, id: FlowId) -> Option<(&K, &mut V)> {
        let entry = self.entry_mut(id.0)?;
        Some((&entry.key, &mut entry.value))
    }

    /// Marks flow `id` used at `now` (the clock never runs backwards for it).
    pub(crate) fn touch(&mut self, id: FlowId, now: Instant) {
        let slot = id.0;
        let Some(entry) = self.entry_mut(slot) else {
            return;
        };
        entry.last_used = entry.last_used.max(now);
        if self.newest == slot {
            return;
        }
        self.unlink(slot);
        self.set_newer(self.newest, slot);
        self.set_older(slot, self.newest);
        self.newest = slot;
    }

    /// Removes flow `id`, returning its key and value.
    pub(crate) fn remove(&mut self, id: FlowId) -> Option<(K, V)> {
        let slot = id.0;
        self.entry_mut(slot)?;
        self.unlink(slot);
        let entry = self.slots.get_mut(slot)?.take()?;
        self.index.remove(&entry.key);
        self.free.push(slot);
        Some((entry.key, entry.value))
    }

    /// Removes and returns the least recently used flow if it has been idle for the idle
    /// timeout at `now`; call until `None` to expire every lapsed flow.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<(K, V)> {
        if self.next_expiry()? > now {
            return None;
        }
        self.remove(FlowId(self.oldest))
    }

    /// When the least recently used flow lapses, if there is one.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let oldest = self.slots.get(self.oldest)?.as_ref()?;
        Some(oldest.last_used + self.idle_timeout)
    }

    fn entry_mut(&mut self, slot: usize) -> Option<&mut Entry<K, V>> {
        self.slots.get_mut(slot)?.as_mut()
    }

    fn set_newer(&mut self, slot: usize, newer: usize) {
        if let Some(entry) = self.entry_mut(slot) {
            entry.newer = newer;
        }
    }

    fn set_older(&mut self, slot: usize, older: usize) {
        if let Some(entry) = self.entry_mut(slot) {
            entry.older = older;
        }
    }

    /// Takes `slot` off the recency list, joining its neighbours.
    fn unlink(&mut self, slot: usize) {
        let Some(entry) = self.entry_mut(slot) else {
            return;
        };
        let (older, newer) = (entry.older, entry.newer);
        entry.older = NONE;
        entry.newer = NONE;
        if older == NONE {
            self.oldest = newer;
        } else {
            self.set_newer(older, newer);
        }
        if newer == NONE {
            self.newest = older;
        } else {
            self.set_older(newer, older);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(10);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    /// Drains every lapsed flow at `now`, returning their keys.
    fn expired(table: &mut FlowTable<u32, &'static str>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| table.expire(now).map(|(key, _)| key)).collect()
    }

    #[test]
    fn finds_inserted_flows_by_key_and_by_id() {
        let start = Instant::now();
        let mut table = FlowTable::new(4, IDLE);
        let a = table.insert(1, "a", start).expect("room");
        let b = table.insert(2, "b", start).expect("room");
        assert_ne!(a, b);
        assert_eq!(table.find(&1, start), Some(a));
        assert_eq!(table.find(&3, start), None);
        assert_eq!(table.get_mut(b).map(|(k, v)| (*k, *v)), Some((2, "b")));
        assert_eq!(table.get(a), Some(&"a"));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn idle_flows_expire_least_recently_used_first() {
        let start = Instant::now();
        let mut table = FlowTable::new(8, IDLE);
        for key in 1..=3 {
            table
                .insert(key, "v", at(start, u64::from(key)))
                .expect("room");
        }
        // Using flow 1 at t=5 makes flow 2 the oldest.
        assert!(table.find(&1, at(start, 5)).is_some());
        assert_eq!(table.next_expiry(), Some(at(start, 12)));
        assert_eq!(expired(&mut table, at(start, 11)), Vec::<u32>::new());
        assert_eq!(expired(&mut table, at(start, 13)), [2, 3]);
        assert_eq!(table.next_expiry(), Some(at(start, 15)));
        assert_eq!(expired(&mut table, at(start, 15)), [1]);
        assert_eq!(table.len(), 0);
        assert_eq!(table.next_expiry(), None);
    }

    #[test]
    fn touch_by_id_keeps_a_flow_alive() {
        let start = Instant::now();
        let mut table = FlowTable::new(8, IDLE);
        let a = table.insert(1, "a", start).expect("room");
        table.insert(2, "b", start).expect("room");
        table.touch(a, at(start, 9));
        assert_eq!(expired(&mut table, at(start, 10)), [2]);
        // An older time never moves a flow back.
        table.touch(a, at(start, 1));
        assert_eq!(table.next_expiry(), Some(at(start, 19)));
    }

    #[test]
    fn a_full_table_refuses_new_flows_and_keeps_old_ones() {
        let start = Instant::now();
        let mut table = FlowTable::new(2, IDLE);
        table.insert(1, "a", start).expect("room");
        table.insert(2, "b", start).expect("room");
        assert!(table.is_full());
        assert_eq!(table.insert(3, "c", start), Err("c"));
        assert!(table.find(&1, start).is_some());
        assert!(table.find(&2, start).is_some());
        // Once one lapses there is room again.
        assert_eq!(expired(&mut table, at(start, 10)), [1, 2]);
        assert!(table.insert(3, "c", at(start, 10)).is_ok());
    }

    #[test]
    fn a_zero_capacity_table_refuses_everything() {
        let mut table = FlowTable::new(0, IDLE);
        assert_eq!(table.insert(1, "a", Instant::now()), Err("a"));
    }

    #[test]
    fn removed_slots_are_reused_and_the_list_stays_whole() {
        let start = Instant::now();
        let mut table = FlowTable::new(8, IDLE);
        let ids: Vec<FlowId> = (1..=4)
            .map(|key| table.insert(key, "v", start).expect("room"))
            .collect();
        // Remove from the middle, the head and the tail of the recency list.
        for (index, key) in [(1, 2), (0, 1), (3, 4)] {
            assert_eq!(table.remove(ids[index]).map(|(k, _)| k), Some(key));
        }
        assert_eq!(table.remove(ids[0]), None);
        assert_eq!(table.get_mut(ids[0]).map(|(k, _)| *k), None);
        let reused = table.insert(5, "w", at(start, 1)).expect("room");
        assert!(ids.contains(&reused));
        assert_eq!(expired(&mut table, at(start, 11)), [3, 5]);
    }

    #[test]
    fn inserting_an_existing_key_replaces_its_flow() {
        let start = Instant::now();
        let mut table = FlowTable::new(1, IDLE);
        table.insert(1, "a", start).expect("room");
        let id = table.insert(1, "b", start).expect("replaced");
        assert_eq!(table.get_mut(id).map(|(_, v)| *v), Some("b"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_random_workload_keeps_the_bookkeeping_consistent() {
        // A deterministic pseudo-random sequence of operations, checked against a model.
        let start = Instant::now();
        let mut table = FlowTable::new(16, IDLE);
        let mut model: HashMap<u32, Instant> = HashMap::new();
        let mut state = 0x2545_f491_u32;
        for step in 0..5000u64 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let now = start + Duration::from_millis(step * 7);
            let key = state % 40;
            match state % 3 {
                0 => {
                    if table.find(&key, now).is_some() {
                        model.insert(key, now);
                    }
                }
                1 => {
                    if table.find(&key, now).is_none() {
                        let inserted = table.insert(key, "v", now).is_ok();
                        assert_eq!(inserted, model.len() < 16);
                        if inserted {
                            model.insert(key, now);
                        }
                    } else {
                        model.insert(key, now);
                    }
                }
                _ => {
                    while let Some((gone, _)) = table.expire(now) {
                        let last = model.remove(&gone).expect("in model");
                        assert!(last + IDLE <= now);
                    }
                    assert!(model.values().all(|last| *last + IDLE > now));
                }
            }
            assert_eq!(table.len(), model.len());
            assert_eq!(
                table.next_expiry(),
                model.values().min().map(|last| *last + IDLE)
            );
        }
    }
}
