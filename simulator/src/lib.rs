//! `netsim`: a deterministic discrete-event simulator of the real node core.
//!
//! Thousands of [`nodecore::Stack`]s (foca SWIM + [`networkdb::NetworkDb`] + the node core:
//! the very code the daemon runs, CNM, IPAM and feeds included) live in one process on
//! virtual time. Every datagram, stream message, timer,
//! API call and fault is an event in one queue ordered by `(virtual time, sequence)`; one
//! master seed derives every node's seed and the network's and workload's randomness, so the
//! same [`SimOptions`] give the same run, event for event, and the same final digest. Nothing
//! touches a socket.
//!
//! # Model
//!
//! - **Datagrams** take a latency uniform in `[latency_min, latency_max]` plus `[0, jitter]`,
//!   and may be lost or duplicated; a partition drops them at send time.
//! - **Streams** (the mutual-TLS path) are reliable and ordered per pair of nodes; a
//!   partition at send time, a stopped receiver or a receiver restarted since (connection
//!   reset) drops them. The receiver authenticates the sender's configured name.
//! - **Faults**: symmetric and one-way partitions, crashes, restarts with a higher
//!   incarnation at the same address, graceful leaves, pauses (inputs and timers wait, up to
//!   a socket buffer of datagrams), and a constant clock offset per node.
//! - **Phases**: a fault phase with the workload, then a calm phase with no fault and no
//!   write, after which the checkers run (see [`Violation`]).
//!
//! ```no_run
//! use simulator::{Scenario, SimOptions, Simulation};
//!
//! let options = SimOptions::preset(Scenario::TransientFailure, 20, 7);
//! let report = Simulation::new(options).expect("valid options").run();
//! println!("{report}");
//! assert!(report.passed(), "replay: {}", report.options.replay_command());
//! ```

#![deny(missing_docs)]

mod check;
mod digest;
mod ipam;
mod options;
mod plot;
mod report;
mod scenario;
mod seeds;
mod sim;

pub use ipam::IpamCounters;
pub use options::{
    CrashSpec, LatencyRange, MAX_NODES, OptionsError, PartitionKind, PartitionSpec, PauseSpec,
    SimOptions, WriteMix,
};
pub use plot::spread_svg;
pub use report::{BOUND_FANOUT, BOUND_ROUND, Report, Spread, Traffic, Violation, peak_rss};
pub use scenario::Scenario;
pub use sim::Simulation;

/// Runs `options` to the end and reports.
pub fn run(options: SimOptions) -> Result<Report, OptionsError> {
    Ok(Simulation::new(options)?.run())
}
