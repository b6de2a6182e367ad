//! The node core on NetworkDB's in-memory harness, without daemons: CNM rules, and addresses
//! and VNIs unique cluster-wide under concurrent allocation.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use networkdb::Config;
use networkdb::harness::Harness;
use nodecore::{
    Answer, CoreError, EndpointCreate, Event, NetworkCreate, NodeCore, RequestId, SandboxCreate,
    Settings, Started,
};

/// Hosts of the harness, each with a core.
struct World {
    h: Harness,
    cores: Vec<NodeCore>,
    /// What each core saved last.
    disk: Vec<nodecore::LocalState>,
    seed: u64,
    answers: BTreeMap<(usize, RequestId), Answer>,
    saves: Vec<usize>,
}

impl World {
    fn new(n: usize, seed: u64) -> Self {
        let mut h = Harness::cluster(n, Config::default(), seed);
        let now = h.now();
        let cores = (0..n)
            .map(|i| NodeCore::new(h.db_mut(i), now, settings(i, seed), Default::default()))
            .collect();
        let mut w = Self {
            h,
            cores,
            disk: vec![nodecore::LocalState::default(); n],
            seed,
            answers: BTreeMap::new(),
            saves: vec![0; n],
        };
        w.run(Duration::from_secs(3));
        w
    }

    /// Drains every core's events.
    fn drain(&mut self) {
        let now = self.h.now();
        for i in 0..self.cores.len() {
            if !self.h.is_up(i) {
                continue;
            }
            loop {
                for (watch, event) in self.h.take_watch_events(i) {
                    if self.cores[i].owns_watch(watch) {
                        self.cores[i].handle_watch(self.h.db(i), now, watch, event);
                    }
                }
                let Some(event) = self.cores[i].poll_event(self.h.db_mut(i), now) else {
                    break;
                };
                match event {
                    Event::Answer(id, answer) => {
                        self.answers.insert((i, id), answer);
                    }
                    Event::Persist(state) => {
                        self.saves[i] += 1;
                        self.disk[i] = *state;
                    }
                    _ => {}
                }
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let step = Duration::from_millis(20);
        let end = self.h.now() + d;
        while self.h.now() < end {
            self.h.run_for(step);
            let now = self.h.now();
            for i in 0..self.cores.len() {
                if !self.h.is_up(i) {
                    continue;
                }
                self.cores[i].members_changed(self.h.db(i), now);
                if self.cores[i].poll_timeout() <= now {
                    self.cores[i].handle_timeout(self.h.db(i), now);
                }
            }
            self.drain();
        }
    }

    /// Restarts host `i` from what its core saved.
    fn restart(&mut self, i: usize) {
        let seeds = vec![self.h.host((i + 1) % self.cores.len()).addr];
        self.h.restart(i, Some(seeds));
        let now = self.h.now();
        let state = self.disk[i].clone();
        self.cores[i] = NodeCore::new(self.h.db_mut(i), now, settings(i, self.seed + 100), state);
        self.drain();
    }

    fn create_network(&mut self, i: usize, name: &str, subnet: &str) -> nodecore::NetworkSpec {
        let now = self.h.now();
        let req = NetworkCreate {
            name: name.into(),
            subnet: subnet.into(),
            ..Default::default()
        };
        let started = self.cores[i]
            .create_network(self.h.db(i), now, req)
            .unwrap();
        self.drain();
        match started {
            Started::Done(spec) => spec,
            Started::Waiting(id) => {
                self.run(Duration::from_secs(5));
                match self.answers.remove(&(i, id)) {
                    Some(Answer::Network(r)) => r.unwrap(),
                    other => panic!("no answer: {other:?}"),
                }
            }
        }
    }

    fn create_endpoint(
        &mut self,
        i: usize,
        network: &str,
        name: &str,
        ip: Option<&str>,
    ) -> Result<Started<nodecore::Endpoint>, CoreError> {
        let now = self.h.now();
        let req = EndpointCreate {
            network: network.into(),
            name: name.into(),
            ip: ip.map(str::to_owned),
            ..Default::default()
        };
        let r = self.cores[i].create_endpoint(self.h.db(i), now, req);
        self.drain();
        r
    }
}

fn settings(i: usize, seed: u64) -> Settings {
    Settings::new(
        format!("node{i}"),
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1 + i as u8)),
        i == 0,
        seed + i as u64,
    )
}

