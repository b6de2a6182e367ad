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
    answers: BTreeMap<(usize, RequestId), Answer>,
    saves: Vec<usize>,
}

impl World {
    fn new(n: usize, seed: u64) -> Self {
        let mut h = Harness::cluster(n, Config::default(), seed);
        let now = h.now();
        let cores = (0..n)
            .map(|i| {
                let settings = Settings::new(
                    format!("node{i}"),
                    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1 + i as u8)),
                    i == 0,
                    seed + i as u64,
                );
                NodeCore::new(h.db_mut(i), now, settings, Default::default())
            })
            .collect();
        let mut w = Self {
            h,
            cores,
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
                    Event::Persist(_) => self.saves[i] += 1,
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
                self.cores[i].members_changed(self.h.db(i), now);
                if self.cores[i].poll_timeout() <= now {
                    self.cores[i].handle_timeout(self.h.db(i), now);
                }
            }
            self.drain();
        }
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
        })
        .unwrap();
    let db = w.h.db(0);
    let plan = w.cores[0].join_plan("green", "web", "c1").unwrap();
    assert_eq!(plan.gateway.to_string(), "198.18.80.1/24");
    w.cores[0].join(db, "green", "web", "c1").unwrap();
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
