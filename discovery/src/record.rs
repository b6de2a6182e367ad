//! `EndpointRecord` (libnetwork `agent.proto`): the service-discovery record an endpoint
//! publishes in [`ENDPOINT_TABLE`], keyed by its endpoint ID, in the NetworkDB network whose ID
//! is the network's ID.
//!
//! The codec is hand-written and wire-compatible with libnetwork's gogo-generated one, on
//! [`overlay::proto`]: fields are written in field-number order and a field holding its
//! default value (empty string, 0, false, empty list) is not written. Decoding skips fields it
//! does not know, lets the last occurrence of a scalar field win, appends repeated fields, and
//! refuses malformed input, a known field of the wrong wire type and strings that are not
//! UTF-8 ([`DecodeError`]). Bytes from the network never panic the decoder.

use overlay::proto::{Reader, put_bool, put_bytes, put_int32, put_string, put_uint32};

pub use overlay::proto::WireError as DecodeError;

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

impl EndpointRecord {
    /// The record's protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, 1, &self.name);
        put_string(&mut out, 2, &self.service_name);
        put_string(&mut out, 3, &self.service_id);
        put_string(&mut out, 4, &self.virtual_ip);
        put_string(&mut out, 5, &self.endpoint_ip);
        for port in &self.ingress_ports {
            // A message in a repeated field is written even when empty.
            put_bytes(&mut out, 6, &port.encode());
        }
        for alias in &self.aliases {
            put_bytes(&mut out, 7, alias.as_bytes());
        }
        for alias in &self.task_aliases {
            put_bytes(&mut out, 8, alias.as_bytes());
        }
        put_bool(&mut out, 9, self.service_disabled);
        out
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Self::default();
        for field in Reader::new(bytes) {
            let (field, value) = field?;
            match field {
                1 => r.name = value.str(field)?.to_owned(),
                2 => r.service_name = value.str(field)?.to_owned(),
                3 => r.service_id = value.str(field)?.to_owned(),
                4 => r.virtual_ip = value.str(field)?.to_owned(),
                5 => r.endpoint_ip = value.str(field)?.to_owned(),
                6 => r
                    .ingress_ports
                    .push(PortConfig::decode(value.bytes(field)?)?),
                7 => r.aliases.push(value.str(field)?.to_owned()),
                8 => r.task_aliases.push(value.str(field)?.to_owned()),
                9 => r.service_disabled = value.bool(field)?,
                _ => {}
            }
        }
        Ok(r)
    }
}

impl PortConfig {
    /// The message's protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, 1, &self.name);
        // int32: negative values are sign-extended to ten bytes, as Go writes them.
        put_int32(&mut out, 2, self.protocol.to_i32());
        put_uint32(&mut out, 3, self.target_port);
        put_uint32(&mut out, 4, self.published_port);
        out
    }

    /// Decodes the message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        for field in Reader::new(bytes) {
            let (field, value) = field?;
            match field {
                1 => p.name = value.str(field)?.to_owned(),
                // int32 and uint32 keep the low 32 bits of the varint, as protobuf does.
                2 => p.protocol = Protocol::from_i32(value.int32(field)?),
                3 => p.target_port = value.uint32(field)?,
                4 => p.published_port = value.uint32(field)?,
                _ => {}
            }
        }
        Ok(p)
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
        assert_eq!(EndpointRecord::decode(&[0x0a]), Err(DecodeError::Truncated));
        assert_eq!(
            EndpointRecord::decode(&[0x0a, 5, b'a']),
            Err(DecodeError::Truncated)
        );
        assert_eq!(EndpointRecord::decode(&[0x80]), Err(DecodeError::Truncated));
        assert_eq!(
            EndpointRecord::decode(&[0x02, 0]),
            Err(DecodeError::ZeroField)
        );
        assert_eq!(
            EndpointRecord::decode(&[0x08, 1]),
            Err(DecodeError::WrongWireType {
                field: 1,
                wire_type: 0,
                expected: 2
            })
        );
        assert_eq!(
            EndpointRecord::decode(&[0x4a, 0]),
            Err(DecodeError::WrongWireType {
                field: 9,
                wire_type: 2,
                expected: 0
            })
        );
        assert_eq!(
            EndpointRecord::decode(&[0x0b]),
            Err(DecodeError::UnsupportedWireType {
                field: 1,
                wire_type: 3
            })
        );
        assert_eq!(
            EndpointRecord::decode(&[0x0a, 1, 0xff]),
            Err(DecodeError::Utf8 { field: 1 })
        );
        let overflow = [
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert_eq!(
            EndpointRecord::decode(&overflow),
            Err(DecodeError::VarintOverflow)
        );
        let eleven = [
            0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ];
        assert_eq!(
            EndpointRecord::decode(&eleven),
            Err(DecodeError::VarintOverflow)
        );
        // A bad nested message fails the record.
        assert_eq!(
            EndpointRecord::decode(&[0x32, 1, 0x0a]),
            Err(DecodeError::Truncated)
        );
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
    }
}
