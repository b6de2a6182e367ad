#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only tests of the netlink executor on real namespaces, built from Rust
//! ([`overlay::netlink::lab`]). Each test makes its own namespaces (names carry the process
//! id), uses only 198.18.0.0/15, and removes everything on the way out, panics included. Run
//! with `cargo test -p overlay --features netlink`. Without root every test is reported as
//! ignored, with the reason on stderr; the one that checks entries written by iproute2 also
//! needs its `ip` and `bridge` commands (Debian package `iproute2`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use libtest_mimic::{Arguments, Trial};
use networkdb::NetworkId;
use overlay::netlink::lab::{self, LinkFacts};
use overlay::netlink::{NetlinkConfig, NetlinkDataplane, NetlinkError, NetworkSpec, netns_path};
use overlay::{KernelState, Mac, NeighOp, diff};

fn main() {
    let args = Arguments::from_args();
    let no_root = lab::missing_privileges();
    let no_iproute2 = no_root.or_else(|| {
        let works = |cmd: &str| {
            Command::new(cmd)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        (!works("ip") || !works("bridge"))
            .then_some("needs iproute2's `ip` and `bridge` commands (Debian package iproute2)")
    });
    let trials = vec![
        trial(
            "batch_apply_state_and_delete",
            no_root,
            batch_apply_state_and_delete,
        ),
        trial(
            "two_hosts_ping_across_vxlan",
            no_root,
            two_hosts_ping_across_vxlan,
        ),
        trial(
            "entries_written_by_iproute2_are_read_back",
            no_iproute2,
            entries_written_by_iproute2_are_read_back,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// A test run on a fresh runtime; reported as ignored, saying why on stderr, when `skip`
/// names something missing.
fn trial<F: Future<Output = ()> + 'static>(
    name: &'static str,
    skip: Option<&'static str>,
    test: fn() -> F,
) -> Trial {
    if let Some(why) = skip {
        eprintln!("NOT RUN: overlay netlink test {name}: {why}");
    }
    Trial::test(name, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        rt.block_on(test());
        Ok(())
    })
    .with_ignored_flag(skip.is_some())
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

/// A dataplane of `config` whose namespaces are named `ovt<pid><tag>-*`, over an underlay
/// namespace of its own; the guard deleting them all, and the underlay's name.
async fn dataplane(tag: char, config: NetlinkConfig) -> (Cleanup, String, NetlinkDataplane) {
    let prefix = format!("ovt{}{tag}-", std::process::id());
    let cleanup = Cleanup(prefix.clone());
    let underlay = format!("{prefix}u");
    new_netns(&underlay);
    let dp = NetlinkDataplane::new(NetlinkConfig {
        netns_prefix: prefix,
        underlay_netns: Some(netns_path(&underlay)),
        ..config
    })
    .await
    .unwrap();
    (cleanup, underlay, dp)
}

fn new_netns(name: &str) {
    lab::add_netns(name).unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

fn peer(i: u32) -> (Ipv4Addr, Mac, IpAddr) {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 0)) + i);
    let vtep = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2 + (i % 5) as u8));
    (ip, Mac::from_ipv4(ip), vtep)
}

/// The permanent neighbours and `self` FDB entries of `vxlan0` in namespace `ns`.
fn vxlan_state(ns: &str) -> KernelState {
    lab::vxlan_state(&netns_path(ns), "vxlan0").unwrap()
}

/// Runs a command that must succeed (iproute2, for the interoperability test only).
fn sh(args: &[&str]) {
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
}

