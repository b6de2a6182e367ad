//! Host probing: what the host-dependent defaults read from the machine (host name,
//! effective user id) and from the environment (`XDG_RUNTIME_DIR`, `XDG_STATE_HOME`, `HOME`).

use std::fs;
use std::path::PathBuf;

use super::api_addr::ApiAddr;
use super::env::Env;
use super::error::ConfigError;

/// Default `name` when the host name cannot be read.
pub const FALLBACK_NAME: &str = "netagent";

/// Default `api` when running as root.
pub const ROOT_API_SOCKET: &str = "/run/netagent/netagent.sock";

/// Default `state_dir` when running as root.
pub const ROOT_STATE_DIR: &str = "/var/lib/netagent";

/// The default control-API address of this host and user, the one `netagent run` listens on
/// when `api` is not set: [`ROOT_API_SOCKET`] as root, else `$XDG_RUNTIME_DIR/netagent.sock`,
/// else `/tmp/netagent-<uid>.sock`. The CLI connects there by default.
pub fn default_api() -> Result<ApiAddr, ConfigError> {
    Host::probe(&Env::process()).default_api()
}

/// Whether the process runs with effective user id 0 (`geteuid`): the agent's one probe of
/// its privileges, asked before it touches the kernel.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What the defaults depend on, read once so the merge itself is pure.
#[derive(Clone, Debug, Default)]
pub(super) struct Host {
    /// The first label of the host name.
    pub(super) hostname: Option<String>,
    /// The effective user id.
    pub(super) uid: Option<u32>,
    /// `XDG_RUNTIME_DIR`, if absolute.
    pub(super) runtime_dir: Option<PathBuf>,
    /// `XDG_STATE_HOME`, if absolute.
    pub(super) state_home: Option<PathBuf>,
    /// `HOME`, if absolute.
    pub(super) home: Option<PathBuf>,
}

impl Host {
    /// Reads the host name and the effective user id; the directories come from `env`.
    pub(super) fn probe(env: &Env) -> Self {
        let hostname = ["/etc/hostname", "/proc/sys/kernel/hostname"]
            .iter()
            .filter_map(|path| fs::read_to_string(path).ok())
            .find_map(|text| {
                let label = text.trim().split('.').next().unwrap_or("").trim();
                (!label.is_empty()).then(|| label.to_owned())
            });
        Self {
            hostname,
            uid: Some(nix::unistd::geteuid().as_raw()),
            runtime_dir: env.absolute_path("XDG_RUNTIME_DIR"),
            state_home: env.absolute_path("XDG_STATE_HOME"),
            home: env.absolute_path("HOME"),
        }
    }

    /// Whether the user is root.
    pub(super) fn is_root(&self) -> bool {
        self.uid == Some(0)
    }

    /// The default `name`: the host name, else [`FALLBACK_NAME`].
    pub(super) fn default_name(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| FALLBACK_NAME.to_owned())
    }

    /// The default `api` (see [`default_api`]).
    pub(super) fn default_api(&self) -> Result<ApiAddr, ConfigError> {
        if self.is_root() {
            return Ok(ApiAddr::Unix(ROOT_API_SOCKET.into()));
        }
        if let Some(dir) = &self.runtime_dir {
            return Ok(ApiAddr::Unix(dir.join("netagent.sock")));
        }
        match self.uid {
            Some(uid) => Ok(ApiAddr::Unix(format!("/tmp/netagent-{uid}.sock").into())),
            None => Err(ConfigError::Missing {
                field: "api",
                reason:
                    "no default: the user id is unknown and XDG_RUNTIME_DIR is not set; pass --api"
                        .into(),
            }),
        }
    }

    /// The default `state_dir`: [`ROOT_STATE_DIR`] as root, else `$XDG_STATE_HOME/netagent`,
    /// else `$HOME/.local/state/netagent`.
    pub(super) fn default_state_dir(&self) -> Result<PathBuf, ConfigError> {
        if self.is_root() {
            return Ok(ROOT_STATE_DIR.into());
        }
        if let Some(dir) = &self.state_home {
            return Ok(dir.join("netagent"));
        }
        match &self.home {
            Some(home) => Ok(home.join(".local/state/netagent")),
            None => Err(ConfigError::Missing {
                field: "state_dir",
                reason: "no default: neither XDG_STATE_HOME nor HOME is set; pass --state-dir"
                    .into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_come_from_the_given_environment() {
        let env: Env = [
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_STATE_HOME", "relative/state"),
            ("HOME", "/home/u"),
        ]
        .into_iter()
        .collect();
        let host = Host::probe(&env);
        assert_eq!(host.runtime_dir, Some("/run/user/1000".into()));
        assert_eq!(host.state_home, None, "a relative XDG directory is ignored");
        assert_eq!(host.home, Some("/home/u".into()));
    }

    #[test]
    fn the_probed_user_id_agrees_with_is_root() {
        let host = Host::probe(&Env::process());
        assert!(host.uid.is_some());
        assert_eq!(host.is_root(), is_root());
    }
}
