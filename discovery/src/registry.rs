//! The service-discovery records of every network a node is attached to.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use networkdb::{Key, NetworkId, WatchEvent};

use crate::ServiceTable;
use crate::claims::{Claims, claims};
use crate::network::NetworkRecords;
use crate::record::{ENDPOINT_TABLE, EndpointRecord};

/// Counters of [`ServiceDiscovery`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Changes of `endpoint_table` applied (watch events and local writes).
    pub applied: u64,
    /// Values that asserted nothing because they were not valid records (undecodable, no
    /// name, a bad endpoint IP): counted and dropped, as libnetwork logs and drops them.
    pub invalid_records: u64,
    /// Watch events of other tables, ignored.
    pub other_tables: u64,
    /// Changes for networks this node is not attached to, ignored (late events of a network
    /// left, which must not resurrect its records).
    pub unattached: u64,
}

/// The records of every attached network, kept equal to the node's view of `endpoint_table`:
/// each endpoint key holds the claims of its current value, and a network's
/// [`NetworkRecords`] is the sum of them.
///
/// Changes are applied by key, from the new value alone: a create, an update (a coalesced
/// delete and create included) and a delete all replace what the key held, so a replayed or
/// repeated event cannot count a claim twice.
#[derive(Debug, Default)]
pub struct ServiceDiscovery {
    networks: BTreeMap<NetworkId, Network>,
    stats: DiscoveryStats,
}

#[derive(Debug, Default)]
struct Network {
    endpoints: HashMap<Key, Claims>,
    records: NetworkRecords,
    /// The network's [`ServiceTable`], built at the first ask after its backends changed.
    services: OnceLock<ServiceTable>,
}

impl ServiceDiscovery {
    /// No network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node joined `network` (or is about to): its changes are applied from now on.
    /// Idempotent.
    pub fn attach(&mut self, network: &NetworkId) {
        self.networks.entry(network.clone()).or_default();
    }

    /// The node left `network`: its records are dropped (libnetwork
    /// `cleanupServiceDiscovery`), and later changes are ignored until it is attached again.
    pub fn detach(&mut self, network: &NetworkId) {
        self.networks.remove(network);
    }

    /// Whether `network` is attached.
    pub fn is_attached(&self, network: &str) -> bool {
        self.networks.contains_key(network)
    }

    /// Applies a NetworkDB watch event (another node's write). Events of other tables and of
    /// unattached networks are counted and ignored. Returns whether any name changed.
    pub fn apply(&mut self, event: &WatchEvent) -> bool {
        if event.table.as_str() != ENDPOINT_TABLE {
            self.stats.other_tables += 1;
            return false;
        }
        self.set(&event.network, &event.key, event.value.as_deref())
    }

    /// Sets the value of `key` in `network`'s `endpoint_table` (`None`: deleted). For the
    /// node's own writes, which NetworkDB's watches do not report, and for watch events.
    /// Returns whether any name changed.
    pub fn set(&mut self, network: &NetworkId, key: &Key, value: Option<&[u8]>) -> bool {
        let Some(net) = self.networks.get_mut(network) else {
            self.stats.unattached += 1;
            return false;
        };
        self.stats.applied += 1;
        let new = match value.map(decode) {
            Some(Ok(Some(c))) => Some(c),
            Some(Ok(None)) | None => None,
            Some(Err(())) => {
                self.stats.invalid_records += 1;
                None
            }
        };
        let old = match &new {
            Some(c) => net.endpoints.insert(key.clone(), c.clone()),
            None => net.endpoints.remove(key),
        };
        if old == new {
            return false;
        }
        let backend = |c: &Option<Claims>| c.as_ref().and_then(|c| c.backend);
        if backend(&old) != backend(&new) {
            net.services = OnceLock::new();
        }
        if let Some(old) = &old {
            net.records.remove(old);
        }
        if let Some(new) = &new {
            net.records.add(new);
        }
        true
    }

    /// The records of `network`, if attached.
    pub fn network(&self, network: &str) -> Option<&NetworkRecords> {
        self.networks.get(network).map(|n| &n.records)
    }

    /// The VIPs of `network` with their backends (as [`ServiceTable::of`] its records), if
    /// attached. Built once per change of its backends and shared after: asking again costs
    /// nothing.
    pub fn services(&self, network: &str) -> Option<&ServiceTable> {
        self.networks
            .get(network)
            .map(|n| n.services.get_or_init(|| ServiceTable::of([&n.records])))
    }

    /// The attached networks and their records, in network ID order.
    pub fn networks(&self) -> impl Iterator<Item = (&NetworkId, &NetworkRecords)> + '_ {
        self.networks.iter().map(|(id, n)| (id, &n.records))
    }

    /// The counters.
    pub fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    /// The records a network's `endpoint_table` entries imply, computed from scratch: what
    /// [`network`](Self::network) must equal for a node whose view holds `entries`.
    pub fn records_of<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> NetworkRecords {
        let mut records = NetworkRecords::default();
        for value in entries {
            if let Ok(Some(c)) = decode(value) {
                records.add(&c);
            }
        }
        records
    }
}

