//! [`Plugin`]: Docker's remote network driver and IPAM driver, one plugin, on the agent's
//! [`Cnm`]: the calls' dispatch, the state they share, and the plugin's background tasks.
//! The calls themselves are in [`ipam`](super::ipam) (pools and addresses),
//! [`network`](super::network) (networks, endpoints, joins), [`mapping`](super::mapping)
//! (Docker networks to cluster networks) and [`names`](super::names) (container names).
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
//!   gateway is the subnet's first address, as for every cluster network. Each reservation
//!   is recorded with the cluster network it was made in, and given back there.
//! * **Endpoints.** `CreateEndpoint` records the address; `Join` creates the agent's
//!   endpoint, named after the container (asked of dockerd, with its `--network-alias`es),
//!   in a sandbox per container namespace, and answers the interface the overlay driver made
//!   for dockerd to move into the container; `Leave` withdraws it cluster-wide. The agent's
//!   endpoint is found again by its cluster network and address, which never change (its
//!   name may: see [`names`](super::names)).
//!
//! Every call but `EndpointOperInfo` runs under one lock, one at a time, and `docker.json` is
//! saved after each call that may have changed it. Nothing holds another lock while waiting
//! for this one: the order is this lock, then the CNM's operations lock, then the node.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nodecore::CoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use super::engine_api::{EngineApi, EngineApiError};
use super::protocol::{
    Activate, AddressSpaces, EndpointRef, ErrorAnswer, IpamCapabilities, NetworkCapabilities,
    NetworkRef, OperInfo, ReleasePool,
};
use super::state::DockerState;
use super::stats::PluginStats;
use crate::cnm::{Cnm, CnmError, StoreError};

/// How often the background tasks ask dockerd again.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// Why a plugin call failed; the message is what dockerd shows its user.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The request cannot be honoured as asked.
    #[error("{0}")]
    Refused(String),
    /// Not yet possible (dockerd has not stored the network yet); worth asking again.
    #[error("{0}")]
    NotYet(String),
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
    pub(super) name: String,
    pub(super) cnm: Arc<Cnm>,
    pub(super) engine: EngineApi,
    state_dir: PathBuf,
    /// Every call but `EndpointOperInfo` runs under this lock, one at a time.
    pub(super) state: Mutex<DockerState>,
    stats: Arc<PluginStats>,
    /// The background tasks (mapping, learning names, reconciling), aborted by
    /// [`Plugin::shutdown`].
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// dockerd's networks and endpoints made by this run, and when (see
    /// [`reconcile`](super::reconcile)).
    pub(super) fresh: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
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
            tasks: std::sync::Mutex::new(Vec::new()),
            fresh: std::sync::Mutex::new(std::collections::HashMap::new()),
        }))
    }

    /// The plugin's name (the driver name dockerd knows it by).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the plugin's background tasks (the agent stops: nothing may change its state
    /// while it leaves the cluster).
    pub fn shutdown(&self) {
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
    }

    /// Runs `task` in the background until it ends or the plugin shuts down.
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = self.lock_tasks();
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::AbortHandle>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves `state` to `docker.json`; a failure is logged (the caller's answer stands).
    pub(super) fn save(&self, state: &DockerState) {
        if let Err(e) = state.save(&self.state_dir) {
            tracing::error!(error = %e, "cannot save the Docker plugin's state");
        }
    }

    /// Checks an ID dockerd gave (a network's or an endpoint's): 1 to 128 ASCII letters and
    /// digits (dockerd's are 64 hex digits). Anything else is refused before it is used.
    pub(super) fn check_id(&self, what: &str, id: &str) -> Result<(), PluginError> {
        if (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(())
        } else {
            Err(self.refused(format_args!(
                "invalid {what} ID {id:?}: 1 to 128 letters and digits"
            )))
        }
    }

    /// A refusal naming the plugin.
    pub(super) fn refused(&self, what: impl std::fmt::Display) -> PluginError {
        PluginError::Refused(format!("{}: {what}", self.name))
    }

    /// Answers one call: `method` (`Plugin.Activate`, `NetworkDriver.Join`...) with its JSON
    /// body. Returns the JSON answer; an error is an answer with `Err` and `Error`.
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
                local_default_address_space: format!("{}-local", self.name),
                global_default_address_space: format!("{}-global", self.name),
            }),
            "NetworkDriver.EndpointOperInfo" => {
                let _: EndpointRef = parse(method, body)?;
                answer(OperInfo {
                    value: std::collections::BTreeMap::new(),
                })
            }
            "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity" => Ok(serde_json::json!({})),
            "NetworkDriver.AllocateNetwork" | "NetworkDriver.FreeNetwork" => {
                Err(self.refused(format_args!(
                    "swarm-scoped networks are not supported; create the network on each host \
                     with docker network create -d {}",
                    self.name
                )))
            }
            _ => {
                let mut state = self.state.lock().await;
                let result = self.stateful(&mut state, method, body).await;
                // Whatever changed is saved, failed calls included (a reservation made
                // before a later step failed).
                if !matches!(result, Err(PluginError::Body { .. })) {
                    self.save(&state);
                }
                result
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
                self.delete_network(state, &req.network_id).await;
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
            other => Err(self.refused(format_args!("unknown method {other}"))),
        }
    }
}

/// Decodes a call's body (empty: `{}`).
pub(super) fn parse<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, PluginError> {
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

/// Encodes an answer.
pub(super) fn answer<T: Serialize>(value: T) -> Result<serde_json::Value, PluginError> {
    serde_json::to_value(value).map_err(|source| PluginError::Body {
        method: "(the answer)".into(),
        source,
    })
}
