//! Every knob of a run, in one struct: network model, faults, workload and phases.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::scenario::Scenario;

/// Everything that decides a run. The same options (seed included) give the same run, event
/// for event, and the same final digest.
///
/// Times are offsets from the start of virtual time. A run has a **fault phase**
/// `[0, duration)` (workload, loss, duplication, partitions, crashes, pauses) and a **calm
/// phase** `[duration, duration + calm)`: no writes, no loss, no partition, no pause; latency
/// stays. The checkers run at the end of the calm phase.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// The scenario: which script and workload run. See [`SimOptions::preset`].
    pub scenario: Scenario,
    /// Number of hosts (each runs one node core at a fixed address). At least the
    /// scenario's [`Scenario::min_nodes`].
    pub nodes: usize,
    /// The master seed: every node's seed, the network's and the workload's randomness
    /// derive from it.
    pub seed: u64,
    /// Length of the fault phase.
    pub duration: Duration,
    /// Length of the calm phase.
    pub calm: Duration,
    /// One-way latency of every message: uniform in `[latency_min, latency_max]`.
    pub latency_min: Duration,
    /// See `latency_min`.
    pub latency_max: Duration,
    /// Extra delay of datagrams, uniform in `[0, jitter]` (reorders them; streams keep their
    /// order per pair of nodes).
    pub jitter: Duration,
    /// Probability that a datagram is lost during the fault phase (streams are reliable).
    pub loss: f64,
    /// Probability that a datagram is delivered twice during the fault phase.
    pub duplicate: f64,
    /// Scheduled partitions (they must end within the fault phase).
    pub partitions: Vec<PartitionSpec>,
    /// Scheduled crashes, optionally followed by a restart with a new incarnation.
    pub crashes: Vec<CrashSpec>,
    /// Scheduled graceful leaves (the node says goodbye, stops 2 s later, and restarts if
    /// asked).
    pub leaves: Vec<CrashSpec>,
    /// Scheduled pauses: the node handles no input and no timer, then catches up.
    pub pauses: Vec<PauseSpec>,
    /// Datagrams a paused node buffers (its socket buffer); more are dropped.
    pub pause_buffer: usize,
    /// Each node's clock is shifted by a constant drawn uniformly in `[-max, +max]`.
    pub clock_offset_max: Duration,
    /// Use [`cluster::NodeConfig::fast`] (300 ms probes, short suspicion) instead of the
    /// default LAN profile.
    pub fast_swim: bool,
    /// Size foca's membership dissemination for this many members (`foca::Config::new_lan`'s
    /// retransmissions and, with the default profile, suspicion time) instead of the 32
    /// that `NodeConfig::default` assumes.
    pub swim_cluster_size: Option<std::num::NonZeroU32>,
    /// Number of networks (`net0`, `net1`, ...).
    pub networks: usize,
    /// Networks each node attaches to at start, on average (each with probability
    /// `networks_per_node / networks`, at least one), in scenarios that attach at random.
    pub networks_per_node: f64,
    /// Workload operations per second, cluster-wide, during the fault phase.
    pub ops_per_sec: f64,
    /// Weights of the workload's operations.
    pub mix: WriteMix,
    /// Size of every written value in bytes (at least 8: the write id), except the encoded
    /// records of `endpoint_table` and `overlay_peer_table`, which have their own size.
    pub value_bytes: usize,
    /// Tracked writes (probes) per second: fresh keys whose spread is measured.
    pub probes_per_sec: f64,
    /// Random faults drawn from the seed and added to the schedule (scenario `random`).
    pub faults: usize,
    /// Entries preloaded into the populated network (scenario `join-populated`).
    pub populate: usize,
    /// How often queues are sampled (and, in the calm phase, convergence is tested).
    pub sample_interval: Duration,
    /// Print every scripted action and membership event on stderr (for debugging a seed).
    pub trace: bool,
    /// Print a progress line on stderr (at most about four times per wall second, only when
    /// the run lasts more than a few seconds).
    pub progress: bool,
    /// Run the `kernel` checker: every process feeds its `overlay_peer_table` watch events
    /// to an overlay peer DB programming a fake kernel, and at the end of the calm phase the
    /// kernel must hold what the node's view of the table implies.
    pub check_kernel: bool,
    /// Run the `dns` checker: every process feeds its `endpoint_table` watch events and its
    /// own writes of that table to a [`discovery::ServiceDiscovery`], and at the end of the
    /// calm phase each attached network's names must be what the node's view of the table
    /// implies.
    pub check_dns: bool,
    /// Networks of the IPAM workload (`ipam0`, ...), created by node 0 (the founder) through
    /// its node core after the cluster formed.
    pub ipam_networks: usize,
    /// The prefix length of their subnets (`198.18.<k>.0/<prefix>`), 16..=28.
    pub ipam_prefix: u8,
    /// IPAM operations per second, cluster-wide, during the fault phase: endpoints created
    /// (one in eight with a given address) and removed through the hosts' node cores, now
    /// and then a network created (its VNI from the cluster-wide pool).
    pub ipam_ops_per_sec: f64,
    /// Every live node creates this many endpoints at the same instant (scenario
    /// `ipam-burst`), 0 for none.
    pub ipam_burst: usize,
    /// Run the `ipam` checker, continuously: no address held twice in a network, no VNI
    /// held by two networks (among the running processes' states and the states the stopped
    /// ones saved), every allocation answered within its bound.
    pub check_ipam: bool,
}

