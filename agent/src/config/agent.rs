//! The merged, validated configuration of `netagent run`: [`AgentConfig`], its parts and
//! the defaults and limits of its fields.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use cluster::NodeConfig;

use super::api_addr::ApiAddr;
use super::error::{ConfigError, invalid};
use crate::dns;

/// The gossip port: default of `bind` and of a `join` entry without a port (libnetwork and
/// memberlist use 7946).
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;

/// Default `vxlan_port`: the IANA VXLAN port (libnetwork `defaultVXLANUDPPort`).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// Default `diag_addr`: loopback on libnetwork's default diagnostic port (2000).
pub const DEFAULT_DIAG_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2000);

/// Default `cluster_label`.
pub const DEFAULT_CLUSTER_LABEL: &str = "netagent";

/// Default `log_level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The longest `cluster_label` in bytes (memberlist's `LabelMaxSize`).
pub const MAX_CLUSTER_LABEL_BYTES: usize = 255;

/// The largest DNS TTL (RFC 2181: 2^31 - 1 seconds).
pub const MAX_DNS_TTL: u32 = i32::MAX as u32;

/// The merged and validated configuration of `netagent run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Node name and the DNS name its TLS certificate carries. Default: the first label of
    /// the host name (`/etc/hostname`, else `/proc/sys/kernel/hostname`), else
    /// [`FALLBACK_NAME`](super::FALLBACK_NAME). 1..=63 ASCII letters, digits and '-',
    /// neither first nor last, not all digits.
    pub name: String,
    /// Where the gossip UDP socket and stream TCP listener bind. Default `0.0.0.0:7946`;
    /// the port is not 0.
    pub bind: SocketAddr,
    /// The address peers reach the node at (its SWIM identity). Default: `bind`, which must
    /// then be a specified address; an advertise given as an IP takes `bind`'s port.
    pub advertise: SocketAddr,
    /// Seeds to join, in the order given, without duplicates; empty starts a new cluster. A
    /// host name is resolved once, at load, preferring `advertise`'s address family.
    pub join: Vec<SocketAddr>,
    /// Keys and TLS, or the explicit insecure mode.
    pub security: SecurityConfig,
    /// Largest datagram in bytes, envelope included. Default 1400 (libnetwork
    /// `PacketBufferSize`); 500..=65507, checked by [`networkdb::Config::validate`].
    pub packet_size: usize,
    /// UDP port of VXLAN. Default [`DEFAULT_VXLAN_PORT`]; 1..=65535.
    pub vxlan_port: u16,
    /// Control API address. Default: a unix socket,
    /// [`ROOT_API_SOCKET`](super::ROOT_API_SOCKET) as root, else
    /// `$XDG_RUNTIME_DIR/netagent.sock`, else `/tmp/netagent-<uid>.sock`.
    pub api: ApiAddr,
    /// Diagnostic API address. Default [`DEFAULT_DIAG_ADDR`].
    pub diag_addr: SocketAddr,
    /// State directory. Default [`ROOT_STATE_DIR`](super::ROOT_STATE_DIR) as root, else
    /// `$XDG_STATE_HOME/netagent`, else `$HOME/.local/state/netagent`; not empty.
    pub state_dir: PathBuf,
    /// Log format. Default [`LogFormat::Text`].
    pub log_format: LogFormat,
    /// Log filter, a `tracing_subscriber::EnvFilter` directive. Default
    /// [`DEFAULT_LOG_LEVEL`]; checked by `EnvFilter::try_new`.
    pub log_level: String,
    /// Authenticated data of every datagram's AEAD. Default [`DEFAULT_CLUSTER_LABEL`];
    /// 1..=255 bytes.
    pub cluster_label: String,
    /// Use [`NodeConfig::fast`] instead of [`NodeConfig::default`]. Default false.
    pub fast_failure_detection: bool,
    /// Run the embedded DNS server in every sandbox with a joined endpoint (it needs root,
    /// like the dataplane). Default true.
    pub dns: bool,
    /// Upstream resolvers, at most [`dns::MAX_UPSTREAMS`], without duplicates and not
    /// 127.0.0.11 (that would loop). Empty (the default): the nameservers of the host's
    /// `/etc/resolv.conf`, read when the agent starts.
    pub dns_upstreams: Vec<SocketAddr>,
    /// Forward unknown names upstream. Default true; false (no upstream at all, not even
    /// the host's) contradicts `dns_upstreams`.
    pub dns_forward: bool,
    /// TTL of local answers in seconds. Default [`dns::DEFAULT_TTL`]; 0..=[`MAX_DNS_TTL`].
    pub dns_ttl: u32,
    /// Balance connections to service VIPs in every sandbox with a joined endpoint
    /// (`crate::balancer`; it needs root, like the dataplane). Default true (false in
    /// [`AgentConfig::local`], whose agents have no container namespaces).
    pub vip_balancer: bool,
    /// The Docker plugin's name, if the agent serves the plugin protocol. Default `None`;
    /// 1..=64 ASCII letters, digits, '.', '_' and '-'.
    pub docker_plugin: Option<String>,
    /// The directory of the plugin's socket. Default [`DEFAULT_DOCKER_PLUGIN_DIR`]; not
    /// empty.
    pub docker_plugin_dir: PathBuf,
    /// dockerd's API socket. Default [`DEFAULT_DOCKER_API`]; not empty.
    pub docker_api: PathBuf,
}

