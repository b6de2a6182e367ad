//! The sans-IO node core: foca SWIM membership wired to a [`NetworkDb`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use networkdb::wire::Message;
use networkdb::{Channel, NetworkDb, NodeState, WatchEvent, WatchId};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::identity::{NodeIdentity, base_name};
use crate::swim_scale;
use crate::{NodeConfig, NodeConfigError};

/// First byte of a datagram (after decryption): which protocol it carries.
pub const KIND_SWIM: u8 = 1;
/// First byte of a datagram carrying a NetworkDB payload.
pub const KIND_NETWORKDB: u8 = 2;
/// First byte of a datagram carrying a membership digest (`membership_digest`).
pub const KIND_MEMBERSHIP_DIGEST: u8 = 3;
/// First byte of a stream frame carrying SWIM membership state (NetworkDB frames start with
/// NetworkDB's version byte, 1).
pub const STREAM_MEMBERSHIP: u8 = b'M';
/// Bytes of framing the core adds to every datagram (the kind byte).
pub const FRAME_OVERHEAD: usize = 1;

type Swim = Foca<NodeIdentity, PostcardCodec, Xoshiro256PlusPlus, NoCustomBroadcast>;

/// What the core asks its shell to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Seal and send one datagram (at most `packet_size` once sealed).
    Datagram {
        /// Destination.
        to: SocketAddr,
        /// Kind byte first.
        payload: Vec<u8>,
    },
    /// Send one message on the authenticated stream path.
    Stream {
        /// Destination.
        to: SocketAddr,
        /// The node name the peer's certificate must carry.
        peer: String,
        /// A NetworkDB payload (version byte first).
        payload: Vec<u8>,
    },
    /// A change seen by a NetworkDB watch.
    Watch {
        /// The watch.
        watch: WatchId,
        /// The change.
        event: WatchEvent,
    },
    /// A membership change, for logs and metrics.
    Member(MemberEvent),
}

/// Membership changes as SWIM reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member is up.
    Up(NodeIdentity),
    /// A member is down (failed or left).
    Down(NodeIdentity),
    /// This node has no active member left: it keeps announcing to its seeds.
    Idle,
    /// This node is connected again.
    Active,
}

/// Why a datagram or stream message was dropped. State is unchanged (counted in
/// [`NodeStats`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Empty datagram.
    #[error("empty datagram")]
    Empty,
    /// Unknown kind byte.
    #[error("unknown datagram kind {0}")]
    UnknownKind(u8),
    /// SWIM refused the datagram.
    #[error("membership protocol: {0}")]
    Swim(String),
    /// NetworkDB could not decode it.
    #[error(transparent)]
    Decode(#[from] networkdb::wire::DecodeError),
    /// A stream message came from a node this node's membership does not know.
    #[error("stream message from {0}, which is not a member")]
    NotMember(String),
    /// A stream message claimed another node than the one its TLS certificate names.
    #[error("peer authenticated as {authenticated} claims to be {claimed}")]
    Impersonation {
        /// Name in the certificate.
        authenticated: String,
        /// Name in the message.
        claimed: String,
    },
}

