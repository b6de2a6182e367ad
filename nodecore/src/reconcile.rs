//! Bringing NetworkDB in line with the node's state, every [`RECONCILE_INTERVAL`]: the
//! NetworkDB networks of its endpoints joined, its records published (replacing entries that
//! are missing, stale or owned by a previous run), its stale records withdrawn, the networks
//! the catalogue lost published again, and the networks the catalogue removed forgotten.
//! Operations apply the same changes at once; this repairs what a restart left behind.
//!
//! [`RECONCILE_INTERVAL`]: crate::RECONCILE_INTERVAL

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use ipam::{IpamError, Ticket};
use networkdb::NetworkDb;

use crate::catalogue::{self, GLOBAL_NETWORK, NETWORKS_TABLE};
use crate::core::FOUNDERS_TABLE;
use crate::event::Answer;
use crate::pending::Draft;
use crate::records::Records;
use crate::{ADOPT_AFTER, CoreError, Event, NodeCore};

/// What the catalogue says of a network this node knows.
enum CatalogueStatus {
    /// It holds the network.
    Present,
    /// It holds another network of that name, or a tombstone: the network was removed.
    Removed,
    /// It holds nothing visible under the name (the owner left or failed).
    Absent,
}

impl NodeCore {
    /// The records this node wants in one network, by endpoint ID: those of its joined
    /// endpoints there.
    fn wanted(&self, network_id: &str) -> BTreeMap<String, Records> {
        self.state
            .endpoints_on(network_id)
            .filter(|e| e.sandbox.is_some())
            .filter_map(|e| Some((e.id.clone(), Records::of(e, self.settings.vtep)?)))
            .collect()
    }

    /// Makes this node's records in `network_id` equal what it wants: writes what is
    /// missing, stale, or owned by another node (a previous run of this one), and deletes
    /// this node's records of endpoints not wanted.
    pub(crate) fn sync_records(&mut self, db: &NetworkDb, network_id: &str) {
        let wanted = self.wanted(network_id);
        for table in [overlay::PEER_TABLE, discovery::ENDPOINT_TABLE] {
            // This node's own records: the others' are not its business.
            let own: BTreeMap<&str, &Bytes> = db
                .visible_entries(table, network_id)
                .filter(|(_, _, owner)| *owner == db.name())
                .map(|(key, value, _)| (key.as_str(), value))
                .collect();
            for (key, records) in &wanted {
                let value = records.value(table);
                if own.get(key.as_str()).is_none_or(|v| *v != value) {
                    self.put(table, network_id, key, value.clone());
                }
            }
            for key in own.keys() {
                if !wanted.contains_key(*key) {
                    self.delete(table, network_id, key);
                }
            }
        }
    }

