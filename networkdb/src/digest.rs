//! Digest-first anti-entropy: the periodic sync compares summaries of each shared network
//! before any entry is sent, and then sends only the buckets of keys that differ.
//!
//! 1. The requester sends a [`SyncDigest`] with, per shared network, a hash of its attachments
//!    and a hash and count of its entries.
//! 2. The peer answers with a [`SyncDigest`] listing only the networks whose summaries differ
//!    from its own, each with its entries split by key into buckets, one 32-bit hash each.
//! 3. For those, the requester sends a [`PartialSync`] of the buckets whose hashes differ
//!    (with the network's attachments); the peer applies it and answers with its own entries of
//!    the same buckets.
//!
//! Idle, a round costs two small messages per pair instead of two copies of every table.
//! Hashes are order-independent sums of per-entry XXH3 hashes. Each entry keeps its own two
//! hashes (key and version, set when it is stored), so a summary is a pass of additions; no
//! index is kept beside the tables.

use std::time::Instant;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::db::SyncKind;
use crate::entry::Entry;
use crate::wire::{
    MAX_SYNC_BUCKETS, Message, NetworkDigest, PartialSync, PushPullDigest, SyncDigest, SyncScope,
};
use crate::{Channel, LTime, NetworkDb, NetworkId, NodeName};

/// Entries per bucket a digest reply aims at when it splits a network that differs.
const ENTRIES_PER_BUCKET: usize = 8;

