//! The control API: HTTP/JSON over a unix socket (default) or TCP, serving the Container
//! Network Model of [`crate::cnm`], and its typed client, which the `netagent network`,
//! `endpoint`, `sandbox` and `info` commands ([`crate::cli`]) use.
//!
//! The routes are listed on [`router`]. Request and answer bodies are the types of
//! [`crate::cnm`] in JSON; every error is an [`ErrorBody`] with a 4xx or 5xx status, and a
//! refused request changes nothing.

mod client;
mod server;

use serde::{Deserialize, Serialize};

pub use self::client::{ApiClient, ClientError, DEFAULT_TIMEOUT};
pub use self::server::{
    ApiBindError, ApiListener, MAX_BODY_BYTES, SOCKET_MODE, remove_socket, router,
};

/// The body of every error answer: `{"error": "<message>", "code": "<reason>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, in words.
    pub error: String,
    /// Why, for programs: a refusal's [`CoreError::code`](nodecore::CoreError::code)
    /// (`no_such_network`, `address_in_use`, `pool_exhausted`, ...), or for a request the
    /// API could not route or read, `invalid`, `not_found` or `method_not_allowed`. Absent
    /// in answers of agents older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}
