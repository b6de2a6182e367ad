//! Service-discovery convergence: the time from an endpoint join on one agent until its name
//! resolves on another, and from its leave until the name is gone there.
//!
//! Two agents run in this process on loopback (real UDP/TCP sockets, insecure mode), as
//! `netagent run` would; the other agent's resolution is read from the same directory its
//! embedded DNS servers answer from, polled every 50 µs on a thread of its own.
//!
//! ```text
//! cargo run --release -p agent --bin sd_bench [-- TRIALS]
//! ```
//!
//! Bounded: at most 1000 trials, each given up after 10 s.

#[path = "common/mod.rs"]
mod common;

use common::pair::BenchResult;
use std::time::{Duration, Instant};

use agent::cnm::{EndpointCreate, NetworkCreate, SandboxCreate};
use agent::dns::directory::Directory;
use agent::dns::server::Names;
use discovery::{Family, Lookup};

const TRIALS: usize = 100;
const MAX_TRIALS: usize = 1000;
const GIVE_UP: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_micros(50);

fn main() -> BenchResult<()> {
    let trials = std::env::args()
        .nth(1)
        .map(|a| a.parse::<usize>())
        .transpose()?
        .unwrap_or(TRIALS)
        .clamp(1, MAX_TRIALS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(trials))
}

/// Polls `directory` on a thread until `name` resolves on `network` (or stops resolving,
/// with `gone`); returns when that happened.
fn wait_on_thread(
    directory: Directory,
    network: String,
    name: String,
    gone: bool,
) -> std::thread::JoinHandle<Option<Instant>> {
    std::thread::spawn(move || {
        let names = directory.networks(vec![network]);
        let deadline = Instant::now() + GIVE_UP;
        while Instant::now() < deadline {
            let resolves = matches!(names.resolve(&name, Family::V4), Lookup::Addrs(_));
            if resolves != gone {
                return Some(Instant::now());
            }
            std::thread::sleep(POLL);
        }
        None
    })
}

async fn run(trials: usize) -> BenchResult<()> {
    let (root, a, b) = common::pair::start_pair("sd").await?;
    let net = a
        .cnm()
        .create_network(NetworkCreate {
            name: "bench".into(),
            driver: None,
            subnet: "198.18.64.0/20".into(),
            vni: None,
        })
        .await?;
    // b needs an endpoint on the network to attach to it (an agent resolves only on its
    // networks), and both need a sandbox.
    for (d, name) in [(&a, "sa"), (&b, "sb")] {
        d.cnm()
            .create_sandbox(SandboxCreate {
                name: name.into(),
                netns: format!("/run/netns/netagent-sd-bench-none-{name}"),
                resolv_conf: None,
                engine: None,
            })
            .await?;
    }
    let deadline = Instant::now() + GIVE_UP;
    while b.cnm().network("bench").await.is_err() {
        if Instant::now() > deadline {
            return Err("the network did not reach the second agent".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.cnm()
        .create_endpoint(EndpointCreate {
            network: "bench".into(),
            name: "anchor".into(),
            ..EndpointCreate::default()
        })
        .await?;
    b.cnm().join("bench", "anchor", "sb").await?;
    let directory = b.cnm().settings().directory.clone();
    let mut joins = Vec::with_capacity(trials);
    let mut leaves = Vec::with_capacity(trials);
    for i in 0..trials {
        let name = format!("task-{i}");
        a.cnm()
            .create_endpoint(EndpointCreate {
                network: "bench".into(),
                name: name.clone(),
                ..EndpointCreate::default()
            })
            .await?;
        let waiter = wait_on_thread(directory.clone(), net.id.clone(), name.clone(), false);
        let t0 = Instant::now();
        a.cnm().join("bench", &name, "sa").await?;
        let seen = tokio::task::spawn_blocking(move || waiter.join())
            .await?
            .map_err(|_| "poller panicked")?;
        joins.push(seen.map(|t| t - t0));
        let waiter = wait_on_thread(directory.clone(), net.id.clone(), name.clone(), true);
        let t0 = Instant::now();
        a.cnm().leave("bench", &name).await?;
        let gone = tokio::task::spawn_blocking(move || waiter.join())
            .await?
            .map_err(|_| "poller panicked")?;
        leaves.push(gone.map(|t| t - t0));
        a.cnm().remove_endpoint("bench", &name).await?;
    }
    report("join on agent A -> name resolves on agent B", &joins);
    report("leave on agent A -> name gone on agent B", &leaves);
    let stats = directory.stats();
    println!(
        "agent B applied {} endpoint_table changes ({} invalid)",
        stats.applied, stats.invalid_records
    );
    a.shutdown().await;
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

fn report(what: &str, samples: &[Option<Duration>]) {
    let mut ok: Vec<Duration> = samples.iter().flatten().copied().collect();
    ok.sort();
    let missed = samples.len() - ok.len();
    if ok.is_empty() {
        println!("{what}: no sample converged within {GIVE_UP:?} ({missed} missed)");
        return;
    }
    let pct = |p: f64| ok[((ok.len() - 1) as f64 * p).round() as usize];
    println!(
        "{what}: {} trials, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
        ok.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(ok[ok.len() - 1]),
        if missed > 0 {
            format!(", {missed} not within {GIVE_UP:?}")
        } else {
            String::new()
        }
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
