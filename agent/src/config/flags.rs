//! The flags of `netagent run`: [`RunArgs`], parsed by clap, and how one layer of them
//! (flags, or the environment parsed as flags) lies over another.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;

use super::agent::LogFormat;
use super::api_addr::ApiAddr;
use super::env::env_help;
use super::parse::{
    parse_bind, parse_diag_addr, parse_dns_ttl, parse_dns_upstream, parse_packet_size,
    parse_vxlan_port,
};

/// Run the node agent. Every flag is also read from an environment variable named after it
/// (NETAGENT_PACKET_SIZE for --packet-size; the flag wins), then from the --config file, then
/// a default applies.
//
// Range checks happen at the merge, so values built in code are checked like parsed ones;
// the value parsers below may refuse earlier, with the same wording. No flag has clap's
// `env`: the environment is an input of the merge (`env.rs`), parsed by these same parsers.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(mut_args = env_help)]
pub struct RunArgs {
    /// TOML configuration file; flags and NETAGENT_* variables override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Node name, also the DNS name of its TLS certificate: 1..=63 letters, digits and '-'
    /// [default: the host name, else "netagent"].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// UDP and TCP address for gossip [default: 0.0.0.0:7946].
    #[arg(long, value_name = "IP:PORT", value_parser = parse_bind)]
    pub bind: Option<SocketAddr>,

    /// Address peers reach this node at, IP:PORT or IP (bind's port) [default: the bind
    /// address; required when bind is 0.0.0.0 or ::].
    #[arg(long, value_name = "IP[:PORT]")]
    pub advertise: Option<String>,

    /// Seed to join, HOST:PORT or HOST (port 7946); repeatable or comma-separated. Replaces
    /// the file's list.
    #[arg(long, value_name = "HOST[:PORT]", value_delimiter = ',')]
    pub join: Vec<String>,

    /// File of gossip keys, one per line (64 hex characters or base64 of 32 bytes); the first
    /// is the primary.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// PEM file of the cluster CA certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// PEM file of this node's certificate chain, leaf first.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of this node's private key.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Largest gossip datagram in bytes, 500..=65507 [default: 1400].
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = parse_packet_size
    )]
    pub packet_size: Option<usize>,

    /// UDP port of VXLAN, 1..=65535 [default: 4789].
    #[arg(
        long,
        value_name = "PORT",
        value_parser = parse_vxlan_port
    )]
    pub vxlan_port: Option<u16>,

    /// Control API: unix:/PATH or /PATH (unix socket), tcp:IP:PORT or IP:PORT [default:
    /// /run/netagent/netagent.sock as root, else $XDG_RUNTIME_DIR/netagent.sock or
    /// /tmp/netagent-UID.sock].
    #[arg(long, value_name = "ADDR")]
    pub api: Option<ApiAddr>,

    /// Address of the libnetwork-compatible diagnostic API [default: 127.0.0.1:2000].
    #[arg(
        long,
        value_name = "IP:PORT",
        value_parser = parse_diag_addr
    )]
    pub diag_addr: Option<SocketAddr>,

    /// Run without gossip keys and TLS: plaintext, unauthenticated. Only for test clusters.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub insecure: Option<bool>,

    /// Directory of the agent's state [default: /var/lib/netagent as root, else
    /// $XDG_STATE_HOME/netagent or ~/.local/state/netagent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Log format: text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter, an EnvFilter directive such as "info" or "cluster=debug,info" [default:
    /// info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Cluster label bound into every datagram's authentication, so clusters sharing a key
    /// still refuse each other's traffic [default: netagent].
    #[arg(long, value_name = "LABEL")]
    pub cluster_label: Option<String>,

    /// Detect failures in about two seconds (fast SWIM probes, for tests and demos on one
    /// machine) instead of memberlist's LAN timing.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub fast_failure_detection: Option<bool>,

    /// Run an embedded DNS server at 127.0.0.11:53 in every sandbox with a joined endpoint
    /// (root only) [default: true].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub dns: Option<bool>,

    /// Upstream resolver for names the cluster does not know, IP or IP:PORT (port 53 by
    /// default); repeat for up to 3 [default: the nameservers of /etc/resolv.conf].
    #[arg(
        long = "dns-upstream",
        value_name = "IP[:PORT]",
        value_delimiter = ',',
        value_parser = parse_dns_upstream
    )]
    pub dns_upstreams: Vec<SocketAddr>,

    /// Forward names the cluster does not know to the upstream resolvers; false: answer
    /// them SERVFAIL (for isolated test clusters) [default: true].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub dns_forward: Option<bool>,

    /// Balance connections to service VIPs over the services' enabled tasks, with nf_tables
    /// in every sandbox with a joined endpoint (root only) [default: true].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub vip_balancer: Option<bool>,

    /// TTL of the embedded DNS server's answers in seconds, 0..=2147483647 [default: 600].
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_dns_ttl
    )]
    pub dns_ttl: Option<u32>,

    /// Serve the Docker plugin protocol (a remote network driver and IPAM driver) under this
    /// name, the one `docker network create -d NAME --ipam-driver NAME` uses; 1..=64
    /// letters, digits, '.', '_' and '-' [default: not served].
    #[arg(long, value_name = "NAME")]
    pub docker_plugin: Option<String>,

    /// Directory of the Docker plugin's socket, NAME.sock, where dockerd looks for plugins
    /// [default: /run/docker/plugins].
    #[arg(long, value_name = "DIR")]
    pub docker_plugin_dir: Option<PathBuf>,

    /// dockerd's API socket, asked for the names of networks and containers (the plugin
    /// protocol does not carry them) [default: /var/run/docker.sock].
    #[arg(long, value_name = "SOCKET")]
    pub docker_api: Option<PathBuf>,
}

