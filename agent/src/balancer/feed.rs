//! The task that keeps every sandbox's VIP balancer in step with service discovery.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;

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

/// A sandbox whose last sync failed: when to try again, and the wait after that.
#[derive(Debug)]
struct Failing {
    next: tokio::time::Instant,
    backoff: Duration,
}

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

/// One sandbox's wanted state, as the directory gave it.
type Want = (String, PathBuf, ServiceTable);

/// Keeps every sandbox's balancer in step with `directory`, until the task is aborted.
///
/// Each change of the directory makes every sandbox due; up to [`PARALLEL_SYNCS`] are
/// synced at once, each in its own task, and never two tasks of one sandbox at once (they
/// share its socket). A sandbox whose sync stalls (up to
/// [`SYNC_TIMEOUT`](super::SYNC_TIMEOUT)) holds up only itself: the others are synced at the
/// next change meanwhile, and it is synced again, with what is wanted by then, once its task
/// ends. Conntrack cleanups (slower: a dump walks the host's whole table) run one at a time,
/// only while no sync is due or running; a sandbox has at most one waiting (later ones are
/// merged into it), and pairs served again by then are left alone. A sandbox whose sync fails is tried again after
/// [`RETRY`], doubling the wait up to [`MAX_RETRY`], while it exists (a Docker sandbox's
/// namespace appears after its first endpoint joined; a sandbox whose namespace never
/// appears costs one try every few seconds); a failure is logged once per sandbox until it
/// succeeds.
pub async fn run(
    balancers: Arc<SandboxBalancers>,
    directory: Directory,
    stats: Arc<BalancerStats>,
) {
    let mut failing: HashMap<String, Failing> = HashMap::new();
    let mut known: HashSet<String> = HashSet::new();
    // Sandboxes gone from the directory while a task of theirs ran: forgotten when it ends.
    let mut gone_busy: HashSet<String> = HashSet::new();
    let mut due: VecDeque<Want> = VecDeque::new();
    let mut cleanups: VecDeque<FlowCleanup> = VecDeque::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut syncing = 0usize;
    let mut running: JoinSet<Done> = JoinSet::new();
    // Each task's sandbox, and whether it is a sync.
    let mut tasks: HashMap<tokio::task::Id, (String, bool)> = HashMap::new();
    loop {
        // Retries not made due yet (one due or running needs no wake: a timer already past
        // would fire again and again while it runs).
        let retry = failing
            .iter()
            .filter(|(s, _)| !busy.contains(*s) && !due.iter().any(|(d, _, _)| d == *s))
            .map(|(_, f)| f.next)
            .min();
        let mut wake = false;
        tokio::select! {
            () = directory.changed() => wake = true,
            () = sleep_until_some(retry) => wake = true,
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match &joined {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                let Some((sandbox, sync)) = tasks.remove(&id) else {
                    continue;
                };
                busy.remove(&sandbox);
                syncing -= usize::from(sync);
                match joined {
                    Ok((_, Done::Synced { vips, result })) => {
                        synced(&stats, &mut failing, &mut cleanups, sandbox.clone(), vips, result);
                        if failing.contains_key(&sandbox) {
                            // Retried at its time, with what is wanted then (not at once
                            // from a want queued while it ran, which skipped the backoff and
                            // let a later change fall out of `due`).
                            due.retain(|(s, _, _)| *s != sandbox);
                        }
                    }
                    Ok((_, Done::Cleaned(n))) => {
                        stats.flows_forgotten.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::error!(%sandbox, error = %e, "VIP balancer task failed");
                        if sync {
                            failing.entry(sandbox.clone()).or_insert(Failing {
                                next: tokio::time::Instant::now() + RETRY,
                                backoff: (RETRY * 2).min(MAX_RETRY),
                            });
                            due.retain(|(s, _, _)| *s != sandbox);
                        }
                    }
                }
                if gone_busy.remove(&sandbox) {
                    failing.remove(&sandbox);
                    cleanups.retain(|c| c.sandbox() != sandbox);
                    balancers.forget(&sandbox).await;
                }
            }
        }
        if wake {
            let now = tokio::time::Instant::now();
            let sandboxes = directory.sandbox_services();
            let present: HashSet<String> = sandboxes.iter().map(|(s, _, _)| s.clone()).collect();
            for gone in known.difference(&present) {
                if busy.contains(gone) {
                    gone_busy.insert(gone.clone());
                } else {
                    cleanups.retain(|c| c.sandbox() != gone);
                    balancers.forget(gone).await;
                }
            }
            gone_busy.retain(|s| !present.contains(s));
            failing.retain(|s, _| present.contains(s));
            known = present;
            // The latest wants replace what was due.
            due = sandboxes
                .into_iter()
                .filter(|(sandbox, _, _)| failing.get(sandbox).is_none_or(|f| f.next <= now))
                .collect();
        }
        // Rulesets first: any due sandbox without a task of its own, up to the limit.
        while syncing < PARALLEL_SYNCS {
            let Some(k) = due.iter().position(|(s, _, _)| !busy.contains(s)) else {
                break;
            };
            let Some((sandbox, netns, want)) = due.remove(k) else {
                break;
            };
            busy.insert(sandbox.clone());
            syncing += 1;
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
        // Then the cleanups, one at a time, while no sync is due or running.
        while syncing == 0
            && due.is_empty()
            && running.is_empty()
            && let Some(mut cleanup) = cleanups.pop_front()
        {
            let programmed = balancers.programmed(cleanup.sandbox()).await;
            if !cleanup.keep_withdrawn(&programmed.unwrap_or_default()) {
                continue;
            }
            let sandbox = cleanup.sandbox().to_owned();
            busy.insert(sandbox.clone());
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

/// Counts a sync's outcome, queues its cleanup, and sets the sandbox's retry on failure.
fn synced(
    stats: &BalancerStats,
    failing: &mut HashMap<String, Failing>,
    cleanups: &mut VecDeque<FlowCleanup>,
    sandbox: String,
    vips: usize,
    result: Result<(SyncOutcome, Option<FlowCleanup>), BalancerError>,
) {
    let now = tokio::time::Instant::now();
    match result {
        Ok((done, cleanup)) => {
            if done.messages > 0 {
                stats.syncs.fetch_add(1, Ordering::Relaxed);
                stats.ops.fetch_add(done.ops as u64, Ordering::Relaxed);
                tracing::debug!(%sandbox, vips, ops = done.ops, "VIP balancer synced");
            }
            if let Some(cleanup) = cleanup {
                // One cleanup waiting per sandbox: a dump serves all its withdrawn pairs.
                match cleanups.iter_mut().find(|c| c.sandbox() == sandbox) {
                    Some(waiting) => waiting.absorb(cleanup),
                    None => cleanups.push_back(cleanup),
                }
            }
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