/// The bug of issue 13: 120 endpoints created at once on 3 nodes of one network got 15
/// duplicate addresses. Every address is now unique, and a node that owns space answered
/// at once.
#[test]
fn endpoints_created_at_once_on_every_node_get_distinct_addresses() {
    let mut w = World::new(3, 13);
    let spec = w.create_network(0, "blue", "198.18.64.0/24");
    assert!(spec.vni >= nodecore::FIRST_AUTO_VNI);
    w.run(Duration::from_secs(3));
    let mut waiting = Vec::new();
    let mut ips = Vec::new();
    for k in 0..40 {
        for i in 0..3 {
            match w
                .create_endpoint(i, "blue", &format!("n{i}-{k}"), None)
                .unwrap()
            {
                Started::Done(e) => ips.push(e.ip),
                Started::Waiting(id) => waiting.push((i, id)),
            }
        }
    }
    assert!(!waiting.is_empty(), "nodes 1 and 2 owned nothing at first");
    w.run(Duration::from_secs(15));
    for key in waiting {
        match w.answers.remove(&key) {
            Some(Answer::Endpoint(Ok(e))) => ips.push(e.ip),
            other => panic!("{key:?}: {other:?}"),
        }
    }
    assert_eq!(ips.len(), 120);
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(distinct.len(), 120, "no address twice");
    assert!(
        !distinct.contains(&Ipv4Addr::new(198, 18, 64, 1)),
        "never the gateway"
    );
    // Once it owns space, a node answers at once.
    for i in 1..3 {
        assert!(matches!(
            w.create_endpoint(i, "blue", &format!("later{i}"), None)
                .unwrap(),
            Started::Done(_)
        ));
    }
    // Every ask was withdrawn once answered, and every answer with it: the IPAM tables hold
    // only claims, not the history of the traffic.
    w.run(Duration::from_secs(3));
    for table in [ipam::ASKS_TABLE, ipam::ANSWERS_TABLE] {
        for i in 0..3 {
            let left = w.h.db(i).table_by_network(table, nodecore::GLOBAL_NETWORK);
            assert!(left.is_empty(), "node{i}: {table}: {:?}", left.keys());
        }
    }
}

