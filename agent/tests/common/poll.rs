//! Waiting in wall-clock time for something a real process or socket will do: one loop with a
//! deadline for every test file, instead of a sleep-and-retry loop in each.
//!
//! An attempt returns `Ok(value)` when the wait is over and `Err(observation)` otherwise; the
//! last observation is what a timeout reports, so a failed wait says what it saw, not only
//! that it waited. [`accept`] turns a value and a predicate into such an attempt.
//!
//! ```ignore
//! let body = poll_until("3 members", PATIENCE, || {
//!     accept(get("/clusterpeers"), |b| b.contains("total entries: 3"))
//! });
//! ```

use std::fmt::{self, Debug, Display};
use std::time::{Duration, Instant};

/// The pause between two attempts.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// A wait that ran out of time, with the last thing it saw.
#[derive(Debug)]
pub struct TimedOut<O> {
    /// The observation of the last attempt.
    pub last: O,
    /// How many attempts were made.
    pub attempts: u32,
    /// How long the wait took.
    pub waited: Duration,
}

impl<O: Debug> Display for TimedOut<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:.1?} and {} attempts; last observation: {:?}",
            self.waited, self.attempts, self.last
        )
    }
}

/// Calls `attempt` until it returns `Ok`, every [`INTERVAL`], at least once and for at most
/// `timeout`; on timeout, the last observation. For callers that add to the failure message
/// (a process's log, say); [`poll_until`] panics by itself.
pub fn try_poll<T, O>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, O>,
) -> Result<T, TimedOut<O>> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt() {
            Ok(value) => return Ok(value),
            Err(last) => std::thread::sleep(pause(start, timeout, attempts, last)?),
        }
    }
}

/// [`try_poll`], panicking on timeout with `what` (what was waited for) and the last
/// observation.
#[track_caller]
pub fn poll_until<T, O: Debug>(
    what: &str,
    timeout: Duration,
    attempt: impl FnMut() -> Result<T, O>,
) -> T {
    match try_poll(timeout, attempt) {
        Ok(value) => value,
        Err(t) => panic!("waiting for {what}: {t}"),
    }
}

/// [`try_poll`] for async attempts, sleeping on the Tokio timer (call it inside a runtime
/// whose clock is not paused: the deadline is in wall-clock time).
pub async fn try_poll_async<T, O>(
    timeout: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, O>,
) -> Result<T, TimedOut<O>> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(last) => tokio::time::sleep(pause(start, timeout, attempts, last)?).await,
        }
    }
}

/// [`poll_until`] for async attempts (see [`try_poll_async`]).
pub async fn poll_until_async<T, O: Debug>(
    what: &str,
    timeout: Duration,
    attempt: impl AsyncFnMut() -> Result<T, O>,
) -> T {
    match try_poll_async(timeout, attempt).await {
        Ok(value) => value,
        Err(t) => panic!("waiting for {what}: {t}"),
    }
}

/// After a failed attempt: the pause before the next one, or the timeout.
fn pause<O>(
    start: Instant,
    timeout: Duration,
    attempts: u32,
    last: O,
) -> Result<Duration, TimedOut<O>> {
    let waited = start.elapsed();
    if waited >= timeout {
        return Err(TimedOut {
            last,
            attempts,
            waited,
        });
    }
    Ok(INTERVAL.min(timeout - waited))
}

/// An attempt from a value and what it must satisfy: `Ok(value)` when `ok(&value)` holds,
/// else `Err(value)`, the observation.
pub fn accept<V>(value: V, ok: impl FnOnce(&V) -> bool) -> Result<V, V> {
    if ok(&value) { Ok(value) } else { Err(value) }
}
