//! The merge: flag > environment > file > default, then validation.
//!
//! The environment is an input like the others ([`AgentConfig::from_env_and_file`]); only
//! [`AgentConfig::load`] and [`AgentConfig::from_sources`] read the process's.

use std::ffi::OsString;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::agent::{
    AgentConfig, DEFAULT_CLUSTER_LABEL, DEFAULT_DIAG_ADDR, DEFAULT_GOSSIP_PORT, DEFAULT_LOG_LEVEL,
    DEFAULT_VXLAN_PORT, LogFormat, MAX_CLUSTER_LABEL_BYTES, MAX_DNS_TTL, SecurityConfig,
};
use super::api_addr::check_api;
use super::env::Env;
use super::error::{ConfigError, invalid};
use super::file::{FileConfig, parse_file};
use super::flags::RunArgs;
use super::host::Host;
use super::parse::{
    check_bind, check_diag_addr, check_dns_upstreams, check_log_level, check_node_name,
    packet_size_error, parse_advertise, parse_bind, parse_diag_addr, parse_dns_upstream,
    parse_join,
};
use crate::dns;

impl AgentConfig {
    /// Merges `flags` over the process environment over the file named by `--config` or
    /// `NETAGENT_CONFIG` (if any) over the defaults, and validates the result. Key and PEM
    /// files are not opened here; see [`security`](Self::security).
    pub fn load(flags: &RunArgs) -> Result<Self, ConfigError> {
        let env = Env::process();
        let args = env.under(flags)?;
        let text = match &args.config {
            Some(path) => Some(
                fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        resolve(&args, text.as_deref(), &env)
    }

    /// Merges `flags` over the process environment over the TOML text `file` over the
    /// defaults and validates the result, like [`from_env_and_file`](Self::from_env_and_file)
    /// given the process environment.
    pub fn from_sources(flags: &RunArgs, file: Option<&str>) -> Result<Self, ConfigError> {
        Self::from_env_and_file(flags, std::env::vars_os(), file)
    }

    /// Merges `flags` over the environment `env` (variables by name, standing for the
    /// process environment) over the TOML text `file` over the defaults and validates the
    /// result. Reads no file, not even `--config`; the defaults of `name`, `api` and
    /// `state_dir` depend on the host name, the user and `XDG_*`/`HOME` in `env`, and host
    /// names in `join` are resolved.
    pub fn from_env_and_file<K, V>(
        flags: &RunArgs,
        env: impl IntoIterator<Item = (K, V)>,
        file: Option<&str>,
    ) -> Result<Self, ConfigError>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let env: Env = env.into_iter().collect();
        resolve(&env.under(flags)?, file, &env)
    }
}

/// `args` (the flags over the environment) over the TOML text `file` over the defaults of
/// this host and `env`.
fn resolve(args: &RunArgs, file: Option<&str>, env: &Env) -> Result<AgentConfig, ConfigError> {
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
    merge(args, file, &Host::probe(env))
}

/// `args` (the flags over the environment) over `file` over the defaults of `host`, then the
/// checks that span fields.
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
        (None, None) => dns::DEFAULT_TTL,
    };

    let docker_plugin = args.docker_plugin.clone().or(file.docker_plugin);
    if let Some(name) = &docker_plugin
        && (name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    {
        return Err(invalid(
            "docker_plugin",
            format!("{name:?}"),
            "1..=64 ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    let docker_plugin_dir = args
        .docker_plugin_dir
        .clone()
        .or(file.docker_plugin_dir)
        .unwrap_or_else(|| PathBuf::from(super::agent::DEFAULT_DOCKER_PLUGIN_DIR));
    if docker_plugin_dir.as_os_str().is_empty() {
        return Err(invalid("docker_plugin_dir", "\"\"", "a directory path"));
    }
    let docker_api = args
        .docker_api
        .clone()
        .or(file.docker_api)
        .unwrap_or_else(|| PathBuf::from(super::agent::DEFAULT_DOCKER_API));
    if docker_api.as_os_str().is_empty() {
        return Err(invalid("docker_api", "\"\"", "a socket path"));
    }

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
        vip_balancer: args.vip_balancer.or(file.vip_balancer).unwrap_or(true),
        dns_ttl,
        docker_plugin,
        docker_plugin_dir,
        docker_api,
    };
    // The node core owns the packet-size rule and its message.
    config.node_config().validate()?;
    Ok(config)
}

/// The security fields merged into a [`SecurityConfig`]: all four, or `insecure` and none;
/// partial TLS material is refused even when insecure.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiAddr, FALLBACK_NAME, ROOT_API_SOCKET, ROOT_STATE_DIR};

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
