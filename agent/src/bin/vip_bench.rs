//! What the sandboxes' VIP balancers cost (`agent::balancer`):
//!
//! 1. planning and encoding the nf_tables transaction of 1,000 services x 10 tasks from
//!    nothing, and of one task's change (no root needed);
//! 2. programming them into a network namespace of this host's kernel, from nothing, and then
//!    one task disabled or enabled at a time, and the conntrack cleanup after a disable
//!    (root);
//! 3. from a change of `endpoint_table` reaching the agent (a task disabled, fed to its
//!    service-discovery directory as the node core would) until the balancers of all of
//!    [`SANDBOXES`] sandboxes on that network hold it, through the agent's own feed task
//!    (root).
//!
//! 4. from a task's join (or `endpoint disable`) on agent A until the balancer of a sandbox
//!    on agent B holds it (or has dropped it): two agents in this process on loopback, the
//!    change carried by NetworkDB, B's feed task programming the sandbox's namespace (root).
//!
//! ```text
//! sudo cargo run --release -p agent --bin vip_bench [-- TRIALS]
//! ```
//!
//! Bounded: at most 1,000 trials of each kind, each given up after 10 s. The namespaces it
//! makes are removed at the end, also after a failure.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::balancer::{BalancerStats, SandboxBalancers};
use agent::config::is_root;
use agent::dns::directory::Directory;
use bytes::Bytes;
use discovery::nft::transaction;
use discovery::{EndpointRecord, NetworkRecords, ServiceTable};
use networkdb::{Key, NetworkId, WatchEvent};
use nodecore::NamesChange;
use overlay::netlink::{lab, netns_path};

const SERVICES: usize = 1_000;
const TASKS: usize = 10;
/// Sandboxes on the network in part 3.
const SANDBOXES: usize = 20;
const TRIALS: usize = 200;
const MAX_TRIALS: usize = 1_000;
const GIVE_UP: Duration = Duration::from_secs(10);

type BenchResult<T> = Result<T, String>;

/// The VIP of part 4's service.
const BENCH_VIP: &str = "198.18.79.250";

/// The record of task `t` of service `s` (VIP 10.s.0.1-ish, tasks beside it).
fn record(s: usize, t: usize, disabled: bool) -> EndpointRecord {
    let vip = Ipv4Addr::from(0x0a00_0000 + ((s as u32) << 8));
    let ip = Ipv4Addr::from(u32::from(vip) + 10 + t as u32);
    EndpointRecord {
        name: format!("svc{s}.{t}"),
        service_name: format!("svc{s}"),
        service_id: format!("sid{s}"),
        virtual_ip: vip.to_string(),
        endpoint_ip: ip.to_string(),
        service_disabled: disabled,
        ..Default::default()
    }
}

/// The table of `services` services of [`TASKS`] tasks, task `disabled` (service, task) off.
fn table(services: usize, disabled: Option<(usize, usize)>) -> ServiceTable {
    let mut r = NetworkRecords::default();
    for s in 0..services {
        for t in 0..TASKS {
            let off = disabled == Some((s, t));
            if let Ok(Some(c)) = discovery::claims(&record(s, t, off)) {
                r.add(&c);
            }
        }
    }
    ServiceTable::of([&r])
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {}",
        pct(&d, 0.5).as_secs_f64() * 1e3,
        pct(&d, 0.99).as_secs_f64() * 1e3,
        d.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        d.len()
    );
}

