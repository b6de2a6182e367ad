//! `EndpointRecord` (libnetwork `agent.proto`): the service-discovery record an endpoint
//! publishes in [`ENDPOINT_TABLE`], keyed by its endpoint ID, in the NetworkDB network whose ID
//! is the network's ID.
//!
//! The codec is derived by prost and wire-compatible with libnetwork's gogo-generated one:
//! fields are written in field-number order and a field holding its default value (empty
//! string, 0, false, empty list) is not written. Decoding skips fields it does not know
//! (groups included), lets the last occurrence of a scalar field win, appends repeated fields,
//! and refuses malformed input, a known field of the wrong wire type and strings that are not
//! UTF-8 ([`DecodeError`]). Bytes from the network never panic the decoder.
//! `tests/wire_golden.rs` pins the bytes of fixed records.

use prost::Message as _;

/// NetworkDB table of [`EndpointRecord`]s (libnetwork `libnetworkEPTable`).
pub const ENDPOINT_TABLE: &str = "endpoint_table";

/// The service-discovery record of an endpoint (`agent.proto` `EndpointRecord`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointRecord {
    /// Field 1: the container (here: endpoint) name.
    pub name: String,
    /// Field 2: the service name, empty for a plain container.
    pub service_name: String,
    /// Field 3: the service ID, empty for a plain container.
    pub service_id: String,
    /// Field 4: the service's virtual IP as plain IP text, empty when it has none.
    pub virtual_ip: String,
    /// Field 5: the endpoint's IP as plain IP text (no prefix length).
    pub endpoint_ip: String,
    /// Field 6: published ports; libnetwork fills them only on the ingress network.
    pub ingress_ports: Vec<PortConfig>,
    /// Field 7: service-level aliases.
    pub aliases: Vec<String>,
    /// Field 8: container-level aliases.
    pub task_aliases: Vec<String>,
    /// Field 9: true while the task is being drained.
    pub service_disabled: bool,
}

/// A published port of an [`EndpointRecord`] (`agent.proto` `PortConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortConfig {
    /// Field 1: the port's name.
    pub name: String,
    /// Field 2: the protocol.
    pub protocol: Protocol,
    /// Field 3: the port inside the container.
    pub target_port: u32,
    /// Field 4: the port published on the hosts.
    pub published_port: u32,
}

/// `PortConfig.Protocol`. Proto3 enums are open, so a value this code does not know is kept
/// as [`Protocol::Unknown`] and written back unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// 0.
    #[default]
    Tcp,
    /// 1.
    Udp,
    /// 2.
    Sctp,
    /// Any other value (never 0, 1 or 2).
    Unknown(i32),
}

impl Protocol {
    /// The enum value on the wire.
    pub fn to_i32(self) -> i32 {
        match self {
            Self::Tcp => 0,
            Self::Udp => 1,
            Self::Sctp => 2,
            Self::Unknown(v) => v,
        }
    }

    /// The protocol of a wire value.
    pub fn from_i32(value: i32) -> Self {
        match value {
            0 => Self::Tcp,
            1 => Self::Udp,
            2 => Self::Sctp,
            v => Self::Unknown(v),
        }
    }
}

/// Bytes that are not a well-formed `EndpointRecord` (or `PortConfig`) message: truncated, a
/// bad varint or key, field number 0, wire types 6 and 7, an unmatched end-group, nesting
/// deeper than 100, a known field of the wrong wire type or a string that is not UTF-8.
/// Nothing is decoded. The description (prost's) is best effort: it names the field where
/// decoding stopped when it can.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct DecodeError(prost::DecodeError);

impl EndpointRecord {
    /// The record's protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        wire::EndpointRecord::from(self).encode_to_vec()
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        wire::EndpointRecord::decode(bytes)
            .map(Self::from)
            .map_err(DecodeError)
    }
}

impl PortConfig {
    /// The message's protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        wire::PortConfig::from(self).encode_to_vec()
    }

    /// Decodes the message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        wire::PortConfig::decode(bytes)
            .map(Self::from)
            .map_err(DecodeError)
    }
}

