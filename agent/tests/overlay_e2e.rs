#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only end to end test of the overlay dataplane: three "hosts" (network namespaces
//! joined by a bridge in a fourth, underlay namespace), a `netagent run` in each, two
//! container namespaces per host, and pings between every pair of containers across VXLAN.
//! Then one agent is killed (its peers are withdrawn on the others) and restarted (its
//! endpoints are re-attached and connectivity returns).
//!
//! Every namespace the test makes carries the process id and is deleted on the way out,
//! panics included. Only 198.18.0.0/15 is used; nothing is created in the host namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

mod common;
use common::lab::{Lab, run_root_tests};
use common::poll::try_poll;

const HOSTS: usize = 3;
const CONTAINERS: usize = 2;

/// Pings every (container, address) pair in `pairs` until all answered or `patience` ran out;
/// returns the pairs that never answered.
fn ping_all(lab: &Lab, pairs: &[(String, Ipv4Addr)], patience: Duration) -> Vec<String> {
    let mut pending: Vec<&(String, Ipv4Addr)> = pairs.iter().collect();
    let _ = try_poll(patience, || {
        pending.retain(|(from, to)| !lab.ping(from, *to));
        if pending.is_empty() {
            Ok(())
        } else {
            Err(pending.len())
        }
    });
    pending.iter().map(|(f, t)| format!("{f} -> {t}")).collect()
}

fn main() {
    run_root_tests(
        "overlay_e2e",
        vec![(
            "containers_on_three_hosts_ping_across_vxlan_and_survive_an_agent_restart",
            containers_on_three_hosts_ping_across_vxlan_and_survive_an_agent_restart,
        )],
    )
}

fn containers_on_three_hosts_ping_across_vxlan_and_survive_an_agent_restart() {
    let started = Instant::now();
    // No container here resolves names: nothing is forwarded beyond the test's namespaces.
    let mut lab = Lab::new("oe", HOSTS, CONTAINERS, &["--dns-forward=false"]);

    for h in 1..=HOSTS {
        lab.start_agent(h);
    }
    lab.wait_for(1, &["info"], |o| o.contains("Members:     3"));

    lab.ok(
        1,
        &[
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            "198.18.100.0/24",
            "e2e",
        ],
    );
    for h in 1..=HOSTS {
        lab.wait_for(h, &["network", "ls"], |o| o.contains("e2e"));
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.ok(1, &["network", "inspect", "e2e"])).unwrap();
    let vni = inspect[0]["vni"].as_u64().unwrap();

    let mut ips: BTreeMap<(usize, usize), Ipv4Addr> = BTreeMap::new();
    for h in 1..=HOSTS {
        for c in 1..=CONTAINERS {
            let sb = format!("c{c}");
            let ep = format!("ep{c}");
            let netns = format!("/run/netns/{}", lab.container(h, c));
            lab.ok(h, &["sandbox", "create", &sb, "--netns", &netns]);
            lab.ok(h, &["endpoint", "create", "e2e", &ep]);
            lab.ok(h, &["endpoint", "join", &ep, &sb]);
            let ip = lab
                .container_ip(h, c)
                .unwrap_or_else(|| panic!("h{h} c{c} has no address; log:\n{}", lab.log(h)));
            ips.insert((h, c), ip);
        }
    }

    let mut pairs = Vec::new();
    for h in 1..=HOSTS {
        for c in 1..=CONTAINERS {
            for h2 in 1..=HOSTS {
                for c2 in 1..=CONTAINERS {
                    if (h, c) != (h2, c2) {
                        pairs.push((lab.container(h, c), ips[&(h2, c2)]));
                    }
                }
            }
        }
    }
    let failed = ping_all(&lab, &pairs, Duration::from_secs(30));
    assert!(
        failed.is_empty(),
        "no answer: {failed:?}\nh1 log:\n{}",
        lab.log(1)
    );
    println!(
        "all {} container pairs answered after {:?}",
        pairs.len(),
        started.elapsed()
    );

    // h3 crashes: the others withdraw its endpoints.
    let h1_overlay = format!(
        "{}{vni}",
        agent::dataplane::netns_prefix("h1", &lab.state_dir(1))
    );
    let h3_ips: Vec<Ipv4Addr> = (1..=CONTAINERS).map(|c| ips[&(3, c)]).collect();
    let neigh = lab.neighbours(1, &h1_overlay);
    assert!(
        h3_ips.iter().all(|ip| neigh.contains(ip)),
        "h1 lacks h3's peers before the kill: {neigh:?}"
    );
    lab.kill9(3);
    let withdrawn = try_poll(Duration::from_secs(15), || {
        let neigh = lab.neighbours(1, &h1_overlay);
        if h3_ips.iter().any(|ip| neigh.contains(ip)) {
            Err(neigh)
        } else {
            Ok(())
        }
    });
    if let Err(t) = withdrawn {
        panic!("h3's peers not withdrawn on h1: {t}\nlog:\n{}", lab.log(1));
    }
    println!("h3's peers withdrawn after {:?}", started.elapsed());

    // h3 comes back with its state: its endpoints are re-attached and reachable again.
    lab.start_agent(3);
    let back: Vec<(String, Ipv4Addr)> = (1..=CONTAINERS)
        .flat_map(|c| {
            let to = ips[&(3, c)];
            [(lab.container(1, 1), to), (lab.container(2, 2), to)]
        })
        .chain([(lab.container(3, 1), ips[&(1, 1)])])
        .collect();
    let failed = ping_all(&lab, &back, Duration::from_secs(30));
    assert!(
        failed.is_empty(),
        "no answer after h3's restart: {failed:?}\nh3 log:\n{}\nh1 log:\n{}",
        lab.log(3),
        lab.log(1)
    );
    println!("connectivity back after {:?}", started.elapsed());
}
