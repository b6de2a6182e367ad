//! The objects of the Container Network Model as the control API shows them, the bodies it
//! accepts, and the syntax rules of their fields.
//!
//! Networks are cluster-wide ([`NetworkSpec`], kept in the catalogue); endpoints and
//! sandboxes belong to the agent that created them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::Ipv4Net;
use overlay::Mac;
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The only network driver: libnetwork's multi-host overlay.
pub const DRIVER_OVERLAY: &str = "overlay";

/// The longest network, endpoint, sandbox or service name.
pub const MAX_NAME_LEN: usize = 64;

/// The longest alias.
pub const MAX_ALIAS_LEN: usize = 255;

/// The most aliases of one endpoint.
pub const MAX_ALIASES: usize = 32;

/// A network of the cluster-wide catalogue: the value of its catalogue entry (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The name, unique in the catalogue (see [`check_name`]).
    pub name: String,
    /// 64 lower-case hex characters, random; also the ID of the network's NetworkDB network.
    pub id: String,
    /// Always [`DRIVER_OVERLAY`].
    pub driver: String,
    /// The IPv4 subnet, prefix length 8..=30, given as its network address.
    pub subnet: Ipv4Net,
    /// The first host address of the subnet, reserved (never given to an endpoint).
    pub gateway: Ipv4Addr,
    /// The VXLAN network identifier, 1..=16777215.
    pub vni: u32,
    /// The configured name of the node that created the network.
    pub created_by: String,
}

/// An endpoint: a network attachment of this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 lower-case hex characters, random; the key of its NetworkDB records.
    pub id: String,
    /// The name, unique per network on this agent.
    pub name: String,
    /// The network's name.
    pub network: String,
    /// The network's ID.
    pub network_id: String,
    /// The endpoint's address in the network's subnet.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The MAC address.
    pub mac: Mac,
    /// The service the endpoint is a task of, if any.
    pub service: Option<ServiceInfo>,
    /// Container-level aliases (published as the record's task aliases).
    pub aliases: Vec<String>,
    /// The sandbox the endpoint is joined to, if any.
    pub sandbox: Option<String>,
    /// The name of the joined endpoint's interface in its sandbox: the one the join asked
    /// for (a CNI runtime's `CNI_IFNAME`), else the sandbox's first free `eth<k>`; `None` in a
    /// Docker sandbox (dockerd names it), and in state files older than this field
    /// ([`DEFAULT_IFNAME`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// The name of an endpoint's interface in a sandbox the agent configures, unless the join
/// names another.
pub const DEFAULT_IFNAME: &str = "eth0";

impl Endpoint {
    /// The name of the joined endpoint's interface in a sandbox the agent configures:
    /// `ifname`, else [`DEFAULT_IFNAME`] (state files older than the field).
    pub fn sandbox_ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or(DEFAULT_IFNAME)
    }
}

/// The longest interface name (Linux's `IFNAMSIZ` less its NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// The service an endpoint belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// 64 lower-case hex characters: a hash of the network ID and the service name, so every
    /// node derives the same ID for the same service.
    pub id: String,
    /// The service's virtual IP, if it has one (none: DNS round robin).
    pub vip: Option<Ipv4Addr>,
    /// Service-level aliases: names that resolve like the service name on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The task is drained (libnetwork `DisableService`): its record is published with
    /// `service_disabled`, so no node resolves its names; its address stays reachable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// A sandbox: a container's network namespace on this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The name, unique on this agent.
    pub name: String,
    /// The namespace's path (absolute; it need not exist yet).
    pub netns: PathBuf,
    /// The container's `resolv.conf` the agent writes when it starts the sandbox's embedded
    /// DNS server (`nameserver 127.0.0.11`); `None`: the agent leaves resolver configuration
    /// to the container runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
    /// The container engine that configures the sandbox's interfaces, if not the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

