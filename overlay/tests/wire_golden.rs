//! Golden bytes of `PeerRecord`: libnetwork's `overlay.proto` encoding of fixed records, as
//! the hand-written codec wrote them before prost replaced it. A change here breaks
//! compatibility with libnetwork and with records already held by NetworkDB.

#![allow(clippy::unwrap_used, reason = "tests unwrap known-good values")]

use overlay::{PeerRecord, RecordError};

/// (`endpoint_ip`, `endpoint_mac`, `tunnel_endpoint_ip`, the encoding in hex).
const GOLDEN: [(&str, &str, &str, &str); 4] = [
    (
        "10.0.0.2/24",
        "02:42:0a:00:00:02",
        "192.0.2.1",
        "0a0b31302e302e302e322f3234121130323a34323a30613a30303a30303a30321a093139322e302e322e31",
    ),
    (
        "10.255.255.254/16",
        "ff:ff:ff:ff:ff:ff",
        "2001:db8::1",
        "0a1131302e3235352e3235352e3235342f3136121166663a66663a66663a66663a66663a6666\
         1a0b323030313a6462383a3a31",
    ),
    (
        "0.0.0.0/0",
        "00:00:00:00:00:00",
        "0.0.0.0",
        "0a09302e302e302e302f30121130303a30303a30303a30303a30303a30301a07302e302e302e30",
    ),
    (
        "172.16.5.9/32",
        "02:42:ac:10:05:09",
        "fd00::a:b",
        "0a0d3137322e31362e352e392f3332121130323a34323a61633a31303a30353a30391a09666430303a3a613a62",
    ),
];

fn record(ip: &str, mac: &str, vtep: &str) -> PeerRecord {
    PeerRecord {
        endpoint_ip: ip.parse().unwrap(),
        endpoint_mac: mac.parse().unwrap(),
        tunnel_endpoint_ip: vtep.parse().unwrap(),
    }
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(s: &str) -> Vec<u8> {
    data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap()
}

#[test]
fn fixed_records_encode_to_their_golden_bytes() {
    for (ip, mac, vtep, golden) in GOLDEN {
        let r = record(ip, mac, vtep);
        assert_eq!(hex(&r.encode()), golden, "{r:?}");
        assert_eq!(PeerRecord::decode(&unhex(golden)).unwrap(), r);
    }
}

#[test]
fn golden_fields_in_any_order_with_unknown_ones_decode_the_same() {
    let (ip, mac, vtep, golden) = GOLDEN[0];
    let bytes = unhex(golden);
    // The three fields (13, 19 and 11 bytes), last first, between unknown fields: a varint
    // (field 4), a group (field 5) and a string (field 6).
    let (f1, rest) = bytes.split_at(13);
    let (f2, f3) = rest.split_at(19);
    let mut shuffled = vec![0x20, 0x96, 0x01];
    shuffled.extend(f3);
    shuffled.extend([0x2b, 0x08, 0x01, 0x2c]);
    shuffled.extend(f2);
    shuffled.extend([0x32, 0x02, b'h', b'i']);
    shuffled.extend(f1);
    assert_eq!(
        PeerRecord::decode(&shuffled).unwrap(),
        record(ip, mac, vtep)
    );
}

#[test]
fn every_cut_of_a_golden_encoding_is_refused() {
    for (_, _, _, golden) in GOLDEN {
        let bytes = unhex(golden);
        for len in 0..bytes.len() {
            // Cut inside a field: malformed; at a field's end: the missing field's empty
            // text does not parse.
            assert!(PeerRecord::decode(&bytes[..len]).is_err(), "{len} bytes");
        }
    }
    let bytes = unhex(GOLDEN[0].3);
    assert!(matches!(
        PeerRecord::decode(&bytes[..5]),
        Err(RecordError::Wire(_))
    ));
    assert!(matches!(
        PeerRecord::decode(&bytes[..13]),
        Err(RecordError::EndpointMac(_))
    ));
}

#[test]
fn golden_encoding_with_a_wrong_wire_type_is_refused() {
    let mut bytes = unhex(GOLDEN[0].3);
    // Field 1 as a fixed64 (key 0x09) instead of a string (0x0a).
    bytes[0] = 0x09;
    assert!(matches!(
        PeerRecord::decode(&bytes),
        Err(RecordError::Wire(_))
    ));
}
