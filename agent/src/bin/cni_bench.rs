//! What a CNI runtime waits for: the time of the plugin's `ADD` (attach a container namespace:
//! address from the cluster-wide allocator, veth into the namespace, addressed and up, records
//! published) and `DEL`, from the plugin's command to its answer.
//!
//! One agent runs in this process on loopback with its overlay dataplane (root: real
//! namespaces, veths, VXLAN); each trial makes a fresh network namespace, runs `ADD` and `DEL`
//! through the plugin's code (`agent::cni::run`: configuration parsing, the control API over
//! its unix socket, the agent's work), and removes the namespace. The first `ADD` also builds
//! the network's overlay namespace and is reported apart. Spawning the plugin binary adds a
//! process start (about a millisecond) on top.
//!
//! ```text
//! sudo cargo run --release -p agent --bin cni_bench [-- TRIALS]
//! ```
//!
//! Bounded: at most 500 trials; each command is given up after 30 s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent::cni::{CniEnv, Outcome, run};
use agent::config::{AgentConfig, is_root};
use agent::daemon::Daemon;

const TRIALS: usize = 50;
const MAX_TRIALS: usize = 500;
const GIVE_UP: Duration = Duration::from_secs(30);

type BenchResult<T> = Result<T, String>;

fn main() -> BenchResult<()> {
    if !is_root() {
        return Err("cni_bench needs root: it attaches real network namespaces".into());
    }
    // RUST_LOG=agent=debug shows where an attach spends its time.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let trials = match std::env::args().nth(1) {
        Some(t) => t
            .parse::<usize>()
            .map_err(|e| format!("TRIALS: {e}"))?
            .clamp(1, MAX_TRIALS),
        None => TRIALS,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(bench(trials))
}

/// A network namespace of the benchmark, removed when dropped.
struct Netns(String, PathBuf);

impl Netns {
    fn new(i: usize) -> BenchResult<Self> {
        let name = format!("cnib{}-{i}", std::process::id());
        let path = overlay::netlink::lab::add_netns(&name).map_err(|e| e.to_string())?;
        Ok(Self(name, path))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = overlay::netlink::lab::del_netns(&self.0);
    }
}

async fn timed(env: &CniEnv, conf: &[u8]) -> BenchResult<Duration> {
    let started = Instant::now();
    let outcome: Outcome = tokio::time::timeout(GIVE_UP, run(env, conf))
        .await
        .map_err(|_| format!("{:?} took over {GIVE_UP:?}", env.command))?;
    if outcome.status != 0 {
        return Err(format!("{:?}: {}", env.command, outcome.stdout));
    }
    Ok(started.elapsed())
}

async fn bench(trials: usize) -> BenchResult<()> {
    let dir = std::env::temp_dir().join(format!("netagent-cni-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = AgentConfig::local("bench", dir.join("node"));
    let daemon = Daemon::start(&config).await.map_err(|e| e.to_string())?;
    let conf = serde_json::to_vec(&serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "netctl-cni",
        "subnet": "198.18.124.0/22",
        "agent": daemon.api_addr().to_string(),
    }))
    .map_err(|e| e.to_string())?;
    let env = |command: &str, i: usize, netns: &Netns| CniEnv {
        command: Some(command.into()),
        container_id: Some(format!("{i:064x}")),
        netns: Some(netns.1.display().to_string()),
        ifname: Some("eth0".into()),
        args: Some(format!("K8S_POD_NAME=bench{i}")),
    };
    let result = async {
        // The first attach also creates the network and its overlay namespace.
        let first_ns = Netns::new(0)?;
        let first_add = timed(&env("ADD", 0, &first_ns), &conf).await?;
        let first_del = timed(&env("DEL", 0, &first_ns), &conf).await?;
        drop(first_ns);
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        // A second container stays attached, so the network's namespace stays up as it
        // would on a host with containers.
        let keeper = Netns::new(trials + 1)?;
        timed(&env("ADD", trials + 1, &keeper), &conf).await?;
        for i in 1..=trials {
            let ns = Netns::new(i)?;
            adds.push(timed(&env("ADD", i, &ns), &conf).await?);
            dels.push(timed(&env("DEL", i, &ns), &conf).await?);
        }
        timed(&env("DEL", trials + 1, &keeper), &conf).await?;
        println!("cni_bench: {trials} trials, one agent with its overlay dataplane (root)");
        println!(
            "first ADD (creates the network and its overlay namespace): {first_add:.2?}; its DEL: {first_del:.2?}"
        );
        report("ADD", &mut adds);
        report("DEL", &mut dels);
        Ok(())
    }
    .await;
    daemon.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    println!(
        "{what}: p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        at(0.5),
        at(0.99),
        samples.last().copied().unwrap_or_default()
    );
}
