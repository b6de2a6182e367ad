//! The Docker plugin's protocol against an in-process agent, with a stand-in for dockerd's
//! API (names of networks): activation, the IPAM driver's pools and addresses (gateway,
//! auxiliary addresses, `--ip`, taken addresses), a Docker network mapped to the cluster
//! network of its name (and refused when the name has another subnet), endpoints, and bad
//! input (malformed bodies, unknown methods, networks and endpoints) answered with a clear
//! error that changes nothing; the mapping survives a restart, and the socket goes with the
//! agent. Joins need the kernel and a real dockerd: `docker_e2e`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failure")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::api::ApiClient;
use agent::cnm::NetworkCreate;
use agent::config::AgentConfig;
use agent::daemon::Daemon;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};

mod common;
use common::poll::{accept, poll_until_async};
use common::scratch;

const PATIENCE: Duration = Duration::from_secs(20);

/// dockerd's API as far as the plugin asks it: network ID -> (name, subnet).
type Networks = Arc<Mutex<BTreeMap<String, (String, String)>>>;

async fn fake_network(
    State(networks): State<Networks>,
    UrlPath((_, id)): UrlPath<(String, String)>,
) -> Response {
    let known = networks.lock().unwrap().get(&id).cloned();
    match known {
        Some((name, subnet)) => axum::Json(json!({
            "Name": name,
            "Id": id,
            "Driver": "netctl",
            "IPAM": {"Driver": "netctl", "Config": [{"Subnet": subnet}]},
            "Containers": {},
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "network not found"})),
        )
            .into_response(),
    }
}

/// The stand-in dockerd knows network `id` as `name` with `subnet` from now on.
fn docker_knows(networks: &Networks, id: &str, name: &str, subnet: &str) {
    networks
        .lock()
        .unwrap()
        .insert(id.into(), (name.into(), subnet.into()));
}

/// Serves the stand-in at `path` until the task is dropped.
fn fake_dockerd(path: &Path, networks: Networks) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    let app = Router::new()
        .route("/{version}/networks/{id}", axum::routing::get(fake_network))
        .with_state(networks);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// `POST /<method>` on the plugin's socket; the JSON answer.
async fn call(socket: &Path, method: &str, body: &str) -> Value {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::builder()
        .method("POST")
        .uri(format!("/{method}"))
        .header("host", "plugin")
        .header("content-type", "application/vnd.docker.plugins.v1.2+json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "{method}");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{method}: {e}: {bytes:?}"))
}

/// The error of an answer (`Err`, the network driver's field; `Error`, the IPAM driver's).
fn error(answer: &Value) -> String {
    let err = answer["Err"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        answer["Error"].as_str().unwrap_or_default(),
        err,
        "both fields say the same"
    );
    err
}

fn assert_refused(answer: &Value, needle: &str) {
    let err = error(answer);
    assert!(
        err.contains(needle),
        "expected an error with {needle:?}: {answer}"
    );
}

fn assert_ok(answer: &Value) {
    assert_eq!(error(answer), "", "{answer}");
}

