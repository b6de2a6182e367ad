//! Root-only tests of the netlink executor on real namespaces. Each test makes its own
//! namespaces (names carry the process id), uses only 198.18.0.0/15, and removes everything
//! on the way out, panics included. Run with `cargo test -p overlay --features netlink`.

#![cfg(feature = "netlink")]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use networkdb::NetworkId;
use overlay::netlink::{NetlinkConfig, NetlinkDataplane, NetlinkError, NetworkSpec, netns_path};
use overlay::{KernelState, Mac, NeighOp, diff};

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        == Some("0");
    if !root {
        println!("skipping: needs root");
    }
    root
}

/// Runs a command, panicking with its output if it fails; returns stdout.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes every namespace whose name starts with its prefix, on drop (also on panic).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = NetlinkDataplane::cleanup_leftovers(&self.0) {
            eprintln!("cleanup of {}*: {e}", self.0);
        }
    }
}

fn new_netns(name: &str) {
    sh(&["ip", "netns", "add", name]);
    sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
}

fn peer(i: u32) -> (Ipv4Addr, Mac, IpAddr) {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 0)) + i);
    let vtep = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2 + (i % 5) as u8));
    (ip, Mac::from_ipv4(ip), vtep)
}

#[tokio::test]
async fn batch_apply_state_and_delete() {
    if !is_root() {
        return;
    }
    let prefix = format!("ovt{}a-", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let underlay = format!("{prefix}u");
    new_netns(&underlay);

    let mut dp = NetlinkDataplane::new(NetlinkConfig {
        netns_prefix: prefix.clone(),
        underlay_netns: Some(netns_path(&underlay)),
        batch_window: 32, // several windows for 200 ops
        ..Default::default()
    })
    .await
    .unwrap();
    let net = NetworkId::from("net-a");
    let spec = NetworkSpec {
        vni: 4243,
        gateway: "198.18.1.254/24".parse().unwrap(),
    };
    let path = dp.ensure_network(&net, spec).await.unwrap();
    assert_eq!(
        dp.ensure_network(&net, spec).await.unwrap(),
        path,
        "idempotent"
    );
    let ns = dp.netns_name(spec.vni);
    let vx = sh(&["ip", "-n", &ns, "-d", "link", "show", "vxlan0"]);
    for want in [
        "mtu 1450",
        "master br0",
        "vxlan id 4243",
        "dstport 4789",
        "nolearning",
        "proxy",
    ] {
        assert!(vx.contains(want), "vxlan0 lacks {want:?}: {vx}");
    }
    assert!(sh(&["ip", "-n", &ns, "addr", "show", "br0"]).contains("198.18.1.254/24"));
    // The VXLAN device was created in the underlay and moved: nothing is left there.
    assert!(!sh(&["ip", "-n", &underlay, "link"]).contains("vx-"));

    let mut want = KernelState::default();
    let mut ops = Vec::new();
    for i in 0..100 {
        let (ip, mac, vtep) = peer(i);
        want.neighbours.insert(ip, mac);
        want.fdb.insert(mac, vtep);
        ops.push(NeighOp::AddNeigh { ip, mac });
        ops.push(NeighOp::AddFdb { mac, vtep });
    }
    dp.apply(&net, &ops).await.unwrap();
    let got = dp.state(&net).await.unwrap();
    assert_eq!((got.neighbours.len(), got.fdb.len()), (100, 100));
    assert!(got == want, "state differs from what was applied");
    // Replace semantics: applying the same adds again is fine.
    dp.apply(&net, &ops).await.unwrap();

    let neigh = sh(&["ip", "-n", &ns, "neigh", "show", "dev", "vxlan0"]);
    assert_eq!(
        neigh.lines().filter(|l| l.contains("PERMANENT")).count(),
        100,
        "{neigh}"
    );
    assert!(
        neigh.contains("198.18.1.5 lladdr 02:42:c6:12:01:05 PERMANENT"),
        "{neigh}"
    );
    let fdb = sh(&["bridge", "-n", &ns, "fdb", "show", "dev", "vxlan0"]);
    let selfs: BTreeMap<&str, &str> = fdb
        .lines()
        .filter(|l| l.contains(" dst ") && l.contains("self permanent"))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let mac = w.next()?;
            let dst = w.skip_while(|&x| x != "dst").nth(1)?;
            Some((mac, dst))
        })
        .collect();
    assert_eq!(selfs.len(), 100, "{fdb}");
    assert_eq!(selfs.get("02:42:c6:12:01:05"), Some(&"198.18.0.2"), "{fdb}");

    // One bad op does not stop the batch: an IPv6 destination on an IPv4 VXLAN is refused.
    let (ip, mac, _) = peer(200);
    let bad = [
        NeighOp::AddFdb {
            mac,
            vtep: "2001:db8::1".parse().unwrap(),
        },
        NeighOp::AddNeigh { ip, mac },
    ];
    match dp.apply(&net, &bad).await {
        Err(NetlinkError::Ops { failures }) => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert_eq!(failures[0].index, 0);
        }
        other => panic!("expected one failed op, got {other:?}"),
    }
    want.neighbours.insert(ip, mac);
    assert_eq!(dp.state(&net).await.unwrap(), want);

    // Entries written by iproute2 are read back too (`bridge fdb ... permanent` sets
    // NUD_NOARP | NUD_PERMANENT); non-permanent ones are not.
    let (ip, mac, _) = peer(201);
    let (ip_s, mac_s) = (ip.to_string(), mac.to_string());
    sh(&[
        "ip",
        "-n",
        &ns,
        "neigh",
        "replace",
        &ip_s,
        "lladdr",
        &mac_s,
        "dev",
        "vxlan0",
        "nud",
        "permanent",
    ]);
    sh(&[
        "bridge",
        "-n",
        &ns,
        "fdb",
        "replace",
        &mac_s,
        "dev",
        "vxlan0",
        "dst",
        "198.18.0.9",
        "self",
        "permanent",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "neigh",
        "replace",
        "198.18.1.250",
        "lladdr",
        "02:42:c6:12:01:fa",
        "dev",
        "vxlan0",
        "nud",
        "reachable",
    ]);
    want.neighbours.insert(ip, mac);
    want.fdb.insert(mac, "198.18.0.9".parse().unwrap());
    assert_eq!(dp.state(&net).await.unwrap(), want);

    // Delete everything; deleting again (absent entries) is not an error.
    let dels = diff(&KernelState::default(), &dp.state(&net).await.unwrap());
    assert_eq!(dels.len(), 203);
    dp.apply(&net, &dels).await.unwrap();
    assert!(dp.state(&net).await.unwrap().is_empty());
    dp.apply(&net, &dels).await.unwrap();
    assert!(!sh(&["ip", "-n", &ns, "neigh", "show", "dev", "vxlan0"]).contains("PERMANENT"));

    dp.remove_network(&net).await.unwrap();
    assert!(!path.exists());
    assert!(!dp.has_network(&net));
    assert!(!sh(&["ip", "netns", "list"]).contains(&ns));
    assert!(matches!(
        dp.state(&net).await,
        Err(NetlinkError::NoNetwork(_))
    ));
}

