//! The configuration of `netagent run`.
//!
//! Every field comes from four sources, the first that gives it wins: a command-line flag
//! (`--packet-size`), an environment variable (`NETAGENT_PACKET_SIZE`, the field name in upper
//! snake case), the TOML file named by `--config` / `NETAGENT_CONFIG`, and the default.
//! [`RunArgs`] holds the first two (clap reads both), a private serde type the file, and
//! [`AgentConfig`] the merged, validated result. Every refused value is a [`ConfigError`]
//! naming the field and what is allowed; `netagent` exits with [`EXIT_CONFIG`] on one.
//!
//! [`example_toml`] is a commented file holding every field with its default.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::builder::BoolishValueParser;
use cluster::NodeConfig;
use cluster::crypto::{KEY_LEN, Key, Keyring};
use cluster::shell::{Security, Tls, TlsError, TlsIdentity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use serde::Deserialize;

use crate::{base64, hex};

/// Exit status of `netagent` when its configuration is refused (a [`ConfigError`]), the same
/// status clap uses for a malformed command line.
pub const EXIT_CONFIG: u8 = 2;

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

/// Default `name` when the host name cannot be read.
pub const FALLBACK_NAME: &str = "netagent";

/// Default `api` when running as root.
pub const ROOT_API_SOCKET: &str = "/run/netagent/netagent.sock";

/// Default `state_dir` when running as root.
pub const ROOT_STATE_DIR: &str = "/var/lib/netagent";

/// The longest `cluster_label` in bytes (memberlist's `LabelMaxSize`).
pub const MAX_CLUSTER_LABEL_BYTES: usize = 255;

/// TTL of the embedded DNS server's answers in seconds (libnetwork `respTTL`).
pub const DEFAULT_DNS_TTL: u32 = crate::dns::DEFAULT_TTL;

/// The largest DNS TTL (RFC 2181: 2^31 - 1 seconds).
pub const MAX_DNS_TTL: u32 = i32::MAX as u32;

/// How many upstream resolvers the embedded DNS server forwards to (libnetwork `maxExtDNS`).
pub const MAX_DNS_UPSTREAMS: usize = crate::dns::MAX_UPSTREAMS;

/// The longest unix socket path in bytes (`sun_path` holds 108 bytes with the NUL).
pub const MAX_UNIX_PATH_BYTES: usize = 107;

/// Run the node agent. Every flag is also read from an environment variable named after it
/// (NETAGENT_PACKET_SIZE for --packet-size; the flag wins), then from the --config file, then
/// a default applies.
//
// Range checks happen in `AgentConfig::from_sources`, so values built in code are checked
// like parsed ones; the value parsers below may refuse earlier, with the same wording.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// TOML configuration file; flags and NETAGENT_* variables override its values.
    #[arg(long, env = "NETAGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Node name, also the DNS name of its TLS certificate: 1..=63 letters, digits and '-'
    /// [default: the host name, else "netagent"].
    #[arg(long, env = "NETAGENT_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// UDP and TCP address for gossip [default: 0.0.0.0:7946].
    #[arg(long, env = "NETAGENT_BIND", value_name = "IP:PORT", value_parser = parse_bind)]
    pub bind: Option<SocketAddr>,

    /// Address peers reach this node at, IP:PORT or IP (bind's port) [default: the bind
    /// address; required when bind is 0.0.0.0 or ::].
    #[arg(long, env = "NETAGENT_ADVERTISE", value_name = "IP[:PORT]")]
    pub advertise: Option<String>,

    /// Seed to join, HOST:PORT or HOST (port 7946); repeatable or comma-separated. Replaces
    /// the file's list.
    #[arg(
        long,
        env = "NETAGENT_JOIN",
        value_name = "HOST[:PORT]",
        value_delimiter = ','
    )]
    pub join: Vec<String>,

    /// File of gossip keys, one per line (64 hex characters or base64 of 32 bytes); the first
    /// is the primary.
    #[arg(long, env = "NETAGENT_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// PEM file of the cluster CA certificate.
    #[arg(long, env = "NETAGENT_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// PEM file of this node's certificate chain, leaf first.
    #[arg(long, env = "NETAGENT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of this node's private key.
    #[arg(long, env = "NETAGENT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Largest gossip datagram in bytes, 500..=65507 [default: 1400].
    #[arg(
        long,
        env = "NETAGENT_PACKET_SIZE",
        value_name = "BYTES",
        value_parser = parse_packet_size
    )]
    pub packet_size: Option<usize>,

    /// UDP port of VXLAN, 1..=65535 [default: 4789].
    #[arg(
        long,
        env = "NETAGENT_VXLAN_PORT",
        value_name = "PORT",
        value_parser = parse_vxlan_port
    )]
    pub vxlan_port: Option<u16>,

    /// Control API: unix:/PATH or /PATH (unix socket), tcp:IP:PORT or IP:PORT [default:
    /// /run/netagent/netagent.sock as root, else $XDG_RUNTIME_DIR/netagent.sock or
    /// /tmp/netagent-UID.sock].
    #[arg(long, env = "NETAGENT_API", value_name = "ADDR")]
    pub api: Option<ApiAddr>,

    /// Address of the libnetwork-compatible diagnostic API [default: 127.0.0.1:2000].
    #[arg(
        long,
        env = "NETAGENT_DIAG_ADDR",
        value_name = "IP:PORT",
        value_parser = parse_diag_addr
    )]
    pub diag_addr: Option<SocketAddr>,

    /// Run without gossip keys and TLS: plaintext, unauthenticated. Only for test clusters.
    #[arg(
        long,
        env = "NETAGENT_INSECURE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub insecure: Option<bool>,

    /// Directory of the agent's state [default: /var/lib/netagent as root, else
    /// $XDG_STATE_HOME/netagent or ~/.local/state/netagent].
    #[arg(long, env = "NETAGENT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Log format: text or json [default: text].
    #[arg(long, env = "NETAGENT_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter, an EnvFilter directive such as "info" or "cluster=debug,info" [default:
    /// info].
    #[arg(long, env = "NETAGENT_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Cluster label bound into every datagram's authentication, so clusters sharing a key
    /// still refuse each other's traffic [default: netagent].
    #[arg(long, env = "NETAGENT_CLUSTER_LABEL", value_name = "LABEL")]
    pub cluster_label: Option<String>,

    /// Detect failures in about two seconds (fast SWIM probes, for tests and demos on one
    /// machine) instead of memberlist's LAN timing.
    #[arg(
        long,
        env = "NETAGENT_FAST_FAILURE_DETECTION",
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
        env = "NETAGENT_DNS",
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
        env = "NETAGENT_DNS_UPSTREAMS",
        value_name = "IP[:PORT]",
        value_delimiter = ',',
        value_parser = parse_dns_upstream
    )]
    pub dns_upstreams: Vec<SocketAddr>,

    /// Forward names the cluster does not know to the upstream resolvers; false: answer
    /// them SERVFAIL (for isolated test clusters) [default: true].
    #[arg(
        long,
        env = "NETAGENT_DNS_FORWARD",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub dns_forward: Option<bool>,

    /// TTL of the embedded DNS server's answers in seconds, 0..=2147483647 [default: 600].
    #[arg(
        long,
        env = "NETAGENT_DNS_TTL",
        value_name = "SECONDS",
        value_parser = parse_dns_ttl
    )]
    pub dns_ttl: Option<u32>,
}