async fn batch_apply_state_and_delete() {
    let (_cleanup, underlay, mut dp) = dataplane(
        'a',
        NetlinkConfig {
            batch_window: 32, // several windows for 200 ops
            ..Default::default()
        },
    )
    .await;
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
    let vx: LinkFacts = lab::link_facts(&path, "vxlan0").unwrap().expect("vxlan0");
    assert_eq!(vx.mtu, Some(1450), "{vx:?}");
    assert_eq!(vx.master.as_deref(), Some("br0"), "{vx:?}");
    let settings = vx.vxlan.clone().expect("vxlan0 is a VXLAN device");
    assert_eq!(settings.id, Some(4243), "{vx:?}");
    assert_eq!(settings.port, Some(4789), "{vx:?}");
    assert_eq!(settings.learning, Some(false), "{vx:?}");
    assert_eq!(settings.proxy, Some(true), "{vx:?}");
    assert_eq!(
        lab::ipv4_addrs(&path, "br0").unwrap(),
        vec!["198.18.1.254/24".parse().unwrap()]
    );
    // The VXLAN device was created in the underlay and moved: nothing is left there.
    let left = lab::link_names(&netns_path(&underlay)).unwrap();
    assert!(!left.iter().any(|l| l.starts_with("vx-")), "{left:?}");

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

    // Read back by a second netlink socket of the lab, not the dataplane's own.
    let kernel = vxlan_state(&ns);
    assert_eq!(kernel.neighbours.len(), 100, "{kernel:?}");
    let (ip5, mac5) = (
        Ipv4Addr::new(198, 18, 1, 5),
        "02:42:c6:12:01:05".parse().unwrap(),
    );
    assert_eq!(kernel.neighbours.get(&ip5), Some(&mac5));
    assert_eq!(kernel.fdb.len(), 100, "{kernel:?}");
    assert_eq!(
        kernel.fdb.get(&mac5),
        Some(&IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)))
    );

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

    // Delete everything; deleting again (absent entries) is not an error.
    let dels = diff(&KernelState::default(), &dp.state(&net).await.unwrap());
    assert_eq!(dels.len(), 201);
    dp.apply(&net, &dels).await.unwrap();
    assert!(dp.state(&net).await.unwrap().is_empty());
    dp.apply(&net, &dels).await.unwrap();
    assert!(vxlan_state(&ns).is_empty());

    dp.remove_network(&net).await.unwrap();
    assert!(!path.exists());
    assert!(!dp.has_network(&net));
    assert!(!netns_path(&ns).exists());
    assert!(matches!(
        dp.state(&net).await,
        Err(NetlinkError::NoNetwork(_))
    ));
}

async fn two_hosts_ping_across_vxlan() {
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
    let (p1, p2) = (netns_path(&h1), netns_path(&h2));
    lab::add_veth(&p1, "ul1", &p2, "ul2").unwrap();
    lab::add_addr(&p1, "ul1", "198.18.0.1/24".parse().unwrap()).unwrap();
    lab::add_addr(&p2, "ul2", "198.18.0.2/24".parse().unwrap()).unwrap();
    lab::link_up(&p1, "ul1").unwrap();
    lab::link_up(&p2, "ul2").unwrap();

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
            "eth0",
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
            "eth0",
            ipnet::Ipv4Net::new(ip2, gw_prefix).unwrap(),
            mac2,
            1450,
        )
        .await
        .unwrap();
    let cp1 = netns_path(&c1);
    let eth0 = lab::link_facts(&cp1, "eth0").unwrap().expect("eth0 in c1");
    assert_eq!(eth0.mtu, Some(1450), "{eth0:?}");
    assert_eq!(
        lab::ipv4_addrs(&cp1, "eth0").unwrap(),
        vec!["198.18.100.10/24".parse().unwrap()]
    );

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

    // The default route via the gateway is what makes the other host's subnet reachable
    // only through eth0; one echo is enough, a few tries allow for the first ARP.
    let answered = (0..5).any(|_| {
        lab::ping(&cp1, ip2, Duration::from_secs(1))
            .unwrap()
            .is_some()
    });
    assert!(answered, "no echo reply from {ip2} across VXLAN");

    // Detach, then the path is gone; remove both networks.
    hosts[0].detach_endpoint(&net, ip1).await.unwrap();
    hosts[0].detach_endpoint(&net, ip1).await.unwrap(); // absent: fine
    assert!(!lab::link_names(&cp1).unwrap().contains(&"eth0".to_owned()));
    for dp in &mut hosts {
        let path = dp.network_netns(&net).unwrap().to_owned();
        dp.remove_network(&net).await.unwrap();
        assert!(!path.exists());
    }
}

async fn entries_written_by_iproute2_are_read_back() {
    let (_cleanup, _underlay, mut dp) = dataplane('c', NetlinkConfig::default()).await;
    let net = NetworkId::from("net-c");
    let spec = NetworkSpec {
        vni: 4244,
        gateway: "198.18.1.254/24".parse().unwrap(),
    };
    dp.ensure_network(&net, spec).await.unwrap();
    let ns = dp.netns_name(spec.vni);

    // Entries written by iproute2 are read back too (`bridge fdb ... permanent` sets
    // NUD_NOARP | NUD_PERMANENT); non-permanent ones are not.
    let (ip, mac, _) = peer(1);
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
    let mut want = KernelState::default();
    want.neighbours.insert(ip, mac);
    want.fdb.insert(mac, "198.18.0.9".parse().unwrap());
    assert_eq!(dp.state(&net).await.unwrap(), want);
    dp.remove_network(&net).await.unwrap();
}
