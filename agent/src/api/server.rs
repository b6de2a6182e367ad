//! The control API's HTTP server: routes, error bodies, and the listener (unix socket or
//! TCP).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, UnixListener, UnixStream};

use super::ErrorBody;
use crate::cnm::{
    AttachRequest, AttachmentQuery, Cnm, CnmError, DetachQuery, EndpointCreate, JoinRequest,
    NetworkCreate, SandboxCreate,
};
use crate::config::ApiAddr;

/// The largest request body accepted, in bytes; a larger one gets HTTP 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Mode of the control API's unix socket: owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// The control API could not be bound. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the control API on {addr}: {source}")]
pub struct ApiBindError {
    /// The address.
    pub addr: ApiAddr,
    /// What went wrong.
    pub source: io::Error,
}

/// The control API's router, every route under `/v1`:
///
/// | Method and path | Body | Answer |
/// |---|---|---|
/// | `GET /v1/info` | | [`Info`](crate::cnm::Info) |
/// | `GET /v1/networks` | | [`NetworkSpec`](crate::cnm::NetworkSpec)s, by name |
/// | `POST /v1/networks` | [`NetworkCreate`] | 201, the network |
/// | `GET /v1/networks/{name_or_id}` | | the network (an ID prefix matching one is enough) |
/// | `DELETE /v1/networks/{name_or_id}` | | 204 |
/// | `GET /v1/endpoints[?network=N]` | | [`Endpoint`](crate::cnm::Endpoint)s |
/// | `POST /v1/endpoints` | [`EndpointCreate`] | 201, the endpoint |
/// | `GET /v1/endpoints/{network}/{name}` | | the endpoint |
/// | `DELETE /v1/endpoints/{network}/{name}` | | 204 |
/// | `POST /v1/endpoints/{network}/{name}/join` | [`JoinRequest`] | the endpoint |
/// | `POST /v1/endpoints/{network}/{name}/leave` | | the endpoint |
/// | `POST /v1/endpoints/{network}/{name}/disable` (or `/enable`) | | the endpoint: its service record withdrawn (restored) |
/// | `GET /v1/sandboxes` | | [`SandboxInfo`](crate::cnm::SandboxInfo)s |
/// | `POST /v1/sandboxes` | [`SandboxCreate`] | 201, the sandbox |
/// | `GET /v1/sandboxes/{name}` | | the sandbox |
/// | `DELETE /v1/sandboxes/{name}` | | 204 |
/// | `POST /v1/attachments` | [`AttachRequest`] | the [`Attachment`](crate::cnm::Attachment) (sandbox, endpoint and join in one step; an existing one as it is) |
/// | `GET /v1/attachments/{sandbox}/{network}[?verify=true]` | | the attachment (`verify`: checked against the kernel, 409 if it differs) |
/// | `DELETE /v1/attachments/{sandbox}/{network}[?ifname=I]` | | 204, also when nothing was attached (under that interface name) |
/// | `GET /v1/dns/lookup?name=N&network=NET` (or `&sandbox=S`; `&type=A\|AAAA\|PTR`) | | [`DnsAnswer`](crate::cnm::DnsAnswer) |
/// | `GET /v1/ipam/{network}` | | [`PoolInfo`](crate::cnm::PoolInfo) |
/// | `POST /v1/ipam/reclaim` | [`ReclaimRequest`](crate::cnm::ReclaimRequest) | [`ReclaimAnswer`](crate::cnm::ReclaimAnswer) |
///
/// Every error is JSON [`ErrorBody`] `{"error": "...", "code": "..."}` with 400 (malformed JSON, unknown
/// field, bad name, CIDR, address, MAC or VNI), 404 (no such object or path), 405, 409
/// (conflict), 413 (body over [`MAX_BODY_BYTES`]), 500 (state file) or 503 (node stopped).
/// A refused request changes nothing.
pub fn router(cnm: Arc<Cnm>) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/networks", get(list_networks).post(create_network))
        .route(
            "/v1/networks/{reference}",
            get(get_network).delete(delete_network),
        )
        .route("/v1/endpoints", get(list_endpoints).post(create_endpoint))
        .route(
            "/v1/endpoints/{network}/{name}",
            get(get_endpoint).delete(delete_endpoint),
        )
        .route("/v1/endpoints/{network}/{name}/join", post(join))
        .route("/v1/endpoints/{network}/{name}/leave", post(leave))
        .route("/v1/endpoints/{network}/{name}/disable", post(disable))
        .route("/v1/endpoints/{network}/{name}/enable", post(enable))
        .route("/v1/sandboxes", get(list_sandboxes).post(create_sandbox))
        .route("/v1/attachments", post(attach))
        .route(
            "/v1/attachments/{sandbox}/{network}",
            get(get_attachment).delete(detach),
        )
        .route("/v1/dns/lookup", get(dns_lookup))
        .route("/v1/ipam/reclaim", post(reclaim))
        .route("/v1/ipam/{network}", get(get_pool))
        .route(
            "/v1/sandboxes/{name}",
            get(get_sandbox).delete(delete_sandbox),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "page not found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(cnm)
}

