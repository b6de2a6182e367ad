//! Cluster membership and the node core (not built yet).
//!
//! This crate will hold the sans-IO node core that combines SWIM membership (the `foca` crate)
//! with `networkdb` table replication, plus a tokio shell with real UDP/TCP sockets,
//! mutual TLS and an AES-256-GCM keyring. See `docs/ARCHITECTURE.md` section "Cluster".
