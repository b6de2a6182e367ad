//! [`Cnm`]: the operations of the control API on the local state and NetworkDB.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::shell::Client;
use data_encoding::HEXLOWER;
use discovery::{ENDPOINT_TABLE, EndpointRecord, Family, Lookup};
use ipnet::Ipv4Net;
use networkdb::{NetworkDb, NodeName};
use overlay::{Mac, PEER_TABLE, PeerRecord};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::catalogue::{self, GLOBAL_NETWORK, NETWORKS_TABLE};
use super::error::CnmError;
use super::ipam;
use super::model::{
    DRIVER_OVERLAY, DnsAnswer, DnsQuery, Endpoint, EndpointCreate, Info, NetworkCreate,
    NetworkSpec, Sandbox, SandboxCreate, SandboxInfo, ServiceInfo, check_aliases, check_name,
};
use super::store::{KnownNetwork, LocalState};
use crate::dns::directory::Directory;
use crate::dns::sandbox::SandboxDns;
use crate::dns::server::Names;
use crate::os_random;

/// How often [`Cnm::spawn_reconciler`] brings NetworkDB in line with the local state.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a network this agent created or has endpoints on must be missing from the
/// catalogue (its owner left or crashed) before this agent publishes it again. Long enough
/// for a restarted agent to receive the catalogue by bulk sync first.
pub const ADOPT_AFTER: Duration = Duration::from_secs(3);

/// Who this agent is, for the records it publishes.
#[derive(Clone, Debug)]
pub struct CnmSettings {
    /// The configured node name (`created_by` of the networks it creates; the seed of its
    /// address allocation).
    pub node_name: String,
    /// The NetworkDB name of this run (`name@incarnation`), the owner of its entries.
    pub db_name: NodeName,
    /// The address peers reach the node at.
    pub advertise: SocketAddr,
    /// The data-path address published as the VTEP of its endpoints.
    pub vtep: IpAddr,
    /// Where `cnm.json` lives.
    pub state_dir: PathBuf,
    /// The overlay driver the join and leave hooks drive; `None`: no dataplane at all.
    pub dataplane: Option<crate::dataplane::DataplaneHandle>,
    /// Service discovery: this agent's own records go in as they are written, network
    /// attachments and the sandboxes' networks as they change.
    pub directory: Directory,
    /// The embedded DNS servers of the sandboxes; `None`: not run (not root, or disabled).
    pub dns: Option<Arc<SandboxDns>>,
}

/// The Container Network Model of one agent: the cluster-wide network catalogue, and this
/// agent's endpoints and sandboxes.
///
/// Every operation runs under one lock, so concurrent API calls never interleave. The local
/// state (saved in `cnm.json` before an operation answers) is the source of truth for the
/// agent's NetworkDB attachments and records: [`reconcile`](Self::reconcile) joins the
/// NetworkDB network of every network with a local endpoint, publishes the records of every
/// joined endpoint (replacing entries that are missing, stale or owned by someone else),
/// withdraws the agent's records of endpoints that are no longer joined, and re-publishes
/// networks the catalogue lost (see [`ADOPT_AFTER`]). Operations apply the same changes at
/// once; the reconciler repairs what a failure or a restart left behind.
#[derive(Debug)]
pub struct Cnm {
    client: Client,
    settings: CnmSettings,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: LocalState,
    /// Known networks missing from the catalogue, by ID, with when that was first seen.
    absent_since: HashMap<String, Instant>,
    /// Watch events the node's shell dropped (its channel was full) when last checked.
    watch_dropped: u64,
    /// Reconciliations that still rebuild service discovery from NetworkDB: two after a
    /// drop, so events queued before the first rebuild (older than its view) are overwritten
    /// by the second.
    resyncs_pending: u8,
}

/// What the catalogue says of a network this agent knows.
enum CatalogueStatus {
    /// It holds the network.
    Present,
    /// It holds another network of that name, or a tombstone: the network was removed.
    Removed,
    /// It holds nothing visible under the name (the owner left or failed).
    Absent,
}

/// The encoded records of one joined endpoint.
#[derive(Clone, Debug)]
struct Records {
    /// Its `PeerRecord`.
    peer: Bytes,
    /// Its `EndpointRecord`.
    endpoint: Bytes,
}

/// The records this agent wants in one NetworkDB network, by endpoint ID.
type Wanted = BTreeMap<String, Records>;

impl Cnm {
    /// Starts the CNM of a running node from its loaded state: joins [`GLOBAL_NETWORK`], then
    /// reconciles, which re-joins the networks of the restored endpoints and re-publishes the
    /// records of the joined ones.
    pub async fn start(
        client: Client,
        settings: CnmSettings,
        state: LocalState,
    ) -> Result<Arc<Self>, CnmError> {
        settings
            .directory
            .set_topology(network_names(&state), sandbox_networks(&state));
        let cnm = Arc::new(Self {
            client,
            settings,
            inner: Mutex::new(Inner {
                state,
                absent_since: HashMap::new(),
                watch_dropped: 0,
                resyncs_pending: 0,
            }),
        });
        // Re-create the dataplane of every restored joined endpoint before its records are
        // re-published (a failure is retried by the driver in the background).
        {
            let inner = cnm.inner.lock().await;
            for endpoint in inner.state.endpoints.values() {
                let Some(sb) = endpoint
                    .sandbox
                    .as_ref()
                    .and_then(|name| inner.state.sandboxes.get(name))
                else {
                    continue;
                };
                if let Err(e) = cnm.dataplane_join(&inner.state, endpoint, sb, true).await {
                    tracing::warn!(endpoint = %endpoint.name, error = %e, "cannot restore the endpoint's dataplane");
                }
                cnm.start_dns(sb).await;
            }
        }
        cnm.reconcile().await?;
        Ok(cnm)
    }