/// Counters of the node core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// SWIM datagrams received.
    pub swim_in: u64,
    /// SWIM datagrams sent.
    pub swim_out: u64,
    /// NetworkDB datagrams received.
    pub db_datagrams_in: u64,
    /// Stream messages received.
    pub streams_in: u64,
    /// Datagrams dropped: empty or unknown kind.
    pub dropped_kind: u64,
    /// Datagrams SWIM refused (malformed, too big, from a stale identity...).
    pub dropped_swim: u64,
    /// NetworkDB payloads that did not decode.
    pub dropped_decode: u64,
    /// Stream messages whose claimed sender differs from the authenticated one.
    pub dropped_impersonation: u64,
    /// Stream messages from a sender not (yet) known as a member, kept until it is.
    pub deferred_streams: u64,
    /// Of those, dropped: the sender did not become a member in time (or the buffer was
    /// full).
    pub dropped_not_member: u64,
    /// Membership states sent (requests and replies).
    pub membership_syncs: u64,
    /// Announces sent to seeds while isolated.
    pub seed_announces: u64,
    /// Membership digests sent (see `NodeConfig::membership_digest_interval`).
    pub membership_digests_sent: u64,
    /// Digests received equal to this node's.
    pub membership_digests_equal: u64,
    /// Digests received that differed and started a full exchange.
    pub membership_digests_differ: u64,
    /// Times SWIM's settings were rescaled for the cluster's size.
    pub swim_rescales: u64,
    /// Membership states from senders this node did not know: not applied; the node
    /// announced itself to the sender instead, so that each learns the other through SWIM.
    pub membership_from_strangers: u64,
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    timer: Timer<NodeIdentity>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A cluster node: SWIM membership plus NetworkDB, sans-IO.
///
/// Same contract as [`NetworkDb`]: inputs are `handle_datagram`, `handle_stream`,
/// `handle_timeout` and API calls (through [`db_mut`](Self::db_mut) for NetworkDB's); after any
/// input drain [`poll_output`](Self::poll_output) until `None`, then wait until
/// [`poll_timeout`](Self::poll_timeout). SWIM's relative timers are kept here as absolute
/// deadlines in a heap, so every one is delivered, in order.
pub struct Node {
    config: NodeConfig,
    swim: Swim,
    rt: AccumulatingRuntime<NodeIdentity>,
    db: NetworkDb,
    timers: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    pub(crate) outputs: VecDeque<Output>,
    seeds: Vec<SocketAddr>,
    /// While no member is active, announce to the seeds at this time.
    next_seed_announce: Option<Instant>,
    pub(crate) stats: NodeStats,
    now: Instant,
    /// Stream messages from senders not yet known as members, oldest first.
    deferred: VecDeque<Deferred>,
    deferred_bytes: usize,
    /// Next exchange of the full membership state with a random member.
    next_membership_sync: Instant,
    /// Next membership digest to a random member.
    next_membership_digest: Instant,
    /// No exchange is started for a differing digest before this time.
    next_digest_exchange: Instant,
    /// Picks the membership-exchange peer.
    pick_rng: Xoshiro256PlusPlus,
    /// SWIM's settings as configured (packet size applied), before scaling.
    swim_base: foca::Config,
    /// The cluster size SWIM's current settings are scaled for.
    swim_step: u32,
}

/// The membership exchange: the sender's identity and every member it knows (memberlist's
/// push/pull, which SWIM gossip lacks: without it a large cluster can miss members for
/// minutes).
#[derive(serde::Serialize, serde::Deserialize)]
struct MembershipState {
    sender: NodeIdentity,
    reply: bool,
    members: Vec<foca::Member<NodeIdentity>>,
}

/// A stream message waiting for its sender to become a member.
struct Deferred {
    until: Instant,
    claimed: String,
    msg: Message,
    len: usize,
}

