//! The messages of Docker's plugin protocol for a remote network driver and a remote IPAM
//! driver (libnetwork `docs/remote.md` and `docs/ipam.md`): JSON bodies of `POST /<Method>`,
//! field names as dockerd writes them. Every answer may carry `Err`: a non-empty one is an
//! error dockerd shows its user.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The media type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// `RequestAddress` option naming the gateway's request.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";

/// The value of [`REQUEST_ADDRESS_TYPE`] for the gateway.
pub const GATEWAY_REQUEST: &str = "com.docker.network.gateway";

/// `CreateNetwork` option holding the `-o` options of `docker network create`.
pub const GENERIC_OPTIONS: &str = "com.docker.network.generic";

/// `Plugin.Activate`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activate {
    /// The plugin interfaces served.
    pub implements: Vec<&'static str>,
}

/// `NetworkDriver.GetCapabilities`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCapabilities {
    /// Where dockerd keeps the network: `local` (Docker without swarm accepts nothing else
    /// from a plugin).
    pub scope: &'static str,
    /// How far the network reaches: `global`.
    pub connectivity_scope: &'static str,
}

/// `IpamDriver.GetCapabilities`'s answer.
#[derive(Debug, Serialize)]
pub struct IpamCapabilities {
    /// dockerd need not pass MAC addresses.
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    /// dockerd need not replay its requests after a restart.
    #[serde(rename = "RequiresRequestReplay")]
    pub requires_request_replay: bool,
}

/// `IpamDriver.GetDefaultAddressSpaces`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressSpaces {
    /// The local default address space's name.
    pub local_default_address_space: String,
    /// The global default address space's name.
    pub global_default_address_space: String,
}

/// `IpamDriver.RequestPool`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPool {
    /// The address space (ignored: one space).
    #[serde(default)]
    pub address_space: String,
    /// The subnet asked for (`--subnet`); empty: the driver chooses.
    #[serde(default)]
    pub pool: String,
    /// A sub-range to allocate from (`--ip-range`).
    #[serde(default)]
    pub sub_pool: String,
    /// `--ipam-opt` options.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    /// An IPv6 pool.
    #[serde(default, rename = "V6")]
    pub v6: bool,
}

/// `IpamDriver.RequestPool`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoolAnswer {
    /// The pool's ID in later calls.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The subnet.
    pub pool: String,
    /// Extra data (none).
    pub data: BTreeMap<String, String>,
}

/// `IpamDriver.ReleasePool`.
#[derive(Debug, Deserialize)]
pub struct ReleasePool {
    /// The pool.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Deserialize)]
pub struct RequestAddress {
    /// The pool.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address asked for (`--ip`, `--gateway`, `--aux-address`); empty: any.
    #[serde(default, rename = "Address")]
    pub address: String,
    /// Options; [`REQUEST_ADDRESS_TYPE`] marks the gateway's request.
    #[serde(default, rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `IpamDriver.RequestAddress`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressAnswer {
    /// The address with the pool's prefix length.
    pub address: String,
    /// Extra data (none).
    pub data: BTreeMap<String, String>,
}

/// `IpamDriver.ReleaseAddress`.
#[derive(Debug, Deserialize)]
pub struct ReleaseAddress {
    /// The pool.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address, without prefix length.
    #[serde(rename = "Address")]
    pub address: String,
}

/// One pool of a network, as `CreateNetwork` passes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    /// The address space.
    #[serde(default)]
    pub address_space: String,
    /// The subnet.
    #[serde(default)]
    pub pool: String,
    /// The gateway, CIDR.
    #[serde(default)]
    pub gateway: String,
    /// The auxiliary addresses, CIDR, by name.
    #[serde(default)]
    pub aux_addresses: Option<BTreeMap<String, String>>,
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Deserialize)]
pub struct CreateNetwork {
    /// dockerd's ID of the network (this host's only).
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Options: [`GENERIC_OPTIONS`] and dockerd's own.
    #[serde(default, rename = "Options")]
    pub options: Option<BTreeMap<String, serde_json::Value>>,
    /// The IPv4 pools.
    #[serde(default, rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    /// The IPv6 pools.
    #[serde(default, rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// A request naming a network: `DeleteNetwork`.
#[derive(Debug, Deserialize)]
pub struct NetworkRef {
    /// dockerd's ID of the network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// A request naming an endpoint: `DeleteEndpoint`, `EndpointOperInfo`, `Leave`.
#[derive(Debug, Deserialize)]
pub struct EndpointRef {
    /// dockerd's ID of the network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's ID of the endpoint.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// An endpoint's interface, as `CreateEndpoint` passes it and answers it.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    /// The address, CIDR (from the IPAM driver).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// The IPv6 address, CIDR.
    #[serde(
        default,
        rename = "AddressIPv6",
        skip_serializing_if = "String::is_empty"
    )]
    pub address_ipv6: String,
    /// The MAC address (`--mac-address`); answered when dockerd sent none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Deserialize)]
pub struct CreateEndpoint {
    /// dockerd's ID of the network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's ID of the endpoint.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The interface dockerd asks for.
    #[serde(default, rename = "Interface")]
    pub interface: Option<EndpointInterface>,
}

/// `NetworkDriver.CreateEndpoint`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointAnswer {
    /// What the driver adds to the interface (only what dockerd did not send).
    pub interface: EndpointInterface,
}

/// `NetworkDriver.Join`.
#[derive(Debug, Deserialize)]
pub struct Join {
    /// dockerd's ID of the network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's ID of the endpoint.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The container's network namespace.
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
}

/// The interface names of a join's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    /// The interface the driver made in dockerd's namespace.
    pub src_name: String,
    /// The prefix of its name in the container (`eth`: dockerd appends a number).
    pub dst_prefix: &'static str,
}

/// `NetworkDriver.Join`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinAnswer {
    /// The interface to move into the container.
    pub interface_name: InterfaceName,
    /// No gateway service: without it (or a `Gateway`), dockerd would add a second
    /// interface on a `docker_gwbridge` it creates in the host's namespace.
    pub disable_gateway_service: bool,
}

/// `NetworkDriver.EndpointOperInfo`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperInfo {
    /// What `docker network inspect` shows of the endpoint (driver data).
    pub value: BTreeMap<String, String>,
}

/// An error answer. The network driver protocol reads `Err`, the IPAM driver protocol
/// `Error`: both carry the message.
#[derive(Debug, Serialize)]
pub struct ErrorAnswer {
    /// The message, for a network driver call.
    #[serde(rename = "Err")]
    pub err: String,
    /// The message, for an IPAM driver call.
    #[serde(rename = "Error")]
    pub error: String,
}
