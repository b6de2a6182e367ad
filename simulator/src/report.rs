//! What a run reports: violations, the digest, spread times against the epidemic bound,
//! traffic, drops by reason, queues and performance.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use cluster::Node;

use crate::SimOptions;
use crate::sim::Simulation;

/// Fan-out of the epidemic bound (NetworkDB gossips to 3 peers).
pub const BOUND_FANOUT: f64 = 3.0;
/// One gossip round (NetworkDB's gossip interval).
pub const BOUND_ROUND: Duration = Duration::from_millis(200);

/// A checker's finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker: `converged`, `live-owner`, `resurrected`, `membership`, `queue-bound`,
    /// `datagram-size`, `scenario` or `config`.
    pub check: &'static str,
    /// What it found.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.check, self.detail)
    }
}

/// Messages sent by every node over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// SWIM datagrams.
    pub swim_datagrams: u64,
    /// NetworkDB datagrams.
    pub db_datagrams: u64,
    /// Bytes of datagrams, sealed (AEAD envelope included).
    pub datagram_bytes: u64,
    /// Stream messages (bulk sync, push/pull, backlogs, oversized events).
    pub streams: u64,
    /// Bytes of stream messages, with their length prefix.
    pub stream_bytes: u64,
    /// Datagrams the network duplicated.
    pub duplicated: u64,
}

/// Spread times of the tracked writes (probes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spread {
    /// Probes whose owner stayed live and attached, with at least one target node.
    pub measured: usize,
    /// Of which some target never saw the write.
    pub unresolved: usize,
    /// Median of the time until every target saw the write.
    pub p50: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
    /// Maximum.
    pub max: Option<Duration>,
    /// Per measured probe: the number of target nodes and, sorted, when each saw it.
    pub curves: Vec<(usize, Vec<Duration>)>,
    /// Mean number of nodes attached to a measured probe's network (the bound's N).
    pub mean_network_size: f64,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The options of the run.
    pub options: SimOptions,
    /// Hash of every node's visible tables, membership view and clocks at the end.
    pub digest: u64,
    /// Findings of the checkers; empty when the run passed.
    pub violations: Vec<Violation>,
    /// Spread times.
    pub spread: Spread,
    /// Messages sent.
    pub traffic: Traffic,
    /// Drops and other counters by reason: `sim.*` (the network model), `db.*`
    /// (`networkdb::Stats`) and `node.*` (`cluster::NodeStats`), summed over every process.
    pub drops: BTreeMap<String, u64>,
    /// Longest network queue sampled.
    pub max_network_queue: usize,
    /// Longest cluster queue sampled.
    pub max_cluster_queue: usize,
    /// How long after the calm phase began the quick convergence test first passed.
    pub settled_after: Option<Duration>,
    /// API calls the core refused (the workload's model and the core disagreed).
    pub api_errors: u64,
    /// Neighbour and FDB operations the overlay drivers applied to their fake kernels, over
    /// every process (zero without [`SimOptions::check_kernel`]).
    pub kernel_ops: u64,
    /// `endpoint_table` changes (watch events and own writes) the service discoveries
    /// applied, over every process (zero without [`SimOptions::check_dns`]).
    pub dns_applied: u64,
    /// Ops applied to the sandboxes' fake VIP load balancers, and ops they refused (a planner
    /// bug), over every process (zero without [`SimOptions::check_dns`]).
    pub balancer_ops: (u64, u64),
    /// What the IPAM workload did.
    pub ipam: crate::IpamCounters,
    /// Events processed.
    pub events: u64,
    /// Live nodes at the end.
    pub live_nodes: usize,
    /// Sum over time of the live processes (node-seconds simulated).
    pub node_seconds: f64,
    /// Wall time of the run.
    pub wall: Duration,
    /// Peak resident memory of this process (`VmHWM`), if known.
    pub peak_rss_bytes: Option<u64>,
}

impl Report {
    pub(crate) fn build(sim: Simulation) -> Self {
        let mut drops = sim.drops.clone();
        for h in &sim.hosts {
            if let Some(node) = h.node() {
                add_node_counters(&mut drops, node);
            }
        }
        let spread = spread(&sim);
        let wall = sim.wall();
        Self {
            digest: crate::check::digest(&sim),
            violations: sim.violations.clone(),
            spread,
            traffic: sim.traffic,
            drops,
            max_network_queue: sim.max_network_queue,
            max_cluster_queue: sim.max_cluster_queue,
            settled_after: sim.settled_at,
            api_errors: sim.api_errors,
            kernel_ops: sim.kernel_ops,
            balancer_ops: (sim.balancer_ops, sim.balancer_refused),
            dns_applied: sim.dns_applied
                + sim
                    .hosts
                    .iter()
                    .filter_map(|h| h.dns.as_ref())
                    .map(|sd| sd.stats().applied)
                    .sum::<u64>(),
            ipam: sim.ipam.counters,
            events: sim.events,
            live_nodes: sim.hosts.iter().filter(|h| h.is_live()).count(),
            node_seconds: sim.node_seconds,
            wall,
            peak_rss_bytes: peak_rss(),
            options: sim.opts,
        }
    }

    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The epidemic bound `log_(k+1) N + ln(N) / k` in rounds, for `n` nodes.
    pub fn epidemic_bound_rounds(n: f64) -> f64 {
        if n <= 1.0 {
            return 0.0;
        }
        n.ln() / (BOUND_FANOUT + 1.0).ln() + n.ln() / BOUND_FANOUT
    }