/// A bound control-API listener.
#[derive(Debug)]
pub enum ApiListener {
    /// A unix socket; the file is removed by [`remove_socket`] when the agent stops.
    Unix {
        /// The listener.
        listener: UnixListener,
        /// The socket's path.
        path: PathBuf,
    },
    /// A TCP listener.
    Tcp {
        /// The listener.
        listener: TcpListener,
        /// Its address (with the port the system chose).
        addr: std::net::SocketAddr,
    },
}

impl ApiListener {
    /// Binds `addr`. For a unix socket: creates the parent directory, removes a stale socket
    /// file (only a socket, and only if no process answers on it), binds, and sets the mode to
    /// [`SOCKET_MODE`].
    pub async fn bind(addr: &ApiAddr) -> Result<Self, ApiBindError> {
        let err = |source| ApiBindError {
            addr: addr.clone(),
            source,
        };
        match addr {
            ApiAddr::Tcp(sock) => {
                let listener = TcpListener::bind(sock).await.map_err(err)?;
                let addr = listener.local_addr().map_err(err)?;
                Ok(Self::Tcp { listener, addr })
            }
            ApiAddr::Unix(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(err)?;
                }
                remove_stale_socket(path).await.map_err(err)?;
                let listener = UnixListener::bind(path).map_err(err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
                    .map_err(err)?;
                Ok(Self::Unix {
                    listener,
                    path: path.clone(),
                })
            }
        }
    }

    /// Where it listens (for TCP, with the port the system chose).
    pub fn local_addr(&self) -> ApiAddr {
        match self {
            Self::Unix { path, .. } => ApiAddr::Unix(path.clone()),
            Self::Tcp { addr, .. } => ApiAddr::Tcp(*addr),
        }
    }

    /// Serves `router` until the task is dropped or the listener fails.
    pub async fn serve(self, router: Router) -> io::Result<()> {
        match self {
            Self::Unix { listener, .. } => axum::serve(listener, router).await,
            Self::Tcp { listener, .. } => axum::serve(listener, router).await,
        }
    }
}

/// Removes the socket file of a unix [`ApiAddr`], if it is a socket.
pub fn remove_socket(addr: &ApiAddr) {
    if let ApiAddr::Unix(path) = addr
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
    {
        let _ = std::fs::remove_file(path);
    }
}

async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is serving this socket",
        ));
    }
    std::fs::remove_file(path)
}

// ---- handlers -----------------------------------------------------------------------------

type Shared = State<Arc<Cnm>>;

async fn info(State(cnm): Shared) -> Response {
    reply(StatusCode::OK, cnm.info().await)
}

async fn list_networks(State(cnm): Shared) -> Response {
    reply(StatusCode::OK, cnm.networks().await)
}

async fn create_network(State(cnm): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<NetworkCreate>(body) {
        Ok(req) => reply(
            StatusCode::CREATED,
            to_end(async move { cnm.create_network(req).await }).await,
        ),
        Err(e) => e.into_response(),
    }
}

