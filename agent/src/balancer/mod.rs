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

mod feed;
pub mod nft;

pub use feed::{BalancerStats, RETRY, run};

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
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

/// What one sandbox's kernel holds.
#[derive(Debug)]
struct Programmed {
    netns: PathBuf,
    table: ServiceTable,
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
        let known = programmed
            .get(sandbox)
            .filter(|p| p.netns == netns)
            .map(|p| &p.table);
        let empty = ServiceTable::new();
        let have = known.unwrap_or(&empty);
        let ops = discovery::plan(want, have);
        if known.is_some() && ops.is_empty() {
            return Ok(SyncOutcome::default());
        }
        let first = self
            .seq
            .fetch_add(1 << 20, std::sync::atomic::Ordering::Relaxed);
        let batch = transaction(first, known.is_none(), want, have, &ops);
        let messages = batch.len();
        // Forget the sandbox until the kernel has answered: a failure rebuilds it.
        programmed.remove(sandbox);
        send(sandbox, netns, batch).await?;
        programmed.insert(
            sandbox.to_owned(),
            Programmed {
                netns: netns.to_owned(),
                table: want.clone(),
            },
        );
        Ok(SyncOutcome {
            ops: ops.len(),
            messages,
        })
    }

    /// Forgets `sandbox` (removed with its namespace: nothing to undo).
    pub async fn forget(&self, sandbox: &str) {
        self.programmed.lock().await.remove(sandbox);
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

/// Sends `batch` on a netlink socket opened in `netns` and waits for the kernel's answer.
async fn send(sandbox: &str, netns: &Path, batch: Batch) -> Result<(), BalancerError> {
    let Some(last) = batch.last_seq() else {
        return Ok(());
    };
    let what: Vec<(u32, String)> = batch.labels().map(|(seq, w)| (seq, w.to_owned())).collect();
    let bytes = batch.finish_bytes();
    let answer =
        overlay::netlink::run_in_netns(netns, SYNC_TIMEOUT, move || exchange(&bytes, last))
            .await
            .map_err(|e| BalancerError::Netlink {
                sandbox: sandbox.to_owned(),
                netns: netns.to_owned(),
                source: io::Error::other(e.to_string()),
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

/// In the namespace: sends the transaction and reads answers until the last message's, or
/// the first error. `Ok(Err((seq, errno)))`: the kernel refused message `seq`.
fn exchange(bytes: &[u8], last: u32) -> io::Result<Result<(), (u32, i32)>> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    // Errors come back without the refused message's body.
    socket.set_cap_ack(true)?;
    let fd = socket2::SockRef::from(&socket);
    fd.set_read_timeout(Some(SYNC_TIMEOUT))?;
    // A large first sync (thousands of rules) needs more than the default buffer; the
    // kernel caps the request at its own maximum, and a transaction beyond it is refused.
    let _ = fd.set_send_buffer_size(bytes.len().saturating_mul(2).max(1 << 20));
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
        for (seq, errno) in nft::acks(&buf) {
            if errno != 0 {
                return Ok(Err((seq, errno)));
            }
            if seq == last {
                return Ok(Ok(()));
            }
        }
    }
}
