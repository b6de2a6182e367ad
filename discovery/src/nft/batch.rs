//! The nf_tables netlink messages of a sandbox's VIP load balancer, encoded by hand (the
//! kernel's ABI, `linux/netfilter/nf_tables.h`).
//!
//! The ruleset lives in a table of its own, `ip netagent`, so it never touches what else the
//! namespace holds:
//!
//! ```text
//! table ip netagent {
//!     map vipmap {                      # VIP -> its chain
//!         type ipv4_addr : verdict
//!         elements = { 10.0.0.2 : jump vip-10.0.0.2, ... }
//!     }
//!     chain vips {                      # type nat hook output priority -100
//!         ip daddr vmap @vipmap         # one lookup, however many VIPs
//!     }
//!     chain vip-10.0.0.2 {              # N backends: rule k picks its backend with
//!         numgen random mod 3 == 0 dnat to 10.0.0.3    # probability 1 / (N - k),
//!         numgen random mod 2 == 0 dnat to 10.0.0.4    # so each gets 1 / N
//!         dnat to 10.0.0.5
//!     }
//! }
//! ```
//!
//! The translation is the destination address only, so every port and protocol of the VIP
//! reaches the same port of the chosen task, and conntrack keeps a connection on its task.
//! The NAT hook sees only a connection's first packet, and that packet costs one map lookup
//! whatever the number of VIPs; a VIP comes and goes as one map element. A batch is one
//! nf_tables transaction: the kernel applies all of its messages or none.

use std::net::Ipv4Addr;

/// The table holding the balancer (family `ip`).
pub const TABLE: &str = "netagent";
/// Its base chain, hooked at `output` (connections the sandbox's processes open).
pub const BASE_CHAIN: &str = "vips";
/// The verdict map from each VIP to its chain.
pub const VIP_MAP: &str = "vipmap";

use super::nlmsg::{self, NLM_F_ACK, NLM_F_REQUEST, Writer};

// Netlink and nfnetlink (linux/netlink.h, linux/netfilter/nfnetlink.h).
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
pub(crate) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(crate) const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(crate) const NFPROTO_IPV4: u8 = 2;

// nf_tables message types.
pub(crate) const NFT_MSG_NEWTABLE: u16 = 0;
pub(crate) const NFT_MSG_DELTABLE: u16 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(crate) const NFT_MSG_DELCHAIN: u16 = 5;
pub(crate) const NFT_MSG_NEWRULE: u16 = 6;
pub(crate) const NFT_MSG_DELRULE: u16 = 8;
pub(crate) const NFT_MSG_NEWSET: u16 = 9;
pub(crate) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(crate) const NFT_MSG_DELSETELEM: u16 = 14;

// Attributes.
pub(crate) const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
pub(crate) const NFTA_CHAIN_HOOK: u16 = 4;
pub(crate) const NFTA_CHAIN_POLICY: u16 = 5;
pub(crate) const NFTA_CHAIN_TYPE: u16 = 7;
pub(crate) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(crate) const NFTA_HOOK_PRIORITY: u16 = 2;
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
pub(crate) const NFTA_EXPR_NAME: u16 = 1;
pub(crate) const NFTA_EXPR_DATA: u16 = 2;
pub(crate) const NFTA_PAYLOAD_DREG: u16 = 1;
pub(crate) const NFTA_PAYLOAD_BASE: u16 = 2;
pub(crate) const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub(crate) const NFTA_PAYLOAD_LEN: u16 = 4;
pub(crate) const NFTA_CMP_SREG: u16 = 1;
pub(crate) const NFTA_CMP_OP: u16 = 2;
pub(crate) const NFTA_CMP_DATA: u16 = 3;
pub(crate) const NFTA_IMMEDIATE_DREG: u16 = 1;
pub(crate) const NFTA_IMMEDIATE_DATA: u16 = 2;
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
pub(crate) const NFTA_DATA_VERDICT: u16 = 2;
pub(crate) const NFTA_VERDICT_CODE: u16 = 1;
pub(crate) const NFTA_VERDICT_CHAIN: u16 = 2;
pub(crate) const NFTA_NG_DREG: u16 = 1;
pub(crate) const NFTA_NG_MODULUS: u16 = 2;
pub(crate) const NFTA_NG_TYPE: u16 = 3;
pub(crate) const NFTA_NAT_TYPE: u16 = 1;
pub(crate) const NFTA_NAT_FAMILY: u16 = 2;
pub(crate) const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
pub(crate) const NFTA_SET_TABLE: u16 = 1;
pub(crate) const NFTA_SET_NAME: u16 = 2;
pub(crate) const NFTA_SET_FLAGS: u16 = 3;
pub(crate) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(crate) const NFTA_SET_KEY_LEN: u16 = 5;
pub(crate) const NFTA_SET_DATA_TYPE: u16 = 6;
pub(crate) const NFTA_SET_ID: u16 = 10;
pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(crate) const NFTA_SET_ELEM_DATA: u16 = 2;
pub(crate) const NFTA_LOOKUP_SET: u16 = 1;
pub(crate) const NFTA_LOOKUP_SREG: u16 = 2;
pub(crate) const NFTA_LOOKUP_DREG: u16 = 3;
pub(crate) const NFTA_LOOKUP_SET_ID: u16 = 4;

