//! The overlay driver (not built yet).
//!
//! This crate will turn `overlay_peer_table` watch events into neighbour (IP -> MAC) and FDB
//! (MAC -> remote host) entries on a per-network VXLAN device: a pure peer DB and planner that
//! emit `NeighOp`s, an `rtnetlink` executor for the real kernel and a `FakeKernel` for the
//! simulator. See `docs/ARCHITECTURE.md` section "Overlay driver".
