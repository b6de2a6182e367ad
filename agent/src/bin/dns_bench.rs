//! How many queries per second the embedded DNS server answers for known names on one core.
//!
//! The server runs on a `current_thread` Tokio runtime on its own thread, with 1000 names; a
//! client thread keeps a window of UDP queries outstanding for a few seconds (or 5M queries)
//! and prints the answer rate and the p50/p99 latency.
//!
//! Usage: `dns_bench [seconds=5] [window=64]`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent::dns::server::{DnsConfig, DnsServer, Names};
use discovery::{Family, Lookup};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

const NAMES: usize = 1000;
const MAX_QUERIES: u64 = 5_000_000;

/// 1000 names `svc<i>`, with one to three IPv4 addresses each.
struct BenchNames(HashMap<String, Vec<IpAddr>>);

impl Names for BenchNames {
    fn resolve(&self, name: &str, family: Family) -> Lookup {
        let name = name.trim_end_matches('.');
        match (self.0.get(name), family) {
            (None, _) => Lookup::NotFound,
            (Some(_), Family::V6) => Lookup::NoData,
            (Some(ips), Family::V4) => Lookup::Addrs(ips.clone()),
        }
    }

    fn reverse(&self, _ip: IpAddr) -> Option<String> {
        None
    }
}

fn bench_names() -> BenchNames {
    let mut map = HashMap::with_capacity(NAMES);
    for i in 0..NAMES {
        let count = i % 3 + 1;
        let ips = (0..count)
            .map(|k| {
                let [_, _, hi, lo] = u32::try_from(i).unwrap_or(0).to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(10, hi, lo, u8::try_from(k).unwrap_or(0)))
            })
            .collect();
        map.insert(format!("svc{i}"), ips);
    }
    BenchNames(map)
}

/// Starts the server on its own single-threaded runtime; returns its UDP address and a sender
/// that stops it.
fn start_server() -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>), String> {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = addr_tx.send(Err(format!("runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async move {
            let sockets = async {
                let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
                let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                Ok::<_, std::io::Error>((udp, tcp))
            };
            let (udp, tcp) = match sockets.await {
                Ok(s) => s,
                Err(e) => {
                    let _ = addr_tx.send(Err(format!("bind: {e}")));
                    return;
                }
            };
            let addr = udp.local_addr().map_err(|e| format!("local_addr: {e}"));
            let server = DnsServer::start(udp, tcp, Arc::new(bench_names()), DnsConfig::default());
            let _ = addr_tx.send(addr);
            let _ = stop_rx.await;
            let stats = server.stats();
            server.shutdown().await;
            eprintln!("server stats: {stats:?}");
        });
    });
    let addr = addr_rx
        .recv()
        .map_err(|_| "server thread died".to_owned())??;
    Ok((addr, stop_tx))
}

/// The wire form of an A query for each name; the first two bytes (the ID) are patched per send.
fn queries() -> Result<Vec<Vec<u8>>, String> {
    (0..NAMES)
        .map(|i| {
            let name = Name::from_ascii(format!("svc{i}.")).map_err(|e| e.to_string())?;
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(name, RecordType::A));
            m.to_vec().map_err(|e| e.to_string())
        })
        .collect()
}

struct Outcome {
    sent: u64,
    answered: u64,
    lost: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn run_client(server: SocketAddr, seconds: u64, window: usize) -> Result<Outcome, String> {
    let queries = queries()?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket.connect(server).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let window = window.clamp(1, 32_768);
    // Send time per message ID; `None` when not outstanding.
    let mut pending: Vec<Option<Instant>> = vec![None; 65_536];
    let mut outstanding = 0usize;
    let mut next_id: u16 = 0;
    let mut sent = 0u64;
    let mut answered = 0u64;
    let mut lost = 0u64;
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let stop = start + Duration::from_secs(seconds);

    let mut send_one = |pending: &mut Vec<Option<Instant>>, sent: &mut u64| -> Result<(), String> {
        let id = next_id;
        next_id = next_id.wrapping_add(1);
        let mut q = queries[usize::from(id) % NAMES].clone();
        q[..2].copy_from_slice(&id.to_be_bytes());
        pending[usize::from(id)] = Some(Instant::now());
        socket.send(&q).map_err(|e| e.to_string())?;
        *sent += 1;
        Ok(())
    };

    while Instant::now() < stop && sent < MAX_QUERIES {
        while outstanding < window && sent < MAX_QUERIES {
            send_one(&mut pending, &mut sent)?;
            outstanding += 1;
        }
        match socket.recv(&mut buf) {
            Ok(n) if n >= 2 => {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if let Some(at) = pending[id].take() {
                    latencies.push(at.elapsed());
                    answered += 1;
                    outstanding -= 1;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Everything outstanding is lost: start a fresh window.
                for slot in pending.iter_mut().filter(|s| s.is_some()) {
                    *slot = None;
                    lost += 1;
                }
                outstanding = 0;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(Outcome {
        sent,
        answered,
        lost,
        elapsed: start.elapsed(),
        latencies,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5u64);
    let window = args.next().and_then(|s| s.parse().ok()).unwrap_or(64usize);

    let (server, stop) = start_server()?;
    let mut out = run_client(server, seconds, window)?;
    let _ = stop.send(());
    // Let the server thread print its counters.
    std::thread::sleep(Duration::from_millis(100));

    out.latencies.sort_unstable();
    let secs = out.elapsed.as_secs_f64();
    println!(
        "dns_bench: {names} names, window {window}, {secs:.2} s: sent {sent}, answered {answered}, lost {lost}",
        names = NAMES,
        sent = out.sent,
        answered = out.answered,
        lost = out.lost,
    );
    println!(
        "dns_bench: {qps:.0} queries/s (server on one current_thread runtime), latency p50 {p50:?} p99 {p99:?}",
        qps = out.answered as f64 / secs,
        p50 = percentile(&out.latencies, 0.50),
        p99 = percentile(&out.latencies, 0.99),
    );
    Ok(())
}
