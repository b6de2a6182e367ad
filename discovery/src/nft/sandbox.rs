//! What one sandbox's kernel holds, and the transaction that brings it to a wanted table.

use std::net::Ipv4Addr;

use super::Batch;
use crate::{BalancerOp, ServiceTable};

/// One sandbox's balancer as the agent knows it: what its kernel was last brought to, or
/// nothing (never synced, or the last transaction failed: the kernel's state is unknown).
///
/// Drive it with [`prepare`](Self::prepare), send the batch, then tell it the outcome with
/// [`committed`](Self::committed) or [`failed`](Self::failed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxBalancer {
    known: Option<Known>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    table: ServiceTable,
    /// Whether the kernel holds the `netagent` table (a sync that found no service leaves
    /// none).
    exists: bool,
}

/// A transaction to send, and what it changes.
#[derive(Debug)]
pub struct Prepared {
    /// The transaction.
    pub batch: Batch,
    /// VIPs set or removed.
    pub ops: usize,
    /// `(VIP, backend)` pairs the kernel held and will no longer: their UDP flows are to be
    /// forgotten once the transaction is committed ([`conntrack`](super::conntrack)).
    pub withdrawn: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl SandboxBalancer {
    /// A balancer whose kernel state is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the kernel was last brought to, if known.
    pub fn programmed(&self) -> Option<&ServiceTable> {
        self.known.as_ref().map(|k| &k.table)
    }

    /// The transaction that brings the kernel to `want`, its messages numbered from
    /// `first_seq`; `None` when the kernel is known to hold it already. When the kernel's state
    /// is unknown, the transaction replaces whatever the table holds (an earlier run's
    /// included), or, for an empty `want`, leaves no table.
    pub fn prepare(&self, want: &ServiceTable, first_seq: u32) -> Option<Prepared> {
        let empty = ServiceTable::new();
        let (have, reset) = match &self.known {
            Some(k) if k.table == *want => return None,
            // No table to change: build it from nothing.
            Some(k) if !k.exists => (&k.table, true),
            Some(k) => (&k.table, false),
            None => (&empty, true),
        };
        let ops = crate::plan(want, have);
        Some(Prepared {
            batch: transaction(first_seq, reset, want, have, &ops),
            ops: ops.len(),
            withdrawn: withdrawn(want, have),
        })
    }

    /// The kernel committed the transaction [`prepare`](Self::prepare) gave for `want`.
    pub fn committed(&mut self, want: &ServiceTable) {
        let exists = match &self.known {
            // An update of an existing table, or a first sync with services, leaves one;
            // a first sync without any leaves none.
            Some(k) if k.exists => true,
            _ => !want.is_empty(),
        };
        self.known = Some(Known {
            table: want.clone(),
            exists,
        });
    }

    /// The transaction failed or its outcome is unknown: the next one starts from nothing.
    pub fn failed(&mut self) {
        self.known = None;
    }
}

/// The transaction that brings a table holding `have` (nothing known of the kernel when
/// `reset`) to `want` through `ops`: each new VIP's chain then its map element, each changed
/// VIP's chain refilled, each gone VIP's element then its chain deleted. A reset to an empty
/// `want` deletes the table.
pub fn transaction(
    first_seq: u32,
    reset: bool,
    want: &ServiceTable,
    have: &ServiceTable,
    ops: &[BalancerOp],
) -> Batch {
    let mut batch = Batch::new(first_seq);
    if reset && want.is_empty() {
        batch.delete_all();
        return batch;
    }
    if reset {
        batch.reset();
        // The table is empty now: every wanted VIP is new.
        for (vip, backends) in want.iter() {
            let backends: Vec<Ipv4Addr> = backends.iter().copied().collect();
            batch.set_backends(vip, &backends, true);
            batch.add_vip(vip);
        }
        return batch;
    }
    for op in ops {
        match op {
            BalancerOp::Set { vip, backends } => {
                let new = have.backends(*vip).is_none();
                batch.set_backends(*vip, backends, new);
                if new {
                    batch.add_vip(*vip);
                }
            }
            BalancerOp::Remove { vip } => batch.delete_vip(*vip),
        }
    }
    batch
}

/// The `(VIP, backend)` pairs `have` holds and `want` does not.
fn withdrawn(want: &ServiceTable, have: &ServiceTable) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    have.iter()
        .flat_map(|(vip, backends)| {
            let kept = want.backends(vip);
            backends
                .iter()
                .filter(move |b| !kept.is_some_and(|k| k.contains(b)))
                .map(move |b| (vip, *b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::FakeNftables;

    fn table(services: &[(&str, &[&str])]) -> ServiceTable {
        let mut records = crate::NetworkRecords::default();
        for (vip, tasks) in services {
            for ip in *tasks {
                let record = crate::EndpointRecord {
                    name: format!("t-{ip}"),
                    service_name: format!("s-{vip}"),
                    service_id: format!("id-{vip}"),
                    virtual_ip: (*vip).to_owned(),
                    endpoint_ip: (*ip).to_owned(),
                    ..Default::default()
                };
                if let Ok(Some(c)) = crate::claims(&record) {
                    records.add(&c);
                }
            }
        }
        ServiceTable::of([&records])
    }

    fn labels(reset: bool, want: &ServiceTable, have: &ServiceTable) -> Vec<String> {
        let ops = crate::plan(want, have);
        transaction(1, reset, want, have, &ops)
            .labels()
            .map(|(_, w)| w.to_owned())
            .collect()
    }

    #[test]
    fn chains_exist_before_their_element_and_go_after_it() {
        let have = table(&[("10.0.0.2", &["10.0.0.3"]), ("10.0.1.2", &["10.0.1.3"])]);
        let want = table(&[("10.0.1.2", &["10.0.1.3"]), ("10.0.2.2", &["10.0.2.3"])]);
        assert_eq!(
            labels(false, &want, &have),
            [
                "unmap 10.0.0.2",
                "flush vip-10.0.0.2",
                "delete vip-10.0.0.2",
                "add vip-10.0.2.2",
                "vip-10.0.2.2 backend 10.0.2.3",
                "map 10.0.2.2",
            ]
        );
    }

    #[test]
    fn a_changed_backend_set_touches_its_chain_only() {
        let have = table(&[("10.0.0.2", &["10.0.0.3", "10.0.0.4"])]);
        let want = table(&[("10.0.0.2", &["10.0.0.3"])]);
        assert_eq!(
            labels(false, &want, &have),
            ["flush vip-10.0.0.2", "vip-10.0.0.2 backend 10.0.0.3"]
        );
    }

    #[test]
    fn a_first_sync_replaces_the_table_or_leaves_none() {
        let want = table(&[("10.0.0.2", &["10.0.0.3"])]);
        let empty = ServiceTable::new();
        let first = labels(true, &want, &empty);
        assert_eq!(
            first[..6],
            [
                "add table",
                "delete table",
                "add table",
                "add map",
                "add base chain",
                "vmap"
            ]
        );
        assert_eq!(labels(true, &empty, &empty), ["add table", "delete table"]);
    }

    /// Drives a balancer against the fake kernel; what the kernel serves after each step.
    fn steps(wants: &[ServiceTable]) -> Vec<ServiceTable> {
        let mut kernel = FakeNftables::new();
        let mut balancer = SandboxBalancer::new();
        let mut seq = 1;
        let mut served = Vec::new();
        for want in wants {
            if let Some(p) = balancer.prepare(want, seq) {
                seq += 1000;
                let outcome = kernel.apply(&p.batch.finish_bytes());
                assert_eq!(outcome, Ok(()), "want {want:?}");
                balancer.committed(want);
            }
            assert_eq!(balancer.programmed(), Some(want));
            served.push(kernel.services().unwrap());
        }
        served
    }

    #[test]
    fn the_fake_kernel_serves_every_step() {
        let a = table(&[("10.0.0.2", &["10.0.0.3", "10.0.0.4", "10.0.0.5"])]);
        let b = table(&[("10.0.0.2", &["10.0.0.3"]), ("10.0.1.2", &["10.0.1.3"])]);
        let empty = ServiceTable::new();
        // Found by review: a first sync without services left no table, and the next one
        // changed a table that did not exist.
        let wants = [
            empty.clone(),
            a.clone(),
            b.clone(),
            empty.clone(),
            a.clone(),
            a,
        ];
        assert_eq!(steps(&wants), wants);
    }

    #[test]
    fn a_failure_starts_over() {
        let a = table(&[("10.0.0.2", &["10.0.0.3"])]);
        let mut balancer = SandboxBalancer::new();
        balancer.committed(&a);
        balancer.failed();
        assert_eq!(balancer.programmed(), None);
        let p = balancer.prepare(&a, 1).unwrap();
        assert_eq!(p.batch.labels().next().map(|(_, w)| w), Some("add table"));
    }
}
