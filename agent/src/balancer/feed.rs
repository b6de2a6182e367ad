//! The task that keeps every sandbox's VIP balancer in step with service discovery.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;

use super::schedule::{Queued, Schedule};
use super::{BalancerError, FlowCleanup, SandboxBalancers, SyncOutcome};
use crate::dns::directory::Directory;
use discovery::ServiceTable;

/// How long after a failed sync the sandboxes are synced again (a Docker sandbox's namespace
/// appears after its first endpoint joined).
pub const RETRY: Duration = Duration::from_millis(250);

/// Counters of the balancers, for the metrics.
#[derive(Debug, Default)]
pub struct BalancerStats {
    /// Syncs that changed a sandbox's kernel.
    pub syncs: AtomicU64,
    /// VIPs set or removed.
    pub ops: AtomicU64,
    /// Syncs that failed (retried).
    pub failures: AtomicU64,
    /// UDP flows to withdrawn backends forgotten.
    pub flows_forgotten: AtomicU64,
}

impl BalancerStats {
    /// Syncs, ops, failures and flows forgotten, in that order.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.syncs.load(Ordering::Relaxed),
            self.ops.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.flows_forgotten.load(Ordering::Relaxed),
        ]
    }
}

/// The longest wait between two tries of a sandbox whose sync keeps failing.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// Sandboxes synced at once: their transactions run on blocking threads.
pub const PARALLEL_SYNCS: usize = 8;

/// What one task of the feed did, for one sandbox.
enum Done {
    /// A sync: the VIPs wanted, and its outcome.
    Synced {
        vips: usize,
        result: Result<(SyncOutcome, Option<FlowCleanup>), BalancerError>,
    },
    /// A conntrack cleanup: the flows forgotten.
    Cleaned(usize),
}

/// Keeps every sandbox's balancer in step with `directory`, until the task is aborted.
///
/// The decisions are those of the feed's `Schedule`: each change of the directory makes every sandbox due;
/// up to [`PARALLEL_SYNCS`] are synced at once, each in its own task, never two tasks of one
/// sandbox at once (they share its socket). A sandbox whose sync stalls (up to
/// [`SYNC_TIMEOUT`](super::SYNC_TIMEOUT)) holds up only itself: the others are synced at the
/// next change meanwhile, and it is synced again, with what is wanted by then, once its task
/// ends. Conntrack cleanups (slower: a dump walks the host's whole table) run one at a time,
/// only while no sync is due or running; a sandbox has at most one waiting (later ones are
/// merged into it), and pairs served again by then are left alone. A sandbox whose sync
/// fails is tried again after [`RETRY`], doubling the wait up to [`MAX_RETRY`], while it
/// exists (a Docker sandbox's namespace appears after its first endpoint joined; a sandbox
/// whose namespace never appears costs one try every few seconds); a failure is logged once
/// per sandbox until it succeeds.
pub async fn run(
    balancers: Arc<SandboxBalancers>,
    directory: Directory,
    stats: Arc<BalancerStats>,
) {
    let mut schedule: Schedule<(PathBuf, ServiceTable), FlowCleanup> =
        Schedule::new(PARALLEL_SYNCS);
    let mut running: JoinSet<Done> = JoinSet::new();
    // Each task's sandbox, and whether it is a sync.
    let mut tasks: HashMap<tokio::task::Id, (String, bool)> = HashMap::new();
    loop {
        let mut wake = false;
        tokio::select! {
            () = directory.changed() => wake = true,
            () = sleep_until_some(schedule.retry_at()) => wake = true,
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match &joined {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                let Some((sandbox, sync)) = tasks.remove(&id) else {
                    continue;
                };
                let now = tokio::time::Instant::now();
                let forget = match joined {
                    Ok((_, Done::Synced { vips, result })) => match result {
                        Ok((done, cleanup)) => {
                            if done.messages > 0 {
                                stats.syncs.fetch_add(1, Ordering::Relaxed);
                                stats.ops.fetch_add(done.ops as u64, Ordering::Relaxed);
                                tracing::debug!(%sandbox, vips, ops = done.ops, "VIP balancer synced");
                            }
                            schedule.sync_ended(now, &sandbox, Ok(cleanup)).forget
                        }
                        Err(e) => {
                            stats.failures.fetch_add(1, Ordering::Relaxed);
                            let ended = schedule.sync_ended(now, &sandbox, Err(()));
                            if ended.first_failure {
                                tracing::warn!(error = %e, "VIP balancer not synced; retrying");
                            }
                            ended.forget
                        }
                    },
                    Ok((_, Done::Cleaned(n))) => {
                        stats.flows_forgotten.fetch_add(n as u64, Ordering::Relaxed);
                        schedule.cleanup_ended(&sandbox)
                    }
                    Err(e) => {
                        tracing::error!(%sandbox, error = %e, "VIP balancer task failed");
                        if sync {
                            schedule.sync_ended(now, &sandbox, Err(())).forget
                        } else {
                            schedule.cleanup_ended(&sandbox)
                        }
                    }
                };
                if forget {
                    balancers.forget(&sandbox).await;
                }
            }
        }
        if wake {
            let now = tokio::time::Instant::now();
            let wanted = directory
                .sandbox_services()
                .into_iter()
                .map(|(sandbox, netns, want)| (sandbox, (netns, want)))
                .collect();
            for gone in schedule.wake(now, wanted) {
                balancers.forget(&gone).await;
            }
        }
        while let Some((sandbox, (netns, want))) = schedule.next_sync() {
            let balancers = Arc::clone(&balancers);
            let task = running.spawn({
                let sandbox = sandbox.clone();
                async move {
                    let result = balancers.sync_deferred(&sandbox, &netns, &want).await;
                    let vips = want.len();
                    Done::Synced { vips, result }
                }
            });
            tasks.insert(task.id(), (sandbox, true));
        }
        while let Some(mut cleanup) = schedule.next_cleanup() {
            let sandbox = cleanup.sandbox().to_owned();
            let programmed = balancers.programmed(&sandbox).await;
            if !cleanup.keep_withdrawn(&programmed.unwrap_or_default()) {
                if schedule.cleanup_ended(&sandbox) {
                    balancers.forget(&sandbox).await;
                }
                continue;
            }
            let task = running.spawn(async move { Done::Cleaned(cleanup.run().await) });
            tasks.insert(task.id(), (sandbox, false));
        }
    }
}

/// Waits until `at`, or forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
