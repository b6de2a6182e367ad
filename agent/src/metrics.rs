//! Prometheus metrics, in the text exposition format, served at `/metrics` on the
//! diagnostic address.
//!
//! Every counter of the three layers is exported: NetworkDB's (`networkdb::Stats`: messages,
//! bytes, drops by reason, bulk syncs and their durations), the node core's
//! (`cluster::NodeStats`: SWIM traffic, membership exchanges) and the shell's
//! (`cluster::shell::ShellStats`: datagrams, frames, authentication and replay drops); plus
//! gauges: members by state, the cluster queue and, per network, entries, queues and peers;
//! and the node core's (`nodecore::CoreStats`, `ipam::IpamStats` summed over the pools).

use std::fmt::Write;

use cluster::shell::{ShellStats, Stopped};

use crate::NodeClient as Client;
use discovery::DiscoveryStats;
use networkdb::{NetworkStats, NodeState, Stats};

use crate::dns::server::DnsStats;

/// What one scrape reads from the node, in one call into its task.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The node's NetworkDB name.
    pub node: String,
    /// NetworkDB counters.
    pub db: Stats,
    /// Node-core counters.
    pub core: cluster::NodeStats,
    /// Shell counters.
    pub shell: ShellStats,
    /// Nodes by state: active, failed, left.
    pub members: [usize; 3],
    /// Node and network events queued for gossip.
    pub cluster_queue: usize,
    /// Per attached network.
    pub networks: Vec<(String, NetworkStats)>,
    /// Service-discovery counters (set by the caller; [`take`](Self::take) leaves zeros).
    pub discovery: DiscoveryStats,
    /// Embedded DNS servers running, and their counters summed.
    pub dns: (usize, DnsStats),
    /// The node core's counters.
    pub node_core: nodecore::CoreStats,
    /// The allocators' counters, summed over every pool, and the number of pools.
    pub ipam: (usize, ipam::IpamStats),
    /// The Docker plugin's calls by method and outcome (set by the caller; empty when the
    /// plugin is not served).
    pub docker: std::collections::BTreeMap<(String, &'static str), u64>,
    /// The attachment operations (CNI) by kind and outcome (set by the caller).
    pub attachments: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    /// The sandboxes' VIP balancers: syncs that changed a kernel, VIPs set or removed, failed
    /// syncs, UDP flows to withdrawn backends forgotten (set by the caller).
    pub balancers: [u64; 4],
}

