//! `PeerRecord`, the overlay driver's NetworkDB value, with a hand-written protobuf codec
//! wire-compatible with libnetwork's gogo-generated one (`drivers/overlay/overlay.proto`).
//!
//! The message has three proto3 `string` fields, all text:
//!
//! | field | name                 | text                         |
//! |-------|----------------------|------------------------------|
//! | 1     | `endpoint_ip`        | IPv4 CIDR, `10.0.1.5/24`     |
//! | 2     | `endpoint_mac`       | MAC, `02:42:0a:00:01:05`     |
//! | 3     | `tunnel_endpoint_ip` | VTEP IP, `192.0.2.1`         |
//!
//! The wire format is [`crate::proto`]'s: fields are written in field-number order; decoding
//! skips fields it does not know, lets the last occurrence of a field win, and refuses
//! malformed input ([`WireError`]), a known field of the wrong wire type, strings that are not
//! UTF-8 and text that does not parse (an absent field is empty text and so does not parse
//! either). Bytes from the network never panic the decoder.

use std::net::IpAddr;

use ipnet::Ipv4Net;

use crate::Mac;
use crate::proto::{Reader, WireError, put_string};

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
    Wire(#[from] WireError),
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

impl PeerRecord {
    /// The record's protobuf encoding. Every field is non-empty text, so all three are
    /// written.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, 1, &self.endpoint_ip.to_string());
        put_string(&mut out, 2, &self.endpoint_mac.to_string());
        put_string(&mut out, 3, &self.tunnel_endpoint_ip.to_string());
        out
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (mut ip, mut mac, mut vtep) = ("", "", "");
        for field in Reader::new(bytes) {
            let (field, value) = field?;
            let slot = match field {
                1 => &mut ip,
                2 => &mut mac,
                3 => &mut vtep,
                _ => continue,
            };
            *slot = value.str(field)?;
        }
        Ok(Self {
            endpoint_ip: ip.parse().map_err(|_| RecordError::EndpointIp(clip(ip)))?,
            endpoint_mac: mac
                .parse()
                .map_err(|_| RecordError::EndpointMac(clip(mac)))?,
            tunnel_endpoint_ip: vtep
                .parse()
                .map_err(|_| RecordError::TunnelEndpointIp(clip(vtep)))?,
        })
    }
}

/// At most [`MAX_ERROR_TEXT`] characters of `s`.
fn clip(s: &str) -> String {
    s.chars().take(MAX_ERROR_TEXT).collect()
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

    #[test]
    fn malformed_wire_is_refused() {
        assert_eq!(
            PeerRecord::decode(&[0x0a]),
            Err(RecordError::Wire(WireError::Truncated))
        );
        assert_eq!(
            PeerRecord::decode(&[0x0a, 5, b'a']),
            Err(RecordError::Wire(WireError::Truncated))
        );
        assert_eq!(
            PeerRecord::decode(&[0x80]),
            Err(RecordError::Wire(WireError::Truncated))
        );
        assert_eq!(
            PeerRecord::decode(&[0x02, 0]),
            Err(RecordError::Wire(WireError::ZeroField))
        );
        assert_eq!(
            PeerRecord::decode(&[0x08, 1]),
            Err(RecordError::Wire(WireError::WrongWireType {
                field: 1,
                wire_type: 0,
                expected: 2
            }))
        );
        assert_eq!(
            PeerRecord::decode(&[0x0b]),
            Err(RecordError::Wire(WireError::UnsupportedWireType {
                field: 1,
                wire_type: 3
            }))
        );
        assert_eq!(
            PeerRecord::decode(&[0x0a, 1, 0xff]),
            Err(RecordError::Wire(WireError::Utf8 { field: 1 }))
        );
        let overflow = [
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert_eq!(
            PeerRecord::decode(&overflow),
            Err(RecordError::Wire(WireError::VarintOverflow))
        );
        let eleven = [
            0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ];
        assert_eq!(
            PeerRecord::decode(&eleven),
            Err(RecordError::Wire(WireError::VarintOverflow))
        );
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
    }
}