/// A container engine that moves and configures a sandbox's interfaces itself: the agent
/// hands each joined endpoint's container end over to it, and its embedded DNS server
/// listens where the engine's own resolver forwards to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Docker, through libnetwork's remote network driver protocol: dockerd moves the
    /// interface into the container and names it; its resolver at 127.0.0.11 answers this
    /// host's containers and forwards other names to the agent's server.
    Docker,
    /// A CNI runtime (Podman, containerd, CRI-O, a Kubernetes node), through the `netctl-cni`
    /// plugin: the runtime names the interface (`CNI_IFNAME`), which the agent configures in
    /// the runtime's namespace without a default route, and writes the container's
    /// `resolv.conf` from the plugin's result (the embedded server at 127.0.0.11).
    Cni,
}

/// A sandbox as the API shows it: with the endpoints joined to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// The name.
    pub name: String,
    /// The namespace's path.
    pub netns: PathBuf,
    /// The `resolv.conf` the agent manages for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
    /// The container engine that configures its interfaces, if not the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// The endpoints joined to it, as `network/name`, sorted.
    pub endpoints: Vec<String>,
}

/// What `GET /v1/info` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The configured node name.
    pub name: String,
    /// The NetworkDB name of this run (`name@incarnation`).
    pub node: String,
    /// The address peers reach the node at.
    pub advertise: SocketAddr,
    /// Active cluster members, this node included.
    pub members: usize,
    /// Networks in the catalogue.
    pub networks: usize,
    /// Endpoints of this agent.
    pub endpoints: usize,
    /// Sandboxes of this agent.
    pub sandboxes: usize,
}

/// The body of `POST /v1/networks`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    /// The name.
    pub name: String,
    /// The driver; only `overlay`. Default `overlay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The subnet, CIDR text.
    pub subnet: String,
    /// The VNI; default: the lowest free one from 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// The body of `POST /v1/endpoints`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    /// The network, by name or ID.
    pub network: String,
    /// The endpoint's name.
    pub name: String,
    /// The address; default: allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The MAC address; default: `02:42` and the four bytes of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The service the endpoint is a task of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceCreate>,
    /// Container-level aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// The service part of [`EndpointCreate`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCreate {
    /// The service name.
    pub name: String,
    /// The virtual IP, inside the network's subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    /// Service-level aliases (the record's `aliases`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// The body of `POST /v1/sandboxes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxCreate {
    /// The name.
    pub name: String,
    /// The namespace's absolute path.
    pub netns: String,
    /// The absolute path of the container's `resolv.conf` for the agent to write (pointing
    /// at the embedded DNS server); default: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
    /// The container engine that configures the sandbox's interfaces; default: the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

/// The query of `GET /v1/dns/lookup`: what a container would get for a name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsQuery {
    /// The name, or an IPv4/IPv6 address for a reverse (PTR) lookup.
    pub name: String,
    /// Resolve as a container on this network (name or ID) would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Resolve as a container in this sandbox (on all its endpoints' networks) would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// `A`, `AAAA` or `PTR`; default `PTR` when `name` is an address, else `A`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
}

/// What `GET /v1/dns/lookup` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAnswer {
    /// The name asked.
    pub name: String,
    /// `A`, `AAAA` or `PTR`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// The networks resolved on, by name, in order.
    pub networks: Vec<String>,
    /// `answer` (local records), `nodata` (the name exists without this address family:
    /// an empty NOERROR answer) or `forward` (unknown here: the embedded server forwards the
    /// query to the upstream resolvers).
    pub outcome: String,
    /// Addresses (A/AAAA, in address order; the server shuffles them) or the PTR name.
    pub answers: Vec<String>,
}

/// What `GET /v1/ipam/{network}` answers: who owns a network's address blocks, as this
/// node's replica of the claims says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// The network's name.
    pub network: String,
    /// The subnet.
    pub subnet: ipnet::Ipv4Net,
    /// Addresses per block.
    pub block_size: u32,
    /// Blocks per owner (configured node names).
    pub owners: std::collections::BTreeMap<String, u32>,
}

/// The body of `POST /v1/ipam/reclaim`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReclaimRequest {
    /// The configured name of a node gone for good.
    pub node: String,
}

