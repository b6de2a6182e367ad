//! The cluster-wide network catalogue and the other NetworkDB reads of the CNM.
//!
//! Every agent joins the NetworkDB network [`GLOBAL_NETWORK`] at start. Its table
//! [`NETWORKS_TABLE`] maps a network name to the JSON of its
//! [`NetworkSpec`]; the entry is owned by the node that wrote it
//! last. Two nodes creating one name at the same moment both succeed locally; NetworkDB's
//! rule (greater Lamport time, then greater owner name) then keeps one of the two values on
//! every node, and the loser's endpoints (if any) are on a network the catalogue no longer
//! shows.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use discovery::{ENDPOINT_TABLE, EndpointRecord};
use networkdb::NetworkDb;
use overlay::{PEER_TABLE, PeerRecord};

use crate::CoreError;
use crate::model::NetworkSpec;

/// The NetworkDB network every agent joins, holding the catalogue.
pub const GLOBAL_NETWORK: &str = "netagent.global";

/// The catalogue's table in [`GLOBAL_NETWORK`]: network name -> JSON [`NetworkSpec`].
pub const NETWORKS_TABLE: &str = "networks";

/// The networks of the catalogue as this node sees them, sorted by name. Values that do not
/// parse (a newer agent's format, or garbage), whose name is not their key, or that would
/// not pass the API's own checks (a peer, or the diagnostic API, can write anything) are
/// skipped: one bad spec such as `0.0.0.0/0` must not make every later network "overlap".
pub(crate) fn list(db: &NetworkDb) -> Vec<NetworkSpec> {
    db.table_by_network(NETWORKS_TABLE, GLOBAL_NETWORK)
        .into_iter()
        .filter_map(|(key, e)| decode(key.as_str(), &e.value))
        .collect()
}

/// A catalogue value, if it is a valid spec of the network named `key`.
pub(crate) fn decode(key: &str, value: &[u8]) -> Option<NetworkSpec> {
    let spec = serde_json::from_slice::<NetworkSpec>(value).ok()?;
    let valid = spec.name == key
        && crate::model::check_name("network", &spec.name).is_ok()
        && spec.id.len() == 64
        && spec
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && crate::addressing::parse_subnet(&spec.subnet.to_string()).is_ok()
        && crate::addressing::check_vni(spec.vni).is_ok()
        && spec.gateway == crate::addressing::gateway(spec.subnet);
    valid.then_some(spec)
}

/// The catalogue value of a network.
pub(crate) fn encode(spec: &NetworkSpec) -> Vec<u8> {
    match serde_json::to_vec(spec) {
        Ok(bytes) => bytes,
        Err(e) => {
            // Strings, integers and addresses always serialize.
            debug_assert!(false, "BUG: a NetworkSpec did not serialize: {e}");
            Vec::new()
        }
    }
}

/// Finds a network by name, by full ID, or by a prefix of its ID matching only one network.
pub(crate) fn resolve<'a>(
    specs: impl IntoIterator<Item = &'a NetworkSpec> + Clone,
    reference: &str,
) -> Result<&'a NetworkSpec, CoreError> {
    if let Some(spec) = specs.clone().into_iter().find(|s| s.name == reference) {
        return Ok(spec);
    }
    if let Some(spec) = specs.clone().into_iter().find(|s| s.id == reference) {
        return Ok(spec);
    }
    let matches: Vec<&NetworkSpec> = if reference.is_empty() {
        Vec::new()
    } else {
        specs
            .into_iter()
            .filter(|s| s.id.starts_with(reference))
            .collect()
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(CoreError::NoSuchNetwork(format!(
            "network {reference} not found"
        ))),
        many => Err(CoreError::Invalid(format!(
            "network {reference} is ambiguous ({} matches found)",
            many.len()
        ))),
    }
}

/// Every address this node sees in use in a network: endpoint addresses of
/// [`PEER_TABLE`] and endpoint and virtual addresses of [`ENDPOINT_TABLE`]. Undecodable
/// records are skipped.
pub(crate) fn addresses_in_use(db: &NetworkDb, network_id: &str) -> AddressUsers {
    let mut users = AddressUsers::default();
    for elem in db.table_by_network(PEER_TABLE, network_id).values() {
        if let Ok(r) = PeerRecord::decode(&elem.value) {
            users.endpoints.insert(r.endpoint_ip.addr());
        }
    }
    for elem in db.table_by_network(ENDPOINT_TABLE, network_id).values() {
        if let Ok(r) = EndpointRecord::decode(&elem.value) {
            users.endpoints.extend(r.endpoint_ip.parse::<Ipv4Addr>());
            if !r.service_name.is_empty() {
                users
                    .services
                    .entry(r.service_name.clone())
                    .or_default()
                    .insert(r.virtual_ip.parse::<Ipv4Addr>().ok());
            }
            if let Ok(vip) = r.virtual_ip.parse::<Ipv4Addr>() {
                users
                    .vips
                    .entry(vip)
                    .or_default()
                    .insert(r.service_name.clone());
            }
        }
    }
    users
}

/// Who uses the addresses of a network, as its records say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AddressUsers {
    /// Endpoint addresses.
    pub(crate) endpoints: HashSet<Ipv4Addr>,
    /// Virtual IPs, with the services whose tasks publish them (the tasks of one service on
    /// several hosts share its VIP).
    pub(crate) vips: HashMap<Ipv4Addr, BTreeSet<String>>,
    /// Services, with the virtual IP (or none) each of their records publishes.
    pub(crate) services: HashMap<String, BTreeSet<Option<Ipv4Addr>>>,
}

impl AddressUsers {
    /// Every address in use, endpoint or VIP.
    pub(crate) fn all(&self) -> HashSet<Ipv4Addr> {
        self.endpoints
            .iter()
            .chain(self.vips.keys())
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, id: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            id: id.into(),
            driver: "overlay".into(),
            subnet: "198.18.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(198, 18, 0, 1),
            vni: 4096,
            created_by: "n".into(),
        }
    }

    #[test]
    fn resolve_by_name_id_and_prefix() {
        let specs = [
            spec("blue", "ab12"),
            spec("red", "ab34"),
            spec("ab", "ff00"),
        ];
        assert_eq!(resolve(&specs, "blue").unwrap().id, "ab12");
        assert_eq!(resolve(&specs, "ab34").unwrap().name, "red");
        assert_eq!(resolve(&specs, "ab1").unwrap().name, "blue");
        assert_eq!(
            resolve(&specs, "ab").unwrap().name,
            "ab",
            "a name wins over a prefix"
        );
        assert_eq!(resolve(&specs, "f").unwrap().name, "ab");
        assert_eq!(
            resolve(&specs, "a").unwrap_err().to_string(),
            "network a is ambiguous (2 matches found)"
        );
        assert_eq!(
            resolve(&specs, "green").unwrap_err().to_string(),
            "network green not found"
        );
        assert_eq!(
            resolve(&specs, "green").unwrap_err().code(),
            "no_such_network"
        );
        assert!(resolve(&specs, "").is_err());
    }
}
