//! Transmit-limited broadcast queues (memberlist's `TransmitLimitedQueue`, bounded).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::hash::Hash;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::wire::part_cost;

/// `mult * ceil(log10(n + 1))`: how often an event is sent before it leaves the queue.
pub(crate) fn retransmit_limit(mult: u32, nodes: usize) -> u32 {
    let mut digits = 0u32;
    let mut n = nodes.saturating_add(1);
    // ceil(log10(x)) for x >= 1 is the number of digits of (x - 1).
    n -= 1;
    while n > 0 {
        digits += 1;
        n /= 10;
    }
    mult.saturating_mul(digits.max(1))
}

/// Order: fewest transmits first, then newest first.
type Slot = (u32, Reverse<u64>);

#[derive(Debug)]
struct Item<K> {
    key: Option<K>,
    bytes: Bytes,
}

/// A queue of encoded events. A new item replaces a queued item with the same key
/// (invalidation); draining prefers items sent the fewest times, newest first.
#[derive(Debug)]
pub(crate) struct BroadcastQueue<K> {
    items: BTreeMap<Slot, Item<K>>,
    by_key: HashMap<K, Slot>,
    next_id: u64,
    max_len: usize,
    /// Sum of the queued items' [`part_cost`]s.
    bytes: usize,
}

