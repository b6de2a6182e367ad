//! Namespaces and links, one netlink request per call, from a thread inside the namespace.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth};

use super::LAB_TIMEOUT;
use crate::KernelState;
use crate::netlink::{NetlinkError, find_link, neigh, netns};

/// Creates the named namespace `name` in `/run/netns` with its loopback up; its path. Fails
/// if the name exists.
pub fn add_netns(name: &str) -> Result<PathBuf, NetlinkError> {
    let path = netns::netns_path(name);
    let on_thread = {
        let path = path.clone();
        move || netns::create_on_this_thread(&path)
    };
    if let Err(e) = on_thread_blocking(name, on_thread) {
        // A thread that timed out may still finish the namespace: remove what it made.
        let _ = netns::delete(name);
        return Err(e);
    }
    let made = link_up(&path, "lo");
    if made.is_err() {
        let _ = netns::delete(name);
    }
    made.map(|()| path)
}

/// Deletes the named namespace `name` (and every link in it once nothing else holds it). An
/// absent namespace is not an error.
pub fn del_netns(name: &str) -> Result<(), NetlinkError> {
    netns::delete(name)
}

/// Creates bridge `name` in namespace `ns`, up.
pub fn add_bridge(ns: &Path, name: &str) -> Result<(), NetlinkError> {
    let name = name.to_owned();
    request_in(ns, "add bridge", move |h| async move {
        let add = h.link().add(LinkBridge::new(&name).up().build());
        add.execute().await.map_err(failed("add bridge"))
    })
}

/// Creates a veth pair: `name` in namespace `ns` and `peer_name` in namespace `peer_ns`, both
/// down.
pub fn add_veth(
    ns: &Path,
    name: &str,
    peer_ns: &Path,
    peer_name: &str,
) -> Result<(), NetlinkError> {
    let peer_fd = File::open(peer_ns).map_err(|source| NetlinkError::Netns {
        name: peer_ns.display().to_string(),
        source,
    })?;
    let (name, peer_name) = (name.to_owned(), peer_name.to_owned());
    request_in(ns, "add veth", move |h| async move {
        use std::os::fd::AsRawFd;
        let add = h.link().add(LinkVeth::new(&name, &peer_name).build());
        add.execute().await.map_err(failed("add veth"))?;
        // The peer moves to its namespace by the file descriptor opened above.
        let peer = index_of(&h, &peer_name).await?;
        let fd = peer_fd.as_raw_fd();
        let move_peer = LinkUnspec::new_with_index(peer).setns_by_fd(fd).build();
        let set = h.link().set(move_peer);
        set.execute().await.map_err(failed("move the veth's peer"))
    })
}

/// Enslaves link `link` of namespace `ns` to bridge `bridge` and brings it up.
pub fn set_master(ns: &Path, link: &str, bridge: &str) -> Result<(), NetlinkError> {
    let (link, bridge) = (link.to_owned(), bridge.to_owned());
    request_in(ns, "set master", move |h| async move {
        let index = index_of(&h, &link).await?;
        let master = index_of(&h, &bridge).await?;
        let set = LinkUnspec::new_with_index(index).controller(master).up();
        let req = h.link().set(set.build());
        req.execute().await.map_err(failed("set master"))
    })
}

/// Adds address `addr` to link `link` of namespace `ns`.
pub fn add_addr(ns: &Path, link: &str, addr: Ipv4Net) -> Result<(), NetlinkError> {
    let link = link.to_owned();
    request_in(ns, "add address", move |h| async move {
        let index = index_of(&h, &link).await?;
        let req = h
            .address()
            .add(index, IpAddr::V4(addr.addr()), addr.prefix_len());
        req.execute().await.map_err(failed("add address"))
    })
}

/// Brings link `link` of namespace `ns` up.
pub fn link_up(ns: &Path, link: &str) -> Result<(), NetlinkError> {
    let link = link.to_owned();
    request_in(ns, "link up", move |h| async move {
        let index = index_of(&h, &link).await?;
        let req = h.link().set(LinkUnspec::new_with_index(index).up().build());
        req.execute().await.map_err(failed("link up"))
    })
}

/// The IPv4 addresses of link `link` in namespace `ns`; empty when there is no such link.
pub fn ipv4_addrs(ns: &Path, link: &str) -> Result<Vec<Ipv4Net>, NetlinkError> {
    let link = link.to_owned();
    request_in(ns, "list addresses", move |h| async move {
        let Some(index) = find_index(&h, &link).await? else {
            return Ok(Vec::new());
        };
        let msgs: Vec<_> = h
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(failed("list addresses"))?;
        let mut out = Vec::new();
        for msg in msgs {
            for attr in &msg.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr
                    && let Ok(net) = Ipv4Net::new(*ip, msg.header.prefix_len)
                {
                    out.push(net);
                }
            }
        }
        Ok(out)
    })
}

/// The names of the links in namespace `ns`, sorted.
pub fn link_names(ns: &Path) -> Result<Vec<String>, NetlinkError> {
    request_in(ns, "list links", move |h| async move {
        let links: Vec<_> = h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("list links"))?;
        let mut names: Vec<String> = crate::netlink::link_names(&links).collect();
        names.sort();
        Ok(names)
    })
}

