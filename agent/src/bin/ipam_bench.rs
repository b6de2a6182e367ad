//! Cluster-wide IPAM: how long a node that owns no address block waits for its first address,
//! and how many addresses per second a node that owns space hands out.
//!
//! Two agents run in this process on loopback (real UDP/TCP sockets, insecure mode), as
//! `netagent run` would, agent B joined to agent A.
//!
//! 1. **First address on a node that owns nothing.** For each trial `k`, agent A creates the
//!    network `ipb{k}` with the subnet `198.19.{k}.0/24` (A, its creator, owns every block);
//!    once agent B lists it, B's `create_endpoint` is timed from call to answer: B asks A for
//!    a block through NetworkDB and its call waits for the answer. B's second endpoint there,
//!    from the block it got, is timed too. Then the same on a second network `ipc{k}`
//!    (`198.18.{16 + k}.0/24`) with B's call delayed by `k / TRIALS` of a gossip interval
//!    after B lists the network, so that the calls are not in step with A's gossip tick.
//! 2. **Addresses per second on the owner.** Agent A creates `ENDPOINTS` endpoints back to
//!    back on a /20 network (`198.18.0.0/20`) through the same CNM calls, then removes them;
//!    each call includes the agent's durable save of its state (`cnm.json`, fsync'd).
//!    Then the same without daemons: a node core on a lone in-memory NetworkDB (no sockets,
//!    no saves: the state events are dropped), creating and then removing as many endpoints.
//!
//! ```text
//! cargo run --release -p agent --bin ipam_bench [-- TRIALS [ENDPOINTS]]
//! ```
//!
//! Bounded: at most 200 trials and 4000 endpoints; each call given up after 10 s, each phase
//! of part 2 after 120 s, each agent's shutdown after 20 s.

#[path = "common/mod.rs"]
mod common;

use common::pair::BenchResult;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use agent::cnm::{EndpointCreate, NetworkCreate};
use agent::daemon::Daemon;
use networkdb::{NetworkDb, NodeName, Output};
use nodecore::{LocalState, NodeCore, Settings, Started};

const TRIALS: usize = 30;
const MAX_TRIALS: usize = 200;
const ENDPOINTS: usize = 2000;
/// A /20 has 4093 host addresses besides the gateway.
const MAX_ENDPOINTS: usize = 4000;
const RATE_SUBNET: &str = "198.18.0.0/20";
const GIVE_UP: Duration = Duration::from_secs(10);
const PHASE_LIMIT: Duration = Duration::from_secs(120);
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(20);
/// NetworkDB's default gossip interval: table events leave a node only on its gossip tick.
const GOSSIP: Duration = Duration::from_millis(200);