    /// Runs [`reconcile`](Self::reconcile) every [`RECONCILE_INTERVAL`] until the node stops.
    pub fn spawn_reconciler(self: &Arc<Self>) -> JoinHandle<()> {
        let cnm = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match cnm.reconcile().await {
                    Ok(()) => {}
                    Err(CnmError::Stopped) => break,
                    Err(e) => tracing::warn!(error = %e, "CNM reconciliation failed"),
                }
            }
        })
    }

    /// The settings this CNM runs with.
    pub fn settings(&self) -> &CnmSettings {
        &self.settings
    }

    // ---- networks ----

    /// The catalogue, sorted by name.
    pub async fn networks(&self) -> Result<Vec<NetworkSpec>, CnmError> {
        Ok(self
            .client
            .with_node(|node, _| catalogue::list(node.db()))
            .await?)
    }

    /// A network of the catalogue by name, ID or unique ID prefix.
    pub async fn network(&self, reference: &str) -> Result<NetworkSpec, CnmError> {
        let specs = self.networks().await?;
        catalogue::resolve(&specs, reference).cloned()
    }

    /// Creates a network in the catalogue.
    pub async fn create_network(&self, req: NetworkCreate) -> Result<NetworkSpec, CnmError> {
        check_name("network", &req.name)?;
        let driver = req.driver.as_deref().unwrap_or(DRIVER_OVERLAY);
        if driver != DRIVER_OVERLAY {
            // libnetwork's wording for a driver it cannot find.
            return Err(CnmError::Invalid(format!(
                "could not find plugin {driver} in v1 plugin registry: plugin not found"
            )));
        }
        let subnet = ipam::parse_subnet(&req.subnet)?;
        let vni = req.vni.map(ipam::check_vni).transpose()?;
        let id = random_id()?;
        let mut inner = self.inner.lock().await;
        let known: Vec<NetworkSpec> = live_known(&inner.state).cloned().collect();
        let mut spec = NetworkSpec {
            name: req.name,
            id,
            driver: DRIVER_OVERLAY.to_owned(),
            subnet,
            gateway: ipam::gateway(subnet),
            vni: 0,
            created_by: self.settings.node_name.clone(),
        };
        let spec = self
            .client
            .with_node(move |node, now| {
                let db = node.db_mut();
                let specs = with_known(catalogue::list(db), known);
                check_new_network(&specs, &spec, vni)?;
                spec.vni = match vni {
                    Some(vni) => vni,
                    None => {
                        let used: BTreeSet<u32> = specs.iter().map(|s| s.vni).collect();
                        ipam::allocate_vni(&used).ok_or_else(|| {
                            CnmError::Conflict("no free VNI left for a new network".into())
                        })?
                    }
                };
                db.create_entry(
                    now,
                    NETWORKS_TABLE.into(),
                    GLOBAL_NETWORK.into(),
                    spec.name.as_str().into(),
                    catalogue::encode(&spec),
                )
                .map_err(|_| exists(&spec.name))?;
                Ok::<_, CnmError>(spec)
            })
            .await??;
        let mut next = inner.state.clone();
        next.networks.insert(
            spec.id.clone(),
            KnownNetwork {
                spec: spec.clone(),
                created_here: true,
                removed: false,
            },
        );
        if let Err(e) = self.commit(&mut inner, next).await {
            let name = spec.name.clone();
            let _ = self
                .client
                .with_node(move |node, now| {
                    node.db_mut().delete_entry(
                        now,
                        NETWORKS_TABLE.into(),
                        GLOBAL_NETWORK.into(),
                        name.into(),
                    )
                })
                .await;
            return Err(e);
        }
        tracing::info!(
            network = %spec.name,
            id = %spec.id,
            subnet = %spec.subnet,
            vni = spec.vni,
            "network created"
        );
        Ok(spec)
    }

    /// Removes a network from the catalogue. Refused while this agent or any other live
    /// agent has endpoints on it: an agent attaches to a network's NetworkDB network with its
    /// first endpoint there and leaves with its last, and attachments are known cluster-wide,
    /// so the network's NetworkDB peers are exactly the agents with endpoints on it.
    pub async fn remove_network(&self, reference: &str) -> Result<NetworkSpec, CnmError> {
        let mut inner = self.inner.lock().await;
        let spec = self.network(reference).await?;
        if inner.state.endpoints_on(&spec.id).next().is_some() {
            return Err(CnmError::Conflict(format!(
                "network {} has active endpoints",
                spec.name
            )));
        }
        let id = spec.id.clone();
        let remote: Vec<String> = self
            .client
            .with_node(move |node, _| {
                let me = node.db().name().clone();
                node.db()
                    .peers(&id)
                    .into_iter()
                    .filter(|p| p.name != me)
                    .map(|p| p.name.to_string())
                    .collect()
            })
            .await?;
        if !remote.is_empty() {
            return Err(CnmError::Conflict(format!(
                "network {} has active endpoints on {}",
                spec.name,
                remote.join(", ")
            )));
        }
        let name = spec.name.clone();
        self.client
            .with_node(move |node, now| {
                node.db_mut().delete_entry(
                    now,
                    NETWORKS_TABLE.into(),
                    GLOBAL_NETWORK.into(),
                    name.as_str().into(),
                )
            })
            .await?
            .map_err(|_| CnmError::NotFound(format!("network {reference} not found")))?;
        inner.absent_since.remove(&spec.id);
        if inner.state.networks.contains_key(&spec.id) {
            let mut next = inner.state.clone();
            next.networks.remove(&spec.id);
            self.commit(&mut inner, next).await?;
        }
        tracing::info!(network = %spec.name, id = %spec.id, "network removed");
        Ok(spec)
    }

    // ---- endpoints ----

    /// This agent's endpoints, on one network (by name or ID) or on all, sorted by network
    /// and name.
    pub async fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, CnmError> {
        let inner = self.inner.lock().await;
        let filter = match network {
            Some(reference) => match local_network(&inner.state, reference) {
                Ok(spec) => Some(spec.id.clone()),
                // A network of the catalogue this agent has no endpoint on: an empty list.
                Err(CnmError::NotFound(_)) => Some(self.network(reference).await?.id),
                Err(e) => return Err(e),
            },
            None => None,
        };
        let mut list: Vec<Endpoint> = inner
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
    pub async fn endpoint(&self, network: &str, name: &str) -> Result<Endpoint, CnmError> {
        let inner = self.inner.lock().await;
        find_endpoint(&inner.state, network, name).cloned()
    }

    /// Creates an endpoint on a network of the catalogue and attaches this agent to the
    /// network's NetworkDB network if it is its first endpoint there.
    pub async fn create_endpoint(&self, req: EndpointCreate) -> Result<Endpoint, CnmError> {
        check_name("endpoint", &req.name)?;
        check_aliases(&req.aliases)?;
        let ip = req
            .ip
            .as_deref()
            .map(|t| ipam::parse_ip(t, "address"))
            .transpose()?;
        let mac = match req.mac.as_deref() {
            Some(text) => Some(parse_mac(text)?),
            None => None,
        };
        let service = match &req.service {
            Some(s) => {
                check_name("service", &s.name)?;
                check_aliases(&s.aliases)?;
                let vip = s
                    .vip
                    .as_deref()
                    .map(|t| ipam::parse_ip(t, "virtual IP"))
                    .transpose()?;
                Some((s.name.clone(), vip, s.aliases.clone()))
            }
            None => None,
        };
        let id = random_id()?;

        let mut inner = self.inner.lock().await;
        let known: Vec<NetworkSpec> = live_known(&inner.state).cloned().collect();
        let reference = req.network.clone();
        let (spec, users) = self
            .client
            .with_node(move |node, _| {
                let db = node.db();
                let specs = with_known(catalogue::list(db), known);
                let spec = catalogue::resolve(&specs, &reference)?.clone();
                let users = catalogue::addresses_in_use(db, &spec.id);
                Ok::<_, CnmError>((spec, users))
            })
            .await??;
        let state = &inner.state;
        if state.endpoint(&spec.id, &req.name).is_some() {
            return Err(CnmError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                req.name, spec.name
            )));
        }
        let mut used = users.all();
        for e in state.endpoints_on(&spec.id) {
            used.insert(e.ip);
            used.extend(e.service.as_ref().and_then(|s| s.vip));
        }
        if let Some((service_name, vip, _)) = &service {
            // Every task of a service on a network shares its VIP, or none has one.
            let mut settings = users
                .services
                .get(service_name)
                .cloned()
                .unwrap_or_default();
            settings.extend(state.endpoints_on(&spec.id).filter_map(|e| {
                e.service
                    .as_ref()
                    .filter(|s| s.name == *service_name)
                    .map(|s| s.vip)
            }));
            if let Some(other) = settings.iter().find(|v| *v != vip) {
                let other =
                    other.map_or_else(|| "no virtual IP".to_owned(), |v| format!("virtual IP {v}"));
                return Err(CnmError::Conflict(format!(
                    "service {service_name} has {other} on network {}: its tasks share one setting",
                    spec.name
                )));
            }
        }
        let vip = match &service {
            Some((service_name, Some(vip), _)) => {
                ipam::check_address(spec.subnet, *vip, "virtual IP")?;
                // A VIP is shared by the tasks of one service, here and on other hosts; any
                // other use is a conflict.
                let local_endpoint = state.endpoints_on(&spec.id).any(|e| e.ip == *vip);
                let other_local_service = state.endpoints_on(&spec.id).any(|e| {
                    e.service
                        .as_ref()
                        .is_some_and(|s| s.vip == Some(*vip) && s.name != *service_name)
                });
                let other_remote_service = users
                    .vips
                    .get(vip)
                    .is_some_and(|services| services.iter().any(|s| s != service_name));
                if local_endpoint
                    || users.endpoints.contains(vip)
                    || other_local_service
                    || other_remote_service
                {
                    return Err(CnmError::Conflict(format!(
                        "virtual IP {vip} is already in use"
                    )));
                }
                Some(*vip)
            }
            _ => None,
        };
        if let Some(mac) = &mac
            && state.endpoints_on(&spec.id).any(|e| e.mac == *mac)
        {
            return Err(CnmError::Conflict(format!(
                "MAC address {mac} is already in use on network {}",
                spec.name
            )));
        }
        let ip = match ip {
            Some(ip) => {
                ipam::check_address(spec.subnet, ip, "address")?;
                if used.contains(&ip) || vip == Some(ip) {
                    return Err(CnmError::Conflict("Address already in use".into()));
                }
                ip
            }
            None => {
                used.extend(vip);
                ipam::allocate(spec.subnet, &used, &self.settings.node_name).ok_or_else(|| {
                    CnmError::Conflict(
                        "no available IPv4 addresses on this network's address pools".into(),
                    )
                })?
            }
        };
        let mac = mac.unwrap_or_else(|| Mac::from_ipv4(ip));
        let endpoint = Endpoint {
            id,
            name: req.name,
            network: spec.name.clone(),
            network_id: spec.id.clone(),
            ip,
            prefix_len: spec.subnet.prefix_len(),
            mac,
            service: service.map(|(name, vip, aliases)| ServiceInfo {
                id: service_id(&spec.id, &name),
                name,
                vip,
                aliases,
                disabled: false,
            }),
            aliases: req.aliases,
            sandbox: None,
        };
        let mut next = state.clone();
        let created_here = next.networks.get(&spec.id).is_some_and(|k| k.created_here);
        next.networks.insert(
            spec.id.clone(),
            KnownNetwork {
                spec: spec.clone(),
                created_here,
                removed: false,
            },
        );
        next.endpoints.insert(endpoint.id.clone(), endpoint.clone());
        self.commit(&mut inner, next).await?;
        // libnetwork joins a network's NetworkDB network once it has a container on it.
        let nid = spec.id.clone();
        let directory = self.settings.directory.clone();
        self.client
            .with_node(move |node, now| join_and_attach(&directory, node.db_mut(), now, &nid))
            .await?;
        tracing::info!(
            endpoint = %endpoint.name,
            network = %spec.name,
            ip = %endpoint.ip,
            "endpoint created"
        );
        Ok(endpoint)
    }

    /// Removes an endpoint that is not joined; detaches this agent from the network's
    /// NetworkDB network when it was the last one there.
    pub async fn remove_endpoint(&self, network: &str, name: &str) -> Result<Endpoint, CnmError> {
        let mut inner = self.inner.lock().await;
        let endpoint = find_endpoint(&inner.state, network, name)?.clone();
        if let Some(sandbox) = &endpoint.sandbox {
            return Err(CnmError::Conflict(format!(
                "endpoint {} is joined to sandbox {sandbox}; leave first",
                endpoint.name
            )));
        }
        let mut next = inner.state.clone();
        next.endpoints.remove(&endpoint.id);
        let last = next.endpoints_on(&endpoint.network_id).next().is_none();
        if last
            && next
                .networks
                .get(&endpoint.network_id)
                .is_some_and(|k| !k.created_here || k.removed)
        {
            next.networks.remove(&endpoint.network_id);
        }
        self.commit(&mut inner, next).await?;
        if last {
            let nid = endpoint.network_id.clone();
            let directory = self.settings.directory.clone();
            self.client
                .with_node(move |node, now| {
                    let _ = node.db_mut().leave_network(now, nid.as_str().into());
                    directory.detach(&nid);
                })
                .await?;
        }
        tracing::info!(endpoint = %endpoint.name, network = %endpoint.network, "endpoint removed");
        Ok(endpoint)
    }

    /// Joins an endpoint to a sandbox and publishes its `PeerRecord` and `EndpointRecord`.
    pub async fn join(
        &self,
        network: &str,
        name: &str,
        sandbox: &str,
    ) -> Result<Endpoint, CnmError> {
        let mut inner = self.inner.lock().await;
        let endpoint = find_endpoint(&inner.state, network, name)?.clone();
        let Some(sb) = inner.state.sandboxes.get(sandbox).cloned() else {
            return Err(sandbox_not_found(sandbox));
        };
        if let Some(current) = &endpoint.sandbox {
            return Err(CnmError::Conflict(format!(
                "endpoint {} is already joined to sandbox {current}",
                endpoint.name
            )));
        }
        if inner
            .state
            .networks
            .get(&endpoint.network_id)
            .is_some_and(|k| k.removed)
        {
            return Err(CnmError::Conflict(format!(
                "network {} was removed from the cluster; endpoint {} can only leave and be removed",
                endpoint.network, endpoint.name
            )));
        }
        self.dataplane_join(&inner.state, &endpoint, &sb, false)
            .await?;
        let mut next = inner.state.clone();
        let joined = Endpoint {
            sandbox: Some(sb.name.clone()),
            ..endpoint
        };
        next.endpoints.insert(joined.id.clone(), joined.clone());
        self.commit(&mut inner, next).await?;
        // libnetwork publishes once the dataplane is ready (`addDriverInfoToCluster`, then
        // `addServiceInfoToCluster`).
        self.sync_network_records(&inner.state, &joined.network_id)
            .await?;
        self.start_dns(&sb).await;
        tracing::info!(
            endpoint = %joined.name,
            network = %joined.network,
            sandbox = %sb.name,
            "endpoint joined"
        );
        Ok(joined)
    }

    /// Leaves an endpoint's sandbox: deletes its records, then forgets the sandbox.
    pub async fn leave(&self, network: &str, name: &str) -> Result<Endpoint, CnmError> {
        let mut inner = self.inner.lock().await;
        let endpoint = find_endpoint(&inner.state, network, name)?.clone();
        if endpoint.sandbox.is_none() {
            return Err(CnmError::Conflict(format!(
                "endpoint {} is not joined to a sandbox",
                endpoint.name
            )));
        }
        let mut next = inner.state.clone();
        let left = Endpoint {
            sandbox: None,
            ..endpoint.clone()
        };
        next.endpoints.insert(left.id.clone(), left.clone());
        // As libnetwork's `sbLeave`: the driver tears the local dataplane down first
        // (`d.Leave`), then the records are withdrawn (`deleteServiceInfoFromCluster`,
        // `deleteDriverInfoFromCluster`). A failed teardown changes nothing: the endpoint
        // stays joined and published.
        self.dataplane_leave(&endpoint).await?;
        self.sync_network_records(&next, &left.network_id).await?;
        self.commit(&mut inner, next).await?;
        tracing::info!(endpoint = %left.name, network = %left.network, "endpoint left");
        Ok(left)
    }

    /// Disables (drains) or enables again a service task: its record is republished with
    /// `service_disabled` set or cleared, so every node withdraws or restores its names
    /// (libnetwork `DisableService` / `EnableService`).
    pub async fn set_service_enabled(
        &self,
        network: &str,
        name: &str,
        enabled: bool,
    ) -> Result<Endpoint, CnmError> {
        let mut inner = self.inner.lock().await;
        let endpoint = find_endpoint(&inner.state, network, name)?.clone();
        let Some(service) = &endpoint.service else {
            return Err(CnmError::Conflict(format!(
                "endpoint {} is not a task of a service",
                endpoint.name
            )));
        };
        if service.disabled != enabled {
            return Ok(endpoint);
        }
        let mut next = inner.state.clone();
        let changed = Endpoint {
            service: Some(ServiceInfo {
                disabled: !enabled,
                ..service.clone()
            }),
            ..endpoint
        };
        next.endpoints.insert(changed.id.clone(), changed.clone());
        self.commit(&mut inner, next).await?;
        self.sync_network_records(&inner.state, &changed.network_id)
            .await?;
        tracing::info!(
            endpoint = %changed.name,
            network = %changed.network,
            enabled,
            "service task {}",
            if enabled { "enabled" } else { "disabled" }
        );
        Ok(changed)
    }

    // ---- sandboxes ----

    /// This agent's sandboxes, sorted by name.
    pub async fn sandboxes(&self) -> Vec<SandboxInfo> {
        let inner = self.inner.lock().await;
        inner
            .state
            .sandboxes
            .values()
            .map(|s| sandbox_info(&inner.state, s))
            .collect()
    }

    /// One sandbox.
    pub async fn sandbox(&self, name: &str) -> Result<SandboxInfo, CnmError> {
        let inner = self.inner.lock().await;
        let sandbox = inner
            .state
            .sandboxes
            .get(name)
            .ok_or_else(|| sandbox_not_found(name))?;
        Ok(sandbox_info(&inner.state, sandbox))
    }

    /// Creates a sandbox. Its namespace need not exist yet.
    pub async fn create_sandbox(&self, req: SandboxCreate) -> Result<SandboxInfo, CnmError> {
        check_name("sandbox", &req.name)?;
        let netns = PathBuf::from(&req.netns);
        if !netns.is_absolute() {
            return Err(CnmError::Invalid(format!(
                "invalid netns {:?}: must be an absolute path",
                req.netns
            )));
        }
        let mut inner = self.inner.lock().await;
        if inner.state.sandboxes.contains_key(&req.name) {
            return Err(CnmError::Conflict(format!(
                "sandbox with name {} already exists",
                req.name
            )));
        }
        let resolv_conf = req.resolv_conf.as_deref().map(PathBuf::from);
        if let Some(path) = &resolv_conf {
            // The agent writes this file as root: only a container's resolver file, never
            // the host's own.
            if !path.is_absolute()
                || path.file_name() != Some(std::ffi::OsStr::new("resolv.conf"))
                || path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
                || path == std::path::Path::new(crate::dns::sandbox::HOST_RESOLV_CONF)
            {
                return Err(CnmError::Invalid(format!(
                    "invalid resolv_conf {:?}: an absolute path of a container's resolv.conf (not the host's /etc/resolv.conf, no '..')",
                    path.display()
                )));
            }
            if self.settings.dns.is_none() {
                tracing::warn!(
                    sandbox = %req.name,
                    path = %path.display(),
                    "this agent runs no embedded DNS (not root, or dns = false): the sandbox's resolv.conf will not be written"
                );
            }
        }
        let sandbox = Sandbox {
            name: req.name,
            netns,
            resolv_conf,
        };
        let mut next = inner.state.clone();
        next.sandboxes.insert(sandbox.name.clone(), sandbox.clone());
        self.commit(&mut inner, next).await?;
        Ok(sandbox_info(&inner.state, &sandbox))
    }

    /// Removes a sandbox no endpoint is joined to.
    pub async fn remove_sandbox(&self, name: &str) -> Result<SandboxInfo, CnmError> {
        let mut inner = self.inner.lock().await;
        let sandbox = inner
            .state
            .sandboxes
            .get(name)
            .ok_or_else(|| sandbox_not_found(name))?;
        let info = sandbox_info(&inner.state, sandbox);
        if !info.endpoints.is_empty() {
            return Err(CnmError::Conflict(format!(
                "sandbox {name} has joined endpoints ({}); leave first",
                info.endpoints.join(", ")
            )));
        }
        let mut next = inner.state.clone();
        next.sandboxes.remove(name);
        self.commit(&mut inner, next).await?;
        if let Some(dns) = &self.settings.dns {
            dns.stop(name).await;
        }
        Ok(info)
    }

    // ---- service discovery ----

    /// What a container on `query.network` (or in `query.sandbox`) gets for `query.name`:
    /// the embedded DNS server's answer from the same records.
    pub async fn dns_lookup(&self, query: DnsQuery) -> Result<DnsAnswer, CnmError> {
        let directory = &self.settings.directory;
        let ip = query.name.parse::<IpAddr>().ok();
        let record_type = match query.record_type.as_deref().map(str::to_ascii_uppercase) {
            None if ip.is_some() => "PTR".to_owned(),
            None => "A".to_owned(),
            Some(t) if ["A", "AAAA", "PTR"].contains(&t.as_str()) => t,
            Some(t) => {
                return Err(CnmError::Invalid(format!(
                    "invalid type {t:?}: A, AAAA or PTR"
                )));
            }
        };
        let inner = self.inner.lock().await;
        let ids: Vec<String> = match (&query.network, &query.sandbox) {
            (Some(network), None) => {
                let spec = local_network(&inner.state, network)?;
                if !inner.state.endpoints_on(&spec.id).any(|_| true) {
                    return Err(CnmError::NotFound(format!(
                        "this agent has no endpoint on network {}: no container here resolves on it",
                        spec.name
                    )));
                }
                vec![spec.id.clone()]
            }
            (None, Some(sandbox)) => {
                if !inner.state.sandboxes.contains_key(sandbox) {
                    return Err(sandbox_not_found(sandbox));
                }
                sandbox_networks(&inner.state)
                    .remove(sandbox)
                    .unwrap_or_default()
            }
            _ => {
                return Err(CnmError::Invalid(
                    "give exactly one of network and sandbox".into(),
                ));
            }
        };
        let names = network_names(&inner.state);
        drop(inner);
        let networks = ids
            .iter()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
            .collect();
        let resolver = directory.networks(ids);
        let (outcome, answers) = if record_type == "PTR" {
            let Some(ip) = ip else {
                return Err(CnmError::Invalid(format!(
                    "invalid address {:?} for a PTR lookup",
                    query.name
                )));
            };
            match resolver.reverse(ip) {
                Some(name) => ("answer", vec![format!("{name}.")]),
                None => ("forward", Vec::new()),
            }
        } else {
            let family = if record_type == "A" {
                Family::V4
            } else {
                Family::V6
            };
            match resolver.resolve(&query.name, family) {
                Lookup::Addrs(addrs) => ("answer", addrs.iter().map(ToString::to_string).collect()),
                Lookup::NoData => ("nodata", Vec::new()),
                Lookup::NotFound => ("forward", Vec::new()),
            }
        };
        Ok(DnsAnswer {
            name: query.name,
            record_type,
            networks,
            outcome: outcome.to_owned(),
            answers,
        })
    }

    // ---- info and reconciliation ----

    /// The node's name, address and member count, and the CNM's counts.
    pub async fn info(&self) -> Result<Info, CnmError> {
        let (endpoints, sandboxes) = {
            let inner = self.inner.lock().await;
            (inner.state.endpoints.len(), inner.state.sandboxes.len())
        };
        let (members, networks) = self
            .client
            .with_node(|node, _| {
                let db = node.db();
                (db.cluster_peers().len(), catalogue::list(db).len())
            })
            .await?;
        Ok(Info {
            name: self.settings.node_name.clone(),
            node: self.settings.db_name.to_string(),
            advertise: self.settings.advertise,
            members,
            networks,
            endpoints,
            sandboxes,
        })
    }

    /// Brings NetworkDB in line with the local state (see [`Cnm`]).
    pub async fn reconcile(&self) -> Result<(), CnmError> {
        let mut inner = self.inner.lock().await;
        let me = self.settings.db_name.clone();
        let wanted = self.wanted(&inner.state);
        let known: Vec<(String, String)> = live_known(&inner.state)
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        // Every network ID this agent knows as a CNM network: joined ones among them that no
        // local endpoint needs are left (a leave that failed or was interrupted, which would
        // otherwise block `network rm` on every other agent). NetworkDB networks joined by
        // other means (the diagnostic API's /joinnetwork) are not touched.
        let mut cnm_ids: HashSet<String> = inner.state.networks.keys().cloned().collect();
        let directory = self.settings.directory.clone();
        // Watch events lost to a full channel: service discovery is rebuilt from the node's
        // view of every attached network.
        let dropped = self.client.stats().await?.watch_dropped;
        if dropped > inner.watch_dropped {
            tracing::warn!(
                lost = dropped - inner.watch_dropped,
                "watch events were dropped: rebuilding service discovery from NetworkDB"
            );
            inner.watch_dropped = dropped;
            inner.resyncs_pending = 2;
        }
        let resync = inner.resyncs_pending > 0;
        inner.resyncs_pending = inner.resyncs_pending.saturating_sub(1);
        let statuses = self
            .client
            .with_node(move |node, now| {
                let db = node.db_mut();
                let joined: HashSet<String> = db.networks().iter().map(|n| n.to_string()).collect();
                for nid in std::iter::once(GLOBAL_NETWORK).chain(wanted.keys().map(String::as_str))
                {
                    if !joined.contains(nid) {
                        tracing::info!(network = nid, "joining NetworkDB network");
                        let _ = db.join_network(now, nid.into());
                    }
                }
                for nid in directory.attached() {
                    if !wanted.contains_key(&nid) {
                        directory.detach(&nid);
                    }
                }
                for nid in wanted.keys() {
                    if resync {
                        directory.detach(nid);
                    }
                    attach(&directory, db, nid);
                }
                cnm_ids.extend(super::catalogue::list(db).into_iter().map(|s| s.id));
                for nid in joined {
                    if cnm_ids.contains(&nid) && !wanted.contains_key(&nid) {
                        tracing::info!(network = %nid, "leaving NetworkDB network: no local endpoint");
                        let _ = db.leave_network(now, nid.as_str().into());
                    }
                }
                for (nid, records) in &wanted {
                    sync_records(db, now, &me, nid, records, &directory);
                }
                known
                    .into_iter()
                    .map(|(id, name)| {
                        let status = catalogue_status(db, &id, &name);
                        (id, status)
                    })
                    .collect::<Vec<_>>()
            })
            .await?;

        let now = Instant::now();
        let mut next = inner.state.clone();
        let mut adopt = Vec::new();
        for (id, status) in statuses {
            match status {
                CatalogueStatus::Present => {
                    inner.absent_since.remove(&id);
                }
                CatalogueStatus::Removed => {
                    inner.absent_since.remove(&id);
                    if next.endpoints_on(&id).next().is_some() {
                        if let Some(k) = next.networks.get_mut(&id) {
                            tracing::warn!(
                                network = %k.spec.name,
                                id = %id,
                                "network removed from the catalogue while this agent has endpoints on it"
                            );
                            k.removed = true;
                        }
                    } else {
                        next.networks.remove(&id);
                    }
                }
                CatalogueStatus::Absent => {
                    let since = *inner.absent_since.entry(id.clone()).or_insert(now);
                    if now.duration_since(since) >= ADOPT_AFTER {
                        inner.absent_since.remove(&id);
                        adopt.extend(next.networks.get(&id).map(|k| k.spec.clone()));
                    }
                }
            }
        }
        if next != inner.state {
            self.commit(&mut inner, next).await?;
        }
        if !adopt.is_empty() {
            self.client
                .with_node(move |node, now| {
                    let db = node.db_mut();
                    for spec in adopt {
                        tracing::info!(
                            network = %spec.name,
                            id = %spec.id,
                            "re-publishing a network the catalogue lost"
                        );
                        let _ = db.create_entry(
                            now,
                            NETWORKS_TABLE.into(),
                            GLOBAL_NETWORK.into(),
                            spec.name.as_str().into(),
                            catalogue::encode(&spec),
                        );
                    }
                })
                .await?;
        }
        Ok(())
    }

    // ---- helpers ----

    /// DATAPLANE HOOK: asks the overlay driver to create the endpoint's veth pair, move one
    /// end into `sandbox.netns` and the other onto the network's bridge, creating the
    /// network's namespace, bridge and VXLAN device on its first local endpoint. Runs before
    /// the endpoint's records are published; an error refuses the join with nothing
    /// published. With `restore` (agent start), failures are retried by the driver.
    async fn dataplane_join(
        &self,
        state: &LocalState,
        endpoint: &Endpoint,
        sandbox: &Sandbox,
        restore: bool,
    ) -> Result<(), CnmError> {
        let Some(dp) = &self.settings.dataplane else {
            return Ok(());
        };
        let Some(known) = state.networks.get(&endpoint.network_id) else {
            tracing::warn!(endpoint = %endpoint.name, network = %endpoint.network, "unknown network: no dataplane");
            return Ok(());
        };
        let spec = &known.spec;
        let (Ok(gateway), Ok(addr)) = (
            Ipv4Net::new(spec.gateway, spec.subnet.prefix_len()),
            Ipv4Net::new(endpoint.ip, endpoint.prefix_len),
        ) else {
            return Err(CnmError::Invalid(format!(
                "endpoint {}: invalid prefix length",
                endpoint.name
            )));
        };
        let req = crate::dataplane::JoinRequest {
            network_id: endpoint.network_id.clone(),
            vni: spec.vni,
            gateway,
            addr,
            mac: endpoint.mac,
            netns: sandbox.netns.clone(),
        };
        dp.join(req, restore).await.map_err(CnmError::Conflict)
    }

    /// DATAPLANE HOOK: asks the overlay driver to remove the endpoint's veth pair (and the
    /// network's namespace after its last endpoint). Runs after the records are deleted.
    async fn dataplane_leave(&self, endpoint: &Endpoint) -> Result<(), CnmError> {
        let Some(dp) = &self.settings.dataplane else {
            return Ok(());
        };
        dp.leave(&endpoint.network_id, endpoint.ip)
            .await
            .map_err(CnmError::Conflict)
    }

    /// Saves `next`, then makes it the current state. On a failure nothing changes.
    async fn commit(&self, inner: &mut Inner, next: LocalState) -> Result<(), CnmError> {
        next.save(&self.settings.state_dir).await?;
        self.settings
            .directory
            .set_topology(network_names(&next), sandbox_networks(&next));
        inner.state = next;
        Ok(())
    }

    /// Starts the sandbox's embedded DNS server (when this agent runs them). A failure is
    /// logged, not returned: the endpoint is joined and reachable; only its names are not
    /// served inside this sandbox.
    async fn start_dns(&self, sandbox: &Sandbox) {
        if let Some(dns) = &self.settings.dns
            && let Err(e) = dns.ensure(sandbox).await
        {
            tracing::warn!(sandbox = %sandbox.name, error = %e, "embedded DNS not started");
        }
    }

    /// The records this agent wants, by NetworkDB network: one entry per network with a
    /// local endpoint (empty when none is joined), so stale records there are withdrawn.
    fn wanted(&self, state: &LocalState) -> BTreeMap<String, Wanted> {
        let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
        for e in state.endpoints.values() {
            let records = wanted.entry(e.network_id.clone()).or_default();
            if e.sandbox.is_some() {
                records.extend(self.records(e).map(|r| (e.id.clone(), r)));
            }
        }
        wanted
    }

    /// Publishes and withdraws the records of one network to match `state`.
    async fn sync_network_records(
        &self,
        state: &LocalState,
        network_id: &str,
    ) -> Result<(), CnmError> {
        let mut wanted = self.wanted(state);
        let records = wanted.remove(network_id).unwrap_or_default();
        let me = self.settings.db_name.clone();
        let nid = network_id.to_owned();
        let directory = self.settings.directory.clone();
        self.client
            .with_node(move |node, now| {
                let db = node.db_mut();
                join_and_attach(&directory, db, now, &nid);
                sync_records(db, now, &me, &nid, &records, &directory);
            })
            .await?;
        Ok(())
    }

    /// The `PeerRecord` and `EndpointRecord` of a joined endpoint, or `None` (logged) when
    /// its prefix length is beyond 32 (a hand-edited state file): nothing is published.
    fn records(&self, e: &Endpoint) -> Option<Records> {
        let Ok(endpoint_ip) = Ipv4Net::new(e.ip, e.prefix_len) else {
            tracing::warn!(
                endpoint = %e.id,
                prefix_len = e.prefix_len,
                "invalid prefix length; the endpoint's records are not published"
            );
            return None;
        };
        let peer = PeerRecord {
            endpoint_ip,
            endpoint_mac: e.mac,
            tunnel_endpoint_ip: self.settings.vtep,
        };
        let service = e.service.as_ref();
        let record = EndpointRecord {
            name: e.name.clone(),
            service_name: service.map(|s| s.name.clone()).unwrap_or_default(),
            service_id: service.map(|s| s.id.clone()).unwrap_or_default(),
            virtual_ip: service
                .and_then(|s| s.vip)
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            endpoint_ip: e.ip.to_string(),
            ingress_ports: Vec::new(),
            aliases: service.map(|s| s.aliases.clone()).unwrap_or_default(),
            task_aliases: e.aliases.clone(),
            service_disabled: service.is_some_and(|s| s.disabled),
        };
        Some(Records {
            peer: Bytes::from(peer.encode()),
            endpoint: Bytes::from(record.encode()),
        })
    }
}