#[test]
fn a_given_address_is_claimed_through_the_same_rules() {
    let mut w = World::new(3, 7);
    w.create_network(0, "red", "198.18.70.0/24");
    w.run(Duration::from_secs(2));
    let Started::Done(first) = w
        .create_endpoint(0, "red", "a", Some("198.18.70.9"))
        .unwrap()
    else {
        panic!("the origin owns the address");
    };
    assert_eq!(first.ip, Ipv4Addr::new(198, 18, 70, 9));
    w.run(Duration::from_secs(2));
    // Another node asks the owner, which refuses: taken anywhere in the cluster is 409.
    let started = w
        .create_endpoint(1, "red", "b", Some("198.18.70.9"))
        .unwrap();
    let Started::Waiting(id) = started else {
        panic!("node1 does not own the address");
    };
    w.run(Duration::from_secs(3));
    match w.answers.remove(&(1, id)) {
        Some(Answer::Endpoint(Err(e))) => assert_eq!(e.status(), 409, "{e}"),
        other => panic!("{other:?}"),
    }
    // The gateway is refused outright.
    let err = w
        .create_endpoint(1, "red", "c", Some("198.18.70.1"))
        .unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn cnm_rules() {
    let mut w = World::new(2, 3);
    w.create_network(0, "green", "198.18.80.0/24");
    let now = w.h.now();
    let dup = w.cores[0].create_network(
        w.h.db(0),
        now,
        NetworkCreate {
            name: "green".into(),
            subnet: "198.18.81.0/24".into(),
            ..Default::default()
        },
    );
    assert_eq!(dup.unwrap_err().status(), 409);
    let overlap = w.cores[0].create_network(
        w.h.db(0),
        now,
        NetworkCreate {
            name: "other".into(),
            subnet: "198.18.80.128/25".into(),
            ..Default::default()
        },
    );
    assert!(overlap.unwrap_err().to_string().contains("overlaps"));
    assert!(matches!(
        w.create_endpoint(0, "green", "web", None).unwrap(),
        Started::Done(_)
    ));
    assert_eq!(
        w.create_endpoint(0, "green", "web", None)
            .unwrap_err()
            .status(),
        409
    );
    assert_eq!(
        w.create_endpoint(0, "nope", "web", None)
            .unwrap_err()
            .status(),
        404
    );
    w.cores[0]
        .create_sandbox(SandboxCreate {
            name: "c1".into(),
            netns: "/run/netns/c1".into(),
            resolv_conf: None,
            engine: None,
        })
        .unwrap();
    let db = w.h.db(0);
    let plan = w.cores[0]
        .join_plan("green", "web", &join_req("c1"))
        .unwrap();
    assert_eq!(plan.gateway.to_string(), "198.18.80.1/24");
    w.cores[0]
        .join(db, "green", "web", &join_req("c1"))
        .unwrap();
    let now = w.h.now();
    assert_eq!(
        w.cores[0]
            .remove_endpoint(now, "green", "web")
            .unwrap_err()
            .status(),
        409,
        "joined"
    );
    assert_eq!(w.cores[0].remove_sandbox("c1").unwrap_err().status(), 409);
    w.drain();
    w.run(Duration::from_secs(2));
    // The records are published (node1 has no endpoint there: it does not replicate them).
    assert_eq!(
        w.h.db(0)
            .table_by_network(discovery::ENDPOINT_TABLE, &plan.network_id)
            .len(),
        1
    );
    // Removing a network with endpoints is refused.
    let now = w.h.now();
    assert_eq!(
        w.cores[1]
            .remove_network(w.h.db(1), now, "green")
            .unwrap_err()
            .status(),
        409
    );
    let db = w.h.db(0);
    w.cores[0].leave(db, "green", "web").unwrap();
    w.cores[0].remove_endpoint(now, "green", "web").unwrap();
    w.cores[0].remove_sandbox("c1").unwrap();
    w.drain();
    w.run(Duration::from_secs(2));
    let now = w.h.now();
    w.cores[1].remove_network(w.h.db(1), now, "green").unwrap();
    w.drain();
    w.run(Duration::from_secs(3));
    assert!(w.cores[0].networks(w.h.db(0)).is_empty());
    assert!(w.saves[0] > 0, "every change was saved");
}

/// Found by the simulator (transient-failure, seed 3): a node that waited for space while the
/// network's catalogue entry was out of sight (its owner failed) dropped the network's
/// allocator, and the next allocator's tickets met the old requests, which were never
/// answered. A network merely out of sight keeps its allocator (its claims and pending
/// requests stand), and every request is answered.
#[test]
fn a_request_survives_its_network_going_out_of_sight() {
    let mut w = World::new(2, 21);
    let spec = w.create_network(0, "amber", "198.18.90.0/24");
    w.run(Duration::from_secs(2));
    w.h.crash(0);
    w.run(Duration::from_secs(1));
    let Started::Waiting(first) = w.create_endpoint(1, "amber", "a", None).unwrap() else {
        panic!("node1 owns nothing");
    };
    // node0 is declared failed: its catalogue entry is hidden on node1.
    w.run(Duration::from_secs(8));
    assert!(
        w.h.db(1)
            .get_entry(nodecore::NETWORKS_TABLE, nodecore::GLOBAL_NETWORK, "amber")
            .is_err()
    );
    assert!(
        w.cores[1].ipam_stats().contains_key(&spec.id),
        "the allocator of a network out of sight is kept"
    );
    w.restart(0);
    w.run(Duration::from_secs(25));
    assert!(
        w.answers.contains_key(&(1, first)),
        "the request was answered: {:?}",
        w.answers
    );
}

/// A node leaving gracefully gives its empty blocks to an heir, which writes their claims
/// again under its own name: once the leaver's entries are gone, every node still sees the
/// space owned, by the heir, and the heir allocates in it.
#[test]
fn a_leaving_node_hands_its_empty_blocks_back() {
    let mut w = World::new(3, 31);
    let spec = w.create_network(0, "teal", "198.18.95.0/24");
    w.run(Duration::from_secs(2));
    let Started::Waiting(id) = w.create_endpoint(1, "teal", "x", None).unwrap() else {
        panic!("node1 owns nothing");
    };
    w.run(Duration::from_secs(3));
    assert!(matches!(
        w.answers.get(&(1, id)),
        Some(Answer::Endpoint(Ok(_)))
    ));
    let now = w.h.now();
    w.cores[1].remove_endpoint(now, "teal", "x").unwrap();
    w.drain();
    w.run(Duration::from_secs(2));
    let owners = |w: &World, i: usize| w.cores[i].pool_owners(&spec.id).unwrap();
    assert_eq!(owners(&w, 2).get("node1"), Some(&1), "node1 got a block");

    let now = w.h.now();
    assert_eq!(w.cores[1].hand_back(w.h.db(1), now), 1);
    w.drain();
    w.run(Duration::from_secs(2));
    w.h.close(1);
    w.run(Duration::from_secs(3));
    for i in [0, 2] {
        let o = owners(&w, i);
        assert_eq!(o.get("node1"), None, "node{i}: {o:?}");
        assert_eq!(o.get("node0"), Some(&16), "node{i}: {o:?}");
    }
    let claims =
        w.h.db(2)
            .table_by_network(ipam::CLAIMS_TABLE, nodecore::GLOBAL_NETWORK);
    assert!(
        claims.values().all(|e| e.owner.as_str() != "node1"),
        "the heir's claims outlive the leaver's entries"
    );
    assert!(!claims.is_empty());
}

/// An operator reclaims the space of a node gone for good: refused while the node is alive;
/// once it failed, its blocks go to the heir (the live node owning the most), on every node.
#[test]
fn the_space_of_a_node_gone_for_good_is_reclaimed() {
    let mut w = World::new(3, 41);
    let spec = w.create_network(0, "plum", "198.18.97.0/24");
    w.run(Duration::from_secs(2));
    let Started::Waiting(_) = w.create_endpoint(1, "plum", "x", None).unwrap() else {
        panic!("node1 owns nothing");
    };
    w.run(Duration::from_secs(3));
    let now = w.h.now();
    let alive = w.cores[2].reclaim(w.h.db(2), now, "node1").unwrap_err();
    assert_eq!(alive.status(), 409, "{alive}");
    w.h.crash(1);
    w.run(Duration::from_secs(8));
    let now = w.h.now();
    assert_eq!(w.cores[2].reclaim(w.h.db(2), now, "node1").unwrap(), 1);
    w.drain();
    w.run(Duration::from_secs(3));
    for i in [0, 2] {
        let o = w.cores[i].pool_owners(&spec.id).unwrap();
        assert_eq!(o.get("node1"), None, "node{i}: {o:?}");
        assert_eq!(o.get("node0"), Some(&16), "node{i}: {o:?}");
    }
}

/// Two nodes create one name at the same instant: both succeed locally, and every node ends
/// with the same network under the name; the loser's creator forgets its own (it has no
/// endpoint there) and gives its VNI back.
#[test]
fn one_name_created_on_two_nodes_at_once_ends_as_one_network() {
    let mut w = World::new(3, 51);
    w.run(Duration::from_secs(2));
    let now = w.h.now();
    for i in [1, 2] {
        let req = NetworkCreate {
            name: "twin".into(),
            subnet: format!("198.18.{}.0/24", 100 + i),
            ..Default::default()
        };
        // Both succeed locally (at once, or after asking the founder for a VNI).
        let _: Started<_> = w.cores[i].create_network(w.h.db(i), now, req).unwrap();
    }
    w.drain();
    w.run(Duration::from_secs(10));
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let nets = w.cores[i].networks(w.h.db(i));
            assert_eq!(nets.len(), 1, "node{i}: {nets:?}");
            nets[0].id.clone()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for i in [1, 2] {
        let known: Vec<&String> = w.cores[i].state().networks.keys().collect();
        assert!(
            known.iter().all(|id| **id == ids[0]),
            "node{i} forgot the loser: {known:?}"
        );
    }
}

/// Found by review: a node that did not know the founder yet published a network with a
/// given VNI of the pool's range after a catalogue check only, so the founder could hand the
/// same VNI out later. Without the pool, such a VNI is refused (503); one below the pool's
/// range is fine.
#[test]
fn a_vni_of_the_pool_needs_the_pool() {
    let mut h = Harness::cluster(1, Config::default(), 61);
    let now = h.now();
    let lone = Settings::new("lone", IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)), false, 1);
    let mut core = NodeCore::new(h.db_mut(0), now, lone, Default::default());
    let req = |name: &str, subnet: &str, vni| NetworkCreate {
        name: name.into(),
        subnet: subnet.into(),
        vni: Some(vni),
        ..Default::default()
    };
    let err = core
        .create_network(h.db(0), now, req("a", "198.18.110.0/24", 5000))
        .unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert!(matches!(
        core.create_network(h.db(0), now, req("b", "198.18.111.0/24", 100)),
        Ok(Started::Done(_))
    ));
}

