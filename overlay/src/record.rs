//! `PeerRecord`, the overlay driver's NetworkDB value, with a protobuf codec derived by prost
//! and wire-compatible with libnetwork's gogo-generated one (`drivers/overlay/overlay.proto`).
//!
//! The message has three proto3 `string` fields, all text:
//!
//! | field | name                 | text                         |
//! |-------|----------------------|------------------------------|
//! | 1     | `endpoint_ip`        | IPv4 CIDR, `10.0.1.5/24`     |
//! | 2     | `endpoint_mac`       | MAC, `02:42:0a:00:01:05`     |
//! | 3     | `tunnel_endpoint_ip` | VTEP IP, `192.0.2.1`         |
//!
//! Fields are written in field-number order. Decoding skips fields it does not know (groups
//! included), lets the last occurrence of a field win, and refuses malformed input
//! ([`WireError`]: truncated, a bad varint or key, field number 0, wire types 6 and 7, an
//! unmatched end-group, groups nested deeper than 100), a known field of the wrong wire type,
//! strings that are not UTF-8 and text that does not parse (an absent field is empty text and
//! so does not parse either). Bytes from the network never panic the decoder.
//! `tests/wire_golden.rs` pins the bytes of fixed records.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use prost::Message as _;

use crate::Mac;

/// NetworkDB table of [`PeerRecord`]s (libnetwork's overlay driver table). The key is the
/// endpoint ID and the network is the overlay network's ID.
pub const PEER_TABLE: &str = "overlay_peer_table";

/// The longest field text kept in a [`RecordError`], so a hostile value cannot make errors
/// large.
const MAX_ERROR_TEXT: usize = 64;

/// Where an endpoint's IP and MAC live (`overlay.proto` `PeerRecord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerRecord {
    /// Field 1: the endpoint's address with its subnet's prefix length (`10.0.1.5/24`). Host
    /// bits are kept: [`Ipv4Net::addr`] is the endpoint's address.
    pub endpoint_ip: Ipv4Net,
    /// Field 2: the endpoint's MAC address.
    pub endpoint_mac: Mac,
    /// Field 3: the VTEP, the data-path address of the host the endpoint lives on (the
    /// agent's data-path address, falling back to its advertise address).
    pub tunnel_endpoint_ip: IpAddr,
}

/// Why bytes are not a [`PeerRecord`]. Nothing is decoded; the caller counts and drops the
/// value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not a well-formed message, a field has the wrong wire type or a string
    /// is not UTF-8.
    #[error(transparent)]
    Wire(WireError),
    /// `endpoint_ip` is not IPv4 CIDR text (`10.0.1.5/24`); IPv6 endpoints are not supported
    /// (neither are they by libnetwork's overlay driver).
    #[error("endpoint_ip {0:?} is not IPv4 CIDR text")]
    EndpointIp(String),
    /// `endpoint_mac` is not MAC text.
    #[error("endpoint_mac {0:?} is not a MAC address")]
    EndpointMac(String),
    /// `tunnel_endpoint_ip` is not IP text.
    #[error("tunnel_endpoint_ip {0:?} is not an IP address")]
    TunnelEndpointIp(String),
}

/// Bytes that are not a well-formed `PeerRecord` message. The description (prost's) is best
/// effort: it names the field where decoding stopped when it can.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct WireError(prost::DecodeError);

impl PeerRecord {
    /// The record's protobuf encoding. Every field is non-empty text, so all three are
    /// written.
    pub fn encode(&self) -> Vec<u8> {
        wire::PeerRecord {
            endpoint_ip: self.endpoint_ip.to_string(),
            endpoint_mac: self.endpoint_mac.to_string(),
            tunnel_endpoint_ip: self.tunnel_endpoint_ip.to_string(),
        }
        .encode_to_vec()
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let wire::PeerRecord {
            endpoint_ip: ip,
            endpoint_mac: mac,
            tunnel_endpoint_ip: vtep,
        } = wire::PeerRecord::decode(bytes).map_err(|e| RecordError::Wire(WireError(e)))?;
        Ok(Self {
            endpoint_ip: ip.parse().map_err(|_| RecordError::EndpointIp(clip(&ip)))?,
            endpoint_mac: mac
                .parse()
                .map_err(|_| RecordError::EndpointMac(clip(&mac)))?,
            tunnel_endpoint_ip: vtep
                .parse()
                .map_err(|_| RecordError::TunnelEndpointIp(clip(&vtep)))?,
        })
    }
}

