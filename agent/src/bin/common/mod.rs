//! What the benchmark binaries share.

pub(crate) mod pair;
