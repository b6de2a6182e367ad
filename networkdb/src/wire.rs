//! Wire messages: serde types, postcard-encoded inside a one-byte versioned envelope.
//!
//! A payload is `[PROTOCOL_VERSION][postcard(Message)]`. A compound carries already-encoded
//! messages (without the version byte) as length-prefixed parts, so relays forward a table
//! event's bytes unchanged and a sender knows a compound's exact size before it builds it.
//! `docs/PROTOCOL.md` describes every field and the ordering rules.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Key, LTime, NetworkId, NodeName, TableName};

/// The protocol version written as the first byte of every payload.
pub const PROTOCOL_VERSION: u8 = 1;

/// Compounds nested deeper than this are refused (a sender never nests them at all).
pub const MAX_COMPOUND_DEPTH: usize = 2;

/// Bytes a compound adds around its parts: version, message tag and a part count of up to
/// two varint bytes (a datagram never carries more than 16,383 parts).
pub const COMPOUND_HEADER_BYTES: usize = 4;

/// Every NetworkDB message.
///
/// The variant order is the wire tag: append new variants, never reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// A node joined or left the cluster (cluster-wide gossip).
    NodeEvent(NodeEvent),
    /// A node attached to or detached from a network (cluster-wide gossip).
    NetworkEvent(NetworkEvent),
    /// A change of one table entry (per-network gossip, or the stream path when oversized).
    TableEvent(TableEvent),
    /// The attachments a node knows of, exchanged on the stream path.
    PushPull(PushPull),
    /// A full copy of one or more networks' tables, on the stream path.
    BulkSync(BulkSync),
    /// Several encoded messages in one datagram.
    Compound(Vec<Part>),
    /// A summary of some networks' attachments and entries (the periodic anti-entropy's
    /// first step), or the answer naming those that differ, on the stream path.
    SyncDigest(SyncDigest),
    /// A bulk sync restricted to the buckets two digests disagree on, on the stream path.
    PartialSync(PartialSync),
    /// A summary of every attachment the sender knows (the periodic push/pull's first step),
    /// on the stream path.
    PushPullDigest(PushPullDigest),
}

/// The periodic attachment exchange's first step: the receiver answers with a full
/// [`PushPull`] only when its own summary differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPullDigest {
    /// The sender.
    pub node: NodeName,
    /// Wrapping sum of the hashes of every attachment the sender knows, its own included
    /// (network, node, time, leaving).
    pub hash: u64,
    /// How many attachments that is.
    pub count: u32,
}

/// One encoded [`Message`] inside a compound (no version byte).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Part(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// The kind of a [`NodeEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeEventKind {
    /// The node is in the cluster.
    Join,
    /// The node left gracefully.
    Leave,
}

/// A node's own statement about its cluster membership, ordered by the network clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Join or leave.
    pub kind: NodeEventKind,
    /// Network-clock time of the event.
    pub ltime: LTime,
    /// The node the event is about (always its sender).
    pub node: NodeName,
}

/// The kind of a [`NetworkEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkEventKind {
    /// The node attached to the network.
    Join,
    /// The node detached from the network.
    Leave,
}

/// A node attached to or detached from a network, ordered by the network clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkEvent {
    /// Join or leave.
    pub kind: NetworkEventKind,
    /// Network-clock time of the event.
    pub ltime: LTime,
    /// The node whose attachment changed.
    pub node: NodeName,
    /// The network.
    pub network: NetworkId,
}

/// The kind of a [`TableEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableEventKind {
    /// The entry was created.
    Create,
    /// The entry's value changed.
    Update,
    /// The entry was deleted; receivers keep a tombstone.
    Delete,
}

/// A change of one entry, ordered per key by the table clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEvent {
    /// Create, update or delete.
    pub kind: TableEventKind,
    /// Table-clock time of the change.
    pub ltime: LTime,
    /// The entry's owner, kept unchanged when the event is relayed.
    pub owner: NodeName,
    /// The network the table belongs to.
    pub network: NetworkId,
    /// The table.
    pub table: TableName,
    /// The key.
    pub key: Key,
    /// The value (for a delete, the last value).
    pub value: Bytes,
    /// For a delete (or an entry of a failed owner), seconds the tombstone has left to live.
    pub residual_reap_secs: u32,
}