async fn get_network(State(cnm): Shared, path: Result<UrlPath<String>, PathRejection>) -> Response {
    match path {
        Ok(UrlPath(reference)) => reply(StatusCode::OK, cnm.network(&reference).await),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn delete_network(
    State(cnm): Shared,
    path: Result<UrlPath<String>, PathRejection>,
) -> Response {
    match path {
        Ok(UrlPath(reference)) => {
            no_content(to_end(async move { cnm.remove_network(&reference).await }).await)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The query of `GET /v1/endpoints`.
#[derive(Debug, Deserialize)]
struct EndpointQuery {
    network: Option<String>,
}

async fn list_endpoints(
    State(cnm): Shared,
    query: Result<Query<EndpointQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => reply(StatusCode::OK, cnm.endpoints(q.network.as_deref()).await),
        Err(e) => ApiError::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

async fn dns_lookup(
    State(cnm): Shared,
    query: Result<Query<crate::cnm::DnsQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => reply(StatusCode::OK, cnm.dns_lookup(q).await),
        Err(e) => ApiError::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

async fn get_pool(State(cnm): Shared, path: Result<UrlPath<String>, PathRejection>) -> Response {
    match path {
        Ok(UrlPath(network)) => reply(StatusCode::OK, cnm.pool(&network).await),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn reclaim(State(cnm): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<crate::cnm::ReclaimRequest>(body) {
        Ok(req) => reply(
            StatusCode::OK,
            to_end(async move { cnm.reclaim(req).await }).await,
        ),
        Err(e) => e.into_response(),
    }
}

async fn create_endpoint(State(cnm): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<EndpointCreate>(body) {
        Ok(req) => reply(
            StatusCode::CREATED,
            to_end(async move { cnm.create_endpoint(req).await }).await,
        ),
        Err(e) => e.into_response(),
    }
}

type EndpointPath = Result<UrlPath<(String, String)>, PathRejection>;

async fn get_endpoint(State(cnm): Shared, path: EndpointPath) -> Response {
    match path {
        Ok(UrlPath((network, name))) => reply(StatusCode::OK, cnm.endpoint(&network, &name).await),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn delete_endpoint(State(cnm): Shared, path: EndpointPath) -> Response {
    match path {
        Ok(UrlPath((network, name))) => {
            no_content(to_end(async move { cnm.remove_endpoint(&network, &name).await }).await)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn join(
    State(cnm): Shared,
    path: EndpointPath,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let UrlPath((network, name)) = match path {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match parse::<JoinRequest>(body) {
        Ok(req) => reply(
            StatusCode::OK,
            to_end(async move { cnm.join_sandbox(&network, &name, req).await.map(|(e, _)| e) })
                .await,
        ),
        Err(e) => e.into_response(),
    }
}

async fn leave(State(cnm): Shared, path: EndpointPath) -> Response {
    match path {
        Ok(UrlPath((network, name))) => reply(
            StatusCode::OK,
            to_end(async move { cnm.leave(&network, &name).await }).await,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn disable(State(cnm): Shared, path: EndpointPath) -> Response {
    set_service_enabled(cnm, path, false).await
}

async fn enable(State(cnm): Shared, path: EndpointPath) -> Response {
    set_service_enabled(cnm, path, true).await
}

async fn set_service_enabled(cnm: Arc<Cnm>, path: EndpointPath, enabled: bool) -> Response {
    match path {
        Ok(UrlPath((network, name))) => reply(
            StatusCode::OK,
            to_end(async move { cnm.set_service_enabled(&network, &name, enabled).await }).await,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn list_sandboxes(State(cnm): Shared) -> Response {
    reply(StatusCode::OK, cnm.sandboxes().await)
}

async fn create_sandbox(State(cnm): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<SandboxCreate>(body) {
        Ok(req) => reply(
            StatusCode::CREATED,
            to_end(async move { cnm.create_sandbox(req).await }).await,
        ),
        Err(e) => e.into_response(),
    }
}

async fn get_sandbox(State(cnm): Shared, path: Result<UrlPath<String>, PathRejection>) -> Response {
    match path {
        Ok(UrlPath(name)) => reply(StatusCode::OK, cnm.sandbox(&name).await),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn delete_sandbox(
    State(cnm): Shared,
    path: Result<UrlPath<String>, PathRejection>,
) -> Response {
    match path {
        Ok(UrlPath(name)) => {
            no_content(to_end(async move { cnm.remove_sandbox(&name).await }).await)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn attach(State(cnm): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<AttachRequest>(body) {
        Ok(req) => reply(
            StatusCode::OK,
            to_end(async move { cnm.attach(req).await }).await,
        ),
        Err(e) => e.into_response(),
    }
}

type AttachmentPath = Result<UrlPath<(String, String)>, PathRejection>;

async fn get_attachment(
    State(cnm): Shared,
    path: AttachmentPath,
    query: Result<Query<AttachmentQuery>, QueryRejection>,
) -> Response {
    let UrlPath((sandbox, network)) = match path {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match query {
        Ok(Query(q)) => reply(StatusCode::OK, cnm.attachment(&sandbox, &network, q).await),
        Err(e) => ApiError::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

async fn detach(
    State(cnm): Shared,
    path: AttachmentPath,
    query: Result<Query<DetachQuery>, QueryRejection>,
) -> Response {
    let UrlPath((sandbox, network)) = match path {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match query {
        Ok(Query(q)) => no_content(
            to_end(async move { cnm.detach(&sandbox, &network, q.ifname.as_deref()).await }).await,
        ),
        Err(e) => ApiError::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

// ---- helpers ------------------------------------------------------------------------------

/// An error response: a status and `{"error": message, "code": code}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A request the API itself refuses (unroutable or unreadable), coded by its status.
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            _ => "invalid",
        };
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<CnmError> for ApiError {
    fn from(e: CnmError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, "control API request failed");
        }
        Self {
            status,
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: Some(self.code.to_owned()),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// Runs a mutation to its end even if the client goes away: hyper drops a handler's future
/// when the connection closes, which would stop a mutation between its NetworkDB write and
/// its `cnm.json` commit. A spawned task is not dropped with the request.
async fn to_end<T, F>(mutation: F) -> Result<T, CnmError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, CnmError>> + Send + 'static,
{
    tokio::spawn(mutation)
        .await
        .unwrap_or(Err(CnmError::Stopped))
}

fn reply<T: serde::Serialize>(status: StatusCode, result: Result<T, CnmError>) -> Response {
    match result {
        Ok(value) => (status, axum::Json(value)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn no_content<T>(result: Result<T, CnmError>) -> Response {
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}
