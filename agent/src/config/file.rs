//! The configuration file: its TOML form ([`FileConfig`], every field optional, unknown keys
//! refused) and the commented example `netagent example-config` prints.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;

/// A commented example configuration: every field with its default (active lines) or, where
/// the default depends on the host or there is none, an example (commented lines). It parses
/// as it is, and with every commented `key = value` line uncommented.
pub fn example_toml() -> &'static str {
    EXAMPLE_TOML
}

/// The file's view of the configuration: every field optional, unknown keys refused.
/// Addresses are strings and integers are wide, so a bad value gets the same message as
/// from a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) name: Option<String>,
    pub(super) bind: Option<String>,
    pub(super) advertise: Option<String>,
    pub(super) join: Option<Vec<String>>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) packet_size: Option<i64>,
    pub(super) vxlan_port: Option<i64>,
    pub(super) api: Option<String>,
    pub(super) diag_addr: Option<String>,
    pub(super) insecure: Option<bool>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) log_format: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) cluster_label: Option<String>,
    pub(super) fast_failure_detection: Option<bool>,
    pub(super) dns: Option<bool>,
    pub(super) dns_upstreams: Option<Vec<String>>,
    pub(super) dns_forward: Option<bool>,
    pub(super) vip_balancer: Option<bool>,
    pub(super) dns_ttl: Option<i64>,
    pub(super) docker_plugin: Option<String>,
    pub(super) docker_plugin_dir: Option<PathBuf>,
    pub(super) docker_api: Option<PathBuf>,
}

/// Parses the TOML `text` of the file at `path` (named in errors).
pub(super) fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

const EXAMPLE_TOML: &str = r#"# netagent configuration (netagent run --config FILE).
#
# Every field is optional. A flag (--packet-size) or an environment variable
# (NETAGENT_PACKET_SIZE) overrides the value here: flag > environment > file > default.
# Active lines show the default; commented lines show an example where the default
# depends on the host or there is none. Relative paths are relative to the working
# directory.

# Node name, also the DNS name in its TLS certificate: 1..=63 letters, digits and '-'.
# Default: the host name (/etc/hostname), else "netagent".
# name = "node-1"

# UDP and TCP address for gossip; the port is not 0.
bind = "0.0.0.0:7946"

# Address peers reach this node at: "IP:PORT" or "IP" (bind's port).
# Default: the bind address; required when bind is 0.0.0.0 or [::].
# advertise = "192.0.2.10:7946"

# Seeds to join: "HOST:PORT" or "HOST" (port 7946). Empty starts a new cluster.
# The --join flag (repeatable) or NETAGENT_JOIN (comma-separated) replaces this list.
join = []
# join = ["192.0.2.11", "192.0.2.12:7946"]

# Security. Without a key file and the three TLS files the agent refuses to start
# unless insecure = true, which is only for test clusters (plaintext, unauthenticated).
# Gossip keys: one per line, 64 hex characters or base64 of 32 bytes; the first is the
# primary. Blank lines and lines starting with '#' are ignored.
# key_file = "/etc/netagent/gossip.keys"
# PEM files: the cluster CA, this node's certificate chain (leaf first) and key.
# tls_ca = "/etc/netagent/ca.pem"
# tls_cert = "/etc/netagent/node.pem"
# tls_key = "/etc/netagent/node-key.pem"
insecure = false

# Largest gossip datagram in bytes, envelope included: 500..=65507.
packet_size = 1400

# UDP port of VXLAN: 1..=65535.
vxlan_port = 4789

# Control API: "unix:/PATH" or "/PATH" (unix socket), "tcp:IP:PORT" or "IP:PORT".
# Default: /run/netagent/netagent.sock as root, else $XDG_RUNTIME_DIR/netagent.sock,
# else /tmp/netagent-<uid>.sock.
# api = "unix:/run/netagent/netagent.sock"

# libnetwork-compatible diagnostic API.
diag_addr = "127.0.0.1:2000"

# State directory. Default: /var/lib/netagent as root, else $XDG_STATE_HOME/netagent,
# else ~/.local/state/netagent.
# state_dir = "/var/lib/netagent"

# Log format: "text" or "json".
log_format = "text"

# Log filter, an EnvFilter directive such as "info" or "cluster=debug,info".
log_level = "info"

# Bound into every datagram's authentication: clusters sharing a key but not the
# label refuse each other's traffic. 1..=255 bytes.
cluster_label = "netagent"

# Detect failures in about two seconds (for tests and demos on one machine) instead
# of memberlist's LAN timing.
fast_failure_detection = false

# Run an embedded DNS server at 127.0.0.11:53 inside every sandbox with a joined
# endpoint (needs root, like the dataplane).
dns = true

# Upstream resolvers for names the cluster does not know: "IP" or "IP:PORT", at most 3.
# Default: the nameservers of /etc/resolv.conf when the agent starts.
# dns_upstreams = ["198.18.0.53"]

# Forward names the cluster does not know to the upstream resolvers; false answers
# them SERVFAIL (isolated test clusters).
dns_forward = true

# TTL of the embedded DNS server's answers, in seconds: 0..=2147483647.
dns_ttl = 600

# Balance connections to service VIPs over the services' enabled tasks anywhere in the
# cluster, with nf_tables inside every sandbox with a joined endpoint (needs root).
vip_balancer = true

# Serve the Docker plugin protocol (remote network driver and IPAM driver) under this
# name: `docker network create -d netctl --ipam-driver netctl ...`. Not served by default.
# docker_plugin = "netctl"

# Where dockerd looks for plugin sockets: the socket is <dir>/<docker_plugin>.sock.
docker_plugin_dir = "/run/docker/plugins"

# dockerd's API socket, asked for the names of networks and containers.
docker_api = "/var/run/docker.sock"
"#;
