//! Forgetting the UDP flows of a withdrawn backend (ctnetlink, `linux/netfilter/
//! nfnetlink_conntrack.h`; no I/O here).
//!
//! conntrack keeps a flow on the backend its first packet was sent to. For TCP that is what
//! draining wants: an established connection to a disabled task goes on, and one to a dead
//! host fails as TCP does. A UDP flow has no end, so a client that keeps sending from one
//! port would stay on a disabled or dead task for as long as it keeps sending. After a sync
//! that withdraws backends, the agent therefore dumps the sandbox's conntrack table and
//! deletes the UDP flows whose original destination is a VIP and whose reply comes from a
//! withdrawn backend; the next datagram is balanced again (kube-proxy does the same).

use std::net::Ipv4Addr;

use super::nlmsg::{self, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, Writer};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const AF_INET: u8 = 2;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// One direction of a flow: protocol, addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// A flow of the table: its original and reply directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// As the first packet went (to the VIP, for a balanced flow).
    pub orig: Tuple,
    /// As replies come (from the chosen backend).
    pub reply: Tuple,
}

/// A request to dump the IPv4 flows.
pub fn dump_request(seq: u32) -> Vec<u8> {
    let mut w = Writer::new();
    let m = w.begin(
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        AF_INET,
        0,
    );
    w.end(m);
    w.into_bytes()
}

/// What one buffer of a dump holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpPart {
    /// The IPv4 flows with both tuples readable.
    pub flows: Vec<Flow>,
    /// The dump ended (`NLMSG_DONE`).
    pub done: bool,
    /// The kernel answered an error instead.
    pub errno: Option<i32>,
}

/// Reads one buffer of the answer to the dump request numbered `seq` (other messages are
/// skipped).
pub fn parse_dump(buf: &[u8], seq: u32) -> DumpPart {
    let mut part = DumpPart::default();
    for m in nlmsg::messages(buf).filter(|m| m.seq == seq) {
        match m.kind {
            nlmsg::NLMSG_DONE => part.done = true,
            nlmsg::NLMSG_ERROR => {
                if let Some(e) = m.errno().filter(|e| *e != 0) {
                    part.errno = Some(e);
                    part.done = true;
                }
            }
            k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                // Skip the nfgenmsg.
                if let Some(attrs) = m.body.get(4..)
                    && let Some(flow) = flow(attrs)
                {
                    part.flows.push(flow);
                }
            }
            _ => {}
        }
    }
    part
}

fn flow(attrs: &[u8]) -> Option<Flow> {
    Some(Flow {
        orig: tuple(nlmsg::attr(attrs, CTA_TUPLE_ORIG)?)?,
        reply: tuple(nlmsg::attr(attrs, CTA_TUPLE_REPLY)?)?,
    })
}