/// Makes this node's entries of [`PEER_TABLE`] and [`ENDPOINT_TABLE`] in `network_id` equal
/// `wanted`: writes what is missing, stale, or owned by another node (a previous run of this
/// one), and deletes this node's entries of endpoints not wanted.
fn sync_records(
    db: &mut NetworkDb,
    now: Instant,
    me: &NodeName,
    network_id: &str,
    wanted: &Wanted,
    directory: &Directory,
) {
    for table in [PEER_TABLE, ENDPOINT_TABLE] {
        let current = db.table_by_network(table, network_id);
        for (key, records) in wanted {
            let value = if table == PEER_TABLE {
                &records.peer
            } else {
                &records.endpoint
            };
            let result = match current.get(key.as_str()) {
                Some(e) if &e.owner == me && e.value == *value => continue,
                Some(_) => db.update_entry(
                    now,
                    table.into(),
                    network_id.into(),
                    key.as_str().into(),
                    value.clone(),
                ),
                None => db.create_entry(
                    now,
                    table.into(),
                    network_id.into(),
                    key.as_str().into(),
                    value.clone(),
                ),
            };
            match result {
                Ok(()) => {
                    tracing::debug!(table, network = network_id, key = %key, "record published")
                }
                Err(e) => tracing::warn!(error = %e, "cannot publish a record"),
            }
        }
        for (key, elem) in &current {
            if &elem.owner == me && !wanted.contains_key(key.as_str()) {
                let _ = db.delete_entry(now, table.into(), network_id.into(), key.clone());
                tracing::debug!(table, network = network_id, key = %key, "record withdrawn");
                if table == ENDPOINT_TABLE {
                    directory.set_local(network_id, key, None);
                }
            }
        }
    }
    // NetworkDB does not echo this node's own writes to its watches: service discovery
    // takes them from here (libnetwork applies local bindings directly, too), as NetworkDB
    // now holds them (a write that failed is not served).
    let view = db.table_by_network(ENDPOINT_TABLE, network_id);
    for key in wanted.keys() {
        directory.set_local(
            network_id,
            key,
            view.get(key.as_str()).map(|e| e.value.as_ref()),
        );
    }
}