/// The permanent neighbours and `self` FDB entries of VXLAN device `link` in namespace `ns`,
/// as [`NetlinkDataplane::state`](crate::netlink::NetlinkDataplane::state) reads them;
/// empty when there is no such link.
pub fn vxlan_state(ns: &Path, link: &str) -> Result<KernelState, NetlinkError> {
    let link = link.to_owned();
    request_in(ns, "dump neighbours", move |h| async move {
        match find_index(&h, &link).await? {
            Some(index) => neigh::state(&h, index).await.map_err(neigh::dump_error),
            None => Ok(KernelState::default()),
        }
    })
}

/// The index of link `name`; [`NetlinkError::LinkNotFound`] when there is none.
async fn index_of(h: &rtnetlink::Handle, name: &str) -> Result<u32, NetlinkError> {
    find_index(h, name)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(name.to_owned()))
}

/// The index of link `name`, `None` when there is none.
async fn find_index(h: &rtnetlink::Handle, name: &str) -> Result<Option<u32>, NetlinkError> {
    find_link(h, name).await.map_err(failed("get link"))
}

/// Turns a failed request's error into a [`NetlinkError::Request`] saying `what` it was.
fn failed(what: &str) -> impl Fn(rtnetlink::Error) -> NetlinkError + '_ {
    move |source| NetlinkError::Request {
        what: what.to_owned(),
        source,
    }
}

/// Runs `f` with a netlink handle opened inside namespace `ns`, on a thread of its own with
/// a current-thread runtime, at most [`LAB_TIMEOUT`].
fn request_in<T, F, Fut>(ns: &Path, what: &str, f: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    let path = ns.to_owned();
    let done = on_thread_blocking(&ns.display().to_string(), move || {
        let file = File::open(&path)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let result = rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            let task = tokio::spawn(conn);
            // Shorter than the thread's own limit, so a slow request is reported by name.
            let patience = LAB_TIMEOUT.saturating_sub(Duration::from_secs(1));
            let result = tokio::time::timeout(patience, f(handle)).await;
            task.abort();
            Ok::<_, io::Error>(result)
        })?;
        Ok(result)
    })?;
    match done {
        Ok(result) => result,
        Err(_) => Err(NetlinkError::Timeout {
            what: format!("{what} in {}", ns.display()),
        }),
    }
}

/// Runs `f` on a fresh OS thread (which may change its own namespaces and then ends) and
/// waits for it, at most [`LAB_TIMEOUT`].
pub(super) fn on_thread_blocking<T, F>(name: &str, f: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let err = |source| NetlinkError::Netns {
        name: name.to_owned(),
        source,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("lab-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(err)?;
    match rx.recv_timeout(LAB_TIMEOUT) {
        Ok(result) => result.map_err(err),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(NetlinkError::Timeout {
            what: format!("namespace operation on {name}"),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(err(io::Error::other("namespace thread panicked")))
        }
    }
}

/// What the kernel says of one link (the parts the tests check).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkFacts {
    /// Its MTU.
    pub mtu: Option<u32>,
    /// The name of the bridge it is enslaved to.
    pub master: Option<String>,
    /// For a VXLAN device, its settings.
    pub vxlan: Option<VxlanFacts>,
}

/// A VXLAN device's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VxlanFacts {
    /// The VNI.
    pub id: Option<u32>,
    /// The UDP destination port.
    pub port: Option<u16>,
    /// Whether source MACs are learned.
    pub learning: Option<bool>,
    /// Whether the device answers ARP from its neighbour table.
    pub proxy: Option<bool>,
}

/// What the kernel says of link `link` in namespace `ns`; `None` when there is no such link.
pub fn link_facts(ns: &Path, link: &str) -> Result<Option<LinkFacts>, NetlinkError> {
    use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkInfo};
    let link = link.to_owned();
    request_in(ns, "get link", move |h| async move {
        let links: Vec<_> = h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("list links"))?;
        let name_of = |index: u32| {
            links
                .iter()
                .find(|l| l.header.index == index)
                .and_then(|l| {
                    l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                })
        };
        let Some(msg) = links.iter().find(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::IfName(n) if *n == link))
        }) else {
            return Ok(None);
        };
        let mut facts = LinkFacts::default();
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Mtu(mtu) => facts.mtu = Some(*mtu),
                LinkAttribute::Controller(index) => facts.master = name_of(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Data(InfoData::Vxlan(settings)) = info {
                            let mut vx = VxlanFacts::default();
                            for s in settings {
                                match s {
                                    InfoVxlan::Id(id) => vx.id = Some(*id),
                                    InfoVxlan::Port(port) => vx.port = Some(*port),
                                    InfoVxlan::Learning(on) => vx.learning = Some(*on),
                                    InfoVxlan::Proxy(on) => vx.proxy = Some(*on),
                                    _ => {}
                                }
                            }
                            facts.vxlan = Some(vx);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Some(facts))
    })
}
