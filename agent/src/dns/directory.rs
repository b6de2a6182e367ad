//! [`Directory`]: the service-discovery names of the networks this agent is attached to, and
//! which networks each sandbox resolves on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use discovery::{DiscoveryStats, Family, Lookup, NetworkRecords, ServiceDiscovery, ServiceTable};
use networkdb::{NetworkId, WatchEvent};

/// The agent's service-discovery state, written by the node core's feed (inside the node's
/// task) and read by every sandbox's DNS server. Cheap to clone; every clone is the same
/// directory.
///
/// It holds a [`ServiceDiscovery`] built from one stream of changes, the node core's
/// [`NamesChange`](nodecore::NamesChange)s: the networks it resolves on, every change of their
/// `endpoint_table` (the node's own writes included), the name of each network (PTR answers
/// are `<name>.<network>`, and `<name>.<network>` selects a network), and the networks of each
/// sandbox's joined endpoints.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    inner: Arc<RwLock<State>>,
    /// Woken at every change (the VIP balancers follow the directory).
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct State {
    sd: ServiceDiscovery,
    /// Network ID -> network name.
    network_names: HashMap<String, String>,
    /// Sandbox -> the IDs of its endpoints' networks, in resolution order.
    sandboxes: HashMap<String, Vec<String>>,
    /// Sandbox -> its network namespace.
    netns: HashMap<String, PathBuf>,
}

/// A write lock on the directory that wakes its waiters when released.
struct Changing<'a> {
    guard: RwLockWriteGuard<'a, State>,
    changed: &'a tokio::sync::Notify,
}

impl std::ops::Deref for Changing<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Changing<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        // Runs before the guard field is dropped: the waiter's read lock waits for it.
        self.changed.notify_one();
    }
}

/// The networks one sandbox resolves on: what its embedded DNS server asks.
#[derive(Clone, Debug)]
pub struct SandboxNames {
    directory: Directory,
    sandbox: String,
}

/// The networks named explicitly (the `dns lookup` API).
#[derive(Clone, Debug)]
pub struct NetworkNames {
    directory: Directory,
    networks: Vec<String>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state to change; waiters of [`changed`](Self::changed) wake once it is released.
    fn write(&self) -> Changing<'_> {
        Changing {
            guard: self.inner.write().unwrap_or_else(PoisonError::into_inner),
            changed: &self.changed,
        }
    }

    /// Waits for the next change after the last wait returned (a change made while nobody
    /// waited is not lost).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Sets each sandbox's network namespace (from the node core's sandboxes).
    pub fn set_sandbox_netns(&self, netns: HashMap<String, PathBuf>) {
        self.write().netns = netns;
    }

    /// Each sandbox with an endpoint joined, its namespace, and the VIPs its balancer must
    /// serve: the services of its networks ([`ServiceTable::union`] of each network's
    /// [`ServiceDiscovery::services`](discovery::ServiceDiscovery::services)). A sandbox on
    /// one network shares that network's table, rebuilt only when its backends change.
    pub fn sandbox_services(&self) -> Vec<(String, PathBuf, ServiceTable)> {
        let state = self.read();
        state
            .sandboxes
            .iter()
            .filter_map(|(sandbox, networks)| {
                let netns = state.netns.get(sandbox)?;
                let table =
                    ServiceTable::union(networks.iter().filter_map(|id| state.sd.services(id)));
                Some((sandbox.clone(), netns.clone(), table))
            })
            .collect()
    }

    /// Applies one change of the node core's service-discovery feed.
    pub fn apply_change(&self, change: &nodecore::NamesChange) {
        match change {
            nodecore::NamesChange::Attach(network) => {
                self.write().sd.attach(&NetworkId::from(network.as_str()));
            }
            nodecore::NamesChange::Detach(network) => self.detach(network),
            nodecore::NamesChange::Record(event) => self.apply(event),
            nodecore::NamesChange::Topology {
                networks,
                sandboxes,
            } => self.set_topology(
                networks.clone().into_iter().collect(),
                sandboxes.clone().into_iter().collect(),
            ),
        }
    }

    /// Applies an `endpoint_table` watch event (another node's record).
    pub fn apply(&self, event: &WatchEvent) {
        if self.write().sd.apply(event) {
            tracing::debug!(network = %event.network, key = %event.key, "service discovery updated");
        }
    }

    /// The node left `network`: its names are dropped.
    pub fn detach(&self, network: &str) {
        self.write().sd.detach(&NetworkId::from(network));
    }

    /// Replaces the network names and the sandboxes' networks (from the CNM's local state).
    pub fn set_topology(
        &self,
        network_names: HashMap<String, String>,
        sandboxes: HashMap<String, Vec<String>>,
    ) {
        let mut state = self.write();
        state.network_names = network_names;
        state.sandboxes = sandboxes;
    }

    /// What a sandbox's DNS server resolves on.
    pub fn sandbox(&self, sandbox: &str) -> SandboxNames {
        SandboxNames {
            directory: self.clone(),
            sandbox: sandbox.to_owned(),
        }
    }

    /// Resolution on explicit networks, by ID, in order.
    pub fn networks(&self, networks: Vec<String>) -> NetworkNames {
        NetworkNames {
            directory: self.clone(),
            networks,
        }
    }

    /// The service-discovery counters.
    pub fn stats(&self) -> DiscoveryStats {
        self.read().sd.stats()
    }

    /// Runs `f` on the scope of `which`: (network name, records) for each attached network
    /// of it, in order. Borrows everything (no copy per query).
    fn with_scope<R>(
        &self,
        which: Which<'_>,
        f: impl FnOnce(&[(&str, &NetworkRecords)]) -> R,
    ) -> R {
        let state = self.read();
        let ids: &[String] = match which {
            Which::Sandbox(sandbox) => state.sandboxes.get(sandbox).map_or(&[], Vec::as_slice),
            Which::Networks(ids) => ids,
        };
        let scope: Vec<(&str, &NetworkRecords)> = ids
            .iter()
            .filter_map(|id| {
                let records = state.sd.network(id)?;
                let name = state
                    .network_names
                    .get(id)
                    .map_or(id.as_str(), String::as_str);
                Some((name, records))
            })
            .collect();
        f(&scope)
    }
}

/// Whose networks a lookup runs on.
enum Which<'a> {
    /// The networks of this sandbox's joined endpoints.
    Sandbox(&'a str),
    /// These network IDs.
    Networks(&'a [String]),
}

impl crate::dns::server::Names for SandboxNames {
    fn resolve(&self, name: &str, family: Family) -> Lookup {
        self.directory
            .with_scope(Which::Sandbox(&self.sandbox), |scope| {
                discovery::resolve(scope, name, family)
            })
    }

    fn reverse(&self, ip: IpAddr) -> Option<String> {
        self.directory
            .with_scope(Which::Sandbox(&self.sandbox), |scope| {
                discovery::reverse(scope, ip)
            })
    }
}

impl crate::dns::server::Names for NetworkNames {
    fn resolve(&self, name: &str, family: Family) -> Lookup {
        self.directory
            .with_scope(Which::Networks(&self.networks), |scope| {
                discovery::resolve(scope, name, family)
            })
    }

    fn reverse(&self, ip: IpAddr) -> Option<String> {
        self.directory
            .with_scope(Which::Networks(&self.networks), |scope| {
                discovery::reverse(scope, ip)
            })
    }
}
