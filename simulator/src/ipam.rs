//! The IPAM workload and the `ipam` checker: endpoints created and removed through every
//! host's real node core, and, continuously, no address held twice in a network, no VNI held
//! by two networks, and every allocation answered within a bound.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use nodecore::{
    Answer, CoreError, EndpointCreate, LocalState, NetworkCreate, RequestId, SandboxCreate, Started,
};
use rand::RngExt;

use crate::sim::Simulation;

/// The subnet of the workload's network `k`: `198.18.0.0/<prefix>` and the next ones, each
/// at least a /24 apart.
pub(crate) fn subnet(k: usize, prefix: u8) -> String {
    format!("{}/{prefix}", Ipv4Addr::from(subnet_base(k, prefix)))
}

/// The network address of the workload's network `k`.
fn subnet_base(k: usize, prefix: u8) -> u32 {
    u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (k as u32) * stride(prefix)
}

/// The distance between two of the workload's subnets.
pub(crate) fn stride(prefix: u8) -> u32 {
    (1u32 << (32 - u32::from(prefix))).max(256)
}

/// A request waiting for its answer.
#[derive(Clone, Debug)]
pub(crate) struct Waiting {
    /// The host's incarnation when it asked (a restart drops the request).
    pub(crate) incarnation: u64,
    /// When it asked.
    pub(crate) at: Duration,
}

/// Counters of the workload, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpamCounters {
    /// Endpoints created at once (the node owned space).
    pub local: u64,
    /// Endpoints created after a wait.
    pub waited: u64,
    /// Creations refused (full subnet, owner unreachable, timeout).
    pub refused: u64,
    /// Endpoints removed (their addresses released).
    pub removed: u64,
    /// Networks created by the workload.
    pub networks: u64,
    /// Empty blocks handed to an heir by leaving nodes.
    pub handed_back: u64,
    /// The longest wait for an answer.
    pub max_wait: Duration,
}

/// The workload's state across the run.
#[derive(Debug, Default)]
pub(crate) struct IpamWork {
    /// Requests waiting, by host and request.
    pub(crate) waiting: BTreeMap<(usize, RequestId), Waiting>,
    pub(crate) counters: IpamCounters,
    pub(crate) next_name: u64,
}

impl IpamWork {
    /// Takes an answer in; a refusal other than "no space" or "unreachable" is a violation's
    /// detail.
    pub(crate) fn answered(
        &mut self,
        host: usize,
        request: RequestId,
        answer: &Answer,
        now: Duration,
    ) -> Option<String> {
        let waiting = self.waiting.remove(&(host, request))?;
        let wait = now.saturating_sub(waiting.at);
        self.counters.max_wait = self.counters.max_wait.max(wait);
        let result = match answer {
            Answer::Endpoint(r) => r.as_ref().map(|_| ()),
            Answer::Network(r) => r.as_ref().map(|_| ()),
            Answer::Address(r) => r.as_ref().map(|_| ()),
        };
        match result {
            Ok(()) => {
                self.counters.waited += 1;
                None
            }
            Err(e) => {
                self.counters.refused += 1;
                unexpected(e).then(|| format!("node{host}: request refused: {e}"))
            }
        }
    }
}

/// Refusals a correct run never gives: anything but a full pool, an unreachable owner, a
/// timeout or a name taken meanwhile.
pub(crate) fn unexpected(e: &CoreError) -> bool {
    !(e.is_conflict() || matches!(e, CoreError::Unavailable(_)))
}

