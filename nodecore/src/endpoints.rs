//! Endpoints: creation with an address from the network's pool, removal, join and leave of a
//! sandbox (publishing and withdrawing the records), and draining a service task.

use std::net::Ipv4Addr;
use std::time::Instant;

use ipam::{Allocation, IpamError, Request};
use ipnet::Ipv4Net;
use networkdb::NetworkDb;
use overlay::Mac;

use crate::addressing;
use crate::catalogue;
use crate::event::{Answer, Started};
use crate::model::{
    DEFAULT_IFNAME, Endpoint, EndpointCreate, Engine, JoinRequest, NetworkSpec, Sandbox,
    ServiceInfo, check_aliases, check_ifname, check_name,
};
use crate::pending::Draft;
use crate::records::service_id;
use crate::state::KnownNetwork;
use crate::{CoreError, NodeCore};

/// What the overlay driver needs to attach a joining endpoint: run it before
/// [`NodeCore::join`] publishes the records (libnetwork: dataplane ready, then publish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinPlan {
    /// The network's ID.
    pub network_id: String,
    /// The network's VNI.
    pub vni: u32,
    /// The gateway with the subnet's prefix length.
    pub gateway: Ipv4Net,
    /// The endpoint's address with the subnet's prefix length.
    pub addr: Ipv4Net,
    /// The endpoint's MAC.
    pub mac: Mac,
    /// The interface's name in the sandbox; `None` in a Docker sandbox (dockerd names it).
    pub ifname: Option<String>,
    /// The sandbox.
    pub sandbox: Sandbox,
}

impl JoinPlan {
    /// Whether the interface carries the sandbox's default route (via the network's
    /// gateway): only a sandbox the agent configures has one, on its `eth0`. A CNI runtime's
    /// and Docker's containers have none: the overlay leads nowhere outside the cluster,
    /// and their other networks may.
    pub fn default_route(&self) -> bool {
        self.sandbox.engine.is_none() && self.sandbox_ifname() == DEFAULT_IFNAME
    }

    /// The interface's name in a sandbox the agent configures (`ifname`, else
    /// [`DEFAULT_IFNAME`]).
    pub fn sandbox_ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or(DEFAULT_IFNAME)
    }
}

impl NodeCore {
    /// This node's endpoints, on one network (by name or ID) or on all, sorted by network
    /// and name.
    pub fn endpoints(
        &self,
        db: &NetworkDb,
        network: Option<&str>,
    ) -> Result<Vec<Endpoint>, CoreError> {
        let filter = match network {
            Some(reference) => match self.local_network(reference) {
                Ok(spec) => Some(spec.id.clone()),
                // A network of the catalogue this node has no endpoint on: an empty list.
                Err(e) if e.is_not_found() => Some(self.network(db, reference)?.id),
                Err(e) => return Err(e),
            },
            None => None,
        };
        let mut list: Vec<Endpoint> = self
            .state
            .endpoints
            .values()
            .filter(|e| filter.as_ref().is_none_or(|id| &e.network_id == id))
            .cloned()
            .collect();
        list.sort_by(|a, b| (&a.network, &a.name).cmp(&(&b.network, &b.name)));
        Ok(list)
    }

    /// One endpoint by network (name or ID) and name.
    pub fn endpoint(&self, network: &str, name: &str) -> Result<&Endpoint, CoreError> {
        let not_found =
            || CoreError::NotFound(format!("endpoint {name} not found in network {network}"));
        let spec = self.local_network(network).map_err(|e| match e {
            e if e.is_not_found() => not_found(),
            other => other,
        })?;
        self.state.endpoint(&spec.id, name).ok_or_else(not_found)
    }

    /// A network this node knows, by name, ID or ID prefix; live ones win over removed ones
    /// of the same name.
    pub fn local_network(&self, reference: &str) -> Result<&NetworkSpec, CoreError> {
        let ordered: Vec<&NetworkSpec> = self
            .state
            .live_networks()
            .chain(
                self.state
                    .networks
                    .values()
                    .filter(|k| k.removed)
                    .map(|k| &k.spec),
            )
            .collect();
        catalogue::resolve(ordered.iter().copied(), reference)
    }

