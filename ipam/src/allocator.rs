//! One node's allocator for one pool.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{
    Answer, Ask, BlockId, Claim, Claims, Entry, IpamError, Loan, Merge, NodeId, Outcome, Pool, Want,
};

/// The most blocks of one pool a node hands back before a leave, or reclaims from a dead
/// node, in one call: each is one claim to write, keep and save, and a pool's origin owns
/// every block at first (262,080 in the VNI pool). A reclaim can be run again for more.
pub const MAX_BLOCKS_MOVED: usize = 256;

/// The most asks given up on that the allocator remembers (to give back a loan that comes
/// late); beyond it the oldest are forgotten, and such a late loan stays with its donor.
pub const MAX_ABANDONED: usize = 4096;

/// An ask nobody waits on is withdrawn after this many ask timeouts without an answer.
const STALE_ASK_FACTOR: u32 = 10;

/// How long an ask may stay unanswered before the asker asks another donor (the first one
/// may have failed). The first ask is still honoured if its answer comes later.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A pending allocation, named by the allocator when [`Allocator::allocate`] cannot answer at
/// once; its answer comes as [`Output::Allocated`] or [`Output::Refused`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What to allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Any free value.
    Any,
    /// This value.
    Value(u32),
}

/// The answer of [`Allocator::allocate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Allocated from the node's own space, at once.
    Done(u32),
    /// Space was asked for; the answer comes as an [`Output`] naming this ticket.
    Pending(Ticket),
}

/// What the allocator asks of its driver. After any input, drain [`Allocator::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// The saved state changed: save [`Allocator::snapshot`] durably before carrying out any
    /// later output or using a value [`Allocator::allocate`] returned. Always the first output
    /// after the change, so a node that crashes before saving has written nothing that the
    /// lost state would contradict.
    Persist,
    /// Write (create or update) this entry in its table.
    Write(Entry),
    /// Delete this entry of `table` (an answered ask, a served answer).
    Delete {
        /// The table.
        table: &'static str,
        /// The key.
        key: String,
    },
    /// A pending allocation got its value.
    Allocated {
        /// The allocation.
        ticket: Ticket,
        /// The value.
        value: u32,
    },
    /// A pending allocation was refused.
    Refused {
        /// The allocation.
        ticket: Ticket,
        /// Why.
        error: IpamError,
    },
}

/// What an allocator counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpamStats {
    /// Values allocated from the node's own blocks without any message.
    pub local_allocations: u64,
    /// Asks written.
    pub asks: u64,
    /// Blocks given away.
    pub blocks_granted: u64,
    /// Values lent.
    pub values_lent: u64,
    /// Claims of one epoch naming two owners (see [`Merge::Conflict`]).
    pub claim_conflicts: u64,
    /// Entries that did not decode.
    pub malformed: u64,
    /// Empty blocks given to an heir before a graceful leave.
    pub blocks_handed_back: u64,
}

/// The state a node keeps across restarts: save it whenever [`Output::Persist`] says so.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The replica of claims.
    pub claims: Claims,
    /// Values the node holds, in its own blocks or borrowed.
    pub held: BTreeSet<u32>,
    /// Values of the node's blocks lent to others.
    pub lent: BTreeMap<u32, NodeId>,
    /// Values the node holds in others' blocks, with their donor.
    pub borrowed: BTreeMap<u32, NodeId>,
    /// Values lent to other nodes, by value, borrower and donor, from the borrowers' [`Loan`]
    /// entries: never free here, whoever owns their block (an heir after a reclaim knows
    /// them from these only; a donor whose state was wiped too). Saved, so a restart keeps
    /// them even when the borrower's entries are out of sight; dropped when the borrower
    /// deletes its entry, when it asks this node (the donor) for the release, or when the
    /// borrower's own space is reclaimed here.
    #[serde(default)]
    pub loans: BTreeMap<u32, BTreeMap<NodeId, NodeId>>,
    /// The next ask's sequence number.
    pub next_seq: u64,
}

/// An ask this node wrote and has no answer to yet.
#[derive(Clone, Debug)]
struct Outstanding {
    ask: Ask,
    /// When to give up waiting and ask someone else.
    deadline: Instant,
    /// The allocations waiting on it (none once abandoned).
    tickets: Vec<(Ticket, Request)>,
}

/// One node's allocator for one pool: local allocation in the blocks it owns, asks to owners
/// when it owns no free value, and answers to other nodes' asks.
///
/// # Driving it
///
/// Inputs: [`allocate`](Self::allocate) and [`release`](Self::release) (the node's own
/// endpoints), [`handle_entry`](Self::handle_entry) (every entry of the IPAM tables the node
/// receives, its own included), [`set_members`](Self::set_members) (the live nodes that may be
/// asked), [`handle_timeout`](Self::handle_timeout). After any input, drain
/// [`poll_output`](Self::poll_output) until it returns `None`, carrying out the writes and
/// answering the tickets, and arm a timer for [`poll_timeout`](Self::poll_timeout).
///
/// # Safety
///
/// The node allocates only in blocks its replica says it owns, gives away only blocks in
/// which it holds and has lent nothing (writing the claim of the next epoch), and lends only
/// free values of its own blocks; see `docs/IPAM.md`.
pub struct Allocator {
    me: NodeId,
    origin: NodeId,
    pool: Pool,
    state: Snapshot,
    members: BTreeSet<NodeId>,
    ask_timeout: Duration,
    next_ticket: u64,
    outstanding: BTreeMap<u64, Outstanding>,
    /// Asks of this node given up on: a late [`Outcome::Lent`] is released at once.
    abandoned: BTreeSet<u64>,
    /// Answers given, by (asker, seq): an ask seen twice gets the same answer.
    answered: BTreeMap<(NodeId, u64), Outcome>,
    /// Donors that answered [`Outcome::Exhausted`] since the last change of claims.
    exhausted: BTreeSet<NodeId>,
    out: VecDeque<Output>,
    /// The snapshot changed since the last [`Output::Persist`].
    dirty: bool,
    stats: IpamStats,
}

