//! Docker networks to cluster networks: by name, learned from dockerd's API (the protocol
//! carries none); the first host creates the cluster network, the others adopt it, and
//! another subnet under a name the cluster has is refused.

use std::sync::Arc;
use std::time::Duration;

use super::plugin::{POLL, Plugin, PluginError};
use super::state::{DockerState, NetworkState};
use crate::cnm::CnmError;

/// How long the plugin keeps trying to map a network it just created: dockerd stores it
/// once the driver's `CreateNetwork` returns.
const MAP_WAIT: Duration = Duration::from_secs(10);

impl Plugin {
    /// Maps dockerd's network `id` once dockerd has stored it (after `CreateNetwork`
    /// returns), so the cluster network exists before the first container; a network that
    /// cannot be mapped yet is tried again by its first container.
    pub(super) fn map_in_background(self: &Arc<Self>, id: String) {
        let plugin = Arc::clone(self);
        self.spawn(async move {
            let deadline = tokio::time::Instant::now() + MAP_WAIT;
            loop {
                tokio::time::sleep(POLL).await;
                let mut state = plugin.state.lock().await;
                if !state.networks.contains_key(&id) {
                    return;
                }
                let result = plugin.bind(&mut state, &id).await;
                plugin.save(&state);
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
    }

    /// Makes sure the plugin knows dockerd's network `id`: after a loss of the plugin's
    /// state, a network of this driver that dockerd knows is taken up again.
    pub(super) async fn known_network(
        &self,
        state: &mut DockerState,
        id: &str,
    ) -> Result<(), PluginError> {
        if state.networks.contains_key(id) {
            return Ok(());
        }
        self.check_id("network", id)?;
        let unknown = || {
            self.refused(format_args!(
                "unknown network ID {id}: netagent has no record of it and dockerd does not \
                 know it as a {} network",
                self.name
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
                reserved: Default::default(),
            },
        );
        Ok(())
    }

    /// The cluster network dockerd's network `id` maps to: created or adopted by name the
    /// first time (the name asked of dockerd), checked against the catalogue afterwards.
    pub(super) async fn bind(
        &self,
        state: &mut DockerState,
        id: &str,
    ) -> Result<String, PluginError> {
        self.known_network(state, id).await?;
        let Some(network) = state.networks.get(id).cloned() else {
            return Err(self.refused(format_args!("unknown network ID {id}")));
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
                Err(CnmError::Core(e)) if e.is_not_found() => return Ok(cluster_id.clone()),
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
                    return Err(PluginError::NotYet(format!(
                        "{}: dockerd does not know network {id} yet",
                        self.name
                    )));
                }
            },
        };
        let spec = self
            .cnm
            .network_or_create(&name, &network.subnet.to_string())
            .await?;
        let entry = state
            .networks
            .get_mut(id)
            .ok_or_else(|| self.refused(format_args!("network {id} is gone")))?;
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
            if network.reserved.contains_key(&ip) {
                continue;
            }
            match self.cnm.reserve_address(&spec.id, Some(ip)).await {
                Ok(ip) => {
                    if let Some(n) = state.networks.get_mut(id) {
                        n.reserved.insert(ip, spec.id.clone());
                    }
                }
                Err(CnmError::Core(e)) if e.is_conflict() => {}
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "auxiliary address not reserved");
                }
            }
        }
        Ok(spec.id)
    }
}
