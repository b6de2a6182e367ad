//! Service VIP load balancing in every sandbox: connections a container opens to a service's
//! VIP are spread over the service's enabled tasks anywhere in the cluster, by nf_tables
//! inside the container's network namespace.
//!
//! Why nf_tables and not IPVS (libnetwork's choice): the kernels of the machines this agent
//! targets build nf_tables in (NAT, `numgen`, conntrack) but not always IPVS (this project's
//! CI kernel has no `CONFIG_IP_VS`); a destination-only DNAT balances every protocol and port
//! of the VIP without IPVS's per-port services or libnetwork's firewall marks; and one
//! nf_tables transaction replaces a VIP's backends atomically. The messages are written by
//! hand ([`discovery::nft`], sans-IO, which the simulator runs against a fake kernel), and
//! sent here on a netlink socket opened inside the namespace: nothing runs `nft` or `ipvsadm`.
//!
//! [`SandboxBalancers`] keeps, per sandbox, a [`SandboxBalancer`] (what its kernel holds) and
//! the socket, and brings the kernel to what service discovery says: one transaction per
//! sync, only the VIPs that changed, then the withdrawn backends' UDP flows forgotten.

mod feed;
mod schedule;

pub use feed::{BalancerStats, MAX_RETRY, PARALLEL_SYNCS, RETRY, run};

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use discovery::ServiceTable;
use discovery::nft::{Batch, SandboxBalancer, conntrack};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use tokio::sync::Mutex;

/// How long one transaction may take, namespace entry included.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket buffers asked for (forced: the agent is root), so that a first sync of
/// thousands of rules and the answers to a large conntrack cleanup fit.
const SOCKET_BUFFER: usize = 8 << 20;

/// Conntrack deletions sent at once (each answered: the answers must fit the buffer).
const DELETE_CHUNK: usize = 128;

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

/// One sandbox: its namespace, what its kernel holds, and the socket that programs it.
///
/// The socket was opened inside the sandbox's namespace and stays bound to it, so later
/// transactions need no namespace change; it is kept because closing a netfilter netlink
/// socket costs the kernel a grace period (8-20 ms here), ten times a transaction's cost.
#[derive(Debug)]
struct Slot {
    netns: PathBuf,
    /// The namespace's identity (device and inode of its file): a sandbox whose path now
    /// names another namespace (a container restarted under the same name) starts over.
    id: (u64, u64),
    balancer: SandboxBalancer,
    socket: Arc<Socket>,
}

/// The VIP balancers of this agent's sandboxes (root only: they live in the containers'
/// namespaces). Syncs of one sandbox are serialized (a lock each); syncs of different
/// sandboxes run side by side. A sync of a sandbox forgotten meanwhile does nothing.
#[derive(Debug, Default)]
pub struct SandboxBalancers {
    /// Each sandbox's slot, empty while its kernel state is unknown (never synced, or the
    /// last sync failed).
    slots: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<Slot>>>>>,
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

    /// Brings `sandbox`'s balancer (namespace `netns`) to `want`, then forgets the UDP flows
    /// of the backends it withdrew. The first sync of a sandbox replaces whatever an earlier
    /// run left in its table.
    pub async fn sync(
        &self,
        sandbox: &str,
        netns: &Path,
        want: &ServiceTable,
    ) -> Result<SyncOutcome, BalancerError> {
        let (mut outcome, cleanup) = self.sync_deferred(sandbox, netns, want).await?;
        if let Some(cleanup) = cleanup {
            outcome.flows_forgotten = cleanup.run().await;
        }
        Ok(outcome)
    }

