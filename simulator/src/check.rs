//! The checkers: convergence of visible entries, live owners, no resurrection, membership,
//! the overlay driver's fake kernels, service discovery, and the scenarios' own expectations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use discovery::{NetworkRecords, ServiceDiscovery, ServiceTable};

use networkdb::{NodeState, WatchEvent};
use overlay::{KernelState, PeerDb};

use crate::digest::Digest;
use crate::scenario::Expectation;
use crate::sim::{Fate, Simulation};

/// One visible entry: (table, key, value, owner).
type Row = (String, String, Vec<u8>, String);

/// Cheap test used during the calm phase to time convergence: per network, every attached
/// live node holds the same visible (table, key, value); every live node counts every live
/// node as a SWIM member and as active in NetworkDB.
pub(crate) fn quick_converged(sim: &Simulation) -> bool {
    let live: Vec<usize> = (0..sim.hosts.len())
        .filter(|&i| sim.hosts[i].is_live())
        .collect();
    let mut reference: BTreeMap<String, u64> = BTreeMap::new();
    for &i in &live {
        let Some(node) = sim.hosts[i].node() else {
            continue;
        };
        if node.members().len() + 1 != live.len()
            || node.db().node_count(NodeState::Active) != live.len()
        {
            return false;
        }
        let db = node.db();
        let mut digests: BTreeMap<String, Digest> = db
            .networks()
            .into_iter()
            .map(|n| (n.to_string(), Digest::default()))
            .collect();
        for table in &sim.table_ids {
            db.walk_table(table, |network, key, value, deleted| {
                if !deleted && let Some(d) = digests.get_mut(network.as_str()) {
                    d.str(table);
                    d.str(key);
                    d.bytes(value);
                }
                false
            });
        }
        for (network, d) in digests {
            match reference.get(&network) {
                Some(h) if *h != d.finish() => return false,
                Some(_) => {}
                None => {
                    reference.insert(network, d.finish());
                }
            }
        }
    }
    true
}

/// The visible rows of `network` at host `i`, in order.
fn view(sim: &Simulation, i: usize, network: usize) -> Vec<Row> {
    let Some(node) = sim.hosts[i].node() else {
        return Vec::new();
    };
    let db = node.db();
    let id = &sim.net_ids[network];
    let mut rows = Vec::new();
    for table in db.tables(id) {
        for (key, elem) in db.table_by_network(&table, id) {
            rows.push((
                table.to_string(),
                key.to_string(),
                elem.value.to_vec(),
                elem.owner.to_string(),
            ));
        }
    }
    rows
}