    /// Simulated node-seconds per wall second.
    pub fn node_seconds_per_wall_second(&self) -> f64 {
        self.node_seconds / self.wall.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "netsim: scenario {}, {} nodes, seed {}, {:.0} s + {:.0} s calm, latency {}..{} ms \
             (+{} ms jitter), loss {}%, duplication {}%, {} networks, {} ops/s, {} SWIM",
            o.scenario,
            o.nodes,
            o.seed,
            o.duration.as_secs_f64(),
            o.calm.as_secs_f64(),
            o.latency_min.as_millis(),
            o.latency_max.as_millis(),
            o.jitter.as_millis(),
            o.loss * 100.0,
            o.duplicate * 100.0,
            o.networks,
            o.ops_per_sec,
            if o.fast_swim { "fast" } else { "default" }
        )?;
        writeln!(f, "digest: {:016x}", self.digest)?;
        let s = &self.spread;
        let secs =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        let rounds = Self::epidemic_bound_rounds(s.mean_network_size);
        writeln!(
            f,
            "spread of {} tracked writes ({} unresolved): p50 {}, p99 {}, max {}",
            s.measured,
            s.unresolved,
            secs(s.p50),
            secs(s.p99),
            secs(s.max)
        )?;
        writeln!(
            f,
            "epidemic bound log_{}(N) + ln(N)/{} for N = {:.0}: {:.2} rounds = {:.2} s at {} ms \
             per round",
            BOUND_FANOUT + 1.0,
            BOUND_FANOUT,
            s.mean_network_size,
            rounds,
            rounds * BOUND_ROUND.as_secs_f64(),
            BOUND_ROUND.as_millis()
        )?;
        let node_secs = self.node_seconds.max(1e-9);
        let t = &self.traffic;
        writeln!(
            f,
            "per node per second: {:.1} datagrams ({:.1} SWIM, {:.1} NetworkDB), {:.0} B; {:.2} \
             stream messages, {:.0} B",
            (t.swim_datagrams + t.db_datagrams) as f64 / node_secs,
            t.swim_datagrams as f64 / node_secs,
            t.db_datagrams as f64 / node_secs,
            t.datagram_bytes as f64 / node_secs,
            t.streams as f64 / node_secs,
            t.stream_bytes as f64 / node_secs
        )?;
        let per_minute =
            |name: &str| self.drops.get(name).copied().unwrap_or(0) as f64 / node_secs * 60.0;
        let stale = per_minute("db.stale_events");
        let stale_cluster = per_minute("db.stale_cluster_events");
        writeln!(
            f,
            "stale copies received per node per simulated minute: {:.0} node and network events, \
             {:.0} table events",
            stale_cluster,
            stale - stale_cluster
        )?;
        let nonzero: Vec<String> = self
            .drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "drops and counters: {}", nonzero.join(" "))?;
        writeln!(
            f,
            "queues: longest network queue {}, longest cluster queue {}; api calls refused {}",
            self.max_network_queue, self.max_cluster_queue, self.api_errors
        )?;
        if self.options.check_kernel {
            writeln!(
                f,
                "overlay: {} ops applied to fake kernels",
                self.kernel_ops
            )?;
        }
        if self.options.check_dns {
            writeln!(
                f,
                "dns: {} endpoint_table changes applied to service discovery; {} ops applied to \
                 sandbox VIP balancers, {} refused",
                self.dns_applied, self.balancer_ops.0, self.balancer_ops.1
            )?;
        }
        if self.options.ipam_networks > 0 {
            let c = &self.ipam;
            writeln!(
                f,
                "ipam: {} endpoints at once, {} after a wait (longest {:.2} s), {} refused, {} \
                 removed, {} networks created, {} blocks handed back",
                c.local,
                c.waited,
                c.max_wait.as_secs_f64(),
                c.refused,
                c.removed,
                c.networks,
                c.handed_back
            )?;
        }
        match self.settled_after {
            Some(d) => writeln!(f, "converged {:.1} s into the calm phase", d.as_secs_f64())?,
            None => writeln!(f, "did not converge during the calm phase")?,
        }
        writeln!(
            f,
            "performance: {} events, {:.0} node-seconds in {:.2} s wall = {:.0} node-s per wall \
             second; peak RSS {}",
            self.events,
            self.node_seconds,
            self.wall.as_secs_f64(),
            self.node_seconds_per_wall_second(),
            self.peak_rss_bytes
                .map_or("unknown".to_owned(), |b| format!(
                    "{:.1} MiB",
                    b as f64 / 1048576.0
                ))
        )?;
        if self.passed() {
            writeln!(f, "checks: OK ({} live nodes)", self.live_nodes)?;
        } else {
            writeln!(f, "checks: {} VIOLATIONS", self.violations.len())?;
            for v in &self.violations {
                writeln!(f, "  {v}")?;
            }
            writeln!(f, "seed {}; replay with:", o.seed)?;
            writeln!(f, "  {}", o.replay_command())?;
        }
        Ok(())
    }
}