    /// See the module documentation.
    pub(crate) fn reconcile(&mut self, db: &NetworkDb, now: Instant) {
        let with_endpoints: Vec<String> = {
            let mut ids: Vec<String> = self
                .state
                .endpoints
                .values()
                .map(|e| e.network_id.clone())
                .collect();
            ids.dedup();
            ids.sort();
            ids.dedup();
            ids
        };
        self.outbox
            .push(crate::outbox::Deferred::Join(GLOBAL_NETWORK.to_owned()));
        for nid in &with_endpoints {
            self.attach(db, nid);
        }
        // CNM networks joined that no local endpoint needs are left (a leave that was
        // interrupted would otherwise block `network rm` everywhere). NetworkDB networks
        // joined by other means (the diagnostic API) are not touched.
        let mut cnm_ids: Vec<String> = self.state.networks.keys().cloned().collect();
        cnm_ids.extend(catalogue::list(db).into_iter().map(|s| s.id));
        for nid in db.networks() {
            let nid = nid.to_string();
            if cnm_ids.contains(&nid) && !with_endpoints.contains(&nid) {
                self.detach(&nid);
            }
        }
        let attached: Vec<String> = self.names_attached.iter().cloned().collect();
        for nid in attached {
            if !with_endpoints.contains(&nid) {
                self.detach(&nid);
            }
        }
        for nid in &with_endpoints {
            self.sync_records(db, nid);
        }
        self.catalogue_statuses(db, now);
        self.publish_founder(db);
        // Pools of networks the catalogue removed (a tombstone, or another network under the
        // name) that this node keeps nothing of. A network merely invisible (its owner
        // failed, or a partition) keeps its pool: its claims and pending requests stand.
        let stale: Vec<String> = self
            .pools
            .named()
            .filter(|(id, name)| {
                !self.state.networks.contains_key(id.as_str())
                    && matches!(catalogue_status(db, id, name), CatalogueStatus::Removed)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.drop_pool(db, &id);
        }
        self.ensure_pools(db, now);
        self.claim_restored(now);
        self.drain_pools(db, now);
    }

    fn catalogue_statuses(&mut self, db: &NetworkDb, now: Instant) {
        let known: Vec<(String, String)> = self
            .state
            .live_networks()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        for (id, name) in known {
            match catalogue_status(db, &id, &name) {
                CatalogueStatus::Present => {
                    self.absent_since.remove(&id);
                }
                CatalogueStatus::Removed => {
                    self.absent_since.remove(&id);
                    if self.state.endpoints_on(&id).next().is_some() {
                        if let Some(k) = self.state.networks.get_mut(&id) {
                            k.removed = true;
                        }
                        self.commit();
                    } else if let Some(k) = self.state.networks.get(&id) {
                        let spec = k.spec.clone();
                        self.forget_network(db, now, &spec);
                    }
                }
                CatalogueStatus::Absent => {
                    let since = *self.absent_since.entry(id.clone()).or_insert(now);
                    if now.duration_since(since) >= ADOPT_AFTER {
                        self.absent_since.remove(&id);
                        if let Some(k) = self.state.networks.get(&id) {
                            let value = Bytes::from(catalogue::encode(&k.spec));
                            let name = k.spec.name.clone();
                            self.put(NETWORKS_TABLE, GLOBAL_NETWORK, &name, value);
                        }
                    }
                }
            }
        }
    }

    /// Publishes the founder this node knows under its own name.
    fn publish_founder(&mut self, db: &NetworkDb) {
        let Some(founder) = self.state.founder.clone() else {
            return;
        };
        let me = self.settings.node_name.clone();
        let current = db.get_entry(FOUNDERS_TABLE, GLOBAL_NETWORK, &me);
        let mine = db
            .table_by_network(FOUNDERS_TABLE, GLOBAL_NETWORK)
            .get(me.as_str())
            .is_some_and(|e| &e.owner == db.name());
        if !mine || current.ok().as_deref() != Some(founder.as_bytes()) {
            self.put(
                FOUNDERS_TABLE,
                GLOBAL_NETWORK,
                &me,
                Bytes::from(founder.into_bytes()),
            );
        }
    }

    /// Stops the allocator of a removed network: this node's entries of it are deleted and
    /// the operations waiting on it refused.
    pub(crate) fn drop_pool(&mut self, db: &NetworkDb, id: &str) {
        let mut outs = Vec::new();
        self.pools.remove(db, id, &mut outs);
        self.state.ipam.remove(id);
        for o in outs {
            match o {
                crate::pools::PoolOutput::Delete { table, key } => {
                    self.delete(table, GLOBAL_NETWORK, &key);
                }
                _ => self.outbox.push(crate::outbox::Deferred::Persist),
            }
        }
        for w in self.pending.take_pool(id) {
            let gone = || CoreError::NotFound("the network was removed".to_owned());
            let answer = match w.draft {
                Draft::Endpoint { .. } => Answer::Endpoint(Err(gone())),
                Draft::Network(_) => Answer::Network(Err(gone())),
                Draft::Reservation(_) => Answer::Address(Err(gone())),
            };
            self.outbox.event(Event::Answer(w.request, answer));
        }
    }

    /// A pending allocation of `pool` finished.
    pub(crate) fn allocated(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        pool: &str,
        ticket: Ticket,
        value: Result<u32, IpamError>,
    ) {
        if let Some(key) = self.restoring.remove(&(pool.to_owned(), ticket)) {
            // A restored value: held now, or asked again at the next reconciliation (taken
            // elsewhere: given up on).
            if let Err(ipam::IpamError::Taken(_)) = value {
                self.stats.restore_conflicts += 1;
                self.restore_failed.insert(key);
            }
            return;
        }
        let waiter = match self.pending.take(pool, ticket) {
            Ok(w) => w,
            Err(abandoned) => {
                if abandoned && let Ok(v) = value {
                    self.pools.release(now, pool, v);
                }
                return;
            }
        };
        let answer = match waiter.draft {
            Draft::Endpoint {
                endpoint,
                spec,
                mac_given,
            } => self.endpoint_allocated(db, now, *endpoint, &spec, mac_given, value),
            Draft::Network(spec) => self.network_allocated(db, now, spec, value),
            Draft::Reservation(spec) => self.reservation_allocated(&spec, value),
        };
        self.outbox.event(Event::Answer(waiter.request, answer));
    }

    /// Refuses the operations that waited too long.
    pub(crate) fn expire_pending(&mut self, now: Instant) {
        for w in self.pending.expired(now) {
            self.stats.timed_out += 1;
            let secs = self.settings.allocation_timeout.as_secs();
            let answer = match w.draft {
                Draft::Endpoint { endpoint, .. } => {
                    Answer::Endpoint(Err(CoreError::Unavailable(format!(
                        "no address for endpoint {} on network {} within {secs} s: no node that \
                         owns free addresses there answered",
                        endpoint.name, endpoint.network
                    ))))
                }
                Draft::Network(spec) => Answer::Network(Err(CoreError::Unavailable(format!(
                    "no VNI for network {} within {secs} s: no node that owns free VNIs answered",
                    spec.name
                )))),
                Draft::Reservation(spec) => Answer::Address(Err(CoreError::Unavailable(format!(
                    "no address on network {} within {secs} s: no node that owns free \
                     addresses there answered",
                    spec.name
                )))),
            };
            self.outbox.event(Event::Answer(w.request, answer));
        }
    }
}

fn catalogue_status(db: &NetworkDb, id: &str, name: &str) -> CatalogueStatus {
    match db.get_entry(NETWORKS_TABLE, GLOBAL_NETWORK, name) {
        Ok(value) => match catalogue::decode(name, &value) {
            Some(spec) if spec.id == id => CatalogueStatus::Present,
            _ => CatalogueStatus::Removed,
        },
        Err(networkdb::Error::Deleted { .. }) => CatalogueStatus::Removed,
        Err(_) => CatalogueStatus::Absent,
    }
}
