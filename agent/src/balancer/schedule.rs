//! When each sandbox's balancer is synced and its flows cleaned: the feed's decisions,
//! without I/O, so they are tested step by step.
//!
//! Every change of the directory makes every sandbox due with what it wants then; at most
//! `parallel` syncs run at once, never two tasks of one sandbox (they share its socket); a
//! sandbox still in a task when a change comes is synced, with what is wanted by then, when
//! its task ends, while the others go on. A failed sync is retried after a backoff, with
//! what is wanted at that time. Conntrack cleanups wait, one per sandbox (later ones merged
//! in), and run one at a time while no sync is due or running.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::feed::{MAX_RETRY, RETRY};

/// A cleanup waiting for its turn.
pub(crate) trait Queued {
    /// Its sandbox.
    fn sandbox(&self) -> &str;
    /// Takes in a later cleanup of the same sandbox.
    fn absorb(&mut self, later: Self);
}

/// A sandbox whose last sync failed: when to try again, and the wait after that.
#[derive(Debug)]
struct Failing {
    next: Instant,
    backoff: Duration,
}

/// How a sync's end leaves its sandbox.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Ended {
    /// The sandbox left the directory while its task ran: forget it now.
    pub(crate) forget: bool,
    /// The sync failed and the sandbox was not failing before (say so once).
    pub(crate) first_failure: bool,
}

/// The feed's state: what is due, running, failing and waiting to be cleaned.
#[derive(Debug)]
pub(crate) struct Schedule<T, C> {
    parallel: usize,
    /// Sandboxes to sync, with what they want, in the directory's order.
    due: VecDeque<(String, T)>,
    /// Sandboxes with a task running (one each): as many as tasks run.
    busy: HashSet<String>,
    /// Of those, the tasks that are syncs.
    syncing: usize,
    failing: HashMap<String, Failing>,
    /// Sandboxes of the directory at the last wake.
    known: HashSet<String>,
    /// Sandboxes gone from the directory while a task of theirs ran.
    gone_busy: HashSet<String>,
    cleanups: VecDeque<C>,
}

impl<T, C: Queued> Schedule<T, C> {
    /// Nothing due; at most `parallel` syncs at once.
    pub(crate) fn new(parallel: usize) -> Self {
        Self {
            parallel,
            due: VecDeque::new(),
            busy: HashSet::new(),
            syncing: 0,
            failing: HashMap::new(),
            known: HashSet::new(),
            gone_busy: HashSet::new(),
            cleanups: VecDeque::new(),
        }
    }

    /// The directory changed, or a retry is due: `wanted` is every sandbox with what it
    /// wants now. Returns the sandboxes gone that can be forgotten now (one with a task
    /// running is forgotten when it ends).
    pub(crate) fn wake(&mut self, now: Instant, wanted: Vec<(String, T)>) -> Vec<String> {
        let present: HashSet<String> = wanted.iter().map(|(s, _)| s.clone()).collect();
        let mut forget = Vec::new();
        for gone in self.known.difference(&present) {
            if self.busy.contains(gone) {
                self.gone_busy.insert(gone.clone());
            } else {
                self.cleanups.retain(|c| c.sandbox() != gone);
                forget.push(gone.clone());
            }
        }
        self.gone_busy.retain(|s| !present.contains(s));
        self.failing.retain(|s, _| present.contains(s));
        self.known = present;
        let failing = &self.failing;
        self.due = wanted
            .into_iter()
            .filter(|(s, _)| failing.get(s).is_none_or(|f| f.next <= now))
            .collect();
        forget
    }

    /// The next sync to start, if one is due for a sandbox without a task and fewer than
    /// `parallel` run; it counts as running from now.
    pub(crate) fn next_sync(&mut self) -> Option<(String, T)> {
        if self.syncing >= self.parallel {
            return None;
        }
        let k = self.due.iter().position(|(s, _)| !self.busy.contains(s))?;
        let (sandbox, want) = self.due.remove(k)?;
        self.busy.insert(sandbox.clone());
        self.syncing += 1;
        Some((sandbox, want))
    }

