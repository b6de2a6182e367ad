//! Cross-crate and end-to-end tests.
//!
//! Property tests that drive the simulator, and end-to-end tests with real `netagent` processes
//! and real network namespaces, live here as the crates they exercise are built.