// Values.
pub(crate) const NF_INET_LOCAL_OUT: u32 = 3;
/// `NF_IP_PRI_NAT_DST`.
pub(crate) const PRIORITY_DSTNAT: i32 = -100;
pub(crate) const NF_ACCEPT: u32 = 1;
pub(crate) const NFT_REG_VERDICT: u32 = 0;
pub(crate) const NFT_REG_1: u32 = 1;
pub(crate) const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
/// Offset of the destination address in the IPv4 header.
pub(crate) const IPV4_DADDR_OFFSET: u32 = 16;
pub(crate) const NFT_CMP_EQ: u32 = 0;
pub(crate) const NFT_JUMP: i32 = -3;
pub(crate) const NFT_NG_RANDOM: u32 = 1;
pub(crate) const NFT_NAT_DNAT: u32 = 1;
/// `NFT_SET_MAP`.
pub(crate) const NFT_SET_MAP: u32 = 0x8;
/// `NFT_DATA_VERDICT`: the map's values are verdicts.
pub(crate) const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// nft's data type number of `ipv4_addr` (informational for the kernel).
pub(crate) const TYPE_IPADDR: u32 = 7;
/// Names the map inside the transaction that creates it.
pub(crate) const VIP_MAP_ID: u32 = 1;

/// The chain of one VIP.
pub fn vip_chain(vip: Ipv4Addr) -> String {
    format!("vip-{vip}")
}

/// One nf_tables transaction being written: `BATCH_BEGIN`, messages, `BATCH_END`. The kernel
/// reports every message that fails; the last message also asks for an acknowledgement, so
/// an answer to it (0 or an errno) means the kernel has answered everything before it.
#[derive(Debug)]
pub struct Batch {
    w: Writer,
    first_seq: u32,
    next_seq: u32,
    /// Where the last message starts.
    last: Option<usize>,
    /// What each message does, by position after `first_seq` (for errors).
    what: Vec<String>,
}