/// One node's attachment to one network, as carried by push/pull and bulk sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkEntry {
    /// The network.
    pub network: NetworkId,
    /// Network-clock time of the attachment's last join or leave.
    pub ltime: LTime,
    /// The attached node.
    pub node: NodeName,
    /// Whether the node is leaving the network.
    pub leaving: bool,
}

/// The attachments of every node the sender knows of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPull {
    /// The sender's network clock.
    pub ltime: LTime,
    /// The sender.
    pub node: NodeName,
    /// Every attachment the sender knows of, its own included.
    pub networks: Vec<NetworkEntry>,
    /// True when this answers a push/pull (the receiver does not answer again).
    pub reply: bool,
}

/// A copy of the sender's state of some networks: attachments first, then every entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkSync {
    /// The sender's table clock, incremented for this sync; a reply's time is always greater
    /// than the request's, which is how the requester correlates them.
    pub ltime: LTime,
    /// True for a request; false for the reply to one.
    pub unsolicited: bool,
    /// The sender.
    pub node: NodeName,
    /// The networks this sync covers (a reply covers the networks the request listed).
    pub networks: Vec<NetworkId>,
    /// Every attachment the sender knows of in those networks, its own included.
    pub attachments: Vec<NetworkEntry>,
    /// Every entry of those networks, tombstones as deletes, never updates.
    pub events: Vec<TableEvent>,
}

/// One network's summary in a [`SyncDigest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDigest {
    /// The network.
    pub network: NetworkId,
    /// Hash of every attachment the sender knows of in the network, its own included.
    pub attachments: u64,
    /// Hash of the sender's entries of the network (owner, time and deletion of each key),
    /// tombstones included, expired ones left out.
    pub entries: u64,
    /// How many entries that hash covers.
    pub count: u32,
    /// Empty in a request. In a reply, for a network whose summaries differ: the replier's
    /// entries split into `len / 4` buckets by key, one little-endian 32-bit hash each.
    #[serde(with = "serde_bytes")]
    pub buckets: Vec<u8>,
}

/// The periodic anti-entropy's summary exchange.
///
/// A request lists the sender's summary of every network it shares with the receiver; the
/// reply lists, for the networks whose summaries differ, the replier's bucket hashes. The
/// requester then sends a [`PartialSync`] of the buckets that differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDigest {
    /// The sender's table clock, incremented for this message; a reply's time is greater than
    /// the request's (the same correlation as [`BulkSync`]).
    pub ltime: LTime,
    /// True for the answer to a request.
    pub reply: bool,
    /// The sender.
    pub node: NodeName,
    /// Summaries: every shared network in a request, the differing ones in a reply.
    pub networks: Vec<NetworkDigest>,
}

/// Which buckets of a network a [`PartialSync`] covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncScope {
    /// The network.
    pub network: NetworkId,
    /// Whether the network's attachments are carried (their summaries differed).
    pub attachments: bool,
    /// How many buckets its keys are split into (1..=[`MAX_SYNC_BUCKETS`]).
    pub buckets: u32,
    /// The buckets covered, each below `buckets`; empty for the attachments alone.
    pub indices: Vec<u32>,
}

/// A bulk sync of some buckets of some networks: the attachments of each network whose scope
/// asks for them, and the entries whose key falls in a listed bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialSync {
    /// The sender's table clock, incremented for this sync (correlates the reply).
    pub ltime: LTime,
    /// True for a request; the receiver answers with its own entries of the same scopes.
    pub unsolicited: bool,
    /// The sender.
    pub node: NodeName,
    /// The buckets covered.
    pub scopes: Vec<SyncScope>,
    /// Every attachment the sender knows of in the networks whose scope asks for them, its own
    /// included.
    pub attachments: Vec<NetworkEntry>,
    /// The sender's entries in the scopes, tombstones as deletes.
    pub events: Vec<TableEvent>,
}

