//! Why a control-API operation was refused, and the HTTP status each reason maps to.

use nodecore::CoreError;

/// A refused or failed operation of [`Cnm`](super::Cnm). The message is what the API
/// returns as `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CnmError {
    /// Refused by the node core, or by the overlay driver as a conflict: bad input (HTTP
    /// 400), no such object (404), a conflict with the current state (409), no answer from
    /// the cluster in time (503). Nothing changed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The cluster node has stopped (HTTP 503). Local state is unchanged.
    #[error("the cluster node has stopped")]
    Stopped,
}

impl CnmError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Core(e) => e.status(),
            Self::Stopped => 503,
        }
    }

    /// The reason, for programs ([`CoreError::code`]; `unavailable` while stopping).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Core(e) => e.code(),
            Self::Stopped => "unavailable",
        }
    }
}

impl From<cluster::shell::Stopped> for CnmError {
    fn from(_: cluster::shell::Stopped) -> Self {
        Self::Stopped
    }
}
