//! The Docker plugin: libnetwork's remote network driver and remote IPAM driver protocols
//! (HTTP on a unix socket), served by the agent so that dockerd attaches containers to the
//! cluster's networks (`docker network create -d NAME --ipam-driver NAME`). See [`plugin`]
//! for how Docker's objects map to the cluster's, and the README's "With Docker".

pub mod engine_api;
pub mod ipam;
pub mod mapping;
pub mod names;
pub mod network;
pub mod plugin;
pub mod protocol;
pub mod reconcile;
pub mod state;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub use self::plugin::{Plugin, PluginError};
pub use self::stats::PluginStats;
use crate::api::{ApiBindError, ApiListener};
use crate::config::ApiAddr;

/// The plugin's socket: `dir/NAME.sock`, where dockerd finds plugin `NAME`.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Binds the plugin's socket (a stale one, with no process behind it, is replaced).
pub async fn bind(dir: &Path, name: &str) -> Result<ApiListener, ApiBindError> {
    ApiListener::bind(&ApiAddr::Unix(socket_path(dir, name))).await
}

/// The plugin's router: every call is `POST /<Method>` with a JSON body.
pub fn router(plugin: Arc<Plugin>) -> Router {
    Router::new()
        .fallback(call)
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::api::MAX_BODY_BYTES,
        ))
        .with_state(plugin)
}

async fn call(State(plugin): State<Arc<Plugin>>, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/').to_owned();
    let answer = plugin.call(&method, &body).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, protocol::CONTENT_TYPE)],
        answer,
    )
        .into_response()
}