/// Found by review: two founders seen (two clusters joined together) were only counted, and
/// both kept handing out VNIs of the pool. Automatic VNIs are refused then.
#[test]
fn two_founders_stop_automatic_vnis() {
    let mut h = Harness::cluster(2, Config::default(), 71);
    let now = h.now();
    let mut cores: Vec<NodeCore> = (0..2)
        .map(|i| {
            let s = Settings::new(
                format!("f{i}"),
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20 + i as u8)),
                true,
                i as u64,
            );
            NodeCore::new(h.db_mut(i), now, s, Default::default())
        })
        .collect();
    for _ in 0..150 {
        h.run_for(Duration::from_millis(20));
        let now = h.now();
        for (i, core) in cores.iter_mut().enumerate() {
            for (watch, event) in h.take_watch_events(i) {
                if core.owns_watch(watch) {
                    core.handle_watch(h.db(i), now, watch, event);
                }
            }
            if core.poll_timeout() <= now {
                core.handle_timeout(h.db(i), now);
            }
            while core.poll_event(h.db_mut(i), now).is_some() {}
        }
    }
    assert!(cores[0].stats().founder_conflicts > 0);
    let now = h.now();
    let req = NetworkCreate {
        name: "n".into(),
        subnet: "198.18.120.0/24".into(),
        ..Default::default()
    };
    let err = cores[0].create_network(h.db(0), now, req).unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
}

