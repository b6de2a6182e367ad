//! Service VIP load balancing in every sandbox: connections a container opens to a service's
//! VIP are spread over the service's enabled tasks anywhere in the cluster, by nf_tables
//! inside the container's network namespace.
//!
//! Why nf_tables and not IPVS (libnetwork's choice): the kernels of the machines this agent
//! targets build nf_tables in (NAT, `numgen`, conntrack) but not always IPVS (this project's
//! CI kernel has no `CONFIG_IP_VS`); a destination-only DNAT balances every protocol and port
//! of the VIP without IPVS's per-port services or libnetwork's firewall marks; and one
//! nf_tables transaction replaces a VIP's backends atomically. The messages are written by
//! hand ([`nft`]), sent on a netlink socket opened inside the namespace: nothing runs `nft` or
//! `ipvsadm`.
//!
//! [`SandboxBalancers`] keeps what each sandbox's kernel holds (a [`ServiceTable`]) and brings
//! it to what service discovery says with [`discovery::plan`]: one transaction per sync, only
//! the VIPs that changed.

pub mod conntrack;
mod feed;
pub mod nft;
pub mod nlmsg;

pub use feed::{BalancerStats, MAX_RETRY, RETRY, run};

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use discovery::{BalancerOp, ServiceTable};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use tokio::sync::Mutex;

use nft::Batch;

/// How long one transaction may take, namespace entry included.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sandbox's balancer could not be brought up to date. Nothing is assumed programmed
/// afterwards: the next sync rebuilds the sandbox's table from scratch.
#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    /// The namespace could not be entered, or the netlink socket failed.
    #[error("sandbox {sandbox}: netlink in {netns}: {source}")]
    Netlink {
        /// The sandbox.
        sandbox: String,
        /// Its namespace.
        netns: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The kernel refused the transaction (nothing of it was applied).
    #[error("sandbox {sandbox}: nf_tables refused \"{what}\": {errno}")]
    Refused {
        /// The sandbox.
        sandbox: String,
        /// The message refused.
        what: String,
        /// The kernel's answer.
        errno: io::Error,
    },
}

/// What one sandbox's kernel holds, and the socket that programs it.
///
/// The socket was opened inside the sandbox's namespace and stays bound to it, so later
/// transactions need no namespace change; it is kept because closing a netfilter netlink
/// socket costs the kernel a grace period (8-20 ms here), ten times a transaction's cost.
#[derive(Debug)]
struct Programmed {
    netns: PathBuf,
    table: ServiceTable,
    socket: Arc<Socket>,
}

/// The VIP balancers of this agent's sandboxes (root only: they live in the containers'
/// namespaces). Cheap to share behind an `Arc`; syncs of different sandboxes may overlap.
#[derive(Debug, Default)]
pub struct SandboxBalancers {
    programmed: Mutex<HashMap<String, Programmed>>,
    /// Numbers the transactions' messages.
    seq: std::sync::atomic::AtomicU32,
}

/// What one sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// VIPs set or removed.
    pub ops: usize,
    /// nf_tables messages sent (0: nothing to do).
    pub messages: usize,
    /// UDP flows to withdrawn backends forgotten (see [`conntrack`]).
    pub flows_forgotten: usize,
}

impl SandboxBalancers {
    /// No sandbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Brings `sandbox`'s balancer (namespace `netns`) to `want`. The first sync of a sandbox
    /// replaces whatever an earlier run left in its table.
    pub async fn sync(
        &self,
        sandbox: &str,
        netns: &Path,
        want: &ServiceTable,
    ) -> Result<SyncOutcome, BalancerError> {
        let mut programmed = self.programmed.lock().await;
        let known = programmed.remove(sandbox);
        let known = match known {
            Some(p) if p.netns == netns => Some(p),
            Some(p) => {
                // The sandbox moved to another namespace: start over there.
                retire(p.socket);
                None
            }
            None => None,
        };
        let empty = ServiceTable::new();
        let have = known.as_ref().map_or(&empty, |p| &p.table);
        let ops = discovery::plan(want, have);
        if ops.is_empty()
            && let Some(p) = known
        {
            programmed.insert(sandbox.to_owned(), p);
            return Ok(SyncOutcome::default());
        }
        let first = self
            .seq
            .fetch_add(1 << 20, std::sync::atomic::Ordering::Relaxed);
        let batch = transaction(first, known.is_none(), want, have, &ops);
        let messages = batch.len();
        let withdrawn = withdrawn(want, have);
        let socket = match known {
            Some(p) => p.socket,
            None => open(sandbox, netns).await?,
        };
        // Until the kernel has answered, the sandbox is not known: a failure rebuilds it
        // (with a new socket) at the next sync.
        match send(sandbox, netns, &socket, batch).await {
            Ok(()) => {
                let flows_forgotten = if withdrawn.is_empty() {
                    0
                } else {
                    forget_flows(sandbox, &socket, first.wrapping_add(1 << 19), withdrawn).await
                };
                programmed.insert(
                    sandbox.to_owned(),
                    Programmed {
                        netns: netns.to_owned(),
                        table: want.clone(),
                        socket,
                    },
                );
                Ok(SyncOutcome {
                    ops: ops.len(),
                    messages,
                    flows_forgotten,
                })
            }
            Err(e) => {
                retire(socket);
                Err(e)
            }
        }
    }

