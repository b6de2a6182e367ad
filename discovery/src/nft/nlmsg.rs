//! Netfilter netlink messages, written and read by hand: `nlmsghdr`, `nfgenmsg` and
//! attributes (`linux/netlink.h`, `linux/netfilter/nfnetlink.h`). No I/O here.

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLMSG_ERROR`: an error, or an acknowledgement when its code is 0.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Messages being written into one buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
        }
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Starts a message: `nlmsghdr` (its length set by [`end`](Self::end)) and `nfgenmsg`.
    /// Returns where it starts.
    pub fn begin(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Sets the length of the message that starts at `start`.
    pub fn end(&mut self, start: usize) {
        let len = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Adds `extra` to the flags of the message that starts at `start`.
    pub fn add_flags(&mut self, start: usize, extra: u16) {
        let at = start + 6;
        let flags = u16::from_ne_bytes([self.buf[at], self.buf[at + 1]]) | extra;
        self.buf[at..at + 2].copy_from_slice(&flags.to_ne_bytes());
    }

    /// An attribute holding `value`, padded to four bytes.
    pub fn bytes(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// A NUL-terminated string attribute.
    pub fn string(&mut self, kind: u16, value: &str) {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.bytes(kind, &v);
    }

    /// A big-endian `u32` attribute (netfilter's integers are big-endian).
    pub fn u32_be(&mut self, kind: u16, value: u32) {
        self.bytes(kind, &value.to_be_bytes());
    }

    /// Opens a nested attribute; close it with [`end_nest`](Self::end_nest).
    pub fn nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    /// Closes the nested attribute opened at `start`.
    pub fn end_nest(&mut self, start: usize) {
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// One message of a buffer the kernel sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// What follows the `nlmsghdr`.
    pub body: &'a [u8],
}

impl Message<'_> {
    /// For an `NLMSG_ERROR`, the errno it carries (0: an acknowledgement).
    pub fn errno(&self) -> Option<i32> {
        if self.kind != NLMSG_ERROR {
            return None;
        }
        let code: [u8; 4] = self.body.get(..4)?.try_into().ok()?;
        Some(i32::from_ne_bytes(code).wrapping_neg())
    }
}

/// The messages in `buf`, in order; stops at the first malformed header.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Message<'_>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = buf.get(at..at.checked_add(16)?)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(header[8..12].try_into().ok()?);
        if len < 16 {
            return None;
        }
        let body = buf.get(at + 16..at.checked_add(len)?)?;
        at = at.checked_add((len + 3) & !3)?;
        Some(Message { kind, seq, body })
    })
}

/// The attributes in `buf` as `(type without flags, payload)`; stops at the first malformed one.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = buf.get(at..at.checked_add(4)?)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        if len < 4 {
            return None;
        }
        let payload = buf.get(at + 4..at.checked_add(len)?)?;
        at = at.checked_add((len + 3) & !3)?;
        Some((kind, payload))
    })
}

/// The payload of the first attribute of type `kind` in `buf`.
pub fn attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_messages_read_back() {
        let mut w = Writer::new();
        let m = w.begin(0x0a06, NLM_F_REQUEST, 7, 2, 0);
        w.string(1, "netagent");
        let n = w.nest(4);
        w.u32_be(1, 3);
        w.end_nest(n);
        w.end(m);
        w.add_flags(m, NLM_F_ACK);
        let buf = w.into_bytes();
        let all: Vec<_> = messages(&buf).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].kind, 0x0a06);
        assert_eq!(all[0].seq, 7);
        assert_eq!(
            u16::from_ne_bytes([buf[6], buf[7]]),
            NLM_F_REQUEST | NLM_F_ACK
        );
        let body = &all[0].body[4..];
        assert_eq!(attr(body, 1), Some(&b"netagent\0"[..]));
        let nested = attr(body, 4).unwrap();
        assert_eq!(attr(nested, 1), Some(&3u32.to_be_bytes()[..]));
    }

    #[test]
    fn truncated_input_ends_the_walk() {
        let mut w = Writer::new();
        let m = w.begin(1, 0, 1, 0, 0);
        w.bytes(1, &[1, 2, 3]);
        w.end(m);
        let buf = w.into_bytes();
        assert_eq!(messages(&buf).count(), 1);
        assert_eq!(messages(&buf[..buf.len() - 1]).count(), 0);
        assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
    }
}