impl Snapshot {
    /// Reads a snapshot from the running node.
    pub async fn take(client: &Client) -> Result<Self, Stopped> {
        let shell = client.stats().await?;
        client
            .with_engine(move |engine, _now| {
                let node_core = engine.stack_ref().core().stats();
                let pools = engine.stack_ref().core().ipam_stats();
                let mut ipam = ipam::IpamStats::default();
                for p in pools.values() {
                    ipam.local_allocations += p.local_allocations;
                    ipam.asks += p.asks;
                    ipam.blocks_granted += p.blocks_granted;
                    ipam.values_lent += p.values_lent;
                    ipam.claim_conflicts += p.claim_conflicts;
                    ipam.malformed += p.malformed;
                    ipam.blocks_handed_back += p.blocks_handed_back;
                }
                let node = engine.stack_ref().node();
                let db = node.db();
                let networks = db
                    .networks()
                    .into_iter()
                    .filter_map(|n| db.network_stats(&n).map(|s| (n.to_string(), s)))
                    .collect();
                Self {
                    node: node.identity().db_name().to_string(),
                    db: db.stats(),
                    core: node.stats(),
                    shell,
                    members: [
                        db.node_count(NodeState::Active),
                        db.node_count(NodeState::Failed),
                        db.node_count(NodeState::Left),
                    ],
                    cluster_queue: db.cluster_queue_len(),
                    networks,
                    discovery: DiscoveryStats::default(),
                    dns: (0, DnsStats::default()),
                    node_core,
                    ipam: (pools.len(), ipam),
                    docker: Default::default(),
                    attachments: Default::default(),
                    balancers: [0; 4],
                }
            })
            .await
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        out.gauge_family(
            "netagent_members",
            "Cluster nodes by state, this node included.",
        );
        for (state, n) in ["active", "failed", "left"].iter().zip(self.members) {
            out.sample("netagent_members", &[("state", state)], n as u64);
        }
        out.gauge(
            "netagent_cluster_queue_length",
            "Node and network events waiting to be gossiped.",
            self.cluster_queue as u64,
        );
        out.gauge_family(
            "netagent_network_entries",
            "Entries of each attached network, tombstones included.",
        );
        for (n, s) in &self.networks {
            out.sample(
                "netagent_network_entries",
                &[("network", n)],
                s.entries as u64,
            );
        }
        out.gauge_family(
            "netagent_network_queue_length",
            "Table events waiting to be gossiped, by network and queue (local or relay).",
        );
        for (n, s) in &self.networks {
            out.sample(
                "netagent_network_queue_length",
                &[("network", n), ("queue", "local")],
                s.queue_len as u64,
            );
            out.sample(
                "netagent_network_queue_length",
                &[("network", n), ("queue", "relay")],
                s.relay_queue_len as u64,
            );
        }
        out.gauge_family("netagent_network_peers", "Peers attached to each network.");
        for (n, s) in &self.networks {
            out.sample("netagent_network_peers", &[("network", n)], s.peers as u64);
        }

        let sd = &self.discovery;
        out.counter_family(
            "netagent_sd_changes_total",
            "endpoint_table changes applied to service discovery, and ignored ones by reason.",
        );
        for (what, v) in [
            ("applied", sd.applied),
            ("invalid_record", sd.invalid_records),
            ("unattached_network", sd.unattached),
        ] {
            out.sample("netagent_sd_changes_total", &[("result", what)], v);
        }
        if !self.docker.is_empty() {
            out.counter_family(
                "netagent_docker_plugin_calls_total",
                "Calls of the Docker plugin (network and IPAM driver) by method and outcome (refused: answered with an error).",
            );
            for ((method, outcome), v) in &self.docker {
                out.sample(
                    "netagent_docker_plugin_calls_total",
                    &[("method", method), ("outcome", outcome)],
                    *v,
                );
            }
        }
        out.counter_family(
            "netagent_attachments_total",
            "Attachment operations (a CNI runtime's ADD = attach, DEL = detach, CHECK = check; sweep: withdrawn because the container's namespace was gone) by outcome (refused: answered with an error).",
        );
        for op in ["attach", "detach", "check", "sweep"] {
            for outcome in ["ok", "refused"] {
                let v = self.attachments.get(&(op, outcome)).copied().unwrap_or(0);
                out.sample(
                    "netagent_attachments_total",
                    &[("op", op), ("outcome", outcome)],
                    v,
                );
            }
        }
        out.counter_family(
            "netagent_vip_balancer_total",
            "Sandbox VIP balancers (nf_tables): syncs that changed a sandbox's kernel, VIPs set or removed by them, syncs that failed (retried), and UDP flows to withdrawn backends forgotten.",
        );
        for (what, v) in ["syncs", "vip_ops", "failures", "udp_flows_forgotten"]
            .into_iter()
            .zip(self.balancers)
        {
            out.sample("netagent_vip_balancer_total", &[("what", what)], v);
        }
        let (servers, q) = &self.dns;
        out.gauge(
            "netagent_dns_servers",
            "Embedded DNS servers running (one per sandbox, from its first joined endpoint until the sandbox is removed).",
            *servers as u64,
        );
        out.counter_family(
            "netagent_dns_queries_total",
            "Queries to the embedded DNS servers by outcome, over every server this agent ran.",
        );
        for (what, v) in [
            ("received", q.queries),
            ("answered_local", q.answered_local),
            ("nodata", q.nodata),
            ("truncated", q.truncated),
            ("forwarded", q.forwarded),
            ("forward_failed", q.forward_failures),
            ("forward_limited", q.forward_limited),
            ("no_upstream", q.no_upstream),
            ("malformed", q.malformed),
            ("send_failed", q.send_errors),
        ] {
            out.sample("netagent_dns_queries_total", &[("outcome", what)], v);
        }

        let (pools, ip) = &self.ipam;
        out.gauge(
            "netagent_ipam_pools",
            "Address and VNI pools this node's allocators take part in.",
            *pools as u64,
        );
        out.counter_family(
            "netagent_ipam_events_total",
            "What the allocators did, over every pool: values allocated from owned space without a message, asks written, blocks granted and values lent to other nodes, blocks handed back before a leave, claims of one epoch naming two owners (never expected), undecodable entries.",
        );
        for (what, v) in [
            ("local_allocation", ip.local_allocations),
            ("ask", ip.asks),
            ("block_granted", ip.blocks_granted),
            ("value_lent", ip.values_lent),
            ("block_handed_back", ip.blocks_handed_back),
            ("claim_conflict", ip.claim_conflicts),
            ("malformed", ip.malformed),
        ] {
            out.sample("netagent_ipam_events_total", &[("event", what)], v);
        }
        let nc = &self.node_core;
        out.counter_family(
            "netagent_operations_total",
            "Operations that allocate (endpoint and network creation) by how they were answered: at once from owned space, after waiting for another node, refused after the allocation timeout.",
        );
        for (what, v) in [
            ("at_once", nc.answered_at_once),
            ("waited", nc.waited),
            ("timed_out", nc.timed_out),
        ] {
            out.sample("netagent_operations_total", &[("answer", what)], v);
        }
        out.counter(
            "netagent_founder_conflicts_total",
            "Two different cluster founders seen (two clusters joined): no automatic VNIs.",
            nc.founder_conflicts,
        );

        let d = &self.db;
        let c = &self.core;
        let s = &self.shell;
        out.counter_family(
            "netagent_messages_total",
            "Messages by layer and direction (NetworkDB payloads, SWIM datagrams, stream frames).",
        );
        for (layer, dir, v) in [
            ("networkdb", "in", d.payloads_in),
            ("networkdb_datagram", "out", d.datagrams_out),
            ("networkdb_stream", "out", d.streams_out),
            ("swim", "in", c.swim_in),
            ("swim", "out", c.swim_out),
            ("udp", "in", s.datagrams_in),
            ("udp", "out", s.datagrams_out),
            ("stream", "in", s.frames_in),
            ("stream", "out", s.frames_out),
        ] {
            out.sample(
                "netagent_messages_total",
                &[("layer", layer), ("direction", dir)],
                v,
            );
        }
        out.counter_family(
            "netagent_bytes_total",
            "Bytes by layer and direction (NetworkDB payloads, sealed UDP datagrams).",
        );
        for (layer, dir, v) in [
            ("networkdb", "in", d.bytes_in),
            ("networkdb", "out", d.bytes_out),
            ("udp", "out", s.datagram_bytes_out),
        ] {
            out.sample(
                "netagent_bytes_total",
                &[("layer", layer), ("direction", dir)],
                v,
            );
        }
        out.counter_family(
            "netagent_dropped_total",
            "Inputs dropped or refused, by layer and reason.",
        );
        for (layer, reason, v) in [
            ("networkdb", "empty", d.dropped_empty),
            ("networkdb", "version", d.dropped_version),
            ("networkdb", "malformed", d.dropped_malformed),
            ("networkdb", "too_deep", d.dropped_too_deep),
            ("networkdb", "wrong_channel", d.wrong_channel),
            ("networkdb", "stale", d.stale_events),
            ("networkdb", "not_member", d.not_member),
            ("networkdb", "own_event", d.own_events),
            ("networkdb", "queue_overflow", d.queue_overflow),
            ("node", "kind", c.dropped_kind),
            ("node", "swim", c.dropped_swim),
            ("node", "decode", c.dropped_decode),
            ("node", "impersonation", c.dropped_impersonation),
            ("node", "not_member", c.dropped_not_member),
            ("shell", "unauthenticated", s.dropped_unauthenticated),
            ("shell", "replay", s.dropped_replay),
            ("shell", "oversized", s.dropped_oversized),
            ("shell", "invalid", s.dropped_invalid),
            ("shell", "send_failure", s.send_failures),
            ("shell", "frame_refused", s.frames_refused),
            ("shell", "handshake_failure", s.handshake_failures),
            ("shell", "stream_send_failure", s.stream_send_failures),
            ("shell", "watch_lagged", s.watch_dropped),
        ] {
            out.sample(
                "netagent_dropped_total",
                &[("layer", layer), ("reason", reason)],
                v,
            );
        }
        out.counter(
            "netagent_table_events_applied_total",
            "Table events that changed local state.",
            d.table_events_applied,
        );
        out.counter_family("netagent_bulk_syncs_total", "Bulk syncs by outcome.");
        for (outcome, v) in [
            ("sent", d.bulk_syncs_sent),
            ("completed", d.bulk_syncs_completed),
            ("timeout", d.bulk_sync_timeouts),
            ("unknown_node", d.bulk_sync_unknown_node),
        ] {
            out.sample("netagent_bulk_syncs_total", &[("outcome", outcome)], v);
        }
        out.counter_family(
            "netagent_bulk_sync_duration_seconds_sum",
            "Total time from bulk-sync request to reply (divide by the completed count).",
        );
        let _ = writeln!(
            out.text,
            "netagent_bulk_sync_duration_seconds_sum {:.6}",
            d.bulk_sync_micros_total as f64 / 1e6
        );
        out.counter_family(
            "netagent_sync_digests_total",
            "Digest-first anti-entropy: digests sent, networks a peer's digest found equal or \
             different, partial syncs sent and the table events they carried.",
        );
        for (what, v) in [
            ("digest_sent", d.sync_digests_sent),
            ("network_equal", d.sync_networks_equal),
            ("network_differ", d.sync_networks_differ),
            ("partial_sent", d.partial_syncs_sent),
            ("partial_event", d.partial_sync_events),
        ] {
            out.sample("netagent_sync_digests_total", &[("what", what)], v);
        }
        out.counter_family(
            "netagent_eager_push_total",
            "Eager push: datagrams sent before the gossip tick (each copy) and events they carried.",
        );
        for (what, v) in [("datagram", d.eager_datagrams), ("event", d.eager_events)] {
            out.sample("netagent_eager_push_total", &[("what", what)], v);
        }
        out.counter_family(
            "netagent_deferred_events_total",
            "Table events that arrived before their owner's network join: waited, applied when the \
             join came, refused because too many waited.",
        );
        for (outcome, v) in [
            ("waited", d.deferred_events),
            ("applied", d.deferred_applied),
            ("refused", d.deferred_refused),
        ] {
            out.sample("netagent_deferred_events_total", &[("outcome", outcome)], v);
        }
        out.counter(
            "netagent_attachment_repairs_total",
            "Syncs asked of an owner whose network join this node missed.",
            d.attachment_repairs,
        );
        out.counter(
            "netagent_join_syncs_deferred_total",
            "Networks joined with no peer known, bulk-synced with the first peer learnt to be attached.",
            d.join_syncs_deferred,
        );
        out.counter(
            "netagent_backlog_flushes_total",
            "Local backlogs sent on the stream path.",
            d.backlog_flushes,
        );
        out.counter(
            "netagent_membership_exchanges_total",
            "Full membership states sent (requests and replies).",
            c.membership_syncs,
        );
        out.counter(
            "netagent_swim_rescales_total",
            "Times SWIM's settings were rescaled for the cluster size.",
            c.swim_rescales,
        );
        out.text
    }
}

/// A writer of the text exposition format.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn gauge_family(&mut self, name: &str, help: &str) {
        self.family(name, help, "gauge");
    }

    fn counter_family(&mut self, name: &str, help: &str) {
        self.family(name, help, "counter");
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        self.gauge_family(name, help);
        self.sample(name, &[], v);
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.counter_family(name, help);
        self.sample(name, &[], v);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(val));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {v}");
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_families_typed() {
        let mut e = Exposition::default();
        e.counter_family("x_total", "help");
        e.sample("x_total", &[("a", "q\"b\\\n")], 3);
        assert_eq!(
            e.text,
            "# HELP x_total help\n# TYPE x_total counter\nx_total{a=\"q\\\"b\\\\\\n\"} 3\n"
        );
    }
}
