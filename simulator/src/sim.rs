//! The discrete-event loop: hosts running the real node core, a network model, the script and
//! the workload, on virtual time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::{MemberEvent, Node, NodeConfig, NodeIdentity, Output};
use discovery::{EndpointRecord, PortConfig, Protocol, ServiceDiscovery};
use networkdb::{Key, NetworkDb, NetworkId, TableName, WatchEvent, WatchFilter};
use nodecore::{Event as CoreEvent, LocalState, NamesChange, NodeCore, Settings, Stack, Step};
use overlay::{Dataplane, FakeKernel, Mac, PeerDb, PeerRecord};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::options::{PartitionKind, SimOptions};
use crate::report::{Report, Traffic, Violation};
use crate::scenario::{self, Action, Expectation, Script};
use crate::{OptionsError, seeds};

/// The port every host listens on.
const PORT: u16 = 7946;
/// Table names: the workload writes the first two; probes (tracked writes) the third.
pub(crate) const TABLES: [&str; 3] = [discovery::ENDPOINT_TABLE, "overlay_peer_table", "probe"];
/// Index of `endpoint_table` in [`TABLES`]: its values are encoded [`EndpointRecord`]s.
pub(crate) const ENDPOINT_TABLE: usize = 0;
/// Index of the probe table in [`TABLES`].
pub(crate) const PROBE_TABLE: usize = 2;
/// Index of `overlay_peer_table` in [`TABLES`]: its values are encoded [`PeerRecord`]s.
pub(crate) const PEER_TABLE: usize = 1;
/// The workload's endpoint IPs: `198.18.0.0/15` (benchmarking range), `1 << 17` addresses.
const ENDPOINT_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// The workload's `endpoint_table` addresses: `10.10.0.1` and up, a pool this small so that
/// keys often claim the same address.
const DNS_IP_BASE: u32 = u32::from_be_bytes([10, 10, 0, 1]);
/// Size of the `endpoint_table` address pool.
const DNS_IP_POOL: u64 = 24;
/// Task aliases of `endpoint_table` records: few, so that claims collide.
const TASK_ALIASES: [&str; 3] = ["alias0", "alias1", "Alias2"];
/// Service aliases of `endpoint_table` records.
const SERVICE_ALIASES: [&str; 2] = ["front", "back"];
/// Violations kept per checker; the rest are counted.
pub(crate) const MAX_VIOLATIONS_PER_CHECK: usize = 20;
/// A leaving process hands its empty address blocks back this long before its goodbye.
const HAND_BACK_GRACE: Duration = Duration::from_secs(1);
/// A graceful leave stops the process this long after the goodbye.
const LEAVE_LINGER: Duration = Duration::from_secs(2);
/// Virtual time is shifted by this much so that negative clock offsets stay representable.
const CLOCK_BASE: Duration = Duration::from_secs(3600);

/// What becomes of a key the workload wrote: the checker verifies that a key whose last fate
/// is `Gone` is visible nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Its last write was a create or an update.
    Live,
    /// Deleted, or its owner left the network or the cluster, or crashed.
    Gone,
}

/// One sandbox's VIP balancer: the agent's state machine over a fake kernel.
#[derive(Debug, Default)]
pub(crate) struct SimBalancer {
    /// What the agent knows of the sandbox's kernel.
    pub(crate) balancer: discovery::nft::SandboxBalancer,
    /// The kernel.
    pub(crate) kernel: discovery::nft::FakeNftables,
}

/// One host: a fixed address and name, running one node core at a time.
pub(crate) struct Host {
    pub(crate) name: Arc<str>,
    pub(crate) addr: SocketAddr,
    /// The running process: a node and its core.
    pub(crate) stack: Option<Stack>,
    /// What the process saved last ([`CoreEvent::Persist`]): a restart resumes from it.
    pub(crate) disk: Option<LocalState>,
    /// The host left the cluster and stays away: its saved endpoints are no longer live.
    pub(crate) gone: bool,
    /// The running process handed its empty blocks back for a leave that comes next.
    handed_back: bool,
    /// Starts so far; the SWIM incarnation of the running process.
    pub(crate) incarnation: u64,
    offset_nanos: i64,
    paused_until: Option<Duration>,
    buffered: usize,
    timer_gen: u64,
    timer_at: Option<Duration>,
    /// When the running process started.
    pub(crate) alive_since: Duration,
    /// Networks the running process is attached to, with the time it attached.
    pub(crate) attached: BTreeMap<usize, Duration>,
    /// Keys of the running process the workload may update or delete: (network, table,
    /// key).
    owned: Vec<(usize, usize, String)>,
    /// Keys of the running process written by the script or as probes: never touched again.
    fixed_keys: Vec<(usize, usize, String)>,
    rejoin: Vec<usize>,
    leaving: bool,
    /// How often a live node reported this host's process down.
    pub(crate) down_reports: u64,
    /// The running process's overlay driver (only with [`SimOptions::check_kernel`]).
    pub(crate) overlay: Option<Overlay>,
    /// The running process's service discovery (only with [`SimOptions::check_dns`]).
    pub(crate) dns: Option<ServiceDiscovery>,
    /// The VIP load balancer of the sandbox this host has on each network its service
    /// discovery is attached to: the agent's per-sandbox state and a fake nf_tables fed the
    /// agent's bytes (only with [`SimOptions::check_dns`]).
    pub(crate) balancers: BTreeMap<NetworkId, SimBalancer>,
}

/// A process's overlay driver: the peer DB fed by its `overlay_peer_table` watch and the
/// fake kernel it programs.
pub(crate) struct Overlay {
    /// The peer DB; its local VTEP is the host's address IP.
    pub(crate) peers: PeerDb,
    /// The programmed neighbour and FDB entries.
    pub(crate) kernel: FakeKernel,
}

impl Host {
    /// Running, and not stopping after a graceful leave.
    pub(crate) fn is_live(&self) -> bool {
        self.stack.is_some() && !self.leaving
    }

    /// The running process's node.
    pub(crate) fn node(&self) -> Option<&Node> {
        self.stack.as_ref().map(Stack::node)
    }

    /// The running process's core.
    pub(crate) fn core(&self) -> Option<&NodeCore> {
        self.stack.as_ref().map(Stack::core)
    }
}

/// A tracked write: a fresh key whose spread to every attached node is measured.
pub(crate) struct Probe {
    pub(crate) at: Duration,
    pub(crate) owner: usize,
    pub(crate) owner_incarnation: u64,
    pub(crate) network: usize,
    /// When each host first saw it, in nanoseconds after the write (`u64::MAX`: not seen).
    pub(crate) seen: Vec<u64>,
}