fn main() -> BenchResult<()> {
    let trials = std::env::args()
        .nth(1)
        .map(|a| a.parse::<usize>())
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or(TRIALS)
        .clamp(1, MAX_TRIALS);

    // 1. Planning and encoding.
    let full = table(SERVICES, None);
    let empty = ServiceTable::new();
    let started = Instant::now();
    let ops = discovery::plan(&full, &empty);
    let batch = transaction(1, true, &full, &empty, &ops);
    let encode_full = started.elapsed();
    let messages = batch.len();
    let bytes = batch.finish_bytes().len();
    println!(
        "{SERVICES} services x {TASKS} tasks from nothing: plan and encode {:.2} ms, {messages} \
         nf_tables messages, {bytes} bytes",
        encode_full.as_secs_f64() * 1e3
    );
    let one_off = table(SERVICES, Some((SERVICES / 2, 3)));
    let mut encode_one = Vec::new();
    for _ in 0..trials {
        let started = Instant::now();
        let ops = discovery::plan(&one_off, &full);
        let batch = transaction(1, false, &one_off, &full, &ops);
        let _ = batch.finish_bytes();
        encode_one.push(started.elapsed());
    }
    report("one task disabled among them: plan and encode", encode_one);

    if !is_root() {
        println!(
            "not root: the kernel parts (2, 3 and 4) need network namespaces and nf_tables; skipped"
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let tag = format!("vb{}", std::process::id());
    let names: Vec<String> = (0..SANDBOXES).map(|i| format!("{tag}s{i}")).collect();
    let result = runtime.block_on(kernel(&names, trials, &full, &one_off));
    let result = result.and_then(|()| runtime.block_on(across(&names[0], trials.min(100))));
    for name in &names {
        let _ = lab::del_netns(name);
    }
    result
}

/// Parts 2 and 3, in the namespaces `names` (made here; the caller removes them).
async fn kernel(
    names: &[String],
    trials: usize,
    full: &ServiceTable,
    one_off: &ServiceTable,
) -> BenchResult<()> {
    for name in names {
        lab::add_netns(name).map_err(|e| e.to_string())?;
    }
    let netns = netns_path(&names[0]);

    // 2. One sandbox: everything, then one task at a time.
    let balancers = SandboxBalancers::new();
    let started = Instant::now();
    let done = balancers
        .sync("s0", &netns, full)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "programming {SERVICES} services x {TASKS} tasks into a namespace from nothing: {:.1} ms \
         ({} VIPs set, {} messages in one transaction)",
        started.elapsed().as_secs_f64() * 1e3,
        done.ops,
        done.messages
    );
    let mut changes = Vec::new();
    let mut cleanups = Vec::new();
    for k in 0..trials {
        let want = if k % 2 == 0 { one_off } else { full };
        let started = Instant::now();
        let (_, cleanup) = balancers
            .sync_deferred("s0", &netns, want)
            .await
            .map_err(|e| e.to_string())?;
        changes.push(started.elapsed());
        if let Some(cleanup) = cleanup {
            let started = Instant::now();
            cleanup.run().await;
            cleanups.push(started.elapsed());
        }
    }
    report(
        &format!("one task disabled or enabled among {SERVICES} services: one transaction"),
        changes,
    );
    report(
        "then forgetting the disabled task's UDP flows (a conntrack dump of the host's table)",
        cleanups,
    );
    // A service of 10 tasks added, then removed, beside the 1,000.
    let plus_one = table(SERVICES + 1, None);
    let mut services = Vec::new();
    for k in 0..trials {
        let want = if k % 2 == 0 { &plus_one } else { full };
        let started = Instant::now();
        let (_, cleanup) = balancers
            .sync_deferred("s0", &netns, want)
            .await
            .map_err(|e| e.to_string())?;
        services.push(started.elapsed());
        drop(cleanup);
    }
    report(
        &format!("a service of {TASKS} tasks added or removed beside {SERVICES}: one transaction"),
        services,
    );

    // 3. Through the agent's feed, to every sandbox on the network.
    let directory = Directory::new();
    let network = "benchnet".to_owned();
    directory.apply_change(&NamesChange::Attach(network.clone()));
    let sandboxes: BTreeMap<String, Vec<String>> = names
        .iter()
        .map(|n| (n.clone(), vec![network.clone()]))
        .collect();
    directory.set_sandbox_netns(names.iter().map(|n| (n.clone(), netns_path(n))).collect());
    directory.apply_change(&NamesChange::Topology {
        networks: [(network.clone(), network.clone())].into(),
        sandboxes,
    });
    let feed_balancers = Arc::new(SandboxBalancers::new());
    let stats = Arc::new(BalancerStats::default());
    let feed = tokio::spawn(agent::balancer::run(
        Arc::clone(&feed_balancers),
        directory.clone(),
        Arc::clone(&stats),
    ));
    let set = |s: usize, t: usize, disabled: bool| {
        let value = Bytes::from(record(s, t, disabled).encode());
        directory.apply_change(&NamesChange::Record(WatchEvent {
            table: discovery::ENDPOINT_TABLE.into(),
            network: NetworkId::from(network.as_str()),
            key: Key::from(format!("ep-{s}-{t}")),
            prev: None,
            value: Some(value),
        }));
    };
    // A smaller catalogue here (100 services x 10 tasks): every sandbox holds all of it.
    let services = SERVICES / 10;
    for s in 0..services {
        for t in 0..TASKS {
            set(s, t, false);
        }
    }
    let all_hold = |want_disabled: bool, s: usize, t: usize| {
        let feed_balancers = Arc::clone(&feed_balancers);
        let names = names.to_vec();
        async move {
            let vip = Ipv4Addr::from(0x0a00_0000 + ((s as u32) << 8));
            let ip = Ipv4Addr::from(u32::from(vip) + 10 + t as u32);
            for n in &names {
                let holds = feed_balancers
                    .programmed(n)
                    .await
                    .and_then(|table| table.backends(vip).map(|b| b.contains(&ip)));
                if holds != Some(!want_disabled) {
                    return false;
                }
            }
            true
        }
    };
    let wait = |want_disabled: bool, s: usize, t: usize| {
        let all_hold = &all_hold;
        async move {
            let deadline = Instant::now() + GIVE_UP;
            while Instant::now() < deadline {
                if all_hold(want_disabled, s, t).await {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            Err(format!(
                "sandboxes never held task {s}.{t} disabled={want_disabled}"
            ))
        }
    };
    wait(false, services - 1, TASKS - 1).await?;
    let (mut disabled, mut enabled) = (Vec::new(), Vec::new());
    for k in 0..trials {
        let (s, t) = (k % services, k % TASKS);
        let started = Instant::now();
        set(s, t, true);
        wait(true, s, t).await?;
        disabled.push(started.elapsed());
        // At once: the disable's conntrack cleanups may still be running.
        let started = Instant::now();
        set(s, t, false);
        wait(false, s, t).await?;
        enabled.push(started.elapsed());
    }
    feed.abort();
    report(
        &format!(
            "a task disabled until all {SANDBOXES} sandboxes' balancers drop it ({services} \
             services x {TASKS} tasks, through the agent's feed)"
        ),
        disabled,
    );
    report(
        &format!("then enabled again at once, until all {SANDBOXES} sandboxes hold it"),
        enabled,
    );
    Ok(())
}

/// Part 4, with agent B's sandbox in the (existing) namespace `netns_name`.
async fn across(netns_name: &str, trials: usize) -> BenchResult<()> {
    use agent::cnm::{EndpointCreate, NetworkCreate, SandboxCreate};
    let err = |e: Box<dyn std::error::Error>| e.to_string();
    let (root, a, b) = common::pair::start_pair("vip").await.map_err(err)?;
    let result = async {
        a.cnm()
            .create_network(NetworkCreate {
                name: "bench".into(),
                driver: None,
                subnet: "198.18.64.0/20".into(),
                vni: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        for (d, name, netns) in [
            (&a, "sa", "/run/netns/netagent-vip-bench-none-sa".to_owned()),
            (&b, "sb", netns_path(netns_name).display().to_string()),
        ] {
            d.cnm()
                .create_sandbox(SandboxCreate {
                    name: name.into(),
                    netns,
                    resolv_conf: None,
                    engine: None,
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + GIVE_UP;
        while b.cnm().network("bench").await.is_err() {
            if Instant::now() > deadline {
                return Err("the network did not reach the second agent".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b.cnm()
            .create_endpoint(EndpointCreate {
                network: "bench".into(),
                name: "client".into(),
                ..EndpointCreate::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        b.cnm()
            .join("bench", "client", "sb")
            .await
            .map_err(|e| e.to_string())?;
        // B's feed, as `netagent run` starts it as root.
        let balancers = Arc::new(SandboxBalancers::new());
        let feed = tokio::spawn(agent::balancer::run(
            Arc::clone(&balancers),
            b.cnm().settings().directory.clone(),
            Arc::new(BalancerStats::default()),
        ));
        let vip: Ipv4Addr = BENCH_VIP
            .parse()
            .map_err(|e: std::net::AddrParseError| e.to_string())?;
        let holds = |ip: Ipv4Addr, want: bool| {
            let balancers = Arc::clone(&balancers);
            async move {
                let deadline = Instant::now() + GIVE_UP;
                loop {
                    let held = balancers
                        .programmed("sb")
                        .await
                        .and_then(|t| t.backends(vip).map(|b| b.contains(&ip)))
                        .unwrap_or(false);
                    if held == want {
                        return Some(Instant::now());
                    }
                    if Instant::now() > deadline {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
            }
        };
        let (mut joins, mut disables) = (Vec::new(), Vec::new());
        for i in 0..trials {
            let name = format!("task-{i}");
            let ep = a
                .cnm()
                .create_endpoint(EndpointCreate {
                    network: "bench".into(),
                    name: name.clone(),
                    service: Some(agent::cnm::ServiceCreate {
                        name: "web".into(),
                        vip: Some(vip.to_string()),
                        aliases: Vec::new(),
                    }),
                    ..EndpointCreate::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            a.cnm()
                .join("bench", &name, "sa")
                .await
                .map_err(|e| e.to_string())?;
            let seen = holds(ep.ip, true)
                .await
                .ok_or("a join never reached B's balancer")?;
            joins.push(seen - t0);
            let t0 = Instant::now();
            a.cnm()
                .set_service_enabled("bench", &name, false)
                .await
                .map_err(|e| e.to_string())?;
            let gone = holds(ep.ip, false)
                .await
                .ok_or("a disable never reached B's balancer")?;
            disables.push(gone - t0);
            a.cnm()
                .leave("bench", &name)
                .await
                .map_err(|e| e.to_string())?;
            a.cnm()
                .remove_endpoint("bench", &name)
                .await
                .map_err(|e| e.to_string())?;
        }
        feed.abort();
        balancers.forget("sb").await;
        report(
            "a task joins on agent A until agent B's sandbox balancer holds it",
            joins,
        );
        report(
            "`endpoint disable` on agent A until agent B's sandbox balancer dropped it",
            disables,
        );
        Ok(())
    }
    .await;
    a.shutdown().await;
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
    result
}