/// Joins `network_id`'s NetworkDB network unless joined (libnetwork joins it with the first
/// container on the network), and attaches service discovery to it.
fn join_and_attach(directory: &Directory, db: &mut NetworkDb, now: Instant, network_id: &str) {
    if !db.networks().iter().any(|n| n.as_str() == network_id) {
        let _ = db.join_network(now, network_id.into());
    }
    attach(directory, db, network_id);
}

/// Attaches service discovery to a joined network, seeded with the node's current view of
/// its `endpoint_table` (what the watch reported before the attach was not kept).
fn attach(directory: &Directory, db: &NetworkDb, network_id: &str) {
    if directory.is_attached(network_id) {
        return;
    }
    let view = db.table_by_network(ENDPOINT_TABLE, network_id);
    directory.attach(
        network_id,
        view.iter().map(|(k, e)| (k.as_str(), e.value.as_ref())),
    );
}

/// Network ID -> name, of every network the local state knows.
fn network_names(state: &LocalState) -> HashMap<String, String> {
    state
        .networks
        .iter()
        .map(|(id, k)| (id.clone(), k.spec.name.clone()))
        .collect()
}

/// Sandbox -> the IDs of its joined endpoints' networks, ordered by network name: the
/// networks its DNS server resolves on.
fn sandbox_networks(state: &LocalState) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for e in state.endpoints.values() {
        if let Some(sb) = &e.sandbox {
            out.entry(sb.clone())
                .or_default()
                .push((e.network.clone(), e.network_id.clone()));
        }
    }
    out.into_iter()
        .map(|(sb, mut nets)| {
            nets.sort();
            nets.dedup();
            (sb, nets.into_iter().map(|(_, id)| id).collect())
        })
        .collect()
}

