//! Digest-first membership repair.
//!
//! SWIM gossip spreads each membership change a bounded number of times; a member that was
//! cut off or paused while a change spread misses it and, with memberlist's design, learns
//! it only at the next full membership exchange (every `membership_sync_interval`, 30 s).
//! Here every member also sends one random member, every `membership_digest_interval`, a
//! digest of who it sees alive: a hash and a count, one small datagram. A member whose own
//! digest differs answers with the full exchange (at most one per interval), so a gap closes
//! in seconds while an idle cluster pays one datagram per member per interval.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::identity::NodeIdentity;
use crate::node::{KIND_MEMBERSHIP_DIGEST, Node, Output};

/// What a member sees: its identity and a summary of the members it sees alive, itself
/// included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MembershipDigest {
    pub(crate) sender: NodeIdentity,
    /// Wrapping sum of [`member_hash`] over the members.
    pub(crate) hash: u64,
    pub(crate) count: u32,
}

/// The summary term of one member: `XXH3-64(name, seed = incarnation)` xor
/// `XXH3-64(address octets || port, big-endian)`, computed without allocating (every member
/// sums every member every interval).
fn member_hash(id: &NodeIdentity) -> u64 {
    let mut addr = [0u8; 18];
    let len = match id.addr {
        std::net::SocketAddr::V4(a) => {
            addr[..4].copy_from_slice(&a.ip().octets());
            addr[4..6].copy_from_slice(&a.port().to_be_bytes());
            6
        }
        std::net::SocketAddr::V6(a) => {
            addr[..16].copy_from_slice(&a.ip().octets());
            addr[16..].copy_from_slice(&a.port().to_be_bytes());
            18
        }
    };
    xxh3_64_with_seed(id.name.as_bytes(), id.incarnation) ^ xxh3_64(&addr[..len])
}

impl Node {
    /// This node's digest of the members it sees alive (suspects included), itself included.
    pub(crate) fn membership_digest(&self) -> MembershipDigest {
        let me = self.identity().clone();
        let mut hash = member_hash(&me);
        let mut count = 1u32;
        for id in self.member_ids() {
            hash = hash.wrapping_add(member_hash(id));
            count = count.saturating_add(1);
        }
        MembershipDigest {
            sender: me,
            hash,
            count,
        }
    }

    /// Sends this node's digest to one random member.
    pub(crate) fn send_membership_digest(&mut self) {
        let members = self.members();
        if members.is_empty() {
            return;
        }
        let to = members[self.pick(members.len())].clone();
        let digest = self.membership_digest();
        let mut payload = vec![KIND_MEMBERSHIP_DIGEST];
        match postcard::to_allocvec(&digest) {
            Ok(bytes) => payload.extend_from_slice(&bytes),
            Err(_) => return,
        }
        self.stats.membership_digests_sent += 1;
        self.outputs.push_back(Output::Datagram {
            to: to.addr,
            payload,
        });
    }

    /// A member's digest: if it differs from this node's, and no exchange was started for a
    /// digest within the interval, the full exchange with it starts.
    pub(crate) fn handle_membership_digest(
        &mut self,
        now: Instant,
        body: &[u8],
    ) -> Result<(), crate::InputError> {
        let theirs: MembershipDigest = match postcard::from_bytes(body) {
            Ok(d) => d,
            Err(e) => {
                self.stats.dropped_decode += 1;
                return Err(crate::InputError::Swim(format!("membership digest: {e}")));
            }
        };
        // Only a member may start an exchange (its state would not be applied anyway).
        if !self.member_ids().any(|m| *m == theirs.sender) {
            self.stats.dropped_not_member += 1;
            return Err(crate::InputError::NotMember(
                theirs.sender.db_name().to_string(),
            ));
        }
        let mine = self.membership_digest();
        if (mine.hash, mine.count) == (theirs.hash, theirs.count) {
            self.stats.membership_digests_equal += 1;
            return Ok(());
        }
        if !self.digest_exchange_due(now) {
            return Ok(());
        }
        self.stats.membership_digests_differ += 1;
        self.send_membership(&theirs.sender, false);
        Ok(())
    }
}
