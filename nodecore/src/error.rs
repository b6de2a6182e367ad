//! Why the node core refused an operation, and the HTTP status each reason maps to.

/// A refused operation. The message is what the control API returns as `{"error": ...}`,
/// with [`code`](Self::code) as `"code"`; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Bad input: malformed body, bad name, CIDR, address, MAC or VNI (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// No such endpoint or sandbox (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// No network of that name, ID or ID prefix (HTTP 404).
    #[error("{0}")]
    NoSuchNetwork(String),
    /// The operation conflicts with the current state: a name in use, an endpoint still
    /// joined, an overlapping subnet (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The address asked for is held by another endpoint, a reservation or a service's VIP
    /// (HTTP 409).
    #[error("{0}")]
    AddressInUse(String),
    /// The network has no free address this node can claim (HTTP 409).
    #[error("{0}")]
    PoolExhausted(String),
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
            Self::NotFound(_) | Self::NoSuchNetwork(_) => 404,
            Self::Conflict(_) | Self::AddressInUse(_) | Self::PoolExhausted(_) => 409,
            Self::Unavailable(_) => 503,
        }
    }

    /// The reason, for programs: `invalid`, `not_found`, `no_such_network`, `conflict`,
    /// `address_in_use`, `pool_exhausted` or `unavailable` (stable; the control API's
    /// `"code"`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::NotFound(_) => "not_found",
            Self::NoSuchNetwork(_) => "no_such_network",
            Self::Conflict(_) => "conflict",
            Self::AddressInUse(_) => "address_in_use",
            Self::PoolExhausted(_) => "pool_exhausted",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Whether something asked for does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.status() == 404
    }

    /// Whether the state refused the operation (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        self.status() == 409
    }
}
