//! The libnetwork-compatible diagnostic HTTP API.
//!
//! [`router`] serves the paths, parameters and bodies of libnetwork's diagnostic server
//! (`diagnostic/server.go`, `networkdb/networkdbdiagnostic.go` and the dbserver test
//! client), so that libnetwork's `dbclient` test driver and `diagnosticClient` work against
//! this agent unchanged:
//!
//! * every response is HTTP 200, whatever the method and even for errors;
//! * parameters come from the query string and from a urlencoded POST body (body first; the
//!   first value of a key wins); `json` (any value) asks for JSON, `json=pretty` indents it
//!   by two spaces, `unsafe` means values are raw instead of base64;
//! * text bodies are `message` then `\n` and the details, without a trailing newline unless
//!   the details end in one; JSON bodies are `{"message":…,"details":…}`;
//! * any path not in [`PATHS`] (and `/` itself) answers "not implemented".
//!
//! Node names are NetworkDB names (`name@incarnation`), IPs are the peers' addresses.
//! Listings are sorted by name or key (Go's come in random map order).
//!
//! `/watchtable` registers a NetworkDB watch through the node's [`Client`](cluster::shell::Client); its events reach
//! this module only through [`DiagState::on_watch_event`], which the daemon must call for
//! every watch event the shell delivers (`Handle::take_events`).

mod endpoints;
mod form;
mod reply;
mod stackdump;
mod watch;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use networkdb::WatchEvent;

use self::form::{Form, MAX_FORM_BYTES};
use self::watch::Watched;

/// Every path the router registers, as `/help` lists them (one per line).
pub const PATHS: &[&str] = &[
    "/",
    "/help",
    "/ready",
    "/stackdump",
    "/join",
    "/networkpeers",
    "/clusterpeers",
    "/joinnetwork",
    "/leavenetwork",
    "/createentry",
    "/updateentry",
    "/deleteentry",
    "/getentry",
    "/gettable",
    "/networkstats",
    "/myip",
    "/watchtable",
    "/watchedtableentries",
];

/// The most bytes of a response body written to the request log.
const LOGGED_BODY_BYTES: usize = 300;

/// The diagnostic server's state: the node's client, this host's IP, and the watched tables.
/// Cheap to clone; clones share the watched tables.
#[derive(Clone, Debug)]
pub struct DiagState {
    inner: Arc<Inner>,
}

/// Runs a closure on the node inside its task.
type NodeFn = Box<dyn FnOnce(&mut cluster::Node, std::time::Instant) + Send>;
type RunFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), cluster::shell::Stopped>> + Send>,
>;
type NodeRunner = Arc<dyn Fn(NodeFn) -> RunFuture + Send + Sync>;

struct Inner {
    run: NodeRunner,
    my_ip: IpAddr,
    default_port: u16,
    watched: Mutex<Watched>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("my_ip", &self.my_ip)
            .field("default_port", &self.default_port)
            .finish_non_exhaustive()
    }
}

impl DiagState {
    /// State for a server in front of the node reached by `client`. `my_ip` is what `/myip`
    /// answers; `default_port` is the gossip port `/join` assumes for a member given without
    /// one (libnetwork: the bind port, 7946).
    pub fn new<E: cluster::Engine>(
        client: cluster::shell::Client<E>,
        my_ip: IpAddr,
        default_port: u16,
    ) -> Self {
        let run: NodeRunner = Arc::new(move |f: NodeFn| {
            let client = client.clone();
            Box::pin(async move { client.with_node(f).await })
        });
        Self {
            inner: Arc::new(Inner {
                run,
                my_ip,
                default_port,
                watched: Mutex::new(Watched::default()),
            }),
        }
    }

    /// Feeds a watch event from the node. The daemon must call this for every event the
    /// shell delivers; events of tables not watched through `/watchtable` are ignored.
    /// A create or an update stores the value under its key, a delete removes the key.
    pub fn on_watch_event(&self, ev: &WatchEvent) {
        self.watched().apply(ev);
    }

    fn watched(&self) -> MutexGuard<'_, Watched> {
        lock(&self.inner.watched)
    }
}