/// The merged and validated configuration of `netagent run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Node name and the DNS name its TLS certificate carries. Default: the first label of
    /// the host name (`/etc/hostname`, else `/proc/sys/kernel/hostname`), else
    /// [`FALLBACK_NAME`]. 1..=63 ASCII letters, digits and '-', neither first nor last, not
    /// all digits.
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
    /// Control API address. Default: a unix socket, [`ROOT_API_SOCKET`] as root, else
    /// `$XDG_RUNTIME_DIR/netagent.sock`, else `/tmp/netagent-<uid>.sock`.
    pub api: ApiAddr,
    /// Diagnostic API address. Default [`DEFAULT_DIAG_ADDR`].
    pub diag_addr: SocketAddr,
    /// State directory. Default [`ROOT_STATE_DIR`] as root, else
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
    /// Upstream resolvers, at most [`MAX_DNS_UPSTREAMS`], without duplicates and not
    /// 127.0.0.11 (that would loop). Empty (the default): the nameservers of the host's
    /// `/etc/resolv.conf`, read when the agent starts.
    pub dns_upstreams: Vec<SocketAddr>,
    /// Forward unknown names upstream. Default true; false (no upstream at all, not even
    /// the host's) contradicts `dns_upstreams`.
    pub dns_forward: bool,
    /// TTL of local answers in seconds. Default [`DEFAULT_DNS_TTL`]; 0..=[`MAX_DNS_TTL`].
    pub dns_ttl: u32,
}

/// The control API's address.
///
/// Written `unix:/PATH` or `/PATH` for a unix socket (absolute, at most
/// [`MAX_UNIX_PATH_BYTES`]), `tcp:IP:PORT` or `IP:PORT` for TCP. [`Display`](fmt::Display)
/// writes the prefixed form, which parses back to the same value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ApiAddr {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// A TCP listener at this address.
    Tcp(SocketAddr),
}

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

