//! [`Plugin`]: Docker's remote network driver and IPAM driver, one plugin, on the agent's
//! [`Cnm`].
//!
//! How dockerd's objects map to the cluster's:
//! * **Networks.** dockerd without swarm keeps plugin networks local: each host runs its own
//!   `docker network create`, with its own ID. A Docker network maps to the cluster network
//!   of its name, created by the first host and adopted by the others; another subnet under
//!   an existing name is refused. The protocol carries no name, so the plugin asks dockerd's
//!   API (`docker_api`) once dockerd has stored the network. `docker network rm` forgets the
//!   mapping; the cluster network stays (`netagent network rm` removes it).
//! * **Addresses.** The IPAM driver's pool is the subnet (pool ID = the subnet). Its
//!   `RequestAddress` reserves an address in the cluster network's pool through the
//!   cluster-wide allocator (`--ip` and `--aux-address` through the same rules); the
//!   gateway is the subnet's first address, as for every cluster network.
//! * **Endpoints.** `CreateEndpoint` records the address; `Join` creates the agent's
//!   endpoint, named after the container (asked of dockerd, with its `--network-alias`es),
//!   in a sandbox per container namespace, and answers the interface the overlay driver made
//!   for dockerd to move into the container; `Leave` withdraws it cluster-wide.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use nodecore::{CoreError, EndpointCreate, Engine, NetworkCreate, SandboxCreate};
use overlay::Mac;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use super::engine_api::{EngineApi, EngineApiError};
use super::protocol::{
    Activate, AddressAnswer, AddressSpaces, CreateEndpoint, CreateNetwork, EndpointAnswer,
    EndpointInterface, EndpointRef, ErrorAnswer, GATEWAY_REQUEST, GENERIC_OPTIONS, InterfaceName,
    IpamCapabilities, Join, JoinAnswer, NetworkCapabilities, NetworkRef, OperInfo, PoolAnswer,
    REQUEST_ADDRESS_TYPE, ReleaseAddress, ReleasePool, RequestAddress, RequestPool,
};
use super::state::{DockerState, EndpointState, NetworkState, PoolState};
use super::stats::PluginStats;
use crate::cnm::{Cnm, CnmError, StoreError};

/// How long the plugin waits for dockerd to store a network it just created, to learn its
/// name.
const NAME_WAIT: Duration = Duration::from_secs(10);

/// How often it asks meanwhile.
const NAME_POLL: Duration = Duration::from_millis(50);

/// How long a join waits for dockerd to tell the container's name.
const JOIN_NAME_WAIT: Duration = Duration::from_millis(500);

/// How long the plugin keeps asking dockerd for a joined container's names: dockerd does
/// not answer while it restores its containers after a restart.
const RESTORE_WAIT: Duration = Duration::from_secs(120);

/// The prefix of the agent's sandboxes for Docker containers.
const SANDBOX_PREFIX: &str = "docker-";