/// Weights of the random workload's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteMix {
    /// Create a new entry owned by the acting node.
    pub create: u32,
    /// Update one of its entries.
    pub update: u32,
    /// Delete one of its entries.
    pub delete: u32,
    /// Leave one of its networks or join another.
    pub churn: u32,
}

impl Default for WriteMix {
    fn default() -> Self {
        Self {
            create: 45,
            update: 30,
            delete: 20,
            churn: 5,
        }
    }
}

/// A partition, active in `[start, end)`. The link is tested when a message is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSpec {
    /// When it starts.
    pub start: Duration,
    /// When it heals (at most the fault phase's end).
    pub end: Duration,
    /// Which messages it drops.
    pub kind: PartitionKind,
}

/// Which links a partition cuts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionKind {
    /// `group` and the other nodes cannot reach each other, both ways.
    Symmetric {
        /// One side.
        group: Vec<usize>,
    },
    /// Messages from `from` to `to` are dropped; the other direction works.
    OneWay {
        /// Senders cut off.
        from: Vec<usize>,
        /// Receivers they cannot reach; empty means every node not in `from`.
        to: Vec<usize>,
    },
}

/// A crash (or a graceful leave) of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashSpec {
    /// The host.
    pub node: usize,
    /// When.
    pub at: Duration,
    /// Restart after this long with a new incarnation at the same address, or stay down.
    pub restart_after: Option<Duration>,
}

/// A pause of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PauseSpec {
    /// The host.
    pub node: usize,
    /// When it stops.
    pub at: Duration,
    /// How long it stays stopped.
    pub length: Duration,
}

/// Options that cannot run. Nothing was simulated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// A field is outside its allowed range.
    OutOfRange {
        /// The field.
        field: &'static str,
        /// What is allowed.
        allowed: String,
        /// What was given.
        value: String,
    },
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange {
                field,
                allowed,
                value,
            } => write!(f, "invalid {field}: {value} (allowed: {allowed})"),
        }
    }
}

impl std::error::Error for OptionsError {}

