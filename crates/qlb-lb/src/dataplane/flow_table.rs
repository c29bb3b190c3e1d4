//! The proxy's flow table, without I/O: a bounded map from flow key to flow whose entries
//! lapse after an idle timeout, in two classes.
//!
//! A new flow is *unconfirmed* until [`FlowTable::confirm`] (its backend answered). Anyone can
//! make unconfirmed flows, spoofing source addresses, so they have a cap of their own and are
//! the ones evicted, least recently used first, to make room ([`FlowTable::make_room`]). A
//! confirmed flow has a backend talking to its client and is only forgotten when idle: a
//! flood of strangers never pushes it out.
//!
//! Entries live in slots (a slot number is the flow's identity, and names its socket to the
//! event loop) and on their class's recency list, least recently used first, so that evicting,
//! finding the lapsed entries and the next expiry are O(1) each.
//!
//! A flow moves to the newest end of its list at most once per [`RELINK_AFTER`]: moving it on
//! every datagram (two neighbours' links rewritten, scattered in memory) was a tenth of the
//! worker's instructions per datagram with interleaved flows. A flow used within
//! `RELINK_AFTER` of its move was last used at most that long after the flows behind it were
//! moved, so the lists stay in order of last use to within `RELINK_AFTER`: eviction is least
//! recently used to within it, and a flow may lapse up to it late, behind one used later
//! than it (never early: expiry checks the flow's own last use, and eviction spares a flow
//! used now).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::stats::FlowEviction;

/// "No slot": the end of a recency list.
const NONE: usize = usize::MAX;

/// How long a flow stays where it is on its recency list after a move.
pub(crate) const RELINK_AFTER: Duration = Duration::from_millis(1);

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

/// The two classes, indexing [`FlowTable::lists`].
const UNCONFIRMED: usize = 0;
const CONFIRMED: usize = 1;

struct Entry<K, V> {
    key: K,
    value: V,
    last_used: Instant,
    /// When it last moved to the newest end of its list.
    linked_at: Instant,
    /// UNCONFIRMED or CONFIRMED: the list the entry is on.
    class: usize,
    /// The next less recently used slot of its class, or NONE.
    older: usize,
    /// The next more recently used slot of its class, or NONE.
    newer: usize,
}

/// One class's recency list.
#[derive(Clone, Copy)]
struct List {
    oldest: usize,
    newest: usize,
    len: usize,
}

impl List {
    const EMPTY: Self = Self {
        oldest: NONE,
        newest: NONE,
        len: 0,
    };
}

/// Every slot holds a confirmed flow: no room for a new one until one lapses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Full;

/// A flow removed to make room for a new one, and why.
pub(crate) type Evicted<K, V> = (FlowEviction, K, V);

pub(crate) struct FlowTable<K, V> {
    index: HashMap<K, usize>,
    slots: Vec<Option<Entry<K, V>>>,
    free: Vec<usize>,
    lists: [List; 2],
    capacity: usize,
    unconfirmed_capacity: usize,
    idle_timeout: Duration,
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    /// A table of at most `capacity` flows, at most `unconfirmed_capacity` of them unconfirmed
    /// (either 0 refuses every flow), that forgets a flow `idle_timeout` (at least 1 ns) after
    /// its last use.
    pub(crate) fn new(
        capacity: usize,
        unconfirmed_capacity: usize,
        idle_timeout: Duration,
    ) -> Self {
        // Never zero, so that a flow used at `now` does not lapse at `now`: the worker holds
        // the IDs of a batch's flows until it sends, while opening others may expire some.
        let idle_timeout = idle_timeout.max(Duration::from_nanos(1));
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            lists: [List::EMPTY; 2],
            capacity,
            unconfirmed_capacity: unconfirmed_capacity.min(capacity),
            idle_timeout,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Flows that have not been confirmed.
    pub(crate) fn unconfirmed(&self) -> usize {
        self.lists[UNCONFIRMED].len
    }

    /// Whether a new flow needs [`FlowTable::make_room`] first.
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.capacity || self.unconfirmed() >= self.unconfirmed_capacity
    }