    /// [`sync`](Self::sync) without forgetting the withdrawn backends' UDP flows: that is
    /// returned, to run once every sandbox's ruleset is up to date (it walks the host's whole
    /// conntrack table, about 9 ms here, ten times a transaction).
    pub async fn sync_deferred(
        &self,
        sandbox: &str,
        netns: &Path,
        want: &ServiceTable,
    ) -> Result<(SyncOutcome, Option<FlowCleanup>), BalancerError> {
        let netlink = |source: io::Error| BalancerError::Netlink {
            sandbox: sandbox.to_owned(),
            netns: netns.to_owned(),
            source,
        };
        let id = std::fs::metadata(netns)
            .map(|m| (m.dev(), m.ino()))
            .map_err(netlink)?;
        let cell = self.cell(sandbox);
        let mut slot = cell.lock().await;
        if !self
            .cells()
            .get(sandbox)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            // Forgotten while this sync waited for the lock: nothing to bring up to date.
            return Ok((SyncOutcome::default(), None));
        }
        let (mut balancer, socket) = match slot.take() {
            Some(s) if s.netns == netns && s.id == id => (s.balancer, Some(s.socket)),
            Some(s) => {
                // Another namespace now: start over there.
                retire(s.socket, false);
                (SandboxBalancer::new(), None)
            }
            None => (SandboxBalancer::new(), None),
        };
        let first = self
            .seq
            .fetch_add(1 << 20, std::sync::atomic::Ordering::Relaxed);
        let Some(prepared) = balancer.prepare(want, first) else {
            // Known to hold `want` already (so it has a socket).
            *slot = socket.map(|socket| Slot {
                netns: netns.to_owned(),
                id,
                balancer,
                socket,
            });
            return Ok((SyncOutcome::default(), None));
        };
        let messages = prepared.batch.len();
        let socket = match socket {
            Some(socket) => socket,
            None => open(sandbox, netns).await?,
        };
        // Until the kernel has answered, the sandbox is not known: a failure rebuilds it
        // (with a new socket) at the next sync.
        if let Err(e) = send(sandbox, netns, &socket, prepared.batch).await {
            retire(socket, false);
            return Err(e);
        }
        balancer.committed(want);
        let cleanup = (!prepared.withdrawn.is_empty()).then(|| FlowCleanup {
            sandbox: sandbox.to_owned(),
            socket: Arc::clone(&socket),
            first_seq: first.wrapping_add(1 << 19),
            withdrawn: prepared.withdrawn,
        });
        *slot = Some(Slot {
            netns: netns.to_owned(),
            id,
            balancer,
            socket,
        });
        Ok((
            SyncOutcome {
                ops: prepared.ops,
                messages,
                flows_forgotten: 0,
            },
            cleanup,
        ))
    }

    /// Forgets `sandbox` (removed, or without a joined endpoint any more): its table is
    /// deleted if its namespace still exists, and its socket closed, which releases the
    /// namespace.
    pub async fn forget(&self, sandbox: &str) {
        let Some(cell) = self.cells().remove(sandbox) else {
            return;
        };
        if let Some(s) = cell.lock().await.take() {
            let held = s.balancer.programmed().is_some_and(|t| !t.is_empty());
            retire(s.socket, held);
        }
    }

    /// What `sandbox`'s kernel was last brought to, if anything.
    pub async fn programmed(&self, sandbox: &str) -> Option<ServiceTable> {
        let cell = self.cells().get(sandbox).cloned()?;
        let slot = cell.lock().await;
        slot.as_ref().and_then(|s| s.balancer.programmed().cloned())
    }

    fn cells(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<Option<Slot>>>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `sandbox`'s slot, made empty if new.
    fn cell(&self, sandbox: &str) -> Arc<Mutex<Option<Slot>>> {
        Arc::clone(self.cells().entry(sandbox.to_owned()).or_default())
    }
}

/// Opens a netfilter netlink socket inside `netns`.
async fn open(sandbox: &str, netns: &Path) -> Result<Arc<Socket>, BalancerError> {
    let opened = overlay::netlink::run_in_netns(netns, SYNC_TIMEOUT, || {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        // Errors come back without the refused message's body.
        socket.set_cap_ack(true)?;
        let sock = socket2::SockRef::from(&socket);
        sock.set_read_timeout(Some(SYNC_TIMEOUT))?;
        use nix::sys::socket::{setsockopt, sockopt};
        if setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
            let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        }
        if setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
            let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        }
        Ok(socket)
    })
    .await;
    opened.map(Arc::new).map_err(|e| BalancerError::Netlink {
        sandbox: sandbox.to_owned(),
        netns: netns.to_owned(),
        source: io::Error::other(e.to_string()),
    })
}

