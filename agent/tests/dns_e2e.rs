#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only end to end test of the embedded DNS (service discovery), on the lab of
//! `overlay_e2e`: three "hosts" (network namespaces on a bridge in an underlay namespace)
//! each running `netagent run --dns-upstream 198.18.0.53`, an overlay network `dnsnet`, and
//! container namespaces whose sandboxes were created with `--resolv-conf <lab>/resolv/
//! <container>/resolv.conf`; `getent` runs in the container's namespace with that file mounted
//! over `/etc/resolv.conf` (as `ip netns exec` would), so it resolves through the agent's
//! server at 127.0.0.11 with glibc, as a container would.
//!
//! The upstream resolver is a stub served by this test from a thread that entered the underlay
//! namespace (198.18.0.53 on the bridge, UDP and TCP): `outside.test.` A is 198.18.0.99, every
//! other name is NXDOMAIN.
//!
//! From the container on h3 the test resolves: a container on h2 by name (any case) and by
//! alias, a service's VIP, `tasks.<service>` (tasks on h1 and h2), a reverse (PTR) lookup, a name
//! only the upstream knows, and a name nobody knows; then asks h1's `netagent dns lookup`, sends
//! a raw query over TCP to 127.0.0.11:53 inside the container, and finally takes an endpoint
//! out of its sandbox on h2 and waits for its name to vanish on h3. Each check is polled (15 s
//! at most) and its delay printed; the failures are reported together with the agents' logs.
//!
//! Only 198.18.0.0/15 is used, inside namespaces the test makes; everything it makes (the
//! namespaces, the agents, the stub's threads, the lab's directory) is removed on the way out,
//! panics included.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

mod common;
use common::lab::{Lab, run_root_tests, spawn_in_netns};
use common::poll::try_poll;

const HOSTS: usize = 3;
/// Container namespaces per host (h1c2 and h3c2 stay unused).
const CONTAINERS: usize = 2;
const NETWORK: &str = "dnsnet";
const SUBNET: &str = "198.18.100.0/24";
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 200);
/// The stub upstream resolver, on the underlay bridge.
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);
/// The one name the upstream knows, and its address.
const OUTSIDE: &str = "outside.test";
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
/// How long each check may take.
const PATIENCE: Duration = Duration::from_secs(15);

/// The stub upstream: UDP and TCP on [`UPSTREAM`]:53 in the underlay namespace, until dropped.
struct Upstream {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The queries seen: `udp|tcp FROM NAME TYPE`.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start(netns: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
        let mut threads = Vec::new();

        let (s, q, tx) = (stop.clone(), seen.clone(), ready_tx.clone());
        threads.push(spawn_in_netns(netns, move || {
            let sock = match UdpSocket::bind((UPSTREAM, 53)) {
                Ok(sock) => sock,
                Err(e) => return tx.send(Err(format!("udp bind: {e}"))).unwrap(),
            };
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            tx.send(Ok(())).unwrap();
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if let Some(reply) = answer(&buf[..n], "udp", from, &q) {
                            let _ = sock.send_to(&reply, from);
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("stub upstream: udp: {e}"),
                }
            }
        }));

        let (s, q, tx) = (stop.clone(), seen.clone(), ready_tx);
        threads.push(spawn_in_netns(netns, move || {
            let listener = match TcpListener::bind((UPSTREAM, 53)) {
                Ok(l) => l,
                Err(e) => return tx.send(Err(format!("tcp bind: {e}"))).unwrap(),
            };
            listener.set_nonblocking(true).unwrap();
            tx.send(Ok(())).unwrap();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, from)) => serve_tcp(conn, from, &q),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("stub upstream: tcp: {e}"),
                }
            }
        }));

        let upstream = Self {
            stop,
            threads,
            seen,
        };
        for _ in 0..2 {
            let ready = ready
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("stub upstream never started: {e}"));
            ready.unwrap_or_else(|e| panic!("stub upstream: {e}"));
        }
        upstream
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Answers the length-prefixed queries of one TCP connection until it is closed.
fn serve_tcp(mut conn: TcpStream, from: SocketAddr, seen: &Mutex<Vec<String>>) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    loop {
        let Some(query) = read_framed(&mut conn) else {
            return;
        };
        let Some(reply) = answer(&query, "tcp", from, seen) else {
            return;
        };
        if write_framed(&mut conn, &reply).is_err() {
            return;
        }
    }
}

