//! Why a control-API operation was refused, and the HTTP status each reason maps to.

use super::store::StoreError;

/// A refused or failed operation of [`Cnm`](super::Cnm). The message is what the API
/// returns as `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CnmError {
    /// Bad input: malformed body, bad name, CIDR, address, MAC or VNI (HTTP 400). Nothing
    /// changed.
    #[error("{0}")]
    Invalid(String),
    /// No such network, endpoint or sandbox (HTTP 404). Nothing changed.
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with the current state: a name or address in use, an
    /// endpoint still joined (HTTP 409). Nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// The cluster could not answer in time (HTTP 503): retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The cluster node has stopped (HTTP 503). Local state is unchanged.
    #[error("the cluster node has stopped")]
    Stopped,
    /// The state file could not be read or written (HTTP 500). (A running agent that cannot
    /// save stops instead: it must not publish what its saved state does not hold.)
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness for a new ID (HTTP 500). Nothing changed.
    #[error("cannot make an ID: {0}")]
    Random(#[from] crate::os_random::RandomError),
}

impl CnmError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Stopped | Self::Unavailable(_) => 503,
            Self::Store(_) | Self::Random(_) => 500,
        }
    }
}

impl From<cluster::shell::Stopped> for CnmError {
    fn from(_: cluster::shell::Stopped) -> Self {
        Self::Stopped
    }
}

impl From<nodecore::CoreError> for CnmError {
    fn from(e: nodecore::CoreError) -> Self {
        match e {
            nodecore::CoreError::Invalid(m) => Self::Invalid(m),
            nodecore::CoreError::NotFound(m) => Self::NotFound(m),
            nodecore::CoreError::Conflict(m) => Self::Conflict(m),
            nodecore::CoreError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Invalid(other.to_string()),
        }
    }
}