/// Why a plugin call failed; the message is what dockerd shows its user.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The request cannot be honoured as asked.
    #[error("{0}")]
    Refused(String),
    /// The body is not the protocol's.
    #[error("invalid {method} request: {source}")]
    Body {
        /// The method.
        method: String,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// The agent's CNM refused or failed.
    #[error(transparent)]
    Cnm(#[from] CnmError),
    /// dockerd's API could not be asked.
    #[error(transparent)]
    Engine(#[from] EngineApiError),
    /// The plugin's state could not be saved.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CoreError> for PluginError {
    fn from(e: CoreError) -> Self {
        Self::Cnm(CnmError::from(e))
    }
}

/// The Docker plugin of one agent.
pub struct Plugin {
    name: String,
    cnm: Arc<Cnm>,
    engine: EngineApi,
    state_dir: PathBuf,
    /// Every call but `EndpointOperInfo` runs under this lock, one at a time.
    state: Mutex<DockerState>,
    stats: Arc<PluginStats>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin `name` of the agent's `cnm`, asking dockerd at `docker_api`, with its
    /// state in `state_dir/docker.json` (loaded now), counting its calls in `stats`.
    pub fn new(
        name: &str,
        cnm: Arc<Cnm>,
        docker_api: &Path,
        state_dir: &Path,
        stats: Arc<PluginStats>,
    ) -> Result<Arc<Self>, StoreError> {
        let state = DockerState::load(state_dir)?;
        Ok(Arc::new(Self {
            name: name.to_owned(),
            cnm,
            engine: EngineApi::new(docker_api),
            state_dir: state_dir.to_path_buf(),
            state: Mutex::new(state),
            stats,
        }))
    }

    /// The plugin's name (the driver name dockerd knows it by).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Answers one call: `method` (`Plugin.Activate`, `NetworkDriver.Join`...) with its JSON
    /// body. Returns the JSON answer; an error is an answer with `Err`.
    pub async fn call(self: &Arc<Self>, method: &str, body: &[u8]) -> Vec<u8> {
        let result = self.dispatch(method, body).await;
        self.stats.count(method, result.is_ok());
        let json = match result {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(method, error = %e, "Docker plugin call refused");
                serde_json::to_value(ErrorAnswer {
                    err: e.to_string(),
                    error: e.to_string(),
                })
                .unwrap_or(serde_json::Value::Null)
            }
        };
        serde_json::to_vec(&json).unwrap_or_else(|_| b"{}".to_vec())
    }

    async fn dispatch(
        self: &Arc<Self>,
        method: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, PluginError> {
        match method {
            "Plugin.Activate" => answer(Activate {
                implements: vec!["NetworkDriver", "IpamDriver"],
            }),
            "NetworkDriver.GetCapabilities" => answer(NetworkCapabilities {
                scope: "local",
                connectivity_scope: "global",
            }),
            "IpamDriver.GetCapabilities" => answer(IpamCapabilities {
                requires_mac_address: false,
                requires_request_replay: false,
            }),
            "IpamDriver.GetDefaultAddressSpaces" => answer(AddressSpaces {
                local_default_address_space: "netctl-local",
                global_default_address_space: "netctl-global",
            }),
            "NetworkDriver.EndpointOperInfo" => {
                let _: EndpointRef = parse(method, body)?;
                answer(OperInfo {
                    value: BTreeMap::new(),
                })
            }
            "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity" => Ok(serde_json::json!({})),
            "NetworkDriver.AllocateNetwork" | "NetworkDriver.FreeNetwork" => {
                Err(PluginError::Refused(format!(
                    "{}: swarm-scoped networks are not supported; create the network on each \
                     host with docker network create -d {}",
                    self.name, self.name
                )))
            }
            _ => {
                let mut state = self.state.lock().await;
                let result = self.stateful(&mut state, method, body).await;
                // Whatever changed is saved, failed calls included (a reservation made
                // before a later step failed).
                let saved = state.save(&self.state_dir);
                drop(state);
                let value = result?;
                saved?;
                Ok(value)
            }
        }
    }

    async fn stateful(
        self: &Arc<Self>,
        state: &mut DockerState,
        method: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, PluginError> {
        match method {
            "IpamDriver.RequestPool" => self.request_pool(state, parse(method, body)?),
            "IpamDriver.ReleasePool" => {
                let req: ReleasePool = parse(method, body)?;
                state.pools.remove(&req.pool_id);
                Ok(serde_json::json!({}))
            }
            "IpamDriver.RequestAddress" => self.request_address(state, parse(method, body)?).await,
            "IpamDriver.ReleaseAddress" => self.release_address(state, parse(method, body)?).await,
            "NetworkDriver.CreateNetwork" => self.create_network(state, parse(method, body)?),
            "NetworkDriver.DeleteNetwork" => {
                let req: NetworkRef = parse(method, body)?;
                if let Some(n) = state.networks.remove(&req.network_id) {
                    tracing::info!(docker_network = %req.network_id, name = ?n.name, "Docker network deleted (the cluster network stays)");
                }
                Ok(serde_json::json!({}))
            }
            "NetworkDriver.CreateEndpoint" => {
                self.create_endpoint(state, parse(method, body)?).await
            }
            "NetworkDriver.DeleteEndpoint" => {
                let req: EndpointRef = parse(method, body)?;
                self.leave(state, &req.endpoint_id).await?;
                state.endpoints.remove(&req.endpoint_id);
                Ok(serde_json::json!({}))
            }
            "NetworkDriver.Join" => self.join(state, parse(method, body)?).await,
            "NetworkDriver.Leave" => {
                let req: EndpointRef = parse(method, body)?;
                self.leave(state, &req.endpoint_id).await?;
                Ok(serde_json::json!({}))
            }
            other => Err(PluginError::Refused(format!(
                "{}: unknown method {other}",
                self.name
            ))),
        }
    }

    // ---- IPAM driver ----

    fn request_pool(
        &self,
        state: &mut DockerState,
        req: RequestPool,
    ) -> Result<serde_json::Value, PluginError> {
        if req.v6 {
            return Err(PluginError::Refused(format!(
                "{}: IPv6 is not supported; create the network without --ipv6",
                self.name
            )));
        }
        if req.pool.is_empty() {
            return Err(PluginError::Refused(format!(
                "{}: give the network's subnet (docker network create --subnet ...): it is the \
                 same on every host",
                self.name
            )));
        }
        if !req.sub_pool.is_empty() {
            return Err(PluginError::Refused(format!(
                "{}: --ip-range is not supported: the cluster's allocator spreads addresses \
                 over the whole subnet",
                self.name
            )));
        }
        if req.options.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(PluginError::Refused(format!(
                "{}: takes no --ipam-opt options",
                self.name
            )));
        }
        let subnet = nodecore::parse_subnet(&req.pool)?;
        let id = subnet.to_string();
        if state.pools.contains_key(&id) || state.network_with_subnet(subnet).is_some() {
            return Err(PluginError::Refused(format!(
                "{}: subnet {subnet} is used by another Docker network on this host",
                self.name
            )));
        }
        state.pools.insert(id.clone(), PoolState::default());
        let _ = req.address_space;
        answer(PoolAnswer {
            pool_id: id.clone(),
            pool: id,
            data: BTreeMap::new(),
        })
    }

    async fn request_address(
        self: &Arc<Self>,
        state: &mut DockerState,
        req: RequestAddress,
    ) -> Result<serde_json::Value, PluginError> {
        let subnet = pool_subnet(&req.pool_id)?;
        let given = if req.address.is_empty() {
            None
        } else {
            Some(nodecore::parse_ip(&req.address, "address")?)
        };
        let gateway = nodecore::gateway(subnet);
        let is_gateway = req
            .options
            .as_ref()
            .and_then(|o| o.get(REQUEST_ADDRESS_TYPE))
            .is_some_and(|t| t == GATEWAY_REQUEST);
        let ip = if is_gateway {
            if let Some(ip) = given
                && ip != gateway
            {
                return Err(PluginError::Refused(format!(
                    "{}: the gateway of a cluster network is its subnet's first address, \
                     {gateway}: leave out --gateway or give {gateway}",
                    self.name
                )));
            }
            gateway
        } else {
            match (
                state.network_with_subnet(subnet).map(|(id, _)| id.clone()),
                given,
            ) {
                // An --aux-address: dockerd asks before it creates the network.
                (None, Some(ip)) => {
                    nodecore::check_address(subnet, ip, "auxiliary address")?;
                    state
                        .pools
                        .entry(subnet.to_string())
                        .or_default()
                        .aux
                        .insert(ip);
                    ip
                }
                (None, None) => {
                    return Err(PluginError::Refused(format!(
                        "{}: no Docker network of this host has subnet {subnet}",
                        self.name
                    )));
                }
                (Some(docker_id), given) => {
                    let cluster_id = self.bind(state, &docker_id).await?;
                    self.cnm.reserve_address(&cluster_id, given).await?
                }
            }
        };
        answer(AddressAnswer {
            address: format!("{ip}/{}", subnet.prefix_len()),
            data: BTreeMap::new(),
        })
    }

    async fn release_address(
        &self,
        state: &mut DockerState,
        req: ReleaseAddress,
    ) -> Result<serde_json::Value, PluginError> {
        let subnet = pool_subnet(&req.pool_id)?;
        let ip = nodecore::parse_ip(&req.address, "address")?;
        if ip == nodecore::gateway(subnet) {
            return Ok(serde_json::json!({}));
        }
        if let Some(pool) = state.pools.get_mut(&subnet.to_string())
            && pool.aux.remove(&ip)
        {
            return Ok(serde_json::json!({}));
        }
        if let Some(network) = state.networks.values_mut().find(|n| n.subnet == subnet) {
            network.aux.remove(&ip);
            if let Some(cluster_id) = &network.cluster_id {
                self.cnm.release_address(cluster_id, ip).await?;
            }
        }
        Ok(serde_json::json!({}))
    }

    // ---- network driver ----

    fn create_network(
        self: &Arc<Self>,
        state: &mut DockerState,
        req: CreateNetwork,
    ) -> Result<serde_json::Value, PluginError> {
        if req.ipv6_data.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(PluginError::Refused(format!(
                "{}: IPv6 is not supported",
                self.name
            )));
        }
        let pools = req.ipv4_data.unwrap_or_default();
        let [pool] = pools.as_slice() else {
            return Err(PluginError::Refused(format!(
                "{}: a network has exactly one IPv4 subnet (got {})",
                self.name,
                pools.len()
            )));
        };
        let generic = req
            .options
            .as_ref()
            .and_then(|o| o.get(GENERIC_OPTIONS))
            .and_then(|g| g.as_object())
            .map(|g| g.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        if !generic.is_empty() {
            return Err(PluginError::Refused(format!(
                "{}: takes no driver options (-o {})",
                self.name,
                generic.join(", -o ")
            )));
        }
        let subnet = nodecore::parse_subnet(&pool.pool)?;
        let mut aux = std::collections::BTreeSet::new();
        for text in pool.aux_addresses.iter().flat_map(|a| a.values()) {
            let ip = text.split('/').next().unwrap_or_default();
            aux.insert(nodecore::parse_ip(ip, "auxiliary address")?);
        }
        if let Some(p) = state.pools.get_mut(&subnet.to_string()) {
            p.aux.retain(|ip| !aux.contains(ip));
        }
        let _ = &pool.address_space;
        let _ = &pool.gateway;
        state.networks.insert(
            req.network_id.clone(),
            NetworkState {
                subnet,
                name: None,
                cluster_id: None,
                refused: None,
                aux,
            },
        );
        tracing::info!(docker_network = %req.network_id, %subnet, "Docker network created; learning its name from dockerd");
        // dockerd stores the network once this call returns: learn its name then, and
        // create or adopt the cluster network.
        let plugin = Arc::clone(self);
        let id = req.network_id;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + NAME_WAIT;
            loop {
                tokio::time::sleep(NAME_POLL).await;
                let mut state = plugin.state.lock().await;
                if !state.networks.contains_key(&id) {
                    return;
                }
                let result = plugin.bind(&mut state, &id).await;
                if let Err(e) = state.save(&plugin.state_dir) {
                    tracing::error!(error = %e, "cannot save the Docker plugin's state");
                }
                drop(state);
                match result {
                    Ok(_) => return,
                    Err(PluginError::Refused(msg)) => {
                        tracing::error!(docker_network = %id, "{msg}");
                        return;
                    }
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::warn!(docker_network = %id, error = %e, "cannot map the Docker network to a cluster network yet; its first container will try again");
                        return;
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(serde_json::json!({}))
    }

    async fn create_endpoint(
        &self,
        state: &mut DockerState,
        req: CreateEndpoint,
    ) -> Result<serde_json::Value, PluginError> {
        self.known_network(state, &req.network_id).await?;
        self.bind(state, &req.network_id).await?;
        let iface = req.interface.unwrap_or_default();
        if iface.address.is_empty() {
            return Err(PluginError::Refused(format!(
                "{}: the endpoint has no IPv4 address: create the network with --ipam-driver {}",
                self.name, self.name
            )));
        }
        let cidr: Ipv4Net = iface.address.parse().map_err(|_| {
            PluginError::Refused(format!(
                "{}: invalid endpoint address {:?}",
                self.name, iface.address
            ))
        })?;
        let (mac, answered) = if iface.mac_address.is_empty() {
            let mac = Mac::from_ipv4(cidr.addr());
            (mac, mac.to_string())
        } else {
            let mac: Mac = iface.mac_address.parse().map_err(|_| {
                PluginError::Refused(format!(
                    "{}: invalid MAC address {:?}",
                    self.name, iface.mac_address
                ))
            })?;
            (mac, String::new())
        };
        state.endpoints.insert(
            req.endpoint_id,
            EndpointState {
                network: req.network_id,
                ip: cidr.addr(),
                mac,
                name: None,
                sandbox: None,
            },
        );
        answer(EndpointAnswer {
            interface: EndpointInterface {
                mac_address: answered,
                ..EndpointInterface::default()
            },
        })
    }

    async fn join(
        self: &Arc<Self>,
        state: &mut DockerState,
        req: Join,
    ) -> Result<serde_json::Value, PluginError> {
        let Some(endpoint) = state.endpoints.get(&req.endpoint_id).cloned() else {
            return Err(PluginError::Refused(format!(
                "{}: unknown endpoint {}: netagent has no record of it (was its state \
                 directory lost?); remove and start the container again",
                self.name, req.endpoint_id
            )));
        };
        let cluster_id = self.bind(state, &req.network_id).await?;
        let docker_name = state
            .networks
            .get(&req.network_id)
            .and_then(|n| n.name.clone())
            .unwrap_or_default();
        // dockerd answers at once, except while it restores its containers after a
        // restart: the join then goes on under a placeholder name, replaced once known.
        let name = Self::container_name(
            &self.engine,
            &req.network_id,
            &req.endpoint_id,
            JOIN_NAME_WAIT,
        )
        .await
        .unwrap_or_else(|| fallback_name(&req.endpoint_id));
        let sandbox = sandbox_name(&req.sandbox_key)?;
        if self.cnm.sandbox(&sandbox).await.is_err() {
            self.cnm
                .create_sandbox(SandboxCreate {
                    name: sandbox.clone(),
                    netns: req.sandbox_key.clone(),
                    resolv_conf: None,
                    engine: Some(Engine::Docker),
                })
                .await?;
        }
        // A leftover of a join that failed half-way is replaced.
        if let Ok(old) = self.cnm.endpoint(&cluster_id, &name).await
            && old.sandbox.is_none()
        {
            let _ = self.cnm.remove_endpoint(&cluster_id, &name).await;
        }
        self.cnm
            .create_endpoint(EndpointCreate {
                network: cluster_id.clone(),
                name: name.clone(),
                ip: Some(endpoint.ip.to_string()),
                mac: Some(endpoint.mac.to_string()),
                service: None,
                aliases: Vec::new(),
            })
            .await?;
        let ifname = match self.cnm.join_sandbox(&cluster_id, &name, &sandbox).await {
            Ok((_, Some(ifname))) => ifname,
            Ok((_, None)) => {
                return Err(PluginError::Refused(format!(
                    "{}: no interface was made for the container",
                    self.name
                )));
            }
            Err(e) => {
                let _ = self.cnm.remove_endpoint(&cluster_id, &name).await;
                self.remove_sandbox_if_empty(&sandbox).await;
                return Err(e.into());
            }
        };
        if let Some(e) = state.endpoints.get_mut(&req.endpoint_id) {
            e.name = Some(name.clone());
            e.sandbox = Some(sandbox);
        }
        tracing::info!(container = %name, network = %docker_name, interface = %ifname, "Docker container joined");
        self.learn_names(req.endpoint_id.clone(), req.network_id.clone(), name);
        answer(JoinAnswer {
            interface_name: InterfaceName {
                src_name: ifname,
                dst_prefix: "eth",
            },
            disable_gateway_service: true,
        })
    }

    /// Withdraws a joined endpoint: the agent's endpoint leaves and is removed (its address
    /// stays reserved until dockerd releases it), and the sandbox goes with its last one.
    async fn leave(&self, state: &mut DockerState, endpoint_id: &str) -> Result<(), PluginError> {
        let Some(endpoint) = state.endpoints.get(endpoint_id).cloned() else {
            return Ok(());
        };
        let cluster_id = state
            .networks
            .get(&endpoint.network)
            .and_then(|n| n.cluster_id.clone());
        if let (Some(name), Some(cluster_id)) = (&endpoint.name, cluster_id) {
            match self.cnm.leave(&cluster_id, name).await {
                Ok(_) => {}
                Err(CnmError::Core(CoreError::NotFound(_) | CoreError::Conflict(_))) => {}
                Err(e) => return Err(e.into()),
            }
            match self.cnm.remove_endpoint(&cluster_id, name).await {
                Ok(_) | Err(CnmError::Core(CoreError::NotFound(_))) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(container = %name, "Docker container left");
        }
        if let Some(sandbox) = &endpoint.sandbox {
            self.remove_sandbox_if_empty(sandbox).await;
        }
        if let Some(e) = state.endpoints.get_mut(endpoint_id) {
            e.name = None;
            e.sandbox = None;
        }
        Ok(())
    }

    async fn remove_sandbox_if_empty(&self, sandbox: &str) {
        if let Ok(info) = self.cnm.sandbox(sandbox).await
            && info.endpoints.is_empty()
        {
            let _ = self.cnm.remove_sandbox(sandbox).await;
        }
    }

    // ---- mapping ----

    /// Makes sure the plugin knows dockerd's network `id`: after a loss of the plugin's
    /// state, a network of this driver that dockerd knows is taken up again.
    async fn known_network(&self, state: &mut DockerState, id: &str) -> Result<(), PluginError> {
        if state.networks.contains_key(id) {
            return Ok(());
        }
        let unknown = || {
            PluginError::Refused(format!(
                "{}: unknown network ID {id}: netagent has no record of it and dockerd does \
                 not know it as a {} network",
                self.name, self.name
            ))
        };
        let Some(info) = self.engine.network(id).await? else {
            return Err(unknown());
        };
        if info.driver != self.name {
            return Err(unknown());
        }
        let Some(subnet) = info.subnets.first() else {
            return Err(unknown());
        };
        let subnet = nodecore::parse_subnet(subnet)?;
        tracing::info!(docker_network = %id, name = %info.name, "Docker network taken up again from dockerd");
        state.networks.insert(
            id.to_owned(),
            NetworkState {
                subnet,
                name: Some(info.name),
                cluster_id: None,
                refused: None,
                aux: Default::default(),
            },
        );
        Ok(())
    }

    /// The cluster network dockerd's network `id` maps to: created or adopted by name the
    /// first time (the name asked of dockerd).
    async fn bind(&self, state: &mut DockerState, id: &str) -> Result<String, PluginError> {
        self.known_network(state, id).await?;
        let Some(network) = state.networks.get(id).cloned() else {
            return Err(PluginError::Refused(format!(
                "{}: unknown network ID {id}",
                self.name
            )));
        };
        if let Some(reason) = network.refused {
            return Err(PluginError::Refused(reason));
        }
        if let (Some(cluster_id), Some(name)) = (&network.cluster_id, &network.name) {
            // Still the catalogue's network of that name (two hosts that created one name
            // at once end with one of the two networks)?
            match self.cnm.network(name).await {
                Ok(spec) if spec.id == *cluster_id => return Ok(spec.id),
                // Out of sight for now (its owner away): the mapping stands.
                Err(CnmError::Core(CoreError::NotFound(_))) => return Ok(cluster_id.clone()),
                Ok(_) => {
                    tracing::warn!(docker_network = %id, network = %name, "the cluster network of this name was replaced: mapping again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let name = match network.name {
            Some(name) => name,
            None => match self.engine.network(id).await? {
                Some(info) => info.name,
                None => {
                    return Err(PluginError::Refused(format!(
                        "{}: dockerd does not know network {id} yet",
                        self.name
                    )));
                }
            },
        };
        let spec = match self.cnm.network(&name).await {
            Ok(spec) => spec,
            Err(CnmError::Core(CoreError::NotFound(_))) => {
                match self
                    .cnm
                    .create_network(NetworkCreate {
                        name: name.clone(),
                        subnet: network.subnet.to_string(),
                        ..NetworkCreate::default()
                    })
                    .await
                {
                    Ok(spec) => spec,
                    // Created elsewhere meanwhile.
                    Err(CnmError::Core(CoreError::Conflict(_))) => self.cnm.network(&name).await?,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let entry = state
            .networks
            .get_mut(id)
            .ok_or_else(|| PluginError::Refused(format!("{}: network {id} is gone", self.name)))?;
        entry.name = Some(name.clone());
        if spec.subnet != network.subnet {
            let reason = format!(
                "{}: network {name} exists in the cluster with subnet {}, but this Docker network \
                 has {}: remove it (docker network rm {name}) and create it again with --subnet {}",
                self.name, spec.subnet, network.subnet, spec.subnet
            );
            entry.refused = Some(reason.clone());
            return Err(PluginError::Refused(reason));
        }
        entry.cluster_id = Some(spec.id.clone());
        tracing::info!(docker_network = %id, network = %name, cluster_id = %spec.id, "Docker network mapped to the cluster network");
        // Auxiliary addresses are kept from every container: held by anyone is enough.
        for ip in network.aux {
            match self.cnm.reserve_address(&spec.id, Some(ip)).await {
                Ok(_) | Err(CnmError::Core(CoreError::Conflict(_))) => {}
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "auxiliary address not reserved");
                }
            }
        }
        Ok(spec.id)
    }

    /// The container's name, asked of dockerd within `wait`; `None` if dockerd does not say
    /// (it does not answer while it restores its containers after a restart).
    async fn container_name(
        engine: &EngineApi,
        network_id: &str,
        endpoint_id: &str,
        wait: Duration,
    ) -> Option<String> {
        match tokio::time::timeout(wait, engine.network(network_id)).await {
            Ok(Ok(Some(info))) => info
                .endpoints
                .get(endpoint_id)
                .cloned()
                .filter(|n| nodecore::check_name("endpoint", n).is_ok()),
            _ => None,
        }
    }

    /// Learns the container's name (if the join had to do without it) and its
    /// `--network-alias`es (and the short ID dockerd adds), which dockerd tells only once the
    /// container has started, after `Join`: asked in the background until then (bounded),
    /// then published.
    fn learn_names(
        self: &Arc<Self>,
        endpoint_id: String,
        docker_network: String,
        joined_as: String,
    ) {
        let plugin = Arc::clone(self);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + RESTORE_WAIT;
            let name = if joined_as == fallback_name(&endpoint_id) {
                loop {
                    if let Some(name) = Self::container_name(
                        &plugin.engine,
                        &docker_network,
                        &endpoint_id,
                        NAME_POLL * 20,
                    )
                    .await
                    {
                        break name;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        tracing::warn!(endpoint = %endpoint_id, "dockerd did not tell the container's name: it resolves by its endpoint ID's prefix only");
                        return;
                    }
                    tokio::time::sleep(NAME_POLL).await;
                }
            } else {
                joined_as.clone()
            };
            let network_name = {
                let state = plugin.state.lock().await;
                state
                    .networks
                    .get(&docker_network)
                    .and_then(|n| n.name.clone())
                    .unwrap_or_default()
            };
            let aliases = loop {
                match plugin.engine.aliases(&name, &network_name).await {
                    Ok(Some(a)) => break a,
                    Ok(None) => return,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::warn!(container = %name, error = %e, "cannot ask dockerd for the container's aliases");
                        break Vec::new();
                    }
                    Err(_) => tokio::time::sleep(NAME_POLL).await,
                }
            };
            let mut aliases: Vec<String> = aliases
                .into_iter()
                .filter(|a| *a != name && nodecore::check_aliases(std::slice::from_ref(a)).is_ok())
                .collect();
            aliases.sort();
            aliases.dedup();
            aliases.truncate(nodecore::MAX_ALIASES);
            if name == joined_as && aliases.is_empty() {
                return;
            }
            // Under the plugin's lock: a leave cannot run in between.
            let mut state = plugin.state.lock().await;
            let Some(endpoint) = state.endpoints.get(&endpoint_id) else {
                return;
            };
            if endpoint.name.as_deref() != Some(joined_as.as_str()) {
                return;
            }
            let Some(cluster_id) = state
                .networks
                .get(&docker_network)
                .and_then(|n| n.cluster_id.clone())
            else {
                return;
            };
            match plugin
                .cnm
                .set_names(&cluster_id, &joined_as, &name, aliases.clone())
                .await
            {
                Ok(_) => {
                    if let Some(e) = state.endpoints.get_mut(&endpoint_id) {
                        e.name = Some(name.clone());
                    }
                    if let Err(e) = state.save(&plugin.state_dir) {
                        tracing::error!(error = %e, "cannot save the Docker plugin's state");
                    }
                    tracing::info!(container = %name, ?aliases, "container names published");
                }
                Err(e) => {
                    tracing::warn!(container = %name, error = %e, "container names not published")
                }
            }
        });
    }
}

/// The name of a container's endpoint until dockerd tells the container's name: the
/// endpoint ID's first 12 characters.
fn fallback_name(endpoint_id: &str) -> String {
    endpoint_id.chars().take(12).collect()
}

/// The agent's sandbox for a container's namespace.
fn sandbox_name(sandbox_key: &str) -> Result<String, PluginError> {
    let base = Path::new(sandbox_key)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let name = format!("{SANDBOX_PREFIX}{base}");
    nodecore::check_name("sandbox", &name)?;
    Ok(name)
}

/// The subnet a pool ID names.
fn pool_subnet(pool_id: &str) -> Result<Ipv4Net, PluginError> {
    nodecore::parse_subnet(pool_id).map_err(|_| {
        PluginError::Refused(format!(
            "unknown pool {pool_id:?}: not a pool of this plugin"
        ))
    })
}

fn parse<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, PluginError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|source| PluginError::Body {
        method: method.to_owned(),
        source,
    })
}

fn answer<T: Serialize>(value: T) -> Result<serde_json::Value, PluginError> {
    serde_json::to_value(value).map_err(|source| PluginError::Body {
        method: "answer".into(),
        source,
    })
}