fn read_framed(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_framed(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut framed = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    conn.write_all(&framed)
}

/// The stub's answer to one query: `outside.test.` A is [`OUTSIDE_IP`] (other types: no data),
/// anything else NXDOMAIN; authoritative either way.
fn answer(raw: &[u8], proto: &str, from: SocketAddr, seen: &Mutex<Vec<String>>) -> Option<Vec<u8>> {
    let query = Message::from_vec(raw).ok()?;
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.queries = query.queries.clone();
    match query.queries.first() {
        None => reply.metadata.response_code = ResponseCode::FormErr,
        Some(q) => {
            let name = q.name().to_ascii().to_ascii_lowercase();
            seen.lock()
                .unwrap()
                .push(format!("{proto} {from} {name} {}", q.query_type()));
            if name.trim_end_matches('.') == OUTSIDE {
                if q.query_type() == RecordType::A {
                    reply.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(OUTSIDE_IP)),
                    ));
                }
            } else {
                reply.metadata.response_code = ResponseCode::NXDomain;
            }
        }
    }
    reply.to_vec().ok()
}

/// Whether `text` has `word` as a whitespace-separated word.
fn has_word(text: &str, word: &str) -> bool {
    text.split_whitespace().any(|w| w == word)
}

/// Polls `probe` until it returns `Ok` or `patience` ran out; how long it took, or the last
/// error.
fn eventually(
    patience: Duration,
    probe: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let start = Instant::now();
    try_poll(patience, probe)
        .map(|()| start.elapsed())
        .map_err(|t| t.to_string())
}

/// The checks of the test, each polled, their failures gathered.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn check(
        &mut self,
        what: &str,
        patience: Duration,
        probe: impl FnMut() -> Result<(), String>,
    ) -> bool {
        match eventually(patience, probe) {
            Ok(took) => {
                println!("ok   {what} (after {took:?})");
                true
            }
            Err(last) => {
                println!("FAIL {what}: {last}");
                self.failures.push(format!("{what}: {last}"));
                false
            }
        }
    }

    /// `getent ARGS` from `netns` succeeds and `ok` accepts its output.
    fn getent(&mut self, lab: &Lab, netns: &str, args: &[&str], ok: impl Fn(&str) -> bool) -> bool {
        let what = format!("getent {}", args.join(" "));
        self.check(&what, PATIENCE, || match lab.getent(netns, args) {
            (Some(0), out) if ok(&out) => Ok(()),
            (status, out) => Err(format!("status {status:?}, output {out:?}")),
        })
    }
}

/// One query for `name` A over TCP to 127.0.0.11:53 inside namespace `netns`; the reply.
fn tcp_query(netns: &str, name: &str) -> Result<Message, String> {
    let name = Name::from_ascii(name).map_err(|e| e.to_string())?;
    spawn_in_netns(netns, move || {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name, RecordType::A));
        let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 11), 53));
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        write_framed(&mut conn, &query.to_vec().map_err(|e| e.to_string())?)
            .map_err(|e| format!("send: {e}"))?;
        let raw = read_framed(&mut conn).ok_or("no reply")?;
        let reply = Message::from_vec(&raw).map_err(|e| format!("bad reply: {e}"))?;
        if reply.metadata.id != query.metadata.id {
            return Err(format!(
                "reply id {} for query {}",
                reply.metadata.id, query.metadata.id
            ));
        }
        Ok(reply)
    })
    .join()
    .unwrap()
}