/// The most buckets a network is split into by a digest reply.
pub const MAX_SYNC_BUCKETS: u32 = 4096;

/// Why a payload could not be decoded. The payload is dropped and counted; state is untouched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload was empty.
    #[error("empty payload")]
    Empty,
    /// The payload was written by a protocol version this node does not speak.
    #[error("unsupported protocol version {0} (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid message was followed by extra bytes.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// Compounds nested deeper than [`MAX_COMPOUND_DEPTH`].
    #[error("compound nested deeper than {MAX_COMPOUND_DEPTH}")]
    TooDeep,
}

impl Message {
    /// Encodes the message with its version byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION];
        out.extend_from_slice(&self.encode_part());
        out
    }

    /// Encodes the message without a version byte, as a compound part.
    pub fn encode_part(&self) -> Vec<u8> {
        match postcard::to_allocvec(self) {
            Ok(bytes) => bytes,
            Err(err) => {
                // Serializing owned, in-memory values into a Vec cannot fail.
                debug_assert!(false, "BUG: postcard failed to encode a message: {err}");
                Vec::new()
            }
        }
    }

    /// Decodes a payload written by [`encode`](Self::encode).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let (&version, rest) = payload.split_first().ok_or(DecodeError::Empty)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        Self::decode_part(rest)
    }

    /// Decodes a compound part (a message without a version byte).
    pub fn decode_part(part: &[u8]) -> Result<Self, DecodeError> {
        if part.is_empty() {
            return Err(DecodeError::Empty);
        }
        let (msg, rest) = postcard::take_from_bytes::<Message>(part)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        Ok(msg)
    }
}

/// The bytes a part of `len` bytes takes inside a compound (its varint length prefix included).
pub fn part_cost(len: usize) -> usize {
    varint_len(len) + len
}

/// Builds a compound payload from encoded parts; its size is
/// `COMPOUND_HEADER_BYTES`-bounded overhead plus the sum of [`part_cost`]s.
pub fn encode_compound(parts: &[Bytes]) -> Vec<u8> {
    let body: usize = parts.iter().map(|p| part_cost(p.len())).sum();
    let mut out = Vec::with_capacity(COMPOUND_HEADER_BYTES + body);
    out.push(PROTOCOL_VERSION);
    // The variant index of `Message::Compound`, then the part count, as postcard writes them.
    push_varint(&mut out, 5);
    push_varint(&mut out, parts.len());
    for p in parts {
        push_varint(&mut out, p.len());
        out.extend_from_slice(p);
    }
    out
}

