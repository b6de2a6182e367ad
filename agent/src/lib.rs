//! `netagent`, the per-host node agent: configuration, the daemon that runs the cluster node
//! on real sockets, the Container Network Model with its control API and command line, the
//! libnetwork-compatible diagnostic API, Prometheus metrics, a cluster PKI helper, and the
//! demo.
//!
//! The binary (`src/main.rs`) is a thin command line over this library, so the end-to-end
//! tests and the simulator use the same parts.

pub mod api;
pub mod balancer;
mod base64;
pub mod cli;
pub mod cni;
pub mod cnm;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod demo;
pub mod diag;
pub mod dns;
pub mod docker;
pub mod engine;
pub mod metrics;
pub mod os_random;
pub mod pki;
mod stable_hash;

/// A client of the running node: closures run inside the node's task on its engine.
pub type NodeClient = cluster::shell::Client<engine::AgentEngine>;
