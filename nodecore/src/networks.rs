//! Networks: the cluster-wide catalogue, creation (with a VNI from the VNI pool) and removal.

use std::time::Instant;

use bytes::Bytes;
use ipam::{Allocation, IpamError, Request};
use networkdb::NetworkDb;

use crate::addressing::{self, FIRST_AUTO_VNI};
use crate::catalogue::{self, GLOBAL_NETWORK, NETWORKS_TABLE};
use crate::event::{Answer, Started};
use crate::model::{DRIVER_OVERLAY, NetworkCreate, NetworkSpec, check_name};
use crate::pending::Draft;
use crate::state::{KnownNetwork, VNI_POOL};
use crate::{CoreError, NodeCore};

impl NodeCore {
    /// Drops this node's copy of a network it neither created nor uses any more (no
    /// endpoint, no reservation); a network this node created and the catalogue removed gives
    /// its VNI back then.
    pub(crate) fn forget_unused_network(&mut self, now: Instant, network_id: &str) {
        let unused = self.state.endpoints_on(network_id).next().is_none()
            && !self.state.reserved.contains_key(network_id);
        if unused
            && let Some(known) = self.state.networks.get(network_id)
            && (!known.created_here || known.removed)
        {
            if known.created_here {
                let vni = known.spec.vni;
                self.pools.release(now, crate::VNI_POOL, vni);
            }
            self.state.networks.remove(network_id);
        }
    }

    /// The catalogue as this node sees it, with the live networks it knows that the
    /// catalogue lacks (its owner is away), sorted by name.
    pub fn networks(&self, db: &NetworkDb) -> Vec<NetworkSpec> {
        let mut specs = catalogue::list(db);
        for spec in self.state.live_networks() {
            if !specs.iter().any(|s| s.id == spec.id) {
                specs.push(spec.clone());
            }
        }
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }

    /// A network by name, ID or unique ID prefix.
    pub fn network(&self, db: &NetworkDb, reference: &str) -> Result<NetworkSpec, CoreError> {
        let specs = self.networks(db);
        catalogue::resolve(&specs, reference).cloned()
    }

    /// Who owns a network's address blocks, in this node's replica.
    pub fn pool(&self, db: &NetworkDb, reference: &str) -> Result<crate::PoolInfo, CoreError> {
        let spec = self.network(db, reference)?;
        let owners = self.pool_owners(&spec.id).ok_or_else(|| {
            CoreError::NotFound(format!("no address pool of network {} here", spec.name))
        })?;
        let blocks: u32 = owners.values().sum();
        let hosts = 1u32 << (32 - u32::from(spec.subnet.prefix_len()));
        Ok(crate::PoolInfo {
            network: spec.name,
            subnet: spec.subnet,
            block_size: hosts / blocks.max(1),
            owners,
        })
    }

    /// Creates a network in the catalogue. Its VNI (unless given) comes from the VNI pool:
    /// at once when this node owns free VNIs, else the answer waits for another node.
    pub fn create_network(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        req: NetworkCreate,
    ) -> Result<Started<NetworkSpec>, CoreError> {
        check_name("network", &req.name)?;
        let driver = req.driver.as_deref().unwrap_or(DRIVER_OVERLAY);
        if driver != DRIVER_OVERLAY {
            // libnetwork's wording for a driver it cannot find.
            return Err(CoreError::Invalid(format!(
                "could not find plugin {driver} in v1 plugin registry: plugin not found"
            )));
        }
        let subnet = addressing::parse_subnet(&req.subnet)?;
        let vni = req.vni.map(addressing::check_vni).transpose()?;
        let specs = self.networks(db);
        check_new_network(&specs, &req.name, subnet, vni)?;
        if self.pending.network_named(&req.name) {
            return Err(exists(&req.name));
        }
        self.ensure_pools(db, now);
        let spec = NetworkSpec {
            name: req.name,
            id: self.random_id(),
            driver: DRIVER_OVERLAY.to_owned(),
            subnet,
            gateway: addressing::gateway(subnet),
            vni: vni.unwrap_or(0),
            created_by: self.settings.node_name.clone(),
        };
        let request = match vni {
            Some(v) if v < FIRST_AUTO_VNI => None,
            Some(v) => Some(Request::Value(v)),
            None => Some(Request::Any),
        };
        let Some(request) = request else {
            return Ok(Started::Done(self.finish_network(db, now, spec)));
        };
        if !self.pools.contains(VNI_POOL) {
            // Without the pool a VNI of its range cannot be claimed, given or not.
            return Err(CoreError::Unavailable(format!(
                "no VNI: this node does not know the cluster's founder (the origin of the VNI \
                 pool) yet; retry once it is connected to the cluster, or give a VNI below \
                 {FIRST_AUTO_VNI}"
            )));
        }
        if self.stats.founder_conflicts > 0 && vni.is_none() {
            return Err(CoreError::Unavailable(
                "no automatic VNI: two cluster founders were seen (two clusters joined \
                 together), so VNIs of the pool could be given twice; give a VNI"
                    .into(),
            ));
        }
        let allocation = self
            .pools
            .allocate(now, VNI_POOL, request)
            .unwrap_or(Err(IpamError::Exhausted { capacity: 0 }));
        self.drain_pools(db, now);
        match allocation {
            Ok(Allocation::Done(v)) => {
                self.stats.answered_at_once += 1;
                Ok(Started::Done(self.finish_network(
                    db,
                    now,
                    NetworkSpec { vni: v, ..spec },
                )))
            }
            Ok(Allocation::Pending(ticket)) => {
                self.stats.waited += 1;
                let deadline = now + self.settings.allocation_timeout;
                let request = self
                    .pending
                    .wait(VNI_POOL, ticket, deadline, Draft::Network(spec));
                Ok(Started::Waiting(request))
            }
            Err(e) => Err(vni_error(&e)),
        }
    }