impl SimOptions {
    /// The options of a scenario for `nodes` nodes and `seed`: its durations, network model
    /// and workload. Its script (partitions, crashes...) is built when the run starts.
    pub fn preset(scenario: Scenario, nodes: usize, seed: u64) -> Self {
        // Every node's core costs grow with the cluster (each node handles O(N) gossip of
        // node and network events): beyond 200 nodes the default phases are halved so that
        // 1,000 nodes finish in minutes on two cores.
        let phase = if nodes > 200 {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(60)
        };
        let mut o = Self {
            scenario,
            nodes,
            seed,
            duration: phase,
            calm: phase,
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            partitions: Vec::new(),
            crashes: Vec::new(),
            leaves: Vec::new(),
            pauses: Vec::new(),
            pause_buffer: 1024,
            clock_offset_max: Duration::ZERO,
            fast_swim: false,
            swim_cluster_size: None,
            // A network spans about 100 nodes (2 of 4 networks up to 200 nodes, then one
            // network per 50 nodes).
            networks: (nodes / 50).clamp(4, 1000),
            networks_per_node: 2.0,
            ops_per_sec: 50.0,
            mix: WriteMix::default(),
            value_bytes: 128,
            probes_per_sec: 4.0,
            faults: 0,
            populate: 10_000,
            sample_interval: Duration::from_secs(1),
            progress: false,
            trace: false,
            check_kernel: true,
            check_dns: true,
            ipam_networks: 1,
            ipam_prefix: 24,
            ipam_ops_per_sec: 5.0,
            ipam_burst: 0,
            check_ipam: true,
        };
        scenario.tune(&mut o);
        o
    }