    /// A sync of `sandbox` ended: `Ok` with the cleanup it leaves, or `Err` (failed; a task
    /// that panicked too). A failed sandbox leaves what was due for it and is retried after
    /// its backoff, with what is wanted then.
    pub(crate) fn sync_ended(
        &mut self,
        now: Instant,
        sandbox: &str,
        result: Result<Option<C>, ()>,
    ) -> Ended {
        self.busy.remove(sandbox);
        self.syncing -= 1;
        let mut first_failure = false;
        match result {
            Ok(cleanup) => {
                self.failing.remove(sandbox);
                if let Some(cleanup) = cleanup {
                    match self.cleanups.iter_mut().find(|c| c.sandbox() == sandbox) {
                        Some(waiting) => waiting.absorb(cleanup),
                        None => self.cleanups.push_back(cleanup),
                    }
                }
            }
            Err(()) => {
                match self.failing.get_mut(sandbox) {
                    Some(f) => {
                        f.next = now + f.backoff;
                        f.backoff = (f.backoff * 2).min(MAX_RETRY);
                    }
                    None => {
                        first_failure = true;
                        let f = Failing {
                            next: now + RETRY,
                            backoff: (RETRY * 2).min(MAX_RETRY),
                        };
                        self.failing.insert(sandbox.to_owned(), f);
                    }
                }
                self.due.retain(|(s, _)| s != sandbox);
            }
        }
        Ended {
            forget: self.ended(sandbox),
            first_failure,
        }
    }

    /// The next cleanup to run, while no sync is due or running and no cleanup runs; it
    /// counts as running from now.
    pub(crate) fn next_cleanup(&mut self) -> Option<C> {
        if !self.busy.is_empty() || !self.due.is_empty() {
            return None;
        }
        let cleanup = self.cleanups.pop_front()?;
        self.busy.insert(cleanup.sandbox().to_owned());
        Some(cleanup)
    }

    /// The cleanup of `sandbox` ended. Returns whether to forget the sandbox now.
    pub(crate) fn cleanup_ended(&mut self, sandbox: &str) -> bool {
        self.busy.remove(sandbox);
        self.ended(sandbox)
    }

