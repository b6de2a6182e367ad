//! NetworkDB core benchmark: `cargo bench -p networkdb --bench networkdb`.
//!
//! Reports, for the sans-IO core on one thread:
//! - table events applied per second on one node (gossip compounds, as peers send them);
//! - local writes per second;
//! - bytes per table event on the wire for a typical `overlay_peer_table` record, beside the
//!   size of the same event in libnetwork's protobuf layout (computed from `networkdb.proto`);
//! - memory per entry at 1,000,000 entries (resident set growth).
//!
//! Numbers are printed, never asserted.

#![allow(
    clippy::disallowed_methods,
    reason = "the bench measures wall-clock time"
)]
#![allow(missing_docs, reason = "bench binary")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use networkdb::wire::{
    COMPOUND_HEADER_BYTES, Message, NetworkEvent, NetworkEventKind, TableEvent, TableEventKind,
    encode_compound, part_cost,
};
use networkdb::{Channel, Config, LTime, NetworkDb, NodeName};

/// A swarm node ID: 12 lowercase hex characters.
const OWNER: &str = "3f1a9c0b7e24";
/// A swarm network ID: 25 characters.
const NETWORK: &str = "k2x9d0q7m1v4b8n3c6z5l0p2r";
const TABLE: &str = "overlay_peer_table";

/// An endpoint ID: 64 hex characters.
fn endpoint_id(i: usize) -> String {
    format!(
        "{:064x}",
        0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)
    )
}

/// libnetwork's `overlay.PeerRecord` as protobuf: endpoint_ip "10.0.1.5/24", endpoint_mac
/// "02:42:0a:00:01:05", tunnel_endpoint_ip "192.168.10.21" (strings, fields 1-3).
fn peer_record_protobuf() -> Vec<u8> {
    let mut out = Vec::new();
    for (field, s) in [
        (1u8, "10.0.1.5/24"),
        (2, "02:42:0a:00:01:05"),
        (3, "192.168.10.21"),
    ] {
        out.push(field << 3 | 2);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Bytes of a length-delimited protobuf field (tag, length, data); 0 when empty (proto3).
fn pb_bytes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + varint_len(len as u64) + len
    }
}

/// Bytes of a varint protobuf field; 0 when zero (proto3).
fn pb_varint(v: u64) -> usize {
    if v == 0 { 0 } else { 1 + varint_len(v) }
}

/// libnetwork's size of one table event inside a gossip compound:
/// `TableEvent` in `GossipMessage{type, data}` in `SimpleMessage{Payload}` in the repeated
/// `CompoundMessage.messages` field.
fn libnetwork_event_bytes(ltime: u64, key_len: usize, value_len: usize) -> (usize, usize) {
    let table_event = pb_varint(1) // type CREATE
        + pb_varint(ltime)
        + pb_bytes(OWNER.len())
        + pb_bytes(NETWORK.len())
        + pb_bytes(TABLE.len())
        + pb_bytes(key_len)
        + pb_bytes(value_len);
    let gossip = pb_varint(2) + pb_bytes(table_event);
    let simple = pb_bytes(gossip);
    let in_compound = pb_bytes(simple);
    (gossip, in_compound)
}

