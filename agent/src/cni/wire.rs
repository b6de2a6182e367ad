//! What crosses the CNI boundary as JSON: the network configuration the runtime writes on the
//! plugin's standard input, and the result, error and version answers it prints (CNI spec
//! 1.0.0 and 1.1.0; the 0.3.x and 0.4.0 result form for configurations that ask for it).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The spec versions the plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The version answers are given in when the configuration names none (`VERSION`).
pub const LATEST_VERSION: &str = "1.1.0";

/// The versions that have `CHECK` (0.4.0 and later).
pub const CHECK_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The plugin's network configuration (one element of a conflist's `plugins`, with the
/// runtime's `name`, `cniVersion`, `runtimeConfig` and `prevResult` added).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The spec version of this configuration and of the answers.
    #[serde(default)]
    pub cni_version: String,
    /// The runtime's name of the network (the conflist's `name`).
    #[serde(default)]
    pub name: String,
    /// The plugin's file name.
    #[serde(default, rename = "type")]
    pub plugin_type: String,
    /// The cluster network to attach to (name or ID); default: `name`.
    #[serde(default)]
    pub network: Option<String>,
    /// The cluster network's subnet: the first attach anywhere creates the network with it;
    /// where the network exists it must have this subnet. Default: the network must exist.
    #[serde(default)]
    pub subnet: Option<String>,
    /// The agent's control API (`unix:/PATH`, `/PATH`, `tcp:IP:PORT`); default
    /// `/run/netagent/netagent.sock`.
    #[serde(default)]
    pub agent: Option<String>,
    /// An IPAM section: refused, the agent allocates addresses cluster-wide.
    #[serde(default)]
    pub ipam: Option<serde_json::Value>,
    /// What the runtime passes for the capabilities the conflist declares.
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// Per-plugin arguments (CNI conventions: `args.cni.ips`, `args.cni.mac`).
    #[serde(default)]
    pub args: Option<ConfArgs>,
    /// The previous result (`DEL`, `CHECK`, and a chained `ADD`).
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
    /// Spec 1.1 `GC`: the attachments that are still valid.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// The `runtimeConfig` capabilities the plugin honours (CNI conventions). `portMappings`
/// and the others are not among them: the host has no path into the overlay, so there is
/// no port to publish.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// `ips`: the addresses asked for, CIDR or plain (one IPv4 address).
    #[serde(default)]
    pub ips: Vec<String>,
    /// `mac`: the MAC address asked for.
    #[serde(default)]
    pub mac: Option<String>,
    /// `aliases`: DNS aliases per network name (Podman's `--network-alias`).
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// `args` of a network configuration.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConfArgs {
    /// `args.cni`.
    #[serde(default)]
    pub cni: Option<ConfCniArgs>,
}

/// `args.cni`: the CNI conventions' `ips` and `mac`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConfCniArgs {
    /// Addresses asked for.
    #[serde(default)]
    pub ips: Vec<String>,
    /// The MAC asked for.
    #[serde(default)]
    pub mac: Option<String>,
}

/// One element of `cni.dev/valid-attachments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidAttachment {
    /// The container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
}

/// A successful `ADD` (and what `CHECK` and `DEL` receive as `prevResult`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// The spec version of the result.
    pub cni_version: String,
    /// The interfaces: the container's, in its namespace.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// The addresses.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes the plugin added (none: the overlay's subnet is on-link).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The resolver the container should use.
    #[serde(default)]
    pub dns: Dns,
    /// Fields of a previous plugin's result this plugin does not use, passed on unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An interface of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The namespace path it is in (empty: the host's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// Other fields (`mtu`, `socketPath`, ...), passed on unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An address of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"` in results of spec versions before 1.0.0, absent after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The address with its prefix length.
    pub address: String,
    /// The subnet's gateway (text: a previous plugin's may be IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The index of its interface in `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Other fields, passed on unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A route of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination, CIDR.
    pub dst: String,
    /// The next hop; absent: the interface's gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// Other fields (`mtu`, `priority`, `table`, ...), passed on unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The resolver part of a result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Other fields (`domain`), passed on unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The answer to `VERSION`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The version of this answer.
    pub cni_version: String,
    /// Every version the plugin speaks.
    pub supported_versions: Vec<String>,
}

/// A refusal or failure, as the plugin prints it on standard output (exit status 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniError {
    /// The spec version of this answer.
    pub cni_version: String,
    /// The code: 1 to 99 are the spec's ([`codes`]), 100 and up the plugin's own.
    pub code: u32,
    /// What went wrong, in a sentence.
    pub msg: String,
    /// More detail, when there is any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// The error codes the plugin answers with.
pub mod codes {
    /// The configuration's version is not one the plugin speaks.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// The configuration has a field the plugin does not support.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is not known or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A required environment variable is missing or invalid.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// Reading the input or talking to the agent failed.
    pub const IO_FAILURE: u32 = 5;
    /// The input could not be decoded.
    pub const DECODING_FAILURE: u32 = 6;
    /// The network configuration is invalid.
    pub const INVALID_CONFIG: u32 = 7;
    /// A transient condition (the agent not running, the cluster not answering): try again.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// `STATUS`: the plugin cannot attach containers now (the agent is not running).
    pub const NOT_AVAILABLE: u32 = 50;
    /// The agent refused the request (the message says why).
    pub const REFUSED: u32 = 100;
    /// The address asked for is in use somewhere in the cluster.
    pub const ADDRESS_IN_USE: u32 = 101;
    /// The network has no free address.
    pub const EXHAUSTED: u32 = 102;
    /// The cluster network does not exist.
    pub const UNKNOWN_NETWORK: u32 = 103;
    /// `CHECK`: the container's interface is not as the attachment says.
    pub const CHECK_FAILED: u32 = 104;
}
