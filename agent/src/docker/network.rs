//! The network driver's calls: networks (recorded, then mapped), endpoints (their address
//! and MAC), joins (the agent's endpoint in a sandbox per container namespace, its interface
//! handed to dockerd) and leaves.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use ipnet::Ipv4Net;
use nodecore::{Endpoint, EndpointCreate, Engine, JoinRequest, SandboxCreate};
use overlay::Mac;

use super::names::fallback_name;
use super::plugin::{Plugin, PluginError, answer};
use super::protocol::{
    CreateEndpoint, CreateNetwork, EndpointAnswer, EndpointInterface, GENERIC_OPTIONS,
    InterfaceName, Join, JoinAnswer,
};
use super::state::{DockerState, EndpointState, NetworkState};
use crate::cnm::CnmError;

/// The prefix of the agent's sandboxes for Docker containers.
const SANDBOX_PREFIX: &str = "docker-";

impl Plugin {
    pub(super) fn create_network(
        self: &Arc<Self>,
        state: &mut DockerState,
        req: CreateNetwork,
    ) -> Result<serde_json::Value, PluginError> {
        self.check_id("network", &req.network_id)?;
        if req.ipv6_data.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(self.refused("IPv6 is not supported"));
        }
        let pools = req.ipv4_data.unwrap_or_default();
        let [pool] = pools.as_slice() else {
            return Err(self.refused(format_args!(
                "a network has exactly one IPv4 subnet (got {})",
                pools.len()
            )));
        };
        let generic: Vec<String> = req
            .options
            .as_ref()
            .and_then(|o| o.get(GENERIC_OPTIONS))
            .and_then(|g| g.as_object())
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        if !generic.is_empty() {
            return Err(self.refused(format_args!(
                "takes no driver options (-o {})",
                generic.join(", -o ")
            )));
        }
        let subnet = nodecore::parse_subnet(&pool.pool)?;
        let mut aux = BTreeSet::new();
        for text in pool.aux_addresses.iter().flat_map(|a| a.values()) {
            let ip = text.split('/').next().unwrap_or_default();
            aux.insert(nodecore::parse_ip(ip, "auxiliary address")?);
        }
        if let Some(p) = state.pools.get_mut(&subnet.to_string()) {
            p.aux.retain(|ip| !aux.contains(ip));
        }
        state.networks.insert(
            req.network_id.clone(),
            NetworkState {
                subnet,
                name: None,
                cluster_id: None,
                refused: None,
                aux,
                reserved: Default::default(),
            },
        );
        self.made(&req.network_id);
        tracing::info!(docker_network = %req.network_id, %subnet, "Docker network created; learning its name from dockerd");
        self.map_in_background(req.network_id);
        Ok(serde_json::json!({}))
    }

    /// Forgets dockerd's network `id` (the cluster network stays), giving back what is
    /// still reserved for it: a dockerd that deletes the network before it releases the
    /// auxiliary addresses leaves nothing behind.
    pub(super) async fn delete_network(&self, state: &mut DockerState, id: &str) {
        let Some(network) = state.networks.remove(id) else {
            return;
        };
        for (ip, cluster_id) in network.reserved {
            if let Err(e) = self.cnm.release_address(&cluster_id, ip).await {
                tracing::warn!(%ip, error = %e, "address of a deleted Docker network not given back");
            }
        }
        tracing::info!(docker_network = %id, name = ?network.name, "Docker network deleted (the cluster network stays)");
    }

    pub(super) async fn create_endpoint(
        &self,
        state: &mut DockerState,
        req: CreateEndpoint,
    ) -> Result<serde_json::Value, PluginError> {
        self.check_id("endpoint", &req.endpoint_id)?;
        let cluster_id = self.bind(state, &req.network_id).await?;
        let iface = req.interface.unwrap_or_default();
        if iface.address.is_empty() {
            return Err(self.refused(format_args!(
                "the endpoint has no IPv4 address: create the network with --ipam-driver {}",
                self.name
            )));
        }
        let cidr: Ipv4Net = iface.address.parse().map_err(|_| {
            self.refused(format_args!("invalid endpoint address {:?}", iface.address))
        })?;
        let (mac, answered) = if iface.mac_address.is_empty() {
            let mac = Mac::from_ipv4(cidr.addr());
            (mac, mac.to_string())
        } else {
            let mac: Mac = iface.mac_address.parse().map_err(|_| {
                self.refused(format_args!("invalid MAC address {:?}", iface.mac_address))
            })?;
            (mac, String::new())
        };
        self.made(&req.endpoint_id);
        state.endpoints.insert(
            req.endpoint_id,
            EndpointState {
                network: req.network_id,
                ip: cidr.addr(),
                mac,
                cluster_id: Some(cluster_id),
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

    pub(super) async fn join(
        self: &Arc<Self>,
        state: &mut DockerState,
        req: Join,
    ) -> Result<serde_json::Value, PluginError> {
        let Some(endpoint) = state.endpoints.get(&req.endpoint_id).cloned() else {
            return Err(self.refused(format_args!(
                "unknown endpoint {}: netagent has no record of it (was its state directory \
                 lost?); remove and start the container again",
                req.endpoint_id
            )));
        };
        let cluster_id = match &endpoint.cluster_id {
            Some(id) => id.clone(),
            None => self.bind(state, &req.network_id).await?,
        };
        // dockerd answers at once, except while it restores its containers after a
        // restart: the join then goes on under a placeholder name, replaced once known.
        let name = Self::container_name(
            &self.engine,
            &req.network_id,
            &req.endpoint_id,
            super::names::JOIN_NAME_WAIT,
        )
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| fallback_name(&req.endpoint_id));
        let sandbox = sandbox_name(&req.sandbox_key)?;
        match self.cnm.sandbox(&sandbox).await {
            Ok(info) if info.engine != Some(Engine::Docker) => {
                return Err(self.refused(format_args!(
                    "sandbox {sandbox} exists and is not a Docker container's"
                )));
            }
            Ok(_) => {}
            Err(_) => {
                self.cnm
                    .create_sandbox(SandboxCreate {
                        name: sandbox.clone(),
                        netns: req.sandbox_key.clone(),
                        resolv_conf: None,
                        engine: Some(Engine::Docker),
                    })
                    .await?;
            }
        }
        // A leftover of a join that failed half-way is replaced.
        if let Some(old) = self.agent_endpoint(&cluster_id, endpoint.ip).await?
            && old.sandbox.is_none()
        {
            let _ = self.cnm.remove_endpoint(&cluster_id, &old.name).await;
        }
        // Recorded first: whatever a crash interrupts, the leave finds the endpoint.
        if let Some(e) = state.endpoints.get_mut(&req.endpoint_id) {
            e.cluster_id = Some(cluster_id.clone());
            e.sandbox = Some(sandbox.clone());
        }
        self.save(state);
        let created = self
            .cnm
            .create_endpoint(EndpointCreate {
                network: cluster_id.clone(),
                name: name.clone(),
                ip: Some(endpoint.ip.to_string()),
                mac: Some(endpoint.mac.to_string()),
                service: None,
                aliases: Vec::new(),
            })
            .await;
        if let Err(e) = created {
            self.remove_sandbox_if_empty(&sandbox).await;
            forget_join(state, &req.endpoint_id);
            return Err(e.into());
        }
        let join = JoinRequest {
            sandbox: sandbox.clone(),
            ifname: None,
        };
        let ifname = match self.cnm.join_sandbox(&cluster_id, &name, join).await {
            Ok((_, Some(ifname))) => ifname,
            result => {
                if result.is_ok() {
                    let _ = self.cnm.leave(&cluster_id, &name).await;
                }
                let _ = self.cnm.remove_endpoint(&cluster_id, &name).await;
                self.remove_sandbox_if_empty(&sandbox).await;
                forget_join(state, &req.endpoint_id);
                return Err(match result {
                    Err(e) => e.into(),
                    Ok(_) => self.refused("no interface was made for the container"),
                });
            }
        };
        let network_name = state
            .networks
            .get(&req.network_id)
            .and_then(|n| n.name.clone())
            .unwrap_or_default();
        tracing::info!(container = %name, network = %network_name, interface = %ifname, "Docker container joined");
        self.learn_names(req.endpoint_id.clone(), req.network_id.clone(), name);
        answer(JoinAnswer {
            interface_name: InterfaceName {
                src_name: ifname,
                dst_prefix: "eth",
            },
            disable_gateway_service: true,
        })
    }

    /// Withdraws a joined endpoint: the agent's endpoint (found by its cluster network and
    /// address) leaves and is removed (its address stays reserved until dockerd releases
    /// it), and the sandbox goes with its last endpoint. A failure to detach the interface
    /// is returned, not hidden.
    pub(super) async fn leave(
        &self,
        state: &mut DockerState,
        endpoint_id: &str,
    ) -> Result<(), PluginError> {
        let Some(endpoint) = state.endpoints.get(endpoint_id).cloned() else {
            return Ok(());
        };
        if let Some(cluster_id) = &endpoint.cluster_id
            && let Some(agent) = self.agent_endpoint(cluster_id, endpoint.ip).await?
        {
            if agent.sandbox.is_some() {
                self.cnm.leave(cluster_id, &agent.name).await?;
            }
            match self.cnm.remove_endpoint(cluster_id, &agent.name).await {
                Ok(_) => {}
                Err(CnmError::Core(e)) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(container = %agent.name, "Docker container left");
            if let Some(sandbox) = &agent.sandbox {
                self.remove_sandbox_if_empty(sandbox).await;
            }
        }
        if let Some(sandbox) = &endpoint.sandbox {
            self.remove_sandbox_if_empty(sandbox).await;
        }
        forget_join(state, endpoint_id);
        Ok(())
    }

    /// The agent's endpoint on cluster network `cluster_id` with address `ip`, if any.
    pub(super) async fn agent_endpoint(
        &self,
        cluster_id: &str,
        ip: std::net::Ipv4Addr,
    ) -> Result<Option<Endpoint>, PluginError> {
        match self.cnm.endpoints(Some(cluster_id)).await {
            Ok(list) => Ok(list.into_iter().find(|e| e.ip == ip)),
            Err(CnmError::Core(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_sandbox_if_empty(&self, sandbox: &str) {
        if let Ok(info) = self.cnm.sandbox(sandbox).await
            && info.endpoints.is_empty()
        {
            let _ = self.cnm.remove_sandbox(sandbox).await;
        }
    }
}

/// Clears what a join recorded of an endpoint.
fn forget_join(state: &mut DockerState, endpoint_id: &str) {
    if let Some(e) = state.endpoints.get_mut(endpoint_id) {
        e.sandbox = None;
    }
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