fn event(i: usize, ltime: u64, value: &Bytes) -> TableEvent {
    TableEvent {
        kind: TableEventKind::Create,
        ltime: LTime(ltime),
        owner: OWNER.into(),
        network: NETWORK.into(),
        table: TABLE.into(),
        key: endpoint_id(i).into(),
        value: value.clone(),
        residual_reap_secs: 0,
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn wire_sizes() {
    let value = Bytes::from(peer_record_protobuf());
    let ltime = 1_000;
    let ev = event(1, ltime, &value);
    let ours_alone = Message::TableEvent(ev.clone()).encode().len();
    let ours_part = part_cost(Message::TableEvent(ev).encode_part().len());
    let (go_alone, go_part) = libnetwork_event_bytes(ltime, 64, value.len());
    let budget = Config::default().payload_budget() - COMPOUND_HEADER_BYTES;
    println!(
        "wire size of one overlay_peer_table create (value {} bytes):",
        value.len()
    );
    println!(
        "  this project (postcard): {ours_alone} bytes alone, {ours_part} bytes in a compound"
    );
    println!("  libnetwork (protobuf):   {go_alone} bytes alone, {go_part} bytes in a compound");
    println!(
        "  events per 1400-byte datagram: {} here, {} in libnetwork's layout",
        budget / ours_part,
        (1400 - 5) / (go_part + 4)
    );
}

fn apply_rate() {
    let now = Instant::now();
    let value = Bytes::from(peer_record_protobuf());
    let mut db = NetworkDb::new(now, "rx".into(), addr(1), 1, Config::default()).expect("config");
    db.join_network(now, NETWORK.into()).expect("join");
    db.node_up(now, NodeName::from(OWNER), addr(2));
    let join = Message::NetworkEvent(NetworkEvent {
        kind: NetworkEventKind::Join,
        ltime: LTime(1),
        node: OWNER.into(),
        network: NETWORK.into(),
    });
    db.handle_message(now, Channel::Datagram, &join.encode())
        .expect("join event");
    while db.poll_output().is_some() {}

    // 200,000 events (100,000 keys created, then updated), packed as gossip packs them.
    let keys = 100_000;
    let budget = Config::default().payload_budget() - COMPOUND_HEADER_BYTES;
    let mut datagrams = Vec::new();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut used = 0;
    for round in 0..2u64 {
        for i in 0..keys {
            let part = Bytes::from(
                Message::TableEvent(event(i, 10 + round * keys as u64 + i as u64, &value))
                    .encode_part(),
            );
            if used + part_cost(part.len()) > budget {
                datagrams.push(encode_compound(&parts));
                parts.clear();
                used = 0;
            }
            used += part_cost(part.len());
            parts.push(part);
        }
    }
    datagrams.push(encode_compound(&parts));
    let events = 2 * keys;
    let start = Instant::now();
    for d in &datagrams {
        db.handle_message(now, Channel::Datagram, d)
            .expect("valid datagram");
        while db.poll_output().is_some() {}
    }
    let elapsed = start.elapsed();
    println!(
        "apply: {events} table events in {} datagrams in {:.3} s = {:.0} events/s on one core",
        datagrams.len(),
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(db.table_by_network(TABLE, NETWORK).len(), keys);
}

fn local_write_rate() {
    let now = Instant::now();
    let value = Bytes::from(peer_record_protobuf());
    let mut db = NetworkDb::new(now, "tx".into(), addr(1), 1, Config::default()).expect("config");
    db.join_network(now, NETWORK.into()).expect("join");
    let n = 200_000;
    let keys: Vec<String> = (0..n).map(endpoint_id).collect();
    let start = Instant::now();
    for k in &keys {
        db.create_entry(
            now,
            TABLE.into(),
            NETWORK.into(),
            k.as_str().into(),
            value.clone(),
        )
        .expect("create");
    }
    let elapsed = start.elapsed();
    println!(
        "local writes: {n} creates in {:.3} s = {:.0} writes/s (queued for gossip)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

fn memory_per_entry() {
    let now = Instant::now();
    let value = Bytes::from(peer_record_protobuf());
    let n = 1_000_000;
    let keys: Vec<String> = (0..n).map(endpoint_id).collect();
    let mut db = NetworkDb::new(now, "mem".into(), addr(1), 1, Config::default()).expect("config");
    let before = rss_bytes();
    let start = Instant::now();
    // The network is not joined, so entries stay local and no gossip queue grows: this
    // measures the table alone. Each entry gets its own copy of the value, as received ones do.
    for k in &keys {
        let v = Bytes::copy_from_slice(&value);
        db.create_entry(now, TABLE.into(), NETWORK.into(), k.as_str().into(), v)
            .expect("create");
    }
    let elapsed = start.elapsed();
    let after = rss_bytes();
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "memory: {n} entries (64-byte key, {}-byte value) grow RSS by {:.1} MiB = {:.0} \
             bytes/entry (built in {:.2} s)",
            value.len(),
            (a.saturating_sub(b)) as f64 / (1 << 20) as f64,
            a.saturating_sub(b) as f64 / n as f64,
            elapsed.as_secs_f64()
        ),
        _ => println!("memory: /proc/self/status unavailable"),
    }
    drop(keys);
    std::hint::black_box(&db);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing else useful.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::args().all(|a| a != "--bench");
    if quick {
        println!("(quick mode: run with `cargo bench` for the figures)");
        wire_sizes();
        return;
    }
    let start = Instant::now();
    wire_sizes();
    apply_rate();
    local_write_rate();
    memory_per_entry();
    println!(
        "bench finished in {:.1} s",
        (Instant::now() - start).as_secs_f64()
    );
    let _ = Duration::ZERO;
}