/// At most [`MAX_ERROR_TEXT`] characters of `s`.
fn clip(s: &str) -> String {
    s.chars().take(MAX_ERROR_TEXT).collect()
}

/// The message as `overlay.proto` declares it: three strings, parsed into [`PeerRecord`]'s
/// types after decoding. Its name is the one prost's errors show.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PeerRecord {
        #[prost(string, tag = "1")]
        pub(super) endpoint_ip: String,
        #[prost(string, tag = "2")]
        pub(super) endpoint_mac: String,
        #[prost(string, tag = "3")]
        pub(super) tunnel_endpoint_ip: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn len_field(key: u8, s: &str) -> Vec<u8> {
        let mut v = vec![key, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn sample() -> PeerRecord {
        PeerRecord {
            endpoint_ip: "10.0.0.2/24".parse().unwrap(),
            endpoint_mac: "02:42:0a:00:00:02".parse().unwrap(),
            tunnel_endpoint_ip: "192.0.2.1".parse().unwrap(),
        }
    }

    #[test]
    fn golden_bytes() {
        let r = sample();
        // key = field << 3 | 2: 0x0a, 0x12, 0x1a; then a one-byte length.
        let mut expected = len_field(0x0a, "10.0.0.2/24");
        expected.extend(len_field(0x12, "02:42:0a:00:00:02"));
        expected.extend(len_field(0x1a, "192.0.2.1"));
        assert_eq!(expected[..2], [0x0a, 11]);
        assert_eq!(r.encode(), expected);
        assert_eq!(PeerRecord::decode(&expected).unwrap(), r);
        // The host bits survive: the endpoint's address, not the subnet's.
        assert_eq!(r.endpoint_ip.addr(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn ipv6_vtep_and_upper_case_mac() {
        let mut bytes = len_field(0x0a, "10.0.0.2/24");
        bytes.extend(len_field(0x12, "02:42:0A:00:00:02"));
        bytes.extend(len_field(0x1a, "2001:db8::1"));
        let r = PeerRecord::decode(&bytes).unwrap();
        assert_eq!(
            r.tunnel_endpoint_ip,
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
        );
        assert_eq!(r.endpoint_mac, sample().endpoint_mac);
    }

    #[test]
    fn unknown_fields_are_skipped_and_last_wins() {
        let mut bytes = vec![0x20, 0x96, 0x01]; // field 4, varint 150
        bytes.extend([0x29, 1, 2, 3, 4, 5, 6, 7, 8]); // field 5, fixed64
        bytes.extend([0x35, 1, 2, 3, 4]); // field 6, fixed32
        bytes.extend(len_field(0x3a, "zz")); // field 7, bytes
        bytes.extend(len_field(0x0a, "10.9.9.9/8"));
        bytes.extend(sample().encode());
        assert_eq!(PeerRecord::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn malformed_text_is_refused() {
        let with = |ip: &str, mac: &str, vtep: &str| {
            let mut b = len_field(0x0a, ip);
            b.extend(len_field(0x12, mac));
            b.extend(len_field(0x1a, vtep));
            PeerRecord::decode(&b)
        };
        let (ip, mac, vtep) = ("10.0.0.2/24", "02:42:0a:00:00:02", "192.0.2.1");
        assert!(with(ip, mac, vtep).is_ok());
        for bad in ["10.0.0.2", "10.0.0.2/33", "fd00::2/64", "", "x/24"] {
            assert_eq!(
                with(bad, mac, vtep),
                Err(RecordError::EndpointIp(bad.into()))
            );
        }
        for bad in ["", "02:42:0a:00:00", "zz:42:0a:00:00:02"] {
            assert_eq!(
                with(ip, bad, vtep),
                Err(RecordError::EndpointMac(bad.into()))
            );
        }
        for bad in ["", "192.0.2", "192.0.2.1/32", "host"] {
            assert_eq!(
                with(ip, mac, bad),
                Err(RecordError::TunnelEndpointIp(bad.into()))
            );
        }
        // Empty input: every field is empty text.
        assert_eq!(
            PeerRecord::decode(&[]),
            Err(RecordError::EndpointIp(String::new()))
        );
        let long = "x".repeat(100);
        let Err(RecordError::EndpointIp(text)) = with(&long, mac, vtep) else {
            panic!("long text accepted")
        };
        assert_eq!(text.len(), MAX_ERROR_TEXT);
    }

    /// Whether `bytes` are refused as a malformed message (not as bad text).
    fn wire_refused(bytes: &[u8]) -> bool {
        matches!(PeerRecord::decode(bytes), Err(RecordError::Wire(_)))
    }

    #[test]
    fn malformed_wire_is_refused() {
        let overflow = [
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        let eleven = [
            0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ];
        // Key 2^32 | 0x08: field number 2^29 + 1, beyond the largest, 2^29 - 1.
        let big_key = [0x88, 0x80, 0x80, 0x80, 0x10, 0];
        let cases: [&[u8]; 14] = [
            &[0x0a],          // a key without its value
            &[0x0a, 5, b'a'], // length beyond the input
            &[0x80],          // truncated varint
            &[0x29, 1, 2, 3], // truncated fixed64
            &[0x02, 0],       // field number 0
            &[0x08, 1],       // string field as a varint
            &[0x0b],          // a group never closed
            &[0x0c],          // an end-group without a start
            &[0x0e],          // wire type 6
            &[0x0f],          // wire type 7
            &[0x0a, 1, 0xff], // not UTF-8
            &overflow,        // varint beyond 64 bits
            &eleven,          // varint longer than ten bytes
            &big_key,         // key beyond 32 bits
        ];
        for bytes in cases {
            assert!(wire_refused(bytes), "{bytes:02x?} accepted");
        }
        let e = PeerRecord::decode(&[0x0a, 1, 0xff]).unwrap_err();
        assert!(e.to_string().contains("PeerRecord.endpoint_ip"), "{e}");
    }

    #[test]
    fn groups_are_skipped_up_to_100_levels() {
        let nested = |depth: usize| {
            let mut b = vec![0x23; depth]; // field 4, start group
            b.extend(vec![0x24; depth]); // field 4, end group
            b.extend(sample().encode());
            b
        };
        assert_eq!(PeerRecord::decode(&nested(1)).unwrap(), sample());
        assert_eq!(PeerRecord::decode(&nested(100)).unwrap(), sample());
        assert!(wire_refused(&nested(101)));
        // A group's end must match its start.
        let mut crossed = vec![0x23, 0x2c];
        crossed.extend(sample().encode());
        assert!(wire_refused(&crossed));
        // A known field as a group is refused, however well-formed.
        let mut known = vec![0x0b, 0x0c];
        known.extend(sample().encode());
        assert!(wire_refused(&known));
    }

    fn record() -> impl Strategy<Value = PeerRecord> {
        (
            any::<[u8; 4]>(),
            0u8..=32,
            any::<[u8; 6]>(),
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ],
        )
            .prop_map(|(ip, len, mac, vtep)| PeerRecord {
                endpoint_ip: Ipv4Net::new(Ipv4Addr::from(ip), len).unwrap(),
                endpoint_mac: Mac(mac),
                tunnel_endpoint_ip: vtep,
            })
    }

    fn varint(v: u64, out: &mut Vec<u8>) {
        prost::encoding::encode_varint(v, out);
    }

    /// Fields the message does not declare, of wire types 0, 1, 2 and 5.
    fn unknown_fields() -> impl Strategy<Value = Vec<u8>> {
        let field = (4u64..(1 << 29), 0usize..4, any::<u64>(), ".{0,8}");
        proptest::collection::vec(field, 0..4).prop_map(|fields| {
            let mut out = Vec::new();
            for (number, kind, v, text) in fields {
                let wire_type = [0, 1, 2, 5][kind];
                varint((number << 3) | wire_type, &mut out);
                match wire_type {
                    0 => varint(v, &mut out),
                    1 => out.extend(v.to_le_bytes()),
                    2 => {
                        varint(text.len() as u64, &mut out);
                        out.extend(text.as_bytes());
                    }
                    _ => out.extend(&v.to_le_bytes()[..4]),
                }
            }
            out
        })
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PeerRecord::decode(&bytes);
        }

        #[test]
        fn round_trips(r in record()) {
            prop_assert_eq!(PeerRecord::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn mutated_encodings_never_panic(r in record(), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = r.encode();
            let i = at % bytes.len();
            bytes[i] = byte;
            let _ = PeerRecord::decode(&bytes);
        }

        #[test]
        fn unknown_fields_are_dropped_and_the_last_record_wins(
            old in record(),
            r in record(),
            junk in unknown_fields(),
            more in unknown_fields(),
        ) {
            let mut bytes = old.encode();
            bytes.extend(junk);
            bytes.extend(r.encode());
            bytes.extend(more);
            let decoded = PeerRecord::decode(&bytes).unwrap();
            prop_assert_eq!(decoded, r);
            prop_assert_eq!(decoded.encode(), r.encode());
        }
    }
}