impl<K: Clone + Eq + Hash> BroadcastQueue<K> {
    pub(crate) fn new(max_len: usize) -> Self {
        Self {
            items: BTreeMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            max_len,
            bytes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes the queued items take inside compounds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Removes and returns every queued item, freshest first.
    pub(crate) fn take_all(&mut self) -> Vec<Bytes> {
        self.by_key.clear();
        self.bytes = 0;
        std::mem::take(&mut self.items)
            .into_values()
            .map(|i| i.bytes)
            .collect()
    }

    /// Queues `bytes`, replacing the item queued under the same key. Returns how many items
    /// were dropped because the queue was full.
    pub(crate) fn push(&mut self, key: Option<K>, bytes: Bytes) -> usize {
        if let Some(k) = &key
            && let Some(slot) = self.by_key.remove(k)
            && let Some(old) = self.items.remove(&slot)
        {
            self.bytes -= part_cost(old.bytes.len());
        }
        let slot = (0, Reverse(self.next_id));
        self.next_id += 1;
        if let Some(k) = &key {
            self.by_key.insert(k.clone(), slot);
        }
        self.bytes += part_cost(bytes.len());
        self.items.insert(slot, Item { key, bytes });
        let mut dropped = 0;
        while self.items.len() > self.max_len {
            // The last slot is the most-sent, oldest item: the one peers most likely hold.
            if let Some((_, item)) = self.items.pop_last() {
                self.forget(&item);
                dropped += 1;
            }
        }
        dropped
    }

    /// Takes the items that fit in `budget` bytes (each costs [`part_cost`]; only never-sent
    /// ones if `fresh_only`, as the eager push does), charges each `charge` transmits (one per
    /// copy sent) and retires those that reach `limit`. Returns the bytes used.
    pub(crate) fn drain(
        &mut self,
        budget: usize,
        fresh_only: bool,
        charge: u32,
        limit: u32,
        out: &mut Vec<Bytes>,
    ) -> usize {
        let (used, taken) = self.select(budget, fresh_only, out);
        self.charge(taken, charge.max(1), limit);
        used
    }

    /// Whether an item waits for its first transmission.
    pub(crate) fn has_fresh(&self) -> bool {
        self.items
            .first_key_value()
            .is_some_and(|(slot, _)| slot.0 == 0)
    }

    /// Copies into `out`, in drain order, the items that fit in `budget` bytes (each costs
    /// [`part_cost`]; only never-sent ones if `fresh_only`). Returns the bytes used and the
    /// slots taken.
    fn select(&self, budget: usize, fresh_only: bool, out: &mut Vec<Bytes>) -> (usize, Vec<Slot>) {
        let mut used = 0;
        let mut taken = Vec::new();
        for (slot, item) in &self.items {
            if fresh_only && slot.0 > 0 {
                break;
            }
            let cost = part_cost(item.bytes.len());
            if used + cost > budget {
                if budget - used < 16 {
                    break;
                }
                continue;
            }
            used += cost;
            out.push(item.bytes.clone());
            taken.push(*slot);
        }
        (used, taken)
    }

    /// Charges the items in `slots` `charge` transmits each, retiring those that reach `limit`.
    fn charge(&mut self, slots: Vec<Slot>, charge: u32, limit: u32) {
        for slot in slots {
            let Some(item) = self.items.remove(&slot) else {
                continue;
            };
            let sent = slot.0.saturating_add(charge);
            if sent >= limit {
                self.forget(&item);
                continue;
            }
            let new_slot = (sent, slot.1);
            if let Some(k) = &item.key {
                self.by_key.insert(k.clone(), new_slot);
            }
            self.items.insert(new_slot, item);
        }
    }

    /// Keys of the queued items.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<K> {
        self.items.values().filter_map(|i| i.key.clone()).collect()
    }

    /// Bookkeeping for an item that left the queue.
    fn forget(&mut self, item: &Item<K>) {
        self.bytes -= part_cost(item.bytes.len());
        if let Some(k) = &item.key {
            self.by_key.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_formula() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 99), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
        assert_eq!(retransmit_limit(4, 999), 12);
        assert_eq!(retransmit_limit(4, 0), 4);
    }

    #[test]
    fn invalidation_keeps_newest_per_key() {
        let mut q = BroadcastQueue::new(100);
        q.push(Some("k"), Bytes::from_static(b"old"));
        q.push(Some("j"), Bytes::from_static(b"other"));
        q.push(Some("k"), Bytes::from_static(b"new"));
        assert_eq!(q.len(), 2);
        let mut out = Vec::new();
        q.drain(1000, false, 1, 4, &mut out);
        assert_eq!(
            out,
            vec![Bytes::from_static(b"new"), Bytes::from_static(b"other")]
        );
    }

    #[test]
    fn retires_after_limit_and_respects_budget() {
        let mut q: BroadcastQueue<u32> = BroadcastQueue::new(100);
        for i in 0..10 {
            q.push(Some(i), Bytes::from(vec![0u8; 99]));
        }
        let mut out = Vec::new();
        assert_eq!(q.drain(450, false, 1, 2, &mut out), 400);
        assert_eq!(out.len(), 4);
        for _ in 0..10 {
            out.clear();
            q.drain(450, false, 1, 2, &mut out);
        }
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn byte_count_follows_every_change() {
        let mut q: BroadcastQueue<u32> = BroadcastQueue::new(16);
        q.push(Some(1), Bytes::from(vec![0; 10]));
        q.push(Some(1), Bytes::from(vec![0; 20]));
        q.push(Some(2), Bytes::from(vec![0; 200]));
        assert_eq!(q.bytes(), 21 + 202);
        let mut out = Vec::new();
        q.drain(1000, false, 1, 1, &mut out);
        assert_eq!(q.bytes(), 0);
        for i in 0..20 {
            q.push(Some(i), Bytes::from(vec![0; 5]));
        }
        assert_eq!(q.bytes(), 16 * 6);
        assert_eq!(q.take_all().len(), 16);
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn fresh_items_drain_once_then_wait_for_ticks() {
        let mut q: BroadcastQueue<u32> = BroadcastQueue::new(100);
        q.push(Some(1), Bytes::from_static(b"a"));
        q.push(Some(2), Bytes::from_static(b"b"));
        assert!(q.has_fresh());
        let mut out = Vec::new();
        q.drain(1000, true, 1, 4, &mut out);
        assert_eq!(out.len(), 2);
        assert!(!q.has_fresh());
        out.clear();
        q.drain(1000, true, 1, 4, &mut out);
        assert!(out.is_empty(), "sent items are not fresh");
        // The ticks still send them, up to the limit in all.
        for _ in 0..3 {
            out.clear();
            q.drain(1000, false, 1, 4, &mut out);
            assert_eq!(out.len(), 2);
        }
        assert_eq!(q.len(), 0);
        // A charge of several transmits (one per copy) retires sooner.
        q.push(Some(3), Bytes::from_static(b"c"));
        out.clear();
        q.drain(1000, true, 4, 4, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn bounded() {
        let mut q: BroadcastQueue<u32> = BroadcastQueue::new(16);
        let dropped: usize = (0..20)
            .map(|i| q.push(Some(i), Bytes::from_static(b"x")))
            .sum();
        assert_eq!(dropped, 4);
        assert_eq!(q.len(), 16);
        assert!(!q.keys().contains(&0));
    }
}
