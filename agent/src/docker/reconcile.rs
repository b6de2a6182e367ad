//! Bringing the plugin's state in line with dockerd's. A container stopped, or a network
//! removed, while the agent was down (or its socket unreachable) never got its `Leave`,
//! `DeleteEndpoint` and `ReleaseAddress`: its records would stay published and its address
//! held for good. Soon after the agent starts, and then every minute, the
//! plugin asks dockerd which of its networks and endpoints still exist and withdraws the
//! others. Objects made in the last minute are left alone (dockerd stores a network or an
//! endpoint only once the plugin's call returned), and a network dockerd does not answer for
//! is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::plugin::Plugin;

/// The first pass, after the agent started.
const RECONCILE_FIRST: Duration = Duration::from_secs(2);

/// The pause between two passes.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// How long a network or endpoint made by this run is left alone.
const GRACE: Duration = Duration::from_secs(60);

impl Plugin {
    /// Starts reconciling with dockerd in the background (stopped with the plugin).
    pub fn start_reconciling(self: &Arc<Self>) {
        let plugin = Arc::clone(self);
        self.spawn(async move {
            tokio::time::sleep(RECONCILE_FIRST).await;
            loop {
                plugin.reconcile_once().await;
                tokio::time::sleep(RECONCILE_EVERY).await;
            }
        });
    }

    /// Notes that dockerd's object `id` (a network or an endpoint) was made now.
    pub(super) fn made(&self, id: &str) {
        let mut fresh = self
            .fresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        fresh.retain(|_, at| now.duration_since(*at) < GRACE);
        fresh.insert(id.to_owned(), now);
    }

    fn is_fresh(&self, id: &str) -> bool {
        self.fresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .is_some_and(|at| at.elapsed() < GRACE)
    }

    /// One pass: withdraws the networks and endpoints dockerd no longer has.
    pub(super) async fn reconcile_once(&self) {
        let networks: Vec<String> = self.state.lock().await.networks.keys().cloned().collect();
        // dockerd is asked without the plugin's lock: calls go on meanwhile.
        let mut gone = Vec::new();
        let mut present: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in networks {
            match self.engine.network(&id).await {
                Ok(None) => gone.push(id),
                Ok(Some(info)) => {
                    present.insert(id, info.endpoints.into_keys().collect());
                }
                Err(e) => {
                    tracing::debug!(docker_network = %id, error = %e, "dockerd not asked: reconciliation skipped");
                }
            }
        }
        let mut state = self.state.lock().await;
        let stale: Vec<String> = state
            .endpoints
            .iter()
            .filter(|(id, e)| {
                !self.is_fresh(id)
                    && (gone.contains(&e.network)
                        || present
                            .get(&e.network)
                            .is_some_and(|known| !known.contains(*id)))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = false;
        for id in stale {
            let Some(endpoint) = state.endpoints.get(&id).cloned() else {
                continue;
            };
            if let Err(e) = self.leave(&mut state, &id).await {
                tracing::warn!(endpoint = %id, error = %e, "a Docker endpoint dockerd no longer has could not be withdrawn");
                continue;
            }
            if let Some(network) = state.networks.get_mut(&endpoint.network)
                && let Some(cluster_id) = network.reserved.remove(&endpoint.ip)
                && let Err(e) = self.cnm.release_address(&cluster_id, endpoint.ip).await
            {
                tracing::warn!(ip = %endpoint.ip, error = %e, "address not given back");
            }
            state.endpoints.remove(&id);
            changed = true;
            tracing::info!(endpoint = %id, ip = %endpoint.ip, "Docker endpoint withdrawn: dockerd no longer has it");
        }
        for id in gone {
            if self.is_fresh(&id) || state.endpoints.values().any(|e| e.network == id) {
                continue;
            }
            let subnet = state.networks.get(&id).map(|n| n.subnet);
            self.delete_network(&mut state, &id).await;
            // Its pool goes with it (dockerd never released it either).
            if let Some(subnet) = subnet
                && state.network_with_subnet(subnet).is_none()
            {
                state.pools.remove(&subnet.to_string());
            }
            changed = true;
        }
        if changed {
            self.save(&state);
        }
    }
}
