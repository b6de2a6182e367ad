//! The minimal proto3 wire format that libnetwork's NetworkDB values need, shared by the
//! hand-written codecs of [`PeerRecord`](crate::PeerRecord) and the agent's
//! `EndpointRecord`.
//!
//! Encoding follows proto3: write fields in field-number order, and leave out a singular
//! field holding its default value ([`put_string`], [`put_uint32`], [`put_int32`] and
//! [`put_bool`] do that; [`put_bytes`] always writes, as a repeated or nested message
//! field needs).
//!
//! Decoding: a [`Reader`] yields each field's number and [`Value`]; the message's codec
//! matches the numbers it knows, skips the others, lets the last occurrence of a singular
//! field win and appends repeated ones. The reader refuses truncated input, a varint longer
//! than ten bytes or beyond 64 bits, a key beyond 32 bits (field numbers stop at 2^29 - 1),
//! field number 0, an end-group without its start, groups nested deeper than 100 (with
//! nested messages), and wire types 6 and 7; a well-formed group (wire types 3 and 4,
//! deprecated) is skipped as a whole and read as [`Value::Group`]. [`Value`]'s accessors
//! refuse a known field of the wrong wire type and strings that are not UTF-8. Nothing here
//! panics, whatever the input. These are prost's rules, which libnetwork's gogo code shares.

/// Wire type 0: a varint (`int32`, `uint32`, `bool`, enums, ...).
pub const WIRE_VARINT: u8 = 0;
/// Wire type 1: eight little-endian bytes (`fixed64`, `double`, ...).
pub const WIRE_FIXED64: u8 = 1;
/// Wire type 2: a length-delimited value (`string`, `bytes`, messages, packed fields).
pub const WIRE_LEN: u8 = 2;
/// Wire type 3: the start of a group (deprecated), closed by wire type 4.
pub const WIRE_START_GROUP: u8 = 3;
/// Wire type 4: the end of a group.
pub const WIRE_END_GROUP: u8 = 4;
/// Wire type 5: four little-endian bytes (`fixed32`, `float`, ...).
pub const WIRE_FIXED32: u8 = 5;

/// How deep groups and nested messages may go, prost's `RECURSION_LIMIT`.
const RECURSION_LIMIT: u32 = 100;

/// The longest varint: ten bytes carry 64 bits.
const MAX_VARINT_BYTES: usize = 10;

/// Why bytes are not a well-formed message (or not the message the codec expects).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends inside a field.
    #[error("truncated protobuf input")]
    Truncated,
    /// A varint longer than ten bytes or beyond 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// Field number 0 is reserved.
    #[error("field number 0")]
    ZeroField,
    /// A key beyond 32 bits: field numbers stop at 2^29 - 1.
    #[error("key {0} overflows 32 bits")]
    KeyOverflow(u64),
    /// An end-group key without a matching start.
    #[error("unexpected end of group (field {field})")]
    UnexpectedEndGroup {
        /// The end-group key's field number.
        field: u64,
    },
    /// Groups and nested messages deeper than the recursion limit.
    #[error("recursion limit reached")]
    RecursionLimit,
    /// A reserved wire type (6 and 7).
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

// ---- encoding -------------------------------------------------------------------------------

/// Appends `v` as a varint (one to ten bytes, seven bits each, least significant first).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field's key: `field << 3 | wire_type`, as a varint.
pub fn put_key(out: &mut Vec<u8>, field: u64, wire_type: u8) {
    put_varint(out, (field << 3) | u64::from(wire_type & 7));
}