/// `netagent dns lookup NAME --network dnsnet` on every host, for each name.
fn lookups(lab: &Lab, names: &[&str]) -> String {
    let mut views = String::new();
    for h in 1..=HOSTS {
        for name in names {
            let out = lab.cli(h, &["dns", "lookup", name, "--network", NETWORK]);
            views.push_str(&format!(
                "  h{h} dns lookup {name}: {:?} {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    views
}

fn main() {
    run_root_tests(
        "dns_e2e",
        vec![(
            "containers_resolve_names_services_and_the_outside_through_the_embedded_dns",
            containers_resolve_names_services_and_the_outside_through_the_embedded_dns,
        )],
    )
}

fn containers_resolve_names_services_and_the_outside_through_the_embedded_dns() {
    let started = Instant::now();
    let upstream_arg = UPSTREAM.to_string();
    let mut lab = Lab::new("de", HOSTS, CONTAINERS, &["--dns-upstream", &upstream_arg]);
    let ul = lab.underlay();
    let upstream_addr = ipnet::Ipv4Net::new(UPSTREAM, 24).unwrap();
    overlay::netlink::lab::add_addr(&overlay::netlink::netns_path(&ul), "ulbr", upstream_addr)
        .unwrap();
    // Dropped before the lab (declared after it).
    let upstream = Upstream::start(&ul);

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
    let web1 = lab.attach(1, 1, NETWORK, "web1", &web, true);
    let web2 = lab.attach(2, 1, NETWORK, "web2", &web, true);
    let db1 = lab.attach(2, 2, NETWORK, "db1", &["--alias", "database"], true);
    let client_ip = lab.attach(3, 1, NETWORK, "client", &[], true);
    println!("all joined after {:?}", started.elapsed());
    let (web1, web2, db1) = (web1.to_string(), web2.to_string(), db1.to_string());

    let client = lab.container(3, 1);
    let mut checks = Checks::default();

    let resolv = lab.resolv_conf(&client);
    checks.check(
        "the client's resolv.conf names 127.0.0.11",
        PATIENCE,
        || {
            let text = std::fs::read_to_string(&resolv)
                .map_err(|e| format!("{}: {e}", resolv.display()))?;
            if text
                .lines()
                .any(|l| has_word(l, "nameserver") && has_word(l, "127.0.0.11"))
            {
                Ok(())
            } else {
                Err(format!("{text:?}"))
            }
        },
    );

    // Another host's container: by name, in any case, and by alias.
    let first_is = |ip: &str| {
        let ip = ip.to_owned();
        move |out: &str| out.split_whitespace().next() == Some(ip.as_str())
    };
    let db1_known = checks.getent(&lab, &client, &["hosts", "db1"], first_is(&db1));
    checks.getent(&lab, &client, &["hosts", "DB1"], first_is(&db1));
    checks.getent(&lab, &client, &["hosts", "database"], first_is(&db1));
    // A service: its VIP; its tasks on h1 and h2.
    checks.getent(&lab, &client, &["hosts", "web"], first_is(&vip));
    checks.getent(&lab, &client, &["ahostsv4", "tasks.web"], |out| {
        has_word(out, &web1) && has_word(out, &web2) && !has_word(out, &vip)
    });
    // Reverse.
    checks.getent(&lab, &client, &["hosts", &db1], |out| {
        out.to_ascii_lowercase().contains(&format!("db1.{NETWORK}"))
    });
    // Unknown to the cluster: forwarded to the upstream stub.
    checks.getent(
        &lab,
        &client,
        &["hosts", OUTSIDE],
        first_is(&OUTSIDE_IP.to_string()),
    );
    let seen = upstream.seen();
    if !seen.iter().any(|q| q.ends_with(&format!(" {OUTSIDE}. A"))) {
        checks
            .failures
            .push(format!("the upstream never saw {OUTSIDE} A: {seen:?}"));
    }
    checks.check(
        "getent hosts nosuch.test fails (NXDOMAIN upstream)",
        PATIENCE,
        || match lab.getent(&client, &["hosts", "nosuch.test"]) {
            (Some(2), _) => Ok(()),
            (status, out) => Err(format!("status {status:?}, output {out:?}")),
        },
    );

    // The CLI's view, on another host.
    checks.check("h1: netagent dns lookup tasks.web", PATIENCE, || {
        let out = lab.cli(1, &["dns", "lookup", "tasks.web", "--network", NETWORK]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && has_word(&text, &web1) && has_word(&text, &web2) {
            Ok(())
        } else {
            Err(format!("{:?}: {text:?}", out.status))
        }
    });

    // A raw query over TCP inside the container: the VIP, with libnetwork's TTL of 600 s.
    checks.check("TCP 127.0.0.11:53 web A", PATIENCE, || {
        let reply = tcp_query(&client, "web.")?;
        let ok = reply
            .answers
            .iter()
            .any(|r| r.ttl == 600 && matches!(r.data, RData::A(A(ip)) if ip == VIP));
        if reply.metadata.response_code == ResponseCode::NoError && ok {
            Ok(())
        } else {
            Err(format!(
                "{} answers {:?}",
                reply.metadata.response_code, reply.answers
            ))
        }
    });

    // What each agent's records say, for a failure report.
    let views = if checks.failures.is_empty() {
        String::new()
    } else {
        lookups(&lab, &["db1", "database", "web", "tasks.web", &db1])
    };

    // db1 leaves its sandbox on h2: its name vanishes on h3.
    let left = Instant::now();
    lab.ok(2, &["endpoint", "leave", "db1"]);
    let gone = checks.check(
        "getent hosts db1 fails after db1 left",
        PATIENCE,
        || match lab.getent(&client, &["hosts", "db1"]) {
            (Some(2), _) => Ok(()),
            (status, out) => Err(format!("status {status:?}, output {out:?}")),
        },
    );
    let took = left.elapsed();
    if gone && !db1_known {
        println!("(db1 was never resolved on h3: its disappearance proves nothing)");
    } else if gone {
        println!("db1 gone on h3 {took:?} after the leave");
        if took > Duration::from_secs(10) {
            checks
                .failures
                .push(format!("db1 took {took:?} to vanish (10 s allowed)"));
        }
    }
    // The client itself still resolves (a sanity check that the server still works).
    checks.getent(
        &lab,
        &client,
        &["hosts", "client"],
        first_is(&client_ip.to_string()),
    );

    println!("checks done after {:?}", started.elapsed());
    if checks.failures.is_empty() {
        return;
    }
    panic!(
        "{} check(s) failed:\n  {}\nbefore db1 left:\n{views}upstream saw: {:?}\n{}",
        checks.failures.len(),
        checks.failures.join("\n  "),
        upstream.seen(),
        lab.logs()
    );
}
