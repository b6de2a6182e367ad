//! The deterministic multi-node simulator `netsim` (not built yet).
//!
//! This crate will run thousands of real node cores in one process on virtual time, with a
//! seeded RNG and injected faults (loss, latency, partitions, crashes, restarts), and check
//! after a calm phase that every run converged. See `docs/ARCHITECTURE.md` section "Simulator".