/// Default `docker_plugin_dir`: where dockerd looks for plugin sockets.
pub const DEFAULT_DOCKER_PLUGIN_DIR: &str = "/run/docker/plugins";

/// Default `docker_api`: dockerd's default API socket.
pub const DEFAULT_DOCKER_API: &str = "/var/run/docker.sock";

/// The format of the agent's logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human-readable lines (`text`).
    #[default]
    Text,
    /// One JSON object per line (`json`).
    Json,
}

/// How the node secures its traffic, before the files are read (see
/// [`AgentConfig::security`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecurityConfig {
    /// Plaintext datagrams and plain TCP, chosen with `--insecure`.
    Insecure,
    /// Datagrams sealed with the gossip keys, streams over mutual TLS.
    Secure {
        /// The gossip key file.
        key_file: PathBuf,
        /// The cluster CA certificate (PEM).
        tls_ca: PathBuf,
        /// The node's certificate chain (PEM).
        tls_cert: PathBuf,
        /// The node's private key (PEM).
        tls_key: PathBuf,
    },
}

impl AgentConfig {
    /// A configuration for an agent on loopback, built in code (the demo, tests): bind,
    /// advertise and diagnostic address `127.0.0.1:0` (the daemon takes the ports the
    /// system picks), a control API socket in `state_dir`, insecure until the caller sets
    /// `security`. Not validated: port 0 is allowed here, unlike in a configuration file.
    pub fn local(name: &str, state_dir: PathBuf) -> Self {
        let loopback = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
        Self {
            name: name.to_owned(),
            bind: loopback,
            advertise: loopback,
            join: Vec::new(),
            security: SecurityConfig::Insecure,
            packet_size: networkdb::Config::default().packet_size,
            vxlan_port: DEFAULT_VXLAN_PORT,
            api: ApiAddr::Unix(state_dir.join("netagent.sock")),
            diag_addr: loopback,
            state_dir,
            log_format: LogFormat::Text,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            cluster_label: DEFAULT_CLUSTER_LABEL.to_owned(),
            fast_failure_detection: false,
            // In-process agents (the demo, tests) have no container namespaces: no embedded
            // DNS servers, and none that could forward to the host's resolvers.
            dns: false,
            dns_upstreams: Vec::new(),
            dns_forward: false,
            dns_ttl: dns::DEFAULT_TTL,
            vip_balancer: false,
            docker_plugin: None,
            docker_plugin_dir: PathBuf::from(DEFAULT_DOCKER_PLUGIN_DIR),
            docker_api: PathBuf::from(DEFAULT_DOCKER_API),
        }
    }

    /// The node core's configuration: [`NodeConfig::fast`] if `fast_failure_detection`, else
    /// the default, with `packet_size` applied.
    pub fn node_config(&self) -> NodeConfig {
        let mut config = if self.fast_failure_detection {
            NodeConfig::fast()
        } else {
            NodeConfig::default()
        };
        config.db.packet_size = self.packet_size;
        config
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

impl FromStr for LogFormat {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(invalid("log_format", s, "text, json")),
        }
    }
}