fn catalogue_status(db: &NetworkDb, id: &str, name: &str) -> CatalogueStatus {
    match db.get_entry(NETWORKS_TABLE, GLOBAL_NETWORK, name) {
        Ok(value) => match super::catalogue::decode(name, &value) {
            Some(spec) if spec.id == id => CatalogueStatus::Present,
            _ => CatalogueStatus::Removed,
        },
        Err(networkdb::Error::Deleted { .. }) => CatalogueStatus::Removed,
        Err(_) => CatalogueStatus::Absent,
    }
}

/// Refuses a new network whose name, VNI or subnet collides with a known one.
fn check_new_network(
    specs: &[NetworkSpec],
    new: &NetworkSpec,
    vni: Option<u32>,
) -> Result<(), CnmError> {
    if specs.iter().any(|s| s.name == new.name) {
        return Err(exists(&new.name));
    }
    if let Some(vni) = vni
        && let Some(s) = specs.iter().find(|s| s.vni == vni)
    {
        return Err(CnmError::Conflict(format!(
            "VNI {vni} is already used by network {}",
            s.name
        )));
    }
    if let Some(s) = specs.iter().find(|s| {
        s.subnet.contains(&new.subnet.network()) || new.subnet.contains(&s.subnet.network())
    }) {
        return Err(CnmError::Conflict(format!(
            "subnet {} overlaps with subnet {} of network {}",
            new.subnet, s.subnet, s.name
        )));
    }
    Ok(())
}

