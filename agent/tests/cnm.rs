//! The control API against in-process daemons on loopback: the network catalogue is
//! cluster-wide, bad input is refused with 4xx and changes nothing, endpoints allocate and
//! validate addresses, a join publishes libnetwork's records to the other nodes and a leave
//! withdraws them, and a restarted agent restores and re-publishes its endpoints.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failure")]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use agent::api::{ApiClient, ClientError};
use agent::cnm::{
    DnsQuery, Endpoint, EndpointCreate, NetworkCreate, NetworkSpec, SandboxCreate, ServiceCreate,
};
use agent::config::AgentConfig;
use agent::daemon::Daemon;
use discovery::{ENDPOINT_TABLE, EndpointRecord};
use ipnet::Ipv4Net;
use networkdb::{Key, TableElem};
use overlay::{Mac, PEER_TABLE, PeerRecord};

mod common;
use common::poll::{accept, poll_until_async};
use common::{Scratch, scratch};

/// The longest wait for anything to converge.
const PATIENCE: Duration = Duration::from_secs(20);

/// One agent of a test cluster.
struct Agent {
    daemon: Daemon,
    api: ApiClient,
    dir: PathBuf,
}

/// Starts an agent with its state in `dir`, joined to `seed`, gossiping at `bind` (port 0:
/// any). A bind refused because a killed agent's socket is still being dropped is retried.
async fn start(
    name: &str,
    dir: PathBuf,
    seed: Option<SocketAddr>,
    bind: Option<SocketAddr>,
) -> Agent {
    let mut config = AgentConfig::local(name, dir.clone());
    config.fast_failure_detection = true;
    config.join = seed.into_iter().collect();
    if let Some(addr) = bind {
        config.bind = addr;
        config.advertise = addr;
    }
    let daemon = common::start_daemon(&config).await;
    let api = ApiClient::new(daemon.api_addr().clone());
    Agent { daemon, api, dir }
}

/// `n` agents in `scratch("cnm", tag)/nodeI`, the others joined to the first, every one seeing
/// all; with the scratch directory, removed when the caller drops it.
async fn cluster(tag: &str, n: usize) -> (Scratch, Vec<Agent>) {
    let root = scratch("cnm", tag);
    let first = start("node1", root.join("node1"), None, None).await;
    let seed = first.daemon.identity().addr;
    let mut agents = vec![first];
    for i in 2..=n {
        let name = format!("node{i}");
        agents.push(start(&name, root.join(&name), Some(seed), None).await);
    }
    for a in &agents {
        poll_until_async("all members", PATIENCE, async || {
            accept(a.api.info().await.unwrap().members, |m| *m == n)
        })
        .await;
    }
    (root, agents)
}

fn network(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        driver: Some("overlay".into()),
        subnet: subnet.into(),
        vni: None,
    }
}

fn endpoint(network: &str, name: &str) -> EndpointCreate {
    EndpointCreate {
        network: network.into(),
        name: name.into(),
        ..EndpointCreate::default()
    }
}

/// An endpoint asking for address `ip`.
fn endpoint_at(network: &str, name: &str, ip: &str) -> EndpointCreate {
    EndpointCreate {
        ip: Some(ip.into()),
        ..endpoint(network, name)
    }
}

/// Asserts an API error's status and that its message contains `needle`.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, status: u16, needle: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.status(), Some(status), "{err}");
    assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
}

/// Asserts an API error's `code`.
fn coded<T: std::fmt::Debug>(result: Result<T, ClientError>, code: &str) {
    match result.unwrap_err() {
        ClientError::Api { code: got, .. } => assert_eq!(got.as_deref(), Some(code)),
        other => panic!("not an API error: {other:?}"),
    }
}

/// A table of one NetworkDB network as `agent`'s node sees it.
async fn table(agent: &Agent, table: &'static str, nid: &str) -> BTreeMap<Key, TableElem> {
    let nid = nid.to_owned();
    agent
        .daemon
        .client()
        .with_node(move |node, _| node.db().table_by_network(table, &nid))
        .await
        .unwrap()
}

