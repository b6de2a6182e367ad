//! Container names: dockerd does not pass them to the plugin, so they are asked of its API.
//! A container's name is known at its join (dockerd names the endpoint after the container
//! before it calls `Join`), except while dockerd restores its containers after a restart (it
//! serves no API then); its `--network-alias`es are told only once the container has started
//! (dockerd holds the container while it starts it). Both are learnt in the background and
//! published with [`Cnm::set_names`](crate::cnm::Cnm::set_names).

use std::sync::Arc;
use std::time::Duration;

use super::engine_api::EngineApi;
use super::plugin::{POLL, Plugin, PluginError};

/// How long a join waits for dockerd to tell the container's name.
pub(super) const JOIN_NAME_WAIT: Duration = Duration::from_millis(500);

/// How long the plugin keeps asking dockerd for a joined container's names: dockerd does
/// not answer while it restores its containers after a restart.
const NAMES_WAIT: Duration = Duration::from_secs(120);

/// The name of a container's endpoint until dockerd tells the container's name: the
/// endpoint ID's first 12 characters.
pub(super) fn fallback_name(endpoint_id: &str) -> String {
    endpoint_id.chars().take(12).collect()
}

impl Plugin {
    /// The container's name, asked of dockerd within `wait`: `Ok(None)` if dockerd does not
    /// say (yet), an error if the name it tells cannot be an endpoint's name.
    pub(super) async fn container_name(
        engine: &EngineApi,
        network_id: &str,
        endpoint_id: &str,
        wait: Duration,
    ) -> Result<Option<String>, PluginError> {
        let Ok(Ok(Some(info))) = tokio::time::timeout(wait, engine.network(network_id)).await
        else {
            return Ok(None);
        };
        match info.endpoints.get(endpoint_id) {
            Some(name) => {
                nodecore::check_name("endpoint", name)?;
                Ok(Some(name.clone()))
            }
            None => Ok(None),
        }
    }

    /// Learns the container's name (if the join had to do without it) and its
    /// `--network-alias`es (with the short ID dockerd adds), then publishes them; bounded by
    /// [`NAMES_WAIT`], stopped with the plugin.
    pub(super) fn learn_names(
        self: &Arc<Self>,
        endpoint_id: String,
        docker_network: String,
        joined_as: String,
    ) {
        let plugin = Arc::clone(self);
        self.spawn(async move {
            let deadline = tokio::time::Instant::now() + NAMES_WAIT;
            let name = if joined_as == fallback_name(&endpoint_id) {
                loop {
                    match Self::container_name(
                        &plugin.engine,
                        &docker_network,
                        &endpoint_id,
                        POLL * 20,
                    )
                    .await
                    {
                        Ok(Some(name)) => break name,
                        Ok(None) if tokio::time::Instant::now() < deadline => {
                            tokio::time::sleep(POLL).await;
                        }
                        Ok(None) => {
                            tracing::warn!(endpoint = %endpoint_id, "dockerd did not tell the container's name: it resolves by its endpoint ID's prefix only");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(endpoint = %endpoint_id, error = %e, "the container's name cannot be published: it resolves by its endpoint ID's prefix only");
                            return;
                        }
                    }
                }
            } else {
                joined_as
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
                    // Gone already (or renamed): nothing to publish under this name.
                    Ok(None) => break Vec::new(),
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::warn!(container = %name, error = %e, "cannot ask dockerd for the container's aliases");
                        break Vec::new();
                    }
                    Err(_) => tokio::time::sleep(POLL).await,
                }
            };
            let mut aliases: Vec<String> = aliases
                .into_iter()
                .filter(|a| {
                    *a != name && nodecore::check_aliases(std::slice::from_ref(a)).is_ok()
                })
                .collect();
            aliases.sort();
            aliases.dedup();
            aliases.truncate(nodecore::MAX_ALIASES);
            // Under the plugin's lock: a leave cannot run in between.
            let state = plugin.state.lock().await;
            let Some(endpoint) = state.endpoints.get(&endpoint_id).cloned() else {
                return;
            };
            let (Some(cluster_id), Some(_)) = (&endpoint.cluster_id, &endpoint.sandbox) else {
                return;
            };
            let Ok(Some(agent)) = plugin.agent_endpoint(cluster_id, endpoint.ip).await else {
                return;
            };
            if agent.name == name && agent.aliases == aliases {
                return;
            }
            match plugin
                .cnm
                .set_names(cluster_id, &agent.name, &name, aliases.clone())
                .await
            {
                Ok(_) => {
                    tracing::info!(container = %name, ?aliases, "container names published");
                }
                Err(e) => {
                    tracing::warn!(container = %name, error = %e, "container names not published");
                }
            }
        });
    }
}