/// The diagnostic router: every path of [`PATHS`] with any method, and "not implemented"
/// for any other path. More routes (e.g. `/metrics`) can be added to it.
pub fn router(state: DiagState) -> Router {
    let mut router = Router::new();
    for endpoint in Endpoint::ALL {
        router = router.route(
            endpoint.path(),
            any(move |State(state): State<DiagState>, req: Request| serve(state, endpoint, req)),
        );
    }
    router
        .fallback(|State(state): State<DiagState>, req: Request| serve(state, Endpoint::Root, req))
        .with_state(state)
}

/// The registered endpoints, in [`PATHS`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Root,
    Help,
    Ready,
    Stackdump,
    Join,
    NetworkPeers,
    ClusterPeers,
    JoinNetwork,
    LeaveNetwork,
    CreateEntry,
    UpdateEntry,
    DeleteEntry,
    GetEntry,
    GetTable,
    NetworkStats,
    MyIp,
    WatchTable,
    WatchedTableEntries,
}

impl Endpoint {
    const ALL: [Endpoint; 18] = [
        Endpoint::Root,
        Endpoint::Help,
        Endpoint::Ready,
        Endpoint::Stackdump,
        Endpoint::Join,
        Endpoint::NetworkPeers,
        Endpoint::ClusterPeers,
        Endpoint::JoinNetwork,
        Endpoint::LeaveNetwork,
        Endpoint::CreateEntry,
        Endpoint::UpdateEntry,
        Endpoint::DeleteEntry,
        Endpoint::GetEntry,
        Endpoint::GetTable,
        Endpoint::NetworkStats,
        Endpoint::MyIp,
        Endpoint::WatchTable,
        Endpoint::WatchedTableEntries,
    ];

    fn path(self) -> &'static str {
        match self {
            Endpoint::Root => "/",
            Endpoint::Help => "/help",
            Endpoint::Ready => "/ready",
            Endpoint::Stackdump => "/stackdump",
            Endpoint::Join => "/join",
            Endpoint::NetworkPeers => "/networkpeers",
            Endpoint::ClusterPeers => "/clusterpeers",
            Endpoint::JoinNetwork => "/joinnetwork",
            Endpoint::LeaveNetwork => "/leavenetwork",
            Endpoint::CreateEntry => "/createentry",
            Endpoint::UpdateEntry => "/updateentry",
            Endpoint::DeleteEntry => "/deleteentry",
            Endpoint::GetEntry => "/getentry",
            Endpoint::GetTable => "/gettable",
            Endpoint::NetworkStats => "/networkstats",
            Endpoint::MyIp => "/myip",
            Endpoint::WatchTable => "/watchtable",
            Endpoint::WatchedTableEntries => "/watchedtableentries",
        }
    }
}

/// A rendered answer.
#[derive(Debug)]
struct Answer {
    json: bool,
    body: Vec<u8>,
}

impl Answer {
    fn text(body: impl Into<Vec<u8>>) -> Self {
        Self {
            json: false,
            body: body.into(),
        }
    }
}

/// Parses the parameters, runs the endpoint, logs and answers (always 200).
async fn serve(state: DiagState, endpoint: Endpoint, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let content_type = parts.headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
    let body = if form::is_form_body(&parts.method, content_type) {
        axum::body::to_bytes(body, MAX_FORM_BYTES).await.ok()
    } else {
        None
    };
    let form = Form::parse(parts.uri.query(), body.as_deref());
    let path = form::decode_path(parts.uri.path());
    let answer = state.answer(endpoint, &path, &form).await;
    tracing::info!(
        method = %parts.method,
        path = %path,
        query = parts.uri.query().unwrap_or_default(),
        response = %reply::snippet(&answer.body, LOGGED_BODY_BYTES),
        "diagnostic request"
    );
    let content_type = if answer.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    ([(CONTENT_TYPE, content_type)], Body::from(answer.body)).into_response()
}

/// Locks the watched tables; a panic elsewhere cannot leave them inconsistent (every update
/// is a single map operation), so a poisoned lock is used as is.
fn lock(watched: &Mutex<Watched>) -> MutexGuard<'_, Watched> {
    watched.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_endpoints() {
        let paths: Vec<&str> = Endpoint::ALL.iter().map(|e| e.path()).collect();
        assert_eq!(paths, PATHS);
    }
}
