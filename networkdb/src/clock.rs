//! Lamport clocks with serf's semantics.

use crate::LTime;

/// A Lamport clock as serf implements it: [`increment`](Self::increment) returns the new
/// value; [`witness`](Self::witness) moves the clock to `v + 1` when `v >= current`.
#[derive(Clone, Debug, Default)]
pub struct LamportClock {
    counter: u64,
}

impl LamportClock {
    /// The current value.
    pub fn time(&self) -> LTime {
        LTime(self.counter)
    }

    /// Adds one and returns the new value.
    pub fn increment(&mut self) -> LTime {
        self.counter = self.counter.saturating_add(1);
        LTime(self.counter)
    }

    /// Records a time seen from another node; the clock never goes back.
    pub fn witness(&mut self, seen: LTime) {
        if seen.0 >= self.counter {
            self.counter = seen.0.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serf_semantics() {
        let mut c = LamportClock::default();
        assert_eq!(c.increment(), LTime(1));
        c.witness(LTime(0));
        assert_eq!(c.time(), LTime(1));
        c.witness(LTime(1));
        assert_eq!(c.time(), LTime(2));
        c.witness(LTime(10));
        assert_eq!(c.time(), LTime(11));
        c.witness(LTime(5));
        assert_eq!(c.time(), LTime(11));
    }
}
