//! Programs N peers (default 10,000; a neighbour and an FDB entry each) into one network's
//! VXLAN device with the batched netlink executor, then the same into a fresh network with
//! one `ip neigh replace` and one `bridge fdb replace` process per entry, and prints both
//! times. Root only; everything lives in namespaces named `ovb<pid>-*`, removed at the end.
//!
//! `cargo run --release -p overlay --features netlink --bin neigh_bench -- [N]`

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use networkdb::NetworkId;
use overlay::netlink::{NetlinkConfig, NetlinkDataplane, NetworkSpec, netns_path};
use overlay::{Mac, NeighOp};

/// Upper bound on N: the peers' addresses come from 198.19.0.0/16.
const MAX_PEERS: u32 = 60_000;

fn main() -> Result<(), Box<dyn Error>> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: needs root");
        return Ok(());
    }
    let peers: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    if peers == 0 || peers > MAX_PEERS {
        return Err(format!("N must be in 1..={MAX_PEERS}").into());
    }
    let prefix = format!("ovb{}-", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(&prefix, peers))
}

fn peer(i: u32) -> (Ipv4Addr, Mac, IpAddr) {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i);
    let vtep = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2 + (i % 200) as u8));
    (ip, Mac::from_ipv4(ip), vtep)
}

async fn run(prefix: &str, peers: u32) -> Result<(), Box<dyn Error>> {
    let underlay = format!("{prefix}u");
    sh(&["ip", "netns", "add", &underlay])?;
    let mut dp = NetlinkDataplane::new(NetlinkConfig {
        netns_prefix: prefix.to_owned(),
        underlay_netns: Some(netns_path(&underlay)),
        request_timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .await?;
    let gateway = "198.18.200.1/24".parse()?;

    // 1. Batched netlink executor.
    let net1 = NetworkId::from("bench-netlink");
    dp.ensure_network(&net1, NetworkSpec { vni: 5001, gateway })
        .await?;
    let ops: Vec<NeighOp> = (0..peers)
        .flat_map(|i| {
            let (ip, mac, vtep) = peer(i);
            [NeighOp::AddNeigh { ip, mac }, NeighOp::AddFdb { mac, vtep }]
        })
        .collect();
    let batched = timed(dp.apply(&net1, &ops)).await;
    let (batched, result) = batched;
    result?;
    check(&dp, &net1, peers).await?;

    // 2. One `ip` / `bridge` process per entry.
    let net2 = NetworkId::from("bench-iproute2");
    dp.ensure_network(&net2, NetworkSpec { vni: 5002, gateway })
        .await?;
    let ns = dp.netns_name(5002);
    let (spawned, result) = timed(async {
        for i in 0..peers {
            let (ip, mac, _) = peer(i);
            let (ip, mac) = (ip.to_string(), mac.to_string());
            sh(&[
                "ip",
                "-n",
                &ns,
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "dev",
                "vxlan0",
                "nud",
                "permanent",
            ])?;
        }
        for i in 0..peers {
            let (_, mac, vtep) = peer(i);
            let (mac, vtep) = (mac.to_string(), vtep.to_string());
            sh(&[
                "bridge",
                "-n",
                &ns,
                "fdb",
                "replace",
                &mac,
                "dev",
                "vxlan0",
                "dst",
                &vtep,
                "self",
                "permanent",
            ])?;
        }
        Ok::<_, Box<dyn Error>>(())
    })
    .await;
    result?;
    check(&dp, &net2, peers).await?;

    println!("peers: {peers} ({} entries per method)", 2 * peers);
    println!(
        "batched netlink executor: {:>10.3} s",
        batched.as_secs_f64()
    );
    println!(
        "ip/bridge per entry:      {:>10.3} s",
        spawned.as_secs_f64()
    );
    println!(
        "ratio (processes / netlink): {:.1}x",
        spawned.as_secs_f64() / batched.as_secs_f64().max(1e-9)
    );
    dp.remove_network(&net1).await?;
    dp.remove_network(&net2).await?;
    Ok(())
}

#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall-clock time"
)]
async fn timed<T>(fut: impl Future<Output = T>) -> (Duration, T) {
    let start = Instant::now();
    let out = fut.await;
    (start.elapsed(), out)
}

async fn check(dp: &NetlinkDataplane, net: &NetworkId, peers: u32) -> Result<(), Box<dyn Error>> {
    let state = dp.state(net).await?;
    let want = peers as usize;
    if state.neighbours.len() != want || state.fdb.len() != want {
        return Err(format!(
            "{net}: {} neighbours and {} FDB entries, want {want} each",
            state.neighbours.len(),
            state.fdb.len()
        )
        .into());
    }
    Ok(())
}

fn sh(args: &[&str]) -> Result<(), Box<dyn Error>> {
    let status = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{args:?}: {status}").into())
    }
}

/// Removes the benchmark's namespaces on the way out, errors and panics included.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = NetlinkDataplane::cleanup_leftovers(&self.0) {
            eprintln!("cleanup of {}*: {e}", self.0);
        }
    }
}