/// The claims of an `endpoint_table` value; `Err` when it is not a valid record.
fn decode(value: &[u8]) -> Result<Option<Claims>, ()> {
    EndpointRecord::decode(value)
        .map_err(|_| ())
        .and_then(|r| claims(&r).map_err(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn value(name: &str, ip: &str, svc: bool, disabled: bool) -> Vec<u8> {
        EndpointRecord {
            name: name.into(),
            service_name: if svc { "web".into() } else { String::new() },
            service_id: if svc { "sid".into() } else { String::new() },
            virtual_ip: if svc {
                "10.9.0.2".into()
            } else {
                String::new()
            },
            endpoint_ip: ip.into(),
            service_disabled: disabled,
            ..Default::default()
        }
        .encode()
    }

    fn event(net: &str, key: &str, v: Option<Vec<u8>>) -> WatchEvent {
        WatchEvent {
            table: ENDPOINT_TABLE.into(),
            network: net.into(),
            key: key.into(),
            prev: None,
            value: v.map(Bytes::from),
        }
    }

    #[test]
    fn unattached_and_foreign_events_are_ignored() {
        let mut sd = ServiceDiscovery::new();
        assert!(!sd.apply(&event(
            "n1",
            "e1",
            Some(value("a", "10.9.0.3", false, false))
        )));
        let mut other = event("n1", "e1", None);
        other.table = "overlay_peer_table".into();
        assert!(!sd.apply(&other));
        assert_eq!(sd.stats().unattached, 1);
        assert_eq!(sd.stats().other_tables, 1);
        assert!(sd.network("n1").is_none());
    }

    #[test]
    fn detach_drops_and_blocks_late_events() {
        let mut sd = ServiceDiscovery::new();
        let n1 = NetworkId::from("n1");
        sd.attach(&n1);
        assert!(sd.apply(&event(
            "n1",
            "e1",
            Some(value("a", "10.9.0.3", false, false))
        )));
        assert_eq!(sd.network("n1").unwrap().addrs("a").count(), 1);
        sd.detach(&n1);
        assert!(!sd.apply(&event(
            "n1",
            "e2",
            Some(value("b", "10.9.0.4", false, false))
        )));
        sd.attach(&n1);
        assert!(sd.network("n1").unwrap().is_empty());
    }

    #[test]
    fn invalid_values_withdraw_the_key() {
        let mut sd = ServiceDiscovery::new();
        let n1 = NetworkId::from("n1");
        sd.attach(&n1);
        sd.set(
            &n1,
            &"e1".into(),
            Some(&value("a", "10.9.0.3", false, false)),
        );
        sd.set(&n1, &"e1".into(), Some(&[0xff]));
        assert!(sd.network("n1").unwrap().is_empty());
        assert_eq!(sd.stats().invalid_records, 1);
    }

    /// A change: (key index, value choice); value choice 0 deletes.
    fn changes() -> impl Strategy<Value = Vec<(u8, u8)>> {
        proptest::collection::vec((0u8..6, 0u8..8), 0..60)
    }

    fn choice(c: u8, key: u8) -> Option<Vec<u8>> {
        // Few names and IPs, so claims collide: shared IPs, shared names, one service.
        let ip = format!("10.9.0.{}", 3 + (c % 3));
        match c {
            0 => None,
            1 => Some(vec![0x0a]),
            2 | 3 => Some(value(&format!("c{}", key % 3), &ip, false, false)),
            4 | 5 => Some(value(&format!("t{key}"), &ip, true, false)),
            6 => Some(value(&format!("t{key}"), &ip, true, true)),
            _ => Some(value("Same", &ip, key.is_multiple_of(2), false)),
        }
    }

    proptest! {
        /// Whatever order changes arrive in, the records equal those computed from scratch
        /// from the final values, and so does the services table asked for after every
        /// change (a table kept past a change of backends would differ).
        #[test]
        fn incremental_equals_from_scratch(changes in changes()) {
            let mut sd = ServiceDiscovery::new();
            let n = NetworkId::from("n");
            sd.attach(&n);
            let mut table: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
            for (key, c) in changes {
                let v = choice(c, key);
                sd.set(&n, &Key::from(format!("e{key}")), v.as_deref());
                match v {
                    Some(v) => { table.insert(key, v); }
                    None => { table.remove(&key); }
                }
                let fresh = ServiceDiscovery::records_of(table.values().map(Vec::as_slice));
                prop_assert_eq!(sd.services("n").unwrap(), &ServiceTable::of([&fresh]));
            }
            let fresh = ServiceDiscovery::records_of(table.values().map(Vec::as_slice));
            prop_assert_eq!(sd.network("n").unwrap(), &fresh);
        }
    }
}