/// How long a stream message from a sender not yet known as a member is kept.
pub const DEFERRED_TTL: Duration = Duration::from_secs(10);
/// The most bytes of such messages kept.
pub const DEFERRED_MAX_BYTES: usize = 16 << 20;

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("identity", self.swim.identity())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Creates a node with `identity`, drawing randomness from `seed`.
    pub fn new(
        now: Instant,
        identity: NodeIdentity,
        seed: u64,
        config: NodeConfig,
    ) -> Result<Self, NodeConfigError> {
        config.validate()?;
        let mut swim_config = config.swim.clone();
        let swim_packet = config.db.packet_size - config.db.transport_overhead;
        swim_config.max_packet_size =
            NonZeroUsize::new(swim_packet).ok_or(NodeConfigError::PacketSize(swim_packet))?;
        let rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5157_494d);
        let membership_sync_interval = config.membership_sync_interval;
        let membership_digest_interval = config.membership_digest_interval;
        let swim_base = swim_config.clone();
        let swim_step = config.swim_sized_for.get();
        let swim = Foca::new(identity.clone(), swim_config, rng, PostcardCodec);
        let db = NetworkDb::new(
            now,
            identity.db_name(),
            identity.addr,
            seed,
            config.db.clone(),
        )?;
        Ok(Self {
            config,
            swim,
            rt: AccumulatingRuntime::default(),
            db,
            timers: BinaryHeap::new(),
            seq: 0,
            outputs: VecDeque::new(),
            seeds: Vec::new(),
            next_seed_announce: None,
            stats: NodeStats::default(),
            now,
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            next_membership_sync: now + membership_sync_interval,
            next_membership_digest: now + membership_digest_interval,
            next_digest_exchange: now,
            pick_rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x4d45_4d42),
            swim_step,
            swim_base,
        })
    }

    /// This node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        self.swim.identity()
    }

    /// The NetworkDB of this node.
    pub fn db(&self) -> &NetworkDb {
        &self.db
    }

    /// The NetworkDB of this node, for API calls; their outputs come out of `poll_output`.
    pub fn db_mut(&mut self) -> &mut NetworkDb {
        &mut self.db
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The cluster size SWIM's transmissions and suspicion time are currently scaled for
    /// (see [`NodeConfig::scale_swim`]).
    pub fn swim_sized_for(&self) -> u32 {
        self.swim_step
    }

    /// Active SWIM members, this node excluded.
    pub fn members(&self) -> Vec<NodeIdentity> {
        self.member_ids().cloned().collect()
    }

    /// Joins the cluster through `seeds`: announces to each, and keeps announcing every
    /// `seed_announce_interval` while no member is active, so islands heal.
    pub fn join(&mut self, now: Instant, seeds: Vec<SocketAddr>) {
        self.now = now;
        let seeds: Vec<SocketAddr> = seeds
            .into_iter()
            .filter(|s| *s != self.swim.identity().addr)
            .collect();
        self.db.join(now, seeds.clone());
        self.seeds = seeds;
        self.announce_to_seeds(now);
    }

    /// Leaves gracefully: NetworkDB's goodbye first, then SWIM's. Keep handling input for a
    /// few seconds so both spread.
    pub fn leave(&mut self, now: Instant) {
        self.now = now;
        self.db.leave(now);
        let res = self.swim.leave_cluster(&mut self.rt);
        self.swim_result(res);
        self.seeds.clear();
        self.next_seed_announce = None;
        self.pump_swim(now);
    }

    /// Handles a decrypted datagram from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        payload: &[u8],
    ) -> Result<(), InputError> {
        self.now = now;
        let _ = from;
        let Some((&kind, body)) = payload.split_first() else {
            self.stats.dropped_kind += 1;
            return Err(InputError::Empty);
        };
        match kind {
            KIND_SWIM => {
                self.stats.swim_in += 1;
                let res = self.swim.handle_data(body, &mut self.rt);
                self.pump_swim(now);
                res.map_err(|e| {
                    self.stats.dropped_swim += 1;
                    InputError::Swim(e.to_string())
                })
            }
            KIND_MEMBERSHIP_DIGEST => self.handle_membership_digest(now, body),
            KIND_NETWORKDB => {
                self.stats.db_datagrams_in += 1;
                self.db
                    .handle_message(now, Channel::Datagram, body)
                    .map_err(|e| {
                        self.stats.dropped_decode += 1;
                        InputError::Decode(e)
                    })
            }
            other => {
                self.stats.dropped_kind += 1;
                Err(InputError::UnknownKind(other))
            }
        }
    }

    /// Handles a stream message from a peer whose TLS certificate carries the names
    /// `authenticated`. A message that claims a sender not among them is dropped: a node
    /// cannot speak for another.
    pub fn handle_stream(
        &mut self,
        now: Instant,
        authenticated: &[impl AsRef<str>],
        payload: &[u8],
    ) -> Result<(), InputError> {
        self.now = now;
        self.stats.streams_in += 1;
        if payload.first() == Some(&STREAM_MEMBERSHIP) {
            return self.handle_membership(now, Some(authenticated), payload);
        }
        let msg = Message::decode(payload).map_err(|e| {
            self.stats.dropped_decode += 1;
            InputError::Decode(e)
        })?;
        let names = || {
            authenticated
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<&str>>()
                .join(",")
        };
        let claimed = match claimed_sender(&msg) {
            Ok(claimed) => claimed,
            Err(InputError::Impersonation { claimed, .. }) => {
                // A compound naming two senders: at least one is not the peer.
                self.stats.dropped_impersonation += 1;
                return Err(InputError::Impersonation {
                    authenticated: names(),
                    claimed,
                });
            }
            Err(e) => {
                self.stats.dropped_decode += 1;
                return Err(e);
            }
        };
        if let Some(claimed) = claimed {
            let base = base_name(&claimed);
            if !authenticated.iter().any(|a| a.as_ref() == base) {
                self.stats.dropped_impersonation += 1;
                return Err(InputError::Impersonation {
                    authenticated: names(),
                    claimed,
                });
            }
            // A certificate is not membership: only a node SWIM admitted (it proved the
            // gossip key) may hand this node state. A failed member still may, so that its
            // entries are remembered until it returns.
            let known = matches!(
                self.db.node_state(&claimed),
                Some(NodeState::Active | NodeState::Failed)
            );
            if !known {
                // Often SWIM has not told this node about the sender yet: keep the message
                // (bounded, briefly) and apply it if the sender becomes a member.
                self.defer(now, claimed.clone(), msg, payload.len());
                return Err(InputError::NotMember(claimed));
            }
        }
        self.db.handle_decoded(now, Channel::Stream, msg)?;
        Ok(())
    }

    /// Keeps a stream message from a sender not yet known as a member, within
    /// [`DEFERRED_MAX_BYTES`] and for [`DEFERRED_TTL`]; the oldest go first.
    fn defer(&mut self, now: Instant, claimed: String, msg: Message, len: usize) {
        self.expire_deferred(now);
        self.stats.deferred_streams += 1;
        self.deferred_bytes += len;
        self.deferred.push_back(Deferred {
            until: now + DEFERRED_TTL,
            claimed,
            msg,
            len,
        });
        while self.deferred_bytes > DEFERRED_MAX_BYTES {
            let Some(old) = self.deferred.pop_front() else {
                break;
            };
            self.deferred_bytes -= old.len;
            self.stats.dropped_not_member += 1;
        }
    }

    fn expire_deferred(&mut self, now: Instant) {
        while self.deferred.front().is_some_and(|d| d.until <= now) {
            if let Some(old) = self.deferred.pop_front() {
                self.deferred_bytes -= old.len;
                self.stats.dropped_not_member += 1;
            }
        }
    }

    /// Applies the deferred messages of a sender that just became a member.
    fn replay_deferred(&mut self, now: Instant, member: &str) {
        self.expire_deferred(now);
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| d.claimed == member);
        self.deferred = rest;
        for d in mine {
            self.deferred_bytes -= d.len;
            let _ = self.db.handle_decoded(now, Channel::Stream, d.msg);
        }
    }

    /// Handles a stream message on an insecure (unauthenticated) path: the claimed sender is
    /// trusted. Only for clusters run with `--insecure`.
    pub fn handle_stream_unauthenticated(
        &mut self,
        now: Instant,
        payload: &[u8],
    ) -> Result<(), InputError> {
        self.now = now;
        self.stats.streams_in += 1;
        if payload.first() == Some(&STREAM_MEMBERSHIP) {
            return self.handle_membership(now, None::<&[&str]>, payload);
        }
        self.db
            .handle_message(now, Channel::Stream, payload)
            .map_err(|e| {
                self.stats.dropped_decode += 1;
                InputError::Decode(e)
            })
    }

    /// Applies a peer's membership state (from a member whose certificate names it) and
    /// answers a request with this node's.
    fn handle_membership(
        &mut self,
        now: Instant,
        authenticated: Option<&[impl AsRef<str>]>,
        payload: &[u8],
    ) -> Result<(), InputError> {
        let state: MembershipState = match postcard::from_bytes(&payload[1..]) {
            Ok(state) => state,
            Err(e) => {
                self.stats.dropped_decode += 1;
                return Err(InputError::Swim(format!("membership state: {e}")));
            }
        };
        if let Some(names) = authenticated
            && !names.iter().any(|n| n.as_ref() == &*state.sender.name)
        {
            self.stats.dropped_impersonation += 1;
            return Err(InputError::Impersonation {
                authenticated: names
                    .iter()
                    .map(AsRef::as_ref)
                    .collect::<Vec<_>>()
                    .join(","),
                claimed: state.sender.name.to_string(),
            });
        }
        // Only a member (it proved the gossip key to SWIM) may tell this node about others.
        let sender = state.sender.db_name();
        if !matches!(
            self.db.node_state(&sender),
            Some(NodeState::Active | NodeState::Failed)
        ) {
            // It knows this node, this node does not know it (it missed the sender's join):
            // its state is not trusted, but a SWIM announce makes each a member of the other,
            // and the next exchange succeeds.
            self.stats.membership_from_strangers += 1;
            let res = self.swim.announce(state.sender.clone(), &mut self.rt);
            self.swim_result(res);
            self.pump_swim(now);
            return Err(InputError::NotMember(sender.to_string()));
        }
        let me = self.swim.identity().clone();
        let members = state.members.into_iter().filter(|m| m.id().addr != me.addr);
        let res = self.swim.apply_many(members, true, &mut self.rt);
        self.swim_result(res);
        self.pump_swim(now);
        if !state.reply {
            self.send_membership(&state.sender, true);
        }
        Ok(())
    }

    /// Sends every member this node knows (Down ones included) to `to`.
    pub(crate) fn send_membership(&mut self, to: &NodeIdentity, reply: bool) {
        let state = MembershipState {
            sender: self.swim.identity().clone(),
            reply,
            members: self.swim.iter_membership_state().cloned().collect(),
        };
        let mut payload = vec![STREAM_MEMBERSHIP];
        match postcard::to_allocvec(&state) {
            Ok(bytes) => payload.extend_from_slice(&bytes),
            Err(_) => return,
        }
        self.stats.membership_syncs += 1;
        self.outputs.push_back(Output::Stream {
            to: to.addr,
            peer: to.name.to_string(),
            payload,
        });
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while let Some(Reverse(next)) = self.timers.peek() {
            if next.at > now {
                break;
            }
            let Some(Reverse(due)) = self.timers.pop() else {
                break;
            };
            let res = self.swim.handle_timer(due.timer, &mut self.rt);
            self.swim_result(res);
            self.pump_swim(now);
        }
        if self.db.poll_timeout() <= now {
            self.db.handle_timeout(now);
        }
        if self.next_seed_announce.is_some_and(|at| at <= now) {
            self.announce_to_seeds(now);
        }
        if self.next_membership_digest <= now {
            self.next_membership_digest = now + self.config.membership_digest_interval;
            self.send_membership_digest();
        }
        if self.next_membership_sync <= now {
            self.next_membership_sync = now + self.config.membership_sync_interval;
            let members = self.members();
            if !members.is_empty() {
                let pick = self.pick(members.len());
                self.send_membership(&members[pick], false);
            }
        }
    }

    /// The members SWIM sees alive or suspect.
    pub(crate) fn member_ids(&self) -> impl Iterator<Item = &NodeIdentity> {
        self.swim.iter_members().map(|m| m.id())
    }

    /// Whether an exchange may start for a differing digest now (at most one per
    /// `membership_digest_interval`); if so, the next one waits an interval.
    pub(crate) fn digest_exchange_due(&mut self, now: Instant) -> bool {
        if now < self.next_digest_exchange {
            return false;
        }
        self.next_digest_exchange = now + self.config.membership_digest_interval;
        true
    }

    /// A uniform index below `n`, from the node's seeded generator.
    pub(crate) fn pick(&mut self, n: usize) -> usize {
        use rand::RngExt;
        self.pick_rng.random_range(0..n)
    }

    /// The next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self.db.poll_timeout();
        if let Some(Reverse(t)) = self.timers.peek() {
            next = next.min(t.at);
        }
        if let Some(at) = self.next_seed_announce {
            next = next.min(at);
        }
        next.min(self.next_membership_sync)
            .min(self.next_membership_digest)
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        while let Some(out) = self.db.poll_output() {
            match out {
                networkdb::Output::Transmit(t) => {
                    let mut payload = Vec::with_capacity(t.payload.len() + 1);
                    match t.channel {
                        Channel::Datagram => {
                            payload.push(KIND_NETWORKDB);
                            payload.extend_from_slice(&t.payload);
                            return Some(Output::Datagram {
                                to: t.addr,
                                payload,
                            });
                        }
                        Channel::Stream => {
                            return Some(Output::Stream {
                                to: t.addr,
                                peer: base_name(t.to.as_str()).to_owned(),
                                payload: t.payload,
                            });
                        }
                    }
                }
                networkdb::Output::Watch { watch, event } => {
                    return Some(Output::Watch { watch, event });
                }
                networkdb::Output::Reconnect { addr, .. } => {
                    let res = self.swim.announce(NodeIdentity::probe(addr), &mut self.rt);
                    self.swim_result(res);
                    self.pump_swim(self.now);
                }
                networkdb::Output::RejoinBootstrap { addrs } => {
                    for addr in addrs {
                        let res = self.swim.announce(NodeIdentity::probe(addr), &mut self.rt);
                        self.swim_result(res);
                    }
                    self.pump_swim(self.now);
                }
            }
            if let Some(out) = self.outputs.pop_front() {
                return Some(out);
            }
        }
        self.outputs.pop_front()
    }

    fn announce_to_seeds(&mut self, now: Instant) {
        if self.seeds.is_empty() {
            self.next_seed_announce = None;
            return;
        }
        if self.swim.num_members() > 0 {
            self.next_seed_announce = None;
            return;
        }
        for seed in self.seeds.clone() {
            self.stats.seed_announces += 1;
            let res = self.swim.announce(NodeIdentity::probe(seed), &mut self.rt);
            self.swim_result(res);
        }
        self.next_seed_announce = Some(now + self.config.seed_announce_interval);
        self.pump_swim(now);
    }

    fn swim_result(&mut self, res: Result<(), foca::Error>) {
        if res.is_err() {
            self.stats.dropped_swim += 1;
        }
    }

    /// Moves SWIM's effects out of its runtime: datagrams, timers, notifications.
    fn pump_swim(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some((to, data)) = self.rt.to_send() {
                progressed = true;
                self.stats.swim_out += 1;
                let mut payload = Vec::with_capacity(data.len() + 1);
                payload.push(KIND_SWIM);
                payload.extend_from_slice(&data);
                self.outputs.push_back(Output::Datagram {
                    to: to.addr,
                    payload,
                });
            }
            while let Some((after, timer)) = self.rt.to_schedule() {
                progressed = true;
                self.seq += 1;
                self.timers.push(Reverse(Scheduled {
                    at: now + after,
                    seq: self.seq,
                    timer,
                }));
            }
            while let Some(n) = self.rt.to_notify() {
                progressed = true;
                self.on_notification(now, n);
            }
            if !progressed {
                break;
            }
        }
        self.rescale_swim();
    }

    /// Follows the member count with SWIM's dissemination and suspicion settings.
    fn rescale_swim(&mut self) {
        if !self.config.scale_swim {
            return;
        }
        let sized_for = self.config.swim_sized_for.get();
        let members = u32::try_from(self.swim.num_members())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if !swim_scale::should_rescale(self.swim_step, members, sized_for) {
            return;
        }
        let step = swim_scale::step(members, sized_for);
        let config = swim_scale::scaled(&self.swim_base, sized_for, step);
        // Only dissemination and suspicion change, which foca accepts at runtime.
        if self.swim.set_config(config).is_ok() {
            self.swim_step = step;
            self.stats.swim_rescales += 1;
        }
    }

    fn on_notification(&mut self, now: Instant, n: OwnedNotification<NodeIdentity>) {
        match n {
            OwnedNotification::MemberUp(id) => {
                self.db.node_up(now, id.db_name(), id.addr);
                self.replay_deferred(now, id.db_name().as_str());
                self.next_seed_announce = None;
                self.outputs.push_back(Output::Member(MemberEvent::Up(id)));
            }
            OwnedNotification::MemberDown(id) => {
                self.db.node_down(now, id.db_name().as_str());
                self.outputs
                    .push_back(Output::Member(MemberEvent::Down(id)));
            }
            OwnedNotification::Rename(old, new) => {
                // Same address, newer identity. A new run of the node retires the old run's
                // state; a rejoin within one run keeps its NetworkDB name and changes nothing.
                if old.db_name() != new.db_name() {
                    self.db.node_down(now, old.db_name().as_str());
                    self.db.node_retired(now, old.db_name().as_str());
                    // foca sends no MemberUp when both identities are active: the new run must
                    // still become active in NetworkDB.
                    if self.swim.iter_members().any(|m| m.id() == &new) {
                        self.db.node_up(now, new.db_name(), new.addr);
                        self.replay_deferred(now, new.db_name().as_str());
                        self.outputs.push_back(Output::Member(MemberEvent::Up(new)));
                    }
                }
            }
            OwnedNotification::Idle => {
                self.outputs.push_back(Output::Member(MemberEvent::Idle));
                if !self.seeds.is_empty() {
                    self.next_seed_announce = Some(now + self.config.seed_announce_interval);
                }
            }
            OwnedNotification::Active => {
                self.next_seed_announce = None;
                // memberlist pulls the whole membership from the node it joins through; SWIM's
                // announce reply carries only a packet's worth. Exchange soon after joining
                // (once the announce replies are in), then every interval.
                self.next_membership_sync = self
                    .next_membership_sync
                    .min(now + JOIN_MEMBERSHIP_SYNC_DELAY);
                self.outputs.push_back(Output::Member(MemberEvent::Active));
            }
            // foca already switched to the renewed identity; the NetworkDB name is unchanged.
            OwnedNotification::Rejoin(_) | OwnedNotification::Defunct => {}
        }
    }
}

