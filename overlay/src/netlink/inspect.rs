//! Reading back how an interface inside a container's namespace is configured: what a CNI
//! runtime's `CHECK` compares with what the plugin answered at `ADD`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};

use super::netns;
use super::{NetlinkError, bounded, find_link};
use crate::Mac;

/// An interface as the kernel has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceState {
    /// Its hardware address, if it has a 6-byte one.
    pub mac: Option<Mac>,
    /// Its IPv4 addresses with their prefix lengths.
    pub ipv4: Vec<Ipv4Net>,
    /// Whether it is administratively up.
    pub up: bool,
}

/// The interface `ifname` in the namespace at `netns`; `None` if there is no such link.
/// Every request is bounded by `timeout`.
pub async fn inspect_interface(
    netns: &Path,
    ifname: &str,
    timeout: Duration,
) -> Result<Option<InterfaceState>, NetlinkError> {
    let conn = netns::connect_in(netns, timeout).await?;
    let index = bounded("get link", timeout, find_link(&conn.handle, ifname)).await?;
    let Some(index) = index else {
        return Ok(None);
    };
    let links: Vec<_> = bounded(
        "get link",
        timeout,
        conn.handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_collect::<Vec<_>>(),
    )
    .await?;
    let Some(link) = links.into_iter().next() else {
        return Ok(None);
    };
    let mac = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Mac),
        _ => None,
    });
    let up = link.header.flags.contains(LinkFlags::Up);
    let addrs: Vec<_> = bounded(
        "get addresses",
        timeout,
        conn.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect::<Vec<_>>(),
    )
    .await?;
    let ipv4 = addrs
        .iter()
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => {
                    Ipv4Net::new(*ip, m.header.prefix_len).ok()
                }
                _ => None,
            })
        })
        .collect();
    Ok(Some(InterfaceState { mac, ipv4, up }))
}
