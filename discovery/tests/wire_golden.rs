//! Golden bytes of `EndpointRecord`: libnetwork's `agent.proto` encoding of fixed records, as
//! the hand-written codec wrote them before prost replaced it. A change here breaks
//! compatibility with libnetwork and with records already held by NetworkDB.

#![allow(clippy::unwrap_used, reason = "tests unwrap known-good values")]

use discovery::{EndpointRecord, PortConfig, Protocol};

/// A service task with a VIP, two published ports and aliases.
const FULL: &str = "0a097765622e312e61626312037765621a066b336a357839220831302e302e302e39\
                    2a0931302e302e302e3132320b0a0468747470185020903f320d0a03646e7310011835\
                    20e5ea013a0377777742087765622d7461736b";
/// A plain container: a name and an address.
const PLAIN: &str = "0a0264622a0831302e302e312e37";
/// Non-ASCII text, an empty port, an unknown negative protocol (ten bytes), a port of
/// `u32::MAX`, empty repeated strings (written, unlike empty singular ones), disabled.
const EDGE: &str = "0a076ec3a9f09f98802a07666430303a3a373200321310ffffffffffffffffff0118ff\
                    ffffff0f2001320c0a01731002188001208080013a003a016142004801";

fn full() -> EndpointRecord {
    EndpointRecord {
        name: "web.1.abc".into(),
        service_name: "web".into(),
        service_id: "k3j5x9".into(),
        virtual_ip: "10.0.0.9".into(),
        endpoint_ip: "10.0.0.12".into(),
        ingress_ports: vec![
            PortConfig {
                name: "http".into(),
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port: 8080,
            },
            PortConfig {
                name: "dns".into(),
                protocol: Protocol::Udp,
                target_port: 53,
                published_port: 30053,
            },
        ],
        aliases: vec!["www".into()],
        task_aliases: vec!["web-task".into()],
        service_disabled: false,
    }
}

fn plain() -> EndpointRecord {
    EndpointRecord {
        name: "db".into(),
        endpoint_ip: "10.0.1.7".into(),
        ..EndpointRecord::default()
    }
}

fn edge() -> EndpointRecord {
    EndpointRecord {
        name: "n\u{e9}\u{1f600}".into(),
        endpoint_ip: "fd00::7".into(),
        ingress_ports: vec![
            PortConfig::default(),
            PortConfig {
                name: String::new(),
                protocol: Protocol::Unknown(-1),
                target_port: u32::MAX,
                published_port: 1,
            },
            PortConfig {
                name: "s".into(),
                protocol: Protocol::Sctp,
                target_port: 128,
                published_port: 16384,
            },
        ],
        aliases: vec![String::new(), "a".into()],
        task_aliases: vec![String::new()],
        service_disabled: true,
        ..EndpointRecord::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap()
}

#[test]
fn fixed_records_encode_to_their_golden_bytes() {
    for (r, golden) in [(full(), FULL), (plain(), PLAIN), (edge(), EDGE)] {
        let golden = unhex(golden);
        assert_eq!(hex(&r.encode()), hex(&golden), "{r:?}");
        assert_eq!(EndpointRecord::decode(&golden).unwrap(), r);
    }
    assert!(EndpointRecord::default().encode().is_empty());
    // The second port of FULL on its own: the bytes inside field 6.
    let dns = &full().ingress_ports[1];
    assert_eq!(hex(&dns.encode()), "0a03646e731001183520e5ea01");
}

#[test]
fn golden_fields_reordered_with_unknown_ones_decode_the_same() {
    let bytes = unhex(PLAIN);
    // endpoint_ip, then a group (field 10) holding a string, then name.
    let (name, ip) = bytes.split_at(4);
    let mut reordered = ip.to_vec();
    reordered.extend([0x53, 0x0a, 0x01, b'x', 0x54]);
    reordered.extend(name);
    assert_eq!(EndpointRecord::decode(&reordered).unwrap(), plain());
}

#[test]
fn golden_encodings_cut_inside_a_field_are_refused() {
    let bytes = unhex(FULL);
    // Inside name's text, inside the first port, and one byte short of the end.
    for len in [5, 50, bytes.len() - 1] {
        assert!(
            EndpointRecord::decode(&bytes[..len]).is_err(),
            "{len} bytes"
        );
    }
    // A port whose length claims one byte more than it holds, stealing the next key.
    // The first port's key is at byte 45, after five strings of 11, 5, 8, 10 and 11 bytes.
    let mut long_port = bytes.clone();
    assert_eq!(long_port[45..47], [0x32, 0x0b]);
    long_port[46] += 1;
    assert!(EndpointRecord::decode(&long_port).is_err());
    // service_disabled as a string.
    let mut edge = unhex(EDGE);
    let last = edge.len() - 2;
    edge[last] = 0x4a;
    edge[last + 1] = 0;
    assert!(EndpointRecord::decode(&edge).is_err());
}