#[derive(Debug)]
pub(crate) enum Event {
    Datagram {
        from: usize,
        to: usize,
        payload: Vec<u8>,
    },
    Stream {
        from: usize,
        to: usize,
        incarnation: u64,
        payload: Vec<u8>,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    Act(Action),
    Workload,
    Probe,
    /// Node 0 creates the IPAM workload's networks (retried until it can).
    IpamSetup {
        attempt: u32,
    },
    /// One operation of the IPAM workload.
    IpamOp,
    /// Every live node creates `ipam_burst` endpoints at once.
    IpamBurst,
    Sample,
    Calm,
}

struct Queued {
    at: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Which links a partition cuts, as masks over the hosts.
struct Cut {
    a: Vec<bool>,
    b: Vec<bool>,
    symmetric: bool,
}

impl Cut {
    fn blocks(&self, from: usize, to: usize) -> bool {
        if self.symmetric {
            self.a[from] != self.a[to]
        } else {
            self.a[from] && self.b[to]
        }
    }
}

/// A run in progress. Build it with [`Simulation::new`], then [`Simulation::run`].
pub struct Simulation {
    pub(crate) opts: SimOptions,
    config: NodeConfig,
    epoch: Instant,
    pub(crate) now: Duration,
    end: Duration,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    pub(crate) hosts: Vec<Host>,
    seed_addrs: Vec<SocketAddr>,
    net_rng: Xoshiro256PlusPlus,
    work_rng: Xoshiro256PlusPlus,
    cuts: Vec<Cut>,
    active_cuts: Vec<usize>,
    calm: bool,
    stream_tail: hashbrown::HashMap<(u32, u32), Duration>,
    pub(crate) net_ids: Vec<NetworkId>,
    pub(crate) table_ids: Vec<TableName>,
    /// Fate of every key written, by (network, table, key).
    pub(crate) fates: BTreeMap<(usize, usize, String), Fate>,
    pub(crate) probes: Vec<Probe>,
    write_id: u64,
    key_counter: u64,
    /// The endpoint IP index of every key written to `overlay_peer_table`.
    endpoint_ips: BTreeMap<String, u32>,
    /// Neighbour and FDB operations applied to the fake kernels, over every process.
    pub(crate) kernel_ops: u64,
    /// `endpoint_table` changes applied by the service discoveries of stopped processes.
    pub(crate) dns_applied: u64,
    /// Ops applied to the sandboxes' fake load balancers, and ops they refused.
    pub(crate) balancer_ops: u64,
    /// See `balancer_ops`.
    pub(crate) balancer_refused: u64,
    /// Numbers the balancers' transactions.
    pub(crate) balancer_seq: u32,
    workload: (Duration, Duration),
    pub(crate) final_checks: Vec<Expectation>,
    queue_bounds: Vec<(usize, usize, usize)>,
    pub(crate) traffic: Traffic,
    /// Drops by reason: the simulator's own, and those of processes that stopped.
    pub(crate) drops: BTreeMap<String, u64>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) max_network_queue: usize,
    pub(crate) max_cluster_queue: usize,
    pub(crate) api_errors: u64,
    pub(crate) events: u64,
    pub(crate) settled_at: Option<Duration>,
    pub(crate) node_seconds: f64,
    out_buf: Vec<Step>,
    /// The IPAM workload and its checker's state.
    pub(crate) ipam: crate::ipam::IpamWork,
    /// The IPAM workload's generator (its own stream: the other workloads' draws stay).
    pub(crate) ipam_rng: Xoshiro256PlusPlus,
    started: Instant,
    last_progress: Option<Instant>,
}

impl Simulation {
    /// Validates the options, builds the scenario's schedule and starts every host's first
    /// process at time zero.
    pub fn new(opts: SimOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let script = scenario::build(&opts)?;
        let mut config = if opts.fast_swim {
            NodeConfig::fast()
        } else {
            NodeConfig::default()
        };
        if let Some(size) = opts.swim_cluster_size {
            // foca's LAN profile sized for `size` members: more retransmissions of each
            // membership update and, with the default profile, a longer suspicion.
            let sized = foca::Config::new_lan(size);
            config.swim_sized_for = size;
            config.swim.max_transmissions = sized.max_transmissions;
            if !opts.fast_swim {
                config.swim.suspect_to_down_after = sized.suspect_to_down_after;
            }
        }
        let n = opts.nodes;
        let mut clock_rng =
            Xoshiro256PlusPlus::seed_from_u64(seeds::derive(opts.seed, seeds::CLOCK, 0));
        let max_off = i64::try_from(opts.clock_offset_max.as_nanos()).unwrap_or(i64::MAX);
        let hosts = (0..n)
            .map(|i| {
                let offset_nanos = if max_off == 0 {
                    0
                } else {
                    clock_rng.random_range(-max_off..=max_off)
                };
                Host {
                    name: format!("node{i}").into(),
                    addr: host_addr(i),
                    stack: None,
                    disk: None,
                    gone: false,
                    handed_back: false,
                    incarnation: 0,
                    offset_nanos,
                    paused_until: None,
                    buffered: 0,
                    timer_gen: 0,
                    timer_at: None,
                    alive_since: Duration::ZERO,
                    attached: BTreeMap::new(),
                    owned: Vec::new(),
                    fixed_keys: Vec::new(),
                    rejoin: Vec::new(),
                    leaving: false,
                    down_reports: 0,
                    overlay: None,
                    dns: None,
                    balancers: BTreeMap::new(),
                }
            })
            .collect();
        let Script {
            actions,
            partitions,
            workload,
            final_checks,
        } = script;
        let cuts = partitions
            .iter()
            .map(|p| {
                let mask = |nodes: &[usize]| {
                    let mut m = vec![false; n];
                    for &i in nodes {
                        m[i] = true;
                    }
                    m
                };
                match &p.kind {
                    PartitionKind::Symmetric { group } => Cut {
                        a: mask(group),
                        b: Vec::new(),
                        symmetric: true,
                    },
                    PartitionKind::OneWay { from, to } => {
                        let a = mask(from);
                        let b = if to.is_empty() {
                            a.iter().map(|x| !x).collect()
                        } else {
                            mask(to)
                        };
                        Cut {
                            a,
                            b,
                            symmetric: false,
                        }
                    }
                }
            })
            .collect();
        let mut sim = Self {
            config,
            epoch: networkdb::harness::epoch(),
            now: Duration::ZERO,
            end: opts.duration + opts.calm,
            queue: BinaryHeap::new(),
            seq: 0,
            hosts,
            seed_addrs: scenario::seed_nodes(n).into_iter().map(host_addr).collect(),
            net_rng: Xoshiro256PlusPlus::seed_from_u64(seeds::derive(opts.seed, seeds::NETWORK, 0)),
            work_rng: Xoshiro256PlusPlus::seed_from_u64(seeds::derive(
                opts.seed,
                seeds::WORKLOAD,
                0,
            )),
            cuts,
            active_cuts: Vec::new(),
            calm: false,
            stream_tail: hashbrown::HashMap::new(),
            net_ids: (0..opts.networks)
                .map(|k| NetworkId::from(format!("net{k}")))
                .collect(),
            table_ids: TABLES.iter().map(|t| TableName::from(*t)).collect(),
            fates: BTreeMap::new(),
            probes: Vec::new(),
            write_id: 0,
            key_counter: 0,
            endpoint_ips: BTreeMap::new(),
            kernel_ops: 0,
            dns_applied: 0,
            balancer_ops: 0,
            balancer_refused: 0,
            balancer_seq: 0,
            workload,
            final_checks,
            queue_bounds: Vec::new(),
            traffic: Traffic::default(),
            drops: BTreeMap::new(),
            violations: Vec::new(),
            max_network_queue: 0,
            max_cluster_queue: 0,
            api_errors: 0,
            events: 0,
            settled_at: None,
            node_seconds: 0.0,
            out_buf: Vec::new(),
            ipam: crate::ipam::IpamWork::default(),
            ipam_rng: Xoshiro256PlusPlus::seed_from_u64(seeds::derive(opts.seed, seeds::IPAM, 0)),
            #[allow(clippy::disallowed_methods, reason = "wall time is only reported")]
            started: Instant::now(),
            last_progress: None,
            opts,
        };
        for i in 0..n {
            sim.start(i);
        }
        for (at, action) in actions {
            sim.push(at, Event::Act(action));
        }
        if sim.opts.ops_per_sec > 0.0 && sim.workload.0 < sim.workload.1 {
            sim.push(sim.workload.0, Event::Workload);
        }
        if sim.opts.probes_per_sec > 0.0 && sim.workload.0 < sim.workload.1 {
            sim.push(sim.workload.0, Event::Probe);
        }
        if sim.opts.ipam_networks > 0 && sim.workload.0 < sim.workload.1 {
            sim.push(sim.workload.0, Event::IpamSetup { attempt: 0 });
        }
        sim.push(sim.opts.sample_interval, Event::Sample);
        sim.push(sim.opts.duration, Event::Calm);
        Ok(sim)
    }