    /// Forgets `sandbox` (removed with its namespace: nothing to undo) and closes its socket,
    /// which releases the namespace.
    pub async fn forget(&self, sandbox: &str) {
        if let Some(p) = self.programmed.lock().await.remove(sandbox) {
            retire(p.socket);
        }
    }

    /// What `sandbox`'s kernel was last brought to, if anything.
    pub async fn programmed(&self, sandbox: &str) -> Option<ServiceTable> {
        self.programmed
            .lock()
            .await
            .get(sandbox)
            .map(|p| p.table.clone())
    }
}

/// The transaction that brings a table holding `have` (nothing known of the kernel when
/// `reset`) to `want` through `ops`: new and changed VIPs' chains first, then the base
/// chain's jumps if the set of VIPs changed, then the chains of VIPs gone.
pub fn transaction(
    first_seq: u32,
    reset: bool,
    want: &ServiceTable,
    have: &ServiceTable,
    ops: &[BalancerOp],
) -> Batch {
    let mut batch = Batch::new(first_seq);
    if reset && want.is_empty() {
        // No service here: leave no table (an earlier run's included).
        batch.delete_all();
        return batch;
    }
    if reset {
        batch.reset();
    }
    let mut vips_changed = false;
    for op in ops {
        if let BalancerOp::Set { vip, backends } = op {
            let new = have.backends(*vip).is_none();
            vips_changed |= new;
            batch.set_backends(*vip, backends, new);
        }
    }
    let removed: Vec<Ipv4Addr> = ops
        .iter()
        .filter_map(|op| match op {
            BalancerOp::Remove { vip } => Some(*vip),
            BalancerOp::Set { .. } => None,
        })
        .collect();
    if vips_changed || !removed.is_empty() {
        batch.set_vips(want.iter().map(|(vip, _)| vip));
    }
    for vip in removed {
        batch.delete_vip(vip);
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

/// Deletes the sandbox's UDP flows to `withdrawn` backends; how many. A failure is logged:
/// the flows then end by themselves (conntrack's UDP timeouts).
async fn forget_flows(
    sandbox: &str,
    socket: &Arc<Socket>,
    first_seq: u32,
    withdrawn: Vec<(Ipv4Addr, Ipv4Addr)>,
) -> usize {
    let socket = Arc::clone(socket);
    let done =
        tokio::task::spawn_blocking(move || forget_flows_blocking(&socket, first_seq, &withdrawn))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
    match done {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(%sandbox, error = %e, "UDP flows to withdrawn backends not forgotten");
            0
        }
    }
}

fn forget_flows_blocking(
    socket: &Socket,
    first_seq: u32,
    withdrawn: &[(Ipv4Addr, Ipv4Addr)],
) -> io::Result<usize> {
    socket.send(&conntrack::dump_request(first_seq), 0)?;
    let mut flows = Vec::new();
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        buf.clear();
        socket.recv(&mut buf, 0)?;
        let part = conntrack::parse_dump(&buf, first_seq);
        flows.extend(part.flows);
        if let Some(errno) = part.errno {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if part.done {
            break;
        }
    }
    let doomed = conntrack::to_forget(&flows, withdrawn);
    if doomed.is_empty() {
        return Ok(0);
    }
    let first = first_seq.wrapping_add(1);
    socket.send(&conntrack::delete_requests(first, &doomed), 0)?;
    let mut answered = 0;
    let mut deleted = 0;
    while answered < doomed.len() {
        buf.clear();
        socket.recv(&mut buf, 0)?;
        let ours = |seq: u32| seq.wrapping_sub(first) < doomed.len() as u32;
        for (_, errno) in nft::acks(&buf).into_iter().filter(|(seq, _)| ours(*seq)) {
            answered += 1;
            // ENOENT: the flow ended meanwhile.
            if errno == 0 {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Opens a netfilter netlink socket inside `netns`.
async fn open(sandbox: &str, netns: &Path) -> Result<Arc<Socket>, BalancerError> {
    let opened = overlay::netlink::run_in_netns(netns, SYNC_TIMEOUT, || {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        // Errors come back without the refused message's body.
        socket.set_cap_ack(true)?;
        socket2::SockRef::from(&socket).set_read_timeout(Some(SYNC_TIMEOUT))?;
        Ok(socket)
    })
    .await;
    opened.map(Arc::new).map_err(|e| BalancerError::Netlink {
        sandbox: sandbox.to_owned(),
        netns: netns.to_owned(),
        source: io::Error::other(e.to_string()),
    })
}

/// Closes `socket` on a blocking thread (closing costs the kernel a grace period).
fn retire(socket: Arc<Socket>) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn_blocking(move || drop(socket));
    }
}

/// Sends `batch` on `socket` and waits for the kernel's answer, on a blocking thread.
async fn send(
    sandbox: &str,
    netns: &Path,
    socket: &Arc<Socket>,
    batch: Batch,
) -> Result<(), BalancerError> {
    let (Some(first), Some(last)) = (batch.labels().next().map(|(seq, _)| seq), batch.last_seq())
    else {
        return Ok(());
    };
    let what: Vec<(u32, String)> = batch.labels().map(|(seq, w)| (seq, w.to_owned())).collect();
    let bytes = batch.finish_bytes();
    let socket = Arc::clone(socket);
    let answer = tokio::task::spawn_blocking(move || exchange(&socket, &bytes, first, last))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|source| BalancerError::Netlink {
            sandbox: sandbox.to_owned(),
            netns: netns.to_owned(),
            source,
        })?;
    match answer {
        Ok(()) => Ok(()),
        Err((seq, errno)) => Err(BalancerError::Refused {
            sandbox: sandbox.to_owned(),
            what: what
                .iter()
                .find(|(s, _)| *s == seq)
                .map_or_else(|| format!("message {seq}"), |(_, w)| w.clone()),
            errno: io::Error::from_raw_os_error(errno),
        }),
    }
}

/// Sends the transaction and reads answers until the last message's, or the first error.
/// `Ok(Err((seq, errno)))`: the kernel refused message `seq`.
fn exchange(
    socket: &Socket,
    bytes: &[u8],
    first: u32,
    last: u32,
) -> io::Result<Result<(), (u32, i32)>> {
    // A large first sync (thousands of rules) needs more than the default buffer; the
    // kernel caps the request at its own maximum, and a transaction beyond it is refused.
    let _ = socket2::SockRef::from(socket)
        .set_send_buffer_size(bytes.len().saturating_mul(2).max(1 << 20));
    let sent = socket.send(bytes, 0)?;
    if sent != bytes.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            bytes.len()
        )));
    }
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        socket.recv(&mut buf, 0)?;
        // Answers to earlier requests on this socket (a late conntrack one) are not ours.
        for (seq, errno) in nft::acks(&buf)
            .into_iter()
            .filter(|(seq, _)| seq.wrapping_sub(first) <= last.wrapping_sub(first))
        {
            if errno != 0 {
                return Ok(Err((seq, errno)));
            }
            if seq == last {
                return Ok(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(services: &[(&str, &[&str])]) -> ServiceTable {
        let mut records = discovery::NetworkRecords::default();
        for (vip, tasks) in services {
            for ip in *tasks {
                let record = discovery::EndpointRecord {
                    name: format!("t-{ip}"),
                    service_name: format!("s-{vip}"),
                    service_id: format!("id-{vip}"),
                    virtual_ip: (*vip).to_owned(),
                    endpoint_ip: (*ip).to_owned(),
                    ..Default::default()
                };
                if let Ok(Some(c)) = discovery::claims(&record) {
                    records.add(&c);
                }
            }
        }
        ServiceTable::of([&records])
    }

    fn labels(reset: bool, want: &ServiceTable, have: &ServiceTable) -> Vec<String> {
        let ops = discovery::plan(want, have);
        transaction(1, reset, want, have, &ops)
            .labels()
            .map(|(_, w)| w.to_owned())
            .collect()
    }

    #[test]
    fn chains_exist_before_jumps_and_go_after_them() {
        let have = table(&[("10.0.0.2", &["10.0.0.3"]), ("10.0.1.2", &["10.0.1.3"])]);
        let want = table(&[("10.0.1.2", &["10.0.1.3"]), ("10.0.2.2", &["10.0.2.3"])]);
        assert_eq!(
            labels(false, &want, &have),
            [
                "add vip-10.0.2.2",
                "vip-10.0.2.2 backend 10.0.2.3",
                "flush vips",
                "jump 10.0.1.2",
                "jump 10.0.2.2",
                "flush vip-10.0.0.2",
                "delete vip-10.0.0.2",
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
            first[..4],
            ["add table", "delete table", "add table", "add base chain"]
        );
        assert_eq!(labels(true, &empty, &empty), ["add table", "delete table"]);
    }
}
