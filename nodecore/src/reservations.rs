//! Addresses held for a container engine's IPAM driver: an engine (Docker) asks for an
//! address before it creates the endpoint that uses it, and gives it back after the endpoint
//! is gone. A reservation claims the address in the network's pool, cluster-wide, like an
//! endpoint does; an endpoint created on a reserved address uses it without a second claim,
//! and removing that endpoint leaves it reserved until the engine releases it.

use std::net::Ipv4Addr;
use std::time::Instant;

use ipam::{Allocation, IpamError, Request};
use networkdb::NetworkDb;

use crate::addressing;
use crate::catalogue;
use crate::endpoints::{address_error, taken};
use crate::event::{Answer, Started};
use crate::model::NetworkSpec;
use crate::pending::Draft;
use crate::state::KnownNetwork;
use crate::{CoreError, NodeCore};

impl NodeCore {
    /// Reserves an address on a network of the catalogue (by name or ID): `ip`, claimed
    /// through the same rules as an endpoint's (409 when it is held anywhere), or any free
    /// one. At once when this node owns free space, else the answer waits for another node.
    pub fn reserve_address(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        network: &str,
        ip: Option<Ipv4Addr>,
    ) -> Result<Started<Ipv4Addr>, CoreError> {
        let specs = self.networks(db);
        let spec = catalogue::resolve(&specs, network)?.clone();
        let request = match ip {
            Some(ip) => {
                addressing::check_address(spec.subnet, ip, "address")?;
                let users = catalogue::addresses_in_use(db, &spec.id);
                if self.address_used_here(&spec.id, ip) || users.all().contains(&ip) {
                    return Err(taken());
                }
                Request::Value(u32::from(ip))
            }
            None => Request::Any,
        };
        match self.allocate_address(db, now, &spec.id, request) {
            Ok(Allocation::Done(v)) => {
                self.stats.answered_at_once += 1;
                Ok(Started::Done(self.finish_reservation(&spec, v)))
            }
            Ok(Allocation::Pending(ticket)) => {
                self.stats.waited += 1;
                let deadline = now + self.settings.allocation_timeout;
                let draft = Draft::Reservation(spec.clone());
                Ok(Started::Waiting(
                    self.pending.wait(&spec.id, ticket, deadline, draft),
                ))
            }
            Err(e) => Err(address_error(&spec, &e)),
        }
    }

    /// Gives a reserved address back (an endpoint still using it keeps it until it is
    /// removed). Returns whether the address was reserved.
    pub fn release_address(
        &mut self,
        now: Instant,
        network_id: &str,
        ip: Ipv4Addr,
    ) -> Result<bool, CoreError> {
        let Some(set) = self.state.reserved.get_mut(network_id) else {
            return Ok(false);
        };
        if !set.remove(&ip) {
            return Ok(false);
        }
        if set.is_empty() {
            self.state.reserved.remove(network_id);
        }
        if !self.state.endpoints_on(network_id).any(|e| e.ip == ip) {
            self.pools.release(now, network_id, u32::from(ip));
        }
        self.forget_unused_network(now, network_id);
        self.commit();
        Ok(true)
    }

    /// The addresses this node holds reserved on a network.
    pub fn reserved(&self, network_id: &str) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.state
            .reserved
            .get(network_id)
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Whether `ip` is reserved on this node for the network.
    pub(crate) fn is_reserved(&self, network_id: &str, ip: Ipv4Addr) -> bool {
        self.state
            .reserved
            .get(network_id)
            .is_some_and(|s| s.contains(&ip))
    }

    /// Whether an endpoint, a VIP or a reservation of this node uses `ip`.
    pub(crate) fn address_used_here(&self, network_id: &str, ip: Ipv4Addr) -> bool {
        self.is_reserved(network_id, ip)
            || self
                .state
                .endpoints_on(network_id)
                .any(|e| e.ip == ip || e.service.as_ref().and_then(|s| s.vip) == Some(ip))
    }

    /// Records a reservation whose address is settled; the node keeps a copy of the network
    /// while it holds reservations there.
    fn finish_reservation(&mut self, spec: &NetworkSpec, value: u32) -> Ipv4Addr {
        let ip = Ipv4Addr::from(value);
        self.state
            .networks
            .entry(spec.id.clone())
            .or_insert_with(|| KnownNetwork {
                spec: spec.clone(),
                created_here: false,
                removed: false,
            });
        self.state
            .reserved
            .entry(spec.id.clone())
            .or_default()
            .insert(ip);
        self.commit();
        ip
    }

    /// A reservation whose address came (or was refused) after a wait.
    pub(crate) fn reservation_allocated(
        &mut self,
        spec: &NetworkSpec,
        value: Result<u32, IpamError>,
    ) -> Answer {
        Answer::Address(match value {
            Ok(v) => Ok(self.finish_reservation(spec, v)),
            Err(e) => Err(address_error(spec, &e)),
        })
    }
}
