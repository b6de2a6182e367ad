//! The core's periodic timers, kept as data.

use std::time::Instant;

/// A periodic task of the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    Gossip,
    BulkSync,
    PushPull,
    Reap,
    Reconnect,
    Rejoin,
}

impl Timer {
    pub(crate) const ALL: [Timer; 6] = [
        Timer::Gossip,
        Timer::BulkSync,
        Timer::PushPull,
        Timer::Reap,
        Timer::Reconnect,
        Timer::Rejoin,
    ];
}

/// Deadlines, one per [`Timer`].
#[derive(Clone, Debug)]
pub(crate) struct TimerTable {
    deadlines: [Instant; 6],
}

impl TimerTable {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            deadlines: [now; 6],
        }
    }

    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = at;
    }

    pub(crate) fn get(&self, timer: Timer) -> Instant {
        self.deadlines[timer as usize]
    }

    pub(crate) fn next(&self) -> Instant {
        self.deadlines
            .iter()
            .copied()
            .min()
            .unwrap_or_else(|| self.deadlines[0])
    }
}
