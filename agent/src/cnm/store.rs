//! The agent's local CNM state and its file, `state_dir/cnm.json`.
//!
//! The file is the source of truth for this agent's endpoints and sandboxes: NetworkDB is
//! brought in line with it at start and after every change (see `Cnm::reconcile`). It is
//! written whole to `cnm.json.tmp`, flushed to disk, then renamed over `cnm.json` and the
//! directory flushed, so a crash leaves the old or the new version, never a mix. A file that
//! cannot be read or parsed stops the agent with an error naming it: it is never silently
//! replaced by an empty state.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nodecore::{FORMAT_VERSION, LocalState, OLDEST_FORMAT_VERSION};

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "cnm.json";

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
        "CNM state {} has format version {found}, this agent reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}",
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

/// Reads `state_dir/cnm.json`; a missing file is an empty state. Files of format versions
/// [`OLDEST_FORMAT_VERSION`]..=[`FORMAT_VERSION`] are read.
pub fn load_state(state_dir: &Path) -> Result<LocalState, StoreError> {
    let path = state_dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LocalState::default()),
        Err(source) => return Err(StoreError::Read { path, source }),
    };
    let mut state: LocalState =
        serde_json::from_slice(&text).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&state.version) {
        return Err(StoreError::Version {
            path,
            found: state.version,
        });
    }
    state.version = FORMAT_VERSION;
    Ok(state)
}

/// Writes the state to `state_dir/cnm.json` atomically (temporary file, fsync, rename, the
/// directory flushed). Runs in the node's task: the core publishes nothing that depends on
/// the state before it is saved.
pub fn save_state(state: &LocalState, state_dir: &Path) -> Result<(), StoreError> {
    save_json(state, state_dir, STATE_FILE)
}

/// Writes `value` as JSON to `dir/name` atomically: a temporary file, flushed to disk, renamed
/// over the file, the directory flushed; a crash leaves the old or the new version.
pub fn save_json<T: serde::Serialize>(value: &T, dir: &Path, name: &str) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = |source| StoreError::Write {
        path: tmp.clone(),
        source,
    };
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| write(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    text.push(b'\n');
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut file = std::fs::File::create(&tmp).map_err(write)?;
    file.write_all(&text).map_err(write)?;
    file.sync_all().map_err(write)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|source| StoreError::Write {
        path: path.clone(),
        source,
    })?;
    // The rename is durable once the directory is: an acknowledged change survives a
    // power loss.
    let dir_file = std::fs::File::open(dir).map_err(|source| StoreError::Write {
        path: dir.to_owned(),
        source,
    })?;
    dir_file.sync_all().map_err(|source| StoreError::Write {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netagent-store-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn save_then_load() {
        let d = dir("roundtrip");
        assert_eq!(load_state(&d).unwrap(), LocalState::default());
        let mut s = LocalState::default();
        s.sandboxes.insert(
            "c1".into(),
            nodecore::Sandbox {
                name: "c1".into(),
                netns: "/var/run/netns/c1".into(),
                resolv_conf: None,
                engine: None,
            },
        );
        save_state(&s, &d).unwrap();
        assert_eq!(load_state(&d).unwrap(), s);
        assert!(!d.join("cnm.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let d = dir("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(STATE_FILE), b"{\"version\": 1, \"netw").unwrap();
        let err = load_state(&d).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert!(err.to_string().contains("cnm.json"), "{err}");
        std::fs::write(
            d.join(STATE_FILE),
            br#"{"version": 9, "networks": {}, "endpoints": {}, "sandboxes": {}}"#,
        )
        .unwrap();
        assert!(matches!(
            load_state(&d).unwrap_err(),
            StoreError::Version { found: 9, .. }
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
