//! A fake nf_tables that reads the bytes the agent would send: for the simulator's `balancer`
//! checker and the tests, as `overlay::FakeKernel` is for the VXLAN tables.
//!
//! It applies a batch as the kernel does, all or nothing, with the kernel's refusals for what
//! the balancer's transactions could get wrong (a table or chain that does not exist, a chain
//! deleted while a rule jumps to it or while it holds rules, a jump to a missing chain, a
//! malformed message). [`FakeNftables::services`] then reads the ruleset back as the VIPs it
//! serves, and refuses a ruleset that would not give each backend an equal share.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::batch::*;
use super::nlmsg::{self, Message};
use crate::{BalancerOp, ServiceTable};

/// `ENOENT`: a table, chain or jump target does not exist.
const ENOENT: i32 = 2;
/// `EBUSY`: a chain is in use.
const EBUSY: i32 = 16;
/// `EEXIST`: a map element that maps elsewhere.
const EEXIST: i32 = 17;
/// `EINVAL`: a malformed message.
const EINVAL: i32 = 22;

/// Why a batch was refused; nothing of it was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("message {index} of the batch (seq {seq}) refused with errno {errno}: {why}")]
pub struct FakeNftError {
    /// The refused message's position among the batch's messages (the frame excluded).
    pub index: usize,
    /// Its sequence number.
    pub seq: u32,
    /// The errno the kernel would answer.
    pub errno: i32,
    /// What was wrong.
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Data {
    Value(Vec<u8>),
    Jump(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Lookup {
        set: String,
        sreg: u32,
        dreg: u32,
    },
    Payload {
        dreg: u32,
        base: u32,
        offset: u32,
        len: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    Immediate {
        dreg: u32,
        data: Data,
    },
    Numgen {
        dreg: u32,
        modulus: u32,
        kind: u32,
    },
    Nat {
        kind: u32,
        family: u32,
        reg: u32,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Chain {
    /// `(hook, priority, type)` of a base chain.
    hook: Option<(u32, i32, String)>,
    rules: Vec<Vec<Expr>>,
}

/// The `ip netagent` table: its chains and its verdict maps (key -> the chain it jumps to).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Table {
    chains: BTreeMap<String, Chain>,
    maps: BTreeMap<String, BTreeMap<Vec<u8>, String>>,
}

/// The `ip netagent` table of one fake namespace, if it exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeNftables {
    table: Option<Table>,
}

impl FakeNftables {
    /// A namespace without the table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a batch (`BATCH_BEGIN`, messages, `BATCH_END`) as one transaction.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<(), FakeNftError> {
        let all: Vec<Message<'_>> = nlmsg::messages(bytes).collect();
        let refuse = |index: usize, seq: u32, errno: i32, why: String| FakeNftError {
            index,
            seq,
            errno,
            why,
        };
        let (Some(first), Some(last)) = (all.first(), all.last()) else {
            return Err(refuse(0, 0, EINVAL, "an empty batch".into()));
        };
        if first.kind != NFNL_MSG_BATCH_BEGIN || last.kind != NFNL_MSG_BATCH_END || all.len() < 2 {
            return Err(refuse(
                0,
                first.seq,
                EINVAL,
                "not framed by BATCH_BEGIN/END".into(),
            ));
        }
        let mut next = self.table.clone();
        for (index, m) in all[1..all.len() - 1].iter().enumerate() {
            self::apply(&mut next, m).map_err(|(errno, why)| refuse(index, m.seq, errno, why))?;
        }
        self.table = next;
        Ok(())
    }

    /// The VIPs the ruleset serves, each with its backends; `Err` when the ruleset is not the
    /// balancer's shape (a base chain that is not nat/output at -100, a jump rule that does
    /// not match one destination, a VIP chain whose rules do not give each backend 1/N).
    pub fn services(&self) -> Result<ServiceTable, String> {
        let mut out = ServiceTable::new();
        let Some(table) = &self.table else {
            return Ok(out);
        };
        let base = table.chains.get(BASE_CHAIN).ok_or("no base chain")?;
        if base.hook != Some((NF_INET_LOCAL_OUT, PRIORITY_DSTNAT, "nat".into())) {
            return Err(format!("base chain hooked as {:?}", base.hook));
        }
        match base.rules.as_slice() {
            [rule] => match rule.as_slice() {
                [
                    Expr::Payload {
                        dreg: NFT_REG_1,
                        base: NFT_PAYLOAD_NETWORK_HEADER,
                        offset: IPV4_DADDR_OFFSET,
                        len: 4,
                    },
                    Expr::Lookup {
                        set,
                        sreg: NFT_REG_1,
                        dreg: NFT_REG_VERDICT,
                    },
                ] if set == VIP_MAP => {}
                other => return Err(format!("base rule {other:?}")),
            },
            rules => return Err(format!("{} base rules", rules.len())),
        }
        let map = table.maps.get(VIP_MAP).ok_or("no VIP map")?;
        for (key, chain) in map {
            let vip = v4(key).ok_or("a map key that is not IPv4")?;
            if *chain != vip_chain(vip) {
                return Err(format!("{vip} jumps to {chain}"));
            }
            let rules = &table
                .chains
                .get(chain)
                .ok_or("a jump to a missing chain")?
                .rules;
            let n = u32::try_from(rules.len()).map_err(|e| e.to_string())?;
            let mut backends = Vec::new();
            for (k, rule) in (0u32..).zip(rules) {
                let (dnat, draw) = match rule.as_slice() {
                    [
                        Expr::Numgen {
                            dreg: NFT_REG_1,
                            modulus,
                            kind: NFT_NG_RANDOM,
                        },
                        Expr::Cmp {
                            sreg: NFT_REG_1,
                            op: NFT_CMP_EQ,
                            data,
                        },
                        rest @ ..,
                    ] if data == &[0, 0, 0, 0] => (rest, Some(*modulus)),
                    rest => (rest, None),
                };
                // Rule k of n is taken with probability 1/(n-k): each backend gets 1/n.
                let fair = match draw {
                    Some(m) => k + 1 < n && m == n - k,
                    None => k + 1 == n,
                };
                if !fair {
                    return Err(format!("{chain}: rule {k} of {n} draws {draw:?}"));
                }
                match dnat {
                    [
                        Expr::Immediate {
                            dreg: NFT_REG_1,
                            data: Data::Value(ip),
                        },
                        Expr::Nat {
                            kind: NFT_NAT_DNAT,
                            family,
                            reg: NFT_REG_1,
                        },
                    ] if *family == u32::from(NFPROTO_IPV4) => {
                        backends.push(v4(ip).ok_or("a DNAT to a non-IPv4 value")?);
                    }
                    other => return Err(format!("{chain}: rule {k} ends {other:?}")),
                }
            }
            if backends.is_empty() {
                return Err(format!("{chain} has no backend"));
            }
            out.apply(&BalancerOp::Set { vip, backends });
        }
        Ok(out)
    }
}

fn v4(data: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = data.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

type Refusal = (i32, String);

fn string(attrs: &[u8], kind: u16) -> Result<String, Refusal> {
    let raw = nlmsg::attr(attrs, kind).ok_or((EINVAL, format!("attribute {kind} missing")))?;
    let raw = raw
        .strip_suffix(&[0])
        .ok_or((EINVAL, "a string without NUL".into()))?;
    String::from_utf8(raw.to_vec()).map_err(|_| (EINVAL, "a string not UTF-8".into()))
}

fn be32(attrs: &[u8], kind: u16) -> Result<u32, Refusal> {
    let raw = nlmsg::attr(attrs, kind).ok_or((EINVAL, format!("attribute {kind} missing")))?;
    let b: [u8; 4] = raw
        .try_into()
        .map_err(|_| (EINVAL, format!("attribute {kind} not 4 bytes")))?;
    Ok(u32::from_be_bytes(b))
}

fn nested(attrs: &[u8], kind: u16) -> Result<&[u8], Refusal> {
    nlmsg::attr(attrs, kind).ok_or((EINVAL, format!("nested attribute {kind} missing")))
}

/// Applies one message to the transaction's copy of the table.
fn apply(table: &mut Option<Table>, m: &Message<'_>) -> Result<(), Refusal> {
    if m.kind >> 8 != NFNL_SUBSYS_NFTABLES {
        return Err((EINVAL, format!("message type {:#x}", m.kind)));
    }
    let family = *m.body.first().ok_or((EINVAL, "no nfgenmsg".into()))?;
    if family != NFPROTO_IPV4 {
        return Err((EINVAL, format!("family {family}")));
    }
    let attrs = m.body.get(4..).unwrap_or_default();
    let kind = m.kind & 0xff;
    match kind {
        NFT_MSG_NEWTABLE => {
            if string(attrs, NFTA_TABLE_NAME)? != TABLE {
                return Err((EINVAL, "another table".into()));
            }
            table.get_or_insert_with(Table::default);
            return Ok(());
        }
        NFT_MSG_DELTABLE => {
            return match table.take() {
                Some(_) => Ok(()),
                None => Err((ENOENT, "no table to delete".into())),
            };
        }
        _ => {}
    }
    let t = table.as_mut().ok_or((ENOENT, "no table".into()))?;
    match kind {
        NFT_MSG_NEWSET => {
            let name = string(attrs, NFTA_SET_NAME)?;
            let is_map = be32(attrs, NFTA_SET_FLAGS)? & NFT_SET_MAP != 0;
            if !is_map
                || be32(attrs, NFTA_SET_KEY_LEN)? != 4
                || be32(attrs, NFTA_SET_DATA_TYPE)? != NFT_DATA_VERDICT
            {
                return Err((EINVAL, format!("{name} is not an IPv4 verdict map")));
            }
            t.maps.entry(name).or_default();
        }
        NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM => {
            let name = string(attrs, NFTA_SET_ELEM_LIST_SET)?;
            let chains = &t.chains;
            let map = t
                .maps
                .get_mut(&name)
                .ok_or((ENOENT, format!("no map {name}")))?;
            let list = nested(attrs, NFTA_SET_ELEM_LIST_ELEMENTS)?;
            for (k, elem) in nlmsg::attrs(list) {
                if k != NFTA_LIST_ELEM {
                    return Err((EINVAL, format!("element list attribute {k}")));
                }
                let key = nested(nested(elem, NFTA_SET_ELEM_KEY)?, NFTA_DATA_VALUE)?.to_vec();
                if key.len() != 4 {
                    return Err((EINVAL, "a key that is not 4 bytes".into()));
                }
                if kind == NFT_MSG_DELSETELEM {
                    map.remove(&key).ok_or((ENOENT, "no such element".into()))?;
                    continue;
                }
                let verdict = nested(nested(elem, NFTA_SET_ELEM_DATA)?, NFTA_DATA_VERDICT)?;
                if be32(verdict, NFTA_VERDICT_CODE)? as i32 != NFT_JUMP {
                    return Err((EINVAL, "a verdict other than jump".into()));
                }
                let target = string(verdict, NFTA_VERDICT_CHAIN)?;
                if !chains.contains_key(&target) {
                    return Err((ENOENT, format!("a jump to missing {target}")));
                }
                match map.get(&key) {
                    Some(old) if *old != target => {
                        return Err((EEXIST, "the element maps elsewhere".into()));
                    }
                    _ => {
                        map.insert(key, target);
                    }
                }
            }
        }
        NFT_MSG_NEWCHAIN => {
            let chain = string(attrs, NFTA_CHAIN_NAME)?;
            let hook = match nlmsg::attr(attrs, NFTA_CHAIN_HOOK) {
                Some(h) => Some((
                    be32(h, NFTA_HOOK_HOOKNUM)?,
                    be32(h, NFTA_HOOK_PRIORITY)? as i32,
                    string(attrs, NFTA_CHAIN_TYPE)?,
                )),
                None => None,
            };
            if hook.is_some() && be32(attrs, NFTA_CHAIN_POLICY)? != NF_ACCEPT {
                return Err((EINVAL, "a base chain that drops".into()));
            }
            t.chains.entry(chain).or_default().hook = hook;
        }
        NFT_MSG_DELCHAIN => {
            let chain = string(attrs, NFTA_CHAIN_NAME)?;
            let c = t
                .chains
                .get(&chain)
                .ok_or((ENOENT, format!("no chain {chain}")))?;
            if !c.rules.is_empty() {
                return Err((EBUSY, format!("{chain} still has rules")));
            }
            let jumped =
                t.chains.values().flatten_rules().any(
                    |e| matches!(e, Expr::Immediate { data: Data::Jump(j), .. } if *j == chain),
                );
            let mapped = t
                .maps
                .values()
                .flat_map(|m| m.values())
                .any(|c| *c == chain);
            if jumped || mapped {
                return Err((EBUSY, format!("{chain} is jumped to")));
            }
            t.chains.remove(&chain);
        }
        NFT_MSG_NEWRULE => {
            let chain = string(attrs, NFTA_RULE_CHAIN)?;
            let list = nested(attrs, NFTA_RULE_EXPRESSIONS)?;
            let mut rule = Vec::new();
            for (k, elem) in nlmsg::attrs(list) {
                if k != NFTA_LIST_ELEM {
                    return Err((EINVAL, format!("list attribute {k}")));
                }
                rule.push(expr(elem)?);
            }
            for e in &rule {
                match e {
                    Expr::Immediate {
                        data: Data::Jump(target),
                        ..
                    } if !t.chains.contains_key(target) => {
                        return Err((ENOENT, format!("a jump to missing {target}")));
                    }
                    Expr::Lookup { set, .. } if !t.maps.contains_key(set) => {
                        return Err((ENOENT, format!("a lookup in missing {set}")));
                    }
                    _ => {}
                }
            }
            t.chains
                .get_mut(&chain)
                .ok_or((ENOENT, format!("no chain {chain}")))?
                .rules
                .push(rule);
        }
        NFT_MSG_DELRULE => {
            // Without a handle: every rule of the chain.
            let chain = string(attrs, NFTA_RULE_CHAIN)?;
            t.chains
                .get_mut(&chain)
                .ok_or((ENOENT, format!("no chain {chain}")))?
                .rules
                .clear();
        }
        other => return Err((EINVAL, format!("nf_tables message {other}"))),
    }
    Ok(())
}

/// Every expression of every rule of some chains.
trait FlattenRules<'a> {
    fn flatten_rules(self) -> impl Iterator<Item = &'a Expr>;
}

impl<'a, I: Iterator<Item = &'a Chain>> FlattenRules<'a> for I {
    fn flatten_rules(self) -> impl Iterator<Item = &'a Expr> {
        self.flat_map(|c| c.rules.iter().flatten())
    }
}