    /// Runs to the end of the calm phase, checks, and reports.
    pub fn run(mut self) -> Report {
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > self.end {
                break;
            }
            if q.at > self.now {
                let live = self.hosts.iter().filter(|h| h.stack.is_some()).count();
                self.node_seconds += live as f64 * (q.at - self.now).as_secs_f64();
                self.now = q.at;
            }
            self.events += 1;
            self.handle(q.event);
            if self.events.is_multiple_of(4096) {
                self.progress(false);
            }
        }
        if self.now < self.end {
            let live = self.hosts.iter().filter(|h| h.stack.is_some()).count();
            self.node_seconds += live as f64 * (self.end - self.now).as_secs_f64();
            self.now = self.end;
        }
        self.progress(true);
        crate::check::final_checks(&mut self);
        Report::build(self)
    }

    /// Wall time since the simulation was built.
    pub(crate) fn wall(&self) -> Duration {
        self.started.elapsed()
    }

    // ---- events ----

    pub(crate) fn push(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Datagram { from, to, payload } => self.deliver_datagram(from, to, payload),
            Event::Stream {
                from,
                to,
                incarnation,
                payload,
            } => self.deliver_stream(from, to, incarnation, payload),
            Event::Timer { node, generation } => self.fire_timer(node, generation),
            Event::Act(action) => self.act(action),
            Event::Workload => {
                self.workload_op();
                let mean = 1.0 / self.opts.ops_per_sec;
                let next = self.now + jittered(&mut self.work_rng, mean);
                if next < self.workload.1 {
                    self.push(next, Event::Workload);
                }
            }
            Event::Probe => {
                self.probe();
                let mean = 1.0 / self.opts.probes_per_sec;
                let next = self.now + jittered(&mut self.work_rng, mean);
                if next < self.workload.1 {
                    self.push(next, Event::Probe);
                }
            }
            Event::IpamSetup { attempt } => {
                if !self.ipam_setup() && attempt < 20 {
                    self.push(
                        self.now + Duration::from_secs(1),
                        Event::IpamSetup {
                            attempt: attempt + 1,
                        },
                    );
                }
            }
            Event::IpamOp => {
                self.ipam_op();
                let mean = 1.0 / self.opts.ipam_ops_per_sec;
                let next = self.now + jittered(&mut self.ipam_rng, mean);
                if next < self.workload.1 {
                    self.push(next, Event::IpamOp);
                }
            }
            Event::IpamBurst => self.ipam_burst(),
            Event::Sample => {
                self.sample();
                let next = self.now + self.opts.sample_interval;
                if next <= self.end {
                    self.push(next, Event::Sample);
                }
            }
            Event::Calm => {
                self.calm = true;
                self.active_cuts.clear();
            }
        }
    }

    pub(crate) fn paused(&self, i: usize) -> Option<Duration> {
        self.hosts[i].paused_until.filter(|u| *u > self.now)
    }

    fn deliver_datagram(&mut self, from: usize, to: usize, payload: Vec<u8>) {
        if self.hosts[to].stack.is_none() {
            self.drop_sim("sim.dead_destination");
            return;
        }
        if let Some(until) = self.paused(to) {
            if self.hosts[to].buffered >= self.opts.pause_buffer {
                self.drop_sim("sim.pause_overflow");
            } else {
                self.hosts[to].buffered += 1;
                self.push(until, Event::Datagram { from, to, payload });
            }
            return;
        }
        let now = self.instant(to);
        let from_addr = self.hosts[from].addr;
        if let Some(stack) = self.hosts[to].stack.as_mut() {
            // Refused input is counted by the core (NodeStats, networkdb::Stats).
            let _ = stack.node_mut().handle_datagram(now, from_addr, &payload);
        }
        self.drain(to);
    }

    fn deliver_stream(&mut self, from: usize, to: usize, incarnation: u64, payload: Vec<u8>) {
        if self.hosts[to].stack.is_none() || self.hosts[to].incarnation != incarnation {
            self.drop_sim("sim.connection_reset");
            return;
        }
        if let Some(until) = self.paused(to) {
            self.push(
                until,
                Event::Stream {
                    from,
                    to,
                    incarnation,
                    payload,
                },
            );
            return;
        }
        let now = self.instant(to);
        let name = self.hosts[from].name.clone();
        if let Some(stack) = self.hosts[to].stack.as_mut() {
            let _ = stack.node_mut().handle_stream(now, &[&*name], &payload);
        }
        self.drain(to);
    }

    fn fire_timer(&mut self, i: usize, generation: u64) {
        if self.hosts[i].timer_gen != generation || self.hosts[i].stack.is_none() {
            return;
        }
        self.hosts[i].timer_at = None;
        if let Some(until) = self.paused(i) {
            self.set_timer(i, until);
            return;
        }
        let now = self.instant(i);
        if let Some(stack) = self.hosts[i].stack.as_mut() {
            stack.handle_timeout(now);
        }
        self.drain(i);
    }

    fn set_timer(&mut self, i: usize, at: Duration) {
        let h = &mut self.hosts[i];
        h.timer_gen += 1;
        h.timer_at = Some(at);
        let generation = h.timer_gen;
        self.push(
            at,
            Event::Timer {
                node: i,
                generation,
            },
        );
    }

    /// Drains node `i`'s outputs and its core's events, in order, and schedules its next
    /// deadline.
    fn drain(&mut self, i: usize) {
        let mut outs = std::mem::take(&mut self.out_buf);
        let now = self.instant(i);
        if let Some(stack) = self.hosts[i].stack.as_mut() {
            while let Some(step) = stack.poll(now) {
                outs.push(step);
            }
        }
        for step in outs.drain(..) {
            match step {
                Step::Output(out) => self.route(i, out),
                Step::Event(event) => self.core_event(i, event),
            }
        }
        self.out_buf = outs;
        let Some(deadline) = self.hosts[i].stack.as_ref().map(Stack::poll_timeout) else {
            return;
        };
        let at = self.global(i, deadline).max(self.now);
        if self.hosts[i].timer_at.is_none_or(|t| at < t) {
            self.set_timer(i, at);
        }
    }

    fn route(&mut self, from: usize, out: Output) {
        match out {
            Output::Datagram { to, payload } => {
                let sealed = payload.len() + cluster::crypto::ENVELOPE_OVERHEAD;
                if matches!(
                    payload.first(),
                    Some(&cluster::KIND_SWIM | &cluster::KIND_MEMBERSHIP_DIGEST)
                ) {
                    self.traffic.swim_datagrams += 1;
                } else {
                    self.traffic.db_datagrams += 1;
                }
                self.traffic.datagram_bytes += sealed as u64;
                if sealed > self.config.db.packet_size {
                    let detail = format!(
                        "{} sent a {sealed}-byte datagram (kind {:?}), over packet_size {}",
                        self.hosts[from].name,
                        payload.first(),
                        self.config.db.packet_size
                    );
                    self.violation("datagram-size", detail);
                }
                let Some(to) = self.host_of(to) else {
                    self.drop_sim("sim.unknown_address");
                    return;
                };
                if self.blocked(from, to) {
                    self.drop_sim("sim.partition");
                    return;
                }
                let mut copies = 1;
                if !self.calm {
                    if self.opts.loss > 0.0 && self.net_rng.random_bool(self.opts.loss) {
                        self.drop_sim("sim.loss");
                        return;
                    }
                    if self.opts.duplicate > 0.0 && self.net_rng.random_bool(self.opts.duplicate) {
                        copies = 2;
                        self.traffic.duplicated += 1;
                    }
                }
                if copies == 2 {
                    let delay = self.datagram_delay();
                    let copy = payload.clone();
                    self.push(
                        self.now + delay,
                        Event::Datagram {
                            from,
                            to,
                            payload: copy,
                        },
                    );
                }
                let delay = self.datagram_delay();
                self.push(self.now + delay, Event::Datagram { from, to, payload });
            }
            Output::Stream { to, peer, payload } => {
                self.traffic.streams += 1;
                self.traffic.stream_bytes += payload.len() as u64 + 4;
                let Some(to) = self.host_of(to) else {
                    self.drop_sim("sim.unknown_address");
                    return;
                };
                if *self.hosts[to].name != *peer {
                    self.drop_sim("sim.tls_name_mismatch");
                    return;
                }
                if self.blocked(from, to) {
                    self.drop_sim("sim.partition");
                    return;
                }
                if self.hosts[to].stack.is_none() {
                    self.drop_sim("sim.connection_refused");
                    return;
                }
                // Reliable and in order per pair: never before the previous message.
                let key = (from as u32, to as u32);
                let at = (self.now + self.latency())
                    .max(self.stream_tail.get(&key).copied().unwrap_or_default());
                self.stream_tail.insert(key, at);
                let incarnation = self.hosts[to].incarnation;
                self.push(
                    at,
                    Event::Stream {
                        from,
                        to,
                        incarnation,
                        payload,
                    },
                );
            }
            Output::Watch { event, .. } => {
                if event.table.as_str() != TABLES[PROBE_TABLE] {
                    return;
                }
                let Some(value) = event.value else { return };
                let Some(tag) = value.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                    return;
                };
                let tag = u64::from_le_bytes(tag);
                let Some(probe) = tag
                    .checked_sub(1)
                    .and_then(|p| usize::try_from(p).ok())
                    .and_then(|p| self.probes.get_mut(p))
                else {
                    return;
                };
                let since = self.now.saturating_sub(probe.at).as_nanos();
                let slot = &mut probe.seen[from];
                if *slot == u64::MAX {
                    *slot = u64::try_from(since).unwrap_or(u64::MAX - 1);
                }
            }
            Output::Member(ev) if self.opts.trace => {
                eprintln!("{:>9.3} node{from}: member {ev:?}", self.now.as_secs_f64());
                if let MemberEvent::Down(id) = ev
                    && let Some(j) = self.host_of(id.addr)
                    && self.hosts[j].incarnation == id.incarnation
                {
                    self.hosts[j].down_reports += 1;
                }
            }
            Output::Member(MemberEvent::Down(id)) => {
                if let Some(j) = self.host_of(id.addr)
                    && self.hosts[j].incarnation == id.incarnation
                {
                    self.hosts[j].down_reports += 1;
                }
            }
            Output::Member(_) => {}
        }
    }

    fn blocked(&self, from: usize, to: usize) -> bool {
        self.active_cuts
            .iter()
            .any(|&c| self.cuts[c].blocks(from, to))
    }

    fn datagram_delay(&mut self) -> Duration {
        let mut delay = self.latency();
        if !self.opts.jitter.is_zero() {
            delay += uniform(&mut self.net_rng, Duration::ZERO, self.opts.jitter);
        }
        delay
    }

    fn latency(&mut self) -> Duration {
        uniform(
            &mut self.net_rng,
            self.opts.latency_min,
            self.opts.latency_max,
        )
    }

    fn api_error(&mut self, node: usize, e: &networkdb::Error) {
        self.api_errors += 1;
        if self.opts.trace {
            eprintln!(
                "{:>9.3} node{node}: API call refused: {e}",
                self.now.as_secs_f64()
            );
        }
    }

    pub(crate) fn drop_sim(&mut self, reason: &str) {
        *self.drops.entry(reason.to_owned()).or_default() += 1;
    }

    /// Records a violation (bounded per checker).
    pub(crate) fn violation(&mut self, check: &'static str, detail: String) {
        let count = self.violations.iter().filter(|v| v.check == check).count();
        if count < MAX_VIOLATIONS_PER_CHECK {
            self.violations.push(Violation { check, detail });
        } else {
            *self
                .drops
                .entry(format!("violations_not_listed.{check}"))
                .or_default() += 1;
        }
    }

    // ---- time ----

    /// The instant node `i`'s clock shows now.
    pub(crate) fn instant(&self, i: usize) -> Instant {
        let base = self.epoch + CLOCK_BASE + self.now;
        let off = self.hosts[i].offset_nanos;
        if off >= 0 {
            base + Duration::from_nanos(off.unsigned_abs())
        } else {
            base - Duration::from_nanos(off.unsigned_abs())
        }
    }

    /// The global time at which node `i`'s clock shows `at`.
    fn global(&self, i: usize, at: Instant) -> Duration {
        let since = at.saturating_duration_since(self.epoch).as_nanos() as i128;
        let t = since - CLOCK_BASE.as_nanos() as i128 - i128::from(self.hosts[i].offset_nanos);
        Duration::from_nanos(u64::try_from(t.max(0)).unwrap_or(u64::MAX))
    }

    // ---- hosts ----

    fn host_of(&self, addr: SocketAddr) -> Option<usize> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        let [a, b, c, d] = v4.ip().octets();
        if a != 127 || v4.port() != PORT || b == 0 {
            return None;
        }
        let i = (usize::from(b - 1) << 16) | (usize::from(c) << 8) | usize::from(d);
        (i < self.hosts.len()).then_some(i)
    }

    /// Starts a new process on host `i` (a higher incarnation than any before).
    fn start(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        h.incarnation += 1;
        h.alive_since = self.now;
        h.paused_until = None;
        h.leaving = false;
        h.timer_gen += 1;
        h.timer_at = None;
        let id = NodeIdentity::new(h.name.clone(), h.addr, h.incarnation);
        let seed = seeds::derive(
            self.opts.seed,
            seeds::NODE,
            ((i as u64) << 20) | h.incarnation,
        );
        let now = self.instant(i);
        match Node::new(now, id, seed, self.config.clone()) {
            Ok(mut node) => {
                // Every change of the probe table is observed: probes are timed from it.
                let _ = node.db_mut().watch(WatchFilter {
                    table: Some(TableName::from(TABLES[PROBE_TABLE])),
                    network: None,
                    own: false,
                });
                if self.opts.check_kernel {
                    // The overlay driver, fed by the core with every change of the peer
                    // table, in every network.
                    self.hosts[i].overlay = Some(Overlay {
                        peers: PeerDb::new(self.hosts[i].addr.ip()),
                        kernel: FakeKernel::new(),
                    });
                }
                if self.opts.check_dns {
                    // Service discovery, fed by the core's one stream of name changes.
                    self.hosts[i].dns = Some(ServiceDiscovery::new());
                }
                let h = &self.hosts[i];
                let settings = Settings::new(
                    h.name.to_string(),
                    h.addr.ip(),
                    i == 0,
                    seeds::derive(
                        self.opts.seed,
                        seeds::CORE,
                        ((i as u64) << 20) | h.incarnation,
                    ),
                );
                let state = h.disk.clone().unwrap_or_default();
                self.hosts[i].stack = Some(Stack::new(node, now, settings, state));
                self.drain(i);
            }
            Err(e) => {
                self.violation("config", format!("node{i} refused the configuration: {e}"));
            }
        }
    }

    /// Carries out an event of host `i`'s core: what the agent's engine does with it.
    fn core_event(&mut self, i: usize, event: CoreEvent) {
        match event {
            CoreEvent::Persist(state) => self.hosts[i].disk = Some(*state),
            CoreEvent::Peer(event) => self.overlay_event(i, &event),
            CoreEvent::Names(change) => {
                let mut refused = Vec::new();
                let h = &mut self.hosts[i];
                if let Some(sd) = h.dns.as_mut() {
                    match change {
                        NamesChange::Attach(network) => sd.attach(&NetworkId::from(network)),
                        NamesChange::Detach(network) => {
                            let id = NetworkId::from(network);
                            sd.detach(&id);
                            // The sandbox leaves the network: its balancer goes with it.
                            h.balancers.remove(&id);
                        }
                        NamesChange::Record(event) if sd.apply(&event) => {
                            // What the agent does for each sandbox on the network: the
                            // network's shared table (the checker compares it with one
                            // computed afresh from the records).
                            let want = sd
                                .services(event.network.as_str())
                                .cloned()
                                .unwrap_or_default();
                            let b = h.balancers.entry(event.network.clone()).or_default();
                            self.balancer_seq = self.balancer_seq.wrapping_add(1 << 20);
                            if let Some(p) = b.balancer.prepare(&want, self.balancer_seq) {
                                match b.kernel.apply(&p.batch.finish_bytes()) {
                                    Ok(()) => {
                                        b.balancer.committed(&want);
                                        self.balancer_ops += p.ops as u64;
                                    }
                                    Err(e) => {
                                        b.balancer.failed();
                                        self.balancer_refused += 1;
                                        refused.push(format!("network {}: {e}", event.network));
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                for why in refused {
                    self.violation(
                        "balancer",
                        format!("node{i}: the fake nf_tables refused a transaction: {why}"),
                    );
                }
            }
            CoreEvent::Answer(request, answer) => {
                let now = self.now;
                if let Some(detail) = self.ipam.answered(i, request, &answer, now) {
                    self.violation("ipam", detail);
                }
                self.check_ipam();
            }
            _ => {}
        }
    }

    /// Stops host `i`'s process; its counters are kept.
    fn stop(&mut self, i: usize) {
        let Some(stack) = self.hosts[i].stack.take() else {
            return;
        };
        crate::report::add_node_counters(&mut self.drops, stack.node());
        self.ipam.waiting.retain(|(host, _), _| *host != i);
        let h = &mut self.hosts[i];
        h.overlay = None;
        h.balancers.clear();
        if let Some(sd) = h.dns.take() {
            self.dns_applied += sd.stats().applied;
        }
        h.timer_gen += 1;
        h.timer_at = None;
        h.leaving = false;
        h.rejoin = h.attached.keys().copied().collect();
        h.attached.clear();
        let mut keys = std::mem::take(&mut h.owned);
        keys.append(&mut h.fixed_keys);
        for (network, table, key) in keys {
            self.fates.insert((network, table, key), Fate::Gone);
        }
    }

    fn act(&mut self, action: Action) {
        // A paused process makes no API call: the call waits until it resumes.
        let node = match &action {
            Action::Join { node }
            | Action::JoinNetwork { node, .. }
            | Action::Create { node, .. }
            | Action::Flap { node, .. }
            | Action::LeaveCluster { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(until) = node.and_then(|i| self.paused(i)) {
            self.push(until, Event::Act(action));
            return;
        }
        if self.opts.trace {
            eprintln!("{:>9.3} action {action:?}", self.now.as_secs_f64());
        }
        match action {
            Action::Join { node } => {
                let seeds = self.seed_addrs.clone();
                let _ = self.call(node, |n, now| n.join(now, seeds));
            }
            Action::JoinNetwork { node, network } => self.join_network(node, network),
            Action::Create {
                node,
                network,
                table,
                key,
            } => {
                self.create(node, network, table, key, 0, true);
            }
            Action::Flap {
                node,
                network,
                gap,
                keys,
            } => {
                self.leave_network(node, network);
                let at = self.now + gap;
                self.push(at, Event::Act(Action::JoinNetwork { node, network }));
                for key in keys {
                    self.push(
                        at,
                        Event::Act(Action::Create {
                            node,
                            network,
                            table: 0,
                            key,
                        }),
                    );
                }
            }
            Action::Crash {
                node,
                restart_after,
            } => {
                self.stop(node);
                if let Some(d) = restart_after {
                    self.push(self.now + d, Event::Act(Action::Restart { node }));
                }
            }
            Action::LeaveCluster {
                node,
                restart_after,
            } => {
                if !self.hosts[node].is_live() {
                    return;
                }
                if !self.hosts[node].handed_back {
                    // As the agent does: empty address blocks go to an heir first, and get a
                    // second to spread before the goodbye.
                    let given = self
                        .call_core(node, |core, db, now| core.hand_back(db, now))
                        .unwrap_or(0);
                    if given > 0 {
                        self.ipam.counters.handed_back += given as u64;
                        self.hosts[node].handed_back = true;
                        self.push(
                            self.now + HAND_BACK_GRACE,
                            Event::Act(Action::LeaveCluster {
                                node,
                                restart_after: restart_after
                                    .map(|d| d.saturating_sub(HAND_BACK_GRACE)),
                            }),
                        );
                        return;
                    }
                }
                self.hosts[node].handed_back = false;
                let _ = self.call(node, |n, now| n.leave(now));
                let h = &mut self.hosts[node];
                h.leaving = true;
                let mut keys = std::mem::take(&mut h.owned);
                keys.append(&mut h.fixed_keys);
                for (network, table, key) in keys {
                    self.fates.insert((network, table, key), Fate::Gone);
                }
                let restart_after = restart_after.map(|d| d.saturating_sub(LEAVE_LINGER));
                let incarnation = h.incarnation;
                self.push(
                    self.now + LEAVE_LINGER,
                    Event::Act(Action::Stop {
                        node,
                        incarnation,
                        restart_after,
                    }),
                );
            }
            Action::Stop {
                node,
                incarnation,
                restart_after,
            } => {
                if self.hosts[node].incarnation != incarnation {
                    return;
                }
                self.stop(node);
                // Left for good: its saved endpoints are no longer live.
                self.hosts[node].gone = restart_after.is_none();
                if let Some(d) = restart_after {
                    self.push(self.now + d, Event::Act(Action::Restart { node }));
                }
            }
            Action::Restart { node } => {
                self.stop(node);
                self.start(node);
                let seeds = self.seed_addrs.clone();
                let _ = self.call(node, |n, now| n.join(now, seeds));
                // The application attaches its networks again a second later.
                let rejoin = std::mem::take(&mut self.hosts[node].rejoin);
                for (k, network) in rejoin.into_iter().enumerate() {
                    let at = self.now + Duration::from_secs(1) + Duration::from_millis(k as u64);
                    self.push(at, Event::Act(Action::JoinNetwork { node, network }));
                }
            }
            Action::Pause { node, length } => {
                if self.hosts[node].stack.is_some() {
                    // The core's timers wait too: its pending allocations get the pause.
                    for ((host, _), w) in self.ipam.waiting.iter_mut() {
                        if *host == node {
                            w.at += length;
                        }
                    }
                    self.hosts[node].paused_until = Some(self.now + length);
                    self.hosts[node].buffered = 0;
                }
            }
            Action::PartitionStart { index } => {
                if !self.calm && !self.active_cuts.contains(&index) {
                    self.active_cuts.push(index);
                }
            }
            Action::PartitionEnd { index } => self.active_cuts.retain(|c| *c != index),
            Action::Expect(e) => match e {
                Expectation::QueueWithin {
                    node,
                    network,
                    bound,
                } => self.queue_bounds.push((node, network, bound)),
                other => crate::check::expectation_now(self, &other),
            },
        }
    }

    /// Calls the running process of host `i` (if live) and drains it.
    fn call<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        if !self.hosts[i].is_live() {
            return None;
        }
        let now = self.instant(i);
        let r = self.hosts[i].stack.as_mut().map(|s| f(s.node_mut(), now));
        self.drain(i);
        r
    }

    /// Calls the core of host `i` (if live) and drains it.
    pub(crate) fn call_core<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut NodeCore, &mut NetworkDb, Instant) -> R,
    ) -> Option<R> {
        if !self.hosts[i].is_live() {
            return None;
        }
        let now = self.instant(i);
        let r = self.hosts[i].stack.as_mut().map(|s| {
            let (core, db) = s.split();
            f(core, db, now)
        });
        self.drain(i);
        r
    }

    fn join_network(&mut self, node: usize, network: usize) {
        let id = self.net_ids[network].clone();
        let joined = self.call_core(node, |core, db, now| {
            let result = db.join_network(now, id.clone());
            if result.is_ok() {
                // Service discovery resolves on it from now on, starting from the node's
                // view (entries its process wrote while not attached become part of the
                // network on the join).
                core.resolve_on(db, &id);
            }
            result
        });
        match joined {
            Some(Ok(())) => {
                let now = self.now;
                let h = &mut self.hosts[node];
                h.attached.insert(network, now);
                if let Some(o) = h.overlay.as_mut() {
                    // The first local endpoint joined: the namespace and device now exist.
                    let id = &self.net_ids[network];
                    o.kernel.create_network(id);
                    o.peers.network_ready(id);
                    self.sync_kernel(node);
                }
            }
            Some(Err(e)) => self.api_error(node, &e),
            None => {}
        }
    }

    fn leave_network(&mut self, node: usize, network: usize) {
        let id = self.net_ids[network].clone();
        let left = self.call_core(node, |core, db, now| {
            let result = db.leave_network(now, id.clone());
            if result.is_ok() {
                // NetworkDB reported every visible entry of the network deleted; the records
                // go with the network (libnetwork `cleanupServiceDiscovery`).
                core.stop_resolving(&id);
            }
            result
        });
        match left {
            Some(Ok(())) => {
                let h = &mut self.hosts[node];
                h.attached.remove(&network);
                if let Some(o) = h.overlay.as_mut() {
                    // The network's namespace and device are destroyed.
                    let id = &self.net_ids[network];
                    o.peers.network_gone(id);
                    o.kernel.delete_network(id);
                }
                let mut gone = Vec::new();
                h.owned.retain(|(net, table, key)| {
                    if *net == network {
                        gone.push((*net, *table, key.clone()));
                    }
                    *net != network
                });
                h.fixed_keys.retain(|(net, table, key)| {
                    if *net == network {
                        gone.push((*net, *table, key.clone()));
                    }
                    *net != network
                });
                for k in gone {
                    self.fates.insert(k, Fate::Gone);
                }
            }
            Some(Err(e)) => self.api_error(node, &e),
            None => {}
        }
    }

    /// A value: the write id, the probe tag (probe index + 1, or 0), then filler.
    fn value(&mut self, probe_tag: u64) -> Bytes {
        self.write_id += 1;
        let mut v = Vec::with_capacity(self.opts.value_bytes.max(16));
        v.extend_from_slice(&self.write_id.to_le_bytes());
        v.extend_from_slice(&probe_tag.to_le_bytes());
        v.resize(self.opts.value_bytes.max(16), b'v');
        Bytes::from(v)
    }

    /// The value `node` writes to `key` of `table`: an encoded [`PeerRecord`] in
    /// `overlay_peer_table` (the endpoint IP assigned to the key, its MAC, the host's address
    /// as VTEP; the prefix length varies so updates change the value), else [`Self::value`].
    fn entry_value(&mut self, node: usize, table: usize, key: &str, probe_tag: u64) -> Bytes {
        if table == ENDPOINT_TABLE {
            return self.endpoint_value(key);
        }
        if table != PEER_TABLE {
            return self.value(probe_tag);
        }
        self.write_id += 1;
        let next = self.endpoint_ips.len() as u32;
        let index = *self.endpoint_ips.entry(key.to_owned()).or_insert(next);
        let ip = Ipv4Addr::from(ENDPOINT_BASE + (index & ((1 << 17) - 1)));
        let prefix = 15 + (self.write_id % 8) as u8;
        let Ok(endpoint_ip) = ipnet::Ipv4Net::new(ip, prefix) else {
            return self.value(probe_tag);
        };
        let record = PeerRecord {
            endpoint_ip,
            endpoint_mac: Mac::from_ipv4(ip),
            tunnel_endpoint_ip: self.hosts[node].addr.ip(),
        };
        Bytes::from(record.encode())
    }

    /// An encoded [`EndpointRecord`] for `key` of `endpoint_table`, drawn from the write id,
    /// the key and the seed (not from the workload's generator, whose draws stay as they
    /// were): the name `task-<key>` (upper case in one write of eight), an address from a
    /// pool of [`DNS_IP_POOL`] (keys share addresses), one of four services with a stable
    /// ID (`svc0` and `svc1` with a VIP, `svc2` and `svc3` round robin) or none, aliases from
    /// small sets (claims collide), and disabled in one write of eight. The published port
    /// carries the write id, so every update changes the value.
    fn endpoint_value(&mut self, key: &str) -> Bytes {
        self.write_id += 1;
        let mut h = self.opts.seed ^ self.write_id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in key.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let h = splitmix64(h);
        let name = format!("task-{key}");
        let name = if h.is_multiple_of(8) {
            name.to_ascii_uppercase()
        } else {
            name
        };
        let ip = Ipv4Addr::from(DNS_IP_BASE + ((h >> 3) % DNS_IP_POOL) as u32);
        let service = (h >> 8) % 5;
        let mut record = EndpointRecord {
            name,
            endpoint_ip: ip.to_string(),
            service_disabled: (h >> 12).is_multiple_of(8),
            ingress_ports: vec![PortConfig {
                name: String::new(),
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port: self.write_id as u32,
            }],
            ..Default::default()
        };
        match (h >> 16) % 4 {
            0 => {}
            k => record
                .task_aliases
                .push(TASK_ALIASES[k as usize - 1].to_owned()),
        }
        if service < 4 {
            record.service_name = format!("svc{service}");
            record.service_id = format!("sid-{service}");
            if service < 2 {
                record.virtual_ip = format!("10.10.255.{}", 2 + service);
            }
            if (h >> 20).is_multiple_of(3) {
                let alias = SERVICE_ALIASES[((h >> 24) % 2) as usize];
                record.aliases.push(alias.to_owned());
            }
        }
        Bytes::from(record.encode())
    }

    /// Feeds an `overlay_peer_table` watch event of host `i`'s process to its peer DB and
    /// programs the fake kernel.
    fn overlay_event(&mut self, i: usize, event: &WatchEvent) {
        if let Some(o) = self.hosts[i].overlay.as_mut() {
            o.peers.apply(event);
            self.sync_kernel(i);
        }
    }

    /// Drains host `i`'s peer DB's changed networks and applies their plans to its kernel.
    fn sync_kernel(&mut self, i: usize) {
        let Some(o) = self.hosts[i].overlay.as_mut() else {
            return;
        };
        let mut failures = Vec::new();
        while let Some(id) = o.peers.poll_changed() {
            let (Some(wanted), Ok(programmed)) = (o.peers.wanted(&id), o.kernel.state(&id)) else {
                continue;
            };
            let ops = overlay::plan(wanted, &programmed);
            match o.kernel.apply(&id, &ops) {
                Ok(()) => self.kernel_ops += ops.len() as u64,
                Err(e) => failures.push(format!(
                    "node{i}: applying the plan of network {id} to the fake kernel failed: {e}"
                )),
            }
        }
        for detail in failures {
            self.violation("kernel", detail);
        }
    }

    /// Creates `key`; a `fixed` key (scripted or a probe) is never updated or deleted by the
    /// workload.
    fn create(
        &mut self,
        node: usize,
        network: usize,
        table: usize,
        key: String,
        tag: u64,
        fixed: bool,
    ) -> bool {
        let value = self.entry_value(node, table, &key, tag);
        let (t, n, k) = (
            self.table_ids[table].clone(),
            self.net_ids[network].clone(),
            Key::from(key.as_str()),
        );
        match self.call(node, |nd, now| {
            nd.db_mut().create_entry(now, t, n, k, value)
        }) {
            Some(Ok(())) => {
                let h = &mut self.hosts[node];
                let list = if fixed {
                    &mut h.fixed_keys
                } else {
                    &mut h.owned
                };
                if !list
                    .iter()
                    .any(|(a, b, c)| (*a, *b, c.as_str()) == (network, table, key.as_str()))
                {
                    list.push((network, table, key.clone()));
                }
                self.fates.insert((network, table, key), Fate::Live);
                true
            }
            Some(Err(e)) => {
                self.api_error(node, &e);
                false
            }
            None => false,
        }
    }

    // ---- workload ----

    /// A live, running host chosen at random (a few tries), or none.
    fn pick_host(&mut self) -> Option<usize> {
        for _ in 0..8 {
            let i = self.work_rng.random_range(0..self.hosts.len());
            if self.hosts[i].is_live() && self.paused(i).is_none() {
                return Some(i);
            }
        }
        None
    }

    fn workload_op(&mut self) {
        let Some(i) = self.pick_host() else { return };
        let mix = self.opts.mix;
        let total = mix.create + mix.update + mix.delete + mix.churn;
        let roll = self.work_rng.random_range(0..total);
        let attached: Vec<usize> = self.hosts[i].attached.keys().copied().collect();
        let owned = self.hosts[i].owned.len();
        if attached.is_empty() && mix.churn == 0 {
            // A node between a leave and a rejoin of the script is left alone.
            return;
        }
        if roll >= mix.create + mix.update + mix.delete || attached.is_empty() {
            // Churn: leave a network, or join one.
            let leave = !attached.is_empty()
                && (attached.len() == self.opts.networks || self.work_rng.random_bool(0.5));
            if leave {
                let network = attached[self.work_rng.random_range(0..attached.len())];
                self.leave_network(i, network);
            } else {
                let free: Vec<usize> = (0..self.opts.networks)
                    .filter(|n| !self.hosts[i].attached.contains_key(n))
                    .collect();
                if let Some(&network) = free.get(self.work_rng.random_range(0..free.len().max(1))) {
                    self.join_network(i, network);
                }
            }
        } else if roll < mix.create || owned == 0 {
            let network = attached[self.work_rng.random_range(0..attached.len())];
            let table = self.work_rng.random_range(0..2);
            self.key_counter += 1;
            let key = format!("n{i}-{}", self.key_counter);
            self.create(i, network, table, key, 0, false);
        } else {
            let k = self.work_rng.random_range(0..owned);
            let (network, table, key) = self.hosts[i].owned[k].clone();
            let (t, n, kk) = (
                self.table_ids[table].clone(),
                self.net_ids[network].clone(),
                Key::from(key.as_str()),
            );
            if roll < mix.create + mix.update {
                let value = self.entry_value(i, table, &key, 0);
                match self.call(i, |nd, now| nd.db_mut().update_entry(now, t, n, kk, value)) {
                    Some(Ok(())) => {
                        self.fates.insert((network, table, key), Fate::Live);
                    }
                    Some(Err(e)) => self.api_error(i, &e),
                    None => {}
                }
            } else {
                match self.call(i, |nd, now| nd.db_mut().delete_entry(now, t, n, kk)) {
                    Some(Ok(())) => {
                        self.hosts[i].owned.swap_remove(k);
                        self.fates.insert((network, table, key), Fate::Gone);
                    }
                    Some(Err(e)) => self.api_error(i, &e),
                    None => {}
                }
            }
        }
    }

    fn probe(&mut self) {
        let Some(i) = self.pick_host() else { return };
        let attached: Vec<usize> = self.hosts[i].attached.keys().copied().collect();
        if attached.is_empty() {
            return;
        }
        let network = attached[self.work_rng.random_range(0..attached.len())];
        let index = self.probes.len();
        let key = format!("p{index}");
        let n = self.hosts.len();
        self.probes.push(Probe {
            at: self.now,
            owner: i,
            owner_incarnation: self.hosts[i].incarnation,
            network,
            seen: vec![u64::MAX; n],
        });
        if self.create(i, network, PROBE_TABLE, key, index as u64 + 1, true) {
            self.probes[index].seen[i] = 0;
        } else {
            self.probes.pop();
        }
    }

    // ---- sampling ----

    fn sample(&mut self) {
        let max = self.config.db.max_queue_len;
        let mut over = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let Some(node) = h.node() else { continue };
            let db = node.db();
            let cq = db.cluster_queue_len();
            self.max_cluster_queue = self.max_cluster_queue.max(cq);
            if cq > max {
                over.push(format!("node{i}: cluster queue {cq} > max_queue_len {max}"));
            }
            for (k, id) in self.net_ids.iter().enumerate() {
                let Some(stats) = db.network_stats(id) else {
                    continue;
                };
                self.max_network_queue = self.max_network_queue.max(stats.queue_len);
                if stats.queue_len > max {
                    over.push(format!(
                        "node{i}: queue of net{k} {} > max_queue_len {max}",
                        stats.queue_len
                    ));
                }
                for &(node, network, bound) in &self.queue_bounds {
                    if node == i && network == k && stats.queue_len > bound {
                        over.push(format!(
                            "node{i}: queue of net{k} {} > {bound} (libnetwork#2216 bound)",
                            stats.queue_len
                        ));
                    }
                }
            }
        }
        for detail in over {
            self.violation("queue-bound", detail);
        }
        self.check_ipam();
        if self.calm && self.settled_at.is_none() && crate::check::quick_converged(self) {
            self.settled_at = Some(self.now - self.opts.duration);
        }
    }

    fn progress(&mut self, last: bool) {
        if !self.opts.progress {
            return;
        }
        let wall = self.wall();
        if wall < Duration::from_secs(3) {
            return;
        }
        #[allow(clippy::disallowed_methods, reason = "progress output only")]
        let now = Instant::now();
        if !last
            && self
                .last_progress
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
        {
            return;
        }
        self.last_progress = Some(now);
        let rate = self.node_seconds / wall.as_secs_f64().max(1e-9);
        eprint!(
            "\rnetsim: {:>7.1}/{:.0} s virtual ({:>3.0}%), {} events, {:.0} node-s/s, wall {:.1} s   {}",
            self.now.as_secs_f64(),
            self.end.as_secs_f64(),
            100.0 * self.now.as_secs_f64() / self.end.as_secs_f64().max(1e-9),
            self.events,
            rate,
            wall.as_secs_f64(),
            if last { "\n" } else { "" }
        );
    }
}

/// SplitMix64's finalizer: a well-mixed 64-bit value from `x`.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49eb_133b_11eb);
    x ^ (x >> 31)
}

/// Host `i`'s address: `127.x.y.z:7946`, never `127.0.0.0/16`.
pub(crate) fn host_addr(i: usize) -> SocketAddr {
    let i = i as u32;
    let ip = Ipv4Addr::new(127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::from((ip, PORT))
}

fn uniform(rng: &mut Xoshiro256PlusPlus, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
    min + Duration::from_nanos(rng.random_range(0..=span))
}

/// A delay of `mean_secs` on average, uniform in `[0.5, 1.5] * mean`.
pub(crate) fn jittered(rng: &mut Xoshiro256PlusPlus, mean_secs: f64) -> Duration {
    let f: f64 = rng.random_range(0.5..1.5);
    Duration::from_secs_f64((mean_secs * f).clamp(1e-6, 3600.0))
}