    /// Makes room for one new flow at `now` by evicting the least recently used unconfirmed
    /// flow if the unconfirmed class or the whole table is full; [`Full`] when there is none,
    /// or it was used at `now` (the caller may still hold its ID), or a capacity is 0. Expire
    /// lapsed flows first: they go before any live one.
    pub(crate) fn make_room(&mut self, now: Instant) -> Result<Option<Evicted<K, V>>, Full> {
        let reason = if self.unconfirmed() >= self.unconfirmed_capacity {
            FlowEviction::UnconfirmedCap
        } else if self.len() >= self.capacity {
            FlowEviction::TableFull
        } else {
            return Ok(None);
        };
        let oldest = self.lists[UNCONFIRMED].oldest;
        let in_use = |entry: &Entry<K, V>| entry.last_used >= now;
        if self
            .slots
            .get(oldest)
            .and_then(Option::as_ref)
            .is_none_or(in_use)
        {
            return Err(Full);
        }
        let (key, value) = self.remove(FlowId(oldest)).ok_or(Full)?;
        Ok(Some((reason, key, value)))
    }

    /// The flow of `key`, marked used at `now`.
    pub(crate) fn find(&mut self, key: &K, now: Instant) -> Option<FlowId> {
        let slot = *self.index.get(key)?;
        self.touch(FlowId(slot), now);
        Some(FlowId(slot))
    }

