//! The names one `EndpointRecord` asserts.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::record::{DecodeError, EndpointRecord};

/// The DNS facts of one enabled endpoint record: forward names (lower case) with the address
/// each maps to, and at most one reverse (PTR) entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    /// `(lower-case name, address)` pairs, each once.
    pub names: BTreeSet<(String, IpAddr)>,
    /// The PTR entry: the endpoint's address and its name as published.
    pub ptr: Option<(IpAddr, String)>,
    /// For a task of a service with a VIP: `(VIP, task address)`, a backend of the VIP's
    /// load balancer.
    pub backend: Option<(IpAddr, IpAddr)>,
}

/// Why a record asserts nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The value is not a protobuf `EndpointRecord`.
    #[error("not an EndpointRecord: {0}")]
    Decode(#[from] DecodeError),
    /// libnetwork drops records without a name (`handleEpTableEvent`).
    #[error("the record has no name")]
    EmptyName,
    /// The endpoint address is not an IP address (plain, or with a prefix length).
    #[error("invalid endpoint IP {0:?}")]
    EndpointIp(String),
}

/// The names `record` asserts, `None` when the record is disabled (a draining task: its names
/// are withdrawn, libnetwork's `DisableService`).
///
/// * the record's name -> its IP, with a PTR entry;
/// * each task (container-level) alias -> its IP;
/// * for a service task (a service ID and a service name): `tasks.<service>` and
///   `tasks.<alias>` for each service alias -> its IP, and `<service>` and each `<alias>` ->
///   the VIP, or its IP when the service has none.
///
/// Names are lower-cased and lose a trailing dot; empty aliases are skipped. A VIP that is not
/// an IP address counts as no VIP, as in libnetwork (`net.ParseIP` gives nil). A task of a
/// service with a VIP is also a backend of the VIP's load balancer; a disabled one is not
/// (libnetwork sets its IPVS weight to 0).
pub fn claims(record: &EndpointRecord) -> Result<Option<Claims>, RecordError> {
    if record.name.is_empty() {
        return Err(RecordError::EmptyName);
    }
    let ip = parse_ip(&record.endpoint_ip)
        .ok_or_else(|| RecordError::EndpointIp(record.endpoint_ip.clone()))?;
    if record.service_disabled {
        return Ok(None);
    }
    let is_task = !record.service_id.is_empty() && !record.service_name.is_empty();
    let vip = parse_ip(&record.virtual_ip).filter(|_| is_task);
    let mut c = Claims {
        names: BTreeSet::new(),
        ptr: Some((ip, record.name.clone())),
        backend: vip.map(|vip| (vip, ip)),
    };
    let mut add = |name: &str, ip: IpAddr| {
        let name = normalize(name);
        if !name.is_empty() {
            c.names.insert((name, ip));
        }
    };
    add(&record.name, ip);
    for alias in &record.task_aliases {
        add(alias, ip);
    }
    if is_task {
        let target = vip.unwrap_or(ip);
        for service in std::iter::once(&record.service_name).chain(&record.aliases) {
            if normalize(service).is_empty() {
                continue;
            }
            add(&format!("tasks.{service}"), ip);
            add(service, target);
        }
    }
    Ok(Some(c))
}

/// A name as the tables hold it: ASCII lower case (DNS names compare case-insensitively),
/// without a trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A plain IP address, or the address part of `ip/prefix`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<ipnet::IpNet>().ok().map(|n| n.addr()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn names(c: &Claims) -> Vec<(String, String)> {
        c.names
            .iter()
            .map(|(n, a)| (n.clone(), a.to_string()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = list
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn plain_container_has_its_name_aliases_and_ptr() {
        let r = EndpointRecord {
            name: "Web1".into(),
            endpoint_ip: "10.0.0.5".into(),
            task_aliases: vec!["www".into(), "".into(), "WWW.".into()],
            ..Default::default()
        };
        let c = claims(&r).unwrap().unwrap();
        assert_eq!(
            names(&c),
            pairs(&[("web1", "10.0.0.5"), ("www", "10.0.0.5")])
        );
        assert_eq!(c.ptr, Some((ip("10.0.0.5"), "Web1".into())));
    }

    #[test]
    fn service_task_with_vip() {
        let r = EndpointRecord {
            name: "web.1.abc".into(),
            service_name: "web".into(),
            service_id: "sid".into(),
            virtual_ip: "10.0.0.2".into(),
            endpoint_ip: "10.0.0.7/24".into(),
            aliases: vec!["front".into()],
            task_aliases: vec!["t".into()],
            ..Default::default()
        };
        let c = claims(&r).unwrap().unwrap();
        assert_eq!(
            names(&c),
            pairs(&[
                ("web.1.abc", "10.0.0.7"),
                ("t", "10.0.0.7"),
                ("tasks.web", "10.0.0.7"),
                ("tasks.front", "10.0.0.7"),
                ("web", "10.0.0.2"),
                ("front", "10.0.0.2"),
            ])
        );
        assert_eq!(c.backend, Some((ip("10.0.0.2"), ip("10.0.0.7"))));
    }

    #[test]
    fn service_without_vip_is_round_robin() {
        let r = EndpointRecord {
            name: "db1".into(),
            service_name: "db".into(),
            service_id: "sid".into(),
            virtual_ip: "not-an-ip".into(),
            endpoint_ip: "10.0.0.9".into(),
            ..Default::default()
        };
        let c = claims(&r).unwrap().unwrap();
        assert_eq!(
            names(&c),
            pairs(&[
                ("db1", "10.0.0.9"),
                ("tasks.db", "10.0.0.9"),
                ("db", "10.0.0.9")
            ])
        );
        assert_eq!(c.backend, None);
    }

    #[test]
    fn a_service_name_without_id_is_a_plain_container() {
        let r = EndpointRecord {
            name: "c".into(),
            service_name: "svc".into(),
            endpoint_ip: "10.0.0.9".into(),
            ..Default::default()
        };
        assert_eq!(
            names(&claims(&r).unwrap().unwrap()),
            pairs(&[("c", "10.0.0.9")])
        );
    }

    #[test]
    fn disabled_asserts_nothing_and_bad_records_are_refused() {
        let mut r = EndpointRecord {
            name: "c".into(),
            endpoint_ip: "10.0.0.9".into(),
            service_disabled: true,
            ..Default::default()
        };
        assert_eq!(claims(&r), Ok(None));
        r.service_disabled = false;
        r.endpoint_ip = "10.0.0.999".into();
        assert_eq!(
            claims(&r),
            Err(RecordError::EndpointIp("10.0.0.999".into()))
        );
        r.name.clear();
        assert_eq!(claims(&r), Err(RecordError::EmptyName));
    }
}