impl Batch {
    /// An empty transaction whose messages are numbered from `first_seq`.
    pub fn new(first_seq: u32) -> Self {
        let mut b = Self {
            w: Writer::new(),
            first_seq,
            next_seq: first_seq,
            last: None,
            what: Vec::new(),
        };
        // The frame shares its number with the first message.
        let begin = b.w.begin(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        b.w.end(begin);
        b
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.what.len()
    }

    /// Whether the transaction has no message.
    pub fn is_empty(&self) -> bool {
        self.what.is_empty()
    }

    /// The sequence numbers of the first and the last (acknowledged) message, if any.
    pub fn seqs(&self) -> Option<(u32, u32)> {
        let n = u32::try_from(self.what.len()).ok()?.checked_sub(1)?;
        Some((self.first_seq, self.first_seq.wrapping_add(n)))
    }

    /// Each message's sequence number and what it does, in order.
    pub fn labels(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        (self.first_seq..)
            .zip(&self.what)
            .map(|(seq, w)| (seq, w.as_str()))
    }

    /// The bytes to send: the messages between `BATCH_BEGIN` and `BATCH_END`.
    pub fn finish_bytes(mut self) -> Vec<u8> {
        if let Some(last) = self.last {
            self.w.add_flags(last, NLM_F_ACK);
        }
        let end = self.w.begin(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            self.next_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end(end);
        self.w.into_bytes()
    }

    /// Makes the table, its VIP map and its base chain exist and empty: creating the table
    /// (which is idempotent) then deleting it drops whatever an earlier run left, in the same
    /// transaction as the fresh table, map and chain.
    pub fn reset(&mut self) {
        self.new_table();
        self.message(NFT_MSG_DELTABLE, 0, "delete table", |b| {
            b.attr_str(NFTA_TABLE_NAME, TABLE);
        });
        self.new_table();
        self.message(NFT_MSG_NEWSET, NLM_F_CREATE, "add map", |b| {
            b.attr_str(NFTA_SET_TABLE, TABLE);
            b.attr_str(NFTA_SET_NAME, VIP_MAP);
            b.attr_u32(NFTA_SET_FLAGS, NFT_SET_MAP);
            b.attr_u32(NFTA_SET_KEY_TYPE, TYPE_IPADDR);
            b.attr_u32(NFTA_SET_KEY_LEN, 4);
            b.attr_u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
            b.attr_u32(NFTA_SET_ID, VIP_MAP_ID);
        });
        self.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, "add base chain", |b| {
            b.attr_str(NFTA_CHAIN_TABLE, TABLE);
            b.attr_str(NFTA_CHAIN_NAME, BASE_CHAIN);
            let hook = b.nest(NFTA_CHAIN_HOOK);
            b.attr_u32(NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
            b.attr_u32(NFTA_HOOK_PRIORITY, PRIORITY_DSTNAT as u32);
            b.end_nest(hook);
            b.attr_u32(NFTA_CHAIN_POLICY, NF_ACCEPT);
            b.attr_str(NFTA_CHAIN_TYPE, "nat");
        });
        self.rule(BASE_CHAIN, "vmap", |b| {
            b.expr("payload", |b| {
                b.attr_u32(NFTA_PAYLOAD_DREG, NFT_REG_1);
                b.attr_u32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
                b.attr_u32(NFTA_PAYLOAD_OFFSET, IPV4_DADDR_OFFSET);
                b.attr_u32(NFTA_PAYLOAD_LEN, 4);
            });
            b.expr("lookup", |b| {
                b.attr_str(NFTA_LOOKUP_SET, VIP_MAP);
                b.attr_u32(NFTA_LOOKUP_SET_ID, VIP_MAP_ID);
                b.attr_u32(NFTA_LOOKUP_SREG, NFT_REG_1);
                b.attr_u32(NFTA_LOOKUP_DREG, NFT_REG_VERDICT);
            });
        });
    }

    /// Deletes the table and everything in it (the sandbox no longer has a service).
    pub fn delete_all(&mut self) {
        self.new_table();
        self.message(NFT_MSG_DELTABLE, 0, "delete table", |b| {
            b.attr_str(NFTA_TABLE_NAME, TABLE);
        });
    }

    /// Maps `vip` to its chain, which must exist.
    pub fn add_vip(&mut self, vip: Ipv4Addr) {
        let chain = vip_chain(vip);
        self.message(
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            &format!("map {vip}"),
            |b| {
                b.element(vip, Some(&chain));
            },
        );
    }

    /// The body of a map element message: `vip`, jumping to `jump` (for an add).
    fn element(&mut self, vip: Ipv4Addr, jump: Option<&str>) {
        self.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        self.attr_str(NFTA_SET_ELEM_LIST_SET, VIP_MAP);
        let list = self.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        let elem = self.nest(NFTA_LIST_ELEM);
        let key = self.nest(NFTA_SET_ELEM_KEY);
        self.attr_bytes(NFTA_DATA_VALUE, &vip.octets());
        self.end_nest(key);
        if let Some(chain) = jump {
            let data = self.nest(NFTA_SET_ELEM_DATA);
            let verdict = self.nest(NFTA_DATA_VERDICT);
            self.attr_u32(NFTA_VERDICT_CODE, NFT_JUMP as u32);
            self.attr_str(NFTA_VERDICT_CHAIN, chain);
            self.end_nest(verdict);
            self.end_nest(data);
        }
        self.end_nest(elem);
        self.end_nest(list);
    }

    /// Creates `vip`'s chain (when `new`) or empties it, then fills it so that each of
    /// `backends` (never empty) gets an equal share of new connections.
    pub fn set_backends(&mut self, vip: Ipv4Addr, backends: &[Ipv4Addr], new: bool) {
        let chain = vip_chain(vip);
        if new {
            self.message(
                NFT_MSG_NEWCHAIN,
                NLM_F_CREATE,
                &format!("add {chain}"),
                |b| {
                    b.attr_str(NFTA_CHAIN_TABLE, TABLE);
                    b.attr_str(NFTA_CHAIN_NAME, &chain);
                },
            );
        } else {
            self.flush(&chain);
        }
        let n = backends.len();
        for (k, ip) in backends.iter().enumerate() {
            let left = u32::try_from(n - k).unwrap_or(u32::MAX);
            self.rule(&chain, &format!("{chain} backend {ip}"), |b| {
                if left > 1 {
                    // Taken with probability 1 / left: after k rules passed, 1 / n overall.
                    b.expr("numgen", |b| {
                        b.attr_u32(NFTA_NG_DREG, NFT_REG_1);
                        b.attr_u32(NFTA_NG_MODULUS, left);
                        b.attr_u32(NFTA_NG_TYPE, NFT_NG_RANDOM);
                    });
                    b.cmp_eq(&[0, 0, 0, 0]);
                }
                b.expr("immediate", |b| {
                    b.attr_u32(NFTA_IMMEDIATE_DREG, NFT_REG_1);
                    let data = b.nest(NFTA_IMMEDIATE_DATA);
                    b.attr_bytes(NFTA_DATA_VALUE, &ip.octets());
                    b.end_nest(data);
                });
                b.expr("nat", |b| {
                    b.attr_u32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                    b.attr_u32(NFTA_NAT_FAMILY, u32::from(NFPROTO_IPV4));
                    b.attr_u32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1);
                });
            });
        }
    }

    /// Unmaps `vip` and deletes its chain.
    pub fn delete_vip(&mut self, vip: Ipv4Addr) {
        let chain = vip_chain(vip);
        self.message(NFT_MSG_DELSETELEM, 0, &format!("unmap {vip}"), |b| {
            b.element(vip, None);
        });
        self.flush(&chain);
        self.message(NFT_MSG_DELCHAIN, 0, &format!("delete {chain}"), |b| {
            b.attr_str(NFTA_CHAIN_TABLE, TABLE);
            b.attr_str(NFTA_CHAIN_NAME, &chain);
        });
    }

    fn new_table(&mut self) {
        self.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, "add table", |b| {
            b.attr_str(NFTA_TABLE_NAME, TABLE);
        });
    }

