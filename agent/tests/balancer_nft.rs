#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only test of the VIP balancer's nf_tables programming (`agent::balancer`) against the
//! real kernel: a client namespace and a server namespace joined by a veth
//! (198.18.60.1/24 and 198.18.60.2-4/24), TCP and UDP servers in the server namespace on each
//! backend address that answer with the address they were reached at, and a VIP
//! (198.18.60.100) that no interface holds.
//!
//! The client's balancer is synced to three backends; a UDP flow's backend is withdrawn and
//! the flow must move to another; then two backends (a task disabled), then none;
//! then a fresh `SandboxBalancers` (an agent restart) syncs over the table the first one left.
//! Each time the client opens many connections (and sends from many UDP sockets) to the VIP
//! and checks which backends answered. Only 198.18.60.0/24 is used, in namespaces this test
//! makes and removes, panics included.
//!
//! Two more tests stall one sandbox's sync (its namespace path is a FIFO, whose opening
//! blocks) and check that another sandbox is synced meanwhile: through `SandboxBalancers`,
//! and through the agent's feed task, change after change.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use agent::balancer::SandboxBalancers;
use discovery::{NetworkRecords, ServiceTable};
use ipnet::Ipv4Net;
use overlay::netlink::{lab, netns_path};

mod common;
use common::lab::{run_root_tests, spawn_in_netns};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 60, 1);
const BACKENDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 60, 2),
    Ipv4Addr::new(198, 18, 60, 3),
    Ipv4Addr::new(198, 18, 60, 4),
];
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 60, 100);
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 9090;
/// Connections (and UDP sockets) per check: with three backends each is missed with
/// probability (2/3)^60, about 3e-11.
const TRIES: usize = 60;

fn main() {
    run_root_tests(
        "balancer_nft",
        vec![
            ("vip_spreads_over_backends", vip_spreads_over_backends),
            (
                "a_stalled_sandbox_holds_up_only_itself",
                a_stalled_sandbox_holds_up_only_itself,
            ),
            (
                "the_feed_goes_on_past_a_stalled_sandbox",
                the_feed_goes_on_past_a_stalled_sandbox,
            ),
        ],
    );
}

/// Two namespaces and the servers; removed on drop.
struct Rig {
    client: String,
    server: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = lab::del_netns(&self.client);
        let _ = lab::del_netns(&self.server);
    }
}

