//! The NetworkDB values libnetwork publishes for a joined endpoint, with hand-written
//! protobuf codecs that are wire-compatible with libnetwork's gogo-generated ones.
//!
//! * [`PeerRecord`] (`drivers/overlay/overlay.proto`), table [`PEER_TABLE`]: where an
//!   endpoint's IP and MAC live (its VTEP).
//! * [`EndpointRecord`] (`agent.proto`), table [`ENDPOINT_TABLE`]: the endpoint's names for
//!   service discovery.
//!
//! Both are keyed by the endpoint ID in the NetworkDB network whose ID is the network's ID.
//!
//! Proto3 rules: fields are written in field-number order and a field holding its default
//! value (empty string, 0, false, empty list) is not written. Decoding skips fields it does
//! not know (wire types 0, 1, 2 and 5), lets the last occurrence of a scalar field win,
//! appends repeated fields, and refuses truncated input, a varint longer than ten bytes, field
//! number 0, groups (wire types 3 and 4, deprecated and never produced by these messages),
//! wire types 6 and 7, a known field of the wrong wire type, and strings that are not UTF-8.
//! Bytes from the network never panic the decoder.

/// NetworkDB table of [`PeerRecord`]s (libnetwork's overlay driver table).
pub const PEER_TABLE: &str = "overlay_peer_table";

/// NetworkDB table of [`EndpointRecord`]s (libnetwork `libnetworkEPTable`).
pub const ENDPOINT_TABLE: &str = "endpoint_table";

/// The overlay driver's record of an endpoint (`overlay.proto` `PeerRecord`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRecord {
    /// Field 1: the endpoint's address with its prefix length, as text (`10.0.1.5/24`).
    pub endpoint_ip: String,
    /// Field 2: the endpoint's MAC address as text (`02:42:0a:00:01:05`).
    pub endpoint_mac: String,
    /// Field 3: the VTEP, the data-path IP of the host the endpoint lives on, as text.
    pub tunnel_endpoint_ip: String,
}

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

/// Why bytes are not a record. Nothing is decoded; the caller drops the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated protobuf input")]
    Truncated,
    /// A varint longer than ten bytes or beyond 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// Field number 0 is reserved.
    #[error("field number 0")]
    ZeroField,
    /// A group (wire types 3 and 4) or a reserved wire type (6 and 7).
    #[error("unsupported wire type {wire_type} (field {field})")]
    UnsupportedWireType {
        /// The field number.
        field: u64,
        /// The wire type.
        wire_type: u8,
    },
    /// A known field with another wire type than its declaration's.
    #[error("field {field} has wire type {wire_type}, expected {expected}")]
    WrongWireType {
        /// The field number.
        field: u64,
        /// The wire type found.
        wire_type: u8,
        /// The wire type declared.
        expected: u8,
    },
    /// A string field that is not UTF-8.
    #[error("field {field} is not UTF-8")]
    Utf8 {
        /// The field number.
        field: u64,
    },
}

impl PeerRecord {
    /// The record's protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, 1, &self.endpoint_ip);
        put_string(&mut out, 2, &self.endpoint_mac);
        put_string(&mut out, 3, &self.tunnel_endpoint_ip);
        out
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Self::default();
        let mut input = Reader::new(bytes);
        while let Some((field, value)) = input.next_field()? {
            match field {
                1 => r.endpoint_ip = value.string(field)?,
                2 => r.endpoint_mac = value.string(field)?,
                3 => r.tunnel_endpoint_ip = value.string(field)?,
                _ => {}
            }
        }
        Ok(r)
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
        if self.service_disabled {
            put_key(&mut out, 9, WIRE_VARINT);
            put_varint(&mut out, 1);
        }
        out
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Self::default();
        let mut input = Reader::new(bytes);
        while let Some((field, value)) = input.next_field()? {
            match field {
                1 => r.name = value.string(field)?,
                2 => r.service_name = value.string(field)?,
                3 => r.service_id = value.string(field)?,
                4 => r.virtual_ip = value.string(field)?,
                5 => r.endpoint_ip = value.string(field)?,
                6 => r
                    .ingress_ports
                    .push(PortConfig::decode(value.bytes(field)?)?),
                7 => r.aliases.push(value.string(field)?),
                8 => r.task_aliases.push(value.string(field)?),
                9 => r.service_disabled = value.varint(field)? != 0,
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
        let protocol = self.protocol.to_i32();
        if protocol != 0 {
            put_key(&mut out, 2, WIRE_VARINT);
            // int32: negative values are sign-extended to ten bytes, as Go writes them.
            put_varint(&mut out, i64::from(protocol) as u64);
        }
        put_u32(&mut out, 3, self.target_port);
        put_u32(&mut out, 4, self.published_port);
        out
    }

    /// Decodes the message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let mut input = Reader::new(bytes);
        while let Some((field, value)) = input.next_field()? {
            match field {
                1 => p.name = value.string(field)?,
                // int32 and uint32 keep the low 32 bits of the varint, as protobuf does.
                2 => p.protocol = Protocol::from_i32(value.varint(field)? as u32 as i32),
                3 => p.target_port = value.varint(field)? as u32,
                4 => p.published_port = value.varint(field)? as u32,
                _ => {}
            }
        }
        Ok(p)
    }
}