    /// Checks every field and the rules between fields.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let min = self.scenario.min_nodes();
        if self.nodes < min || self.nodes > MAX_NODES {
            return Err(out_of_range(
                "nodes",
                format!("{min}..={MAX_NODES} for scenario {}", self.scenario),
                self.nodes,
            ));
        }
        for (field, p) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(out_of_range(field, "0..=1".into(), p));
            }
        }
        if self.latency_min > self.latency_max {
            return Err(out_of_range(
                "latency",
                "min <= max".into(),
                format!("{:?}..{:?}", self.latency_min, self.latency_max),
            ));
        }
        if self.latency_max > Duration::from_secs(10) || self.jitter > Duration::from_secs(10) {
            return Err(out_of_range(
                "latency",
                "at most 10 s, jitter included".into(),
                format!("{:?} + {:?}", self.latency_max, self.jitter),
            ));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(24 * 3600) {
            return Err(out_of_range(
                "duration",
                "1 ms..=24 h".into(),
                format!("{:?}", self.duration),
            ));
        }
        if self.calm > Duration::from_secs(24 * 3600) {
            return Err(out_of_range(
                "calm",
                "at most 24 h".into(),
                format!("{:?}", self.calm),
            ));
        }
        if self.clock_offset_max > Duration::from_secs(3600) {
            return Err(out_of_range(
                "clock_offset_max",
                "at most 1 h".into(),
                format!("{:?}", self.clock_offset_max),
            ));
        }
        if !(0.0..=1000.0).contains(&self.networks_per_node) {
            return Err(out_of_range(
                "networks_per_node",
                "0..=1000".into(),
                self.networks_per_node,
            ));
        }
        if self.networks == 0 || self.networks > 1000 {
            return Err(out_of_range("networks", "1..=1000".into(), self.networks));
        }
        if !(0.0..=100_000.0).contains(&self.ops_per_sec) {
            return Err(out_of_range(
                "ops_per_sec",
                "0..=100000".into(),
                self.ops_per_sec,
            ));
        }
        if !(0.0..=1000.0).contains(&self.probes_per_sec) {
            return Err(out_of_range(
                "probes_per_sec",
                "0..=1000".into(),
                self.probes_per_sec,
            ));
        }
        if self.ipam_networks > 64 {
            return Err(out_of_range(
                "ipam_networks",
                "0..=64".into(),
                self.ipam_networks,
            ));
        }
        if !(16..=28).contains(&self.ipam_prefix) {
            return Err(out_of_range(
                "ipam_prefix",
                "16..=28".into(),
                self.ipam_prefix,
            ));
        }
        // The workload's subnets stay below 198.19.128.0 (its extra networks live above).
        if self.ipam_networks as u64 * u64::from(crate::ipam::stride(self.ipam_prefix)) > 0x1_8000 {
            return Err(out_of_range(
                "ipam_networks",
                format!(
                    "at most {} networks of /{}",
                    0x1_8000 / crate::ipam::stride(self.ipam_prefix),
                    self.ipam_prefix
                ),
                self.ipam_networks,
            ));
        }
        if !(0.0..=10_000.0).contains(&self.ipam_ops_per_sec) {
            return Err(out_of_range(
                "ipam_ops_per_sec",
                "0..=10000".into(),
                self.ipam_ops_per_sec,
            ));
        }
        if self.ipam_burst > 10_000 {
            return Err(out_of_range(
                "ipam_burst",
                "0..=10000".into(),
                self.ipam_burst,
            ));
        }
        if !(8..=60_000).contains(&self.value_bytes) {
            return Err(out_of_range(
                "value_bytes",
                "8..=60000".into(),
                self.value_bytes,
            ));
        }
        if self.populate > 1_000_000 {
            return Err(out_of_range(
                "populate",
                "at most 1000000".into(),
                self.populate,
            ));
        }
        if self.faults > 10_000 {
            return Err(out_of_range("faults", "at most 10000".into(), self.faults));
        }
        if self.sample_interval < Duration::from_millis(10) {
            return Err(out_of_range(
                "sample_interval",
                "at least 10 ms".into(),
                format!("{:?}", self.sample_interval),
            ));
        }
        let mix = self.mix;
        if mix.create + mix.update + mix.delete + mix.churn == 0 {
            return Err(out_of_range(
                "mix",
                "at least one non-zero weight".into(),
                "0/0/0/0",
            ));
        }
        self.validate_schedule()
    }

    fn validate_schedule(&self) -> Result<(), OptionsError> {
        let node_ok = |i: &usize| *i < self.nodes;
        for p in &self.partitions {
            if p.start > p.end || p.end > self.duration {
                return Err(out_of_range(
                    "partitions",
                    "start <= end <= duration".into(),
                    format!("{:?}..{:?}", p.start, p.end),
                ));
            }
            let nodes_ok = match &p.kind {
                PartitionKind::Symmetric { group } => group.iter().all(node_ok),
                PartitionKind::OneWay { from, to } => {
                    from.iter().all(node_ok) && to.iter().all(node_ok)
                }
            };
            if !nodes_ok {
                return Err(out_of_range(
                    "partitions",
                    format!("node indices below {}", self.nodes),
                    format!("{:?}", p.kind),
                ));
            }
        }
        for c in self.crashes.iter().chain(&self.leaves) {
            if !node_ok(&c.node) || c.at > self.duration {
                return Err(out_of_range(
                    "crashes",
                    format!("node below {} and time within duration", self.nodes),
                    format!("node {} at {:?}", c.node, c.at),
                ));
            }
        }
        for p in &self.pauses {
            if !node_ok(&p.node) || p.at + p.length > self.duration {
                return Err(out_of_range(
                    "pauses",
                    format!("node below {} and ending within duration", self.nodes),
                    format!("node {} at {:?} for {:?}", p.node, p.at, p.length),
                ));
            }
        }
        Ok(())
    }

    /// The command that replays this run (options the CLI cannot express are not included:
    /// a scripted schedule other than the scenario's own).
    pub fn replay_command(&self) -> String {
        let base = Self::preset(self.scenario, self.nodes, self.seed);
        let mut cmd = format!(
            "cargo run --release -p simulator --bin netsim -- --nodes {} --seed {} --scenario {}",
            self.nodes, self.seed, self.scenario
        );
        if self.duration != base.duration {
            cmd += &format!(" --duration {}", secs(self.duration));
        }
        if self.calm != base.calm {
            cmd += &format!(" --calm {}", secs(self.calm));
        }
        if (self.latency_min, self.latency_max) != (base.latency_min, base.latency_max) {
            cmd += &format!(
                " --latency-ms {}..{}",
                millis(self.latency_min),
                millis(self.latency_max)
            );
        }
        if self.jitter != base.jitter {
            cmd += &format!(" --jitter-ms {}", millis(self.jitter));
        }
        if self.loss != base.loss {
            cmd += &format!(" --loss {}", self.loss);
        }
        if self.duplicate != base.duplicate {
            cmd += &format!(" --duplicate {}", self.duplicate);
        }
        if self.networks != base.networks {
            cmd += &format!(" --networks {}", self.networks);
        }
        if self.networks_per_node != base.networks_per_node {
            cmd += &format!(" --networks-per-node {}", self.networks_per_node);
        }
        if self.ops_per_sec != base.ops_per_sec {
            cmd += &format!(" --ops {}", self.ops_per_sec);
        }
        if self.faults != base.faults {
            cmd += &format!(" --faults {}", self.faults);
        }
        if self.clock_offset_max != base.clock_offset_max {
            cmd += &format!(" --clock-offset-ms {}", millis(self.clock_offset_max));
        }
        if self.populate != base.populate {
            cmd += &format!(" --populate {}", self.populate);
        }
        if let Some(size) = self.swim_cluster_size {
            cmd += &format!(" --swim-cluster-size {size}");
        }
        if self.fast_swim != base.fast_swim {
            cmd += if self.fast_swim {
                " --fast-swim"
            } else {
                " --default-swim"
            };
        }
        if !self.check_kernel {
            cmd += " --no-kernel-check";
        }
        if !self.check_dns {
            cmd += " --no-dns-check";
        }
        if self.ipam_networks != base.ipam_networks {
            cmd += &format!(" --ipam-networks {}", self.ipam_networks);
        }
        if self.ipam_prefix != base.ipam_prefix {
            cmd += &format!(" --ipam-prefix {}", self.ipam_prefix);
        }
        if self.ipam_ops_per_sec != base.ipam_ops_per_sec {
            cmd += &format!(" --ipam-ops {}", self.ipam_ops_per_sec);
        }
        if self.ipam_burst != base.ipam_burst {
            cmd += &format!(" --ipam-burst {}", self.ipam_burst);
        }
        if !self.check_ipam {
            cmd += " --no-ipam-check";
        }
        cmd
    }
}