async fn start(dir: &Path) -> (Daemon, ApiClient, PathBuf) {
    let mut config = AgentConfig::local("dk1", dir.join("state"));
    config.fast_failure_detection = true;
    config.docker_plugin = Some("netctl".into());
    config.docker_plugin_dir = dir.join("plugins");
    config.docker_api = dir.join("docker.sock");
    let daemon = common::start_daemon(&config).await;
    let api = ApiClient::new(daemon.api_addr().clone());
    (daemon, api, dir.join("plugins").join("netctl.sock"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_protocol_maps_docker_networks_and_refuses_bad_input_clearly() {
    let dir = scratch("docker-plugin", "main");
    let networks: Networks = Arc::default();
    let _dockerd = fake_dockerd(&dir.join("docker.sock"), Arc::clone(&networks));
    let (daemon, api, socket) = start(&dir).await;

    // Activation and capabilities.
    let a = call(&socket, "Plugin.Activate", "").await;
    assert_eq!(a["Implements"], json!(["NetworkDriver", "IpamDriver"]));
    let c = call(&socket, "NetworkDriver.GetCapabilities", "{}").await;
    assert_eq!(c["Scope"], "local");
    assert_eq!(c["ConnectivityScope"], "global");
    assert_ok(&call(&socket, "IpamDriver.GetDefaultAddressSpaces", "{}").await);

    // Bad input: a clear error, nothing changed.
    assert_refused(
        &call(&socket, "NetworkDriver.Join", "{not json").await,
        "invalid NetworkDriver.Join request",
    );
    assert_refused(
        &call(&socket, "NetworkDriver.Frobnicate", "{}").await,
        "unknown method",
    );
    let pool = |p: &str| {
        format!(r#"{{"AddressSpace":"l","Pool":"{p}","SubPool":"","Options":{{}},"V6":false}}"#)
    };
    assert_refused(
        &call(
            &socket,
            "IpamDriver.RequestPool",
            r#"{"Pool":"fd00::/64","V6":true}"#,
        )
        .await,
        "IPv6",
    );
    assert_refused(
        &call(&socket, "IpamDriver.RequestPool", &pool("")).await,
        "give the network's subnet",
    );
    assert_refused(
        &call(&socket, "IpamDriver.RequestPool", &pool("198.18.110.7/24")).await,
        "it should be 198.18.110.0/24",
    );
    assert_refused(
        &call(
            &socket,
            "IpamDriver.RequestPool",
            r#"{"Pool":"198.18.110.0/24","SubPool":"198.18.110.0/25"}"#,
        )
        .await,
        "--ip-range",
    );

    // A pool, its gateway and an auxiliary address, then the network.
    let p = call(&socket, "IpamDriver.RequestPool", &pool("198.18.110.0/24")).await;
    assert_ok(&p);
    assert_eq!(p["PoolID"], "198.18.110.0/24");
    assert_refused(
        &call(&socket, "IpamDriver.RequestPool", &pool("198.18.110.0/24")).await,
        "used by another Docker network on this host",
    );
    let gw = r#"{"PoolID":"198.18.110.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#;
    assert_eq!(
        call(&socket, "IpamDriver.RequestAddress", gw).await["Address"],
        "198.18.110.1/24"
    );
    let bad_gw = r#"{"PoolID":"198.18.110.0/24","Address":"198.18.110.5","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#;
    assert_refused(
        &call(&socket, "IpamDriver.RequestAddress", bad_gw).await,
        "first address",
    );
    let aux = r#"{"PoolID":"198.18.110.0/24","Address":"198.18.110.250","Options":null}"#;
    assert_eq!(
        call(&socket, "IpamDriver.RequestAddress", aux).await["Address"],
        "198.18.110.250/24"
    );
    docker_knows(&networks, "d1", "dnet", "198.18.110.0/24");
    let create = r#"{"NetworkID":"d1","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{}},
        "IPv4Data":[{"AddressSpace":"l","AuxAddresses":{"a":"198.18.110.250/24"},"Gateway":"198.18.110.1/24","Pool":"198.18.110.0/24"}],"IPv6Data":[]}"#;
    assert_ok(&call(&socket, "NetworkDriver.CreateNetwork", create).await);
    // The cluster network of that name is created, from the name dockerd tells.
    let spec = poll_until_async("the cluster network", PATIENCE, async || {
        let list = api.networks().await.unwrap();
        accept(list.into_iter().find(|n| n.name == "dnet"), Option::is_some)
    })
    .await
    .unwrap();
    assert_eq!(spec.subnet.to_string(), "198.18.110.0/24");

    // Addresses: any (never the gateway or the auxiliary one), a given one, a taken one.
    let any = r#"{"PoolID":"198.18.110.0/24","Address":"","Options":null}"#;
    let first = call(&socket, "IpamDriver.RequestAddress", any).await;
    assert_ok(&first);
    let first = first["Address"].as_str().unwrap().to_owned();
    assert!(
        first.starts_with("198.18.110.") && first.ends_with("/24"),
        "{first}"
    );
    assert!(!["198.18.110.1/24", "198.18.110.250/24"].contains(&first.as_str()));
    let given = r#"{"PoolID":"198.18.110.0/24","Address":"198.18.110.77","Options":null}"#;
    assert_eq!(
        call(&socket, "IpamDriver.RequestAddress", given).await["Address"],
        "198.18.110.77/24"
    );
    assert_refused(
        &call(&socket, "IpamDriver.RequestAddress", given).await,
        "Address already in use",
    );
    assert_refused(
        &call(&socket, "IpamDriver.RequestAddress", aux).await,
        "Address already in use",
    );

    // Endpoints.
    let ep = |net: &str, id: &str, addr: &str| {
        format!(
            r#"{{"NetworkID":"{net}","EndpointID":"{id}","Interface":{{"Address":"{addr}","AddressIPv6":"","MacAddress":""}},"Options":{{}}}}"#
        )
    };
    let e = call(
        &socket,
        "NetworkDriver.CreateEndpoint",
        &ep("d1", "e1", "198.18.110.77/24"),
    )
    .await;
    assert_ok(&e);
    assert_eq!(e["Interface"]["MacAddress"], "02:42:c6:12:6e:4d");
    assert_refused(
        &call(
            &socket,
            "NetworkDriver.CreateEndpoint",
            &ep("nope", "e2", "198.18.110.9/24"),
        )
        .await,
        "unknown network ID nope",
    );
    // An ID that could not be dockerd's is refused before it goes anywhere.
    assert_refused(
        &call(
            &socket,
            "NetworkDriver.CreateEndpoint",
            &ep("../../containers", "e2", "198.18.110.9/24"),
        )
        .await,
        "invalid network ID",
    );
    assert_refused(
        &call(
            &socket,
            "NetworkDriver.Join",
            r#"{"NetworkID":"d1","EndpointID":"e9","SandboxKey":"/var/run/docker/netns/x","Options":{}}"#,
        )
        .await,
        "unknown endpoint e9",
    );
    assert_ok(
        &call(
            &socket,
            "NetworkDriver.EndpointOperInfo",
            r#"{"NetworkID":"d1","EndpointID":"e1"}"#,
        )
        .await,
    );
    assert_ok(
        &call(
            &socket,
            "NetworkDriver.DeleteEndpoint",
            r#"{"NetworkID":"d1","EndpointID":"e1"}"#,
        )
        .await,
    );
    // Released, an address can be had again.
    let release = r#"{"PoolID":"198.18.110.0/24","Address":"198.18.110.77"}"#;
    assert_ok(&call(&socket, "IpamDriver.ReleaseAddress", release).await);
    assert_eq!(
        call(&socket, "IpamDriver.RequestAddress", given).await["Address"],
        "198.18.110.77/24"
    );

    // Another subnet under a name the cluster has: refused, saying what to do.
    api.create_network(&NetworkCreate {
        name: "other".into(),
        subnet: "198.18.111.0/24".into(),
        ..NetworkCreate::default()
    })
    .await
    .unwrap();
    docker_knows(&networks, "d2", "other", "198.18.112.0/24");
    assert_ok(&call(&socket, "IpamDriver.RequestPool", &pool("198.18.112.0/24")).await);
    let create2 =
        r#"{"NetworkID":"d2","IPv4Data":[{"Pool":"198.18.112.0/24","Gateway":"198.18.112.1/24"}]}"#;
    assert_ok(&call(&socket, "NetworkDriver.CreateNetwork", create2).await);
    let any2 = r#"{"PoolID":"198.18.112.0/24","Address":"","Options":null}"#;
    assert_refused(
        &call(&socket, "IpamDriver.RequestAddress", any2).await,
        "network other exists in the cluster with subnet 198.18.111.0/24",
    );

    // A dockerd that deletes a network before it releases its auxiliary addresses (older
    // versions do) leaves nothing reserved: the address is free for the next network.
    docker_knows(&networks, "d3", "auxnet", "198.18.113.0/24");
    assert_ok(&call(&socket, "IpamDriver.RequestPool", &pool("198.18.113.0/24")).await);
    let aux3 = r#"{"PoolID":"198.18.113.0/24","Address":"198.18.113.250","Options":null}"#;
    assert_ok(&call(&socket, "IpamDriver.RequestAddress", aux3).await);
    let create3 = r#"{"NetworkID":"d3","IPv4Data":[{"Pool":"198.18.113.0/24","Gateway":"198.18.113.1/24","AuxAddresses":{"a":"198.18.113.250/24"}}]}"#;
    assert_ok(&call(&socket, "NetworkDriver.CreateNetwork", create3).await);
    poll_until_async(
        "auxnet mapped, its auxiliary address held",
        PATIENCE,
        async || {
            accept(
                call(&socket, "IpamDriver.RequestAddress", aux3).await,
                |a| error(a).contains("Address already in use"),
            )
        },
    )
    .await;
    assert_ok(
        &call(
            &socket,
            "NetworkDriver.DeleteNetwork",
            r#"{"NetworkID":"d3"}"#,
        )
        .await,
    );
    assert_ok(
        &call(
            &socket,
            "IpamDriver.ReleasePool",
            r#"{"PoolID":"198.18.113.0/24"}"#,
        )
        .await,
    );
    docker_knows(&networks, "d4", "auxnet", "198.18.113.0/24");
    assert_ok(&call(&socket, "IpamDriver.RequestPool", &pool("198.18.113.0/24")).await);
    let create4 =
        r#"{"NetworkID":"d4","IPv4Data":[{"Pool":"198.18.113.0/24","Gateway":"198.18.113.1/24"}]}"#;
    assert_ok(&call(&socket, "NetworkDriver.CreateNetwork", create4).await);
    assert_eq!(
        call(&socket, "IpamDriver.RequestAddress", aux3).await["Address"],
        "198.18.113.250/24"
    );

    // Every call is counted by method and outcome; unknown methods share one series.
    let diag = daemon.diag_addr();
    let metrics = tokio::task::spawn_blocking(move || {
        common::try_http(diag, "GET", "/metrics").unwrap_or_default()
    })
    .await
    .unwrap();
    for line in [
        r#"netagent_docker_plugin_calls_total{method="other",outcome="refused"} 1"#,
        r#"netagent_docker_plugin_calls_total{method="NetworkDriver.Join",outcome="refused"} 2"#,
        r#"netagent_docker_plugin_calls_total{method="Plugin.Activate",outcome="ok"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    // A container (e5 on .78) that dockerd removes, and a network (d4) it deletes, while
    // the agent is down.
    let e5 = r#"{"PoolID":"198.18.110.0/24","Address":"198.18.110.78","Options":null}"#;
    assert_ok(&call(&socket, "IpamDriver.RequestAddress", e5).await);
    assert_ok(
        &call(
            &socket,
            "NetworkDriver.CreateEndpoint",
            &ep("d1", "e5", "198.18.110.78/24"),
        )
        .await,
    );

    // The socket goes with the agent; the mapping survives a restart.
    daemon.shutdown().await;
    assert!(!socket.exists(), "a stopped agent leaves no plugin socket");
    networks.lock().unwrap().remove("d4");
    let (daemon, _api, socket) = start(&dir).await;
    // What dockerd no longer has is withdrawn once the agent asked it: e5's address is free,
    // and so is d4's pool.
    poll_until_async("e5's address given back", PATIENCE, async || {
        accept(call(&socket, "IpamDriver.RequestAddress", e5).await, |a| {
            error(a).is_empty()
        })
    })
    .await;
    poll_until_async("d4's pool given back", PATIENCE, async || {
        accept(
            call(&socket, "IpamDriver.RequestPool", &pool("198.18.113.0/24")).await,
            |a| error(a).is_empty(),
        )
    })
    .await;
    assert_ok(
        &call(
            &socket,
            "NetworkDriver.CreateEndpoint",
            &ep("d1", "e3", "198.18.110.77/24"),
        )
        .await,
    );
    assert_refused(
        &call(&socket, "IpamDriver.RequestAddress", given).await,
        "Address already in use",
    );
    daemon.shutdown().await;
}