/// Why the configuration was refused. Nothing was started; `netagent` exits with
/// [`EXIT_CONFIG`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value outside its allowed range or form.
    #[error("invalid {field}: {value} (allowed: {allowed})")]
    Invalid {
        /// The field's name as written in the file.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed, in words.
        allowed: String,
    },
    /// A field without a value and without a usable default.
    #[error("missing {field}: {reason}")]
    Missing {
        /// The field's name as written in the file.
        field: &'static str,
        /// Why it is needed and how to give it.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The configuration file is not valid TOML, has an unknown key or a value of the wrong
    /// type (the message names the key).
    #[error("invalid config file {}: {source}", path.display())]
    Parse {
        /// The file (`<inline>` for text given to [`AgentConfig::from_sources`] without
        /// `--config`).
        path: PathBuf,
        /// The TOML error, with line, column and key.
        source: Box<toml::de::Error>,
    },
    /// Neither the complete security material nor `--insecure` was given.
    #[error(
        "refusing to run without gossip keys and TLS certificates: missing {missing}; give them, or pass --insecure for a test cluster"
    )]
    Insecure {
        /// The missing fields, comma-separated.
        missing: String,
    },
    /// Some but not all of `tls_ca`, `tls_cert` and `tls_key` were given.
    #[error(
        "incomplete TLS material: {given} given but {missing} missing (give all of tls_ca, tls_cert and tls_key)"
    )]
    PartialTls {
        /// The TLS fields given, comma-separated.
        given: String,
        /// The TLS fields missing, comma-separated.
        missing: String,
    },
    /// `insecure` was set together with security material.
    #[error(
        "contradictory security: insecure is set but {given} also given; remove insecure or the security material"
    )]
    Contradiction {
        /// The security fields given, comma-separated.
        given: String,
    },
    /// A host name in `field` could not be resolved.
    #[error("invalid {field}: cannot resolve {value}: {source}")]
    Resolve {
        /// The field's name as written in the file.
        field: &'static str,
        /// The entry given.
        value: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// A line of a key file is not a key. The key text is not repeated here.
    #[error(
        "invalid gossip key on line {line}: {reason} (allowed: {HEX_KEY_CHARS} hex characters or base64 of {KEY_LEN} bytes)"
    )]
    BadKey {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file holds no key.
    #[error(
        "no gossip key found (one per line: {HEX_KEY_CHARS} hex characters or base64 of {KEY_LEN} bytes; '#' starts a comment)"
    )]
    NoKeys,
    /// A key or PEM file could not be read or holds nothing usable.
    #[error("cannot load {field} {}: {source}", path.display())]
    Load {
        /// The field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// rustls refused the TLS material (for example a key that does not match the
    /// certificate).
    #[error("invalid TLS material (tls_ca, tls_cert, tls_key): {0}")]
    Tls(#[from] TlsError),
    /// The node core refused the derived configuration (`packet_size` out of range).
    #[error(transparent)]
    Node(#[from] cluster::NodeConfigError),
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
            dns_ttl: DEFAULT_DNS_TTL,
        }
    }

    /// Reads the file named by `args.config` (if any), merges it under `args` and the
    /// defaults, and validates the result. File paths are not opened here; see
    /// [`security`](Self::security).
    pub fn load(args: &RunArgs) -> Result<Self, ConfigError> {
        let Some(path) = &args.config else {
            return Self::from_sources(args, None);
        };
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::from_sources(args, Some(&text))
    }

    /// Merges `args` over the TOML text `file` over the defaults and validates the result.
    /// Reads no file; the defaults of `name`, `api` and `state_dir` depend on the host name,
    /// the user and `XDG_*`/`HOME`, and host names in `join` are resolved.
    pub fn from_sources(args: &RunArgs, file: Option<&str>) -> Result<Self, ConfigError> {
        let file = match file {
            Some(text) => {
                let path = args
                    .config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("<inline>"));
                parse_file(&path, text)?
            }
            None => FileConfig::default(),
        };
        merge(args, file, &Host::detect())
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

    /// Loads the security material: the keyring (first key primary, labelled with
    /// `cluster_label`) and the TLS identity, which is checked by building rustls
    /// configurations from it. Errors name the field and the file.
    pub fn security(&self) -> Result<Security, ConfigError> {
        let SecurityConfig::Secure {
            key_file,
            tls_ca,
            tls_cert,
            tls_key,
        } = &self.security
        else {
            return Ok(Security::Insecure);
        };
        let text = fs::read_to_string(key_file).map_err(|e| load_error("key_file", key_file, e))?;
        let mut keys = parse_keys(&text)
            .map_err(|e| load_error("key_file", key_file, e))?
            .into_iter();
        let Some(primary) = keys.next() else {
            return Err(load_error("key_file", key_file, ConfigError::NoKeys));
        };
        let mut keyring = Keyring::new(primary, self.cluster_label.as_bytes());
        for key in keys {
            keyring.add(key);
        }

        let ca = CertificateDer::from_pem_file(tls_ca)
            .map_err(|e| load_error("tls_ca", tls_ca, pem_error(e, "CERTIFICATE")))?;
        let chain = CertificateDer::pem_file_iter(tls_cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| load_error("tls_cert", tls_cert, e))?;
        if chain.is_empty() {
            return Err(load_error(
                "tls_cert",
                tls_cert,
                "no CERTIFICATE section found",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(tls_key)
            .map_err(|e| load_error("tls_key", tls_key, pem_error(e, "PRIVATE KEY")))?;

        let tls = TlsIdentity { ca, chain, key };
        // Refuse a mismatched key or a bad CA now, as a configuration error, rather than
        // when the shell starts.
        Tls::new(TlsIdentity {
            ca: tls.ca.clone(),
            chain: tls.chain.clone(),
            key: tls.key.clone_key(),
        })?;
        Ok(Security::Secure { keyring, tls })
    }
}

/// Parses a gossip key file: one key per line, either 64 hex characters or standard base64
/// (padding optional) of 32 bytes. Blank lines and lines starting with `#` are ignored; the
/// first key is the primary. At least one key is required. Errors give the line number but
/// never the key text.
///
pub fn parse_keys(text: &str) -> Result<Vec<Key>, ConfigError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = parse_key(line).map_err(|reason| ConfigError::BadKey {
            line: index + 1,
            reason,
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(ConfigError::NoKeys);
    }
    Ok(keys)
}

/// A commented example configuration: every field with its default (active lines) or, where
/// the default depends on the host or there is none, an example (commented lines). It parses
/// as it is, and with every commented `key = value` line uncommented.
pub fn example_toml() -> &'static str {
    EXAMPLE_TOML
}

impl fmt::Display for ApiAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl FromStr for ApiAddr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let invalid = || invalid("api", s, API_FORMS);
        if let Some(path) = s.strip_prefix("unix:") {
            return unix_api(s, path);
        }
        if s.starts_with('/') {
            return unix_api(s, s);
        }
        let tcp = s.strip_prefix("tcp:").unwrap_or(s);
        let addr: SocketAddr = tcp.parse().map_err(|_| invalid())?;
        if addr.port() == 0 {
            return Err(invalid());
        }
        Ok(Self::Tcp(addr))
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

/// The default control-API address of this host and user, the one `netagent run` listens on
/// when `api` is not set: [`ROOT_API_SOCKET`] as root, else `$XDG_RUNTIME_DIR/netagent.sock`,
/// else `/tmp/netagent-<uid>.sock`. The CLI connects there by default.
pub fn default_api() -> Result<ApiAddr, ConfigError> {
    Host::detect().default_api()
}

// ---- helpers ------------------------------------------------------------------------------

const HEX_KEY_CHARS: usize = 2 * KEY_LEN;
const API_FORMS: &str = "unix:/PATH, /PATH, tcp:IP:PORT or IP:PORT, port not 0";
const NAME_FORM: &str = "1..=63 letters, digits and '-', not starting or ending with '-', not a number (it is the DNS name of the node's TLS certificate)";
const JOIN_FORMS: &str = "HOST:PORT, HOST, IP, [IPv6]:PORT or [IPv6]; port 1..=65535, default 7946";

/// The file's view of the configuration: every field optional, unknown keys refused.
/// Addresses are strings and integers are wide, so a bad value gets the same message as
/// from a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    bind: Option<String>,
    advertise: Option<String>,
    join: Option<Vec<String>>,
    key_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    packet_size: Option<i64>,
    vxlan_port: Option<i64>,
    api: Option<String>,
    diag_addr: Option<String>,
    insecure: Option<bool>,
    state_dir: Option<PathBuf>,
    log_format: Option<String>,
    log_level: Option<String>,
    cluster_label: Option<String>,
    fast_failure_detection: Option<bool>,
    dns: Option<bool>,
    dns_upstreams: Option<Vec<String>>,
    dns_forward: Option<bool>,
    dns_ttl: Option<i64>,
}

/// What the defaults depend on, read once so the merge itself is pure.
#[derive(Clone, Debug, Default)]
struct Host {
    hostname: Option<String>,
    uid: Option<u32>,
    runtime_dir: Option<PathBuf>,
    state_home: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl Host {
    fn detect() -> Self {
        let hostname = ["/etc/hostname", "/proc/sys/kernel/hostname"]
            .iter()
            .filter_map(|path| fs::read_to_string(path).ok())
            .find_map(|text| {
                let label = text.trim().split('.').next().unwrap_or("").trim();
                (!label.is_empty()).then(|| label.to_owned())
            });
        Self {
            hostname,
            uid: effective_uid(),
            runtime_dir: absolute_env("XDG_RUNTIME_DIR"),
            state_home: absolute_env("XDG_STATE_HOME"),
            home: absolute_env("HOME"),
        }
    }

    fn is_root(&self) -> bool {
        self.uid == Some(0)
    }

    fn default_name(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| FALLBACK_NAME.to_owned())
    }

    fn default_api(&self) -> Result<ApiAddr, ConfigError> {
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
                reason: "no default: the user id is unknown (/proc/self/status) and XDG_RUNTIME_DIR is not set; pass --api".into(),
            }),
        }
    }

    fn default_state_dir(&self) -> Result<PathBuf, ConfigError> {
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

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

fn merge(args: &RunArgs, file: FileConfig, host: &Host) -> Result<AgentConfig, ConfigError> {
    let name = args
        .name
        .clone()
        .or(file.name)
        .unwrap_or_else(|| host.default_name());
    check_node_name(&name)?;

    let bind = match args.bind {
        Some(bind) => check_bind(bind)?,
        None => match file.bind.as_deref() {
            Some(text) => parse_bind(text)?,
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_GOSSIP_PORT),
        },
    };

    let advertise = match args.advertise.as_deref().or(file.advertise.as_deref()) {
        Some(text) => parse_advertise(text, bind.port())?,
        None if bind.ip().is_unspecified() => {
            return Err(ConfigError::Missing {
                field: "advertise",
                reason: format!(
                    "bind {bind} is unspecified, so give the address peers reach this node at (--advertise IP[:PORT])"
                ),
            });
        }
        None => bind,
    };

    let join_texts = if args.join.is_empty() {
        file.join.unwrap_or_default()
    } else {
        args.join.clone()
    };
    let mut join = Vec::with_capacity(join_texts.len());
    for text in &join_texts {
        let addr = parse_join(text, advertise.ip())?;
        if !join.contains(&addr) {
            join.push(addr);
        }
    }

    let security = security_config(
        args.insecure.or(file.insecure).unwrap_or(false),
        args.key_file.clone().or(file.key_file),
        args.tls_ca.clone().or(file.tls_ca),
        args.tls_cert.clone().or(file.tls_cert),
        args.tls_key.clone().or(file.tls_key),
    )?;

    let packet_size = match (args.packet_size, file.packet_size) {
        (Some(size), _) => size,
        (None, Some(size)) => usize::try_from(size).map_err(|_| packet_size_error(size))?,
        (None, None) => networkdb::Config::default().packet_size,
    };

    let vxlan_port = match (args.vxlan_port, file.vxlan_port) {
        (Some(port), _) => i64::from(port),
        (None, Some(port)) => port,
        (None, None) => i64::from(DEFAULT_VXLAN_PORT),
    };
    let vxlan_port = u16::try_from(vxlan_port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| invalid("vxlan_port", vxlan_port, "1..=65535"))?;

    let api = match (&args.api, file.api.as_deref()) {
        (Some(api), _) => check_api(api.clone())?,
        (None, Some(text)) => text.parse()?,
        (None, None) => host.default_api()?,
    };

    let diag_addr = match (args.diag_addr, file.diag_addr.as_deref()) {
        (Some(addr), _) => check_diag_addr(addr)?,
        (None, Some(text)) => parse_diag_addr(text)?,
        (None, None) => DEFAULT_DIAG_ADDR,
    };

    let state_dir = match args.state_dir.clone().or(file.state_dir) {
        Some(dir) if dir.as_os_str().is_empty() => {
            return Err(invalid("state_dir", "\"\"", "a directory path"));
        }
        Some(dir) => dir,
        None => host.default_state_dir()?,
    };

    let log_format = match (args.log_format, file.log_format.as_deref()) {
        (Some(format), _) => format,
        (None, Some(text)) => text.parse()?,
        (None, None) => LogFormat::default(),
    };

    let log_level = args
        .log_level
        .clone()
        .or(file.log_level)
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    check_log_level(&log_level)?;

    let cluster_label = args
        .cluster_label
        .clone()
        .or(file.cluster_label)
        .unwrap_or_else(|| DEFAULT_CLUSTER_LABEL.to_owned());
    if cluster_label.is_empty() || cluster_label.len() > MAX_CLUSTER_LABEL_BYTES {
        return Err(invalid(
            "cluster_label",
            format!("{cluster_label:?}"),
            format!("1..={MAX_CLUSTER_LABEL_BYTES} bytes"),
        ));
    }

    let dns_upstreams = if args.dns_upstreams.is_empty() {
        file.dns_upstreams
            .unwrap_or_default()
            .iter()
            .map(|text| parse_dns_upstream(text))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        args.dns_upstreams.clone()
    };
    let dns_upstreams = check_dns_upstreams(dns_upstreams)?;
    let dns_forward = args.dns_forward.or(file.dns_forward).unwrap_or(true);
    if !dns_forward && !dns_upstreams.is_empty() {
        return Err(invalid(
            "dns_upstreams",
            dns_upstreams
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "none when dns_forward is false",
        ));
    }

    let dns_ttl = match (args.dns_ttl, file.dns_ttl) {
        (Some(ttl), _) => ttl,
        (None, Some(ttl)) => u32::try_from(ttl)
            .ok()
            .filter(|ttl| *ttl <= MAX_DNS_TTL)
            .ok_or_else(|| invalid("dns_ttl", ttl, format!("0..={MAX_DNS_TTL}")))?,
        (None, None) => DEFAULT_DNS_TTL,
    };

    let config = AgentConfig {
        name,
        bind,
        advertise,
        join,
        security,
        packet_size,
        vxlan_port,
        api,
        diag_addr,
        state_dir,
        log_format,
        log_level,
        cluster_label,
        fast_failure_detection: args
            .fast_failure_detection
            .or(file.fast_failure_detection)
            .unwrap_or(false),
        dns: args.dns.or(file.dns).unwrap_or(true),
        dns_upstreams,
        dns_forward,
        dns_ttl,
    };
    // The node core owns the packet-size rule and its message.
    config.node_config().validate()?;
    Ok(config)
}