    /// Creates an endpoint on a network of the catalogue, with an address from the
    /// network's pool: at once when this node owns free addresses there, else the answer
    /// waits for another node. Attaches the node to the network with its first endpoint.
    pub fn create_endpoint(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        req: EndpointCreate,
    ) -> Result<Started<Endpoint>, CoreError> {
        check_name("endpoint", &req.name)?;
        check_aliases(&req.aliases)?;
        let ip = req
            .ip
            .as_deref()
            .map(|t| addressing::parse_ip(t, "address"))
            .transpose()?;
        let mac = req.mac.as_deref().map(parse_mac).transpose()?;
        let service = match &req.service {
            Some(s) => {
                check_name("service", &s.name)?;
                check_aliases(&s.aliases)?;
                let vip = s
                    .vip
                    .as_deref()
                    .map(|t| addressing::parse_ip(t, "virtual IP"))
                    .transpose()?;
                Some((s.name.clone(), vip, s.aliases.clone()))
            }
            None => None,
        };
        let specs = self.networks(db);
        let spec = catalogue::resolve(&specs, &req.network)?.clone();
        if self.state.endpoint(&spec.id, &req.name).is_some()
            || self.pending.endpoint_named(&spec.id, &req.name)
        {
            return Err(CoreError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                req.name, spec.name
            )));
        }
        let users = catalogue::addresses_in_use(db, &spec.id);
        let vip = self.check_service(&spec, &users, service.as_ref())?;
        if let Some(mac) = &mac
            && self.state.endpoints_on(&spec.id).any(|e| e.mac == *mac)
        {
            return Err(CoreError::Conflict(format!(
                "MAC address {mac} is already in use on network {}",
                spec.name
            )));
        }
        if let Some(ip) = ip
            && self.is_reserved(&spec.id, ip)
        {
            // An address this node reserved for the engine creating the endpoint: held already.
            addressing::check_address(spec.subnet, ip, "address")?;
            if self.state.endpoints_on(&spec.id).any(|e| e.ip == ip) || vip == Some(ip) {
                return Err(taken());
            }
            self.ensure_pools(db, now);
            self.stats.answered_at_once += 1;
            let endpoint = self.new_endpoint(&spec, req.name, mac, service, req.aliases);
            let endpoint =
                self.finish_endpoint(now, endpoint, &spec, mac.is_some(), u32::from(ip))?;
            self.attach(db, &spec.id);
            return Ok(Started::Done(endpoint));
        }
        let request = match ip {
            Some(ip) => {
                addressing::check_address(spec.subnet, ip, "address")?;
                if self.address_used_here(&spec.id, ip)
                    || users.all().contains(&ip)
                    || vip == Some(ip)
                {
                    return Err(taken());
                }
                Request::Value(u32::from(ip))
            }
            None => Request::Any,
        };
        let endpoint = self.new_endpoint(&spec, req.name, mac, service, req.aliases);
        match self.allocate_address(db, now, &spec.id, request) {
            Ok(Allocation::Done(v)) => {
                self.stats.answered_at_once += 1;
                let endpoint = self.finish_endpoint(now, endpoint, &spec, mac.is_some(), v)?;
                // libnetwork joins a network's NetworkDB network once it has a container on
                // it.
                self.attach(db, &spec.id);
                Ok(Started::Done(endpoint))
            }
            Ok(Allocation::Pending(ticket)) => {
                self.stats.waited += 1;
                let deadline = now + self.settings.allocation_timeout;
                let draft = Draft::Endpoint {
                    endpoint: Box::new(endpoint),
                    spec: spec.clone(),
                    mac_given: mac.is_some(),
                };
                Ok(Started::Waiting(
                    self.pending.wait(&spec.id, ticket, deadline, draft),
                ))
            }
            Err(e) => Err(address_error(&spec, &e)),
        }
    }

    /// Allocates in the address pool of network `network_id` (started if need be), and
    /// sends what the allocation asks of other nodes.
    pub(crate) fn allocate_address(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        network_id: &str,
        request: Request,
    ) -> Result<Allocation, IpamError> {
        self.ensure_pools(db, now);
        let allocation = self
            .pools
            .allocate(now, network_id, request)
            .unwrap_or(Err(IpamError::Exhausted { capacity: 0 }));
        self.drain_pools(db, now);
        allocation
    }

    /// An endpoint of `spec` complete but for its address.
    fn new_endpoint(
        &mut self,
        spec: &NetworkSpec,
        name: String,
        mac: Option<Mac>,
        service: Option<(String, Option<Ipv4Addr>, Vec<String>)>,
        aliases: Vec<String>,
    ) -> Endpoint {
        Endpoint {
            id: self.random_id(),
            name,
            network: spec.name.clone(),
            network_id: spec.id.clone(),
            ip: Ipv4Addr::UNSPECIFIED,
            prefix_len: spec.subnet.prefix_len(),
            mac: mac.unwrap_or_default(),
            service: service.map(|(name, vip, aliases)| ServiceInfo {
                id: service_id(&spec.id, &name),
                name,
                vip,
                aliases,
                disabled: false,
            }),
            aliases,
            sandbox: None,
            ifname: None,
        }
    }

    /// Checks a service task's VIP: every task of a service on a network shares its VIP, or
    /// none has one; a VIP is used by no endpoint and no other service.
    fn check_service(
        &self,
        spec: &NetworkSpec,
        users: &catalogue::AddressUsers,
        service: Option<&(String, Option<Ipv4Addr>, Vec<String>)>,
    ) -> Result<Option<Ipv4Addr>, CoreError> {
        let Some((service_name, vip, _)) = service else {
            return Ok(None);
        };
        let mut settings = users
            .services
            .get(service_name)
            .cloned()
            .unwrap_or_default();
        settings.extend(self.state.endpoints_on(&spec.id).filter_map(|e| {
            e.service
                .as_ref()
                .filter(|s| s.name == *service_name)
                .map(|s| s.vip)
        }));
        if let Some(other) = settings.iter().find(|v| *v != vip) {
            let other =
                other.map_or_else(|| "no virtual IP".to_owned(), |v| format!("virtual IP {v}"));
            return Err(CoreError::Conflict(format!(
                "service {service_name} has {other} on network {}: its tasks share one setting",
                spec.name
            )));
        }
        let Some(vip) = vip else {
            return Ok(None);
        };
        addressing::check_address(spec.subnet, *vip, "virtual IP")?;
        let local_endpoint = self.state.endpoints_on(&spec.id).any(|e| e.ip == *vip);
        let other_local_service = self.state.endpoints_on(&spec.id).any(|e| {
            e.service
                .as_ref()
                .is_some_and(|s| s.vip == Some(*vip) && s.name != *service_name)
        });
        let other_remote_service = users
            .vips
            .get(vip)
            .is_some_and(|services| services.iter().any(|s| s != service_name));
        let held_here = self
            .pools
            .get(&spec.id)
            .is_some_and(|a| a.held().contains(&u32::from(*vip)));
        if local_endpoint
            || users.endpoints.contains(vip)
            || other_local_service
            || other_remote_service
            || (held_here
                && !self
                    .state
                    .endpoints_on(&spec.id)
                    .any(|e| e.service.as_ref().is_some_and(|s| s.vip == Some(*vip))))
        {
            return Err(CoreError::Conflict(format!(
                "virtual IP {vip} is already in use"
            )));
        }
        Ok(Some(*vip))
    }

    /// Records an endpoint whose address is settled.
    fn finish_endpoint(
        &mut self,
        now: Instant,
        mut endpoint: Endpoint,
        spec: &NetworkSpec,
        mac_given: bool,
        value: u32,
    ) -> Result<Endpoint, CoreError> {
        let ip = Ipv4Addr::from(value);
        if self.state.endpoint(&spec.id, &endpoint.name).is_some() {
            if !self.is_reserved(&spec.id, ip) {
                self.pools.release(now, &spec.id, value);
            }
            return Err(CoreError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                endpoint.name, spec.name
            )));
        }
        endpoint.ip = ip;
        if !mac_given {
            endpoint.mac = Mac::from_ipv4(ip);
        }
        let created_here = self
            .state
            .networks
            .get(&spec.id)
            .is_some_and(|k| k.created_here);
        self.state.networks.insert(
            spec.id.clone(),
            KnownNetwork {
                spec: spec.clone(),
                created_here,
                removed: false,
            },
        );
        self.state
            .endpoints
            .insert(endpoint.id.clone(), endpoint.clone());
        self.commit();
        Ok(endpoint)
    }

    /// An endpoint whose address came (or was refused) after a wait.
    pub(crate) fn endpoint_allocated(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        endpoint: Endpoint,
        spec: &NetworkSpec,
        mac_given: bool,
        value: Result<u32, IpamError>,
    ) -> Answer {
        let result = match value {
            Ok(v) => {
                let done = self.finish_endpoint(now, endpoint, spec, mac_given, v);
                if done.is_ok() {
                    self.attach(db, &spec.id);
                }
                done
            }
            Err(e) => Err(address_error(spec, &e)),
        };
        Answer::Endpoint(result)
    }

    /// Removes an endpoint that is not joined and gives its address back; detaches the node
    /// from the network's NetworkDB network when it was the last one there.
    pub fn remove_endpoint(
        &mut self,
        now: Instant,
        network: &str,
        name: &str,
    ) -> Result<Endpoint, CoreError> {
        let endpoint = self.endpoint(network, name)?.clone();
        if let Some(sandbox) = &endpoint.sandbox {
            return Err(CoreError::Conflict(format!(
                "endpoint {} is joined to sandbox {sandbox}; leave first",
                endpoint.name
            )));
        }
        self.state.endpoints.remove(&endpoint.id);
        if !self.is_reserved(&endpoint.network_id, endpoint.ip) {
            self.pools
                .release(now, &endpoint.network_id, u32::from(endpoint.ip));
        }
        let last = self
            .state
            .endpoints_on(&endpoint.network_id)
            .next()
            .is_none();
        self.forget_unused_network(now, &endpoint.network_id);
        self.commit();
        if last {
            self.detach(&endpoint.network_id);
        }
        Ok(endpoint)
    }

    /// Checks that an endpoint may join a sandbox (as `req` asks) and says what the overlay
    /// driver must do first. Changes nothing.
    pub fn join_plan(
        &self,
        network: &str,
        name: &str,
        req: &JoinRequest,
    ) -> Result<JoinPlan, CoreError> {
        let endpoint = self.endpoint(network, name)?;
        let Some(sb) = self.state.sandboxes.get(&req.sandbox) else {
            return Err(sandbox_not_found(&req.sandbox));
        };
        if let Some(current) = &endpoint.sandbox {
            return Err(CoreError::Conflict(format!(
                "endpoint {} is already joined to sandbox {current}",
                endpoint.name
            )));
        }
        let Some(known) = self.state.networks.get(&endpoint.network_id) else {
            return Err(CoreError::NoSuchNetwork(format!(
                "network {} not found",
                endpoint.network
            )));
        };
        if known.removed {
            return Err(CoreError::Conflict(format!(
                "network {} was removed from the cluster; endpoint {} can only leave and be removed",
                endpoint.network, endpoint.name
            )));
        }
        let ifname = self.ifname_for(sb, req.ifname.as_deref())?;
        let joining = Endpoint {
            ifname,
            ..endpoint.clone()
        };
        plan(&known.spec, &joining, sb)
    }

    /// The join plans of every joined endpoint: what a restarted node's overlay driver
    /// restores before the records are published again.
    pub fn joined_plans(&self) -> Vec<JoinPlan> {
        self.state
            .endpoints
            .values()
            .filter_map(|e| {
                let sb = self.state.sandboxes.get(e.sandbox.as_deref()?)?;
                let known = self.state.networks.get(&e.network_id)?;
                plan(&known.spec, e, sb).ok()
            })
            .collect()
    }

    /// Joins an endpoint to a sandbox and publishes its records (run the overlay driver's
    /// [`join_plan`](Self::join_plan) first).
    pub fn join(
        &mut self,
        db: &NetworkDb,
        network: &str,
        name: &str,
        req: &JoinRequest,
    ) -> Result<Endpoint, CoreError> {
        let plan = self.join_plan(network, name, req)?;
        let mut joined = self.endpoint(network, name)?.clone();
        joined.ifname = plan.ifname;
        joined.sandbox = Some(req.sandbox.clone());
        self.state
            .endpoints
            .insert(joined.id.clone(), joined.clone());
        self.commit();
        self.sync_records(db, &joined.network_id);
        Ok(joined)
    }

    /// The name a joining endpoint's interface gets in `sb`: the one asked for (refused
    /// when another endpoint of the sandbox has it), else the first free `eth<k>`; `None` in
    /// a Docker sandbox, where dockerd names interfaces.
    fn ifname_for(&self, sb: &Sandbox, asked: Option<&str>) -> Result<Option<String>, CoreError> {
        if sb.engine == Some(Engine::Docker) {
            return match asked {
                Some(_) => Err(CoreError::Invalid(format!(
                    "sandbox {} is Docker's: dockerd names its interfaces",
                    sb.name
                ))),
                None => Ok(None),
            };
        }
        let taken = |ifname: &str| {
            self.state.endpoints.values().find(|e| {
                e.sandbox.as_deref() == Some(sb.name.as_str()) && e.sandbox_ifname() == ifname
            })
        };
        match asked {
            Some(ifname) => {
                check_ifname(ifname)?;
                match taken(ifname) {
                    Some(other) => Err(CoreError::Conflict(format!(
                        "interface {ifname} of sandbox {} is endpoint {}'s (network {}): give another interface name",
                        sb.name, other.name, other.network
                    ))),
                    None => Ok(Some(ifname.to_owned())),
                }
            }
            None => Ok((0..)
                .map(|k| format!("eth{k}"))
                .find(|n| taken(n).is_none())),
        }
    }

    /// Checks that an endpoint may leave its sandbox. Changes nothing.
    pub fn check_leave(&self, network: &str, name: &str) -> Result<&Endpoint, CoreError> {
        let endpoint = self.endpoint(network, name)?;
        if endpoint.sandbox.is_none() {
            return Err(CoreError::Conflict(format!(
                "endpoint {} is not joined to a sandbox",
                endpoint.name
            )));
        }
        Ok(endpoint)
    }

    /// Leaves an endpoint's sandbox: withdraws its records (run the overlay driver's leave
    /// first: libnetwork tears the dataplane down, then withdraws).
    pub fn leave(
        &mut self,
        db: &NetworkDb,
        network: &str,
        name: &str,
    ) -> Result<Endpoint, CoreError> {
        let mut left = self.check_leave(network, name)?.clone();
        left.sandbox = None;
        left.ifname = None;
        self.state.endpoints.insert(left.id.clone(), left.clone());
        self.commit();
        self.sync_records(db, &left.network_id);
        Ok(left)
    }

    /// Disables (drains) or enables again a service task: its record is republished with
    /// `service_disabled` set or cleared (libnetwork `DisableService` / `EnableService`).
    pub fn set_service_enabled(
        &mut self,
        db: &NetworkDb,
        network: &str,
        name: &str,
        enabled: bool,
    ) -> Result<Endpoint, CoreError> {
        let endpoint = self.endpoint(network, name)?.clone();
        let Some(service) = &endpoint.service else {
            return Err(CoreError::Conflict(format!(
                "endpoint {} is not a task of a service",
                endpoint.name
            )));
        };
        if service.disabled != enabled {
            return Ok(endpoint);
        }
        let changed = Endpoint {
            service: Some(ServiceInfo {
                disabled: !enabled,
                ..service.clone()
            }),
            ..endpoint
        };
        Ok(self.replace_endpoint(db, changed))
    }

    /// Renames an endpoint and replaces its container-level aliases (a container engine
    /// that tells names only after the join); a joined endpoint publishes its records again
    /// with them. The new name is unique among this node's endpoints on the network.
    pub fn set_names(
        &mut self,
        db: &NetworkDb,
        network: &str,
        name: &str,
        new_name: &str,
        aliases: Vec<String>,
    ) -> Result<Endpoint, CoreError> {
        check_name("endpoint", new_name)?;
        check_aliases(&aliases)?;
        let endpoint = self.endpoint(network, name)?.clone();
        if endpoint.name == new_name && endpoint.aliases == aliases {
            return Ok(endpoint);
        }
        if endpoint.name != new_name
            && (self
                .state
                .endpoint(&endpoint.network_id, new_name)
                .is_some()
                || self.pending.endpoint_named(&endpoint.network_id, new_name))
        {
            return Err(CoreError::Conflict(format!(
                "endpoint with name {new_name} already exists in network {}",
                endpoint.network
            )));
        }
        let changed = Endpoint {
            name: new_name.to_owned(),
            aliases,
            ..endpoint
        };
        Ok(self.replace_endpoint(db, changed))
    }

    /// Stores a changed endpoint; a joined one publishes its records again.
    fn replace_endpoint(&mut self, db: &NetworkDb, changed: Endpoint) -> Endpoint {
        self.state
            .endpoints
            .insert(changed.id.clone(), changed.clone());
        self.commit();
        self.sync_records(db, &changed.network_id);
        changed
    }
}