/// The sender a stream message claims, if it names one. Every table event of a compound must
/// be owned by the sender (only a node's own events travel its stream path).
fn claimed_sender(msg: &Message) -> Result<Option<String>, InputError> {
    Ok(match msg {
        Message::BulkSync(bs) => Some(bs.node.to_string()),
        Message::SyncDigest(d) => Some(d.node.to_string()),
        Message::PartialSync(ps) => Some(ps.node.to_string()),
        Message::PushPullDigest(d) => Some(d.node.to_string()),
        Message::PushPull(pp) => Some(pp.node.to_string()),
        Message::TableEvent(ev) => Some(ev.owner.to_string()),
        Message::NodeEvent(ev) => Some(ev.node.to_string()),
        Message::NetworkEvent(ev) => Some(ev.node.to_string()),
        Message::Compound(parts) => {
            let mut claimed: Option<String> = None;
            for part in parts {
                let inner = Message::decode_part(&part.0)?;
                if let Some(name) = claimed_sender(&inner)? {
                    match &claimed {
                        Some(c) if *c != name => {
                            return Err(InputError::Impersonation {
                                authenticated: c.clone(),
                                claimed: name,
                            });
                        }
                        _ => claimed = Some(name),
                    }
                }
            }
            claimed
        }
    })
}

/// After becoming active (the first member answered), exchange the membership this soon.
pub(crate) const JOIN_MEMBERSHIP_SYNC_DELAY: Duration = Duration::from_millis(500);

/// Default pause between announces to the seeds while isolated.
pub(crate) const DEFAULT_SEED_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