#[tokio::test]
async fn two_hosts_ping_across_vxlan() {
    if !is_root() {
        return;
    }
    let base = format!("ovt{}b", std::process::id());
    let _cleanup = Cleanup(base.clone());
    let (h1, h2, c1, c2) = (
        format!("{base}-h1"),
        format!("{base}-h2"),
        format!("{base}-c1"),
        format!("{base}-c2"),
    );
    for ns in [&h1, &h2, &c1, &c2] {
        new_netns(ns);
    }
    sh(&[
        "ip", "-n", &h1, "link", "add", "ul1", "type", "veth", "peer", "name", "ul2", "netns", &h2,
    ]);
    sh(&[
        "ip",
        "-n",
        &h1,
        "addr",
        "add",
        "198.18.0.1/24",
        "dev",
        "ul1",
    ]);
    sh(&[
        "ip",
        "-n",
        &h2,
        "addr",
        "add",
        "198.18.0.2/24",
        "dev",
        "ul2",
    ]);
    sh(&["ip", "-n", &h1, "link", "set", "ul1", "up"]);
    sh(&["ip", "-n", &h2, "link", "set", "ul2", "up"]);

    let net = NetworkId::from("net-b");
    let spec = NetworkSpec {
        vni: 4242,
        gateway: "198.18.100.1/24".parse().unwrap(),
    };
    let ip1 = Ipv4Addr::new(198, 18, 100, 10);
    let ip2 = Ipv4Addr::new(198, 18, 100, 11);
    let (mac1, mac2) = (Mac::from_ipv4(ip1), Mac::from_ipv4(ip2));
    let mut hosts = Vec::new();
    for (i, (underlay, vtep)) in [(&h1, [198, 18, 0, 1]), (&h2, [198, 18, 0, 2])]
        .into_iter()
        .enumerate()
    {
        let mut dp = NetlinkDataplane::new(NetlinkConfig {
            netns_prefix: format!("{base}{}-", i + 1),
            underlay_netns: Some(netns_path(underlay)),
            local_vtep: Some(Ipv4Addr::from(vtep)),
            ..Default::default()
        })
        .await
        .unwrap();
        dp.ensure_network(&net, spec).await.unwrap();
        hosts.push(dp);
    }
    let gw_prefix = 24;
    hosts[0]
        .attach_endpoint(
            &net,
            &netns_path(&c1),
            ipnet::Ipv4Net::new(ip1, gw_prefix).unwrap(),
            mac1,
            1450,
        )
        .await
        .unwrap();
    hosts[1]
        .attach_endpoint(
            &net,
            &netns_path(&c2),
            ipnet::Ipv4Net::new(ip2, gw_prefix).unwrap(),
            mac2,
            1450,
        )
        .await
        .unwrap();
    let eth0 = sh(&["ip", "-n", &c1, "addr", "show", "eth0"]);
    assert!(
        eth0.contains("198.18.100.10/24")
            && eth0.contains("02:42:c6:12:64:0a")
            && eth0.contains("mtu 1450"),
        "{eth0}"
    );
    assert!(sh(&["ip", "-n", &c1, "route"]).contains("default via 198.18.100.1 dev eth0"));

    let program = |ip, mac, vtep: [u8; 4]| {
        [
            NeighOp::AddNeigh { ip, mac },
            NeighOp::AddFdb {
                mac,
                vtep: IpAddr::V4(Ipv4Addr::from(vtep)),
            },
        ]
    };
    hosts[0]
        .apply(&net, &program(ip2, mac2, [198, 18, 0, 2]))
        .await
        .unwrap();
    hosts[1]
        .apply(&net, &program(ip1, mac1, [198, 18, 0, 1]))
        .await
        .unwrap();

    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c1,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "198.18.100.11",
        ])
        .output()
        .expect("spawn ping (install iputils-ping)");
    assert!(
        ping.status.success(),
        "ping failed: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );

    // Detach, then the path is gone; remove both networks.
    hosts[0].detach_endpoint(&net, ip1).await.unwrap();
    hosts[0].detach_endpoint(&net, ip1).await.unwrap(); // absent: fine
    assert!(!sh(&["ip", "-n", &c1, "link"]).contains("eth0"));
    for dp in &mut hosts {
        let path = dp.network_netns(&net).unwrap().to_owned();
        dp.remove_network(&net).await.unwrap();
        assert!(!path.exists());
    }
}