/// Closes `socket` on a blocking thread (closing costs the kernel a grace period), first
/// deleting the balancer's table when `delete_table`.
fn retire(socket: Arc<Socket>, delete_table: bool) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn_blocking(move || {
        if delete_table {
            let mut batch = Batch::new(u32::MAX - 16);
            batch.delete_all();
            if let Some((first, last)) = batch.seqs() {
                let _ = exchange(&socket, &batch.finish_bytes(), first, last);
            }
        }
        drop(socket);
    });
}

/// Sends `batch` on `socket` and waits for the kernel's answer, on a blocking thread.
async fn send(
    sandbox: &str,
    netns: &Path,
    socket: &Arc<Socket>,
    batch: Batch,
) -> Result<(), BalancerError> {
    let Some((first, last)) = batch.seqs() else {
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
            // An error of the commit itself comes back on the frame's (the first) number.
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
    let sent = socket.send(bytes, 0)?;
    if sent != bytes.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            bytes.len()
        )));
    }
    let ours = |seq: u32| seq.wrapping_sub(first) <= last.wrapping_sub(first);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        socket.recv(&mut buf, 0)?;
        // Answers to earlier requests on this socket (a late conntrack one) are not ours.
        for (seq, errno) in discovery::nft::acks(&buf)
            .into_iter()
            .filter(|(seq, _)| ours(*seq))
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

/// The UDP flows a sync's withdrawn backends leave in a sandbox's conntrack table, to forget.
#[derive(Debug)]
pub struct FlowCleanup {
    sandbox: String,
    socket: Arc<Socket>,
    first_seq: u32,
    withdrawn: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl schedule::Queued for FlowCleanup {
    fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// Takes in `later`, a cleanup of the same sandbox made after this one, so one dump
    /// serves both: its pairs are added, and its socket and numbering used (a failed sync
    /// in between opened a new socket; a pair of a namespace since replaced matches no flow
    /// of the new one).
    fn absorb(&mut self, later: FlowCleanup) {
        self.socket = later.socket;
        self.first_seq = later.first_seq;
        for pair in later.withdrawn {
            if !self.withdrawn.contains(&pair) {
                self.withdrawn.push(pair);
            }
        }
    }
}

impl FlowCleanup {
    /// Drops the pairs `programmed` serves again (a task withdrawn, then back before its
    /// flows were forgotten: new flows to it are right). Returns whether any pair is left.
    pub fn keep_withdrawn(&mut self, programmed: &ServiceTable) -> bool {
        self.withdrawn.retain(|(vip, backend)| {
            !programmed
                .backends(*vip)
                .is_some_and(|b| b.contains(backend))
        });
        !self.withdrawn.is_empty()
    }

    /// Deletes the sandbox's UDP flows to the withdrawn backends; how many. A failure is
    /// logged: the flows then end by themselves (conntrack's UDP timeouts).
    pub async fn run(self) -> usize {
        let Self {
            sandbox,
            socket,
            first_seq,
            withdrawn,
        } = self;
        let done = tokio::task::spawn_blocking(move || {
            forget_flows_blocking(&socket, first_seq, &withdrawn)
        })
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
    let mut deleted = 0;
    let mut seq = first_seq.wrapping_add(1);
    for chunk in doomed.chunks(DELETE_CHUNK) {
        let first = seq;
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        seq = seq.wrapping_add(n);
        socket.send(&conntrack::delete_requests(first, chunk), 0)?;
        let mut answered = 0;
        while answered < chunk.len() {
            buf.clear();
            socket.recv(&mut buf, 0)?;
            for (_, errno) in discovery::nft::acks(&buf)
                .into_iter()
                .filter(|(s, _)| s.wrapping_sub(first) < n)
            {
                answered += 1;
                // ENOENT: the flow ended meanwhile.
                if errno == 0 {
                    deleted += 1;
                }
            }
        }
    }
    Ok(deleted)
}