/// The parts of a compound, borrowed from `body` (a message without its version byte), or
/// `None` when `body` is not a compound: what [`Message::decode_part`] would return as
/// [`Message::Compound`], without copying every part. A truncated compound, or bytes after its
/// last part, is an error.
pub fn compound_parts(body: &[u8]) -> Result<Option<Vec<&[u8]>>, DecodeError> {
    const COMPOUND_TAG: u8 = 5;
    let Some((&COMPOUND_TAG, mut rest)) = body.split_first() else {
        return Ok(None);
    };
    let count = take_varint(&mut rest)?;
    // Every part takes at least its length byte.
    let mut parts = Vec::with_capacity(count.min(rest.len()));
    for _ in 0..count {
        let len = take_varint(&mut rest)?;
        if len > rest.len() {
            return Err(DecodeError::Malformed(format!(
                "compound part of {len} bytes with {} left",
                rest.len()
            )));
        }
        let (part, tail) = rest.split_at(len);
        parts.push(part);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(Some(parts))
}

/// Reads a postcard varint (LEB128, at most ten bytes) off the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Result<usize, DecodeError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return usize::try_from(value)
                .map_err(|_| DecodeError::Malformed("length out of range".into()));
        }
    }
    Err(DecodeError::Malformed(
        "truncated or overlong varint".into(),
    ))
}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn push_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_event() -> TableEvent {
        TableEvent {
            kind: TableEventKind::Create,
            ltime: LTime(300),
            owner: "a1b2c3d4e5f6".into(),
            network: "net1".into(),
            table: "overlay_peer_table".into(),
            key: "ep1".into(),
            value: Bytes::from_static(b"value"),
            residual_reap_secs: 0,
        }
    }

    #[test]
    fn round_trip() {
        let msg = Message::TableEvent(table_event());
        assert_eq!(Message::decode(&msg.encode()), Ok(msg));
    }

    #[test]
    fn compound_matches_serde_encoding() {
        let parts: Vec<Bytes> = (0..200)
            .map(|_| Bytes::from(Message::TableEvent(table_event()).encode_part()))
            .collect();
        let hand = encode_compound(&parts);
        let serde = Message::Compound(parts.iter().map(|p| Part(p.to_vec())).collect()).encode();
        assert_eq!(hand, serde);
        let body: usize = parts.iter().map(|p| part_cost(p.len())).sum();
        assert!(hand.len() <= COMPOUND_HEADER_BYTES + body);
    }

    #[test]
    fn borrowed_parts_match_the_serde_decoding() {
        let parts: Vec<Bytes> = (0..300u32)
            .map(|i| {
                let mut e = table_event();
                e.key = format!("key{i}").into();
                Bytes::from(Message::TableEvent(e).encode_part())
            })
            .collect();
        let payload = encode_compound(&parts);
        let borrowed = compound_parts(&payload[1..])
            .expect("valid")
            .expect("a compound");
        let Ok(Message::Compound(owned)) = Message::decode(&payload) else {
            panic!("not a compound");
        };
        assert_eq!(borrowed.len(), owned.len());
        for (b, o) in borrowed.iter().zip(&owned) {
            assert_eq!(*b, o.0.as_slice());
        }
        let single = Message::TableEvent(table_event()).encode();
        assert_eq!(compound_parts(&single[1..]), Ok(None));
        assert_eq!(compound_parts(&[]), Ok(None));
        // Truncated in a part, in a length, after the count; and a byte too many.
        for cut in [payload.len() - 1, 5, 2] {
            assert!(compound_parts(&payload[1..cut]).is_err(), "cut at {cut}");
        }
        let mut long = payload.clone();
        long.push(0);
        assert_eq!(
            compound_parts(&long[1..]),
            Err(DecodeError::TrailingBytes(1))
        );
        assert!(
            compound_parts(&[
                5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err()
        );
    }

    #[test]
    fn golden_table_event() {
        // Pins the wire layout: a change here is a protocol change and needs a new version.
        let bytes = Message::TableEvent(table_event()).encode();
        let expected: &[u8] = &[
            1, 2, 0, 172, 2, 12, b'a', b'1', b'b', b'2', b'c', b'3', b'd', b'4', b'e', b'5', b'f',
            b'6', 4, b'n', b'e', b't', b'1', 18, b'o', b'v', b'e', b'r', b'l', b'a', b'y', b'_',
            b'p', b'e', b'e', b'r', b'_', b't', b'a', b'b', b'l', b'e', 3, b'e', b'p', b'1', 5,
            b'v', b'a', b'l', b'u', b'e', 0,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(
            Message::decode(&[9, 0]),
            Err(DecodeError::UnsupportedVersion(9))
        );
        assert!(matches!(
            Message::decode(&[1, 77]),
            Err(DecodeError::Malformed(_))
        ));
        let mut ok = Message::TableEvent(table_event()).encode();
        ok.push(0);
        assert_eq!(Message::decode(&ok), Err(DecodeError::TrailingBytes(1)));
        let truncated = &Message::TableEvent(table_event()).encode()[..10];
        assert!(matches!(
            Message::decode(truncated),
            Err(DecodeError::Malformed(_))
        ));
    }
}