/// Adds a process's counters (`db.*` from NetworkDB, `node.*` from the node core).
pub(crate) fn add_node_counters(acc: &mut BTreeMap<String, u64>, node: &Node) {
    let s = node.db().stats();
    let n = node.stats();
    for (name, v) in [
        ("db.dropped_empty", s.dropped_empty),
        ("db.dropped_version", s.dropped_version),
        ("db.dropped_malformed", s.dropped_malformed),
        ("db.dropped_too_deep", s.dropped_too_deep),
        ("db.stale_events", s.stale_events),
        ("db.stale_cluster_events", s.stale_cluster_events),
        ("db.duplicate_parts", s.duplicate_parts),
        ("db.deferred_events", s.deferred_events),
        ("db.deferred_applied", s.deferred_applied),
        ("db.deferred_refused", s.deferred_refused),
        ("db.attachment_repairs", s.attachment_repairs),
        ("db.eager_datagrams", s.eager_datagrams),
        ("db.sync_digests_sent", s.sync_digests_sent),
        ("db.partial_syncs_sent", s.partial_syncs_sent),
        ("db.not_member", s.not_member),
        ("db.own_events", s.own_events),
        ("db.relay_skipped_on_sync", s.relay_skipped_on_sync),
        ("db.queue_overflow", s.queue_overflow),
        ("db.oversized_via_stream", s.oversized_via_stream),
        ("db.backlog_flushes", s.backlog_flushes),
        ("db.bulk_syncs_sent", s.bulk_syncs_sent),
        ("db.bulk_sync_timeouts", s.bulk_sync_timeouts),
        ("db.bulk_sync_unknown_node", s.bulk_sync_unknown_node),
        ("db.zero_reap_time", s.zero_reap_time),
        ("node.dropped_kind", n.dropped_kind),
        ("node.dropped_swim", n.dropped_swim),
        ("node.dropped_decode", n.dropped_decode),
        ("node.dropped_impersonation", n.dropped_impersonation),
        ("node.dropped_not_member", n.dropped_not_member),
        ("node.seed_announces", n.seed_announces),
    ] {
        *acc.entry(name.to_owned()).or_default() += v;
    }
}

fn spread(sim: &Simulation) -> Spread {
    let mut out = Spread::default();
    let mut totals = Vec::new();
    let mut sizes = 0usize;
    for p in &sim.probes {
        let owner = &sim.hosts[p.owner];
        let attached_since = |h: &crate::sim::Host| h.attached.get(&p.network).copied();
        let owner_ok = owner.is_live()
            && owner.incarnation == p.owner_incarnation
            && attached_since(owner).is_some_and(|t| t <= p.at);
        if !owner_ok {
            continue;
        }
        let mut targets = 0;
        let mut seen = Vec::new();
        let mut unresolved = false;
        for (j, h) in sim.hosts.iter().enumerate() {
            if j == p.owner
                || !h.is_live()
                || h.alive_since > p.at
                || attached_since(h).is_none_or(|t| t > p.at)
            {
                continue;
            }
            targets += 1;
            match p.seen[j] {
                u64::MAX => unresolved = true,
                ns => seen.push(Duration::from_nanos(ns)),
            }
        }
        if targets == 0 {
            continue;
        }
        out.measured += 1;
        sizes += targets + 1;
        seen.sort();
        if unresolved {
            out.unresolved += 1;
        } else if let Some(last) = seen.last() {
            totals.push(*last);
        }
        out.curves.push((targets, seen));
    }
    totals.sort();
    let pct = |q: f64| -> Option<Duration> {
        if totals.is_empty() {
            return None;
        }
        let idx = ((q * totals.len() as f64).ceil() as usize).clamp(1, totals.len()) - 1;
        Some(totals[idx])
    };
    out.p50 = pct(0.5);
    out.p99 = pct(0.99);
    out.max = totals.last().copied();
    out.mean_network_size = if out.measured > 0 {
        sizes as f64 / out.measured as f64
    } else {
        sim.hosts.iter().filter(|h| h.is_live()).count() as f64
    };
    out
}

/// Peak resident set size of this process, from `/proc/self/status` (`VmHWM`).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_matches_formula() {
        // N = 1000, k = 3: log_4(1000) = 4.98, ln(1000)/3 = 2.30.
        let r = Report::epidemic_bound_rounds(1000.0);
        assert!((r - 7.286).abs() < 0.01, "{r}");
        assert_eq!(Report::epidemic_bound_rounds(1.0), 0.0);
    }
}
