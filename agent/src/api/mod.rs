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

/// The body of every error answer: `{"error": "<message>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, in words.
    pub error: String,
}
