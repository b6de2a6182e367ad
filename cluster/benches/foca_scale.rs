//! What SWIM membership (foca) costs one node as the cluster grows:
//! `cargo bench -p cluster --bench foca_scale`.
//!
//! For a member table of N members (the identities this crate gossips, each name its own
//! allocation as when decoded from the wire), it reports:
//! - the memory one node's foca holds per member (resident growth, allocator slack included), with the dissemination backlog still full
//!   (every member just learnt, as during formation) and with the table alone;
//! - the time foca takes to apply one update about a member it already knows, which every
//!   received copy of every membership update costs (foca 2 keeps members in a vector and
//!   finds one by scanning it).
//!
//! A simulated cluster of N nodes holds N such tables, and during formation each node applies
//! about N x (copies received per update) updates: the figures bound what `netsim` can run on
//! one machine. Figures are printed, never asserted.

#![allow(
    clippy::disallowed_methods,
    reason = "the bench measures wall-clock time"
)]
#![allow(clippy::unwrap_used, reason = "bench setup")]
#![allow(missing_docs, reason = "bench binary")]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use cluster::NodeIdentity;
use foca::{AccumulatingRuntime, Foca, Member, NoCustomBroadcast, PostcardCodec};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The process's resident memory, in bytes (`VmRSS` of `/proc/self/status`).
fn resident() -> isize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<isize>().ok())
        .map_or(0, |kb| kb * 1024)
}

type Swim = Foca<NodeIdentity, PostcardCodec, Xoshiro256PlusPlus, NoCustomBroadcast>;

fn identity(i: usize) -> NodeIdentity {
    let ip = Ipv4Addr::from(0xC612_0000u32 + u32::try_from(i).unwrap());
    NodeIdentity::new(
        format!("node-{i:05}").as_str(),
        SocketAddr::from((ip, 7946)),
        1_700_000_000_000 + i as u64,
    )
}

fn swim(n: usize) -> Swim {
    let config = cluster::NodeConfig::default().swim;
    Foca::new(
        identity(usize::MAX >> 40),
        config,
        Xoshiro256PlusPlus::seed_from_u64(n as u64),
        PostcardCodec,
    )
}

/// Resident bytes per member of `tables` member tables of `n` members each, built in this
/// process (run in a child process, so that earlier frees do not hide the growth).
fn measure(n: usize, with_queue: bool) -> f64 {
    let tables = (400_000 / n).max(1);
    let mut rt = AccumulatingRuntime::default();
    let before = resident();
    let mut kept = Vec::with_capacity(tables);
    for _ in 0..tables {
        let mut swim = swim(n);
        swim.apply_many(
            (0..n).map(|i| Member::alive(identity(i))),
            with_queue,
            &mut rt,
        )
        .unwrap();
        while rt.to_send().is_some() || rt.to_notify().is_some() || rt.to_schedule().is_some() {}
        kept.push(swim);
    }
    let grown = resident() - before;
    drop(kept);
    grown as f64 / (tables * n) as f64
}

/// Runs [`measure`] in a child process.
fn measured(n: usize, with_queue: bool) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--measure",
            &n.to_string(),
            if with_queue { "queue" } else { "table" },
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--measure") {
        let n: usize = args[i + 1].parse().unwrap();
        println!("{}", measure(n, args[i + 2] == "queue"));
        return;
    }
    println!(
        "{:>7} {:>16} {:>16} {:>14}",
        "members", "B/member, queue", "B/member, table", "ns per update"
    );
    for n in [1_000usize, 2_000, 5_000, 10_000] {
        let mut rt = AccumulatingRuntime::default();
        let mut table = swim(n);
        table
            .apply_many((0..n).map(|i| Member::alive(identity(i))), false, &mut rt)
            .unwrap();
        // Stale copies of known members, in a scattered order.
        let copies: Vec<Member<NodeIdentity>> = (0..20_000usize)
            .map(|k| Member::alive(identity(k.wrapping_mul(7919) % n)))
            .collect();
        let started = Instant::now();
        table
            .apply_many(copies.iter().cloned(), false, &mut rt)
            .unwrap();
        let per_update = started.elapsed().as_nanos() as f64 / copies.len() as f64;
        println!(
            "{n:>7} {:>16.0} {:>16.0} {per_update:>14.0}",
            measured(n, true),
            measured(n, false)
        );
    }
}
