//! `netagent demo`: a three-node cluster on loopback in one process, on real sockets with
//! mutual TLS and the AEAD keyring (an ephemeral CA and key written to a temporary
//! directory), driven through the same [`Daemon`] and control plane as `netagent run`: a
//! network created on one agent is known to all, each agent joins an endpoint to a sandbox
//! (publishing libnetwork's `PeerRecord`), the records converge, a killed agent's record is
//! hidden and a leaver's dropped.
//!
//! Run as root (and with `ip` installed), it then uses the real dataplane (the `kernel` submodule):
//! three `netagent run` processes in network namespaces of their own, one container
//! namespace per host, and a ping between containers across VXLAN; everything it made is
//! removed on the way out. Otherwise it prints that this part was skipped. It exits 0 when
//! every step held.

mod kernel;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::NodeClient as Client;
use overlay::PeerRecord;

use crate::cnm::{DnsQuery, EndpointCreate, NetworkCreate, SandboxCreate, ServiceCreate};
use crate::config::{AgentConfig, SecurityConfig};
use crate::daemon::Daemon;
use crate::pki::ClusterCa;

const NODES: usize = 3;
/// The node names, also the names of the demo's certificates.
fn node_name(i: usize) -> String {
    format!("demo-{i}")
}
const NETWORK: &str = "demo-net";
const SUBNET: &str = "198.18.100.0/24";
const VIP: &str = "198.18.100.250";
const TABLE: &str = "overlay_peer_table";
/// Every wait of the demo gives up after this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[error("demo failed: {0}")]
pub struct DemoError(String);