fn rig() -> Rig {
    let tag = std::process::id();
    let rig = Rig {
        client: format!("lbc{tag}"),
        server: format!("lbs{tag}"),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let client = lab::add_netns(&rig.client).unwrap();
    let server = lab::add_netns(&rig.server).unwrap();
    lab::add_veth(&client, "lbc", &server, "lbs").unwrap();
    lab::add_addr(&client, "lbc", Ipv4Net::new(CLIENT_IP, 24).unwrap()).unwrap();
    for ip in BACKENDS {
        lab::add_addr(&server, "lbs", Ipv4Net::new(ip, 24).unwrap()).unwrap();
    }
    lab::link_up(&client, "lbc").unwrap();
    lab::link_up(&server, "lbs").unwrap();
    let (ready_tx, ready) = mpsc::channel();
    for ip in BACKENDS {
        let (stop, tx) = (rig.stop.clone(), ready_tx.clone());
        spawn_in_netns(&rig.server, move || {
            let listener = TcpListener::bind((ip, TCP_PORT)).unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(ip.to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        let (stop, tx) = (rig.stop.clone(), ready_tx.clone());
        spawn_in_netns(&rig.server, move || {
            let sock = UdpSocket::bind((ip, UDP_PORT)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(ip.to_string().as_bytes(), from);
                }
            }
        });
    }
    for _ in 0..BACKENDS.len() * 2 {
        ready.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    rig
}

/// The backends that answered `TRIES` TCP connections and `TRIES` UDP sockets to the VIP,
/// from the client namespace; `None` for an attempt nobody answered.
fn reached(client: &str) -> (BTreeSet<Option<Ipv4Addr>>, BTreeSet<Option<Ipv4Addr>>) {
    reached_in(client, TRIES)
}

/// [`reached`] with `tries` attempts of each kind.
fn reached_in(
    client: &str,
    tries: usize,
) -> (BTreeSet<Option<Ipv4Addr>>, BTreeSet<Option<Ipv4Addr>>) {
    let (tx, rx) = mpsc::channel();
    spawn_in_netns(client, move || {
        let mut tcp = BTreeSet::new();
        let mut udp = BTreeSet::new();
        let vip_tcp = SocketAddr::from((VIP, TCP_PORT));
        for _ in 0..tries {
            let answer = TcpStream::connect_timeout(&vip_tcp, Duration::from_millis(300))
                .ok()
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    let mut text = String::new();
                    s.read_to_string(&mut text).ok()?;
                    text.parse::<Ipv4Addr>().ok()
                });
            tcp.insert(answer);
            let sock = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let _ = sock.send_to(b"who", (VIP, UDP_PORT));
            let mut buf = [0u8; 64];
            let answer = sock.recv_from(&mut buf).ok().and_then(|(n, from)| {
                // conntrack answers from the VIP, whatever backend served.
                assert_eq!(from, SocketAddr::from((VIP, UDP_PORT)));
                std::str::from_utf8(&buf[..n])
                    .ok()?
                    .parse::<Ipv4Addr>()
                    .ok()
            });
            udp.insert(answer);
        }
        tx.send((tcp, udp)).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(120)).unwrap()
}

/// Who answers a datagram to the VIP from the client's UDP port `port` (one flow).
fn udp_from(client: &str, port: u16) -> Option<Ipv4Addr> {
    let (tx, rx) = mpsc::channel();
    spawn_in_netns(client, move || {
        let sock = UdpSocket::bind((CLIENT_IP, port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = sock.send_to(b"who", (VIP, UDP_PORT));
        let mut buf = [0u8; 64];
        let answer = sock.recv_from(&mut buf).ok().and_then(|(n, _)| {
            std::str::from_utf8(&buf[..n])
                .ok()?
                .parse::<Ipv4Addr>()
                .ok()
        });
        // Closed before answering: the next look binds the same port.
        drop(sock);
        tx.send(answer).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// The record of a task of service "web" (VIP [`VIP`]) at `ip`.
fn task(ip: Ipv4Addr) -> discovery::EndpointRecord {
    discovery::EndpointRecord {
        name: format!("web-{ip}"),
        service_name: "web".into(),
        service_id: "sid".into(),
        virtual_ip: VIP.to_string(),
        endpoint_ip: ip.to_string(),
        ..Default::default()
    }
}

fn table(backends: &[Ipv4Addr]) -> ServiceTable {
    let mut records = NetworkRecords::default();
    for ip in backends {
        records.add(&discovery::claims(&task(*ip)).unwrap().unwrap());
    }
    ServiceTable::of([&records])
}

fn some(ips: &[Ipv4Addr]) -> BTreeSet<Option<Ipv4Addr>> {
    ips.iter().copied().map(Some).collect()
}

fn vip_spreads_over_backends() {
    let rig = rig();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let netns = netns_path(&rig.client);
    let balancers = SandboxBalancers::new();

    let all = table(&BACKENDS);
    let done = rt.block_on(balancers.sync("c1", &netns, &all)).unwrap();
    assert_eq!(done.ops, 1);
    assert_eq!(reached(&rig.client), (some(&BACKENDS), some(&BACKENDS)));

    // Nothing changed: nothing sent.
    let done = rt.block_on(balancers.sync("c1", &netns, &all)).unwrap();
    assert_eq!(done.messages, 0);

    // A UDP flow (one client port) stays on its backend while it is in, and moves when it
    // is withdrawn: conntrack's entry for the flow is forgotten.
    let port = 45_000;
    let first = udp_from(&rig.client, port).unwrap();
    assert_eq!(udp_from(&rig.client, port), Some(first));
    let others: Vec<Ipv4Addr> = BACKENDS.iter().copied().filter(|b| *b != first).collect();
    let done = rt
        .block_on(balancers.sync("c1", &netns, &table(&others)))
        .unwrap();
    // This flow, and those of the earlier looks that went to the same backend.
    assert!(done.flows_forgotten >= 1);
    let moved = udp_from(&rig.client, port).unwrap();
    assert!(
        others.contains(&moved),
        "{moved} answered, {first} was withdrawn"
    );
    rt.block_on(balancers.sync("c1", &netns, &all)).unwrap();

    // One task disabled.
    let two = table(&BACKENDS[..2]);
    rt.block_on(balancers.sync("c1", &netns, &two)).unwrap();
    assert_eq!(
        reached(&rig.client),
        (some(&BACKENDS[..2]), some(&BACKENDS[..2]))
    );

    // No task left: the VIP is no longer translated (nobody holds it).
    rt.block_on(balancers.sync("c1", &netns, &ServiceTable::new()))
        .unwrap();
    let nobody: BTreeSet<Option<Ipv4Addr>> = [None].into();
    assert_eq!(reached_in(&rig.client, 3), (nobody.clone(), nobody));

    // A restarted agent finds the old table and replaces it.
    rt.block_on(balancers.sync("c1", &netns, &two)).unwrap();
    let restarted = SandboxBalancers::new();
    let one = table(&BACKENDS[2..]);
    rt.block_on(restarted.sync("c1", &netns, &one)).unwrap();
    assert_eq!(
        reached(&rig.client),
        (some(&BACKENDS[2..]), some(&BACKENDS[2..]))
    );
    assert_eq!(rt.block_on(restarted.programmed("c1")), Some(one));
}

/// A namespace and a directory this test made, removed on drop.
struct Made {
    netns: String,
    dir: std::path::PathBuf,
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = lab::del_netns(&self.netns);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Made {
    /// A namespace `<prefix><pid>`, and a directory holding a FIFO whose opening blocks
    /// until a writer opens it (a namespace path that stalls).
    fn with_fifo(prefix: &str) -> (Self, std::path::PathBuf) {
        let tag = std::process::id();
        let made = Made {
            netns: format!("{prefix}{tag}"),
            dir: std::env::temp_dir().join(format!("balancer-{prefix}-{tag}")),
        };
        lab::add_netns(&made.netns).unwrap();
        std::fs::create_dir_all(&made.dir).unwrap();
        let fifo = made.dir.join("stalled-netns");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        (made, fifo)
    }
}

fn a_stalled_sandbox_holds_up_only_itself() {
    let (made, fifo) = Made::with_fifo("lbg");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let balancers = Arc::new(SandboxBalancers::new());

    // Opening the FIFO blocks until a writer opens it: this sandbox's sync stalls.
    let stalled = rt.spawn({
        let (balancers, fifo) = (Arc::clone(&balancers), fifo.clone());
        async move { balancers.sync("stalled", &fifo, &table(&BACKENDS)).await }
    });
    // Let it start: it waits in the opening from now on.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    let all = table(&BACKENDS);
    let done = rt
        .block_on(balancers.sync("good", &netns_path(&made.netns), &all))
        .unwrap();
    assert_eq!(done.ops, 1);
    assert!(
        !stalled.is_finished(),
        "the stalled sync ended before the other sandbox was synced"
    );
    assert_eq!(rt.block_on(balancers.programmed("good")), Some(all));

    // A writer releases the opening; a FIFO is no namespace, so that sync fails.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .unwrap();
        assert!(rt.block_on(stalled).unwrap().is_err());
    }
    assert_eq!(rt.block_on(balancers.programmed("stalled")), None);
}

/// A task of service "web" (VIP [`VIP`]) at `ip`, as the directory receives it.
fn task_event(ip: Ipv4Addr) -> nodecore::NamesChange {
    let record = task(ip);
    nodecore::NamesChange::Record(networkdb::WatchEvent {
        table: discovery::ENDPOINT_TABLE.into(),
        network: "net".into(),
        key: format!("ep-{ip}").as_str().into(),
        prev: None,
        value: Some(record.encode().into()),
    })
}

/// Found by review: the feed waited for every sandbox's sync before it looked at the next
/// change, so one stalled namespace (up to the 10 s timeout) delayed every other sandbox.
fn the_feed_goes_on_past_a_stalled_sandbox() {
    use agent::balancer::{BalancerStats, run};
    use agent::dns::directory::Directory;

    let (made, fifo) = Made::with_fifo("lbf");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let directory = Directory::new();
    directory.apply_change(&nodecore::NamesChange::Attach("net".into()));
    directory.set_sandbox_netns(
        [
            ("stalled".to_owned(), fifo.clone()),
            ("good".to_owned(), netns_path(&made.netns)),
        ]
        .into(),
    );
    directory.apply_change(&nodecore::NamesChange::Topology {
        networks: [("net".to_owned(), "net".to_owned())].into(),
        sandboxes: [
            ("stalled".to_owned(), vec!["net".to_owned()]),
            ("good".to_owned(), vec!["net".to_owned()]),
        ]
        .into(),
    });
    let balancers = Arc::new(SandboxBalancers::new());
    let feed = rt.spawn(run(
        Arc::clone(&balancers),
        directory.clone(),
        Arc::new(BalancerStats::default()),
    ));
    let holds = |n: usize| {
        let balancers = Arc::clone(&balancers);
        rt.block_on(async move {
            // Far below the stalled sync's 10 s timeout.
            for _ in 0..300 {
                let got = balancers.programmed("good").await;
                if got.as_ref().and_then(|t| t.backends(VIP)).map(|b| b.len()) == Some(n) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        })
    };
    // Two changes, one after the other, while the stalled sandbox's first sync waits.
    directory.apply_change(&task_event(BACKENDS[0]));
    assert!(holds(1), "the first change never reached the good sandbox");
    directory.apply_change(&task_event(BACKENDS[1]));
    assert!(holds(2), "the second change waited for the stalled sandbox");

    // Release the stalled opening (a FIFO is no namespace: that sync fails), then stop.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&fifo);
        std::thread::sleep(Duration::from_millis(100));
    }
    feed.abort();
    // A retry of the stalled sandbox may be waiting in a new opening: do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(100));
}