fn expr(elem: &[u8]) -> Result<Expr, Refusal> {
    let name = string(elem, NFTA_EXPR_NAME)?;
    let d = nested(elem, NFTA_EXPR_DATA)?;
    Ok(match name.as_str() {
        "payload" => Expr::Payload {
            dreg: be32(d, NFTA_PAYLOAD_DREG)?,
            base: be32(d, NFTA_PAYLOAD_BASE)?,
            offset: be32(d, NFTA_PAYLOAD_OFFSET)?,
            len: be32(d, NFTA_PAYLOAD_LEN)?,
        },
        "cmp" => Expr::Cmp {
            sreg: be32(d, NFTA_CMP_SREG)?,
            op: be32(d, NFTA_CMP_OP)?,
            data: nested(nested(d, NFTA_CMP_DATA)?, NFTA_DATA_VALUE)?.to_vec(),
        },
        "immediate" => {
            let data = nested(d, NFTA_IMMEDIATE_DATA)?;
            let data = match nlmsg::attr(data, NFTA_DATA_VERDICT) {
                Some(v) => {
                    if be32(v, NFTA_VERDICT_CODE)? as i32 != NFT_JUMP {
                        return Err((EINVAL, "a verdict other than jump".into()));
                    }
                    Data::Jump(string(v, NFTA_VERDICT_CHAIN)?)
                }
                None => Data::Value(nested(data, NFTA_DATA_VALUE)?.to_vec()),
            };
            Expr::Immediate {
                dreg: be32(d, NFTA_IMMEDIATE_DREG)?,
                data,
            }
        }
        "numgen" => Expr::Numgen {
            dreg: be32(d, NFTA_NG_DREG)?,
            modulus: be32(d, NFTA_NG_MODULUS)?,
            kind: be32(d, NFTA_NG_TYPE)?,
        },
        "lookup" => Expr::Lookup {
            set: string(d, NFTA_LOOKUP_SET)?,
            sreg: be32(d, NFTA_LOOKUP_SREG)?,
            dreg: be32(d, NFTA_LOOKUP_DREG)?,
        },
        "nat" => Expr::Nat {
            kind: be32(d, NFTA_NAT_TYPE)?,
            family: be32(d, NFTA_NAT_FAMILY)?,
            reg: be32(d, NFTA_NAT_REG_ADDR_MIN)?,
        },
        other => return Err((EINVAL, format!("expression {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_refused_batch_changes_nothing() {
        let mut fake = FakeNftables::new();
        let mut b = Batch::new(1);
        b.reset();
        b.set_backends(ip("10.0.0.2"), &[ip("10.0.0.3")], true);
        b.add_vip(ip("10.0.0.2"));
        fake.apply(&b.finish_bytes()).unwrap();
        let before = fake.clone();
        // Deleting a chain the map still jumps to (its element is not removed first).
        let mut b = Batch::new(100);
        b.set_backends(ip("10.0.0.2"), &[ip("10.0.0.4")], false);
        b.delete_vip(ip("10.0.0.2"));
        b.add_vip(ip("10.0.0.2"));
        let e = fake.apply(&b.finish_bytes()).unwrap_err();
        assert_eq!((e.index, e.seq, e.errno), (5, 105, ENOENT));
        assert_eq!(fake, before);
        // Changing a table that does not exist.
        let mut empty = FakeNftables::new();
        let mut b = Batch::new(1);
        b.set_backends(ip("10.0.0.2"), &[ip("10.0.0.3")], true);
        assert_eq!(empty.apply(&b.finish_bytes()).unwrap_err().errno, ENOENT);
    }

    #[test]
    fn an_unfair_chain_is_caught() {
        let mut fake = FakeNftables::new();
        let mut b = Batch::new(1);
        b.reset();
        b.set_backends(ip("10.0.0.2"), &[ip("10.0.0.3"), ip("10.0.0.4")], true);
        b.add_vip(ip("10.0.0.2"));
        fake.apply(&b.finish_bytes()).unwrap();
        let served = fake.services().unwrap();
        assert_eq!(served.backend_count(), 2);
        // Swap the two rules' order by hand: the draw is then on the last rule.
        if let Some(t) = fake.table.as_mut()
            && let Some(c) = t.chains.get_mut("vip-10.0.0.2")
        {
            c.rules.reverse();
        }
        assert!(fake.services().is_err());
    }
}
