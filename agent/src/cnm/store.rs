//! The agent's local CNM state and its file, `state_dir/cnm.json`.
//!
//! The file is the source of truth for this agent's endpoints and sandboxes: NetworkDB is
//! brought in line with it at start and after every change (see `Cnm::reconcile`). It is
//! written whole to `cnm.json.tmp`, flushed to disk, then renamed over `cnm.json` and the
//! directory flushed, so a crash leaves the old or the new version, never a mix. A file that
//! cannot be read or parsed stops the agent with an error naming it: it is never silently
//! replaced by an empty state.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::model::{Endpoint, NetworkSpec, Sandbox};

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "cnm.json";

/// The version of the file's format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The state file could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading failed (not "not found": a missing file is an empty state).
    #[error("cannot read CNM state {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not valid state. The agent does not start; fix or move the file.
    #[error("corrupt CNM state {}: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: serde_json::Error,
    },
    /// The file has a format version this code does not know.
    #[error(
        "CNM state {} has format version {found}, this agent reads {FORMAT_VERSION}",
        path.display()
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// Writing failed; the previous file is intact.
    #[error("cannot write CNM state {}: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A network this agent keeps a copy of: one it created, or one it has endpoints on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownNetwork {
    /// The network.
    pub spec: NetworkSpec,
    /// Whether this agent created it (it re-publishes it if the catalogue loses it).
    pub created_here: bool,
    /// Whether the catalogue showed it removed or replaced by another network of that name
    /// while this agent still had endpoints on it. Such a network is never re-published;
    /// its endpoints can still leave and be removed.
    pub removed: bool,
}

/// Everything the agent keeps about the CNM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Networks by ID.
    pub networks: BTreeMap<String, KnownNetwork>,
    /// Endpoints by ID.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Sandboxes by name.
    pub sandboxes: BTreeMap<String, Sandbox>,
}

impl Default for LocalState {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            networks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
        }
    }
}

impl LocalState {
    /// Reads `state_dir/cnm.json`; a missing file is an empty state.
    pub fn load(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(STATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let state: Self = serde_json::from_slice(&text).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        if state.version != FORMAT_VERSION {
            return Err(StoreError::Version {
                path,
                found: state.version,
            });
        }
        Ok(state)
    }

    /// Writes the state to `state_dir/cnm.json` atomically (temporary file, fsync, rename).
    pub async fn save(&self, state_dir: &Path) -> Result<(), StoreError> {
        let path = state_dir.join(STATE_FILE);
        let tmp = state_dir.join(format!("{STATE_FILE}.tmp"));
        let write = |source| StoreError::Write {
            path: tmp.clone(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| write(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        text.push(b'\n');
        tokio::fs::create_dir_all(state_dir)
            .await
            .map_err(|source| StoreError::Write {
                path: state_dir.to_owned(),
                source,
            })?;
        let mut file = tokio::fs::File::create(&tmp).await.map_err(write)?;
        file.write_all(&text).await.map_err(write)?;
        file.sync_all().await.map_err(write)?;
        drop(file);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        // The rename is durable once the directory is: an acknowledged change survives a
        // power loss.
        let dir = tokio::fs::File::open(state_dir)
            .await
            .map_err(|source| StoreError::Write {
                path: state_dir.to_owned(),
                source,
            })?;
        dir.sync_all().await.map_err(|source| StoreError::Write {
            path: state_dir.to_owned(),
            source,
        })
    }

    /// The endpoints on the network with ID `network_id`.
    pub fn endpoints_on<'a>(&'a self, network_id: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .values()
            .filter(move |e| e.network_id == network_id)
    }

    /// The endpoint named `name` on the network with ID `network_id`.
    pub fn endpoint(&self, network_id: &str, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .values()
            .find(|e| e.network_id == network_id && e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netagent-store-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn save_then_load() {
        let d = dir("roundtrip");
        assert_eq!(LocalState::load(&d).unwrap(), LocalState::default());
        let mut s = LocalState::default();
        s.sandboxes.insert(
            "c1".into(),
            Sandbox {
                name: "c1".into(),
                netns: "/var/run/netns/c1".into(),
                resolv_conf: None,
            },
        );
        s.save(&d).await.unwrap();
        assert_eq!(LocalState::load(&d).unwrap(), s);
        assert!(!d.join("cnm.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let d = dir("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(STATE_FILE), b"{\"version\": 1, \"netw").unwrap();
        let err = LocalState::load(&d).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert!(err.to_string().contains("cnm.json"), "{err}");
        std::fs::write(
            d.join(STATE_FILE),
            br#"{"version": 9, "networks": {}, "endpoints": {}, "sandboxes": {}}"#,
        )
        .unwrap();
        assert!(matches!(
            LocalState::load(&d).unwrap_err(),
            StoreError::Version { found: 9, .. }
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
