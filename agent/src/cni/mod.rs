//! The CNI plugin (`netctl-cni`): how Podman, containerd, CRI-O and Kubernetes nodes attach
//! containers to the cluster's networks.
//!
//! A runtime runs the plugin once per container and network with the `CNI_*` environment
//! ([`mod@env`]) and the network configuration on standard input ([`wire::NetConf`]). The plugin
//! is a thin client of the local agent's control API: `ADD` is one
//! [`POST /v1/attachments`](crate::cnm::Cnm::attach) (sandbox named after the container,
//! endpoint named after it, joined with the runtime's interface name), `DEL` one `DELETE`,
//! `CHECK` one `GET ...?verify=true`; the agent does the rest, as for any endpoint (address
//! from the cluster-wide allocator, overlay, records, embedded DNS at 127.0.0.11).
//!
//! What it prints follows the spec: a result (or nothing) and exit status 0, or an error
//! object ([`wire::CniError`]) and exit status 1.

pub mod env;
mod plugin;
pub mod wire;

use std::io::Read;
use std::process::ExitCode;

pub use self::env::{CniArgs, CniEnv, Command};
pub use self::plugin::run;

/// The largest configuration read from standard input.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A refusal or failure of the plugin: a spec error code ([`wire::codes`]) and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct PluginError {
    /// The code.
    pub code: u32,
    /// What went wrong, in a sentence.
    pub msg: String,
    /// More detail, if any.
    pub details: String,
}

impl PluginError {
    /// An error with a code and a message.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
}

/// What the plugin prints on standard output, and its exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output: a result, an error object, or nothing.
    pub stdout: String,
    /// Standard error: notes for a person (never needed by the runtime).
    pub stderr: String,
    /// 0 on success, 1 on error.
    pub status: u8,
}

/// The plugin's `main`: reads the process's environment and standard input, runs the
/// command, prints.
pub fn main() -> ExitCode {
    let env = CniEnv::from_process();
    let mut input = Vec::new();
    let read = std::io::stdin()
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut input);
    let outcome = match read {
        Ok(_) if input.len() as u64 > MAX_CONFIG_BYTES => plugin::failed(
            wire::LATEST_VERSION,
            PluginError::new(
                wire::codes::DECODING_FAILURE,
                format!("the network configuration is larger than {MAX_CONFIG_BYTES} bytes"),
            ),
        ),
        Ok(_) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run(&env, &input)),
            Err(e) => plugin::failed(
                wire::LATEST_VERSION,
                PluginError::new(wire::codes::IO_FAILURE, format!("cannot start: {e}")),
            ),
        },
        Err(e) => plugin::failed(
            wire::LATEST_VERSION,
            PluginError::new(
                wire::codes::IO_FAILURE,
                format!("cannot read the network configuration from standard input: {e}"),
            ),
        ),
    };
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    ExitCode::from(outcome.status)
}
