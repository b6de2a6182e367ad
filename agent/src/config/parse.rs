//! Parsers and checks of single field values (addresses, ports, sizes, names, the log filter,
//! DNS settings), shared by the flags, the environment and the file so each refusal reads
//! the same whatever its source.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use rustls::pki_types::DnsName;

use super::agent::{DEFAULT_GOSSIP_PORT, MAX_DNS_TTL};
use super::error::{ConfigError, invalid};
use crate::dns::MAX_UPSTREAMS;

const NAME_FORM: &str = "1..=63 letters, digits and '-', not starting or ending with '-', not a number (it is the DNS name of the node's TLS certificate)";
const JOIN_FORMS: &str = "HOST:PORT, HOST, IP, [IPv6]:PORT or [IPv6]; port 1..=65535, default 7946";

/// The refusal of a `packet_size` outside networkdb's range (or not a number).
pub(super) fn packet_size_error(value: impl fmt::Display) -> ConfigError {
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
pub(super) fn parse_packet_size(text: &str) -> Result<usize, ConfigError> {
    text.trim().parse().map_err(|_| packet_size_error(text))
}

/// Parser of one upstream resolver (`--dns-upstream`, `dns_upstreams`): `IP` (port 53) or
/// `IP:PORT`, not unspecified, not port 0, not the embedded server's own address.
pub(super) fn parse_dns_upstream(text: &str) -> Result<SocketAddr, ConfigError> {
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

/// Drops duplicates (keeping the first) and refuses more than [`MAX_UPSTREAMS`].
pub(super) fn check_dns_upstreams(list: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for addr in list {
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.len() > MAX_UPSTREAMS {
        let given: Vec<String> = out.iter().map(ToString::to_string).collect();
        return Err(invalid(
            "dns_upstreams",
            given.join(","),
            format!("at most {MAX_UPSTREAMS} resolvers"),
        ));
    }
    Ok(out)
}

/// Clap parser of `--dns-ttl`: 0..=[`MAX_DNS_TTL`].
pub(super) fn parse_dns_ttl(text: &str) -> Result<u32, ConfigError> {
    text.trim()
        .parse()
        .ok()
        .filter(|ttl| *ttl <= MAX_DNS_TTL)
        .ok_or_else(|| invalid("dns_ttl", text, format!("0..={MAX_DNS_TTL}")))
}

/// Clap parser of `--vxlan-port`: values beyond `u16` are refused here, 0 at the merge,
/// with the same message.
pub(super) fn parse_vxlan_port(text: &str) -> Result<u16, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| invalid("vxlan_port", text, "1..=65535"))
}

/// Parser of `bind`: `IP:PORT`, port not 0.
pub(super) fn parse_bind(text: &str) -> Result<SocketAddr, ConfigError> {
    let addr = text.trim().parse().map_err(|_| {
        invalid(
            "bind",
            text,
            "IP:PORT with port 1..=65535, e.g. 0.0.0.0:7946",
        )
    })?;
    check_bind(addr)
}

/// Checks a `bind` address built in code (a parsed flag) as [`parse_bind`] would.
pub(super) fn check_bind(addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
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

/// Parser of `advertise`: `IP:PORT` or `IP` (taking `bind_port`), neither unspecified nor
/// port 0.
pub(super) fn parse_advertise(text: &str, bind_port: u16) -> Result<SocketAddr, ConfigError> {
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

/// Parser of one `join` entry: an IP or a host name, with or without a port (default
/// [`DEFAULT_GOSSIP_PORT`]). A host name is resolved now, preferring the family of `prefer`.
pub(super) fn parse_join(text: &str, prefer: IpAddr) -> Result<SocketAddr, ConfigError> {
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

/// Parser of `diag_addr`: `IP:PORT`, port not 0.
pub(super) fn parse_diag_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    let addr = text
        .trim()
        .parse()
        .map_err(|_| invalid("diag_addr", text, "IP:PORT with port 1..=65535"))?;
    check_diag_addr(addr)
}

/// Checks a `diag_addr` built in code (a parsed flag) as [`parse_diag_addr`] would.
pub(super) fn check_diag_addr(addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
    if addr.port() == 0 {
        return Err(invalid("diag_addr", addr, "IP:PORT with port 1..=65535"));
    }
    Ok(addr)
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

/// Checks a `log_level`: a non-blank `EnvFilter` directive.
pub(super) fn check_log_level(level: &str) -> Result<(), ConfigError> {
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
