//! The diagnostic API over real HTTP in front of real nodes on loopback, driven the way
//! libnetwork's `dbclient` (text) and `diagnosticClient` (JSON) drive it, with the exact
//! bodies of the Go reference.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failure")]

use std::net::SocketAddr;
use std::time::Duration;

use agent::diag::{self, DiagState, PATHS};
use cluster::shell::{Handle, Security, ShellConfig, spawn};
use cluster::{NodeConfig, NodeIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

mod common;
use common::poll::{accept, poll_until_async};

/// The longest wait for anything to converge.
const T: Duration = Duration::from_secs(20);

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// One node with its diagnostic server.
struct Agent {
    handle: Handle,
    http: SocketAddr,
    gossip: SocketAddr,
    /// The NetworkDB name (`node<i>@1`).
    name: String,
}

/// UDP and TCP on the same loopback port.
async fn bind_pair() -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp, addr);
        }
    }
    panic!("no free port pair on loopback");
}

/// Starts an insecure node and serves the diagnostic router for it; its watch events are
/// forwarded to the diagnostic state as the daemon forwards them.
async fn start(i: usize, default_port: Option<u16>) -> Agent {
    let (udp, tcp, gossip) = bind_pair().await;
    let identity = NodeIdentity::new(format!("node{i}"), gossip, 1);
    let name = identity.db_name().to_string();
    let mut config = ShellConfig::new(identity, Security::Insecure);
    config.node = NodeConfig::fast();
    let mut handle = spawn(udp, tcp, config).unwrap();
    let state = DiagState::new(
        handle.client(),
        gossip.ip(),
        default_port.unwrap_or(gossip.port()),
    );
    let mut events = handle.take_events().unwrap();
    let forward = state.clone();
    tokio::spawn(async move {
        while let Some((_, ev)) = events.recv().await {
            forward.on_watch_event(&ev);
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let app = diag::router(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Agent {
        handle,
        http,
        gossip,
        name,
    }
}

/// A response, as read off the socket.
struct Response {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// One HTTP/1.1 request on a fresh connection; `form` is sent as a urlencoded body.
async fn request(addr: SocketAddr, method: &str, target: &str, form: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(form) = form {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(form.unwrap_or_default());
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(T, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut content_type = String::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.to_owned(),
            "content-length" => body.truncate(value.parse().unwrap()),
            "transfer-encoding" => panic!("unexpected chunked body"),
            _ => {}
        }
    }
    Response {
        status,
        content_type,
        body,
    }
}

impl Agent {
    /// GET `target`, checking the status and the content type.
    async fn get_as(&self, target: &str, content_type: &str) -> String {
        let resp = request(self.http, "GET", target, None).await;
        check(resp, target, content_type)
    }

    /// GET `target` in text mode.
    async fn get(&self, target: &str) -> String {
        self.get_as(target, TEXT).await
    }

    /// GET `target` in JSON mode.
    async fn json(&self, target: &str) -> String {
        self.get_as(target, JSON).await
    }

    /// POST `form` as a urlencoded body to `target`.
    async fn post(&self, target: &str, form: &str, content_type: &str) -> String {
        let resp = request(self.http, "POST", target, Some(form)).await;
        check(resp, target, content_type)
    }

    /// GETs `target` until its text body satisfies `want`.
    async fn poll(&self, target: &str, want: impl Fn(&str) -> bool) -> String {
        let what = format!("{target} on {}", self.name);
        poll_until_async(&what, T, async || {
            accept(self.get(target).await, |b| want(b))
        })
        .await
    }
}

fn check(resp: Response, target: &str, content_type: &str) -> String {
    assert_eq!(resp.status, 200, "{target}");
    assert_eq!(resp.content_type, content_type, "{target}");
    String::from_utf8(resp.body).unwrap()
}

/// What dbclient sends and checks with its regexes, plus the JSON the diagnostic CLI reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_as_dbclient_drives_them() {
    let a0 = start(0, None).await;
    // The others assume node0's port for a member given without one.
    let a1 = start(1, Some(a0.gossip.port())).await;
    let a2 = start(2, Some(a0.gossip.port())).await;
    let agents = [&a0, &a1, &a2];
    for a in agents {
        assert_eq!(a.get("/ready").await, "OK\nOK");
    }
    assert_eq!(a1.get(&format!("/join?members={}", a0.gossip)).await, "OK");
    assert_eq!(a2.get("/join?members=127.0.0.1").await, "OK");
    for a in agents {
        a.poll("/clusterpeers", |b| b.contains("total entries: 3\n"))
            .await;
    }
    let peers = format!(
        "total entries: 3\n0) {} -> 127.0.0.1\n1) {} -> 127.0.0.1\n2) {} -> 127.0.0.1\n",
        a0.name, a1.name, a2.name
    );
    assert_eq!(a0.get("/clusterpeers").await, format!("OK\n{peers}"));
    assert_eq!(
        a1.json("/clusterpeers?json").await,
        format!(
            r#"{{"message":"OK","details":{{"size":3,"entries":[{{"-=name":"{}","ip":"127.0.0.1"}},{{"-=name":"{}","ip":"127.0.0.1"}},{{"-=name":"{}","ip":"127.0.0.1"}}]}}}}"#,
            a0.name, a1.name, a2.name
        )
    );

    // Node1 watches the table before anything is written, as dbclient does.
    assert_eq!(a1.get("/watchtable?nid=test&tname=t").await, "OK\n");
    assert_eq!(
        a1.get("/watchedtableentries?nid=test&tname=t").await,
        "total elements: 0\n"
    );
    for a in agents {
        assert_eq!(a.get("/joinnetwork?nid=test").await, "OK");
    }
    for a in agents {
        a.poll("/networkpeers?nid=test", |b| {
            b.contains("total entries: 3\n")
        })
        .await;
    }
    assert_eq!(
        a2.get("/networkpeers?nid=test").await,
        format!("OK\n{peers}")
    );
    let doc: serde_json::Value =
        serde_json::from_str(&a2.json("/networkpeers?nid=test&json").await).unwrap();
    assert_eq!(doc["details"]["size"], 3);
    assert_eq!(doc["details"]["entries"][2]["-=name"], a2.name.as_str());

    assert_eq!(
        a0.get("/createentry?unsafe&nid=test&tname=t&value=v&key=k")
            .await,
        "OK"
    );
    for a in [&a1, &a2] {
        a.poll("/gettable?nid=test&tname=t", |b| {
            b.contains("total entries: 1\n")
        })
        .await;
        assert_eq!(
            a.get("/gettable?nid=test&tname=t").await,
            format!(
                "OK\ntotal entries: 1\n0) k:`k` -> v:`dg==` owner:`{}`\n",
                a0.name
            )
        );
        assert_eq!(
            a.get("/gettable?unsafe&nid=test&tname=t").await,
            format!(
                "OK\ntotal entries: 1\n0) k:`k` -> v:`v` owner:`{}`\n",
                a0.name
            )
        );
        assert_eq!(
            a.json("/gettable?nid=test&tname=t&json").await,
            format!(
                r#"{{"message":"OK","details":{{"size":1,"entries":[{{"key":"k","value":"dg==","owner":"{}"}}]}}}}"#,
                a0.name
            )
        );
        assert_eq!(
            a.json("/gettable?nid=test&tname=t&json=pretty&unsafe")
                .await,
            format!(
                "{{\n  \"message\": \"OK\",\n  \"details\": {{\n    \"size\": 1,\n    \"entries\": [\n      {{\n        \"key\": \"k\",\n        \"value\": \"v\",\n        \"owner\": \"{}\"\n      }}\n    ]\n  }}\n}}",
                a0.name
            )
        );
        assert_eq!(
            a.get("/getentry?nid=test&tname=t&key=k").await,
            "OK\n0) k:`k` -> v:`dg==` owner:``\n"
        );
    }

    // Node1's watch saw node0's entry; then an entry from node2 (by POST), an update and a
    // delete from node0. Node1's own entry is never reported to its watch.
    a1.poll("/watchedtableentries?nid=test&tname=t", |b| {
        b == "total elements: 1\n0) k:`k` -> v:`v`\n"
    })
    .await;
    assert_eq!(
        a1.get("/createentry?unsafe&nid=test&tname=t&value=mine&key=k1")
            .await,
        "OK"
    );
    assert_eq!(
        a2.post("/createentry", "nid=test&tname=t&value=dzI%3D&key=k2", TEXT)
            .await,
        "OK"
    );
    assert_eq!(
        a0.get("/updateentry?unsafe&nid=test&tname=t&value=v2&key=k")
            .await,
        "OK"
    );
    a1.poll("/watchedtableentries?nid=test&tname=t", |b| {
        b == "total elements: 2\n0) k:`k` -> v:`v2`\n1) k:`k2` -> v:`w2`\n"
    })
    .await;
    assert_eq!(a0.get("/deleteentry?nid=test&tname=t&key=k").await, "OK");
    a1.poll("/watchedtableentries?nid=test&tname=t", |b| {
        b == "total elements: 1\n0) k:`k2` -> v:`w2`\n"
    })
    .await;
    for a in agents {
        a.poll("/gettable?nid=test&tname=t", |b| {
            b.contains("total entries: 2\n")
        })
        .await;
    }

    // Stats count the tombstone of k on every node: k (deleted), k1, k2.
    for a in agents {
        let body = a
            .poll("/networkstats?nid=test", |b| {
                b.starts_with("OK\nentries: 3, qlen: ")
            })
            .await;
        let qlen = body
            .strip_prefix("OK\nentries: 3, qlen: ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap();
        assert!(qlen.parse::<u32>().is_ok(), "{body:?}");
        let doc: serde_json::Value =
            serde_json::from_str(&a.json("/networkstats?nid=test&json").await).unwrap();
        assert_eq!(doc["message"], "OK");
        assert_eq!(doc["details"]["entries"], 3);
        assert!(doc["details"]["QueueLen"].is_u64());
    }

    for a in [a0, a1, a2] {
        a.handle.kill();
    }
}

/// Missing parameters, unknown paths, errors, flags and POST bodies on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_bodies_match_libnetwork() {
    let a = start(0, None).await;
    let me = a.name.clone();

    assert_eq!(
        a.json("/ready?json").await,
        r#"{"message":"OK","details":{"info":"OK"}}"#
    );
    assert_eq!(a.post("/ready", "x=1", TEXT).await, "OK\nOK");
    let paths: String = PATHS.iter().map(|p| format!("{p}\n")).collect();
    assert_eq!(a.get("/help").await, format!("OK\n{paths}"));
    for path in [
        "/stackdump",
        "/join",
        "/gettable",
        "/watchedtableentries",
        "/",
    ] {
        assert!(paths.lines().any(|p| p == path), "{path}");
    }
    assert_eq!(
        a.json("/help?json").await,
        format!(
            r#"{{"message":"OK","details":{{"info":"{}"}}}}"#,
            paths.replace('\n', "\\n")
        )
    );
    assert_eq!(a.get("/myip").await, "127.0.0.1\n");

    for path in ["/foo", "/gettable/", "/leave", "/", "/foo?json=0&x"] {
        let body = a
            .get_as(path, if path.contains("json") { JSON } else { TEXT })
            .await;
        let shown = path.split('?').next().unwrap();
        if path.contains("json") {
            assert_eq!(
                body,
                format!(
                    r#"{{"message":"not implemented","details":{{"usage":"URL path: {shown} no method implemented check /help\n"}}}}"#
                )
            );
        } else {
            assert_eq!(
                body,
                format!(
                    "not implemented\nUsage: URL path: {shown} no method implemented check /help\n"
                )
            );
        }
    }
    assert_eq!(request(a.http, "DELETE", "/foo", None).await.status, 200);

    let missing = [
        ("/join", "/join?members=ip1,ip2,..."),
        ("/networkpeers", "/networkpeers?nid=test"),
        ("/joinnetwork", "/joinnetwork?nid=network_id"),
        ("/leavenetwork", "/leavenetwork?nid=network_id"),
        (
            "/createentry?tname=t&nid=n&key=k",
            "/createentry?tname=table_name&nid=network_id&key=k&value=v",
        ),
        (
            "/updateentry?value=v",
            "/updateentry?tname=table_name&nid=network_id&key=k&value=v",
        ),
        (
            "/deleteentry?tname=t&nid=n",
            "/deleteentry?tname=table_name&nid=network_id&key=k",
        ),
        (
            "/getentry?tname=t",
            "/getentry?tname=table_name&nid=network_id&key=k",
        ),
        (
            "/gettable?nid=n",
            "/gettable?tname=table_name&nid=network_id",
        ),
        ("/networkstats?tname=t", "/networkstats?nid=test"),
        ("/watchtable?nid=n", "/watchtable?tname=table_name"),
        (
            "/watchedtableentries",
            "/watchedtableentries?tname=table_name",
        ),
    ];
    for (target, usage) in missing {
        assert_eq!(
            a.get(target).await,
            format!("missing parameter\nUsage: {usage}"),
            "{target}"
        );
    }
    assert_eq!(
        a.json("/networkstats?json").await,
        r#"{"message":"missing parameter","details":{"usage":"/networkstats?nid=test"}}"#
    );
    // The dbserver's watch handlers ignore `json`.
    assert_eq!(
        a.get("/watchtable?json").await,
        "missing parameter\nUsage: /watchtable?tname=table_name"
    );

    // Networks: joining twice is OK, leaving twice too; never joined fails.
    assert_eq!(a.get("/joinnetwork?nid=x").await, "OK");
    assert_eq!(a.get("/joinnetwork?nid=x").await, "OK");
    assert_eq!(
        a.get("/networkpeers?nid=x").await,
        format!("OK\ntotal entries: 1\n0) {me} -> 127.0.0.1\n")
    );
    assert_eq!(
        a.get("/networkpeers?nid=none").await,
        "OK\ntotal entries: 0\n"
    );
    assert_eq!(
        a.json("/networkpeers?nid=none&json").await,
        r#"{"message":"OK","details":{"size":0,"entries":null}}"#
    );
    assert_eq!(
        a.get("/leavenetwork?nid=never").await,
        "FAIL\nError: could not find self node for network never while trying to leave"
    );
    assert_eq!(
        a.json("/leavenetwork?nid=never&json").await,
        r#"{"message":"FAIL","details":{"error":"could not find self node for network never while trying to leave"}}"#
    );
    assert_eq!(
        a.get("/networkstats?nid=none").await,
        "OK\nentries: -1, qlen: -1\n"
    );
    assert_eq!(
        a.json("/networkstats?nid=none&json").await,
        r#"{"message":"OK","details":{"entries":-1,"QueueLen":-1}}"#
    );

    // Entries: base64 by default, raw with `unsafe`; a network need not be joined.
    assert_eq!(
        a.get("/createentry?tname=t&nid=y&key=k&value=!!!").await,
        "FAIL\nError: illegal base64 data at input byte 0"
    );
    assert_eq!(
        a.get("/createentry?tname=t&nid=y&key=k&value=dg").await,
        "FAIL\nError: illegal base64 data at input byte 0"
    );
    assert_eq!(
        a.get("/createentry?tname=t&nid=y&key=k&value=aGVsbG8=")
            .await,
        "OK"
    );
    assert_eq!(
        a.get("/createentry?tname=t&nid=y&key=k&value=aGVsbG8=")
            .await,
        "FAIL\nError: cannot create entry in table t with network id y and key k, already exists"
    );
    assert_eq!(
        a.get("/getentry?tname=t&nid=y&key=k").await,
        "OK\n0) k:`k` -> v:`aGVsbG8=` owner:``\n"
    );
    assert_eq!(
        a.get("/getentry?tname=t&nid=y&key=k&unsafe").await,
        "OK\n0) k:`k` -> v:`hello` owner:``\n"
    );
    assert_eq!(
        a.json("/getentry?tname=t&nid=y&key=k&unsafe&json").await,
        r#"{"message":"OK","details":{"key":"k","value":"hello","owner":""}}"#
    );
    assert_eq!(
        a.get("/gettable?tname=t&nid=y").await,
        format!("OK\ntotal entries: 1\n0) k:`k` -> v:`aGVsbG8=` owner:`{me}`\n")
    );
    assert_eq!(
        a.get("/getentry?tname=t&nid=y&key=nokey").await,
        "FAIL\nError: could not get entry in table t with network id y and key nokey"
    );
    assert_eq!(
        a.get("/updateentry?tname=t&nid=y&key=nokey&value=dg==")
            .await,
        "FAIL\nError: cannot update entry as the entry in table t with network id y and key nokey does not exist"
    );
    assert_eq!(
        a.get("/updateentry?unsafe&tname=t&nid=y&key=k&value=a%26b%3Cc")
            .await,
        "OK"
    );
    assert_eq!(
        a.get("/getentry?tname=t&nid=y&key=k&unsafe").await,
        "OK\n0) k:`k` -> v:`a&b<c` owner:``\n"
    );
    // Go's encoding/json escapes HTML characters.
    assert_eq!(
        a.json("/getentry?tname=t&nid=y&key=k&unsafe&json").await,
        r#"{"message":"OK","details":{"key":"k","value":"a\u0026b\u003cc","owner":""}}"#
    );
    assert_eq!(a.get("/deleteentry?tname=t&nid=y&key=k").await, "OK");
    assert_eq!(
        a.get("/deleteentry?tname=t&nid=y&key=k").await,
        "FAIL\nError: cannot delete entry t with network id y and key k does not exist or is already being deleted"
    );
    assert_eq!(
        a.get("/getentry?tname=t&nid=y&key=k").await,
        "FAIL\nError: entry in table t network id y and key k deleted and pending garbage collection"
    );
    assert_eq!(
        a.get("/createentry?unsafe&tname=t&nid=y&key=k&value=v")
            .await,
        "FAIL\nError: cannot create entry in table t with network id y and key k, already exists"
    );
    assert_eq!(
        a.get("/gettable?tname=t&nid=y").await,
        "OK\ntotal entries: 0\n"
    );
    assert_eq!(
        a.json("/gettable?tname=t&nid=y&json").await,
        r#"{"message":"OK","details":{"size":0,"entries":null}}"#
    );
    assert_eq!(
        a.json("/gettable?tname=t&nid=y&json=pretty").await,
        "{\n  \"message\": \"OK\",\n  \"details\": {\n    \"size\": 0,\n    \"entries\": null\n  }\n}"
    );

    // A joined network's stats count tombstones and stay after leaving.
    assert_eq!(
        a.get("/createentry?unsafe&tname=t&nid=x&key=a&value=v")
            .await,
        "OK"
    );
    assert_eq!(
        a.get("/createentry?unsafe&tname=t&nid=x&key=b&value=v")
            .await,
        "OK"
    );
    assert_eq!(a.get("/deleteentry?tname=t&nid=x&key=a").await, "OK");
    assert!(
        a.get("/networkstats?nid=x")
            .await
            .starts_with("OK\nentries: 2, qlen: "),
    );
    assert_eq!(
        a.get("/gettable?tname=t&nid=x").await.lines().nth(1),
        Some("total entries: 1")
    );
    assert_eq!(a.get("/leavenetwork?nid=x").await, "OK");
    assert_eq!(a.get("/leavenetwork?nid=x").await, "OK");
    assert!(
        a.get("/networkstats?nid=x")
            .await
            .starts_with("OK\nentries: ")
    );

    // POST: body parameters first, then the query's.
    assert_eq!(
        a.post(
            "/createentry?key=ignored",
            "tname=p&nid=y&key=k&value=v&unsafe",
            TEXT
        )
        .await,
        "OK"
    );
    assert_eq!(
        a.post(
            "/getentry?key=other&json",
            "tname=p&nid=y&key=k&unsafe",
            JSON
        )
        .await,
        r#"{"message":"OK","details":{"key":"k","value":"v","owner":""}}"#
    );
    assert_eq!(
        a.post("/networkstats", "nid=none", TEXT).await,
        "OK\nentries: -1, qlen: -1\n"
    );
    assert_eq!(
        a.post("/networkstats", "json=pretty&nid=none", JSON).await,
        "{\n  \"message\": \"OK\",\n  \"details\": {\n    \"entries\": -1,\n    \"QueueLen\": -1\n  }\n}"
    );

    // Watches: text only, idempotent.
    assert_eq!(
        a.get("/watchedtableentries?tname=w").await,
        "Table w not watched\n"
    );
    assert_eq!(a.get("/watchtable?tname=w").await, "OK\n");
    assert_eq!(a.get("/watchtable?tname=w&json").await, "OK\n");
    assert_eq!(
        a.get("/watchedtableentries?tname=w&json").await,
        "total elements: 0\n"
    );

    // /join fails only when no member resolves, with memberlist's multi-error text.
    assert_eq!(
        a.get("/join?members=127.0.0.1:notaport").await,
        "FAIL\nError: /join error in the DB join could not join node to memberlist: 1 error occurred:\n\t* Failed to resolve 127.0.0.1:notaport: invalid port \"notaport\"\n\n"
    );

    // The state dump goes to /tmp, announced like Go's goroutine dump.
    let body = a.get("/stackdump").await;
    let path = body
        .strip_prefix("OK\ngoroutine stacks written to ")
        .unwrap();
    assert!(
        path.starts_with("/tmp/netagent-stacks-") && path.ends_with("Z.log"),
        "{path}"
    );
    let dump = std::fs::read_to_string(path).unwrap();
    assert!(dump.contains(&me), "{dump}");
    let _ = std::fs::remove_file(path);

    a.handle.kill();
}