    /// Publishes a network whose VNI is settled.
    pub(crate) fn finish_network(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        spec: NetworkSpec,
    ) -> NetworkSpec {
        self.state.networks.insert(
            spec.id.clone(),
            KnownNetwork {
                spec: spec.clone(),
                created_here: true,
                removed: false,
            },
        );
        self.commit();
        self.put(
            NETWORKS_TABLE,
            GLOBAL_NETWORK,
            &spec.name,
            Bytes::from(catalogue::encode(&spec)),
        );
        self.ensure_pools(db, now);
        spec
    }

    /// A network whose VNI came (or was refused) after a wait.
    pub(crate) fn network_allocated(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        spec: NetworkSpec,
        vni: Result<u32, IpamError>,
    ) -> Answer {
        let result = match vni {
            Ok(v) => {
                let specs = self.networks(db);
                match check_new_network(&specs, &spec.name, spec.subnet, None) {
                    Ok(()) => Ok(self.finish_network(db, now, NetworkSpec { vni: v, ..spec })),
                    Err(e) => {
                        self.pools.release(now, VNI_POOL, v);
                        Err(e)
                    }
                }
            }
            Err(e) => Err(vni_error(&e)),
        };
        Answer::Network(result)
    }

    /// Removes a network from the catalogue. Refused while this node or any other live node
    /// has endpoints on it: a node attaches to a network's NetworkDB network with its first
    /// endpoint there and leaves with its last, and attachments are known cluster-wide.
    pub fn remove_network(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        reference: &str,
    ) -> Result<NetworkSpec, CoreError> {
        let spec = self.network(db, reference)?;
        if self.state.endpoints_on(&spec.id).next().is_some() {
            return Err(CoreError::Conflict(format!(
                "network {} has active endpoints",
                spec.name
            )));
        }
        let me = db.name().clone();
        let remote: Vec<String> = db
            .peers(&spec.id)
            .into_iter()
            .filter(|p| p.name != me)
            .map(|p| p.name.to_string())
            .collect();
        if !remote.is_empty() {
            return Err(CoreError::Conflict(format!(
                "network {} has active endpoints on {}",
                spec.name,
                remote.join(", ")
            )));
        }
        if db
            .get_entry(NETWORKS_TABLE, GLOBAL_NETWORK, &spec.name)
            .is_err()
            && !self.state.networks.contains_key(&spec.id)
        {
            return Err(CoreError::NoSuchNetwork(format!(
                "network {reference} not found"
            )));
        }
        self.delete(NETWORKS_TABLE, GLOBAL_NETWORK, &spec.name);
        self.forget_network(db, now, &spec);
        Ok(spec)
    }

    /// Drops a network this node has no endpoint on: its VNI (if this node holds it), its
    /// address pool and its state.
    pub(crate) fn forget_network(&mut self, db: &NetworkDb, now: Instant, spec: &NetworkSpec) {
        self.absent_since.remove(&spec.id);
        self.pools.release(now, VNI_POOL, spec.vni);
        self.state.networks.remove(&spec.id);
        self.commit();
        self.drop_pool(db, &spec.id);
        self.drain_pools(db, now);
    }
}

/// Refuses a new network whose name, VNI or subnet collides with a known one.
pub(crate) fn check_new_network(
    specs: &[NetworkSpec],
    name: &str,
    subnet: ipnet::Ipv4Net,
    vni: Option<u32>,
) -> Result<(), CoreError> {
    if specs.iter().any(|s| s.name == name) {
        return Err(exists(name));
    }
    if let Some(vni) = vni
        && let Some(s) = specs.iter().find(|s| s.vni == vni)
    {
        return Err(CoreError::Conflict(format!(
            "VNI {vni} is already used by network {}",
            s.name
        )));
    }
    if let Some(s) = specs
        .iter()
        .find(|s| s.subnet.contains(&subnet.network()) || subnet.contains(&s.subnet.network()))
    {
        return Err(CoreError::Conflict(format!(
            "subnet {subnet} overlaps with subnet {} of network {}",
            s.subnet, s.name
        )));
    }
    Ok(())
}

fn exists(name: &str) -> CoreError {
    CoreError::Conflict(format!("network with name {name} already exists"))
}

fn vni_error(e: &IpamError) -> CoreError {
    match e {
        IpamError::Taken(v) => CoreError::Conflict(format!("VNI {v} is already in use")),
        IpamError::Exhausted { .. } => {
            CoreError::Conflict("no free VNI left for a new network".into())
        }
        IpamError::OwnerUnreachable { value, owner } => CoreError::Unavailable(format!(
            "VNI {value} cannot be claimed: the owner of its block, {owner}, is not reachable"
        )),
        other => CoreError::Invalid(format!("VNI: {other}")),
    }
}
