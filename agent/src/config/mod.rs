//! The configuration of `netagent run`.
//!
//! Every field comes from four sources, the first that gives it wins: a command-line flag
//! (`--packet-size`), an environment variable (`NETAGENT_PACKET_SIZE`, the field name in upper
//! snake case), the TOML file named by `--config` / `NETAGENT_CONFIG`, and the default.
//! [`RunArgs`] holds the flags (clap), which also parse the environment's variables; a
//! private serde type holds the file; [`AgentConfig`] is the merged, validated result. The
//! environment is an input of the merge ([`AgentConfig::from_env_and_file`]), read from the
//! process only by [`AgentConfig::load`], [`AgentConfig::from_sources`] and [`default_api`].
//! Every refused value is a [`ConfigError`] naming the field and what is allowed; `netagent`
//! exits with [`EXIT_CONFIG`] on one.
//!
//! [`example_toml`] is a commented file holding every field with its default.
//!
//! One concept per file: `flags` (clap), `env` (the environment as a source), `file` (the
//! TOML form and the example), `merge` (the precedence and cross-field rules), `parse`
//! (single values), `api_addr`, `host` (host probing for defaults), `security` (key files,
//! keys and PEM files), `agent` (the validated type) and `error`.

mod agent;
mod api_addr;
mod env;
mod error;
mod file;
mod flags;
mod host;
mod merge;
mod parse;
mod security;

pub use self::agent::{
    AgentConfig, DEFAULT_CLUSTER_LABEL, DEFAULT_DIAG_ADDR, DEFAULT_DOCKER_API,
    DEFAULT_DOCKER_PLUGIN_DIR, DEFAULT_GOSSIP_PORT, DEFAULT_LOG_LEVEL, DEFAULT_VXLAN_PORT,
    LogFormat, MAX_CLUSTER_LABEL_BYTES, MAX_DNS_TTL, SecurityConfig,
};
pub use self::api_addr::{ApiAddr, MAX_UNIX_PATH_BYTES};
pub use self::error::{ConfigError, EXIT_CONFIG};
pub use self::file::example_toml;
pub use self::flags::RunArgs;
pub use self::host::{FALLBACK_NAME, ROOT_API_SOCKET, ROOT_STATE_DIR, default_api, is_root};
pub use self::parse::check_node_name;
pub use self::security::parse_keys;