fn main() -> BenchResult<()> {
    let mut args = std::env::args().skip(1);
    let trials = args
        .next()
        .map(|a| a.parse::<usize>())
        .transpose()?
        .unwrap_or(TRIALS)
        .clamp(1, MAX_TRIALS);
    let endpoints = args
        .next()
        .map(|a| a.parse::<usize>())
        .transpose()?
        .unwrap_or(ENDPOINTS)
        .clamp(1, MAX_ENDPOINTS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // The node core alone first, while no agent runs.
    let (created, removed) = core_rate(endpoints)?;
    let result = runtime.block_on(run(trials, endpoints));
    // An agent still busy after its bounded shutdown must not keep the process.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result?;
    rate(
        "nodecore alone (in-memory NetworkDB): create_endpoint",
        &created,
    );
    rate(
        "nodecore alone (in-memory NetworkDB): remove_endpoint",
        &removed,
    );
    Ok(())
}

async fn run(trials: usize, endpoints: usize) -> BenchResult<()> {
    let (root, a, b) = common::pair::start_pair("ipam").await?;

    let mut firsts = Vec::with_capacity(trials);
    let mut seconds = Vec::with_capacity(trials);
    let mut spread = Vec::with_capacity(trials);
    for k in 0..trials {
        let (first, second) = first_address(
            &a,
            &b,
            &format!("ipb{k}"),
            &format!("198.19.{k}.0/24"),
            None,
        )
        .await?;
        firsts.push(first);
        seconds.push(second);
        // The same after a delay spread evenly over one gossip interval, so that the call is
        // not in step with agent A's gossip tick (B saw the network just after one).
        let delay = GOSSIP * u32::try_from(k)? / u32::try_from(trials)?;
        let subnet = format!("198.18.{}.0/24", 16 + k);
        let (first, _) = first_address(&a, &b, &format!("ipc{k}"), &subnet, Some(delay)).await?;
        spread.push(first);
    }
    report(
        "agent B, owns nothing: create_endpoint call -> answer (first address)",
        &firsts,
    );
    report(
        "agent B, then owns a block: create_endpoint (second address)",
        &seconds,
    );
    report(
        "agent B, owns nothing, call delayed 0..200 ms after B lists the network",
        &spread,
    );

    a.cnm()
        .create_network(NetworkCreate {
            name: "ipb-rate".into(),
            driver: None,
            subnet: RATE_SUBNET.into(),
            vni: None,
        })
        .await?;
    let mut created = Vec::with_capacity(endpoints);
    let t0 = Instant::now();
    for i in 0..endpoints {
        if t0.elapsed() > PHASE_LIMIT {
            break;
        }
        let req = EndpointCreate {
            network: "ipb-rate".into(),
            name: format!("e{i}"),
            ..EndpointCreate::default()
        };
        tokio::time::timeout(GIVE_UP, a.cnm().create_endpoint(req)).await??;
        created.push(t0.elapsed());
    }
    let mut removed = Vec::with_capacity(created.len());
    let t0 = Instant::now();
    for i in 0..created.len() {
        if t0.elapsed() > PHASE_LIMIT {
            break;
        }
        let name = format!("e{i}");
        tokio::time::timeout(GIVE_UP, a.cnm().remove_endpoint("ipb-rate", &name)).await??;
        removed.push(t0.elapsed());
    }
    rate(
        &format!("agent A, owns every block ({RATE_SUBNET}): create_endpoint"),
        &created,
    );
    rate("agent A: remove_endpoint", &removed);
    // B first: A, the founder, would hand B every empty block of the VNI pool as it leaves.
    for (name, daemon) in [("B", b), ("A", a)] {
        let t0 = Instant::now();
        if tokio::time::timeout(SHUTDOWN_LIMIT, daemon.shutdown())
            .await
            .is_err()
        {
            println!("agent {name} did not shut down within {SHUTDOWN_LIMIT:?}");
        } else if t0.elapsed() > Duration::from_secs(3) {
            println!(
                "agent {name} took {:.1} s to shut down",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Agent A creates `network`; once agent B lists it (after `delay`, if given), B creates two
/// endpoints there. The time of each call, or `None` if it failed or took too long.
async fn first_address(
    a: &Daemon,
    b: &Daemon,
    network: &str,
    subnet: &str,
    delay: Option<Duration>,
) -> BenchResult<(Option<Duration>, Option<Duration>)> {
    a.cnm()
        .create_network(NetworkCreate {
            name: network.into(),
            driver: None,
            subnet: subnet.into(),
            vni: None,
        })
        .await?;
    let deadline = Instant::now() + GIVE_UP;
    while b.cnm().network(network).await.is_err() {
        if Instant::now() > deadline {
            return Err(format!("network {network} did not reach agent B").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut took = [None, None];
    for (slot, name) in took.iter_mut().zip(["first", "second"]) {
        let req = EndpointCreate {
            network: network.into(),
            name: name.into(),
            ..EndpointCreate::default()
        };
        let t0 = Instant::now();
        match tokio::time::timeout(GIVE_UP, b.cnm().create_endpoint(req)).await {
            Ok(Ok(_)) => *slot = Some(t0.elapsed()),
            Ok(Err(e)) => println!("{network}: the {name} endpoint on agent B failed: {e}"),
            Err(_) => println!("{network}: the {name} endpoint on agent B took over {GIVE_UP:?}"),
        }
    }
    // Agent B keeps no endpoint: its state stays small from one trial to the next.
    for name in ["first", "second"] {
        let _ = b.cnm().remove_endpoint(network, name).await;
    }
    Ok((took[0], took[1]))
}

/// A node core on a lone NetworkDB, driven as `nodecore::Stack` drives one (events first,
/// then NetworkDB's outputs, watch events back into the core); nothing is sent or saved.
struct Solo {
    db: NetworkDb,
    core: NodeCore,
}

impl Solo {
    fn new() -> BenchResult<Self> {
        let now = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 7946));
        let mut db = NetworkDb::new(
            now,
            NodeName::new("solo@1"),
            addr,
            1,
            networkdb::Config::default(),
        )?;
        let settings = Settings::new("solo", IpAddr::V4(Ipv4Addr::LOCALHOST), true, 1);
        let core = NodeCore::new(&mut db, now, settings, LocalState::default());
        let mut solo = Self { db, core };
        solo.drain(now);
        Ok(solo)
    }

    fn drain(&mut self, now: Instant) {
        loop {
            // The events (state to save, names) are dropped: nothing waits for an answer on
            // a lone node, which owns every block.
            if self.core.poll_event(&mut self.db, now).is_some() {
                continue;
            }
            match self.db.poll_output() {
                Some(Output::Watch { watch, event }) if self.core.owns_watch(watch) => {
                    self.core.handle_watch(&self.db, now, watch, event);
                }
                Some(_) => {}
                None => break,
            }
        }
    }
}

/// Creates then removes `endpoints` endpoints on a lone node core; the times since the start
/// of each phase, one per operation done.
fn core_rate(endpoints: usize) -> BenchResult<(Vec<Duration>, Vec<Duration>)> {
    let mut solo = Solo::new()?;
    let now = Instant::now();
    let req = nodecore::NetworkCreate {
        name: "ipb-rate".into(),
        subnet: RATE_SUBNET.into(),
        ..Default::default()
    };
    let Started::Done(_) = solo.core.create_network(&solo.db, now, req)? else {
        return Err("the lone node core waited to create a network".into());
    };
    solo.drain(now);
    let mut created = Vec::with_capacity(endpoints);
    let t0 = Instant::now();
    for i in 0..endpoints {
        if t0.elapsed() > PHASE_LIMIT {
            break;
        }
        let now = Instant::now();
        let req = EndpointCreate {
            network: "ipb-rate".into(),
            name: format!("e{i}"),
            ..EndpointCreate::default()
        };
        let Started::Done(_) = solo.core.create_endpoint(&solo.db, now, req)? else {
            return Err("the lone node core waited for an address".into());
        };
        solo.drain(now);
        created.push(t0.elapsed());
    }
    let mut removed = Vec::with_capacity(created.len());
    let t0 = Instant::now();
    for i in 0..created.len() {
        if t0.elapsed() > PHASE_LIMIT {
            break;
        }
        let now = Instant::now();
        solo.core
            .remove_endpoint(now, "ipb-rate", &format!("e{i}"))?;
        solo.drain(now);
        removed.push(t0.elapsed());
    }
    Ok((created, removed))
}

/// Prints the rate of a phase from the cumulative times of its operations.
fn rate(what: &str, done: &[Duration]) {
    let Some(total) = done.last() else {
        println!("{what}: nothing done");
        return;
    };
    let n = done.len();
    let per_sec = n as f64 / total.as_secs_f64().max(1e-9);
    // The last tenth against the first: a rate that falls as the node holds more.
    let tenth = n / 10;
    let trend = if tenth == 0 {
        String::new()
    } else {
        let first = done[tenth - 1];
        let last = *total - done[n - 1 - tenth];
        format!(
            " (first {tenth}: {:.3} ms each, last {tenth}: {:.3} ms each)",
            ms(first) / tenth as f64,
            ms(last) / tenth as f64
        )
    };
    println!("{what}: {n} in {:.1} ms, {per_sec:.0}/s{trend}", ms(*total));
}

fn report(what: &str, samples: &[Option<Duration>]) {
    let mut ok: Vec<Duration> = samples.iter().flatten().copied().collect();
    ok.sort();
    let missed = samples.len() - ok.len();
    if ok.is_empty() {
        println!("{what}: no sample within {GIVE_UP:?} ({missed} missed)");
        return;
    }
    let pct = |p: f64| ok[((ok.len() - 1) as f64 * p).round() as usize];
    let mean = ok.iter().sum::<Duration>() / ok.len() as u32;
    println!(
        "{what}: {} trials, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms, min {:.1} ms, mean {:.1} ms{}",
        ok.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(ok[ok.len() - 1]),
        ms(ok[0]),
        ms(mean),
        if missed > 0 {
            format!(", {missed} failed or not within {GIVE_UP:?}")
        } else {
            String::new()
        }
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