impl RunArgs {
    /// This layer over `lower`: every field `self` leaves unset is taken from `lower`; a list
    /// given here replaces `lower`'s rather than extending it.
    pub(super) fn or(self, lower: Self) -> Self {
        let Self {
            config,
            name,
            bind,
            advertise,
            join,
            key_file,
            tls_ca,
            tls_cert,
            tls_key,
            packet_size,
            vxlan_port,
            api,
            diag_addr,
            insecure,
            state_dir,
            log_format,
            log_level,
            cluster_label,
            fast_failure_detection,
            dns,
            dns_upstreams,
            dns_forward,
            vip_balancer,
            dns_ttl,
            docker_plugin,
            docker_plugin_dir,
            docker_api,
        } = self;
        Self {
            config: config.or(lower.config),
            name: name.or(lower.name),
            bind: bind.or(lower.bind),
            advertise: advertise.or(lower.advertise),
            join: if join.is_empty() { lower.join } else { join },
            key_file: key_file.or(lower.key_file),
            tls_ca: tls_ca.or(lower.tls_ca),
            tls_cert: tls_cert.or(lower.tls_cert),
            tls_key: tls_key.or(lower.tls_key),
            packet_size: packet_size.or(lower.packet_size),
            vxlan_port: vxlan_port.or(lower.vxlan_port),
            api: api.or(lower.api),
            diag_addr: diag_addr.or(lower.diag_addr),
            insecure: insecure.or(lower.insecure),
            state_dir: state_dir.or(lower.state_dir),
            log_format: log_format.or(lower.log_format),
            log_level: log_level.or(lower.log_level),
            cluster_label: cluster_label.or(lower.cluster_label),
            fast_failure_detection: fast_failure_detection.or(lower.fast_failure_detection),
            dns: dns.or(lower.dns),
            dns_upstreams: if dns_upstreams.is_empty() {
                lower.dns_upstreams
            } else {
                dns_upstreams
            },
            dns_forward: dns_forward.or(lower.dns_forward),
            vip_balancer: vip_balancer.or(lower.vip_balancer),
            dns_ttl: dns_ttl.or(lower.dns_ttl),
            docker_plugin: docker_plugin.or(lower.docker_plugin),
            docker_plugin_dir: docker_plugin_dir.or(lower.docker_plugin_dir),
            docker_api: docker_api.or(lower.docker_api),
        }
    }

    /// Whether the flag of the field named `id` (clap's argument id) is given; `false` for an
    /// unknown id.
    pub(super) fn is_set(&self, id: &str) -> bool {
        let Self {
            config,
            name,
            bind,
            advertise,
            join,
            key_file,
            tls_ca,
            tls_cert,
            tls_key,
            packet_size,
            vxlan_port,
            api,
            diag_addr,
            insecure,
            state_dir,
            log_format,
            log_level,
            cluster_label,
            fast_failure_detection,
            dns,
            dns_upstreams,
            dns_forward,
            vip_balancer,
            dns_ttl,
            docker_plugin,
            docker_plugin_dir,
            docker_api,
        } = self;
        match id {
            "config" => config.is_some(),
            "name" => name.is_some(),
            "bind" => bind.is_some(),
            "advertise" => advertise.is_some(),
            "join" => !join.is_empty(),
            "key_file" => key_file.is_some(),
            "tls_ca" => tls_ca.is_some(),
            "tls_cert" => tls_cert.is_some(),
            "tls_key" => tls_key.is_some(),
            "packet_size" => packet_size.is_some(),
            "vxlan_port" => vxlan_port.is_some(),
            "api" => api.is_some(),
            "diag_addr" => diag_addr.is_some(),
            "insecure" => insecure.is_some(),
            "state_dir" => state_dir.is_some(),
            "log_format" => log_format.is_some(),
            "log_level" => log_level.is_some(),
            "cluster_label" => cluster_label.is_some(),
            "fast_failure_detection" => fast_failure_detection.is_some(),
            "dns" => dns.is_some(),
            "dns_upstreams" => !dns_upstreams.is_empty(),
            "dns_forward" => dns_forward.is_some(),
            "vip_balancer" => vip_balancer.is_some(),
            "dns_ttl" => dns_ttl.is_some(),
            "docker_plugin" => docker_plugin.is_some(),
            "docker_plugin_dir" => docker_plugin_dir.is_some(),
            "docker_api" => docker_api.is_some(),
            _ => false,
        }
    }
}
