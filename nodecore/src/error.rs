//! Why the node core refused an operation, and the HTTP status each reason maps to.

/// A refused operation. The message is what the control API returns as `{"error": ...}`;
/// nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Bad input: malformed body, bad name, CIDR, address, MAC or VNI (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// No such network, endpoint or sandbox (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with the current state: a name or address in use, an
    /// endpoint still joined, a full subnet (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The cluster could not answer in time: the owner of the space asked for is not
    /// reachable (HTTP 503). Retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl CoreError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Unavailable(_) => 503,
        }
    }
}