/// Appends a length-delimited field (`bytes`, a nested message, an element of a repeated
/// `string`), even when `bytes` is empty.
pub fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a singular `string` field, unless it is empty (proto3's default).
pub fn put_string(out: &mut Vec<u8>, field: u64, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

/// Appends a singular `uint32` field as a varint, unless it is 0.
pub fn put_uint32(out: &mut Vec<u8>, field: u64, v: u32) {
    if v != 0 {
        put_key(out, field, WIRE_VARINT);
        put_varint(out, u64::from(v));
    }
}

/// Appends a singular `int32` (or enum) field as a varint, unless it is 0. A negative value
/// is sign-extended to ten bytes, as Go and every other protobuf implementation write it.
pub fn put_int32(out: &mut Vec<u8>, field: u64, v: i32) {
    if v != 0 {
        put_key(out, field, WIRE_VARINT);
        put_varint(out, i64::from(v) as u64);
    }
}

/// Appends a singular `bool` field as the varint 1, unless it is false.
pub fn put_bool(out: &mut Vec<u8>, field: u64, v: bool) {
    if v {
        put_key(out, field, WIRE_VARINT);
        put_varint(out, 1);
    }
}

// ---- decoding -------------------------------------------------------------------------------

/// A field's value as read off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1, little-endian.
    Fixed64(u64),
    /// Wire type 2: the bytes, borrowed from the input.
    Bytes(&'a [u8]),
    /// Wire type 5, little-endian.
    Fixed32(u32),
    /// Wire types 3 to 4: a well-formed group, skipped.
    Group,
}

impl<'a> Value<'a> {
    /// The wire type the value was read with.
    pub fn wire_type(&self) -> u8 {
        match self {
            Self::Varint(_) => WIRE_VARINT,
            Self::Fixed64(_) => WIRE_FIXED64,
            Self::Bytes(_) => WIRE_LEN,
            Self::Fixed32(_) => WIRE_FIXED32,
            Self::Group => WIRE_START_GROUP,
        }
    }

    /// The varint of field `field`, or [`WireError::WrongWireType`].
    pub fn varint(&self, field: u64) -> Result<u64, WireError> {
        match self {
            Self::Varint(v) => Ok(*v),
            _ => Err(self.wrong(field, WIRE_VARINT)),
        }
    }

    /// The `uint32` of field `field`: the varint's low 32 bits, as protobuf reads it.
    pub fn uint32(&self, field: u64) -> Result<u32, WireError> {
        self.varint(field).map(|v| v as u32)
    }

    /// The `int32` (or enum) of field `field`: the varint's low 32 bits, as protobuf reads it.
    pub fn int32(&self, field: u64) -> Result<i32, WireError> {
        self.varint(field).map(|v| v as u32 as i32)
    }

    /// The `bool` of field `field`: whether the varint is not 0.
    pub fn bool(&self, field: u64) -> Result<bool, WireError> {
        self.varint(field).map(|v| v != 0)
    }

    /// The bytes of length-delimited field `field`, or [`WireError::WrongWireType`].
    pub fn bytes(&self, field: u64) -> Result<&'a [u8], WireError> {
        match self {
            Self::Bytes(b) => Ok(b),
            _ => Err(self.wrong(field, WIRE_LEN)),
        }
    }

    /// The text of `string` field `field`, or [`WireError::WrongWireType`] or
    /// [`WireError::Utf8`].
    pub fn str(&self, field: u64) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes(field)?).map_err(|_| WireError::Utf8 { field })
    }

    fn wrong(&self, field: u64, expected: u8) -> WireError {
        WireError::WrongWireType {
            field,
            wire_type: self.wire_type(),
            expected,
        }
    }
}

/// A cursor over a message's bytes, yielding its fields in order.
///
/// After an error the reader is exhausted: [`Reader::next_field`] returns `Ok(None)` and the
/// iterator `None`.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    /// Levels of groups and messages this reader's fields may still open.
    depth_budget: u32,
}