    /// Deletes every rule of `chain`.
    fn flush(&mut self, chain: &str) {
        self.message(NFT_MSG_DELRULE, 0, &format!("flush {chain}"), |b| {
            b.attr_str(NFTA_RULE_TABLE, TABLE);
            b.attr_str(NFTA_RULE_CHAIN, chain);
        });
    }

    fn rule(&mut self, chain: &str, what: &str, exprs: impl FnOnce(&mut Self)) {
        self.message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, what, |b| {
            b.attr_str(NFTA_RULE_TABLE, TABLE);
            b.attr_str(NFTA_RULE_CHAIN, chain);
            let list = b.nest(NFTA_RULE_EXPRESSIONS);
            exprs(b);
            b.end_nest(list);
        });
    }

    fn expr(&mut self, name: &str, data: impl FnOnce(&mut Self)) {
        let elem = self.nest(NFTA_LIST_ELEM);
        self.attr_str(NFTA_EXPR_NAME, name);
        let d = self.nest(NFTA_EXPR_DATA);
        data(self);
        self.end_nest(d);
        self.end_nest(elem);
    }

    /// `cmp eq` of register 1 against `value`.
    fn cmp_eq(&mut self, value: &[u8]) {
        self.expr("cmp", |b| {
            b.attr_u32(NFTA_CMP_SREG, NFT_REG_1);
            b.attr_u32(NFTA_CMP_OP, NFT_CMP_EQ);
            let data = b.nest(NFTA_CMP_DATA);
            b.attr_bytes(NFTA_DATA_VALUE, value);
            b.end_nest(data);
        });
    }

    fn message(&mut self, kind: u16, flags: u16, what: &str, body: impl FnOnce(&mut Self)) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let start = self.w.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | flags,
            seq,
            NFPROTO_IPV4,
            0,
        );
        body(self);
        self.w.end(start);
        self.last = Some(start);
        self.what.push(what.to_owned());
    }

    fn attr_bytes(&mut self, kind: u16, value: &[u8]) {
        self.w.bytes(kind, value);
    }

    fn attr_str(&mut self, kind: u16, value: &str) {
        self.w.string(kind, value);
    }

    fn attr_u32(&mut self, kind: u16, value: u32) {
        self.w.u32_be(kind, value);
    }

    fn nest(&mut self, kind: u16) -> usize {
        self.w.nest(kind)
    }

    fn end_nest(&mut self, start: usize) {
        self.w.end_nest(start);
    }
}