async fn wait_network(agent: &Agent, name: &str) -> NetworkSpec {
    poll_until_async(&format!("network {name} listed"), PATIENCE, async || {
        let list = agent.api.networks().await.unwrap();
        let names: Vec<String> = list.iter().map(|n| n.name.clone()).collect();
        list.into_iter().find(|n| n.name == name).ok_or(names)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_cluster_wide_and_bad_input_changes_nothing() {
    let (_dir, agents) = cluster("catalogue", 3).await;
    let (a, b) = (&agents[0], &agents[1]);

    let blue = a
        .api
        .create_network(&network("blue", "198.18.1.0/24"))
        .await
        .unwrap();
    assert_eq!(blue.id.len(), 64);
    assert!(
        blue.id
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(blue.gateway, Ipv4Addr::new(198, 18, 1, 1));
    assert_eq!(blue.vni, 4096);
    assert_eq!(blue.created_by, "node1");
    for other in &agents[1..] {
        assert_eq!(wait_network(other, "blue").await, blue);
    }
    // By ID and by a unique ID prefix, on another node.
    assert_eq!(b.api.network(&blue.id).await.unwrap(), blue);
    assert_eq!(b.api.network(&blue.id[..8]).await.unwrap(), blue);
    refused(b.api.network("green").await, 404, "network green not found");
    coded(b.api.network("green").await, "no_such_network");

    // Duplicate name, from either node.
    for agent in [a, b] {
        refused(
            agent
                .api
                .create_network(&network("blue", "198.18.2.0/24"))
                .await,
            409,
            "network with name blue already exists",
        );
    }
    // A network created anywhere gets a VNI of its own from the cluster-wide pool; a taken
    // VNI or an overlapping subnet is a conflict.
    let red = b
        .api
        .create_network(&network("red", "198.18.2.0/24"))
        .await
        .unwrap();
    assert!(
        red.vni >= 4096 && red.vni != blue.vni,
        "{} {}",
        red.vni,
        blue.vni
    );
    let mut taken = network("green", "198.18.3.0/24");
    taken.vni = Some(4096);
    refused(a.api.create_network(&taken).await, 409, "VNI 4096");
    refused(
        a.api
            .create_network(&network("green", "198.18.1.128/25"))
            .await,
        409,
        "overlaps",
    );

    // Bad input: 400, and nothing is created.
    let bad = [
        (network("green", "198.18.300.0/24"), "invalid subnet"),
        (network("green", "198.18.3.0"), "invalid subnet"),
        (
            network("green", "198.18.3.5/24"),
            "it should be 198.18.3.0/24",
        ),
        (network("green", "198.18.3.0/31"), "8 to 30"),
        (network("bad name", "198.18.3.0/24"), "invalid network name"),
        (
            NetworkCreate {
                driver: Some("bridge".into()),
                ..network("green", "198.18.3.0/24")
            },
            "could not find plugin bridge in v1 plugin registry: plugin not found",
        ),
        (
            NetworkCreate {
                vni: Some(0),
                ..network("green", "198.18.3.0/24")
            },
            "invalid VNI 0",
        ),
        (
            NetworkCreate {
                vni: Some(1 << 24),
                ..network("green", "198.18.3.0/24")
            },
            "invalid VNI",
        ),
    ];
    for (req, needle) in bad {
        refused(a.api.create_network(&req).await, 400, needle);
    }
    for (body, needle) in [
        (
            &b"{\"name\": \"green\", \"subnet\": "[..],
            "invalid JSON body",
        ),
        (
            b"{\"name\": 7, \"subnet\": \"198.18.3.0/24\"}",
            "invalid JSON body",
        ),
        (
            b"{\"name\": \"green\", \"subnet\": \"198.18.3.0/24\", \"colour\": 1}",
            "unknown field",
        ),
        (b"{\"name\": \"green\"}", "missing field `subnet`"),
    ] {
        let (status, reply) = a
            .api
            .raw("POST", "/v1/networks", Some(body.to_vec()))
            .await
            .unwrap();
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&reply));
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        let message = reply["error"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert_eq!(reply["code"], "invalid");
    }
    let (status, reply) = a.api.raw("GET", "/v1/nowhere", None).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        &reply[..],
        br#"{"error":"page not found","code":"not_found"}"#
    );

    // Nothing was created: every node ends with the same two (red came from node 2).
    let names = |list: Vec<NetworkSpec>| list.into_iter().map(|n| n.name).collect::<Vec<_>>();
    for agent in &agents {
        wait_network(agent, "red").await;
        assert_eq!(names(agent.api.networks().await.unwrap()), ["blue", "red"]);
    }

    // Removal spreads too.
    b.api.remove_network("blue").await.unwrap();
    for agent in &agents {
        poll_until_async("blue removed everywhere", PATIENCE, async || {
            let list = agent.api.networks().await.unwrap();
            accept(list, |l| !l.iter().any(|n| n.name == "blue"))
        })
        .await;
    }
    refused(
        b.api.remove_network("blue").await,
        404,
        "network blue not found",
    );

    for agent in agents {
        agent.daemon.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_join_publishes_records_and_leave_withdraws_them() {
    let (_dir, agents) = cluster("endpoints", 2).await;
    let (a, b) = (&agents[0], &agents[1]);
    let blue = a
        .api
        .create_network(&network("blue", "198.18.4.0/24"))
        .await
        .unwrap();
    wait_network(b, "blue").await;

    // Allocated address and Docker's MAC.
    let web = a
        .api
        .create_endpoint(&EndpointCreate {
            aliases: vec!["www".into()],
            service: Some(ServiceCreate {
                name: "websvc".into(),
                vip: Some("198.18.4.250".into()),
                aliases: Vec::new(),
            }),
            ..endpoint("blue", "web")
        })
        .await
        .unwrap();
    assert!(blue.subnet.contains(&web.ip), "{}", web.ip);
    assert!(![blue.subnet.network(), blue.gateway, blue.subnet.broadcast()].contains(&web.ip));
    assert_eq!(web.prefix_len, 24);
    assert_eq!(web.mac, Mac::from_ipv4(web.ip));
    assert_eq!(web.network_id, blue.id);
    assert_eq!(web.sandbox, None);

    // Addresses: outside the subnet or reserved is bad input, taken is a conflict.
    let with_ip = |name: &str, ip: &str| endpoint_at("blue", name, ip);
    refused(
        a.api.create_endpoint(&with_ip("x", "198.18.5.7")).await,
        400,
        "not in the network's subnet",
    );
    refused(
        a.api.create_endpoint(&with_ip("x", "198.18.4.1")).await,
        400,
        "gateway address",
    );
    refused(
        a.api.create_endpoint(&with_ip("x", "198.18.4.255")).await,
        400,
        "broadcast address",
    );
    refused(
        a.api.create_endpoint(&with_ip("x", "nonsense")).await,
        400,
        "not an IPv4 address",
    );
    refused(
        a.api
            .create_endpoint(&with_ip("x", &web.ip.to_string()))
            .await,
        409,
        "Address already in use",
    );
    refused(
        a.api.create_endpoint(&with_ip("x", "198.18.4.250")).await,
        409,
        "Address already in use",
    );
    coded(
        a.api.create_endpoint(&with_ip("x", "198.18.4.250")).await,
        "address_in_use",
    );
    refused(
        a.api.create_endpoint(&endpoint("blue", "web")).await,
        409,
        "endpoint with name web already exists in network blue",
    );
    refused(
        a.api
            .create_endpoint(&EndpointCreate {
                mac: Some("02:42:zz:00:00:01".into()),
                ..endpoint("blue", "x")
            })
            .await,
        400,
        "invalid MAC address",
    );
    refused(
        a.api.create_endpoint(&endpoint("green", "x")).await,
        404,
        "network green not found",
    );
    refused(
        a.api.create_endpoint(&endpoint("blue", "a/b")).await,
        400,
        "invalid endpoint name",
    );
    let named = a
        .api
        .create_endpoint(&EndpointCreate {
            mac: Some("02:00:00:00:00:09".into()),
            ..with_ip("db", "198.18.4.9")
        })
        .await
        .unwrap();
    assert_eq!(named.ip, Ipv4Addr::new(198, 18, 4, 9));
    assert_eq!(named.mac.to_string(), "02:00:00:00:00:09");
    let listed: Vec<String> = a
        .api
        .endpoints(Some("blue"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(listed, ["db", "web"]);
    a.api.remove_endpoint("blue", "db").await.unwrap();

    // Node 2 attaches to the network by creating an endpoint there.
    let other = b
        .api
        .create_endpoint(&endpoint("blue", "other"))
        .await
        .unwrap();
    assert_ne!(other.ip, web.ip);

    // Sandboxes.
    refused(
        a.api
            .create_sandbox(&SandboxCreate {
                name: "c1".into(),
                netns: "netns/c1".into(),
                resolv_conf: None,
                engine: None,
            })
            .await,
        400,
        "absolute path",
    );
    a.api
        .create_sandbox(&SandboxCreate {
            name: "c1".into(),
            netns: "/var/run/netns/c1".into(),
            resolv_conf: None,
            engine: None,
        })
        .await
        .unwrap();
    refused(
        a.api.join("blue", "web", "c9").await,
        404,
        "sandbox c9 not found",
    );
    let joined = a.api.join("blue", "web", "c1").await.unwrap();
    assert_eq!(joined.sandbox.as_deref(), Some("c1"));
    refused(
        a.api.join("blue", "web", "c1").await,
        409,
        "already joined to sandbox c1",
    );

    // Node 2 sees both records, owned by node 1's run, protobuf-encoded as libnetwork's.
    let owner = a.daemon.identity().db_name();
    let peer = poll_until_async("the PeerRecord on node 2", PATIENCE, async || {
        table(b, PEER_TABLE, &blue.id)
            .await
            .remove(web.id.as_str())
            .ok_or("no entry")
    })
    .await;
    assert_eq!(peer.owner, owner);
    assert_eq!(
        PeerRecord::decode(&peer.value).unwrap(),
        PeerRecord {
            endpoint_ip: Ipv4Net::new(web.ip, 24).unwrap(),
            endpoint_mac: web.mac,
            tunnel_endpoint_ip: Ipv4Addr::LOCALHOST.into(),
        }
    );
    let record = poll_until_async("the EndpointRecord on node 2", PATIENCE, async || {
        table(b, ENDPOINT_TABLE, &blue.id)
            .await
            .remove(web.id.as_str())
            .ok_or("no entry")
    })
    .await;
    let service = web.service.clone().unwrap();
    assert_eq!(
        EndpointRecord::decode(&record.value).unwrap(),
        EndpointRecord {
            name: "web".into(),
            service_name: "websvc".into(),
            service_id: service.id,
            virtual_ip: "198.18.4.250".into(),
            endpoint_ip: web.ip.to_string(),
            task_aliases: vec!["www".into()],
            ..EndpointRecord::default()
        }
    );

    // Joined things cannot be removed.
    refused(
        a.api.remove_endpoint("blue", "web").await,
        409,
        "endpoint web is joined to sandbox c1; leave first",
    );
    refused(
        a.api.remove_sandbox("c1").await,
        409,
        "sandbox c1 has joined endpoints (blue/web)",
    );
    refused(
        a.api.remove_network("blue").await,
        409,
        "network blue has active endpoints",
    );
    assert_eq!(a.api.sandbox("c1").await.unwrap().endpoints, ["blue/web"]);

    // Leave withdraws both records everywhere.
    let left = a.api.leave("blue", "web").await.unwrap();
    assert_eq!(left.sandbox, None);
    refused(a.api.leave("blue", "web").await, 409, "not joined");
    poll_until_async(
        "records withdrawn on node 2 (held in the peer, endpoint table)",
        PATIENCE,
        async || {
            let peer = table(b, PEER_TABLE, &blue.id).await;
            let endpoint = table(b, ENDPOINT_TABLE, &blue.id).await;
            let held = (
                peer.contains_key(web.id.as_str()),
                endpoint.contains_key(web.id.as_str()),
            );
            accept(held, |&held| held == (false, false))
        },
    )
    .await;
    a.api.remove_endpoint("blue", "web").await.unwrap();
    a.api.remove_sandbox("c1").await.unwrap();
    refused(
        a.api.endpoint("blue", "web").await,
        404,
        "endpoint web not found in network blue",
    );
    let remaining: Vec<Endpoint> = a.api.endpoints(None).await.unwrap();
    assert!(remaining.is_empty(), "{remaining:?}");

    for agent in agents {
        agent.daemon.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_restores_and_republishes_its_endpoints() {
    let (_dir, mut agents) = cluster("restart", 2).await;
    let b = agents.pop().unwrap();
    let a = agents.pop().unwrap();
    let blue = a
        .api
        .create_network(&network("blue", "198.18.6.0/24"))
        .await
        .unwrap();
    wait_network(&b, "blue").await;
    b.api
        .create_endpoint(&endpoint("blue", "other"))
        .await
        .unwrap();
    let web = a
        .api
        .create_endpoint(&endpoint("blue", "web"))
        .await
        .unwrap();
    a.api
        .create_sandbox(&SandboxCreate {
            name: "c1".into(),
            netns: "/var/run/netns/c1".into(),
            resolv_conf: None,
            engine: None,
        })
        .await
        .unwrap();
    a.api.join("blue", "web", "c1").await.unwrap();
    let first_run = a.daemon.identity().db_name();
    poll_until_async(
        "the record of the first run on node 2",
        PATIENCE,
        async || {
            let t = table(&b, PEER_TABLE, &blue.id).await;
            let owner = t.get(web.id.as_str()).map(|e| e.owner.clone());
            accept(owner, |o| o.as_ref() == Some(&first_run))
        },
    )
    .await;

    // A crash, then a new run from the same state directory at the same address.
    let addr = a.daemon.identity().addr;
    let dir = a.dir.clone();
    a.daemon.kill();
    let a = start("node1", dir, Some(b.daemon.identity().addr), Some(addr)).await;
    let second_run = a.daemon.identity().db_name();
    assert_ne!(second_run, first_run);

    let restored = a.api.endpoint("blue", "web").await.unwrap();
    assert_eq!(
        restored,
        Endpoint {
            sandbox: Some("c1".into()),
            ifname: Some("eth0".into()),
            ..web.clone()
        }
    );
    assert_eq!(a.api.sandbox("c1").await.unwrap().endpoints, ["blue/web"]);

    let peer = poll_until_async(
        "the record of the second run on node 2",
        PATIENCE,
        async || {
            let mut t = table(&b, PEER_TABLE, &blue.id).await;
            match t.remove(web.id.as_str()) {
                Some(e) if e.owner == second_run => Ok(e),
                other => Err(other.map(|e| e.owner)),
            }
        },
    )
    .await;
    assert_eq!(
        PeerRecord::decode(&peer.value).unwrap().endpoint_ip,
        Ipv4Net::new(web.ip, 24).unwrap()
    );
    poll_until_async(
        "the EndpointRecord of the second run on node 2",
        PATIENCE,
        async || {
            let t = table(&b, ENDPOINT_TABLE, &blue.id).await;
            let owner = t.get(web.id.as_str()).map(|e| e.owner.clone());
            accept(owner, |o| o.as_ref() == Some(&second_run))
        },
    )
    .await;
    // The network its first run created is in the catalogue again (re-published by the
    // creator once its old run's entries were dropped).
    assert_eq!(wait_network(&b, "blue").await, blue);
    assert_eq!(wait_network(&a, "blue").await, blue);

    // A corrupt state file stops the next start with an error naming it.
    let root = a.dir.parent().unwrap().to_owned();
    let state = a.dir.clone();
    a.daemon.shutdown().await;
    b.daemon.shutdown().await;
    std::fs::write(state.join("cnm.json"), b"{ not json").unwrap();
    let mut config = AgentConfig::local("node1", state);
    config.fast_failure_detection = true;
    let err = Daemon::start(&config).await.err().unwrap().to_string();
    assert!(err.contains("cnm.json"), "{err}");
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_socket_is_managed_and_tcp_works_too() {
    use std::os::unix::fs::PermissionsExt;

    let root = scratch("cnm", "sockets");
    // A stale socket file (its listener gone) is replaced.
    let dir = root.join("unix");
    std::fs::create_dir_all(&dir).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.join("netagent.sock")).unwrap());
    let agent = start("node1", dir.clone(), None, None).await;
    let socket = dir.join("netagent.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    assert_eq!(agent.api.info().await.unwrap().name, "node1");
    // A second agent cannot take a socket a live agent serves.
    let mut config = AgentConfig::local("node2", dir.clone());
    config.state_dir = root.join("other");
    let err = Daemon::start(&config).await.err().unwrap().to_string();
    assert!(err.contains("control API"), "{err}");
    agent.daemon.shutdown().await;
    assert!(!socket.exists(), "the socket is removed on shutdown");

    let mut config = AgentConfig::local("node3", root.join("tcp"));
    config.api = agent::config::ApiAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let daemon = Daemon::start(&config).await.unwrap();
    let api = ApiClient::new(daemon.api_addr().clone());
    assert!(matches!(daemon.api_addr(), agent::config::ApiAddr::Tcp(a) if a.port() != 0));
    assert_eq!(api.info().await.unwrap().name, "node3");
    daemon.shutdown().await;
    let _ = std::fs::remove_dir_all(root);
}

/// A network with endpoints on another agent cannot be removed from an agent that has none
/// there (it was, before the check of the network's NetworkDB peers); once the other agent
/// removes its endpoint, it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_in_use_elsewhere_is_not_removed() {
    let (_dir, agents) = cluster("in-use", 2).await;
    let (a, b) = (&agents[0], &agents[1]);
    a.api
        .create_network(&network("green", "198.18.30.0/24"))
        .await
        .unwrap();
    wait_network(b, "green").await;
    b.api
        .create_endpoint(&endpoint("green", "e1"))
        .await
        .unwrap();
    let b_name = b.daemon.identity().db_name().to_string();
    let id = a.api.network("green").await.unwrap().id;
    poll_until_async("node1 sees node2 attached", PATIENCE, async || {
        let id = id.clone();
        let peers: Vec<String> = a
            .daemon
            .client()
            .with_node(move |n, _| {
                n.db()
                    .peers(&id)
                    .iter()
                    .map(|p| p.name.to_string())
                    .collect()
            })
            .await
            .unwrap();
        accept(peers, |p| p.contains(&b_name))
    })
    .await;
    refused(a.api.remove_network("green").await, 409, &b_name);
    assert!(a.api.network("green").await.is_ok(), "still listed");
    b.api.remove_endpoint("green", "e1").await.unwrap();
    poll_until_async("node2's attachment gone", PATIENCE, async || {
        a.api.remove_network("green").await
    })
    .await;
    poll_until_async("removal seen on node2", PATIENCE, async || {
        match b.api.network("green").await {
            Ok(listed) => Err(listed),
            Err(_) => Ok(()),
        }
    })
    .await;
}

/// Findings of a review, each refused or handled before its fix: a catalogue value nobody
/// could create through the API (here `0.0.0.0/0`, written straight into NetworkDB) made
/// every later network "overlap"; a VIP could reuse an endpoint's address; a MAC could be
/// given twice; listing the endpoints of a network this agent has none on was a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_catalogue_values_and_address_conflicts() {
    let (_dir, agents) = cluster("hostile", 1).await;
    let a = &agents[0];
    let evil = serde_json::json!({
        "name": "evil", "id": "zz", "driver": "overlay", "subnet": "0.0.0.0/0",
        "gateway": "0.0.0.1", "vni": 0, "created_by": "nobody"
    })
    .to_string();
    a.daemon
        .client()
        .with_node(move |n, now| {
            n.db_mut().create_entry(
                now,
                agent::cnm::NETWORKS_TABLE.into(),
                agent::cnm::GLOBAL_NETWORK.into(),
                "evil".into(),
                evil.into_bytes(),
            )
        })
        .await
        .unwrap()
        .unwrap();
    let red = a
        .api
        .create_network(&network("red", "198.18.40.0/24"))
        .await
        .unwrap();
    assert!(
        a.api
            .networks()
            .await
            .unwrap()
            .iter()
            .all(|n| n.name != "evil")
    );
    assert!(a.api.endpoints(Some("red")).await.unwrap().is_empty());

    let mut e1 = endpoint("red", "e1");
    e1.ip = Some("198.18.40.10".into());
    e1.mac = Some("02:42:00:00:00:01".into());
    a.api.create_endpoint(&e1).await.unwrap();
    let mut e2 = endpoint("red", "e2");
    e2.service = Some(ServiceCreate {
        name: "s".into(),
        vip: Some("198.18.40.10".into()),
        aliases: Vec::new(),
    });
    refused(a.api.create_endpoint(&e2).await, 409, "virtual IP");
    let mut e3 = endpoint("red", "e3");
    e3.mac = Some("02:42:00:00:00:01".into());
    refused(a.api.create_endpoint(&e3).await, 409, "MAC address");
    // Two tasks of one service share its VIP.
    for name in ["t1", "t2"] {
        let mut t = endpoint("red", name);
        t.service = Some(ServiceCreate {
            name: "web".into(),
            vip: Some("198.18.40.200".into()),
            aliases: Vec::new(),
        });
        a.api.create_endpoint(&t).await.unwrap();
    }
    assert_eq!(a.api.endpoints(Some(&red.id)).await.unwrap().len(), 3);
}

/// What `dns lookup` gives on `agent` for `name` on `network`: the outcome and the answers.
async fn lookup(agent: &Agent, name: &str, network: &str) -> (String, Vec<String>) {
    let a = agent
        .api
        .dns_lookup(&DnsQuery {
            name: name.into(),
            network: Some(network.into()),
            ..DnsQuery::default()
        })
        .await
        .unwrap();
    (a.outcome, a.answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_discovery_follows_the_endpoint_table_across_agents() {
    let (_dir, agents) = cluster("sd", 2).await;
    let (a, b) = (&agents[0], &agents[1]);
    a.api
        .create_network(&network("sdnet", "198.18.6.0/24"))
        .await
        .unwrap();
    wait_network(b, "sdnet").await;
    let vip = "198.18.6.200";
    let task = |name: &str| EndpointCreate {
        service: Some(ServiceCreate {
            name: "web".into(),
            vip: Some(vip.into()),
            aliases: vec!["front".into()],
        }),
        ..endpoint("sdnet", name)
    };
    let mut joined = Vec::new();
    for (agent, req) in [
        (a, task("web1")),
        (b, task("web2")),
        (
            b,
            EndpointCreate {
                aliases: vec!["database".into()],
                ..endpoint("sdnet", "db1")
            },
        ),
    ] {
        let name = req.name.clone();
        let sandbox = format!("sb-{name}");
        if name == "web2" {
            // node2 is in the network's NetworkDB network already (as after a restart) and
            // holds web1's record before its first endpoint: service discovery must not
            // miss it (it did: the record arrived before the directory was attached).
            let id = wait_network(b, "sdnet").await.id;
            let nid = id.clone();
            b.daemon
                .client()
                .with_node(move |node, now| node.db_mut().join_network(now, nid.as_str().into()))
                .await
                .unwrap()
                .unwrap();
            poll_until_async("web1's record on node2", PATIENCE, async || {
                accept(table(b, ENDPOINT_TABLE, &id).await.len(), |&n| n > 0)
            })
            .await;
        }
        agent
            .api
            .create_sandbox(&SandboxCreate {
                name: sandbox.clone(),
                netns: format!("/var/run/netns/netagent-test-none-{name}"),
                resolv_conf: None,
                engine: None,
            })
            .await
            .unwrap();
        // web2 shares web1's VIP from another agent: the same service, not a conflict.
        let e = agent.api.create_endpoint(&req).await.unwrap();
        agent.api.join("sdnet", &name, &sandbox).await.unwrap();
        joined.push(e);
    }
    let ip = |name: &str| {
        joined
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .ip
            .to_string()
    };

    // The other agent's container by name (any case) and alias; the service by its VIP and
    // its alias; every task behind tasks.<service>; the PTR of an address.
    let want_tasks = {
        let mut v = vec![ip("web1"), ip("web2")];
        v.sort_by_key(|s| s.parse::<Ipv4Addr>().unwrap());
        v
    };
    let answer = |ips: Vec<String>| ("answer".to_owned(), ips);
    for (name, want) in [
        ("db1", answer(vec![ip("db1")])),
        ("DB1.", answer(vec![ip("db1")])),
        ("database", answer(vec![ip("db1")])),
        ("db1.sdnet", answer(vec![ip("db1")])),
        ("web", answer(vec![vip.into()])),
        ("front", answer(vec![vip.into()])),
        ("tasks.web", answer(want_tasks.clone())),
        ("tasks.front", answer(want_tasks.clone())),
        (&ip("db1"), answer(vec!["db1.sdnet.".into()])),
        ("nothing", ("forward".into(), Vec::new())),
    ] {
        poll_until_async(
            &format!("{name} resolving to {want:?} on node1"),
            PATIENCE,
            async || accept(lookup(a, name, "sdnet").await, |got| *got == want),
        )
        .await;
    }
    let v6 = a
        .api
        .dns_lookup(&DnsQuery {
            name: "db1".into(),
            network: Some("sdnet".into()),
            record_type: Some("AAAA".into()),
            ..DnsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(v6.outcome, "nodata");

    // The same names on the agent that created its endpoints before the others joined.
    for (name, want) in [
        ("web1", answer(vec![ip("web1")])),
        ("tasks.web", answer(want_tasks.clone())),
    ] {
        poll_until_async(
            &format!("{name} resolving to {want:?} on node2"),
            PATIENCE,
            async || accept(lookup(b, name, "sdnet").await, |got| *got == want),
        )
        .await;
    }

    // A leave withdraws the name everywhere; the VIP stays while a task remains.
    b.api.leave("sdnet", "db1").await.unwrap();
    b.api.leave("sdnet", "web2").await.unwrap();
    poll_until_async("db1 gone on node1", PATIENCE, async || {
        accept(lookup(a, "db1", "sdnet").await, |(outcome, _)| {
            outcome == "forward"
        })
    })
    .await;
    poll_until_async("tasks.web down to web1 on node1", PATIENCE, async || {
        let want = answer(vec![ip("web1")]);
        accept(lookup(a, "tasks.web", "sdnet").await, |got| *got == want)
    })
    .await;
    assert_eq!(lookup(a, "web", "sdnet").await, answer(vec![vip.into()]));
    assert_eq!(lookup(b, "web1", "sdnet").await, answer(vec![ip("web1")]));

    // A drained task (libnetwork DisableService): its names go on every node and come back
    // when it is enabled again; a plain container cannot be disabled.
    let drained = a
        .api
        .set_service_enabled("sdnet", "web1", false)
        .await
        .unwrap();
    assert!(drained.service.as_ref().is_some_and(|s| s.disabled));
    for agent in [a, b] {
        poll_until_async("web1 drained", PATIENCE, async || {
            let seen = [
                lookup(agent, "web1", "sdnet").await,
                lookup(agent, "web", "sdnet").await,
                lookup(agent, "tasks.web", "sdnet").await,
            ];
            accept(seen, |seen| {
                seen.iter().all(|(outcome, _)| outcome == "forward")
            })
        })
        .await;
    }
    a.api
        .set_service_enabled("sdnet", "web1", true)
        .await
        .unwrap();
    poll_until_async("web1 enabled again on node2", PATIENCE, async || {
        let want = answer(vec![vip.into()]);
        accept(lookup(b, "web", "sdnet").await, |got| *got == want)
    })
    .await;
    refused(
        b.api.set_service_enabled("sdnet", "db1", false).await,
        409,
        "not a task of a service",
    );

    // Misuse is refused with the usual meanings.
    let mut other_vip = task("web3");
    if let Some(s) = other_vip.service.as_mut() {
        s.vip = Some("198.18.6.201".into());
    }
    refused(
        b.api.create_endpoint(&other_vip).await,
        409,
        "service web has virtual IP 198.18.6.200",
    );
    let mut no_vip = task("web3");
    if let Some(s) = no_vip.service.as_mut() {
        s.vip = None;
    }
    refused(b.api.create_endpoint(&no_vip).await, 409, "service web has");
    for path in [
        "/etc/resolv.conf",
        "/etc/netns/c/hosts",
        "relative/resolv.conf",
        "/a/../resolv.conf",
    ] {
        refused(
            a.api
                .create_sandbox(&SandboxCreate {
                    name: "sb-bad".into(),
                    netns: "/var/run/netns/x".into(),
                    resolv_conf: Some(path.into()),
                    engine: None,
                })
                .await,
            400,
            "invalid resolv_conf",
        );
    }
    let bad = |q: DnsQuery| async move { a.api.dns_lookup(&q).await };
    refused(
        bad(DnsQuery {
            name: "x".into(),
            ..DnsQuery::default()
        })
        .await,
        400,
        "exactly one of network and sandbox",
    );
    refused(
        bad(DnsQuery {
            name: "x".into(),
            network: Some("sdnet".into()),
            record_type: Some("MX".into()),
            ..DnsQuery::default()
        })
        .await,
        400,
        "A, AAAA or PTR",
    );
    refused(
        bad(DnsQuery {
            name: "x".into(),
            network: Some("nonet".into()),
            ..DnsQuery::default()
        })
        .await,
        404,
        "nonet",
    );
}

/// Issue 13 through the API: endpoints created at the same time on two agents get distinct
/// addresses from the cluster-wide allocator; a given address held on another agent is a 409;
/// `ipam show` tells who owns the blocks; the space of a live node is not reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_unique_across_agents_and_the_pool_is_shown() {
    let (_dir, agents) = cluster("ipam", 2).await;
    let (a, b) = (&agents[0], &agents[1]);
    a.api
        .create_network(&network("ipnet", "198.18.48.0/24"))
        .await
        .unwrap();
    wait_network(b, "ipnet").await;
    let mut calls = tokio::task::JoinSet::new();
    for k in 0..10 {
        for (i, agent) in [a, b].into_iter().enumerate() {
            let req = endpoint("ipnet", &format!("n{i}-{k}"));
            let api = ApiClient::new(agent.daemon.api_addr().clone());
            calls.spawn(async move { api.create_endpoint(&req).await });
        }
    }
    let created: Vec<Endpoint> = calls
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ips: std::collections::BTreeSet<_> = created.iter().map(|e| e.ip).collect();
    assert_eq!(ips.len(), 20, "{created:?}");
    let held = created.iter().find(|e| e.name == "n0-0").unwrap().ip;
    let given = endpoint_at("ipnet", "copy", &held.to_string());
    refused(
        b.api.create_endpoint(&given).await,
        409,
        "Address already in use",
    );

    let pool = b.api.pool("ipnet").await.unwrap();
    assert_eq!(pool.subnet.to_string(), "198.18.48.0/24");
    assert_eq!(pool.block_size, 16);
    assert_eq!(pool.owners.values().sum::<u32>(), 16, "{pool:?}");
    assert!(
        pool.owners.get("node2").is_some_and(|n| *n >= 1),
        "{pool:?}"
    );
    refused(b.api.reclaim("node1").await, 409, "alive");
    refused(b.api.pool("nope").await, 404, "not found");
}

/// Found by reading the allocator (a gap `docs/IPAM.md` listed): a value a dead node had lent
/// to a live one was unknown to the heir of the dead node's space, which could hand it out
/// again. node2 borrows .200 from node1's block; node1 leaves; node3 reclaims node1's space
/// and is its heir: .200 stays node2's until node2 releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclaimed_nodes_loans_stay_with_their_borrowers() {
    let (_dir, mut agents) = cluster("loans", 3).await;
    let c = agents.pop().unwrap();
    let b = agents.pop().unwrap();
    let a = agents.pop().unwrap();
    a.api
        .create_network(&network("loannet", "198.18.49.0/24"))
        .await
        .unwrap();
    wait_network(&b, "loannet").await;
    wait_network(&c, "loannet").await;
    // node3 is given a block (so it is the heir later); node2 borrows one value.
    c.api
        .create_endpoint(&endpoint("loannet", "c3"))
        .await
        .unwrap();
    let lent = "198.18.49.200";
    b.api
        .create_endpoint(&endpoint_at("loannet", "borrowed", lent))
        .await
        .unwrap();
    // node3 hears of the loan (node2's entry).
    poll_until_async("node2's loan known to node3", PATIENCE, async || {
        let loans = table(&c, ipam::LOANS_TABLE, "netagent.global").await;
        accept(loans.len(), |n| *n == 1)
    })
    .await;

    // node1 leaves: its empty blocks go to node3; the block it lent from stays node1's.
    a.daemon.shutdown().await;
    let answer = poll_until_async("node1 reclaimable", PATIENCE, async || {
        c.api.reclaim("node1").await.map_err(|e| e.to_string())
    })
    .await;
    assert!(answer.blocks >= 1, "{answer:?}");
    let pool = c.api.pool("loannet").await.unwrap();
    assert!(!pool.owners.contains_key("node1"), "{pool:?}");

    let again = endpoint_at("loannet", "again", lent);
    refused(
        c.api.create_endpoint(&again).await,
        409,
        "Address already in use",
    );
    // Released by its borrower: the heir may give it.
    b.api.remove_endpoint("loannet", "borrowed").await.unwrap();
    let taken = poll_until_async("the released value given by node3", PATIENCE, async || {
        c.api
            .create_endpoint(&again)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(taken.ip.to_string(), lent);
}