impl<'a> Reader<'a> {
    /// A reader over a whole message.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            depth_budget: RECURSION_LIMIT,
        }
    }

    /// A reader over a message nested in a field of this one, or
    /// [`WireError::RecursionLimit`].
    pub fn nested(&self, bytes: &'a [u8]) -> Result<Self, WireError> {
        match self.depth_budget.checked_sub(1) {
            None => Err(WireError::RecursionLimit),
            Some(depth_budget) => Ok(Self {
                rest: bytes,
                depth_budget,
            }),
        }
    }

    /// The next field's number and value, or `None` at the end of the input.
    pub fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, WireError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let field = self.field();
        if field.is_err() {
            self.rest = &[];
        }
        field.map(Some)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), WireError> {
        let (field, wire_type) = self.key()?;
        let value = match wire_type {
            WIRE_START_GROUP => {
                self.skip_group(field, self.depth_budget)?;
                Value::Group
            }
            WIRE_END_GROUP => return Err(WireError::UnexpectedEndGroup { field }),
            WIRE_VARINT => Value::Varint(self.varint()?),
            WIRE_FIXED64 => Value::Fixed64(u64::from_le_bytes(self.array()?)),
            WIRE_LEN => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            // key() admits wire types 0 to 5 only: this is 5.
            _ => Value::Fixed32(u32::from_le_bytes(self.array()?)),
        };
        Ok((field, value))
    }

    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError::KeyOverflow(key));
        }
        let (field, wire_type) = (key >> 3, (key & 7) as u8);
        if field == 0 {
            return Err(WireError::ZeroField);
        }
        if wire_type > WIRE_FIXED32 {
            return Err(WireError::UnsupportedWireType { field, wire_type });
        }
        Ok((field, wire_type))
    }

    /// Skips a group's fields up to the end-group of `field`. `budget` is the group's own
    /// level budget: each field inside it takes one more level, as prost counts.
    fn skip_group(&mut self, field: u64, budget: u32) -> Result<(), WireError> {
        loop {
            let (inner, wire_type) = self.key()?;
            if wire_type == WIRE_END_GROUP {
                return match inner == field {
                    true => Ok(()),
                    false => Err(WireError::UnexpectedEndGroup { field: inner }),
                };
            }
            let Some(inner_budget) = budget.checked_sub(1).filter(|b| *b > 0) else {
                return Err(WireError::RecursionLimit);
            };
            match wire_type {
                WIRE_VARINT => drop(self.varint()?),
                WIRE_FIXED64 => drop(self.take(8)?),
                WIRE_LEN => {
                    let len = self.varint()?;
                    self.take(len)?;
                }
                WIRE_FIXED32 => drop(self.take(4)?),
                _ => self.skip_group(inner, inner_budget)?,
            }
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let Some((&byte, rest)) = self.rest.split_first() else {
                return Err(WireError::Truncated);
            };
            self.rest = rest;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds bit 63 only.
            if i == MAX_VARINT_BYTES - 1 && bits > 1 {
                return Err(WireError::VarintOverflow);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(n).map_err(|_| WireError::Truncated)?;
        if n > self.rest.len() {
            return Err(WireError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N as u64)?;
        bytes.try_into().map_err(|_| WireError::Truncated)
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u64, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_field().transpose()
    }
}

impl std::iter::FusedIterator for Reader<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    fn fields(bytes: &[u8]) -> Result<Vec<(u64, Value<'_>)>, WireError> {
        Reader::new(bytes).collect()
    }

    #[test]
    fn varint_golden_bytes() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(1), [1]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(150), [0x96, 0x01]);
        // 300 = 0b1_0010_1100.
        assert_eq!(varint(300), [0xac, 0x02]);
        let max = varint(u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(max[9], 0x01);
    }

    #[test]
    fn scalar_fields_golden_bytes() {
        let mut out = Vec::new();
        put_string(&mut out, 1, "");
        put_uint32(&mut out, 2, 0);
        put_int32(&mut out, 3, 0);
        put_bool(&mut out, 4, false);
        assert!(out.is_empty(), "defaults are omitted");
        put_string(&mut out, 1, "h");
        put_int32(&mut out, 2, 1);
        put_uint32(&mut out, 3, 80);
        put_uint32(&mut out, 4, 300);
        put_bool(&mut out, 9, true);
        put_bytes(&mut out, 6, &[]);
        assert_eq!(
            out,
            [
                0x0a, 1, b'h', 0x10, 1, 0x18, 80, 0x20, 0xac, 0x02, 0x48, 1, 0x32, 0
            ]
        );
        // A negative int32 is sign-extended to ten bytes.
        let mut neg = Vec::new();
        put_int32(&mut neg, 2, -1);
        assert_eq!(neg.len(), 1 + 10);
        assert_eq!(neg[10], 0x01);
        let (field, value) = Reader::new(&neg).next_field().unwrap().unwrap();
        assert_eq!((field, value.int32(field)), (2, Ok(-1)));
    }

    #[test]
    fn reads_every_wire_type() {
        let mut bytes = vec![0x20, 0x96, 0x01]; // field 4, varint 150
        bytes.extend([0x29, 1, 2, 3, 4, 5, 6, 7, 8]); // field 5, fixed64
        bytes.extend([0x35, 1, 2, 3, 4]); // field 6, fixed32
        bytes.extend([0x3a, 2, b'z', b'z']); // field 7, bytes
        assert_eq!(
            fields(&bytes).unwrap(),
            [
                (4, Value::Varint(150)),
                (5, Value::Fixed64(0x0807_0605_0403_0201)),
                (6, Value::Fixed32(0x0403_0201)),
                (7, Value::Bytes(b"zz")),
            ]
        );
        assert_eq!(fields(&[]).unwrap(), []);
    }

    #[test]
    fn accessors_check_the_wire_type() {
        let s = Value::Bytes(b"ok");
        assert_eq!(s.str(1), Ok("ok"));
        assert_eq!(
            s.varint(9),
            Err(WireError::WrongWireType {
                field: 9,
                wire_type: 2,
                expected: 0
            })
        );
        assert_eq!(
            Value::Varint(1).str(1),
            Err(WireError::WrongWireType {
                field: 1,
                wire_type: 0,
                expected: 2
            })
        );
        assert_eq!(
            Value::Fixed32(0).bytes(3),
            Err(WireError::WrongWireType {
                field: 3,
                wire_type: 5,
                expected: 2
            })
        );
        assert_eq!(
            Value::Bytes(&[0xff]).str(1),
            Err(WireError::Utf8 { field: 1 })
        );
        let big = Value::Varint(0x1_0000_0002);
        assert_eq!(
            (big.uint32(1), big.int32(1), big.bool(1)),
            (Ok(2), Ok(2), Ok(true))
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(fields(&[0x0a]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x0a, 5, b'a']), Err(WireError::Truncated));
        assert_eq!(fields(&[0x80]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x29, 1, 2, 3]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x35, 1, 2, 3]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x02, 0]), Err(WireError::ZeroField));
        assert_eq!(fields(&[0x0b]), Err(WireError::Truncated));
        assert_eq!(
            fields(&[0x0c]),
            Err(WireError::UnexpectedEndGroup { field: 1 })
        );
        for (key, wire_type) in [(0x0e, 6), (0x0f, 7)] {
            assert_eq!(
                fields(&[key]),
                Err(WireError::UnsupportedWireType {
                    field: 1,
                    wire_type
                })
            );
        }
        let overflow = [
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert_eq!(fields(&overflow), Err(WireError::VarintOverflow));
        let eleven = [
            0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ];
        assert_eq!(fields(&eleven), Err(WireError::VarintOverflow));
        // A length beyond usize or the input.
        let mut huge = vec![0x0a];
        huge.extend(varint(u64::MAX));
        assert_eq!(fields(&huge), Err(WireError::Truncated));
        // After an error the reader is exhausted.
        let mut r = Reader::new(&[0x02, 0, 0x08, 1]);
        assert_eq!(r.next(), Some(Err(WireError::ZeroField)));
        assert_eq!(r.next(), None);
        assert_eq!(r.next_field(), Ok(None));
    }

    #[test]
    fn groups_are_skipped_whole() {
        // Field 1 group holding a varint, a nested group 2 and a string, then field 3 varint.
        let bytes = [0x0b, 0x10, 1, 0x13, 0x14, 0x1a, 1, b'x', 0x0c, 0x18, 7];
        assert_eq!(
            fields(&bytes).unwrap(),
            [(1, Value::Group), (3, Value::Varint(7))]
        );
        assert_eq!(
            Value::Group.str(1),
            Err(WireError::WrongWireType {
                field: 1,
                wire_type: 3,
                expected: 2
            })
        );
        assert_eq!(
            fields(&[0x0b, 0x14]),
            Err(WireError::UnexpectedEndGroup { field: 2 })
        );
        // 100 levels are allowed, 101 are not.
        let nested = |depth: usize| {
            let mut b = vec![0x0b; depth];
            b.extend(vec![0x0c; depth]);
            b
        };
        assert_eq!(fields(&nested(100)).unwrap(), [(1, Value::Group)]);
        assert_eq!(fields(&nested(101)), Err(WireError::RecursionLimit));
    }

    #[test]
    fn keys_beyond_32_bits_are_refused() {
        let mut key = vec![0x08 | 0x80];
        key.extend(varint(1 << 25)); // key 2^32 | 0x08
        key.push(0);
        assert_eq!(fields(&key), Err(WireError::KeyOverflow((1 << 32) | 8)));
        // The largest field number, 2^29 - 1, is fine.
        let mut max = varint(u64::from(u32::MAX) - 7);
        max.push(5);
        assert_eq!(fields(&max).unwrap(), [((1 << 29) - 1, Value::Varint(5))]);
    }

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let bytes = varint(v);
            let mut key = vec![0x08];
            key.extend(&bytes);
            prop_assert_eq!(fields(&key).unwrap(), [(1, Value::Varint(v))]);
        }

        #[test]
        fn length_delimited_round_trips(field in 1u64..(1 << 29), b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            put_bytes(&mut out, field, &b);
            prop_assert_eq!(fields(&out).unwrap(), [(field, Value::Bytes(&b))]);
        }

        #[test]
        fn reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for (field, value) in Reader::new(&bytes).map_while(Result::ok) {
                let _ = (value.str(field), value.varint(field), value.int32(field));
            }
        }
    }
}