/// Duplicate addresses and VNIs among the endpoints and networks of `states` (host index,
/// its state: the running process's, or what a stopped host saved).
pub(crate) fn duplicates(states: &[(usize, &LocalState)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut addrs: BTreeMap<(&str, Ipv4Addr), (usize, &str)> = BTreeMap::new();
    let mut vnis: BTreeMap<u32, (&str, &str)> = BTreeMap::new();
    for (host, state) in states {
        for e in state.endpoints.values() {
            if let Some((other, name)) = addrs.insert((&e.network_id, e.ip), (*host, &e.name)) {
                out.push(format!(
                    "address {} of network {} held twice: node{other}'s {name} and node{host}'s {}",
                    e.ip, e.network, e.name
                ));
            }
        }
        for known in state.networks.values() {
            let spec = &known.spec;
            if let Some((id, name)) = vnis.insert(spec.vni, (&spec.id, &spec.name))
                && id != spec.id
            {
                out.push(format!(
                    "VNI {} held by two networks: {name} and {}",
                    spec.vni, spec.name
                ));
            }
        }
    }
    out
}

/// The subnet of the `n`th network the workload creates beside the fixed ones:
/// `198.19.192.0/26` upwards.
fn extra_subnet(n: u64) -> String {
    let base = u32::from(Ipv4Addr::new(198, 19, 192, 0)) + (n as u32) * 64;
    format!("{}/26", Ipv4Addr::from(base))
}

/// The sandbox every host's joined endpoints of the workload go in.
const SANDBOX: &str = "netsim";

/// The most networks the workload creates beside the fixed ones.
const MAX_EXTRA_NETWORKS: u64 = 200;

/// How long past the core's allocation timeout an answer may take (a timer fires late by at
/// most the node's own scheduling).
const ANSWER_SLACK: Duration = Duration::from_secs(5);

impl Simulation {
    /// Node 0 creates the workload's networks; false if it could not yet.
    pub(crate) fn ipam_setup(&mut self) -> bool {
        let prefix = self.opts.ipam_prefix;
        let mut done = true;
        for k in 0..self.opts.ipam_networks {
            let name = format!("ipam{k}");
            let req = NetworkCreate {
                name: name.clone(),
                subnet: subnet(k, prefix),
                ..Default::default()
            };
            let result = self.call_core(0, |core, db, now| {
                if core.networks(db).iter().any(|s| s.name == name) {
                    return Ok(None);
                }
                core.create_network(db, now, req).map(Some)
            });
            match result {
                Some(Ok(Some(Started::Waiting(id)))) => {
                    let incarnation = self.hosts[0].incarnation;
                    let at = self.now;
                    self.ipam
                        .waiting
                        .insert((0, id), Waiting { incarnation, at });
                }
                Some(Ok(_)) => {}
                _ => done = false,
            }
        }
        if done {
            if self.opts.ipam_ops_per_sec > 0.0 {
                self.push(self.now + Duration::from_secs(2), crate::sim::Event::IpamOp);
            }
            if self.opts.ipam_burst > 0 {
                self.push(
                    self.now + Duration::from_secs(4),
                    crate::sim::Event::IpamBurst,
                );
            }
        }
        done
    }

    /// A live, unpaused host chosen with the IPAM generator.
    fn ipam_host(&mut self) -> Option<usize> {
        for _ in 0..8 {
            let i = self.ipam_rng.random_range(0..self.hosts.len());
            if self.hosts[i].is_live() && self.paused(i).is_none() {
                return Some(i);
            }
        }
        None
    }

    /// The workload's networks host `i`'s core knows, by name.
    fn ipam_networks_of(&self, i: usize) -> Vec<String> {
        let Some(stack) = self.hosts[i].stack.as_ref() else {
            return Vec::new();
        };
        stack
            .core()
            .networks(stack.node().db())
            .into_iter()
            .filter(|s| s.name.starts_with("ipam"))
            .map(|s| s.name)
            .collect()
    }

    /// One operation: create an endpoint (one in eight at a given address), remove one, or
    /// now and then create a network.
    pub(crate) fn ipam_op(&mut self) {
        let Some(i) = self.ipam_host() else { return };
        let roll = self.ipam_rng.random_range(0..100u32);
        if roll < 2 {
            self.ipam_create_network(i);
            return;
        }
        let networks = self.ipam_networks_of(i);
        if networks.is_empty() {
            return;
        }
        let network = networks[self.ipam_rng.random_range(0..networks.len())].clone();
        if roll < 75 {
            let explicit = self.ipam_rng.random_range(0..8u32) == 0;
            let ip = explicit.then(|| {
                // A host address of the network's subnet, never its network, gateway or
                // broadcast address.
                let k: usize = network["ipam".len()..].parse().unwrap_or(0);
                let base = subnet_base(k, self.opts.ipam_prefix);
                let hosts = (1u32 << (32 - u32::from(self.opts.ipam_prefix))) - 3;
                let offset = 2 + self.ipam_rng.random_range(0..hosts);
                Ipv4Addr::from(base + offset).to_string()
            });
            self.ipam_create_endpoint(i, &network, ip);
        } else {
            let endpoints: Vec<String> = self.hosts[i]
                .core()
                .map(|c| {
                    c.state()
                        .endpoints
                        .values()
                        .filter(|e| e.network == network)
                        .map(|e| e.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            if endpoints.is_empty() {
                return;
            }
            let name = endpoints[self.ipam_rng.random_range(0..endpoints.len())].clone();
            let removed = self.call_core(i, |core, db, now| {
                if core.endpoint(&network, &name)?.sandbox.is_some() {
                    core.leave(db, &network, &name)?;
                }
                core.remove_endpoint(now, &network, &name)
            });
            match removed {
                Some(Ok(_)) => self.ipam.counters.removed += 1,
                Some(Err(e)) => self.violation("ipam", format!("node{i}: remove refused: {e}")),
                None => {}
            }
        }
        self.check_ipam();
    }

    /// Every live node creates `ipam_burst` endpoints at the same instant.
    pub(crate) fn ipam_burst(&mut self) {
        for i in 0..self.hosts.len() {
            let networks = self.ipam_networks_of(i);
            let Some(network) = networks.first().cloned() else {
                continue;
            };
            for _ in 0..self.opts.ipam_burst {
                self.ipam_create_endpoint(i, &network, None);
            }
        }
        self.check_ipam();
    }

    fn ipam_create_endpoint(&mut self, i: usize, network: &str, ip: Option<String>) {
        self.ipam.next_name += 1;
        let req = EndpointCreate {
            network: network.to_owned(),
            name: format!("e{}", self.ipam.next_name),
            ip,
            ..Default::default()
        };
        let join = self.ipam_rng.random_bool(0.5);
        let result = self.call_core(i, |core, db, now| {
            let started = core.create_endpoint(db, now, req)?;
            if let (true, Started::Done(e)) = (join, &started) {
                // A container starts on it: its records are published through the core.
                if core.sandbox(SANDBOX).is_err() {
                    core.create_sandbox(SandboxCreate {
                        name: SANDBOX.into(),
                        netns: "/run/netns/netsim".into(),
                        resolv_conf: None,
                        engine: None,
                    })?;
                }
                let req = nodecore::JoinRequest {
                    sandbox: SANDBOX.into(),
                    ifname: None,
                };
                core.join(db, &e.network, &e.name, &req)?;
            }
            Ok(started)
        });
        self.ipam_started(i, result.map(|r| r.map(|s| s.map(drop))));
    }

    fn ipam_create_network(&mut self, i: usize) {
        if self.ipam.counters.networks >= MAX_EXTRA_NETWORKS {
            return;
        }
        let n = self.ipam.counters.networks;
        self.ipam.counters.networks += 1;
        let req = NetworkCreate {
            name: format!("w{i}-{n}"),
            subnet: extra_subnet(n),
            ..Default::default()
        };
        let result = self.call_core(i, |core, db, now| core.create_network(db, now, req));
        self.ipam_started(i, result.map(|r| r.map(|s| s.map(drop))));
    }

    /// Books the start of an operation: done, waiting, or refused.
    fn ipam_started(&mut self, i: usize, result: Option<Result<Started<()>, CoreError>>) {
        match result {
            Some(Ok(Started::Done(()))) => self.ipam.counters.local += 1,
            Some(Ok(Started::Waiting(id))) => {
                let incarnation = self.hosts[i].incarnation;
                let at = self.now;
                self.ipam
                    .waiting
                    .insert((i, id), Waiting { incarnation, at });
            }
            Some(Err(e)) => {
                self.ipam.counters.refused += 1;
                if unexpected(&e) {
                    self.violation("ipam", format!("node{i}: request refused: {e}"));
                }
            }
            None => {}
        }
    }

    /// The `ipam` checker, run after every operation, answer and sample.
    pub(crate) fn check_ipam(&mut self) {
        if !self.opts.check_ipam {
            return;
        }
        let states: Vec<(usize, &LocalState)> = self
            .hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match h.core() {
                Some(core) => Some((i, core.state())),
                None if !h.gone => h.disk.as_ref().map(|d| (i, d)),
                None => None,
            })
            .collect();
        let mut found = duplicates(&states);
        let bound = nodecore::DEFAULT_ALLOCATION_TIMEOUT + ANSWER_SLACK;
        let now = self.now;
        let late: Vec<(usize, RequestId)> = self
            .ipam
            .waiting
            .iter()
            .filter(|((host, _), w)| {
                self.hosts[*host].incarnation == w.incarnation && now.saturating_sub(w.at) > bound
            })
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            self.ipam.waiting.remove(&key);
            found.push(format!(
                "node{}: request {:?} unanswered after {} s",
                key.0,
                key.1,
                bound.as_secs()
            ));
        }
        for detail in found {
            self.violation("ipam", detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(network: &str, name: &str, ip: [u8; 4]) -> nodecore::Endpoint {
        let ip = Ipv4Addr::from(ip);
        nodecore::Endpoint {
            id: format!("{network}-{name}"),
            name: name.into(),
            network: network.into(),
            network_id: network.into(),
            ip,
            prefix_len: 24,
            mac: overlay::Mac::from_ipv4(ip),
            service: None,
            aliases: Vec::new(),
            sandbox: None,
            ifname: None,
        }
    }

    /// The checker finds an address held twice (as it would if a core broke the rules).
    #[test]
    fn an_address_held_twice_is_reported() {
        let mut a = LocalState::default();
        let mut b = LocalState::default();
        a.endpoints
            .insert("1".into(), endpoint("net", "x", [198, 18, 0, 5]));
        b.endpoints
            .insert("2".into(), endpoint("net", "y", [198, 18, 0, 6]));
        assert!(duplicates(&[(0, &a), (1, &b)]).is_empty());
        b.endpoints
            .insert("3".into(), endpoint("net", "z", [198, 18, 0, 5]));
        let found = duplicates(&[(0, &a), (1, &b)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("198.18.0.5"), "{found:?}");
        // The same address in two networks is fine.
        b.endpoints
            .insert("4".into(), endpoint("other", "w", [198, 18, 0, 6]));
        assert_eq!(duplicates(&[(0, &a), (1, &b)]).len(), 1);
    }

    #[test]
    fn subnets_stay_in_the_benchmarking_range() {
        assert_eq!(subnet(0, 24), "198.18.0.0/24");
        assert_eq!(subnet(3, 24), "198.18.3.0/24");
        assert_eq!(subnet(1, 26), "198.18.1.0/26");
        assert_eq!(subnet(1, 22), "198.18.4.0/22");
    }
}