    /// When a failed sandbox is next due, if one waits: retries already due or running need
    /// no timer (one already past would fire again and again while it runs).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.failing
            .iter()
            .filter(|(s, _)| !self.busy.contains(*s) && !self.due.iter().any(|(d, _)| d == *s))
            .map(|(_, f)| f.next)
            .min()
    }

    /// Whether the sandbox whose task ended left the directory meanwhile (then nothing of
    /// it is kept).
    fn ended(&mut self, sandbox: &str) -> bool {
        let gone = self.gone_busy.remove(sandbox);
        if gone {
            self.failing.remove(sandbox);
            self.cleanups.retain(|c| c.sandbox() != sandbox);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cleanup of the pairs numbered here.
    #[derive(Debug, PartialEq)]
    struct Pairs(String, Vec<u32>);

    impl Queued for Pairs {
        fn sandbox(&self) -> &str {
            &self.0
        }
        fn absorb(&mut self, later: Self) {
            self.1.extend(later.1);
        }
    }

    type S = Schedule<u32, Pairs>;

    fn want(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(s, v)| ((*s).to_owned(), *v)).collect()
    }

    #[test]
    fn a_stalled_sandbox_holds_up_only_itself() {
        let now = Instant::now();
        let mut s = S::new(8);
        s.wake(now, want(&[("a", 1), ("b", 1)]));
        assert_eq!(s.next_sync(), Some(("a".into(), 1)));
        assert_eq!(s.next_sync(), Some(("b".into(), 1)));
        assert_eq!(s.sync_ended(now, "b", Ok(None)), Ended::default());
        // "a" still runs: the next change reaches "b" at once, and "a" when it is done.
        s.wake(now, want(&[("a", 2), ("b", 2)]));
        assert_eq!(s.next_sync(), Some(("b".into(), 2)));
        assert_eq!(s.next_sync(), None);
        s.sync_ended(now, "a", Ok(None));
        assert_eq!(s.next_sync(), Some(("a".into(), 2)));
    }

    /// Found by review: a retry's timer, already past while the retry ran, fired again and
    /// again (the feed spun at full CPU).
    #[test]
    fn a_retry_due_or_running_sets_no_timer() {
        let now = Instant::now();
        let mut s = S::new(8);
        s.wake(now, want(&[("a", 1)]));
        s.next_sync();
        let ended = s.sync_ended(now, "a", Err(()));
        assert!(ended.first_failure);
        assert_eq!(s.retry_at(), Some(now + RETRY));
        let later = now + RETRY;
        s.wake(later, want(&[("a", 1)]));
        assert_eq!(s.retry_at(), None, "due");
        assert_eq!(s.next_sync(), Some(("a".into(), 1)));
        assert_eq!(s.retry_at(), None, "running");
        assert!(!s.sync_ended(later, "a", Err(())).first_failure);
        assert_eq!(s.retry_at(), Some(later + RETRY * 2), "backoff doubled");
    }

    /// Found by review: a sync that failed while a change was queued for its sandbox was
    /// retried at once from that want (backoff skipped); a change during that retry was
    /// dropped (the sandbox failing), and the retry's success left it never applied.
    #[test]
    fn a_change_during_a_retry_is_applied() {
        let now = Instant::now();
        let mut s = S::new(8);
        s.wake(now, want(&[("a", 1)]));
        s.next_sync();
        s.wake(now, want(&[("a", 2)]));
        s.sync_ended(now, "a", Err(()));
        assert_eq!(s.next_sync(), None, "not at once: after the backoff");
        s.wake(now + RETRY / 2, want(&[("a", 3)]));
        assert_eq!(s.next_sync(), None);
        let at = s.retry_at().expect("a retry waits");
        s.wake(at, want(&[("a", 3)]));
        assert_eq!(s.next_sync(), Some(("a".into(), 3)));
        s.sync_ended(at, "a", Ok(None));
        assert_eq!(s.retry_at(), None);
    }

    #[test]
    fn cleanups_wait_for_the_syncs_and_merge() {
        let now = Instant::now();
        let mut s = S::new(8);
        s.wake(now, want(&[("a", 1), ("b", 1)]));
        s.next_sync();
        s.next_sync();
        s.sync_ended(now, "a", Ok(Some(Pairs("a".into(), vec![1]))));
        assert_eq!(s.next_cleanup(), None, "b still syncing");
        s.sync_ended(now, "b", Ok(None));
        s.wake(now, want(&[("a", 2), ("b", 1)]));
        assert_eq!(s.next_cleanup(), None, "syncs due");
        while let Some((sandbox, _)) = s.next_sync() {
            let cleanup = (sandbox == "a").then(|| Pairs("a".into(), vec![2]));
            s.sync_ended(now, &sandbox, Ok(cleanup));
        }
        assert_eq!(s.next_cleanup(), Some(Pairs("a".into(), vec![1, 2])));
        assert_eq!(s.next_cleanup(), None, "one at a time");
        assert!(!s.cleanup_ended("a"));
    }

    #[test]
    fn a_sandbox_gone_while_busy_is_forgotten_when_its_task_ends() {
        let now = Instant::now();
        let mut s = S::new(8);
        assert!(s.wake(now, want(&[("a", 1), ("b", 1)])).is_empty());
        s.next_sync();
        assert_eq!(s.wake(now, want(&[])), ["b".to_owned()]);
        assert_eq!(
            s.sync_ended(now, "a", Ok(Some(Pairs("a".into(), vec![1])))),
            Ended {
                forget: true,
                first_failure: false
            }
        );
        assert_eq!(s.next_cleanup(), None, "its cleanup went with it");
    }
}