// ---- wire helpers -------------------------------------------------------------------------

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// The longest varint: ten bytes carry 64 bits.
const MAX_VARINT_BYTES: usize = 10;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire_type: u8) {
    put_varint(out, (field << 3) | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_string(out: &mut Vec<u8>, field: u64, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

fn put_u32(out: &mut Vec<u8>, field: u64, v: u32) {
    if v != 0 {
        put_key(out, field, WIRE_VARINT);
        put_varint(out, u64::from(v));
    }
}

/// A field's value as read off the wire.
enum Value<'a> {
    Varint(u64),
    /// A fixed-width value (wire type 1 or 5), never a known field here.
    Fixed(u8),
    Len(&'a [u8]),
}

impl<'a> Value<'a> {
    fn wire_type(&self) -> u8 {
        match self {
            Self::Varint(_) => WIRE_VARINT,
            Self::Fixed(wire_type) => *wire_type,
            Self::Len(_) => WIRE_LEN,
        }
    }

    fn varint(&self, field: u64) -> Result<u64, DecodeError> {
        match self {
            Self::Varint(v) => Ok(*v),
            _ => Err(self.wrong(field, WIRE_VARINT)),
        }
    }

    fn bytes(&self, field: u64) -> Result<&'a [u8], DecodeError> {
        match self {
            Self::Len(b) => Ok(b),
            _ => Err(self.wrong(field, WIRE_LEN)),
        }
    }

    fn string(&self, field: u64) -> Result<String, DecodeError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8 { field })
    }

    fn wrong(&self, field: u64, expected: u8) -> DecodeError {
        DecodeError::WrongWireType {
            field,
            wire_type: self.wire_type(),
            expected,
        }
    }
}

/// A cursor over a message's bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let Some((&byte, rest)) = self.rest.split_first() else {
                return Err(DecodeError::Truncated);
            };
            self.rest = rest;
            let bits = u64::from(byte & 0x7f);
            if i == MAX_VARINT_BYTES - 1 && bits > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// The next field, or `None` at the end of the input.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let wire_type = (key & 7) as u8;
        if field == 0 {
            return Err(DecodeError::ZeroField);
        }
        let value = match wire_type {
            WIRE_VARINT => Value::Varint(self.varint()?),
            WIRE_FIXED64 => {
                self.take(8)?;
                Value::Fixed(WIRE_FIXED64)
            }
            WIRE_LEN => {
                let len = self.varint()?;
                Value::Len(self.take(len)?)
            }
            WIRE_FIXED32 => {
                self.take(4)?;
                Value::Fixed(WIRE_FIXED32)
            }
            _ => return Err(DecodeError::UnsupportedWireType { field, wire_type }),
        };
        Ok(Some((field, value)))
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
    fn peer_record_golden_bytes() {
        let r = PeerRecord {
            endpoint_ip: "10.0.0.2/24".into(),
            endpoint_mac: "02:42:0a:00:00:02".into(),
            tunnel_endpoint_ip: "192.0.2.1".into(),
        };
        // key = field << 3 | 2: 0x0a, 0x12, 0x1a; then a one-byte length.
        let mut expected = len_field(0x0a, "10.0.0.2/24");
        expected.extend(len_field(0x12, "02:42:0a:00:00:02"));
        expected.extend(len_field(0x1a, "192.0.2.1"));
        assert_eq!(expected[..2], [0x0a, 11]);
        assert_eq!(r.encode(), expected);
        assert_eq!(PeerRecord::decode(&expected).unwrap(), r);
    }

    #[test]
    fn defaults_are_omitted() {
        assert!(PeerRecord::default().encode().is_empty());
        assert!(EndpointRecord::default().encode().is_empty());
        assert!(PortConfig::default().encode().is_empty());
        assert_eq!(PeerRecord::decode(&[]).unwrap(), PeerRecord::default());
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
        let mut bytes = vec![0x20, 0x96, 0x01]; // field 4, varint 150
        bytes.extend([0x29, 1, 2, 3, 4, 5, 6, 7, 8]); // field 5, fixed64
        bytes.extend([0x35, 1, 2, 3, 4]); // field 6, fixed32
        bytes.extend(len_field(0x3a, "zz")); // field 7, bytes
        bytes.extend(len_field(0x0a, "10.0.0.3/24"));
        let r = PeerRecord::decode(&bytes).unwrap();
        assert_eq!(r.endpoint_ip, "10.0.0.3/24");
        assert!(r.endpoint_mac.is_empty());
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
        assert_eq!(PeerRecord::decode(&[0x0a]), Err(DecodeError::Truncated));
        assert_eq!(
            PeerRecord::decode(&[0x0a, 5, b'a']),
            Err(DecodeError::Truncated)
        );
        assert_eq!(PeerRecord::decode(&[0x80]), Err(DecodeError::Truncated));
        assert_eq!(PeerRecord::decode(&[0x02, 0]), Err(DecodeError::ZeroField));
        assert_eq!(
            PeerRecord::decode(&[0x08, 1]),
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
            PeerRecord::decode(&[0x0b]),
            Err(DecodeError::UnsupportedWireType {
                field: 1,
                wire_type: 3
            })
        );
        assert_eq!(
            PeerRecord::decode(&[0x0a, 1, 0xff]),
            Err(DecodeError::Utf8 { field: 1 })
        );
        let overflow = [
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert_eq!(
            PeerRecord::decode(&overflow),
            Err(DecodeError::VarintOverflow)
        );
        let eleven = [
            0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ];
        assert_eq!(
            PeerRecord::decode(&eleven),
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
            let _ = PeerRecord::decode(&bytes);
            let _ = EndpointRecord::decode(&bytes);
            let _ = PortConfig::decode(&bytes);
        }

        #[test]
        fn peer_record_round_trips(ip in ".{0,20}", mac in ".{0,20}", vtep in ".{0,20}") {
            let r = PeerRecord { endpoint_ip: ip, endpoint_mac: mac, tunnel_endpoint_ip: vtep };
            prop_assert_eq!(PeerRecord::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn endpoint_record_round_trips(r in endpoint_record()) {
            prop_assert_eq!(EndpointRecord::decode(&r.encode()).unwrap(), r);
        }
    }
}