fn fail(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Prints what a container on the demo network gets from `d`'s embedded DNS for the
/// service, its tasks, a task name and that task's address: service discovery built from
/// the other agents' `endpoint_table` records.
async fn print_names(d: &Daemon, at: &str) -> Result<(), DemoError> {
    println!(
        "{at} service discovery on {} (`netagent dns lookup NAME --network {NETWORK}`; the same \
         records its embedded DNS server answers from at 127.0.0.11 in each container):",
        d.identity().db_name()
    );
    let lookup = |name: String| async move {
        d.cnm()
            .dns_lookup(DnsQuery {
                name,
                network: Some(NETWORK.into()),
                ..DnsQuery::default()
            })
            .await
            .map_err(fail)
    };
    let web1 = lookup("web1".into()).await?;
    let mut names = vec!["web".to_owned(), "tasks.web".to_owned(), "web1".to_owned()];
    names.extend(web1.answers.first().cloned());
    for name in names {
        let a = lookup(name).await?;
        let answers = if a.answers.is_empty() {
            a.outcome
        } else {
            a.answers.join(", ")
        };
        println!("      {} {} -> {answers}", a.name, a.record_type);
    }
    Ok(())
}

/// Runs the demo, printing each step.
pub async fn run() -> Result<(), DemoError> {
    let dir = std::env::temp_dir().join(format!("netagent-demo-{}", std::process::id()));
    let mut result = run_in(&dir).await;
    if result.is_ok() {
        result = kernel::run(&dir).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if result.is_ok() {
        println!("demo OK");
    }
    result
}

async fn run_in(dir: &Path) -> Result<(), DemoError> {
    let start = Instant::now();
    let at = move || format!("[{:>6} ms]", start.elapsed().as_millis());
    let names: Vec<String> = (1..=NODES).map(node_name).collect();
    let pki = dir.join("pki");
    ClusterCa::generate("netagent demo CA")
        .and_then(|ca| ca.write_bundle(&pki, &names))
        .map_err(fail)?;
    println!(
        "{} netagent demo: {NODES} agents on 127.0.0.1, mutual TLS and AES-256-GCM gossip \
         (ephemeral CA and key in {})",
        at(),
        pki.display()
    );

    let mut daemons: Vec<Option<Daemon>> = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for name in &names {
        let config = demo_config(dir, &pki, name, seed);
        let daemon = Daemon::start(&config).await.map_err(fail)?;
        println!(
            "{} started {} (gossip {}, diagnostic API http://{})",
            at(),
            daemon.identity().db_name(),
            daemon.identity().addr,
            daemon.diag_addr()
        );
        seed.get_or_insert(daemon.identity().addr);
        daemons.push(Some(daemon));
    }
    let clients: Vec<Client> = daemons.iter().flatten().map(Daemon::client).collect();

    wait("every agent sees the two others", || async {
        for c in &clients {
            if members(c).await? != NODES - 1 {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    println!("{} cluster formed: 3 members everywhere", at());

    // The control plane as users drive it (what `netagent network create`, `sandbox create`,
    // `endpoint create` and `endpoint join` call): one network created on demo-1 is known
    // everywhere; each agent joins one endpoint of service `web` to a sandbox, which
    // publishes libnetwork's PeerRecord and EndpointRecord.
    let cnms: Vec<_> = daemons.iter().flatten().map(|d| d.cnm().clone()).collect();
    let spec = cnms[0]
        .create_network(NetworkCreate {
            name: NETWORK.into(),
            driver: Some("overlay".into()),
            subnet: SUBNET.into(),
            vni: None,
        })
        .await
        .map_err(fail)?;
    println!(
        "{} demo-1 created network {NETWORK} ({SUBNET}, VNI {}, id {})",
        at(),
        spec.vni,
        &spec.id[..12]
    );
    wait("every agent lists the network", || async {
        for cnm in &cnms {
            if cnm.network(NETWORK).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    let written = Instant::now();
    for (i, cnm) in cnms.iter().enumerate() {
        let sandbox = format!("c{}", i + 1);
        cnm.create_sandbox(SandboxCreate {
            name: sandbox.clone(),
            netns: format!("/var/run/netns/demo-{sandbox}"),
            resolv_conf: None,
            engine: None,
        })
        .await
        .map_err(fail)?;
        let endpoint = cnm
            .create_endpoint(EndpointCreate {
                network: NETWORK.into(),
                name: format!("web{}", i + 1),
                service: Some(ServiceCreate {
                    name: "web".into(),
                    vip: Some(VIP.into()),
                    aliases: Vec::new(),
                }),
                ..EndpointCreate::default()
            })
            .await
            .map_err(fail)?;
        cnm.join(NETWORK, &endpoint.name, &sandbox)
            .await
            .map_err(fail)?;
    }
    wait("every agent holds the three endpoints", || async {
        for c in &clients {
            if peers(c, &spec.id).await?.len() != NODES {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    println!(
        "{} converged {} ms after the joins: every agent holds 3 endpoints",
        at(),
        written.elapsed().as_millis()
    );
    print_table(&clients[0], &spec.id).await?;
    if let Some(d) = &daemons[1] {
        let path = format!("/gettable?nid={}&tname={TABLE}", spec.id);
        let body = http_get(d.diag_addr(), &path).await?;
        println!(
            "{} the libnetwork diagnostic API of demo-2 (curl 'http://{}/gettable?nid=<id>&tname={TABLE}'), values as libnetwork's protobuf:",
            at(),
            d.diag_addr()
        );
        for line in body.lines() {
            println!("      {line}");
        }
    }

    if let Some(d) = &daemons[1] {
        print_names(d, &at()).await?;
    }

    if let Some(d) = daemons[2].take() {
        println!("{} killing {} (no goodbye)", at(), d.identity().db_name());
        d.kill();
    }
    wait("the killed agent's endpoint is hidden", || async {
        Ok(peers(&clients[0], &spec.id).await?.len() == NODES - 1)
    })
    .await?;
    println!(
        "{} failure detected: demo-1 hides demo-3's endpoint (kept for its return)",
        at()
    );

    if let Some(d) = daemons[1].take() {
        println!("{} {} leaves gracefully", at(), d.identity().db_name());
        d.shutdown().await;
    }
    wait("the leaver's endpoint is gone", || async {
        Ok(peers(&clients[0], &spec.id).await?.len() == 1)
    })
    .await?;
    println!("{} demo-1 dropped demo-2's endpoint for good", at());
    print_table(&clients[0], &spec.id).await?;
    if let Some(d) = daemons[0].take() {
        d.shutdown().await;
    }
    println!("{} in-process part OK", at());
    Ok(())
}

fn demo_config(dir: &Path, pki: &Path, name: &str, seed: Option<SocketAddr>) -> AgentConfig {
    let file = |f: String| -> PathBuf { pki.join(f) };
    let mut config = AgentConfig::local(name, dir.join(name));
    config.join = seed.into_iter().collect();
    config.fast_failure_detection = true;
    config.security = SecurityConfig::Secure {
        key_file: file("gossip.key".into()),
        tls_ca: file("ca.pem".into()),
        tls_cert: file(format!("{name}.pem")),
        tls_key: file(format!("{name}-key.pem")),
    };
    config
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
async fn wait<F, Fut>(what: &str, mut check: F) -> Result<(), DemoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, DemoError>>,
{
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(DemoError(format!(
        "{what}: not within {} s",
        PATIENCE.as_secs()
    )))
}

async fn members(c: &Client) -> Result<usize, DemoError> {
    c.with_node(|n, _| n.members().len()).await.map_err(fail)
}

/// The decoded `overlay_peer_table` of network `nid` as `c`'s node sees it: (endpoint ID,
/// record, owner).
async fn peers(c: &Client, nid: &str) -> Result<Vec<(String, String, String)>, DemoError> {
    let nid = nid.to_owned();
    c.with_node(move |n, _| {
        n.db()
            .table_by_network(TABLE, &nid)
            .into_iter()
            .map(|(k, e)| {
                let record = match PeerRecord::decode(&e.value) {
                    Ok(r) => format!(
                        "{} {} vtep {}",
                        r.endpoint_ip, r.endpoint_mac, r.tunnel_endpoint_ip
                    ),
                    Err(err) => format!("undecodable: {err}"),
                };
                (k.to_string(), record, e.owner.to_string())
            })
            .collect()
    })
    .await
    .map_err(fail)
}

async fn print_table(c: &Client, nid: &str) -> Result<(), DemoError> {
    let name = c
        .with_node(|n, _| n.identity().db_name().to_string())
        .await
        .map_err(fail)?;
    println!("    {name} sees {TABLE} of {NETWORK} (PeerRecords):");
    for (k, record, owner) in peers(c, nid).await? {
        let short = k.get(..12).unwrap_or(&k);
        println!("      {short} -> {record} (owner {owner})");
    }
    Ok(())
}

/// A minimal HTTP/1.1 GET (the demo's own client of the diagnostic API).
async fn http_get(addr: SocketAddr, path: &str) -> Result<String, DemoError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(fail)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(fail)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_owned()),
        None => Err(DemoError(format!("malformed HTTP reply from {addr}"))),
    }
}