fn plan(spec: &NetworkSpec, endpoint: &Endpoint, sb: &Sandbox) -> Result<JoinPlan, CoreError> {
    let (Ok(gateway), Ok(addr)) = (
        Ipv4Net::new(spec.gateway, spec.subnet.prefix_len()),
        Ipv4Net::new(endpoint.ip, endpoint.prefix_len),
    ) else {
        return Err(CoreError::Invalid(format!(
            "endpoint {}: invalid prefix length",
            endpoint.name
        )));
    };
    Ok(JoinPlan {
        network_id: endpoint.network_id.clone(),
        vni: spec.vni,
        gateway,
        addr,
        mac: endpoint.mac,
        ifname: endpoint.ifname.clone(),
        sandbox: sb.clone(),
    })
}

pub(crate) fn sandbox_not_found(name: &str) -> CoreError {
    CoreError::NotFound(format!("sandbox {name} not found"))
}

pub(crate) fn taken() -> CoreError {
    CoreError::AddressInUse("Address already in use".into())
}

pub(crate) fn address_error(spec: &NetworkSpec, e: &IpamError) -> CoreError {
    match e {
        IpamError::Taken(_) => taken(),
        IpamError::Exhausted { capacity } => CoreError::PoolExhausted(format!(
            "no available IPv4 addresses on network {} ({}, {capacity} addresses): all are in \
             use or owned by unreachable nodes",
            spec.name, spec.subnet
        )),
        IpamError::OwnerUnreachable { value, owner } => CoreError::Unavailable(format!(
            "address {} cannot be claimed: the owner of its block, {owner}, is not reachable",
            Ipv4Addr::from(*value)
        )),
        other => CoreError::Invalid(format!("address: {other}")),
    }
}

fn parse_mac(text: &str) -> Result<Mac, CoreError> {
    let mac: Mac = text
        .trim()
        .parse()
        .map_err(|e| CoreError::Invalid(format!("invalid MAC address {text:?}: {e}")))?;
    if mac.is_multicast() || mac == Mac::default() {
        return Err(CoreError::Invalid(format!(
            "invalid MAC address {text:?}: not a unicast address"
        )));
    }
    Ok(mac)
}