/// The most hosts a run may have (addresses are `127.x.y.z`).
pub const MAX_NODES: usize = 1 << 20;

/// A latency range in milliseconds, as the CLI writes it: `A..B` or `A`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyRange {
    /// Lower bound.
    pub min: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl FromStr for LatencyRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |v: &str| -> Result<Duration, String> {
            let ms: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("not a number of milliseconds: {v:?}"))?;
            if !(0.0..=10_000.0).contains(&ms) {
                return Err(format!("{ms} ms is outside 0..=10000"));
            }
            Ok(Duration::from_secs_f64(ms / 1000.0))
        };
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (parse(a)?, parse(b.trim_start_matches('='))?),
            None => {
                let v = parse(s)?;
                (v, v)
            }
        };
        if min > max {
            return Err(format!(
                "empty range {s:?}: the lower bound exceeds the upper"
            ));
        }
        Ok(Self { min, max })
    }
}

fn out_of_range(field: &'static str, allowed: String, value: impl fmt::Display) -> OptionsError {
    OptionsError::OutOfRange {
        field,
        allowed,
        value: value.to_string(),
    }
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_ranges_parse() {
        let r: LatencyRange = "1..10".parse().unwrap();
        assert_eq!(
            (r.min, r.max),
            (Duration::from_millis(1), Duration::from_millis(10))
        );
        let r: LatencyRange = "5".parse().unwrap();
        assert_eq!(r.min, r.max);
        assert!("10..1".parse::<LatencyRange>().is_err());
        assert!("x..1".parse::<LatencyRange>().is_err());
        assert!("-1".parse::<LatencyRange>().is_err());
    }

    #[test]
    fn presets_validate() {
        for s in Scenario::ALL {
            let o = SimOptions::preset(s, 20, 1);
            assert_eq!(o.validate(), Ok(()), "{s}");
        }
        let mut o = SimOptions::preset(Scenario::Random, 20, 1);
        o.loss = 1.5;
        assert!(o.validate().unwrap_err().to_string().contains("loss"));
    }
}