/// Found by review: the creator of a network that lost its name to another (the catalogue
/// kept the other) while it had endpoints forgot the network with its last endpoint but kept
/// its VNI held forever. The VNI is given back.
#[test]
fn a_lost_network_gives_its_vni_back_with_its_last_endpoint() {
    let mut w = World::new(3, 81);
    w.run(Duration::from_secs(2));
    let now = w.h.now();
    let mut waiting = Vec::new();
    for i in [1, 2] {
        let req = NetworkCreate {
            name: "dup".into(),
            subnet: format!("198.18.{}.0/24", 130 + i),
            ..Default::default()
        };
        let Started::Waiting(id) = w.cores[i].create_network(w.h.db(i), now, req).unwrap() else {
            panic!("node{i} owns no VNI");
        };
        waiting.push((i, id));
    }
    w.drain();
    let mut specs = Vec::new();
    let step = Duration::from_millis(20);
    for _ in 0..250 {
        w.run(step);
        if waiting.iter().all(|k| w.answers.contains_key(k)) {
            break;
        }
    }
    for (i, id) in waiting {
        match w.answers.remove(&(i, id)) {
            Some(Answer::Network(Ok(spec))) => specs.push((i, spec)),
            other => panic!("node{i}: both creations succeed locally: {other:?}"),
        }
    }
    // Each creator puts an endpoint on its own network before the catalogue settles.
    for (i, spec) in &specs {
        let now = w.h.now();
        let req = EndpointCreate {
            network: spec.id.clone(),
            name: format!("e{i}"),
            ..Default::default()
        };
        let started = w.cores[*i].create_endpoint(w.h.db(*i), now, req).unwrap();
        assert!(
            matches!(started, Started::Done(_)),
            "the creator owns its pool"
        );
    }
    w.drain();
    w.run(Duration::from_secs(5));
    let winner = w.cores[0].networks(w.h.db(0))[0].id.clone();
    let (loser, lost) = specs
        .iter()
        .find(|(_, s)| s.id != winner)
        .map(|(i, s)| (*i, s.clone()))
        .unwrap();
    assert!(w.cores[loser].state().networks[&lost.id].removed);
    let now = w.h.now();
    w.cores[loser]
        .remove_endpoint(now, &lost.id, &format!("e{loser}"))
        .unwrap();
    w.drain();
    w.run(Duration::from_secs(3));
    // Its VNI is free again: the loser (its holder) can give it to a new network.
    let now = w.h.now();
    let again = NetworkCreate {
        name: "reuse".into(),
        subnet: "198.18.140.0/24".into(),
        vni: Some(lost.vni),
        ..Default::default()
    };
    let started = w.cores[loser].create_network(w.h.db(loser), now, again);
    let answered = match started {
        Ok(Started::Done(spec)) => Ok(spec),
        Ok(Started::Waiting(id)) => {
            w.run(Duration::from_secs(5));
            match w.answers.remove(&(loser, id)) {
                Some(Answer::Network(r)) => r,
                other => panic!("{other:?}"),
            }
        }
        Err(e) => Err(e),
    };
    assert_eq!(answered.unwrap().vni, lost.vni);
}