    /// Adds an unconfirmed flow used at `now`; a full table hands the value back (see
    /// [`FlowTable::make_room`]). The caller looks the key up first: an existing flow of `key`
    /// is replaced, its value dropped.
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
            linked_at: now,
            class: UNCONFIRMED,
            older: NONE,
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
        self.link_newest(slot, UNCONFIRMED, now);
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
        self.use_as(id, now, None);
    }

    /// Marks flow `id` used at `now` and confirmed; true if it was unconfirmed until now.
    pub(crate) fn confirm(&mut self, id: FlowId, now: Instant) -> bool {
        self.use_as(id, now, Some(CONFIRMED))
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
        let (slot, expiry) = self.oldest()?;
        if expiry > now {
            return None;
        }
        self.remove(FlowId(slot))
    }

    /// When the least recently used flow lapses, if there is one.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.oldest().map(|(_, expiry)| expiry)
    }

    /// The least recently used flow of either class, and when it lapses.
    fn oldest(&self) -> Option<(usize, Instant)> {
        self.lists
            .iter()
            .filter_map(|list| {
                let entry = self.slots.get(list.oldest)?.as_ref()?;
                Some((list.oldest, entry.last_used + self.idle_timeout))
            })
            .min_by_key(|(_, expiry)| *expiry)
    }

    /// Marks flow `id` used at `now`, moving it to class `to` if given; true if it changed
    /// class.
    fn use_as(&mut self, id: FlowId, now: Instant, to: Option<usize>) -> bool {
        let slot = id.0;
        let Some(entry) = self.entry_mut(slot) else {
            return false;
        };
        entry.last_used = entry.last_used.max(now);
        let from = entry.class;
        let class = to.unwrap_or(from);
        let recent = now < entry.linked_at + RELINK_AFTER;
        let last_used = entry.last_used;
        if class == from && (recent || self.lists[from].newest == slot) {
            return false;
        }
        self.unlink(slot);
        self.link_newest(slot, class, last_used);
        class != from
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

    /// Puts the unlinked `slot` at the newest end of `class`'s list, moved at `at`.
    fn link_newest(&mut self, slot: usize, class: usize, at: Instant) {
        let list = self.lists[class];
        let Some(entry) = self.entry_mut(slot) else {
            return;
        };
        entry.class = class;
        entry.linked_at = at;
        entry.older = list.newest;
        entry.newer = NONE;
        self.set_newer(list.newest, slot);
        let list = &mut self.lists[class];
        list.newest = slot;
        if list.oldest == NONE {
            list.oldest = slot;
        }
        list.len += 1;
    }

    /// Takes `slot` off its class's recency list, joining its neighbours.
    fn unlink(&mut self, slot: usize) {
        let Some(entry) = self.entry_mut(slot) else {
            return;
        };
        let (older, newer, class) = (entry.older, entry.newer, entry.class);
        entry.older = NONE;
        entry.newer = NONE;
        if older == NONE {
            self.lists[class].oldest = newer;
        } else {
            self.set_newer(older, newer);
        }
        if newer == NONE {
            self.lists[class].newest = older;
        } else {
            self.set_older(newer, older);
        }
        self.lists[class].len = self.lists[class].len.saturating_sub(1);
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
        let mut table = FlowTable::new(4, 4, IDLE);
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
        let mut table = FlowTable::new(8, 8, IDLE);
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
        let mut table = FlowTable::new(8, 8, IDLE);
        let a = table.insert(1, "a", start).expect("room");
        table.insert(2, "b", start).expect("room");
        table.touch(a, at(start, 9));
        assert_eq!(expired(&mut table, at(start, 10)), [2]);
        // An older time never moves a flow back.
        table.touch(a, at(start, 1));
        assert_eq!(table.next_expiry(), Some(at(start, 19)));
    }

    #[test]
    fn a_table_full_of_confirmed_flows_refuses_new_ones_and_keeps_old_ones() {
        let start = Instant::now();
        let mut table = FlowTable::new(2, 2, IDLE);
        for key in [1, 2] {
            let id = table.insert(key, "v", start).expect("room");
            assert!(table.confirm(id, start));
        }
        assert!(table.is_full());
        assert_eq!(table.insert(3, "c", start), Err("c"));
        assert!(table.make_room(at(start, 1)).is_err());
        assert!(table.find(&1, start).is_some());
        assert!(table.find(&2, start).is_some());
        // Once one lapses there is room again.
        assert_eq!(expired(&mut table, at(start, 10)), [1, 2]);
        assert!(matches!(table.make_room(at(start, 10)), Ok(None)));
        assert!(table.insert(3, "c", at(start, 10)).is_ok());
    }

    /// Makes room and inserts `key` at `now`, returning the evicted key and why.
    fn admit(
        table: &mut FlowTable<u32, &'static str>,
        key: u32,
        now: Instant,
    ) -> Option<(FlowEviction, u32)> {
        let evicted = table.make_room(now).expect("room can be made");
        table.insert(key, "v", now).expect("room made");
        evicted.map(|(reason, key, _)| (reason, key))
    }

    #[test]
    fn a_full_unconfirmed_class_evicts_its_least_recently_used_flow() {
        let start = Instant::now();
        let mut table = FlowTable::new(8, 2, IDLE);
        let confirmed = table.insert(1, "c", start).expect("room");
        table.confirm(confirmed, start);
        assert_eq!(admit(&mut table, 2, start), None);
        assert_eq!(admit(&mut table, 3, at(start, 1)), None);
        assert_eq!(table.unconfirmed(), 2);
        // Using 2 again makes 3 the least recently used unconfirmed flow.
        assert!(table.find(&2, at(start, 2)).is_some());
        assert_eq!(
            admit(&mut table, 4, at(start, 3)),
            Some((FlowEviction::UnconfirmedCap, 3))
        );
        assert_eq!(
            admit(&mut table, 5, at(start, 3)),
            Some((FlowEviction::UnconfirmedCap, 2))
        );
        // The confirmed flow, though the oldest, stays.
        assert!(table.find(&1, at(start, 3)).is_some());
        assert_eq!((table.len(), table.unconfirmed()), (3, 2));
    }

    #[test]
    fn a_full_table_evicts_unconfirmed_flows_before_refusing() {
        let start = Instant::now();
        let mut table = FlowTable::new(3, 3, IDLE);
        let a = table.insert(1, "a", start).expect("room");
        table.insert(2, "b", start).expect("room");
        let c = table.insert(3, "c", start).expect("room");
        table.confirm(a, start);
        table.confirm(c, start);
        let later = at(start, 1);
        assert_eq!(
            admit(&mut table, 4, later),
            Some((FlowEviction::TableFull, 2))
        );
        // A flow used now may be held by the batch being forwarded: never evicted.
        assert!(table.make_room(later).is_err());
        let d = table.find(&4, later).expect("admitted");
        assert!(table.confirm(d, later));
        assert!(!table.confirm(d, later), "confirmed once");
        assert!(table.make_room(at(start, 2)).is_err());
    }

    #[test]
    fn idle_flows_of_both_classes_expire_in_order_of_last_use() {
        let start = Instant::now();
        let mut table = FlowTable::new(8, 8, IDLE);
        let a = table.insert(1, "a", start).expect("room");
        table.insert(2, "b", at(start, 1)).expect("room");
        table.insert(3, "c", at(start, 2)).expect("room");
        // Confirmed at t=3: used then, so it lapses last.
        table.confirm(a, at(start, 3));
        assert_eq!(table.next_expiry(), Some(at(start, 11)));
        assert_eq!(expired(&mut table, at(start, 12)), [2, 3]);
        assert_eq!(expired(&mut table, at(start, 13)), [1]);
    }

    #[test]
    fn a_zero_capacity_table_refuses_everything() {
        let mut table = FlowTable::new(0, 0, IDLE);
        assert_eq!(table.insert(1, "a", Instant::now()), Err("a"));
    }

    #[test]
    fn removed_slots_are_reused_and_the_list_stays_whole() {
        let start = Instant::now();
        let mut table = FlowTable::new(8, 8, IDLE);
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
        let mut table = FlowTable::new(1, 1, IDLE);
        table.insert(1, "a", start).expect("room");
        let id = table.insert(1, "b", start).expect("replaced");
        assert_eq!(table.get_mut(id).map(|(_, v)| *v), Some("b"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn flows_used_within_relink_after_keep_their_place_but_never_lapse_early() {
        let start = Instant::now();
        let mut table = FlowTable::new(4, 4, IDLE);
        let a = table.insert(1, "a", start).expect("room");
        table
            .insert(2, "b", start + Duration::from_micros(10))
            .expect("room");
        // Used again within RELINK_AFTER of its insertion: it keeps its place, oldest.
        let used = start + Duration::from_micros(500);
        table.touch(a, used);
        assert_eq!(table.lists[UNCONFIRMED].oldest, a.slot());
        // It does not lapse before IDLE after its last use, and holds up b (used earlier, by
        // less than RELINK_AFTER) until then.
        let b_lapses = start + Duration::from_micros(10) + IDLE;
        assert!(table.expire(b_lapses).is_none());
        assert_eq!(expired(&mut table, used + IDLE), [1, 2]);
        // Used later than that, a flow moves.
        let c = table.insert(3, "c", used + IDLE).expect("room");
        table.insert(4, "d", used + IDLE).expect("room");
        table.touch(c, used + IDLE + RELINK_AFTER);
        assert_eq!(table.lists[UNCONFIRMED].newest, c.slot());
    }

    #[test]
    fn a_random_workload_keeps_the_bookkeeping_consistent() {
        // A deterministic pseudo-random sequence of operations, checked against a model of
        // key -> (last use, confirmed).
        const CAPACITY: usize = 16;
        const UNCONFIRMED_CAPACITY: usize = 5;
        let start = Instant::now();
        let mut table = FlowTable::new(CAPACITY, UNCONFIRMED_CAPACITY, IDLE);
        let mut model: HashMap<u32, (Instant, bool)> = HashMap::new();
        let mut state = 0x2545_f491_u32;
        for step in 0..20_000u64 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let now = start + Duration::from_millis(step * 7);
            let key = state % 40;
            let unconfirmed = model.values().filter(|(_, confirmed)| !confirmed).count();
            // The least recently used unconfirmed flow: the one to evict.
            let oldest_unconfirmed = model
                .iter()
                .filter(|(_, (_, confirmed))| !confirmed)
                .min_by_key(|(_, (last, _))| *last)
                .map(|(key, _)| *key);
            match state % 4 {
                0 => {
                    if table.find(&key, now).is_some() {
                        model.entry(key).and_modify(|(last, _)| *last = now);
                    }
                }
                1 => {
                    if table.find(&key, now).is_some() {
                        model.entry(key).and_modify(|(last, _)| *last = now);
                    } else {
                        let full = model.len() >= CAPACITY;
                        let expected = if unconfirmed >= UNCONFIRMED_CAPACITY {
                            Ok(Some(FlowEviction::UnconfirmedCap))
                        } else if full && unconfirmed > 0 {
                            Ok(Some(FlowEviction::TableFull))
                        } else if full {
                            Err(Full)
                        } else {
                            Ok(None)
                        };
                        let evicted = table.make_room(now);
                        assert_eq!(
                            evicted.as_ref().map(|e| e.as_ref().map(|(r, _, _)| *r)),
                            expected.as_ref().map(|e| e.as_ref().copied())
                        );
                        if let Ok(Some((_, gone, _))) = evicted {
                            assert_eq!(Some(gone), oldest_unconfirmed);
                            model.remove(&gone);
                        }
                        let inserted = table.insert(key, "v", now).is_ok();
                        assert_eq!(inserted, expected.is_ok());
                        if inserted {
                            model.insert(key, (now, false));
                        }
                    }
                }
                2 => {
                    if let Some(id) = table.find(&key, now) {
                        let was = model.insert(key, (now, true)).expect("in model");
                        assert_eq!(table.confirm(id, now), !was.1);
                    }
                }
                _ => {
                    while let Some((gone, _)) = table.expire(now) {
                        let (last, _) = model.remove(&gone).expect("in model");
                        assert!(last + IDLE <= now);
                    }
                    assert!(model.values().all(|(last, _)| *last + IDLE > now));
                }
            }
            assert_eq!(table.len(), model.len());
            assert_eq!(
                table.unconfirmed(),
                model.values().filter(|(_, confirmed)| !confirmed).count()
            );
            assert!(table.unconfirmed() <= UNCONFIRMED_CAPACITY && table.len() <= CAPACITY);
            assert_eq!(
                table.next_expiry(),
                model.values().map(|(last, _)| *last + IDLE).min()
            );
        }
    }
}