/// Runs every checker at the end of the run and records the violations.
pub(crate) fn final_checks(sim: &mut Simulation) {
    let mut found: Vec<(&'static str, String)> = Vec::new();
    let live: Vec<usize> = (0..sim.hosts.len())
        .filter(|&i| sim.hosts[i].is_live())
        .collect();
    // db name -> (host, attached networks) of every live process.
    let mut live_names: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for &i in &live {
        if let Some(node) = sim.hosts[i].node() {
            let nets = node.db().networks().iter().map(|n| n.to_string()).collect();
            live_names.insert(node.db().name().to_string(), (i, nets));
        }
    }
    let gone: BTreeSet<(usize, &str, &str)> = sim
        .fates
        .iter()
        .filter(|(_, f)| **f == Fate::Gone)
        .map(|((n, t, k), _)| (*n, crate::sim::TABLES[*t], k.as_str()))
        .collect();

    for network in 0..sim.net_ids.len() {
        let net_name = sim.net_ids[network].to_string();
        let mut views: Vec<(usize, Vec<Row>, u64)> = Vec::new();
        let mut bad_owners: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for &i in &live {
            let rows = view(sim, i, network);
            for (table, key, _, owner) in &rows {
                if gone.contains(&(network, table.as_str(), key.as_str())) {
                    found.push((
                        "resurrected",
                        format!(
                            "node{i} sees {net_name}/{table}/{key} (owner {owner}), which was \
                             deleted (or its owner left or stopped) with no later write"
                        ),
                    ));
                }
                let ok = live_names
                    .get(owner)
                    .is_some_and(|(_, nets)| nets.contains(&net_name));
                if !ok {
                    let e = bad_owners.entry(owner.clone()).or_insert((i, 0));
                    e.1 += 1;
                }
            }
            let attached = sim.hosts[i]
                .node()
                .is_some_and(|n| n.db().is_attached(&net_name, n.db().name()));
            if attached {
                let mut d = Digest::default();
                for (t, k, v, o) in &rows {
                    d.str(t);
                    d.str(k);
                    d.bytes(v);
                    d.str(o);
                }
                views.push((i, rows, d.finish()));
            } else if !rows.is_empty() {
                found.push((
                    "converged",
                    format!(
                        "node{i} is not attached to {net_name} but sees {} entries there",
                        rows.len()
                    ),
                ));
            }
        }
        for (owner, (i, count)) in bad_owners {
            let why = if live_names.contains_key(&owner) {
                "not attached to the network"
            } else {
                "not a live process"
            };
            found.push((
                "live-owner",
                format!(
                    "{net_name}: {count} visible entries owned by {owner}, which is {why} \
                     (first seen at node{i})"
                ),
            ));
        }
        // The view most nodes hold is the reference; every other one is reported.
        let mut tally: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, _, h) in &views {
            *tally.entry(*h).or_default() += 1;
        }
        let Some((&majority, _)) = tally
            .iter()
            .max_by_key(|(h, c)| (**c, std::cmp::Reverse(**h)))
        else {
            continue;
        };
        if tally.len() == 1 {
            continue;
        }
        let Some((ref_node, ref_rows, _)) = views.iter().find(|v| v.2 == majority) else {
            continue;
        };
        for (i, rows, h) in &views {
            if *h == majority {
                continue;
            }
            found.push((
                "converged",
                format!(
                    "{net_name}: node{i} sees {} entries, node{ref_node} (with {} of {} attached \
                     nodes) sees {}: {}",
                    rows.len(),
                    tally[&majority],
                    views.len(),
                    ref_rows.len(),
                    difference(ref_rows, rows)
                ),
            ));
        }
    }

    // Membership: SWIM members and NetworkDB node states.
    let expected: BTreeSet<(String, u64)> = live
        .iter()
        .map(|&i| (sim.hosts[i].name.to_string(), sim.hosts[i].incarnation))
        .collect();
    for &i in &live {
        let Some(node) = sim.hosts[i].node() else {
            continue;
        };
        let me = (sim.hosts[i].name.to_string(), sim.hosts[i].incarnation);
        let members: Vec<(String, u64)> = node
            .members()
            .into_iter()
            .map(|m| (m.name.to_string(), m.incarnation))
            .collect();
        let got: BTreeSet<(String, u64)> = members.iter().cloned().collect();
        let missing: Vec<String> = expected
            .iter()
            .filter(|e| **e != me && !got.contains(*e))
            .map(|(n, inc)| format!("{n}@{inc}"))
            .collect();
        let extra: Vec<String> = got
            .iter()
            .filter(|g| !expected.contains(*g) || **g == me)
            .map(|(n, inc)| format!("{n}@{inc}"))
            .collect();
        if !missing.is_empty() || !extra.is_empty() || members.len() != got.len() {
            found.push((
                "membership",
                format!(
                    "node{i} (SWIM) misses {} live members {} and lists {} others {}{}",
                    missing.len(),
                    few(&missing),
                    extra.len(),
                    few(&extra),
                    if members.len() != got.len() {
                        " (a member listed twice)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let db = node.db();
        let not_active: Vec<String> = live_names
            .keys()
            .filter(|name| db.node_state(name) != Some(NodeState::Active))
            .cloned()
            .collect();
        let stale: Vec<String> = db
            .cluster_peers()
            .into_iter()
            .map(|p| p.name.to_string())
            .filter(|name| !live_names.contains_key(name))
            .collect();
        if !not_active.is_empty() || !stale.is_empty() {
            found.push((
                "membership",
                format!(
                    "node{i} (NetworkDB) does not count {} live nodes as active {} and counts \
                     {} stopped processes as active {}",
                    not_active.len(),
                    few(&not_active),
                    stale.len(),
                    few(&stale)
                ),
            ));
        }
    }

    if sim.opts.check_kernel {
        for &i in &live {
            kernel_check(sim, i, &mut found);
        }
    }
    if sim.opts.check_dns {
        for &i in &live {
            dns_check(sim, i, &mut found);
            balancer_check(sim, i, &mut found);
        }
    }

    let checks = std::mem::take(&mut sim.final_checks);
    for e in &checks {
        expectation_now(sim, e);
    }
    sim.final_checks = checks;
    for (check, detail) in found {
        sim.violation(check, detail);
    }
}

/// The `kernel` checker for live host `i`: its fake kernel holds what its peer DB wants
/// (`overlay::check`), and exactly what a fresh peer DB fed with the node's current view of
/// `overlay_peer_table` (visible entries of remote owners) wants for the attached networks.
fn kernel_check(sim: &Simulation, i: usize, found: &mut Vec<(&'static str, String)>) {
    let h = &sim.hosts[i];
    let (Some(node), Some(o)) = (h.node(), &h.overlay) else {
        return;
    };
    if let Err(e) = overlay::check(&o.kernel, &o.peers) {
        found.push(("kernel", format!("node{i}: {e}")));
    }
    let db = node.db();
    let table = crate::sim::TABLES[crate::sim::PEER_TABLE];
    let mut fresh = PeerDb::new(h.addr.ip());
    for id in &sim.net_ids {
        for (key, elem) in db.table_by_network(table, id) {
            if elem.owner == *db.name() {
                continue;
            }
            fresh.apply(&WatchEvent {
                table: networkdb::TableName::from(table),
                network: id.clone(),
                key,
                prev: None,
                value: Some(elem.value),
            });
        }
    }
    for &network in h.attached.keys() {
        fresh.network_ready(&sim.net_ids[network]);
    }
    let expected: BTreeMap<_, _> = fresh
        .networks()
        .filter(|(_, peers)| peers.is_ready())
        .map(|(id, peers)| (id.clone(), peers.desired().clone()))
        .collect();
    let programmed = o.kernel.networks();
    let empty = KernelState::default();
    let ids: BTreeSet<_> = expected.keys().chain(programmed.keys()).collect();
    for id in ids {
        match (expected.get(id), programmed.get(id)) {
            (Some(want), Some(got)) if want == got => {}
            (Some(want), Some(got)) => found.push((
                "kernel",
                format!(
                    "node{i}: network {id}: kernel holds {} neighbours and {} FDB entries, the \
                     node's view of {table} calls for {} and {}: {}",
                    got.neighbours.len(),
                    got.fdb.len(),
                    want.neighbours.len(),
                    want.fdb.len(),
                    kernel_difference(want, got)
                ),
            )),
            (Some(_), None) => found.push((
                "kernel",
                format!("node{i}: network {id} is attached but has no device"),
            )),
            (None, Some(got)) if got == &empty => found.push((
                "kernel",
                format!("node{i}: network {id} has a device but is not attached"),
            )),
            (None, Some(got)) => found.push((
                "kernel",
                format!(
                    "node{i}: network {id} is not attached but its device has {} neighbours \
                     and {} FDB entries",
                    got.neighbours.len(),
                    got.fdb.len()
                ),
            )),
            (None, None) => {}
        }
    }
}

/// The `dns` checker for live host `i`: its service discovery is attached to exactly the
/// networks the host is attached to, and holds for each the records a fresh computation from
/// the node's view of `endpoint_table` there gives (every visible entry, its own included).
fn dns_check(sim: &Simulation, i: usize, found: &mut Vec<(&'static str, String)>) {
    let h = &sim.hosts[i];
    let (Some(node), Some(sd)) = (h.node(), &h.dns) else {
        return;
    };
    let db = node.db();
    let table = crate::sim::TABLES[crate::sim::ENDPOINT_TABLE];
    // The raw workload's networks, and the CNM networks the node core has endpoints on.
    let mut attached: BTreeSet<&str> = h
        .attached
        .keys()
        .map(|&k| sim.net_ids[k].as_str())
        .collect();
    if let Some(core) = h.core() {
        attached.extend(
            core.state()
                .endpoints
                .values()
                .map(|e| e.network_id.as_str()),
        );
    }
    for (id, _) in sd.networks() {
        if !attached.contains(id.as_str()) {
            found.push((
                "dns",
                format!("node{i}: service discovery holds network {id}, which is not attached"),
            ));
        }
    }
    for id in attached {
        let Some(got) = sd.network(id) else {
            found.push((
                "dns",
                format!("node{i}: network {id} is attached but not in service discovery"),
            ));
            continue;
        };
        let view = db.table_by_network(table, id);
        let want = ServiceDiscovery::records_of(view.values().map(|e| &e.value[..]));
        if &want != got {
            found.push((
                "dns",
                format!(
                    "node{i}: network {id}: {} names, {} entries of {table} call for {}: {}",
                    got.len(),
                    view.len(),
                    want.len(),
                    dns_difference(&want, got)
                ),
            ));
        }
    }
}

/// The `balancer` checker for live host `i`: one sandbox per network its service discovery
/// is attached to, programmed as the agent programs one (`discovery::nft::SandboxBalancer`,
/// the same nf_tables bytes, applied by a fake kernel that refuses what the kernel would):
/// the ruleset read back serves exactly the VIPs and enabled tasks, each task with an equal
/// share, that service discovery gives for the network and that a fresh computation from the
/// node's view of `endpoint_table` gives; no balancer for any other network.
fn balancer_check(sim: &Simulation, i: usize, found: &mut Vec<(&'static str, String)>) {
    let h = &sim.hosts[i];
    let (Some(node), Some(sd)) = (h.node(), &h.dns) else {
        return;
    };
    let db = node.db();
    let table = crate::sim::TABLES[crate::sim::ENDPOINT_TABLE];
    for id in h.balancers.keys() {
        if !sd.is_attached(id.as_str()) {
            found.push((
                "balancer",
                format!(
                    "node{i}: a sandbox balancer remains for network {id}, which is not attached"
                ),
            ));
        }
    }
    for (id, records) in sd.networks() {
        let got = match h.balancers.get(id).map(|b| b.kernel.services()) {
            None => ServiceTable::new(),
            Some(Ok(served)) => served,
            Some(Err(e)) => {
                found.push((
                    "balancer",
                    format!("node{i}: network {id}: the sandbox's ruleset is malformed: {e}"),
                ));
                continue;
            }
        };
        let said = ServiceTable::of([records]);
        let view = db.table_by_network(table, id);
        let fresh = ServiceTable::of([&ServiceDiscovery::records_of(
            view.values().map(|e| &e.value[..]),
        )]);
        for (what, want) in [("service discovery", &said), ("endpoint_table", &fresh)] {
            if want != &got {
                let first = discovery::plan(want, &got);
                found.push((
                    "balancer",
                    format!(
                        "node{i}: network {id}: the sandbox's nf_tables serves {} VIPs and {} \
                         backends, {what} calls for {} and {}; first change missing: {:?}",
                        got.len(),
                        got.backend_count(),
                        want.len(),
                        want.backend_count(),
                        first.first()
                    ),
                ));
            }
        }
    }
}

/// The first few names (then PTR entries) whose addresses differ.
fn dns_difference(want: &NetworkRecords, got: &NetworkRecords) -> String {
    fn show(ips: Option<&Vec<IpAddr>>) -> String {
        let ips = ips.map_or(&[][..], Vec::as_slice);
        let shown: Vec<String> = ips.iter().take(4).map(ToString::to_string).collect();
        match ips.len().saturating_sub(4) {
            0 => format!("[{}]", shown.join(" ")),
            more => format!("[{} +{more}]", shown.join(" ")),
        }
    }
    let w: BTreeMap<&str, Vec<IpAddr>> = want.names().collect();
    let g: BTreeMap<&str, Vec<IpAddr>> = got.names().collect();
    let mut out: Vec<String> = w
        .keys()
        .chain(g.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|n| w.get(*n) != g.get(*n))
        .map(|n| format!("{n} -> want {} got {}", show(w.get(n)), show(g.get(n))))
        .collect();
    let ws: BTreeMap<IpAddr, Vec<IpAddr>> = want.services().collect();
    let gs: BTreeMap<IpAddr, Vec<IpAddr>> = got.services().collect();
    for vip in ws.keys().chain(gs.keys()).collect::<BTreeSet<_>>() {
        if ws.get(vip) != gs.get(vip) {
            out.push(format!(
                "vip {vip} backends -> want {} got {}",
                show(ws.get(vip)),
                show(gs.get(vip))
            ));
        }
    }
    let wp: BTreeMap<IpAddr, Vec<&str>> = want.reverse_entries().collect();
    let gp: BTreeMap<IpAddr, Vec<&str>> = got.reverse_entries().collect();
    for ip in wp.keys().chain(gp.keys()).collect::<BTreeSet<_>>() {
        if wp.get(ip) != gp.get(ip) {
            out.push(format!(
                "ptr {ip} -> want {:?} got {:?}",
                wp.get(ip).cloned().unwrap_or_default(),
                gp.get(ip).cloned().unwrap_or_default()
            ));
        }
    }
    if out.is_empty() {
        // Same names and addresses: only the number of claims differs.
        return "same names, different claim counts".to_owned();
    }
    let more = out.len().saturating_sub(3);
    out.truncate(3);
    if more > 0 {
        format!("{}; and {more} more", out.join("; "))
    } else {
        out.join("; ")
    }
}

/// The first few differences between the wanted and the programmed state.
fn kernel_difference(want: &KernelState, got: &KernelState) -> String {
    let mut out = Vec::new();
    for (ip, mac) in &want.neighbours {
        if got.neighbours.get(ip) != Some(mac) {
            out.push(format!("missing neigh {ip} -> {mac}"));
        }
    }
    for (ip, mac) in &got.neighbours {
        if want.neighbours.get(ip) != Some(mac) {
            out.push(format!("extra neigh {ip} -> {mac}"));
        }
    }
    for (mac, vtep) in &want.fdb {
        if got.fdb.get(mac) != Some(vtep) {
            out.push(format!("missing fdb {mac} -> {vtep}"));
        }
    }
    for (mac, vtep) in &got.fdb {
        if want.fdb.get(mac) != Some(vtep) {
            out.push(format!("extra fdb {mac} -> {vtep}"));
        }
    }
    few(&out)
}

/// Checks a scenario expectation now.
pub(crate) fn expectation_now(sim: &mut Simulation, e: &Expectation) {
    let mut found = Vec::new();
    match e {
        Expectation::Synced {
            nodes,
            source,
            networks,
        } => {
            for &network in networks {
                let reference = view(sim, *source, network).len();
                let net = &sim.net_ids[network];
                for &i in nodes {
                    let Some(node) = sim.hosts[i].node() else {
                        continue;
                    };
                    let got = view(sim, i, network).len();
                    let in_sync = node.db().is_in_sync(net);
                    if !in_sync || got < reference {
                        found.push(format!(
                            "node{i} at {:.1} s: {net} in sync {in_sync}, {got} entries, \
                             node{source} has {reference}",
                            sim.now.as_secs_f64()
                        ));
                    }
                }
            }
        }
        Expectation::DeclaredDown { node } => {
            if sim.hosts[*node].down_reports == 0 {
                found.push(format!(
                    "node{node} was never declared down: the scenario did not exercise a \
                     failure (lengthen the partition)"
                ));
            }
        }
        Expectation::NoBulkSyncTimeouts => {
            let total = counter(sim, "db.bulk_sync_timeouts");
            if total > 0 {
                found.push(format!("{total} bulk-sync requests timed out (moby#51701)"));
            }
        }
        Expectation::NoQueueOverflow => {
            let total = counter(sim, "db.queue_overflow");
            if total > 0 {
                found.push(format!("{total} queued events dropped on overflow"));
            }
        }
        Expectation::KeysLive {
            node,
            network,
            keys,
        } => {
            let net = sim.net_ids[*network].clone();
            let Some(owner) = sim.hosts[*node].node() else {
                return;
            };
            let owner_name = owner.db().name().clone();
            if !owner.db().is_attached(&net, &owner_name) {
                return;
            }
            for (i, h) in sim.hosts.iter().enumerate() {
                let Some(n) = h.node() else { continue };
                if !h.is_live() || !n.db().is_attached(&net, n.db().name()) {
                    continue;
                }
                for key in keys {
                    if n.db().get_entry(crate::sim::TABLES[0], &net, key).is_err() {
                        found.push(format!(
                            "node{i} does not see {net}/{key} of {owner_name} (moby#47728)"
                        ));
                    }
                }
            }
        }
        Expectation::QueueWithin { .. } => {}
    }
    for detail in found {
        sim.violation("scenario", detail);
    }
}

/// A counter summed over stopped processes (kept by the simulator) and live ones.
pub(crate) fn counter(sim: &Simulation, name: &str) -> u64 {
    let mut all = sim.drops.clone();
    for h in &sim.hosts {
        if let Some(node) = h.node() {
            crate::report::add_node_counters(&mut all, node);
        }
    }
    all.get(name).copied().unwrap_or(0)
}

fn few(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = names.len().saturating_sub(5);
    if more > 0 {
        format!("[{} and {more} more]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

fn difference(reference: &[Row], got: &[Row]) -> String {
    let r: BTreeMap<(&str, &str), (&[u8], &str)> = reference
        .iter()
        .map(|(t, k, v, o)| ((t.as_str(), k.as_str()), (v.as_slice(), o.as_str())))
        .collect();
    let g: BTreeMap<(&str, &str), (&[u8], &str)> = got
        .iter()
        .map(|(t, k, v, o)| ((t.as_str(), k.as_str()), (v.as_slice(), o.as_str())))
        .collect();
    let missing: Vec<String> = r
        .iter()
        .filter(|(k, _)| !g.contains_key(*k))
        .map(|((t, k), (_, o))| format!("{t}/{k} of {o}"))
        .collect();
    let extra: Vec<String> = g
        .iter()
        .filter(|(k, _)| !r.contains_key(*k))
        .map(|((t, k), (_, o))| format!("{t}/{k} of {o}"))
        .collect();
    let changed: Vec<String> = g
        .iter()
        .filter(|(k, v)| r.get(*k).is_some_and(|rv| rv != *v))
        .map(|((t, k), (v, o))| {
            let (rv, ro) = r[&(*t, *k)];
            format!(
                "{t}/{k}: write {} of {o} vs write {} of {ro}",
                write_id(v),
                write_id(rv)
            )
        })
        .collect();
    format!(
        "missing {} {}, extra {} {}, different {} {}",
        missing.len(),
        few(&missing),
        extra.len(),
        few(&extra),
        changed.len(),
        few(&changed)
    )
}

/// The write id a value starts with.
fn write_id(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// A digest of every node's visible state, membership view and clocks, in host order.
pub(crate) fn digest(sim: &Simulation) -> u64 {
    let mut d = Digest::default();
    d.u64(sim.hosts.len() as u64);
    d.u64(sim.events);
    for (i, h) in sim.hosts.iter().enumerate() {
        d.u64(i as u64);
        let Some(node) = h.node() else {
            d.u64(0);
            continue;
        };
        d.u64(1);
        let id = node.identity();
        d.str(&id.name);
        d.u64(id.incarnation);
        d.u64(u64::from(id.bump));
        let mut members: Vec<(String, u64, u16)> = node
            .members()
            .into_iter()
            .map(|m| (m.name.to_string(), m.incarnation, m.bump))
            .collect();
        members.sort();
        for (name, inc, bump) in members {
            d.str(&name);
            d.u64(inc);
            d.u64(u64::from(bump));
        }
        let db = node.db();
        let (net_clock, table_clock) = db.clocks();
        d.u64(net_clock.0);
        d.u64(table_clock.0);
        for peer in db.cluster_peers() {
            d.str(&peer.name);
        }
        for network in db.networks() {
            d.str(&network);
            d.u64(u64::from(db.is_in_sync(&network)));
            for table in db.tables(&network) {
                for (key, elem) in db.table_by_network(&table, &network) {
                    d.str(&table);
                    d.str(&key);
                    d.str(&elem.owner);
                    d.bytes(&elem.value);
                }
            }
        }
    }
    d.finish()
}