/// What `POST /v1/ipam/reclaim` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReclaimAnswer {
    /// The node.
    pub node: String,
    /// Blocks claimed from it, over every pool.
    pub blocks: usize,
}

/// The body of `POST /v1/endpoints/{network}/{name}/join`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The sandbox to join.
    pub sandbox: String,
    /// The interface's name in the sandbox (see [`check_ifname`]); default: the sandbox's
    /// first free `eth<k>`. Not for a Docker sandbox: dockerd names its interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// Checks a network, endpoint, sandbox or service name: 1 to [`MAX_NAME_LEN`] characters of
/// ASCII letters, digits, `_`, `.` and `-`, not `.` or `..` (they are no path segments).
/// `what` names the kind in the error.
pub fn check_name(what: &str, name: &str) -> Result<(), CoreError> {
    if name_ok(name, MAX_NAME_LEN) {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "invalid {what} name {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' and '-' (not . or ..)"
        )))
    }
}

/// Checks an interface name: 1 to [`MAX_IFNAME_LEN`] bytes of ASCII letters, digits, `_`,
/// `.` and `-`, not `.` or `..` (the kernel also refuses `/`, `:` and white space).
pub fn check_ifname(ifname: &str) -> Result<(), CoreError> {
    if name_ok(ifname, MAX_IFNAME_LEN) {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "invalid interface name {ifname:?}: use 1 to {MAX_IFNAME_LEN} letters, digits, '_', '.' and '-' (not . or ..)"
        )))
    }
}

/// Checks an endpoint's aliases: at most [`MAX_ALIASES`], each 1 to [`MAX_ALIAS_LEN`]
/// characters of the name alphabet.
pub fn check_aliases(aliases: &[String]) -> Result<(), CoreError> {
    if aliases.len() > MAX_ALIASES {
        return Err(CoreError::Invalid(format!(
            "too many aliases: {} (at most {MAX_ALIASES})",
            aliases.len()
        )));
    }
    for alias in aliases {
        if !(1..=MAX_ALIAS_LEN).contains(&alias.len()) || !alias.bytes().all(name_byte) {
            return Err(CoreError::Invalid(format!(
                "invalid alias {alias:?}: use 1 to {MAX_ALIAS_LEN} letters, digits, '_', '.' and '-'"
            )));
        }
    }
    Ok(())
}

/// 1 to `max` bytes of the name alphabet, not `.` or `..`.
fn name_ok(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len()) && text.bytes().all(name_byte) && text != "." && text != ".."
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cnm.json` and the API keep the MAC as text, so older state files stay readable.
    #[test]
    fn an_endpoint_keeps_its_mac_as_text() {
        let endpoint = Endpoint {
            id: "e".repeat(64),
            name: "web".into(),
            network: "blue".into(),
            network_id: "n".repeat(64),
            ip: Ipv4Addr::new(198, 18, 10, 5),
            prefix_len: 24,
            mac: Mac::from_ipv4(Ipv4Addr::new(198, 18, 10, 5)),
            service: None,
            aliases: Vec::new(),
            sandbox: None,
            ifname: None,
        };
        let json = serde_json::to_value(&endpoint).unwrap();
        assert_eq!(json["mac"], "02:42:c6:12:0a:05");
        let mut old = json;
        old["mac"] = "02:42:C6:12:0A:05".into();
        assert_eq!(serde_json::from_value::<Endpoint>(old).unwrap(), endpoint);
    }

    #[test]
    fn names() {
        for good in ["a", "blue", "my_net.1-x", &"n".repeat(MAX_NAME_LEN)] {
            check_name("network", good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "é",
            &"n".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(check_name("network", bad).is_err(), "{bad}");
        }
        check_aliases(&["web".into(), "db.local".into()]).unwrap();
        assert!(check_aliases(&["".into()]).is_err());
        assert!(check_aliases(&vec!["a".into(); MAX_ALIASES + 1]).is_err());
    }
}