impl World {
    /// Reserves an address on host `i`, waiting for the answer if need be.
    fn reserve(
        &mut self,
        i: usize,
        network: &str,
        ip: Option<&str>,
    ) -> Result<Ipv4Addr, CoreError> {
        let now = self.h.now();
        let ip = ip.map(|t| t.parse().unwrap());
        let started = self.cores[i].reserve_address(self.h.db(i), now, network, ip)?;
        self.drain();
        match started {
            Started::Done(ip) => Ok(ip),
            Started::Waiting(id) => {
                self.run(Duration::from_secs(5));
                match self.answers.remove(&(i, id)) {
                    Some(Answer::Address(r)) => r,
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

/// An engine's IPAM driver reserves addresses before it creates the endpoints that use them
/// (Docker): a reservation is claimed cluster-wide like an endpoint's address; an endpoint on
/// a reserved address uses it without a second claim; removing that endpoint leaves it
/// reserved until it is released; a restart keeps the reservations.
#[test]
fn reserved_addresses_are_claimed_cluster_wide_and_used_by_their_endpoints() {
    let mut w = World::new(3, 21);
    let spec = w.create_network(0, "dock", "198.18.90.0/24");
    w.run(Duration::from_secs(2));
    // Node 1 owns nothing yet: its first reservation waits for an answer.
    let a = w.reserve(1, "dock", None).unwrap();
    let b = w.reserve(1, "dock", Some("198.18.90.77")).unwrap();
    assert_eq!(b, Ipv4Addr::new(198, 18, 90, 77));
    assert_ne!(a, b);
    w.run(Duration::from_secs(2));
    // Held anywhere: refused elsewhere, for a reservation and for an endpoint.
    let err = w.reserve(2, "dock", Some("198.18.90.77")).unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    let err = match w.create_endpoint(2, "dock", "x", Some("198.18.90.77")) {
        Err(e) => e,
        Ok(Started::Waiting(id)) => {
            w.run(Duration::from_secs(3));
            match w.answers.remove(&(2, id)) {
                Some(Answer::Endpoint(Err(e))) => e,
                other => panic!("{other:?}"),
            }
        }
        Ok(Started::Done(e)) => panic!("taken twice: {e:?}"),
    };
    assert_eq!(err.status(), 409, "{err}");
    // The endpoint on a reserved address is created at once, without a second claim.
    let Started::Done(e) = w
        .create_endpoint(1, "dock", "c1", Some(&b.to_string()))
        .unwrap()
    else {
        panic!("a reserved address is held already");
    };
    assert_eq!(e.ip, b);
    // Removing the endpoint keeps the reservation: the address is still refused elsewhere.
    let now = w.h.now();
    w.cores[1].remove_endpoint(now, "dock", "c1").unwrap();
    w.drain();
    assert_eq!(w.cores[1].reserved(&spec.id).count(), 2);
    let err = w.reserve(2, "dock", Some("198.18.90.77")).unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    // A restart keeps them.
    w.restart(1);
    w.run(Duration::from_secs(3));
    assert_eq!(
        w.cores[1].reserved(&spec.id).collect::<Vec<_>>(),
        vec![a, b]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    // Released, the address is free for anyone.
    let now = w.h.now();
    assert!(w.cores[1].release_address(now, &spec.id, b).unwrap());
    assert!(
        !w.cores[1].release_address(now, &spec.id, b).unwrap(),
        "twice is a no-op"
    );
    w.drain();
    w.run(Duration::from_secs(2));
    assert_eq!(w.reserve(2, "dock", Some("198.18.90.77")).unwrap(), b);
}

fn join_req(sandbox: &str) -> nodecore::JoinRequest {
    nodecore::JoinRequest {
        sandbox: sandbox.into(),
        ifname: None,
    }
}

/// A sandbox's interfaces: the first free `eth<k>` unless the join names one; a name held by
/// another endpoint of the sandbox, a name the kernel would refuse, and a name for a Docker
/// sandbox are refused; only the agent's own sandboxes get a default route, on `eth0`.
#[test]
fn interfaces_are_named_per_sandbox() {
    let mut w = World::new(1, 5);
    w.create_network(0, "green", "198.18.82.0/24");
    w.create_network(0, "blue", "198.18.83.0/24");
    for (net, name) in [("green", "a"), ("blue", "a"), ("green", "b"), ("blue", "b")] {
        assert!(matches!(
            w.create_endpoint(0, net, name, None).unwrap(),
            Started::Done(_)
        ));
    }
    for (name, engine) in [("c1", None), ("c2", Some(nodecore::Engine::Cni))] {
        w.cores[0]
            .create_sandbox(SandboxCreate {
                name: name.into(),
                netns: format!("/run/netns/{name}"),
                resolv_conf: None,
                engine,
            })
            .unwrap();
    }
    let db = w.h.db(0);
    let core = &mut w.cores[0];
    let first = core.join(db, "green", "a", &join_req("c1")).unwrap();
    assert_eq!(first.ifname.as_deref(), Some("eth0"));
    let plan = core.join_plan("blue", "a", &join_req("c1")).unwrap();
    assert_eq!(plan.ifname.as_deref(), Some("eth1"));
    assert!(!plan.default_route(), "one default route per sandbox");
    core.join(db, "blue", "a", &join_req("c1")).unwrap();
    assert!(
        core.joined_plans()
            .iter()
            .any(|p| p.ifname.as_deref() == Some("eth0") && p.default_route())
    );

    let named = |ifname: &str| nodecore::JoinRequest {
        sandbox: "c2".into(),
        ifname: Some(ifname.into()),
    };
    let cni = core.join_plan("green", "b", &named("net1")).unwrap();
    assert!(
        !cni.default_route(),
        "a CNI container gets no default route"
    );
    core.join(db, "green", "b", &named("net1")).unwrap();
    let taken = core.join_plan("blue", "b", &named("net1")).unwrap_err();
    assert_eq!(taken.status(), 409, "{taken}");
    assert!(taken.to_string().contains("net1"), "{taken}");
    for bad in ["", "a/b", "sixteen-letters!", "..", "0123456789abcdef"] {
        assert_eq!(
            core.join_plan("blue", "b", &named(bad))
                .unwrap_err()
                .status(),
            400,
            "{bad:?}"
        );
    }
    // Leaving frees the name.
    core.leave(db, "green", "b").unwrap();
    assert!(core.join_plan("blue", "b", &named("net1")).is_ok());

    core.create_sandbox(SandboxCreate {
        name: "d1".into(),
        netns: "/run/docker/netns/d1".into(),
        resolv_conf: None,
        engine: Some(nodecore::Engine::Docker),
    })
    .unwrap();
    let docker = nodecore::JoinRequest {
        sandbox: "d1".into(),
        ifname: Some("eth0".into()),
    };
    assert_eq!(
        core.join_plan("blue", "b", &docker).unwrap_err().status(),
        400
    );
    let plan = core.join_plan("blue", "b", &join_req("d1")).unwrap();
    assert_eq!(plan.ifname, None, "dockerd names its interfaces");
    assert!(!plan.default_route());
}