/// XXH3-64 with `seed` of the concatenation of `parts` (the one-shot function: the streaming
/// hasher's state is larger than the short inputs hashed here). Short inputs are gathered on
/// the stack.
fn hash_parts(seed: u64, parts: &[&[u8]]) -> u64 {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut stack = [0u8; 256];
    if len > stack.len() {
        return xxh3_64_with_seed(&parts.concat(), seed);
    }
    let mut at = 0;
    for part in parts {
        stack[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    xxh3_64_with_seed(&stack[..len], seed)
}

/// A key's place in a bucket split: hash of `(table, key)`, the same on every node.
pub(crate) fn key_hash(table: &str, key: &str) -> u64 {
    let table_len = (table.len() as u32).to_le_bytes();
    hash_parts(0, &[&table_len, table.as_bytes(), key.as_bytes()])
}

/// The bucket of a key hash among `buckets` (at least 1).
pub(crate) fn bucket_of(key_hash: u64, buckets: u32) -> u32 {
    (key_hash % u64::from(buckets.max(1))) as u32
}

/// Hash of one entry's version: its owner, time and whether it is a tombstone. The value
/// is not hashed: an owner writes one value per time.
pub(crate) fn entry_hash(key_hash: u64, e: &Entry) -> u64 {
    hash_parts(
        key_hash,
        &[
            e.owner.as_bytes(),
            &e.ltime.0.to_le_bytes(),
            &[u8::from(e.deleting)],
        ],
    )
}

/// Hash of one attachment record: `node` attached to `network` at `ltime`, leaving or not.
pub(crate) fn attachment_hash(network: &str, node: &str, ltime: LTime, leaving: bool) -> u64 {
    let network_len = (network.len() as u32).to_le_bytes();
    hash_parts(
        0,
        &[
            &network_len,
            network.as_bytes(),
            node.as_bytes(),
            &ltime.0.to_le_bytes(),
            &[u8::from(leaving)],
        ],
    )
}

/// How many buckets a network of `count` entries is split into.
fn bucket_count(count: usize) -> u32 {
    let wanted = count.div_ceil(ENTRIES_PER_BUCKET).max(1);
    u32::try_from(wanted.next_power_of_two())
        .unwrap_or(MAX_SYNC_BUCKETS)
        .min(MAX_SYNC_BUCKETS)
}

/// A network's summary on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Summary {
    attachments: u64,
    entries: u64,
    count: u32,
}

impl NetworkDb {
    /// Entries of `network` that a sync would carry (expired tombstones are not), with their
    /// key hashes.
    fn synced_entries(
        &self,
        now: Instant,
        network: &NetworkId,
    ) -> impl Iterator<Item = (u64, &Entry)> {
        self.tables
            .get(network)
            .into_iter()
            .flat_map(|tables| tables.iter())
            .flat_map(move |(_, entries)| {
                entries
                    .iter()
                    .filter(move |(_, e)| !e.expired(now))
                    .map(move |(_, e)| (e.key_hash, e))
            })
    }

    fn summary(&self, now: Instant, network: &NetworkId) -> Summary {
        let attachments = self.attachments_hash(network).0;
        let mut entries = 0u64;
        let mut count = 0u32;
        for (_, e) in self.synced_entries(now, network) {
            entries = entries.wrapping_add(e.version);
            count = count.saturating_add(1);
        }
        Summary {
            attachments,
            entries,
            count,
        }
    }

    /// The bucket hashes of `network` split into `buckets`, 4 little-endian bytes each.
    fn bucket_hashes(&self, now: Instant, network: &NetworkId, buckets: u32) -> Vec<u8> {
        let mut sums = vec![0u64; buckets as usize];
        for (kh, e) in self.synced_entries(now, network) {
            let b = bucket_of(kh, buckets) as usize;
            sums[b] = sums[b].wrapping_add(e.version);
        }
        sums.iter()
            .flat_map(|s| ((s >> 32) as u32 ^ *s as u32).to_le_bytes())
            .collect()
    }

    /// Starts a digest round with `peer` over `networks` (the periodic sync).
    pub(crate) fn send_digest(
        &mut self,
        now: Instant,
        peer: &NodeName,
        networks: Vec<NetworkId>,
        fallback: Option<NodeName>,
    ) {
        if !self.syncable(peer) {
            self.stats.bulk_sync_unknown_node += 1;
            return;
        }
        let digests = networks
            .iter()
            .map(|network| {
                let s = self.summary(now, network);
                NetworkDigest {
                    network: network.clone(),
                    attachments: s.attachments,
                    entries: s.entries,
                    count: s.count,
                    buckets: Vec::new(),
                }
            })
            .collect();
        let ltime = self.send_sync_digest(peer, false, digests);
        self.await_reply(
            now,
            peer,
            ltime,
            networks,
            false,
            fallback,
            SyncKind::Digest,
        );
    }

    /// Sends a [`SyncDigest`] at a fresh table time, which it returns.
    fn send_sync_digest(
        &mut self,
        to: &NodeName,
        reply: bool,
        networks: Vec<NetworkDigest>,
    ) -> LTime {
        let ltime = self.table_clock.increment();
        let msg = Message::SyncDigest(SyncDigest {
            ltime,
            reply,
            node: self.me.clone(),
            networks,
        });
        self.stats.sync_digests_sent += 1;
        self.send(to, Channel::Stream, msg.encode());
        ltime
    }

    pub(crate) fn handle_sync_digest(&mut self, now: Instant, digest: SyncDigest) {
        if !self.sane(digest.ltime) {
            return;
        }
        self.table_clock.witness(digest.ltime);
        if digest.node == self.me {
            self.stats.own_events += 1;
            return;
        }
        if digest.reply {
            self.handle_digest_reply(now, digest);
        } else {
            self.answer_digest(now, digest);
        }
    }

    /// Answers a request with the networks whose summaries differ, split into buckets.
    fn answer_digest(&mut self, now: Instant, request: SyncDigest) {
        let mut differ = Vec::new();
        for theirs in request.networks {
            if self.local.get(&theirs.network).is_none_or(|n| n.leaving) {
                continue;
            }
            let mine = self.summary(now, &theirs.network);
            let same = mine.attachments == theirs.attachments
                && mine.entries == theirs.entries
                && mine.count == theirs.count;
            if same {
                self.stats.sync_networks_equal += 1;
                continue;
            }
            self.stats.sync_networks_differ += 1;
            let larger = mine.count.max(theirs.count) as usize;
            let buckets = self.bucket_hashes(now, &theirs.network, bucket_count(larger));
            differ.push(NetworkDigest {
                network: theirs.network,
                attachments: mine.attachments,
                entries: mine.entries,
                count: mine.count,
                buckets,
            });
        }
        self.send_sync_digest(&request.node, true, differ);
    }

    /// A reply completes the round's wait; the networks it lists are repaired by a partial
    /// sync of the buckets that differ.
    fn handle_digest_reply(&mut self, now: Instant, reply: SyncDigest) {
        // A network the peer found equal is in sync with it: a join that found no peer to
        // sync with needs no full sync any more (one that differs gets the partial sync,
        // whose attachments say the same).
        let answered: Vec<NetworkId> = self
            .pending_syncs
            .iter()
            .filter(|p| p.kind == SyncKind::Digest && p.peer == reply.node && p.ltime < reply.ltime)
            .flat_map(|p| p.networks.iter().cloned())
            .collect();
        for network in answered {
            if reply.networks.iter().all(|d| d.network != network)
                && let Some(local) = self.local.get_mut(&network)
            {
                local.joined_alone = false;
            }
        }
        self.complete_syncs(now, &reply.node, reply.ltime);
        let mut scopes = Vec::new();
        for theirs in reply.networks {
            if self.local.get(&theirs.network).is_none_or(|n| n.leaving) {
                continue;
            }
            let count = theirs.buckets.len() / 4;
            if theirs.buckets.len() % 4 != 0 || count == 0 || count > MAX_SYNC_BUCKETS as usize {
                self.stats.dropped_malformed += 1;
                continue;
            }
            let buckets = count as u32;
            let summary = self.summary(now, &theirs.network);
            let mine = self.bucket_hashes(now, &theirs.network, buckets);
            let mut indices: Vec<u32> = mine
                .chunks_exact(4)
                .zip(theirs.buckets.chunks_exact(4))
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i as u32)
                .collect();
            if indices.is_empty()
                && (summary.entries, summary.count) != (theirs.entries, theirs.count)
            {
                // The entries differ but no bucket hash does (a 32-bit collision): the whole
                // network, so a difference can never hide for good.
                indices = (0..buckets).collect();
            }
            let attachments = summary.attachments != theirs.attachments;
            if indices.is_empty() && !attachments {
                // Equal by now (what differed arrived meanwhile): nothing to exchange.
                continue;
            }
            scopes.push(SyncScope {
                attachments,
                network: theirs.network,
                buckets,
                indices,
            });
        }
        if !scopes.is_empty() {
            self.send_partial_sync(now, &reply.node, scopes, true);
        }
    }

    /// Sends this node's attachments and entries of `scopes` to `peer`; a request registers a
    /// wait for the reply.
    pub(crate) fn send_partial_sync(
        &mut self,
        now: Instant,
        peer: &NodeName,
        scopes: Vec<SyncScope>,
        unsolicited: bool,
    ) {
        if !self.syncable(peer) {
            self.stats.bulk_sync_unknown_node += 1;
            return;
        }
        let mut attachments = Vec::new();
        let mut events = Vec::new();
        for scope in &scopes {
            if scope.attachments {
                attachments.extend(self.attachment_entries(&scope.network));
            }
            let buckets = scope.buckets;
            let indices = &scope.indices;
            self.collect_events(now, &scope.network, &mut events, |kh| {
                indices.binary_search(&bucket_of(kh, buckets)).is_ok()
            });
        }
        let ltime = self.table_clock.increment();
        let networks = scopes.iter().map(|s| s.network.clone()).collect();
        self.stats.partial_syncs_sent += 1;
        self.stats.partial_sync_events += events.len() as u64;
        let msg = Message::PartialSync(PartialSync {
            ltime,
            unsolicited,
            node: self.me.clone(),
            scopes,
            attachments,
            events,
        });
        self.send(peer, Channel::Stream, msg.encode());
        if unsolicited {
            self.await_reply(now, peer, ltime, networks, false, None, SyncKind::Partial);
        }
    }

    pub(crate) fn handle_partial_sync(&mut self, now: Instant, mut sync: PartialSync) {
        if !self.sane(sync.ltime) {
            return;
        }
        self.table_clock.witness(sync.ltime);
        if sync.node == self.me {
            self.stats.own_events += 1;
            return;
        }
        // A scope this node cannot read is refused whole; the others are still answered.
        let before = sync.scopes.len();
        sync.scopes.retain_mut(|s| {
            s.indices.sort_unstable();
            s.indices.dedup();
            (1..=MAX_SYNC_BUCKETS).contains(&s.buckets)
                && s.indices.last().is_none_or(|i| *i < s.buckets)
        });
        self.stats.dropped_malformed += (before - sync.scopes.len()) as u64;
        self.apply_sync(now, &sync.node, &sync.attachments, sync.events);
        if sync.unsolicited {
            self.send_partial_sync(now, &sync.node, sync.scopes, false);
        } else {
            self.complete_syncs(now, &sync.node, sync.ltime);
        }
    }

    /// A summary of every attachment this node knows (see [`PushPullDigest`]).
    fn attachments_digest(&self) -> (u64, u32) {
        let networks: std::collections::BTreeSet<&NetworkId> =
            self.local.keys().chain(self.attachments.keys()).collect();
        let mut hash = 0u64;
        let mut count = 0u32;
        for network in networks {
            let (h, n) = self.attachments_hash(network);
            hash = hash.wrapping_add(h);
            count = count.saturating_add(n);
        }
        (hash, count)
    }

    /// The sum of the hashes of `network`'s attachment records (this node's included, as
    /// [`attachment_entries`](Self::attachment_entries) lists them), and how many.
    fn attachments_hash(&self, network: &NetworkId) -> (u64, u32) {
        let own = self
            .local
            .get(network)
            .map(|l| attachment_hash(network, &self.me, l.ltime, l.leaving));
        let others = self
            .attachments
            .get(network)
            .into_iter()
            .flatten()
            .map(|(_, a)| a.hash);
        own.into_iter()
            .chain(others)
            .fold((0u64, 0u32), |(h, n), x| {
                (h.wrapping_add(x), n.saturating_add(1))
            })
    }

    /// The periodic attachment exchange starts with a summary (see [`PushPullDigest`]).
    pub(crate) fn send_push_pull_digest(&mut self, peer: &NodeName) {
        let (hash, count) = self.attachments_digest();
        let msg = Message::PushPullDigest(PushPullDigest {
            node: self.me.clone(),
            hash,
            count,
        });
        self.stats.push_pull_digests_sent += 1;
        self.send(peer, Channel::Stream, msg.encode());
    }

    /// A peer's attachment summary: equal, nothing more is sent (a network joined with no
    /// peer known is synced with the peer if it is attached); different, the full exchange
    /// starts.
    pub(crate) fn handle_push_pull_digest(&mut self, now: Instant, digest: PushPullDigest) {
        if digest.node == self.me || !self.syncable(&digest.node) {
            return;
        }
        if self.attachments_digest() != (digest.hash, digest.count) {
            self.stats.push_pull_digests_differ += 1;
            self.send_push_pull(&digest.node, false);
            return;
        }
        let alone: Vec<NetworkId> = self
            .local
            .iter()
            .filter(|(_, l)| l.joined_alone && !l.leaving)
            .map(|(id, _)| id.clone())
            .collect();
        for network in alone {
            if self.is_attached(&network, &digest.node) {
                self.sync_if_joined_alone(now, &network, &digest.node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_with_entries_and_are_bounded() {
        assert_eq!(bucket_count(0), 1);
        assert_eq!(bucket_count(8), 1);
        assert_eq!(bucket_count(9), 2);
        assert_eq!(bucket_count(3000), 512);
        assert_eq!(bucket_count(10_000_000), MAX_SYNC_BUCKETS);
    }

    #[test]
    fn key_hashes_are_stable() {
        // Pinned: a change is a protocol change (peers would split keys differently).
        assert_eq!(key_hash("t", "k"), 0xbb9f_74db_4f75_58d8);
        assert_ne!(key_hash("t", "k"), key_hash("tk", ""));
        assert_eq!(bucket_of(7, 1), 0);
        assert_eq!(bucket_of(7, 4), 3);
    }
}