fn security_config(
    insecure: bool,
    key_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
) -> Result<SecurityConfig, ConfigError> {
    let fields = [
        ("key_file", key_file.is_some()),
        ("tls_ca", tls_ca.is_some()),
        ("tls_cert", tls_cert.is_some()),
        ("tls_key", tls_key.is_some()),
    ];
    let names = |given: bool, tls_only: bool| {
        fields
            .iter()
            .skip(usize::from(tls_only))
            .filter(|(_, is_given)| *is_given == given)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tls_given = fields[1..].iter().filter(|(_, given)| *given).count();
    if tls_given != 0 && tls_given != 3 {
        return Err(ConfigError::PartialTls {
            given: names(true, true),
            missing: names(false, true),
        });
    }
    if insecure {
        if fields.iter().any(|(_, given)| *given) {
            return Err(ConfigError::Contradiction {
                given: names(true, false),
            });
        }
        return Ok(SecurityConfig::Insecure);
    }
    match (key_file, tls_ca, tls_cert, tls_key) {
        (Some(key_file), Some(tls_ca), Some(tls_cert), Some(tls_key)) => {
            Ok(SecurityConfig::Secure {
                key_file,
                tls_ca,
                tls_cert,
                tls_key,
            })
        }
        _ => Err(ConfigError::Insecure {
            missing: names(false, false),
        }),
    }
}

fn invalid(
    field: &'static str,
    value: impl fmt::Display,
    allowed: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

fn packet_size_error(value: impl fmt::Display) -> ConfigError {
    invalid(
        "packet_size",
        value,
        format!(
            "{}..={} bytes",
            networkdb::MIN_PACKET_SIZE,
            networkdb::MAX_PACKET_SIZE
        ),
    )
}

/// Clap parser of `--packet-size`: the syntax only, the range is checked at the merge.
fn parse_packet_size(text: &str) -> Result<usize, ConfigError> {
    text.trim().parse().map_err(|_| packet_size_error(text))
}

/// Parser of one upstream resolver (`--dns-upstream`, `dns_upstreams`): `IP` (port 53) or
/// `IP:PORT`, not unspecified, not port 0, not the embedded server's own address.
fn parse_dns_upstream(text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    let addr = text
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            text.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
        .ok_or_else(|| {
            invalid(
                "dns_upstreams",
                text,
                "IP or IP:PORT (IPv6 as [IP]:PORT), port 1..=65535, default 53",
            )
        })?;
    if addr.ip() == IpAddr::V4(crate::dns::SANDBOX_DNS_IP) {
        return Err(invalid(
            "dns_upstreams",
            text,
            "an upstream resolver other than 127.0.0.11 (the embedded server itself)",
        ));
    }
    Ok(addr)
}

/// Drops duplicates (keeping the first) and refuses more than [`MAX_DNS_UPSTREAMS`].
fn check_dns_upstreams(list: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for addr in list {
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.len() > MAX_DNS_UPSTREAMS {
        let given: Vec<String> = out.iter().map(ToString::to_string).collect();
        return Err(invalid(
            "dns_upstreams",
            given.join(","),
            format!("at most {MAX_DNS_UPSTREAMS} resolvers"),
        ));
    }
    Ok(out)
}

/// Clap parser of `--dns-ttl`: 0..=[`MAX_DNS_TTL`].
fn parse_dns_ttl(text: &str) -> Result<u32, ConfigError> {
    text.trim()
        .parse()
        .ok()
        .filter(|ttl| *ttl <= MAX_DNS_TTL)
        .ok_or_else(|| invalid("dns_ttl", text, format!("0..={MAX_DNS_TTL}")))
}

/// Clap parser of `--vxlan-port`: values beyond `u16` are refused here, 0 at the merge,
/// with the same message.
fn parse_vxlan_port(text: &str) -> Result<u16, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| invalid("vxlan_port", text, "1..=65535"))
}

fn parse_bind(text: &str) -> Result<SocketAddr, ConfigError> {
    let addr = text.trim().parse().map_err(|_| {
        invalid(
            "bind",
            text,
            "IP:PORT with port 1..=65535, e.g. 0.0.0.0:7946",
        )
    })?;
    check_bind(addr)
}

fn check_bind(addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
    if addr.port() == 0 {
        // Peers must learn the port before the socket exists, so it cannot be chosen late.
        return Err(invalid(
            "bind",
            addr,
            "IP:PORT with port 1..=65535, e.g. 0.0.0.0:7946",
        ));
    }
    Ok(addr)
}

fn parse_advertise(text: &str, bind_port: u16) -> Result<SocketAddr, ConfigError> {
    let err = || {
        invalid(
            "advertise",
            text,
            "IP or IP:PORT that peers can reach, not 0.0.0.0 or [::], port 1..=65535 (default: bind's)",
        )
    };
    let trimmed = text.trim();
    let addr = match trimmed.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let ip = trimmed
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .unwrap_or(trimmed);
            SocketAddr::new(ip.parse().map_err(|_| err())?, bind_port)
        }
    };
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(err());
    }
    Ok(addr)
}