/// The catalogue followed by the known networks it lacks.
fn with_known(mut specs: Vec<NetworkSpec>, known: Vec<NetworkSpec>) -> Vec<NetworkSpec> {
    let missing: Vec<NetworkSpec> = known
        .into_iter()
        .filter(|k| !specs.iter().any(|s| s.id == k.id))
        .collect();
    specs.extend(missing);
    specs
}

fn exists(name: &str) -> CnmError {
    CnmError::Conflict(format!("network with name {name} already exists"))
}

fn sandbox_not_found(name: &str) -> CnmError {
    CnmError::NotFound(format!("sandbox {name} not found"))
}

/// The networks this agent knows that were not removed.
fn live_known(state: &LocalState) -> impl Iterator<Item = &NetworkSpec> {
    state
        .networks
        .values()
        .filter(|k| !k.removed)
        .map(|k| &k.spec)
}

/// A network this agent knows, by name, ID or ID prefix; live ones win over removed ones of
/// the same name.
fn local_network<'a>(state: &'a LocalState, reference: &str) -> Result<&'a NetworkSpec, CnmError> {
    let ordered: Vec<&NetworkSpec> = live_known(state)
        .chain(
            state
                .networks
                .values()
                .filter(|k| k.removed)
                .map(|k| &k.spec),
        )
        .collect();
    catalogue::resolve(ordered.iter().copied(), reference)
}