/// The messages as `agent.proto` declares them; the public types differ in
/// [`PortConfig::protocol`], an enum here and an open `int32` on the wire. Their names are the
/// ones prost's errors show.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct EndpointRecord {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(string, tag = "2")]
        pub(super) service_name: String,
        #[prost(string, tag = "3")]
        pub(super) service_id: String,
        #[prost(string, tag = "4")]
        pub(super) virtual_ip: String,
        #[prost(string, tag = "5")]
        pub(super) endpoint_ip: String,
        #[prost(message, repeated, tag = "6")]
        pub(super) ingress_ports: Vec<PortConfig>,
        #[prost(string, repeated, tag = "7")]
        pub(super) aliases: Vec<String>,
        #[prost(string, repeated, tag = "8")]
        pub(super) task_aliases: Vec<String>,
        #[prost(bool, tag = "9")]
        pub(super) service_disabled: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PortConfig {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        /// `PortConfig.Protocol`. An enum is an `int32` on the wire: a negative value takes
        /// ten bytes, as Go writes it, and decoding keeps the varint's low 32 bits.
        #[prost(int32, tag = "2")]
        pub(super) protocol: i32,
        #[prost(uint32, tag = "3")]
        pub(super) target_port: u32,
        #[prost(uint32, tag = "4")]
        pub(super) published_port: u32,
    }

    impl From<&super::EndpointRecord> for EndpointRecord {
        fn from(r: &super::EndpointRecord) -> Self {
            Self {
                name: r.name.clone(),
                service_name: r.service_name.clone(),
                service_id: r.service_id.clone(),
                virtual_ip: r.virtual_ip.clone(),
                endpoint_ip: r.endpoint_ip.clone(),
                ingress_ports: r.ingress_ports.iter().map(PortConfig::from).collect(),
                aliases: r.aliases.clone(),
                task_aliases: r.task_aliases.clone(),
                service_disabled: r.service_disabled,
            }
        }
    }

    impl From<EndpointRecord> for super::EndpointRecord {
        fn from(r: EndpointRecord) -> Self {
            Self {
                name: r.name,
                service_name: r.service_name,
                service_id: r.service_id,
                virtual_ip: r.virtual_ip,
                endpoint_ip: r.endpoint_ip,
                ingress_ports: r.ingress_ports.into_iter().map(Into::into).collect(),
                aliases: r.aliases,
                task_aliases: r.task_aliases,
                service_disabled: r.service_disabled,
            }
        }
    }

    impl From<&super::PortConfig> for PortConfig {
        fn from(p: &super::PortConfig) -> Self {
            Self {
                name: p.name.clone(),
                protocol: p.protocol.to_i32(),
                target_port: p.target_port,
                published_port: p.published_port,
            }
        }
    }

    impl From<PortConfig> for super::PortConfig {
        fn from(p: PortConfig) -> Self {
            Self {
                name: p.name,
                protocol: super::Protocol::from_i32(p.protocol),
                target_port: p.target_port,
                published_port: p.published_port,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn len_field(key: u8, s: &str) -> Vec<u8> {
        let mut v = vec![key, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn defaults_are_omitted() {
        assert!(EndpointRecord::default().encode().is_empty());
        assert!(PortConfig::default().encode().is_empty());
        assert_eq!(
            EndpointRecord::decode(&[]).unwrap(),
            EndpointRecord::default()
        );
    }

    #[test]
    fn endpoint_record_golden_bytes() {
        let r = EndpointRecord {
            name: "web".into(),
            service_name: "svc".into(),
            service_id: "id".into(),
            virtual_ip: "10.0.0.9".into(),
            endpoint_ip: "10.0.0.2".into(),
            ingress_ports: vec![PortConfig {
                name: "h".into(),
                protocol: Protocol::Udp,
                target_port: 80,
                published_port: 300,
            }],
            aliases: vec!["a".into()],
            task_aliases: vec!["t1".into(), "t2".into()],
            service_disabled: true,
        };
        let mut expected = Vec::new();
        expected.extend(len_field(0x0a, "web"));
        expected.extend(len_field(0x12, "svc"));
        expected.extend(len_field(0x1a, "id"));
        expected.extend(len_field(0x22, "10.0.0.9"));
        expected.extend(len_field(0x2a, "10.0.0.2"));
        // PortConfig: name "h" (0a 01 68), protocol 1 (10 01), target 80 (18 50),
        // published 300 = 0b1_0010_1100 -> ac 02 (20 ac 02): 10 bytes.
        expected.extend([0x32, 10, 0x0a, 1, b'h', 0x10, 1, 0x18, 80, 0x20, 0xac, 0x02]);
        expected.extend(len_field(0x3a, "a"));
        expected.extend(len_field(0x42, "t1"));
        expected.extend(len_field(0x42, "t2"));
        expected.extend([0x48, 1]);
        assert_eq!(r.encode(), expected);
        assert_eq!(EndpointRecord::decode(&expected).unwrap(), r);
    }

    #[test]
    fn negative_enum_is_ten_bytes_and_round_trips() {
        let p = PortConfig {
            protocol: Protocol::Unknown(-1),
            ..PortConfig::default()
        };
        let bytes = p.encode();
        assert_eq!(bytes.len(), 1 + 10);
        assert_eq!(bytes[10], 0x01);
        assert_eq!(PortConfig::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = vec![0x50, 0x96, 0x01]; // field 10, varint 150
        bytes.extend([0x59, 1, 2, 3, 4, 5, 6, 7, 8]); // field 11, fixed64
        bytes.extend([0x65, 1, 2, 3, 4]); // field 12, fixed32
        bytes.extend(len_field(0x6a, "zz")); // field 13, bytes
        bytes.extend(len_field(0x2a, "10.0.0.3"));
        let r = EndpointRecord::decode(&bytes).unwrap();
        assert_eq!(r.endpoint_ip, "10.0.0.3");
        assert!(r.name.is_empty());
        // In a nested message too: field 10, then published_port 1032.
        let p = PortConfig::decode(&[0x50, 1, 0x20, 0x88, 0x08]).unwrap();
        assert_eq!(p.published_port, 1032);
    }

    #[test]
    fn last_scalar_wins_and_repeated_append() {
        let mut bytes = len_field(0x0a, "a");
        bytes.extend(len_field(0x0a, "b"));
        bytes.extend(len_field(0x3a, "x"));
        bytes.extend(len_field(0x3a, "y"));
        bytes.extend([0x48, 0x02, 0x48, 0x00]);
        let r = EndpointRecord::decode(&bytes).unwrap();
        assert_eq!(r.name, "b");
        assert_eq!(r.aliases, ["x", "y"]);
        assert!(!r.service_disabled);
    }

    #[test]
    fn malformed_input_is_refused() {
        let overflow = [
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        let eleven = [
            0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ];
        // Key 2^32 | 0x08: field number 2^29 + 1, beyond the largest, 2^29 - 1.
        let big_key = [0x88, 0x80, 0x80, 0x80, 0x10, 0];
        let cases: [&[u8]; 17] = [
            &[0x0a],          // a key without its value
            &[0x0a, 5, b'a'], // length beyond the input
            &[0x80],          // truncated varint
            &[0x29, 1, 2, 3], // truncated fixed64
            &[0x02, 0],       // field number 0
            &[0x08, 1],       // string field as a varint
            &[0x4a, 0],       // bool field as a length-delimited one
            &[0x0b],          // a group never closed
            &[0x0c],          // an end-group without a start
            &[0x0e],          // wire type 6
            &[0x0f],          // wire type 7
            &[0x0a, 1, 0xff], // not UTF-8
            &[0x3a, 1, 0xff], // a repeated string not UTF-8
            &overflow,        // varint beyond 64 bits
            &eleven,          // varint longer than ten bytes
            &big_key,         // key beyond 32 bits
            &[0x32, 1, 0x0a], // a bad nested message fails the record
        ];
        for bytes in cases {
            assert!(EndpointRecord::decode(bytes).is_err(), "{bytes:02x?}");
        }
        // A nested message must end where its length says.
        assert!(EndpointRecord::decode(&[0x32, 1, 0x0a, 1, b'x']).is_err());
        let e = EndpointRecord::decode(&[0x32, 3, 0x0a, 1, 0xff]).unwrap_err();
        assert!(e.to_string().contains("PortConfig.name"), "{e}");
    }

    #[test]
    fn groups_are_skipped_up_to_the_recursion_limit() {
        // Field 10 groups, nested `depth` deep, then the endpoint IP.
        let nested = |depth: usize| {
            let mut b = vec![0x53; depth];
            b.extend(vec![0x54; depth]);
            b.extend(len_field(0x2a, "10.0.0.3"));
            b
        };
        assert_eq!(
            EndpointRecord::decode(&nested(100)).unwrap().endpoint_ip,
            "10.0.0.3"
        );
        assert!(EndpointRecord::decode(&nested(101)).is_err());
        // In a PortConfig, one level is spent on the message itself.
        let in_port = |depth: usize| {
            let mut port = vec![0x53; depth];
            port.extend(vec![0x54; depth]);
            port.extend([0x18, 80]);
            // Field 6, with a two-byte length.
            let mut b = vec![0x32, port.len() as u8 | 0x80, (port.len() >> 7) as u8];
            b.extend(port);
            EndpointRecord::decode(&b)
        };
        assert_eq!(in_port(99).unwrap().ingress_ports[0].target_port, 80);
        assert!(in_port(100).is_err());
        // A group's end must match its start; a known field is never a group.
        assert!(EndpointRecord::decode(&[0x53, 0x5c]).is_err());
        assert!(EndpointRecord::decode(&[0x4b, 0x4c]).is_err());
    }

    fn port() -> impl Strategy<Value = PortConfig> {
        (".{0,8}", any::<i32>(), any::<u32>(), any::<u32>()).prop_map(|(name, p, t, pp)| {
            PortConfig {
                name,
                protocol: Protocol::from_i32(p),
                target_port: t,
                published_port: pp,
            }
        })
    }

    fn endpoint_record() -> impl Strategy<Value = EndpointRecord> {
        (
            (".{0,12}", ".{0,12}", ".{0,12}", ".{0,15}", ".{0,15}"),
            proptest::collection::vec(port(), 0..3),
            proptest::collection::vec(".{0,6}", 0..3),
            proptest::collection::vec(".{0,6}", 0..3),
            any::<bool>(),
        )
            .prop_map(
                |((name, service_name, service_id, virtual_ip, endpoint_ip), ports, a, t, d)| {
                    EndpointRecord {
                        name,
                        service_name,
                        service_id,
                        virtual_ip,
                        endpoint_ip,
                        ingress_ports: ports,
                        aliases: a,
                        task_aliases: t,
                        service_disabled: d,
                    }
                },
            )
    }

    fn varint(v: u64, out: &mut Vec<u8>) {
        prost::encoding::encode_varint(v, out);
    }

    /// Fields the message does not declare, of wire types 0, 1, 2 and 5.
    fn unknown_fields() -> impl Strategy<Value = Vec<u8>> {
        let field = (10u64..(1 << 29), 0usize..4, any::<u64>(), ".{0,8}");
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
            let _ = EndpointRecord::decode(&bytes);
            let _ = PortConfig::decode(&bytes);
        }

        #[test]
        fn endpoint_record_round_trips(r in endpoint_record()) {
            prop_assert_eq!(EndpointRecord::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn port_config_round_trips(p in port()) {
            prop_assert_eq!(PortConfig::decode(&p.encode()).unwrap(), p);
        }

        #[test]
        fn unknown_fields_are_dropped(r in endpoint_record(), junk in unknown_fields()) {
            let mut bytes = junk;
            bytes.extend(r.encode());
            let decoded = EndpointRecord::decode(&bytes).unwrap();
            prop_assert_eq!(decoded.encode(), r.encode());
            prop_assert_eq!(decoded, r);
        }

        /// Whatever decodes, however it was written, encodes to bytes that decode to it again.
        #[test]
        fn decoded_records_re_encode(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(r) = EndpointRecord::decode(&bytes) {
                prop_assert_eq!(EndpointRecord::decode(&r.encode()).unwrap(), r);
            }
        }
    }
}