fn parse_join(text: &str, prefer: IpAddr) -> Result<SocketAddr, ConfigError> {
    let err = || invalid("join", format!("{text:?}"), JOIN_FORMS);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(err());
    }
    let check = |addr: SocketAddr| {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            Err(err())
        } else {
            Ok(addr)
        }
    };
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return check(addr);
    }
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return check(SocketAddr::new(ip, DEFAULT_GOSSIP_PORT));
    }
    // A host name, with or without a port.
    let (host, port) = match trimmed.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| err())?),
        None => (trimmed, DEFAULT_GOSSIP_PORT),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !host_ok || port == 0 {
        return Err(err());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| ConfigError::Resolve {
            field: "join",
            value: trimmed.to_owned(),
            source,
        })?
        .collect();
    let chosen = addrs
        .iter()
        .find(|addr| addr.is_ipv4() == prefer.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| ConfigError::Resolve {
            field: "join",
            value: trimmed.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        })?;
    check(chosen)
}

fn parse_diag_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    let addr = text
        .trim()
        .parse()
        .map_err(|_| invalid("diag_addr", text, "IP:PORT with port 1..=65535"))?;
    check_diag_addr(addr)
}

fn check_diag_addr(addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
    if addr.port() == 0 {
        return Err(invalid("diag_addr", addr, "IP:PORT with port 1..=65535"));
    }
    Ok(addr)
}

