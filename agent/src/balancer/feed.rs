//! The task that keeps every sandbox's VIP balancer in step with service discovery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;

use super::SandboxBalancers;
use crate::dns::directory::Directory;

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

/// Sandboxes synced at once: their transactions run on blocking threads, and a namespace
/// that stalls (up to [`SYNC_TIMEOUT`](super::SYNC_TIMEOUT)) holds up only its own.
pub const PARALLEL_SYNCS: usize = 8;

/// A sandbox whose last sync failed: when to try again, and the wait after that.
#[derive(Debug)]
struct Failing {
    next: tokio::time::Instant,
    backoff: Duration,
}

/// Syncs every sandbox's balancer after each change of `directory`, until the task is
/// aborted, up to [`PARALLEL_SYNCS`] sandboxes at once. A sandbox whose sync fails is tried again after [`RETRY`], doubling the wait up
/// to [`MAX_RETRY`], while it exists (a Docker sandbox's namespace appears after its first
/// endpoint joined; a sandbox whose namespace never appears costs one try every few
/// seconds); a failure is logged once per sandbox until it succeeds.
pub async fn run(
    balancers: Arc<SandboxBalancers>,
    directory: Directory,
    stats: Arc<BalancerStats>,
) {
    let mut failing: HashMap<String, Failing> = HashMap::new();
    let mut known: HashSet<String> = HashSet::new();
    loop {
        match failing.values().map(|f| f.next).min() {
            None => directory.changed().await,
            Some(due) => {
                tokio::select! {
                    () = directory.changed() => {}
                    () = tokio::time::sleep_until(due) => {}
                }
            }
        }
        let now = tokio::time::Instant::now();
        let sandboxes = directory.sandbox_services();
        let present: HashSet<String> = sandboxes.iter().map(|(s, _, _)| s.clone()).collect();
        for gone in known.difference(&present) {
            balancers.forget(gone).await;
        }
        failing.retain(|s, _| present.contains(s));
        known = present;
        // Every sandbox's ruleset first, then the conntrack cleanups (slower, and only for
        // flows that exist already).
        let mut cleanups = Vec::new();
        let due: Vec<_> = sandboxes
            .into_iter()
            .filter(|(sandbox, _, _)| failing.get(sandbox).is_none_or(|f| f.next <= now))
            .collect();
        let mut due = due.into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < PARALLEL_SYNCS {
                let Some((sandbox, netns, want)) = due.next() else {
                    break;
                };
                let balancers = Arc::clone(&balancers);
                running.spawn(async move {
                    let synced = balancers.sync_deferred(&sandbox, &netns, &want).await;
                    (sandbox, want.len(), synced)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (sandbox, vips, synced) = match joined {
                Ok(done) => done,
                Err(e) => {
                    // Its sandbox is tried again at the next change.
                    tracing::error!(error = %e, "VIP balancer sync task failed");
                    continue;
                }
            };
            match synced {
                Ok((done, cleanup)) => {
                    if done.messages > 0 {
                        stats.syncs.fetch_add(1, Ordering::Relaxed);
                        stats.ops.fetch_add(done.ops as u64, Ordering::Relaxed);
                        tracing::debug!(%sandbox, vips, ops = done.ops, "VIP balancer synced");
                    }
                    cleanups.extend(cleanup);
                    failing.remove(&sandbox);
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    match failing.get_mut(&sandbox) {
                        Some(f) => {
                            f.next = now + f.backoff;
                            f.backoff = (f.backoff * 2).min(MAX_RETRY);
                        }
                        None => {
                            tracing::warn!(error = %e, "VIP balancer not synced; retrying");
                            failing.insert(
                                sandbox,
                                Failing {
                                    next: now + RETRY,
                                    backoff: (RETRY * 2).min(MAX_RETRY),
                                },
                            );
                        }
                    }
                }
            }
        }
        for cleanup in cleanups {
            let forgotten = cleanup.run().await;
            stats
                .flows_forgotten
                .fetch_add(forgotten as u64, Ordering::Relaxed);
        }
    }
}