impl Allocator {
    /// An allocator of node `me` for `pool`, whose origin (the owner of every block at epoch
    /// 0) is `origin`, resuming from `snapshot` (`Snapshot::default()` for a new node).
    ///
    /// The loans of `snapshot.borrowed` are written again: their entries may have been lost
    /// with the node's earlier run.
    pub fn new(me: NodeId, origin: NodeId, pool: Pool, snapshot: Snapshot) -> Self {
        let out = snapshot
            .borrowed
            .iter()
            .map(|(value, donor)| own_loan(&me, *value, donor))
            .collect();
        Self {
            me,
            origin,
            pool,
            state: snapshot,
            members: BTreeSet::new(),
            ask_timeout: DEFAULT_ASK_TIMEOUT,
            next_ticket: 0,
            outstanding: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            answered: BTreeMap::new(),
            exhausted: BTreeSet::new(),
            out,
            dirty: false,
            stats: IpamStats::default(),
        }
    }

    /// Sets how long an ask waits before another donor is asked.
    pub fn with_ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = timeout;
        self
    }

    /// The state to save.
    pub fn snapshot(&self) -> &Snapshot {
        &self.state
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The counters.
    pub fn stats(&self) -> IpamStats {
        self.stats
    }

    /// The values this node holds.
    pub fn held(&self) -> &BTreeSet<u32> {
        &self.state.held
    }

    /// The owner of `block` in this node's replica.
    pub fn owner(&self, block: BlockId) -> &NodeId {
        self.state.claims.owner(block, &self.origin)
    }

    /// The live nodes that may be asked for space (the node itself is ignored).
    pub fn set_members(&mut self, now: Instant, members: BTreeSet<NodeId>) {
        self.members = members;
        self.members.remove(&self.me);
        self.retry(now);
    }

    /// Allocates a value: at once from the node's own blocks, else by asking an owner.
    pub fn allocate(&mut self, now: Instant, request: Request) -> Result<Allocation, IpamError> {
        if let Request::Value(v) = request {
            let block = self.pool.block_of(v).ok_or(IpamError::NotInPool(v))?;
            // Held, lent, or on loan from an earlier owner of its block.
            if !self.is_free(v) {
                return Err(IpamError::Taken(v));
            }
            if self.owner(block) != &self.me {
                let owner = self.owner(block).clone();
                if !self.members.contains(&owner) {
                    return Err(IpamError::OwnerUnreachable { value: v, owner });
                }
            }
        }
        if let Some(v) = self.take_local(request) {
            return Ok(Allocation::Done(v));
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.wait(now, ticket, request)?;
        Ok(Allocation::Pending(ticket))
    }

    /// Gives back a value the node holds (its endpoint is gone); a borrowed value goes back to
    /// its donor. A value the node does not hold is ignored.
    pub fn release(&mut self, now: Instant, value: u32) {
        if !self.state.held.remove(&value) {
            return;
        }
        self.dirty = true;
        if let Some(donor) = self.state.borrowed.remove(&value) {
            self.delete_own_loan(value);
            self.ask(now, donor, Want::Release(value), Vec::new());
        }
    }

    /// Blocks per owner in this node's replica (the origin's unclaimed blocks included).
    pub fn owners(&self) -> BTreeMap<NodeId, u32> {
        let mut out: BTreeMap<NodeId, u32> = BTreeMap::new();
        for b in self.pool.block_ids() {
            *out.entry(self.owner(b).clone()).or_default() += 1;
        }
        out
    }

    /// Gives every block this node owns and holds nothing in (no value held, none lent) to
    /// an heir, before the node leaves gracefully: the live member owning the most blocks,
    /// or the origin when no member owns any (ties to the smallest name). Writes the claims
    /// of the next epoch; the heir writes them again under its own name when it sees them,
    /// so they outlive this node's entries. Blocks with values stay this node's (its
    /// endpoints are kept for its return). At most [`MAX_BLOCKS_MOVED`] blocks, those it was
    /// given by others first. Returns how many blocks were given.
    pub fn hand_back(&mut self) -> usize {
        let Some(heir) = self.heir() else {
            return 0;
        };
        // Blocks the node was given first (they hold the space it took from others), then its
        // own as the pool's origin; at most MAX_BLOCKS_MOVED.
        let mut blocks: Vec<BlockId> = self.empty_blocks().collect();
        blocks.sort_by_key(|b| std::cmp::Reverse(self.state.claims.epoch(*b)));
        blocks.truncate(MAX_BLOCKS_MOVED);
        for block in &blocks {
            self.grant(*block, &heir);
        }
        self.stats.blocks_handed_back += blocks.len() as u64;
        blocks.len()
    }

    /// Takes over the blocks of `dead`, a node an operator knows is gone for good (its host
    /// is lost and will not come back with its state): writes the claims of the next epoch
    /// naming the heir, the live member (this node included) owning the most blocks, ties to
    /// the smallest name, so that two nodes reclaiming at once name the same heir. Refused
    /// for this node itself and for a live member. At most [`MAX_BLOCKS_MOVED`] blocks per
    /// call (run it again for more). Returns how many blocks were claimed.
    ///
    /// Only the owner of a block may write its next claim; this breaks that rule on the
    /// operator's word. If `dead` was only cut off and still allocates, two nodes own its
    /// blocks: run it only for a host that will not return with its state (Weave Net's
    /// `rmpeer` has the same contract).
    pub fn reclaim(&mut self, now: Instant, dead: &NodeId) -> Result<usize, IpamError> {
        if dead == &self.me || self.members.contains(dead) {
            return Err(IpamError::Alive(dead.clone()));
        }
        let owners = self.owners();
        let heir = self
            .members
            .iter()
            .chain(std::iter::once(&self.me))
            .map(|m| (m, owners.get(m).copied().unwrap_or(0)))
            .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)))
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| self.me.clone());
        let blocks: Vec<BlockId> = self
            .pool
            .block_ids()
            .filter(|b| self.owner(*b) == dead)
            .take(MAX_BLOCKS_MOVED)
            .collect();
        for block in &blocks {
            self.grant(*block, &heir);
        }
        // What it borrowed went with its host: free here (other replicas keep their record
        // until a retirement record tells them; see docs/IPAM.md).
        let mut changed = false;
        self.state.lent.retain(|_, borrower| {
            changed |= borrower == dead;
            borrower != dead
        });
        self.state.loans.retain(|_, known| {
            changed |= known.remove(dead).is_some();
            !known.is_empty()
        });
        self.dirty |= changed;
        if heir == self.me {
            self.serve_waiting(now);
        }
        Ok(blocks.len())
    }

    /// Who inherits this node's empty blocks when it leaves.
    fn heir(&self) -> Option<NodeId> {
        let owners = self.owners();
        let best = self
            .members
            .iter()
            .filter_map(|m| owners.get(m).map(|n| (m, *n)))
            .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)))
            .map(|(m, _)| m.clone());
        best.or_else(|| (self.origin != self.me).then(|| self.origin.clone()))
            .or_else(|| self.members.iter().next().cloned())
    }

    /// Takes in one entry of the IPAM tables (written by any node, this one included).
    pub fn handle_entry(&mut self, now: Instant, entry: Entry) {
        match entry {
            Entry::Claim(block, claim) => self.handle_claim(now, block, claim),
            Entry::Ask(ask) if ask.donor == self.me => self.handle_ask(ask),
            Entry::Answer(answer) if answer.asker == self.me => self.handle_answer(now, answer),
            Entry::Loan(loan) if loan.borrower == self.me => {
                // An entry of this node's that outlived its value (a crash between the
                // release and the deletion, or state wiped): nobody else would delete it.
                if !self.state.borrowed.contains_key(&loan.value) {
                    self.delete_own_loan(loan.value);
                }
            }
            Entry::Loan(loan) => {
                let known = self.state.loans.entry(loan.value).or_default();
                if known.get(&loan.borrower) != Some(&loan.donor) {
                    known.insert(loan.borrower, loan.donor);
                    self.dirty = true;
                }
            }
            Entry::Ask(_) | Entry::Answer(_) => {}
        }
    }

    /// `borrower` deleted its loan of `value` (it released the value): the value is free
    /// again for the owner of its block. Call it only for a deletion by the borrower (a
    /// tombstone), not for an entry hidden because its writer failed: a borrower cut off
    /// may still hold the value.
    pub fn handle_loan_withdrawn(&mut self, borrower: &NodeId, value: u32) {
        self.drop_loan(value, borrower, None);
    }

    /// An entry of `table` (key as the table carries it) was deleted by its writer (a
    /// tombstone): an ask ([`handle_ask_withdrawn`](Self::handle_ask_withdrawn)) or a loan
    /// ([`handle_loan_withdrawn`](Self::handle_loan_withdrawn)). A key that does not parse
    /// is counted as malformed; other tables are ignored.
    pub fn handle_withdrawn(&mut self, table: &str, key: &str) {
        if table != crate::ASKS_TABLE && table != crate::LOANS_TABLE {
            return;
        }
        let Some((node, number)) = crate::protocol::node_and_number(key) else {
            self.stats.malformed += 1;
            return;
        };
        if table == crate::ASKS_TABLE {
            self.handle_ask_withdrawn(&node, number);
        } else if let Ok(value) = u32::try_from(number) {
            self.handle_loan_withdrawn(&node, value);
        } else {
            self.stats.malformed += 1;
        }
    }

    /// Forgets `borrower`'s loan of `value` (only the one `donor` made, when given).
    fn drop_loan(&mut self, value: u32, borrower: &NodeId, donor: Option<&NodeId>) {
        let Some(known) = self.state.loans.get_mut(&value) else {
            return;
        };
        if known
            .get(borrower)
            .is_some_and(|d| donor.is_none_or(|want| d == want))
        {
            known.remove(borrower);
            self.dirty = true;
        }
        if known.is_empty() {
            self.state.loans.remove(&value);
        }
    }

    /// Deletes this node's loan entry of `value`.
    fn delete_own_loan(&mut self, value: u32) {
        self.out.push_back(Output::Delete {
            table: crate::LOANS_TABLE,
            key: Loan::key(&self.me, value),
        });
    }

    /// Takes in an entry as the table carries it; one that does not decode is counted and
    /// ignored.
    pub fn handle_raw(&mut self, now: Instant, table: &str, key: &str, value: &[u8]) {
        match Entry::decode(table, key, value) {
            Ok(entry) => self.handle_entry(now, entry),
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// The asker withdrew (deleted) its ask `seq`: it has the answer. This node's answer to it,
    /// if any, is deleted and forgotten, so the answers table and the memo of answers stay
    /// as small as the asks in flight. Call it only for a deletion by the asker (a tombstone),
    /// not for an entry hidden because its writer failed.
    pub fn handle_ask_withdrawn(&mut self, asker: &NodeId, seq: u64) {
        if self.answered.remove(&(asker.clone(), seq)).is_some() {
            self.out.push_back(Output::Delete {
                table: crate::ANSWERS_TABLE,
                key: format!("{}/{asker}/{seq}", self.me),
            });
        }
    }

    /// Asks another donor for every ask unanswered past its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline <= now && !o.tickets.is_empty())
            .map(|(seq, _)| *seq)
            .collect();
        for seq in late {
            if let Some(o) = self.outstanding.remove(&seq) {
                self.abandon(seq);
                // The silent donor is skipped until the claims change; a value only its owner
                // can give is refused rather than asked for again and again.
                self.exhausted.insert(o.ask.donor.clone());
                for (ticket, request) in o.tickets {
                    match request {
                        Request::Value(value) => self.out.push_back(Output::Refused {
                            ticket,
                            error: IpamError::OwnerUnreachable {
                                value,
                                owner: o.ask.donor.clone(),
                            },
                        }),
                        Request::Any => self.rewait(now, ticket, request),
                    }
                }
            }
        }
        // An ask nobody waits on (a release, or an ask for space served meanwhile) is
        // withdrawn once its donor stayed silent for STALE_ASK_FACTOR timeouts, so asks to
        // donors gone for good do not stay in the table forever. A release withdrawn so
        // leaves its value lent at that donor.
        let stale: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.tickets.is_empty() && self.stale_at(o) <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in stale {
            if self.outstanding.remove(&seq).is_some() {
                self.abandon(seq);
                self.out.push_back(Output::Delete {
                    table: crate::ASKS_TABLE,
                    key: format!("{}/{seq}", self.me),
                });
            }
        }
    }

    /// When an ask nobody waits on is withdrawn.
    fn stale_at(&self, o: &Outstanding) -> Instant {
        o.deadline + self.ask_timeout * (STALE_ASK_FACTOR - 1)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outstanding
            .values()
            .map(|o| {
                if o.tickets.is_empty() {
                    self.stale_at(o)
                } else {
                    o.deadline
                }
            })
            .min()
    }

    /// The next thing to carry out; drain after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if std::mem::take(&mut self.dirty) {
            return Some(Output::Persist);
        }
        self.out.pop_front()
    }

    /// Remembers an ask given up on, forgetting the oldest beyond [`MAX_ABANDONED`].
    fn abandon(&mut self, seq: u64) {
        self.abandoned.insert(seq);
        while self.abandoned.len() > MAX_ABANDONED {
            self.abandoned.pop_first();
        }
    }

    // ---- local space ----

    /// A free value of the node's own blocks for `request`, now held.
    fn take_local(&mut self, request: Request) -> Option<u32> {
        let value = match request {
            Request::Value(v) => {
                let block = self.pool.block_of(v)?;
                (self.owner(block) == &self.me && self.is_free(v)).then_some(v)?
            }
            Request::Any => self.free_values().next()?,
        };
        self.state.held.insert(value);
        self.dirty = true;
        self.stats.local_allocations += 1;
        Some(value)
    }

    fn is_free(&self, v: u32) -> bool {
        !self.state.held.contains(&v)
            && !self.state.lent.contains_key(&v)
            && !self.state.loans.contains_key(&v)
    }

    fn owned_blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.pool.block_ids().filter(|b| self.owner(*b) == &self.me)
    }

    fn free_values(&self) -> impl Iterator<Item = u32> + '_ {
        self.owned_blocks()
            .flat_map(|b| self.pool.values(b))
            .filter(|v| self.is_free(*v))
    }

    /// A block of the node's in which it holds and has lent nothing.
    fn empty_blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.owned_blocks()
            .filter(|b| self.pool.values(*b).all(|v| self.is_free(v)))
    }

    // ---- asking ----

    /// Makes `ticket` wait for space: joins an ask for space already out, or writes a new one.
    fn wait(&mut self, now: Instant, ticket: Ticket, request: Request) -> Result<(), IpamError> {
        let (donor, want) = match request {
            Request::Value(v) => {
                let block = self.pool.block_of(v).ok_or(IpamError::NotInPool(v))?;
                let owner = self.owner(block).clone();
                if !self.members.contains(&owner) {
                    return Err(IpamError::OwnerUnreachable { value: v, owner });
                }
                (owner, Want::Value(v))
            }
            Request::Any => {
                if let Some(o) = self
                    .outstanding
                    .values_mut()
                    .find(|o| o.ask.want == Want::Space)
                {
                    o.tickets.push((ticket, request));
                    return Ok(());
                }
                let donor = self.pick_donor().ok_or(IpamError::Exhausted {
                    capacity: self.pool.capacity(),
                })?;
                (donor, Want::Space)
            }
        };
        self.ask(now, donor, want, vec![(ticket, request)]);
        Ok(())
    }

    /// [`wait`](Self::wait) again after a refusal or a silent donor; refuses the ticket if
    /// nobody is left to ask.
    fn rewait(&mut self, now: Instant, ticket: Ticket, request: Request) {
        if let Some(v) = self.take_local(request) {
            self.out.push_back(Output::Allocated { ticket, value: v });
            return;
        }
        if let Err(error) = self.wait(now, ticket, request) {
            self.out.push_back(Output::Refused { ticket, error });
        }
    }

    /// The member to ask for space: the one owning the most blocks, not known to be
    /// exhausted; ties go to the smallest name.
    fn pick_donor(&self) -> Option<NodeId> {
        let mut blocks: BTreeMap<&NodeId, u32> = BTreeMap::new();
        for b in self.pool.block_ids() {
            *blocks.entry(self.owner(b)).or_default() += 1;
        }
        self.members
            .iter()
            .filter(|m| !self.exhausted.contains(*m))
            .filter_map(|m| blocks.get(m).map(|n| (m, *n)))
            .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)))
            .map(|(m, _)| m.clone())
    }

    fn ask(&mut self, now: Instant, donor: NodeId, want: Want, tickets: Vec<(Ticket, Request)>) {
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        self.dirty = true;
        let ask = Ask {
            asker: self.me.clone(),
            seq,
            donor,
            want,
        };
        self.stats.asks += 1;
        self.out.push_back(Output::Write(Entry::Ask(ask.clone())));
        self.outstanding.insert(
            seq,
            Outstanding {
                ask,
                deadline: now + self.ask_timeout,
                tickets,
            },
        );
    }

    /// Gives every waiting allocation another chance: the claims or the members changed.
    fn retry(&mut self, now: Instant) {
        self.exhausted.clear();
        // Allocations waiting on an ask whose donor is no longer a member are moved on.
        let gone: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| !o.tickets.is_empty() && !self.members.contains(&o.ask.donor))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in gone {
            if let Some(o) = self.outstanding.remove(&seq) {
                self.abandon(seq);
                for (ticket, request) in o.tickets {
                    self.rewait(now, ticket, request);
                }
            }
        }
    }

    // ---- entries from the tables ----

    fn handle_claim(&mut self, now: Instant, block: BlockId, claim: Claim) {
        if block.0 >= self.pool.blocks() {
            self.stats.malformed += 1;
            return;
        }
        match self.state.claims.merge(block, claim) {
            Merge::Stale => {}
            Merge::Conflict => {
                self.stats.claim_conflicts += 1;
                self.dirty = true;
            }
            Merge::Newer => {
                self.dirty = true;
                if self.owner(block) == &self.me {
                    // A block given to this node (a grant, or a leaver's hand-back): its claim
                    // is written again under this node's name, so it outlives the giver's
                    // entries.
                    if let Some(claim) = self.state.claims.get(block).cloned() {
                        self.out
                            .push_back(Output::Write(Entry::Claim(block, claim)));
                    }
                    self.serve_waiting(now);
                } else {
                    self.retry(now);
                }
            }
        }
    }

    /// Serves waiting allocations from the node's own space, as far as it goes.
    fn serve_waiting(&mut self, now: Instant) {
        let seqs: Vec<u64> = self.outstanding.keys().copied().collect();
        for seq in seqs {
            let Some(o) = self.outstanding.get_mut(&seq) else {
                continue;
            };
            let tickets = std::mem::take(&mut o.tickets);
            let mut left = Vec::new();
            for (ticket, request) in tickets {
                match self.take_local(request) {
                    Some(value) => self.out.push_back(Output::Allocated { ticket, value }),
                    None => left.push((ticket, request)),
                }
            }
            if let Some(o) = self.outstanding.get_mut(&seq) {
                o.tickets = left;
            }
        }
        self.retry(now);
    }

    fn handle_ask(&mut self, ask: Ask) {
        let id = (ask.asker.clone(), ask.seq);
        let outcome = match self.answered.get(&id) {
            Some(outcome) => outcome.clone(),
            None => {
                let outcome = self.decide(&ask);
                self.answered.insert(id, outcome.clone());
                outcome
            }
        };
        self.out.push_back(Output::Write(Entry::Answer(Answer {
            donor: self.me.clone(),
            asker: ask.asker,
            seq: ask.seq,
            outcome,
        })));
    }

    /// What to answer a first-seen ask, carrying it out.
    fn decide(&mut self, ask: &Ask) -> Outcome {
        match ask.want {
            Want::Release(v) => {
                if self.state.lent.get(&v) == Some(&ask.asker) {
                    self.state.lent.remove(&v);
                    self.dirty = true;
                }
                // The borrower's own word: its loan of this donor is done with, even if the
                // deletion of its entry never reaches this node (the ask stays until
                // answered).
                let (asker, me) = (ask.asker.clone(), self.me.clone());
                self.drop_loan(v, &asker, Some(&me));
                Outcome::Released
            }
            Want::Value(v) => match self.pool.block_of(v) {
                Some(b) if self.owner(b) == &self.me => {
                    if self.is_free(v) {
                        self.lend(v, &ask.asker)
                    } else {
                        Outcome::Taken
                    }
                }
                Some(b) => Outcome::WrongOwner(self.state.claims.get(b).cloned()),
                None => Outcome::WrongOwner(None),
            },
            Want::Space => {
                let empty: Vec<BlockId> = self.empty_blocks().take(2).collect();
                // Give a block only while keeping free space of one's own, so a busy donor is
                // not drained by its neighbours; otherwise lend one value.
                let keeps_space =
                    |b: BlockId| self.free_values().any(|v| self.pool.block_of(v) != Some(b));
                let spare = match empty.as_slice() {
                    [first, _] => Some(*first),
                    [only] if keeps_space(*only) => Some(*only),
                    _ => None,
                };
                let loan = self.free_values().next();
                match (spare, loan) {
                    (Some(block), _) => self.grant(block, &ask.asker),
                    (None, Some(v)) => self.lend(v, &ask.asker),
                    (None, None) => Outcome::Exhausted,
                }
            }
        }
    }

    fn grant(&mut self, block: BlockId, to: &NodeId) -> Outcome {
        let Some(epoch) = self.state.claims.epoch(block).checked_add(1) else {
            return Outcome::Exhausted;
        };
        let claim = Claim {
            owner: to.clone(),
            epoch,
        };
        self.dirty = true;
        let epoch = claim.epoch;
        self.state.claims.merge(block, claim.clone());
        self.stats.blocks_granted += 1;
        self.out
            .push_back(Output::Write(Entry::Claim(block, claim)));
        Outcome::Granted { block, epoch }
    }

    fn lend(&mut self, value: u32, to: &NodeId) -> Outcome {
        self.state.lent.insert(value, to.clone());
        self.dirty = true;
        self.stats.values_lent += 1;
        Outcome::Lent(value)
    }

    fn handle_answer(&mut self, now: Instant, answer: Answer) {
        let ask_key = format!("{}/{}", self.me, answer.seq);
        if self
            .outstanding
            .get(&answer.seq)
            .is_some_and(|o| o.ask.donor != answer.donor)
        {
            // Not from the node asked: a forged or confused answer changes nothing.
            self.stats.malformed += 1;
            return;
        }
        let Some(o) = self.outstanding.remove(&answer.seq) else {
            if self.abandoned.remove(&answer.seq) {
                self.out.push_back(Output::Delete {
                    table: crate::ASKS_TABLE,
                    key: ask_key,
                });
                self.late_answer(now, &answer);
            }
            return;
        };
        self.out.push_back(Output::Delete {
            table: crate::ASKS_TABLE,
            key: ask_key,
        });
        match answer.outcome {
            Outcome::Granted { block, epoch } => {
                self.take_claim(block, epoch);
                self.requeue(now, o.tickets);
            }
            Outcome::Lent(v) => {
                let mut tickets = o.tickets.into_iter();
                match tickets.next() {
                    Some((ticket, _)) => {
                        self.state.held.insert(v);
                        self.state.borrowed.insert(v, answer.donor.clone());
                        self.dirty = true;
                        self.out.push_back(own_loan(&self.me, v, &answer.donor));
                        self.out.push_back(Output::Allocated { ticket, value: v });
                    }
                    None => self.ask(now, answer.donor, Want::Release(v), Vec::new()),
                }
                self.requeue(now, tickets.collect());
            }
            Outcome::Released => {}
            Outcome::Taken => {
                for (ticket, request) in o.tickets {
                    let v = match request {
                        Request::Value(v) => v,
                        Request::Any => {
                            self.rewait(now, ticket, request);
                            continue;
                        }
                    };
                    self.out.push_back(Output::Refused {
                        ticket,
                        error: IpamError::Taken(v),
                    });
                }
            }
            Outcome::Exhausted => {
                self.exhausted.insert(answer.donor);
                self.requeue(now, o.tickets);
            }
            Outcome::WrongOwner(claim) => {
                // Ask again only when the answer taught something: the newer claim of the
                // value's block. Otherwise the value's owner is not known here.
                let learned = match (claim, o.ask.want) {
                    (Some(claim), Want::Value(v)) => self
                        .pool
                        .block_of(v)
                        .is_some_and(|b| self.state.claims.merge(b, claim) == Merge::Newer),
                    _ => false,
                };
                self.dirty |= learned;
                self.exhausted.insert(answer.donor.clone());
                for (ticket, request) in o.tickets {
                    match request {
                        Request::Value(value) if !learned => self.out.push_back(Output::Refused {
                            ticket,
                            error: IpamError::OwnerUnreachable {
                                value,
                                owner: answer.donor.clone(),
                            },
                        }),
                        _ => self.rewait(now, ticket, request),
                    }
                }
            }
        }
    }

    /// An answer to an ask given up on: a grant is kept (more space), a loan is given back.
    fn late_answer(&mut self, now: Instant, answer: &Answer) {
        match &answer.outcome {
            Outcome::Granted { block, epoch } => {
                self.take_claim(*block, *epoch);
                self.serve_waiting(now);
            }
            Outcome::Lent(v) => self.ask(now, answer.donor.clone(), Want::Release(*v), Vec::new()),
            _ => {}
        }
    }

    /// Records a block granted to this node and writes the claim again under its own name, so
    /// the claim stays visible after the donor's entries are gone.
    fn take_claim(&mut self, block: BlockId, epoch: u64) {
        let claim = Claim {
            owner: self.me.clone(),
            epoch,
        };
        if block.0 >= self.pool.blocks() {
            self.stats.malformed += 1;
            return;
        }
        match self.state.claims.merge(block, claim.clone()) {
            Merge::Conflict => self.stats.claim_conflicts += 1,
            Merge::Newer => self.dirty = true,
            Merge::Stale => {}
        }
        // Unless a newer claim is known already (the block moved on), write it as ours.
        if self.state.claims.get(block) == Some(&claim) {
            self.out
                .push_back(Output::Write(Entry::Claim(block, claim)));
        }
    }

    fn requeue(&mut self, now: Instant, tickets: Vec<(Ticket, Request)>) {
        for (ticket, request) in tickets {
            self.rewait(now, ticket, request);
        }
    }
}

