//! Sandboxes: a container's network namespace on this host.

use std::path::{Component, Path, PathBuf};

use crate::endpoints::sandbox_not_found;
use crate::model::{Sandbox, SandboxCreate, SandboxInfo, check_name};
use crate::{CoreError, LocalState, NodeCore};

/// The host's resolver file: never a sandbox's `resolv_conf`.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

impl NodeCore {
    /// This node's sandboxes, sorted by name.
    pub fn sandboxes(&self) -> Vec<SandboxInfo> {
        self.state
            .sandboxes
            .values()
            .map(|s| sandbox_info(&self.state, s))
            .collect()
    }

    /// One sandbox.
    pub fn sandbox(&self, name: &str) -> Result<SandboxInfo, CoreError> {
        let sandbox = self
            .state
            .sandboxes
            .get(name)
            .ok_or_else(|| sandbox_not_found(name))?;
        Ok(sandbox_info(&self.state, sandbox))
    }

    /// The IDs of the networks a sandbox's DNS server resolves on, in order.
    pub fn sandbox_networks(&self, name: &str) -> Result<Vec<String>, CoreError> {
        if !self.state.sandboxes.contains_key(name) {
            return Err(sandbox_not_found(name));
        }
        Ok(crate::core::sandbox_networks(&self.state)
            .remove(name)
            .unwrap_or_default())
    }

    /// Creates a sandbox. Its namespace need not exist yet.
    pub fn create_sandbox(&mut self, req: SandboxCreate) -> Result<SandboxInfo, CoreError> {
        check_name("sandbox", &req.name)?;
        let netns = PathBuf::from(&req.netns);
        if !netns.is_absolute() {
            return Err(CoreError::Invalid(format!(
                "invalid netns {:?}: must be an absolute path",
                req.netns
            )));
        }
        if self.state.sandboxes.contains_key(&req.name) {
            return Err(CoreError::Conflict(format!(
                "sandbox with name {} already exists",
                req.name
            )));
        }
        let resolv_conf = req.resolv_conf.as_deref().map(PathBuf::from);
        if let Some(path) = &resolv_conf {
            // The agent writes this file as root: only a container's resolver file, never
            // the host's own.
            if !path.is_absolute()
                || path.file_name() != Some(std::ffi::OsStr::new("resolv.conf"))
                || path.components().any(|c| c == Component::ParentDir)
                || path == Path::new(HOST_RESOLV_CONF)
            {
                return Err(CoreError::Invalid(format!(
                    "invalid resolv_conf {:?}: an absolute path of a container's resolv.conf (not the host's /etc/resolv.conf, no '..')",
                    path.display()
                )));
            }
        }
        let sandbox = Sandbox {
            name: req.name,
            netns,
            resolv_conf,
            engine: req.engine,
        };
        self.state
            .sandboxes
            .insert(sandbox.name.clone(), sandbox.clone());
        self.commit();
        Ok(sandbox_info(&self.state, &sandbox))
    }

    /// Removes a sandbox no endpoint is joined to.
    pub fn remove_sandbox(&mut self, name: &str) -> Result<SandboxInfo, CoreError> {
        let info = self.sandbox(name)?;
        if !info.endpoints.is_empty() {
            return Err(CoreError::Conflict(format!(
                "sandbox {name} has joined endpoints ({}); leave first",
                info.endpoints.join(", ")
            )));
        }
        self.state.sandboxes.remove(name);
        self.commit();
        Ok(info)
    }
}

fn sandbox_info(state: &LocalState, sandbox: &Sandbox) -> SandboxInfo {
    let mut endpoints: Vec<String> = state
        .endpoints
        .values()
        .filter(|e| e.sandbox.as_deref() == Some(sandbox.name.as_str()))
        .map(|e| format!("{}/{}", e.network, e.name))
        .collect();
    endpoints.sort();
    SandboxInfo {
        name: sandbox.name.clone(),
        netns: sandbox.netns.clone(),
        resolv_conf: sandbox.resolv_conf.clone(),
        engine: sandbox.engine,
        endpoints,
    }
}