fn find_endpoint<'a>(
    state: &'a LocalState,
    network: &str,
    name: &str,
) -> Result<&'a Endpoint, CnmError> {
    let not_found =
        || CnmError::NotFound(format!("endpoint {name} not found in network {network}"));
    let spec = local_network(state, network).map_err(|e| match e {
        CnmError::NotFound(_) => not_found(),
        other => other,
    })?;
    state.endpoint(&spec.id, name).ok_or_else(not_found)
}

fn sandbox_info(state: &LocalState, sandbox: &Sandbox) -> SandboxInfo {
    let mut endpoints: Vec<String> = state
        .endpoints
        .values()
        .filter(|e| e.sandbox.as_deref() == Some(sandbox.name.as_str()))
        .map(|e| format!("{}/{}", e.network, e.name))
        .collect();
    endpoints.sort();
    SandboxInfo {
        name: sandbox.name.clone(),
        netns: sandbox.netns.clone(),
        resolv_conf: sandbox.resolv_conf.clone(),
        endpoints,
    }
}

fn parse_mac(text: &str) -> Result<Mac, CnmError> {
    let mac: Mac = text
        .trim()
        .parse()
        .map_err(|e| CnmError::Invalid(format!("invalid MAC address {text:?}: {e}")))?;
    if mac.is_multicast() || mac == Mac::default() {
        return Err(CnmError::Invalid(format!(
            "invalid MAC address {text:?}: not a unicast address"
        )));
    }
    Ok(mac)
}

/// 64 lower-case hex characters from the system's randomness.
fn random_id() -> Result<String, CnmError> {
    Ok(HEXLOWER.encode(&os_random::bytes::<32>()?))
}

/// A service's ID: SHA-256 of the network ID and the service name, in hex, so every node
/// derives the same ID for one service on one network (the swarm manager gives all the tasks
/// of a service one ID).
fn service_id(network_id: &str, service: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(network_id.as_bytes());
    ctx.update(b"/");
    ctx.update(service.as_bytes());
    HEXLOWER.encode(ctx.finish().as_ref())
}
