//! What the Docker plugin keeps across restarts, in `state_dir/docker.json`: dockerd's
//! networks and endpoints on this host and the cluster networks they map to. dockerd
//! replays nothing after its own restart, and the agent may restart under running
//! containers: both find their mapping here. The file is written whole and atomically after
//! every change (see [`save_json`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use overlay::Mac;
use serde::{Deserialize, Serialize};

use crate::cnm::{StoreError, save_json};

/// The file's name inside the state directory.
pub const DOCKER_STATE_FILE: &str = "docker.json";

/// The version of the file's format.
pub const DOCKER_STATE_VERSION: u32 = 1;

/// A pool dockerd asked the IPAM driver for: a subnet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    /// `--aux-address`es requested before their network was known: reserved in the cluster
    /// once it is.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub aux: BTreeSet<Ipv4Addr>,
}

/// A Docker network of this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// Its subnet (the pool its IPAM driver gave).
    pub subnet: Ipv4Net,
    /// Its name, once dockerd told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The ID of the cluster network it maps to, once created or adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Why it cannot map to the cluster network of its name (another subnet), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Its auxiliary addresses.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub aux: BTreeSet<Ipv4Addr>,
    /// The addresses the IPAM driver reserved for it, with the ID of the cluster network
    /// each was reserved in (given back there, even if the mapping changed since).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reserved: BTreeMap<Ipv4Addr, String>,
}

/// A Docker endpoint of this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// dockerd's network ID.
    pub network: String,
    /// Its address (reserved in the cluster by the IPAM driver).
    pub ip: Ipv4Addr,
    /// Its MAC address.
    pub mac: Mac,
    /// The cluster network its agent endpoint lives on (where it is found again, with its
    /// address, at `Leave`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The agent's sandbox while joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// The plugin's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerState {
    /// [`DOCKER_STATE_VERSION`].
    pub version: u32,
    /// Pools by pool ID (the subnet).
    #[serde(default)]
    pub pools: BTreeMap<String, PoolState>,
    /// Networks by dockerd's ID.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkState>,
    /// Endpoints by dockerd's ID.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointState>,
}

impl Default for DockerState {
    fn default() -> Self {
        Self {
            version: DOCKER_STATE_VERSION,
            pools: BTreeMap::new(),
            networks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        }
    }
}

impl DockerState {
    /// Reads `state_dir/docker.json`; a missing file is an empty state.
    pub fn load(state_dir: &Path) -> Result<Self, StoreError> {
        let path: PathBuf = state_dir.join(DOCKER_STATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let state: Self = serde_json::from_slice(&text).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        if state.version != DOCKER_STATE_VERSION {
            return Err(StoreError::Read {
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "format version {}, this agent reads {DOCKER_STATE_VERSION}",
                        state.version
                    ),
                ),
                path,
            });
        }
        Ok(state)
    }

    /// Writes `state_dir/docker.json` atomically.
    pub fn save(&self, state_dir: &Path) -> Result<(), StoreError> {
        save_json(self, state_dir, DOCKER_STATE_FILE)
    }

    /// The Docker network of this host with `subnet`, if any.
    pub fn network_with_subnet(&self, subnet: Ipv4Net) -> Option<(&String, &NetworkState)> {
        self.networks.iter().find(|(_, n)| n.subnet == subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir =
            std::env::temp_dir().join(format!("netagent-docker-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(DockerState::load(&dir).unwrap(), DockerState::default());
        let mut state = DockerState::default();
        state.networks.insert(
            "n1".into(),
            NetworkState {
                subnet: "198.18.100.0/24".parse().unwrap(),
                name: Some("web".into()),
                cluster_id: Some("c".repeat(64)),
                refused: None,
                aux: [Ipv4Addr::new(198, 18, 100, 250)].into(),
                reserved: [(Ipv4Addr::new(198, 18, 100, 250), "c".repeat(64))].into(),
            },
        );
        state.save(&dir).unwrap();
        assert_eq!(DockerState::load(&dir).unwrap(), state);
        std::fs::write(dir.join(DOCKER_STATE_FILE), "{").unwrap();
        assert!(DockerState::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