fn tuple(attrs: &[u8]) -> Option<Tuple> {
    let ip = nlmsg::attr(attrs, CTA_TUPLE_IP)?;
    let proto = nlmsg::attr(attrs, CTA_TUPLE_PROTO)?;
    let v4 = |kind| -> Option<Ipv4Addr> {
        let b: [u8; 4] = nlmsg::attr(ip, kind)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let port = |kind| -> Option<u16> {
        let b: [u8; 2] = nlmsg::attr(proto, kind)?.try_into().ok()?;
        Some(u16::from_be_bytes(b))
    };
    Some(Tuple {
        proto: *nlmsg::attr(proto, CTA_PROTO_NUM)?.first()?,
        src: v4(CTA_IP_V4_SRC)?,
        dst: v4(CTA_IP_V4_DST)?,
        sport: port(CTA_PROTO_SRC_PORT)?,
        dport: port(CTA_PROTO_DST_PORT)?,
    })
}

/// Requests deleting each flow by its original tuple, numbered from `first_seq`, each
/// acknowledged.
pub fn delete_requests(first_seq: u32, flows: &[Tuple]) -> Vec<u8> {
    let mut w = Writer::new();
    for (seq, t) in (first_seq..).zip(flows) {
        let m = w.begin(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            AF_INET,
            0,
        );
        write_tuple(&mut w, CTA_TUPLE_ORIG, t);
        w.end(m);
    }
    w.into_bytes()
}

/// Writes `t` as the nested tuple attribute `kind` (`CTA_TUPLE_ORIG` or `CTA_TUPLE_REPLY`).
fn write_tuple(w: &mut Writer, kind: u16, t: &Tuple) {
    let tuple = w.nest(kind);
    let ip = w.nest(CTA_TUPLE_IP);
    w.bytes(CTA_IP_V4_SRC, &t.src.octets());
    w.bytes(CTA_IP_V4_DST, &t.dst.octets());
    w.end_nest(ip);
    let proto = w.nest(CTA_TUPLE_PROTO);
    w.bytes(CTA_PROTO_NUM, &[t.proto]);
    w.bytes(CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes());
    w.bytes(CTA_PROTO_DST_PORT, &t.dport.to_be_bytes());
    w.end_nest(proto);
    w.end_nest(tuple);
}

/// The UDP flows to forget: sent to one of `withdrawn`'s VIPs and answered by the backend
/// withdrawn from it.
pub fn to_forget(flows: &[Flow], withdrawn: &[(Ipv4Addr, Ipv4Addr)]) -> Vec<Tuple> {
    flows
        .iter()
        .filter(|f| {
            f.orig.proto == IPPROTO_UDP
                && withdrawn
                    .iter()
                    .any(|(vip, backend)| f.orig.dst == *vip && f.reply.src == *backend)
        })
        .map(|f| f.orig)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(proto: u8, src: &str, dst: &str, sport: u16, dport: u16) -> Tuple {
        Tuple {
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
        }
    }

    /// A dump answer as the kernel writes it: one flow message, then `NLMSG_DONE`.
    fn answer(flow: &Flow) -> Vec<u8> {
        let mut w = Writer::new();
        let m = w.begin(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW,
            2,
            9,
            AF_INET,
            0,
        );
        write_tuple(&mut w, CTA_TUPLE_ORIG, &flow.orig);
        write_tuple(&mut w, CTA_TUPLE_REPLY, &flow.reply);
        w.end(m);
        let done = w.begin(nlmsg::NLMSG_DONE, 2, 9, 0, 0);
        w.end(done);
        w.into_bytes()
    }

    #[test]
    fn a_dump_is_read_and_the_withdrawn_udp_flows_chosen() {
        let udp = Flow {
            orig: t(17, "10.0.0.9", "10.0.0.2", 40000, 53),
            reply: t(17, "10.0.0.4", "10.0.0.9", 53, 40000),
        };
        let part = parse_dump(&answer(&udp), 9);
        assert_eq!(parse_dump(&answer(&udp), 8), DumpPart::default());
        assert_eq!(part.flows, [udp]);
        assert!(part.done);
        let vip = "10.0.0.2".parse().unwrap();
        let gone = [(vip, "10.0.0.4".parse().unwrap())];
        assert_eq!(to_forget(&part.flows, &gone), [udp.orig]);
        // Another backend's flow, and a TCP flow, stay.
        let kept = [(vip, "10.0.0.5".parse().unwrap())];
        assert!(to_forget(&part.flows, &kept).is_empty());
        let tcp = Flow {
            orig: Tuple {
                proto: 6,
                ..udp.orig
            },
            reply: Tuple {
                proto: 6,
                ..udp.reply
            },
        };
        assert!(to_forget(&[tcp], &gone).is_empty());
    }

    #[test]
    fn delete_requests_carry_the_original_tuple() {
        let orig = t(17, "10.0.0.9", "10.0.0.2", 40000, 53);
        let buf = delete_requests(5, &[orig, orig]);
        let all: Vec<_> = nlmsg::messages(&buf).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].seq, 6);
        let tuple_attrs = nlmsg::attr(&all[0].body[4..], CTA_TUPLE_ORIG).unwrap();
        assert_eq!(tuple(tuple_attrs), Some(orig));
    }
}