/// The write of `borrower`'s loan entry of `value`, lent by `donor`.
fn own_loan(borrower: &NodeId, value: u32, donor: &NodeId) -> Output {
    Output::Write(Entry::Loan(Loan {
        borrower: borrower.clone(),
        value,
        donor: donor.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any instant: the tests only move time forward from it.
    #[allow(clippy::disallowed_methods, reason = "a test's starting point in time")]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn pool() -> Pool {
        Pool::for_subnet("198.18.10.0/24".parse().unwrap()).unwrap()
    }

    fn members(names: &[&str]) -> BTreeSet<NodeId> {
        names.iter().map(|n| NodeId::from(*n)).collect()
    }

    fn loan(borrower: &str, value: u32, donor: &str) -> Entry {
        Entry::Loan(Loan {
            borrower: borrower.into(),
            value,
            donor: donor.into(),
        })
    }

    fn drain(a: &mut Allocator) -> Vec<Output> {
        std::iter::from_fn(|| a.poll_output()).collect()
    }

    /// The value of 198.18.10.`last`.
    fn value(last: u8) -> u32 {
        u32::from(std::net::Ipv4Addr::new(198, 18, 10, last))
    }

    /// Found by review: a donor whose state was wiped (as docs/IPAM.md asks of a reclaimed
    /// node before it returns) ignored the live loan naming it as donor, and handed the
    /// value out again once the block came back to it.
    #[test]
    fn a_wiped_donor_that_inherits_its_old_block_keeps_its_old_loans() {
        let now = epoch();
        let v = value(9);
        let block = pool().block_of(v).unwrap();
        let mut d = Allocator::new("d".into(), "o".into(), pool(), Snapshot::default());
        d.set_members(now, members(&["z"]));
        let claim = Claim {
            owner: "h".into(),
            epoch: 1,
        };
        d.handle_entry(now, Entry::Claim(block, claim));
        d.handle_entry(now, loan("z", v, "d"));
        // "h" dies for good; "d" reclaims its space and is the heir.
        d.reclaim(now, &"h".into()).unwrap();
        assert_eq!(d.owner(block), &NodeId::from("d"));
        assert_eq!(d.allocate(now, Request::Value(v)), Err(IpamError::Taken(v)));
    }

    /// Found by review: loans were kept by value alone, so an older borrower's loan and its
    /// deletion could free a value another borrower holds.
    #[test]
    fn a_value_lent_twice_stays_taken_until_both_borrowers_release_it() {
        let now = epoch();
        // "h" owns everything (the origin), as an heir would; "d" lent the value before.
        let mut h = Allocator::new("h".into(), "h".into(), pool(), Snapshot::default());
        let v = value(9);
        h.handle_entry(now, loan("b2", v, "d"));
        h.handle_entry(now, loan("b1", v, "d"));
        // As the node core passes a tombstone on; a key that does not parse is counted.
        h.handle_withdrawn(crate::LOANS_TABLE, &format!("b1/{v}"));
        h.handle_withdrawn(crate::LOANS_TABLE, "b2/not-a-value");
        assert_eq!(h.stats().malformed, 1);
        assert_eq!(h.allocate(now, Request::Value(v)), Err(IpamError::Taken(v)));
        h.handle_loan_withdrawn(&"b2".into(), v);
        assert_eq!(
            h.allocate(now, Request::Value(v)).unwrap(),
            Allocation::Done(v)
        );
    }

    /// Found by review: a donor that restarted and missed the borrower's deletion kept the
    /// value taken forever; the borrower's release ask (kept until answered) frees it.
    #[test]
    fn a_donor_frees_a_lent_value_at_the_release_ask_without_the_deletion() {
        let now = epoch();
        let mut d = Allocator::new("d".into(), "d".into(), pool(), Snapshot::default());
        let v = value(9);
        d.handle_entry(now, loan("b", v, "d"));
        assert_eq!(d.allocate(now, Request::Value(v)), Err(IpamError::Taken(v)));
        d.handle_entry(
            now,
            Entry::Ask(Ask {
                asker: "b".into(),
                seq: 0,
                donor: "d".into(),
                want: Want::Release(v),
            }),
        );
        assert!(d.snapshot().loans.is_empty());
        assert_eq!(
            d.allocate(now, Request::Value(v)).unwrap(),
            Allocation::Done(v)
        );
    }

    /// Found by review: a loan entry of this node's that outlived its value (a crash between
    /// the release and the deletion) was never deleted, and kept the value taken elsewhere.
    #[test]
    fn a_borrower_deletes_its_loan_entries_of_values_it_does_not_hold() {
        let now = epoch();
        let mut b = Allocator::new("b".into(), "d".into(), pool(), Snapshot::default());
        let v = value(9);
        b.handle_entry(now, loan("b", v, "d"));
        assert_eq!(
            drain(&mut b),
            [Output::Delete {
                table: crate::LOANS_TABLE,
                key: format!("b/{v}"),
            }]
        );
        // One it holds stays.
        let mut held = Snapshot::default();
        held.held.insert(v);
        held.borrowed.insert(v, "d".into());
        let mut b = Allocator::new("b".into(), "d".into(), pool(), held);
        assert_eq!(drain(&mut b), [Output::Write(loan("b", v, "d"))]);
        b.handle_entry(now, loan("b", v, "d"));
        assert_eq!(drain(&mut b), []);
    }

    #[test]
    fn the_origin_allocates_locally_without_a_message() {
        let now = epoch();
        let mut a = Allocator::new("a".into(), "a".into(), pool(), Snapshot::default());
        let first = a.allocate(now, Request::Any).unwrap();
        assert_eq!(
            first,
            Allocation::Done(u32::from(std::net::Ipv4Addr::new(198, 18, 10, 2)))
        );
        assert_eq!(a.poll_output(), Some(Output::Persist), "save first");
        assert_eq!(a.poll_output(), None, "no message for a local allocation");
        let v = u32::from(std::net::Ipv4Addr::new(198, 18, 10, 77));
        assert_eq!(
            a.allocate(now, Request::Value(v)).unwrap(),
            Allocation::Done(v)
        );
        assert_eq!(a.allocate(now, Request::Value(v)), Err(IpamError::Taken(v)));
        let gateway = u32::from(std::net::Ipv4Addr::new(198, 18, 10, 1));
        assert_eq!(
            a.allocate(now, Request::Value(gateway)),
            Err(IpamError::NotInPool(gateway))
        );
        a.release(now, v);
        assert_eq!(
            a.allocate(now, Request::Value(v)).unwrap(),
            Allocation::Done(v)
        );
        assert_eq!(a.stats().local_allocations, 3);
    }

    #[test]
    fn a_node_without_space_asks_and_a_lone_node_is_refused() {
        let now = epoch();
        let mut b = Allocator::new("b".into(), "a".into(), pool(), Snapshot::default());
        assert_eq!(
            b.allocate(now, Request::Any),
            Err(IpamError::Exhausted { capacity: 253 }),
            "nobody to ask"
        );
        let v = value(9);
        assert_eq!(
            b.allocate(now, Request::Value(v)),
            Err(IpamError::OwnerUnreachable {
                value: v,
                owner: "a".into()
            })
        );
        b.set_members(now, members(&["a", "b"]));
        let Allocation::Pending(ticket) = b.allocate(now, Request::Any).unwrap() else {
            panic!("b owns nothing");
        };
        assert_eq!(
            b.poll_output(),
            Some(Output::Persist),
            "the ask's sequence number"
        );
        let Some(Output::Write(Entry::Ask(ask))) = b.poll_output() else {
            panic!("an ask");
        };
        assert_eq!((ask.donor.as_str(), ask.want), ("a", Want::Space));
        assert_eq!(b.poll_timeout(), Some(now + DEFAULT_ASK_TIMEOUT));

        // The origin grants a block; b re-asserts the claim and allocates from it.
        let mut a = Allocator::new("a".into(), "a".into(), pool(), Snapshot::default());
        a.set_members(now, members(&["a", "b"]));
        a.handle_entry(now, Entry::Ask(ask));
        let mut to_b = Vec::new();
        while let Some(out) = a.poll_output() {
            if let Output::Write(e) = out {
                to_b.push(e);
            }
        }
        assert!(
            matches!(to_b[0], Entry::Claim(_, Claim { epoch: 1, .. })),
            "{to_b:?}"
        );
        for e in to_b {
            b.handle_entry(now, e);
        }
        let outputs: Vec<Output> = std::iter::from_fn(|| b.poll_output()).collect();
        assert!(
            outputs
                .iter()
                .any(|o| matches!(o, Output::Allocated { ticket: t, .. } if *t == ticket)),
            "{outputs:?}"
        );
        assert_eq!(b.stats().asks, 1);
        assert_eq!(a.stats().blocks_granted, 1);
    }

    /// Found by the IPAM bench: the founder, origin of the whole VNI pool, handed back all
    /// 262,080 blocks on shutdown (as many claims written and saved) and its shutdown hung.
    /// A hand-back and a reclaim move at most MAX_BLOCKS_MOVED blocks.
    #[test]
    fn hand_back_and_reclaim_are_bounded() {
        let now = epoch();
        let mut founder = Allocator::new("a".into(), "a".into(), Pool::vnis(), Snapshot::default());
        founder.set_members(now, members(&["a", "b"]));
        assert_eq!(founder.hand_back(), MAX_BLOCKS_MOVED);
        let writes = std::iter::from_fn(|| founder.poll_output())
            .filter(|o| matches!(o, Output::Write(Entry::Claim(..))))
            .count();
        assert_eq!(writes, MAX_BLOCKS_MOVED);
        assert_eq!(
            founder.owners().get(&NodeId::from("b")),
            Some(&(MAX_BLOCKS_MOVED as u32))
        );

        let mut other = Allocator::new("c".into(), "a".into(), Pool::vnis(), Snapshot::default());
        other.set_members(now, members(&["c"]));
        assert_eq!(
            other.reclaim(now, &NodeId::from("b")),
            Ok(0),
            "b owns nothing in c's replica"
        );
        assert_eq!(
            other.reclaim(now, &NodeId::from("a")).unwrap(),
            MAX_BLOCKS_MOVED
        );
        assert_eq!(
            other.reclaim(now, &NodeId::from("c")),
            Err(IpamError::Alive(NodeId::from("c")))
        );
    }

    /// An answer lives as long as its ask: once the asker withdraws the ask, the donor deletes
    /// its answer and forgets it.
    #[test]
    fn a_withdrawn_ask_takes_its_answer_with_it() {
        let now = epoch();
        let mut a = Allocator::new("a".into(), "a".into(), pool(), Snapshot::default());
        a.set_members(now, members(&["a", "b"]));
        let ask = Ask {
            asker: "b".into(),
            seq: 7,
            donor: "a".into(),
            want: Want::Space,
        };
        a.handle_entry(now, Entry::Ask(ask));
        let _: Vec<Output> = std::iter::from_fn(|| a.poll_output()).collect();
        a.handle_ask_withdrawn(&NodeId::from("b"), 7);
        assert_eq!(
            a.poll_output(),
            Some(Output::Delete {
                table: crate::ANSWERS_TABLE,
                key: "a/b/7".into()
            })
        );
        a.handle_ask_withdrawn(&NodeId::from("b"), 7);
        assert_eq!(a.poll_output(), None, "once");
    }

    /// Found by review: an ask nobody waits on (here the release of a borrowed value) to a
    /// donor that never answers stayed in the table forever. It is withdrawn after
    /// STALE_ASK_FACTOR timeouts.
    #[test]
    fn an_ask_nobody_waits_on_is_withdrawn_in_the_end() {
        let now = epoch();
        let mut b = Allocator::new("b".into(), "a".into(), pool(), Snapshot::default());
        b.set_members(now, members(&["a", "b"]));
        let Allocation::Pending(_) = b.allocate(now, Request::Any).unwrap() else {
            panic!("b owns nothing");
        };
        let ask = std::iter::from_fn(|| b.poll_output())
            .find_map(|o| match o {
                Output::Write(Entry::Ask(a)) => Some(a),
                _ => None,
            })
            .unwrap();
        b.handle_entry(
            now,
            Entry::Answer(Answer {
                donor: "a".into(),
                asker: "b".into(),
                seq: ask.seq,
                outcome: Outcome::Lent(u32::from(std::net::Ipv4Addr::new(198, 18, 10, 9))),
            }),
        );
        let _: Vec<Output> = std::iter::from_fn(|| b.poll_output()).collect();
        b.release(now, u32::from(std::net::Ipv4Addr::new(198, 18, 10, 9)));
        let release = std::iter::from_fn(|| b.poll_output())
            .find_map(|o| match o {
                Output::Write(Entry::Ask(a)) => Some(a),
                _ => None,
            })
            .unwrap();
        assert!(matches!(release.want, Want::Release(_)));
        let deadline = b.poll_timeout().expect("the release has a deadline");
        assert_eq!(deadline, now + DEFAULT_ASK_TIMEOUT * STALE_ASK_FACTOR);
        b.handle_timeout(deadline);
        let outs: Vec<Output> = std::iter::from_fn(|| b.poll_output()).collect();
        assert!(
            outs.contains(&Output::Delete {
                table: crate::ASKS_TABLE,
                key: format!("b/{}", release.seq)
            }),
            "{outs:?}"
        );
        assert_eq!(b.poll_timeout(), None);
    }
}
