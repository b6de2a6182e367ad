//! [`NeighOp`]s as RTM_NEWNEIGH / RTM_DELNEIGH messages, sent pipelined, and the dump of a
//! VXLAN device's permanent entries.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::TryStreamExt;
use futures::stream::{Stream, StreamExt};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{NetlinkError, OpFailure};
use crate::{KernelState, Mac, NeighOp};

const ENOENT: i32 = nix::errno::Errno::ENOENT as i32;

/// Applies `ops` to the device `ifindex`, `window` requests in flight at a time, each window
/// bounded by `timeout`. Requests go out in `ops` order, so a delete and a later add of the
/// same key reach the kernel in that order. Returns the failed ops.
pub(super) async fn apply(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    ops: &[NeighOp],
    window: usize,
    timeout: Duration,
) -> Vec<OpFailure> {
    let mut handle = handle.clone();
    let mut failures = Vec::new();
    for (chunk_no, chunk) in ops.chunks(window.max(1)).enumerate() {
        let base = chunk_no * window.max(1);
        let mut pending = Vec::with_capacity(chunk.len());
        for (i, op) in chunk.iter().enumerate() {
            let (main, purge) = messages(ifindex, op);
            let main = handle.request(main).map(ack);
            // libnetwork's second delete: the bridge's learned entry for the MAC. Best effort.
            let purge = purge.and_then(|m| handle.request(m).ok()).map(ack);
            pending.push(async move {
                let result = match main {
                    Ok(resp) => resp.await,
                    Err(e) => Err(e.to_string()),
                };
                if let Some(purge) = purge
                    && let Err(e) = purge.await
                {
                    tracing::debug!(op = ?chunk[i], error = %e, "NTF_MASTER purge failed");
                }
                (base + i, result)
            });
        }
        match tokio::time::timeout(timeout, futures::future::join_all(pending)).await {
            Ok(results) => {
                for (index, result) in results {
                    if let Err(reason) = result {
                        failures.push(OpFailure {
                            index,
                            op: ops[index],
                            reason,
                        });
                    }
                }
            }
            Err(_) => failures.extend(chunk.iter().enumerate().map(|(i, &op)| OpFailure {
                index: base + i,
                op,
                reason: format!("no answer within {timeout:?}"),
            })),
        }
    }
    failures
}

/// The permanent neighbours and `self` FDB entries of the device `ifindex`.
pub(super) async fn state(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<KernelState, rtnetlink::Error> {
    let mut out = KernelState::default();
    let neighbours: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await?;
    for msg in neighbours.iter().filter(|m| is_permanent_on(m, ifindex)) {
        if let (Some(IpAddr::V4(ip)), Some(mac)) = (destination(msg), lladdr(msg)) {
            out.neighbours.insert(ip, mac);
        }
    }
    let fdb: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await?;
    let mut entries = BTreeMap::new();
    for msg in fdb.iter().filter(|m| is_permanent_on(m, ifindex)) {
        if !msg.header.flags.contains(NeighbourFlags::Own) {
            continue; // the bridge's own entries for its vxlan0 port (NTF_MASTER)
        }
        if let (Some(vtep), Some(mac)) = (destination(msg), lladdr(msg))
            && mac != Mac::default()
        {
            entries.insert(mac, vtep);
        }
    }
    out.fdb = entries;
    Ok(out)
}

/// The request for `op`, and for an FDB delete also the `NTF_MASTER` purge.
fn messages(
    ifindex: u32,
    op: &NeighOp,
) -> (
    NetlinkMessage<RouteNetlinkMessage>,
    Option<NetlinkMessage<RouteNetlinkMessage>>,
) {
    match *op {
        NeighOp::AddNeigh { ip, mac } => (add(neigh(ifindex, IpAddr::V4(ip), mac)), None),
        NeighOp::DelNeigh { ip, mac } => (del(neigh(ifindex, IpAddr::V4(ip), mac)), None),
        NeighOp::AddFdb { mac, vtep } => (add(fdb(ifindex, mac, Some(vtep))), None),
        NeighOp::DelFdb { mac, vtep } => {
            let mut purge = fdb(ifindex, mac, None);
            purge.header.flags = NeighbourFlags::Controller;
            (del(fdb(ifindex, mac, Some(vtep))), Some(del(purge)))
        }
    }
}

/// `ip neigh ... IP lladdr MAC dev vxlan0 nud permanent`.
fn neigh(ifindex: u32, ip: IpAddr, mac: Mac) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::Destination(address(ip)));
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    msg
}

/// `bridge fdb ... MAC dev vxlan0 dst VTEP self permanent` (no `dst` for the purge).
fn fdb(ifindex: u32, mac: Mac, vtep: Option<IpAddr>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unspec;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    if let Some(vtep) = vtep {
        msg.attributes
            .push(NeighbourAttribute::Destination(address(vtep)));
    }
    msg
}

fn add(msg: NeighbourMessage) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(msg));
    // Replace semantics everywhere: learning may have created a dynamic FDB entry
    // (moby PR #53663), and a replace of an equal entry is a no-op.
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    req
}

fn del(msg: NeighbourMessage) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelNeighbour(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req
}

/// Waits for the kernel's ACK. A delete of an absent entry (`ENOENT`) counts as success.
async fn ack(resp: impl Stream<Item = NetlinkMessage<RouteNetlinkMessage>>) -> Result<(), String> {
    let mut resp = std::pin::pin!(resp);
    while let Some(msg) = resp.next().await {
        if let NetlinkPayload::Error(err) = msg.payload {
            return match err.code {
                None => Ok(()),
                Some(code) if code.get() == -ENOENT => Ok(()),
                Some(_) => Err(err.to_io().to_string()),
            };
        }
    }
    Ok(())
}

fn address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

/// Whether `msg` is on `ifindex` with `NUD_PERMANENT` set. A bit test, not equality:
/// `bridge fdb ... permanent` writes `NUD_NOARP | NUD_PERMANENT`.
fn is_permanent_on(msg: &NeighbourMessage, ifindex: u32) -> bool {
    let permanent = u16::from(NeighbourState::Permanent);
    msg.header.ifindex == ifindex && u16::from(msg.header.state) & permanent != 0
}

fn destination(msg: &NeighbourMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        // AF_BRIDGE messages carry the VTEP as raw bytes; the length tells the family.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    })
}

fn lladdr(msg: &NeighbourMessage) -> Option<Mac> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice()).ok().map(Mac),
        _ => None,
    })
}

/// `NetlinkError` for a failed dump.
pub(super) fn dump_error(source: rtnetlink::Error) -> NetlinkError {
    NetlinkError::Request {
        what: "dump neighbours".into(),
        source,
    }
}
