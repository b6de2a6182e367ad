//! `netagent demo`: a three-node cluster on loopback in one process, on real sockets with
//! mutual TLS and the AEAD keyring (an ephemeral CA and key written to a temporary
//! directory), driven through the same [`Daemon`] as `netagent run`. It shows membership
//! forming, entries converging, a killed node's entries hidden and a graceful leave, and
//! exits 0 when every step held.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::shell::Client;

use crate::config::{AgentConfig, SecurityConfig};
use crate::daemon::Daemon;
use crate::pki::ClusterCa;

const NODES: usize = 3;
const NETWORK: &str = "demo-net";
const TABLE: &str = "overlay_peer_table";
/// Every wait of the demo gives up after this long.
const PATIENCE: Duration = Duration::from_secs(20);

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[error("demo failed: {0}")]
pub struct DemoError(String);

fn fail(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Runs the demo, printing each step.
pub async fn run() -> Result<(), DemoError> {
    let dir = std::env::temp_dir().join(format!("netagent-demo-{}", std::process::id()));
    let result = run_in(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &Path) -> Result<(), DemoError> {
    let start = Instant::now();
    let at = move || format!("[{:>6} ms]", start.elapsed().as_millis());
    let names: Vec<String> = (1..=NODES).map(|i| format!("demo-{i}")).collect();
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

    for c in &clients {
        c.with_node(|n, now| n.db_mut().join_network(now, NETWORK.into()))
            .await
            .map_err(fail)?
            .map_err(fail)?;
    }
    for (i, c) in clients.iter().enumerate() {
        let value = format!(
            "198.18.100.{}/24 02:42:c6:12:64:{:02x} vtep 127.0.0.1",
            10 + i,
            10 + i
        );
        c.with_node(move |n, now| {
            n.db_mut().create_entry(
                now,
                TABLE.into(),
                NETWORK.into(),
                format!("endpoint-{}", i + 1).into(),
                value.into_bytes(),
            )
        })
        .await
        .map_err(fail)?
        .map_err(fail)?;
    }
    let written = Instant::now();
    wait("every agent holds the three endpoints", || async {
        for c in &clients {
            if entries(c).await?.len() != NODES {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    println!(
        "{} converged {} ms after the writes: every agent holds 3 endpoints",
        at(),
        written.elapsed().as_millis()
    );
    print_table(&clients[0]).await?;
    if let Some(d) = &daemons[1] {
        let path = format!("/gettable?nid={NETWORK}&tname={TABLE}&unsafe");
        let body = http_get(d.diag_addr(), &path).await?;
        println!(
            "{} the libnetwork diagnostic API of demo-2 (curl 'http://{}{path}'):",
            at(),
            d.diag_addr()
        );
        for line in body.lines() {
            println!("      {line}");
        }
    }

    if let Some(d) = daemons[2].take() {
        println!("{} killing {} (no goodbye)", at(), d.identity().db_name());
        d.kill();
    }
    wait("the killed agent's endpoint is hidden", || async {
        Ok(entries(&clients[0]).await?.len() == NODES - 1)
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
        Ok(entries(&clients[0]).await?.len() == 1)
    })
    .await?;
    println!("{} demo-1 dropped demo-2's endpoint for good", at());
    print_table(&clients[0]).await?;
    if let Some(d) = daemons[0].take() {
        d.shutdown().await;
    }
    println!("{} demo OK", at());
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

async fn entries(c: &Client) -> Result<Vec<(String, String, String)>, DemoError> {
    c.with_node(|n, _| {
        n.db()
            .table_by_network(TABLE, NETWORK)
            .into_iter()
            .map(|(k, e)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(&e.value).into_owned(),
                    e.owner.to_string(),
                )
            })
            .collect()
    })
    .await
    .map_err(fail)
}

async fn print_table(c: &Client) -> Result<(), DemoError> {
    let name = c
        .with_node(|n, _| n.identity().db_name().to_string())
        .await
        .map_err(fail)?;
    println!("    {name} sees {TABLE} in {NETWORK}:");
    for (k, v, owner) in entries(c).await? {
        println!("      {k} -> {v} (owner {owner})");
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
