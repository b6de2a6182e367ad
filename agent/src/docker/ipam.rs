//! The IPAM driver's calls: a pool is a subnet (its ID is the subnet), the gateway is the
//! subnet's first address, and every other address is reserved in the cluster network's
//! pool through the cluster-wide allocator, recorded with that network so it is given back
//! there.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::plugin::{Plugin, PluginError, answer};
use super::protocol::{
    AddressAnswer, GATEWAY_REQUEST, PoolAnswer, REQUEST_ADDRESS_TYPE, ReleaseAddress,
    RequestAddress, RequestPool,
};
use super::state::{DockerState, PoolState};

impl Plugin {
    pub(super) fn request_pool(
        &self,
        state: &mut DockerState,
        req: RequestPool,
    ) -> Result<serde_json::Value, PluginError> {
        if req.v6 {
            return Err(self.refused("IPv6 is not supported; create the network without --ipv6"));
        }
        if req.pool.is_empty() {
            return Err(self.refused(
                "give the network's subnet (docker network create --subnet ...): it is the same \
                 on every host",
            ));
        }
        if !req.sub_pool.is_empty() {
            return Err(self.refused(
                "--ip-range is not supported: the cluster's allocator spreads addresses over the \
                 whole subnet",
            ));
        }
        if req.options.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(self.refused("takes no --ipam-opt options"));
        }
        let subnet = nodecore::parse_subnet(&req.pool)?;
        let id = subnet.to_string();
        if state.pools.contains_key(&id) || state.network_with_subnet(subnet).is_some() {
            return Err(self.refused(format_args!(
                "subnet {subnet} is used by another Docker network on this host"
            )));
        }
        state.pools.insert(id.clone(), PoolState::default());
        answer(PoolAnswer {
            pool_id: id.clone(),
            pool: id,
            data: BTreeMap::new(),
        })
    }

    pub(super) async fn request_address(
        self: &Arc<Self>,
        state: &mut DockerState,
        req: RequestAddress,
    ) -> Result<serde_json::Value, PluginError> {
        let subnet = self.pool_subnet(&req.pool_id)?;
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
                return Err(self.refused(format_args!(
                    "the gateway of a cluster network is its subnet's first address, {gateway}: \
                     leave out --gateway or give {gateway}"
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
                    return Err(self.refused(format_args!(
                        "no Docker network of this host has subnet {subnet}"
                    )));
                }
                (Some(docker_id), given) => {
                    let cluster_id = self.bind(state, &docker_id).await?;
                    let ip = self
                        .cnm
                        .reserve_address(&cluster_id, given)
                        .await
                        .map_err(|e| self.address_error(e, given, subnet))?;
                    if let Some(n) = state.networks.get_mut(&docker_id) {
                        n.reserved.insert(ip, cluster_id);
                    }
                    ip
                }
            }
        };
        answer(AddressAnswer {
            address: format!("{ip}/{}", subnet.prefix_len()),
            data: BTreeMap::new(),
        })
    }

    pub(super) async fn release_address(
        &self,
        state: &mut DockerState,
        req: ReleaseAddress,
    ) -> Result<serde_json::Value, PluginError> {
        let subnet = self.pool_subnet(&req.pool_id)?;
        let ip = nodecore::parse_ip(&req.address, "address")?;
        if ip == nodecore::gateway(subnet) {
            return Ok(serde_json::json!({}));
        }
        if let Some(pool) = state.pools.get_mut(&subnet.to_string())
            && pool.aux.remove(&ip)
        {
            return Ok(serde_json::json!({}));
        }
        if let Some((_, network)) = state.networks.iter_mut().find(|(_, n)| n.subnet == subnet) {
            network.aux.remove(&ip);
            if let Some(cluster_id) = network.reserved.remove(&ip) {
                self.cnm.release_address(&cluster_id, ip).await?;
            }
        }
        Ok(serde_json::json!({}))
    }

    /// The subnet a pool ID names.
    fn pool_subnet(&self, pool_id: &str) -> Result<Ipv4Net, PluginError> {
        nodecore::parse_subnet(pool_id).map_err(|_| {
            self.refused(format_args!(
                "unknown pool {pool_id:?}: not a pool of this plugin"
            ))
        })
    }

    /// A refused reservation, with the address and subnet it was for.
    fn address_error(
        &self,
        e: crate::cnm::CnmError,
        given: Option<std::net::Ipv4Addr>,
        subnet: Ipv4Net,
    ) -> PluginError {
        match (&e, given) {
            (crate::cnm::CnmError::Core(nodecore::CoreError::AddressInUse(_)), Some(ip)) => self
                .refused(format_args!(
                    "Address already in use: {ip} is held in the cluster's {subnet}"
                )),
            _ => e.into(),
        }
    }
}