/// The acknowledgements in a buffer of netlink messages: `(seq, errno)` for each
/// `NLMSG_ERROR` (errno 0: done). Stops at the first malformed header.
pub fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    nlmsg::messages(buf)
        .filter_map(|m| m.errno().map(|e| (m.seq, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a buffer into (type, flags, seq, body) per message.
    fn messages(buf: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(buf[at + 6..at + 8].try_into().unwrap());
            let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap());
            out.push((kind, flags, seq, buf[at + 16..at + len].to_vec()));
            assert_eq!(len % 4, 0, "messages stay aligned");
            at += len;
        }
        out
    }

    #[test]
    fn a_batch_is_framed_and_numbered() {
        let mut b = Batch::new(100);
        b.reset();
        b.set_backends(
            "10.0.0.2".parse().unwrap(),
            &["10.0.0.3".parse().unwrap()],
            true,
        );
        assert_eq!(b.len(), 8);
        assert_eq!(b.seqs(), Some((100, 107)));
        let labels: Vec<_> = b.labels().collect();
        assert_eq!(labels[0], (100, "add table"));
        assert_eq!(labels[7], (107, "vip-10.0.0.2 backend 10.0.0.3"));
        assert_eq!(Batch::new(5).seqs(), None);
        let buf = b.finish_bytes();
        let m = messages(&buf);
        assert_eq!(m.len(), 10);
        assert_eq!(m[0].0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(m[9].0, NFNL_MSG_BATCH_END);
        assert_eq!(m[1].0, (10 << 8) | NFT_MSG_NEWTABLE);
        assert_eq!(m[1].1, NLM_F_REQUEST | NLM_F_CREATE);
        assert_eq!(m[1].2, 100);
        assert_eq!(m[4].0, (10 << 8) | NFT_MSG_NEWSET);
        // Only the last message asks for an acknowledgement.
        assert_eq!(
            m[8].1,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
        );
        assert_eq!(m[8].2, 107);
        assert_eq!(m[2].0, (10 << 8) | NFT_MSG_DELTABLE);
        // nfgenmsg: family ip, version 0, then the table name attribute.
        assert_eq!(&m[1].3[..4], &[NFPROTO_IPV4, 0, 0, 0]);
        assert_eq!(&m[1].3[4..8], &[13, 0, 1, 0]);
        assert_eq!(&m[1].3[8..17], b"netagent\0");
    }

    #[test]
    fn one_backend_needs_no_numgen() {
        let mut b = Batch::new(1);
        b.set_backends(
            "10.0.0.2".parse().unwrap(),
            &["10.0.0.3".parse().unwrap()],
            false,
        );
        let buf = b.finish_bytes();
        assert!(!buf.windows(7).any(|w| w == b"numgen\0"));
        let mut b = Batch::new(1);
        let two = ["10.0.0.3".parse().unwrap(), "10.0.0.4".parse().unwrap()];
        b.set_backends("10.0.0.2".parse().unwrap(), &two, false);
        let buf = b.finish_bytes();
        assert_eq!(buf.windows(7).filter(|w| w == b"numgen\0").count(), 1);
    }

    #[test]
    fn acks_are_read_and_garbage_is_not() {
        let mut buf = Vec::new();
        for (seq, code) in [(7u32, 0i32), (8, -2)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&nlmsg::NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&code.to_ne_bytes());
            buf.extend_from_slice(&[0; 16]);
        }
        assert_eq!(acks(&buf), [(7, 0), (8, 2)]);
        assert!(acks(&buf[..10]).is_empty());
        buf[0] = 200;
        assert!(acks(&buf).is_empty());
    }
}