fn unix_api(text: &str, path: &str) -> Result<ApiAddr, ConfigError> {
    if !path.starts_with('/') || path.len() > MAX_UNIX_PATH_BYTES {
        return Err(invalid(
            "api",
            text,
            format!("{API_FORMS}; a unix path is absolute and at most {MAX_UNIX_PATH_BYTES} bytes"),
        ));
    }
    Ok(ApiAddr::Unix(PathBuf::from(path)))
}

/// Checks an [`ApiAddr`] built in code as its parser would.
fn check_api(api: ApiAddr) -> Result<ApiAddr, ConfigError> {
    let text = api.to_string();
    match &api {
        ApiAddr::Unix(path) => match path.to_str() {
            Some(path) => unix_api(&text, path),
            None => Err(invalid("api", &text, "a UTF-8 path")),
        },
        ApiAddr::Tcp(_) => text.parse(),
    }
}

/// Checks a node name: 1..=63 letters, digits and `-`, not starting or ending with `-`, not
/// all digits (it is the DNS name of the node's TLS certificate).
pub fn check_node_name(name: &str) -> Result<(), ConfigError> {
    let bytes = name.as_bytes();
    let ok = (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
        && DnsName::try_from(name).is_ok();
    if ok {
        Ok(())
    } else {
        Err(invalid("name", format!("{name:?}"), NAME_FORM))
    }
}

fn check_log_level(level: &str) -> Result<(), ConfigError> {
    let ok = !level.trim().is_empty() && tracing_subscriber::EnvFilter::try_new(level).is_ok();
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "log_level",
            format!("{level:?}"),
            "an EnvFilter directive, e.g. info, debug or cluster=debug,info",
        ))
    }
}

