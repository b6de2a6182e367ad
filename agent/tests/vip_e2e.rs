#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only end to end test of service VIP load balancing, on the lab of `overlay_e2e`:
//! three "hosts" (network namespaces on a bridge in an underlay namespace) each running
//! `netagent run`, an overlay network `vipnet`, three tasks of service `web` (VIP
//! 198.18.100.200) in container namespaces on h1 (two) and h2 (one), and a client container on
//! h3. Each task serves TCP and UDP on port 8080 from a thread inside its namespace and answers
//! with its own name.
//!
//! The client opens many TCP connections to the VIP (and sends from many UDP sockets) and
//! must reach every task; after `endpoint disable` of one task it must reach only the other
//! two; after h2's agent is killed (SIGKILL: its node fails, its endpoints are hidden) only the
//! task left on h1. Each check is polled (20 s at most) and its delay printed: the time from
//! the change until the client's balancer reflects it. The failures are reported with the
//! agents' logs.
//!
//! Only 198.18.0.0/15 is used, inside namespaces the test makes; everything it makes is removed
//! on the way out, panics included.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::lab::{Lab, run_root_tests, spawn_in_netns};
use common::poll::try_poll;

const HOSTS: usize = 3;
const CONTAINERS: usize = 2;
const NETWORK: &str = "vipnet";
const SUBNET: &str = "198.18.100.0/24";
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 200);
const PORT: u16 = 8080;
/// Connections (and UDP sockets) per look: a task is missed with probability (2/3)^40 ~ 1e-7.
const TRIES: usize = 40;
/// How long each check may take.
const PATIENCE: Duration = Duration::from_secs(20);

fn main() {
    run_root_tests(
        "vip_e2e",
        vec![(
            "a_service_vip_spreads_over_its_enabled_live_tasks",
            a_service_vip_spreads_over_its_enabled_live_tasks,
        )],
    )
}

/// TCP and UDP servers answering `name`, in namespace `netns`, until `stop`.
fn serve(netns: &str, name: &'static str, stop: &Arc<AtomicBool>) {
    let (tx, ready) = mpsc::channel();
    let (s, t) = (stop.clone(), tx.clone());
    spawn_in_netns(netns, move || {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
        listener.set_nonblocking(true).unwrap();
        t.send(()).unwrap();
        while !s.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.write_all(name.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    let s = stop.clone();
    spawn_in_netns(netns, move || {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        while !s.load(Ordering::Relaxed) {
            if let Ok((_, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(name.as_bytes(), from);
            }
        }
    });
    for _ in 0..2 {
        ready.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}

/// Who answered `TRIES` TCP connections and `TRIES` UDP sockets to the VIP from `netns`
/// (`-` for an attempt nobody answered), as two sets of names.
fn look(netns: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    spawn_in_netns(netns, move || {
        let vip = SocketAddr::from((VIP, PORT));
        let mut tcp = BTreeSet::new();
        let mut udp = BTreeSet::new();
        for _ in 0..TRIES {
            let answer = TcpStream::connect_timeout(&vip, Duration::from_millis(500))
                .ok()
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    let mut text = String::new();
                    s.read_to_string(&mut text).ok()?;
                    Some(text)
                });
            tcp.insert(answer.unwrap_or_else(|| "-".into()));
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let _ = sock.send_to(b"who", vip);
            let mut buf = [0u8; 64];
            let answer = sock
                .recv_from(&mut buf)
                .ok()
                .and_then(|(n, _)| String::from_utf8(buf[..n].to_vec()).ok());
            udp.insert(answer.unwrap_or_else(|| "-".into()));
        }
        (tcp, udp)
    })
    .join()
    .unwrap()
}

/// Polls until the client reaches exactly `want` over TCP and UDP; the delay, or what it
/// reached last.
fn reaches(netns: &str, want: &[&str]) -> Result<Duration, String> {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let started = Instant::now();
    let mut last = None;
    try_poll(PATIENCE, || {
        let got = look(netns);
        if got.0 == want && got.1 == want {
            Ok(started.elapsed())
        } else {
            last = Some(got);
            Err(())
        }
    })
    .map_err(|_| format!("want {want:?}, reached (tcp, udp) {last:?}"))
}

fn a_service_vip_spreads_over_its_enabled_live_tasks() {
    let mut lab = Lab::new("ve", HOSTS, CONTAINERS, &["--dns-forward=false"]);
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the servers' threads on the way out, panics included (declared after the lab:
    // dropped before it).
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop = StopOnDrop(stop.clone());

    for h in 1..=HOSTS {
        lab.start_agent(h);
    }
    lab.wait_for(1, &["info"], |o| o.contains("Members:     3"));
    lab.ok(
        1,
        &[
            "network", "create", "--driver", "overlay", "--subnet", SUBNET, NETWORK,
        ],
    );
    for h in 1..=HOSTS {
        lab.wait_for(h, &["network", "ls"], |o| o.contains(NETWORK));
    }
    let vip = VIP.to_string();
    let web = ["--service", "web", "--vip", vip.as_str()];
    lab.attach(1, 1, NETWORK, "web1", &web, false);
    lab.attach(1, 2, NETWORK, "web2", &web, false);
    lab.attach(2, 1, NETWORK, "web3", &web, false);
    lab.attach(3, 1, NETWORK, "client", &[], false);
    serve(&lab.container(1, 1), "web1", &stop);
    serve(&lab.container(1, 2), "web2", &stop);
    serve(&lab.container(2, 1), "web3", &stop);
    let client = lab.container(3, 1);

    let mut failures = Vec::new();
    let mut check = |what: &str, result: Result<Duration, String>| match result {
        Ok(delay) => println!("ok   {what} (after {delay:?})"),
        Err(e) => {
            println!("FAIL {what}: {e}");
            failures.push(format!("{what}: {e}"));
        }
    };

    check(
        "the client reaches all three tasks through the VIP",
        reaches(&client, &["web1", "web2", "web3"]),
    );

    lab.ok(1, &["endpoint", "disable", "web2"]);
    check(
        "after `endpoint disable web2`, only web1 and web3",
        reaches(&client, &["web1", "web3"]),
    );

    lab.kill9(2);
    check(
        "after h2's agent is killed, only web1",
        reaches(&client, &["web1"]),
    );

    if !failures.is_empty() {
        panic!("{}\n\nlogs:\n{}", failures.join("\n"), lab.logs());
    }
}