fn parse_key(line: &str) -> Result<Key, String> {
    if line.len() == HEX_KEY_CHARS
        && let Some(key) = hex::decode(line.as_bytes()).and_then(|b| Key::from_slice(&b).ok())
    {
        return Ok(key);
    }
    let base64 = line
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    if !base64 {
        return Err(format!(
            "{} characters, neither hex nor base64",
            line.chars().count()
        ));
    }
    let bytes = base64::decode_padding_optional(line.as_bytes())
        .map_err(|_| format!("{} characters, not valid base64", line.len()))?;
    Key::from_slice(&bytes).map_err(|_| format!("base64 of {} bytes, not {KEY_LEN}", bytes.len()))
}

fn load_error(
    field: &'static str,
    path: &Path,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ConfigError {
    ConfigError::Load {
        field,
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// Turns pem's "no items found" into a message naming the section looked for.
fn pem_error(
    err: rustls::pki_types::pem::Error,
    section: &str,
) -> Box<dyn std::error::Error + Send + Sync> {
    match err {
        rustls::pki_types::pem::Error::NoItemsFound => format!("no {section} section found").into(),
        other => other.into(),
    }
}

/// The effective user id, from `/proc/self/status` (no `libc` call: unsafe code is forbidden).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// An environment variable holding an absolute path (XDG says relative ones are ignored).
fn absolute_env(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(name)?);
    path.is_absolute().then_some(path)
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
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn host(uid: Option<u32>) -> Host {
        Host {
            hostname: Some("box".into()),
            uid,
            ..Host::default()
        }
    }

    fn insecure() -> RunArgs {
        RunArgs {
            advertise: Some("192.0.2.1".into()),
            insecure: Some(true),
            ..RunArgs::default()
        }
    }

    #[test]
    fn root_defaults() {
        let c = merge(&insecure(), FileConfig::default(), &host(Some(0))).unwrap();
        assert_eq!(c.name, "box");
        assert_eq!(c.api, ApiAddr::Unix(ROOT_API_SOCKET.into()));
        assert_eq!(c.state_dir, PathBuf::from(ROOT_STATE_DIR));
        assert_eq!(c.advertise, "192.0.2.1:7946".parse().unwrap());
    }

    #[test]
    fn user_defaults_follow_xdg_then_home_then_uid() {
        let mut h = host(Some(1000));
        h.home = Some("/home/u".into());
        let c = merge(&insecure(), FileConfig::default(), &h).unwrap();
        assert_eq!(c.api, ApiAddr::Unix("/tmp/netagent-1000.sock".into()));
        assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/netagent"));

        h.runtime_dir = Some("/run/user/1000".into());
        h.state_home = Some("/xdg/state".into());
        let c = merge(&insecure(), FileConfig::default(), &h).unwrap();
        assert_eq!(c.api, ApiAddr::Unix("/run/user/1000/netagent.sock".into()));
        assert_eq!(c.state_dir, PathBuf::from("/xdg/state/netagent"));

        let err = merge(&insecure(), FileConfig::default(), &host(Some(1000))).unwrap_err();
        assert!(err.to_string().starts_with("missing state_dir"), "{err}");
    }

    #[test]
    fn no_hostname_falls_back() {
        let h = Host {
            uid: Some(0),
            ..Host::default()
        };
        let c = merge(&insecure(), FileConfig::default(), &h).unwrap();
        assert_eq!(c.name, FALLBACK_NAME);
    }
}
