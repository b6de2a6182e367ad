//! The netlink executor (feature `netlink`): per-network namespaces with a bridge and a VXLAN
//! device, veth endpoints, and batched neighbour/FDB programming over `rtnetlink`.
//!
//! This is the only module that imports `rtnetlink`. It mirrors the sync
//! [`Dataplane`](crate::Dataplane) trait with `async fn`s: [`NetlinkDataplane::apply`] and
//! [`NetlinkDataplane::state`], driven the same way as the [`FakeKernel`](crate::FakeKernel):
//! `plan(wanted, &dp.state(nid).await?)`, then `dp.apply(nid, &ops).await`. Unlike the trait,
//! `apply` does not stop at the first failure: every op is sent, and the failures are
//! reported together ([`NetlinkError::Ops`]); re-planning from `state` repairs the device.
//!
//! # Layout per network (libnetwork's overlay driver builds the same)
//!
//! A named namespace `<netns_prefix><vni>` in `/run/netns` holding:
//! * `br0`: a bridge with the network's gateway address, MTU [`NetlinkConfig::mtu`], up;
//! * `vxlan0`: the VXLAN device (VNI, [`NetlinkConfig::vxlan_port`], learning off, ARP proxy
//!   on, l2miss/l3miss off, source address [`NetlinkConfig::local_vtep`]), enslaved to `br0`,
//!   up. It is created in the underlay namespace and then moved, so its UDP socket stays in
//!   the underlay;
//! * per local endpoint, `ve<ip in hex>` on `br0`, whose peer is the container's `eth0`.
//!
//! # Requires
//!
//! Root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN` for `setns`/`mount`) and a tokio runtime with the
//! time driver and IO enabled. Namespaces are entered only on short-lived dedicated threads,
//! never on a runtime worker.

mod inspect;
pub mod lab;
mod neigh;
mod netns;

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use networkdb::NetworkId;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder};

use crate::{KernelState, Mac, NeighOp};
use netns::NsConn;

pub use inspect::{InterfaceState, inspect_interface};
pub use netns::{NETNS_DIR, netns_path, run_in_netns};

/// The bridge inside each network namespace (libnetwork renames its bridge to `br0`).
pub const BRIDGE_NAME: &str = "br0";
/// The VXLAN device inside each network namespace (libnetwork's `vxlan0`).
pub const VXLAN_NAME: &str = "vxlan0";

/// How a [`NetlinkDataplane`] builds and programs networks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetlinkConfig {
    /// Prefix of the network namespaces' names: a network with VNI `v` lives in
    /// `/run/netns/<netns_prefix><v>`; [`NetlinkDataplane::cleanup_leftovers`] uses it too.
    /// Two dataplanes on one machine (tests) need different prefixes. Default `"ov-"`;
    /// non-empty, at most 32 bytes, no `/`.
    pub netns_prefix: String,
    /// VXLAN UDP destination port. Default 4789 (IANA; libnetwork's default data-path port).
    pub vxlan_port: u16,
    /// MTU of the bridge, VXLAN device and veths. Default 1450 (libnetwork `maxMTU`:
    /// 1500 - 50 for a plain network). At least 68.
    pub mtu: u32,
    /// The underlay namespace in which VXLAN devices are created (their UDP sockets stay
    /// there): `None` (default) is the process's own namespace; tests pass a namespace path.
    pub underlay_netns: Option<PathBuf>,
    /// The host's data-path address, the VXLAN devices' source (`local`). Default `None`: the
    /// kernel picks the source by route, as libnetwork (which sets no `local`) does.
    pub local_vtep: Option<Ipv4Addr>,
    /// Netlink requests in flight at once during [`NetlinkDataplane::apply`]. Bounds the
    /// acknowledgements queued in the socket's receive buffer. Default 256; 1..=4096.
    pub batch_window: usize,
    /// Longest wait for one netlink request, one window of a batch, or one namespace
    /// operation. Default 10 s (libnetwork uses a 3 s socket timeout per request).
    pub request_timeout: Duration,
}

impl Default for NetlinkConfig {
    fn default() -> Self {
        Self {
            netns_prefix: "ov-".into(),
            vxlan_port: 4789,
            mtu: 1450,
            underlay_netns: None,
            local_vtep: None,
            batch_window: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl NetlinkConfig {
    /// Checks the constraints documented on each field.
    pub fn validate(&self) -> Result<(), NetlinkError> {
        let bad = |reason: &str| Err(NetlinkError::Config(reason.to_owned()));
        if self.netns_prefix.is_empty()
            || self.netns_prefix.len() > 32
            || self.netns_prefix.contains('/')
        {
            return bad("netns_prefix must be 1..=32 bytes without '/'");
        }
        if self.mtu < 68 {
            return bad("mtu must be at least 68");
        }
        if !(1..=4096).contains(&self.batch_window) {
            return bad("batch_window must be in 1..=4096");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be positive");
        }
        Ok(())
    }
}

/// What a network's namespace is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The gateway address and the subnet's prefix length, put on `br0` (`198.18.100.1/24`).
    pub gateway: Ipv4Net,
}

/// One op of a batch that the kernel refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpFailure {
    /// The op's position in the batch.
    pub index: usize,
    /// The op.
    pub op: NeighOp,
    /// The kernel's error (errno text) or the timeout.
    pub reason: String,
}

/// Why a [`NetlinkDataplane`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// A [`NetlinkConfig`] or [`NetworkSpec`] field is out of range. Nothing was changed.
    #[error("invalid config: {0}")]
    Config(String),
    /// The dataplane has no namespace for the network. Nothing was changed.
    #[error("network {0} has no namespace")]
    NoNetwork(NetworkId),
    /// Creating, entering or deleting a namespace failed. A network being created was rolled
    /// back (its namespace deleted).
    #[error("namespace {name}: {source}")]
    Netns {
        /// The namespace's name or path.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed. A network being created or an endpoint being attached was
    /// rolled back; other calls may have left partial changes.
    #[error("{what}: {source}")]
    Request {
        /// What was being done.
        what: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// The kernel did not answer in [`NetlinkConfig::request_timeout`]. As for
    /// [`Request`](Self::Request).
    #[error("timed out: {what}")]
    Timeout {
        /// What was being done.
        what: String,
    },
    /// A link that should exist does not. As for [`Request`](Self::Request).
    #[error("link {0} not found")]
    LinkNotFound(String),
    /// Some ops of an [`apply`](NetlinkDataplane::apply) batch failed; all the other ops
    /// were applied. Re-planning from [`state`](NetlinkDataplane::state) repairs the device.
    #[error("{} of the batch's ops failed, first: {:?}", failures.len(), failures.first())]
    Ops {
        /// The failed ops, in batch order.
        failures: Vec<OpFailure>,
    },
}

/// The netlink executor: one namespace per overlay network, built lazily, programmed in
/// batches.
///
/// Networks are keyed by [`NetworkId`]; the namespace's name derives from the VNI. Dropping
/// the dataplane closes its netlink sockets but leaves the namespaces in place: call
/// [`remove_network`](Self::remove_network) for each, or [`cleanup_leftovers`](
/// Self::cleanup_leftovers) at the next start.
pub struct NetlinkDataplane {
    config: NetlinkConfig,
    underlay: NsConn,
    networks: BTreeMap<NetworkId, Network>,
}

/// A built network.
struct Network {
    name: String,
    path: PathBuf,
    conn: NsConn,
    bridge: u32,
    vxlan: u32,
    gateway: Ipv4Net,
    vni: u32,
}

impl NetlinkDataplane {
    /// Validates `config` and opens a netlink connection in the underlay namespace. Must run
    /// inside a tokio runtime.
    pub async fn new(config: NetlinkConfig) -> Result<Self, NetlinkError> {
        config.validate()?;
        let underlay = match &config.underlay_netns {
            None => netns::connect_here("underlay")?,
            Some(path) => netns::connect_in(path, config.request_timeout).await?,
        };
        Ok(Self {
            config,
            underlay,
            networks: BTreeMap::new(),
        })
    }

    /// Deletes every namespace in `/run/netns` whose name starts with `prefix` (a previous
    /// run's networks; their VXLAN devices and veths go with them) and returns their names.
    /// Call at start, before creating networks with that prefix. `prefix` must be non-empty.
    pub fn cleanup_leftovers(prefix: &str) -> Result<Vec<String>, NetlinkError> {
        if prefix.is_empty() || prefix.contains('/') {
            return Err(NetlinkError::Config(
                "cleanup prefix must be non-empty without '/'".into(),
            ));
        }
        let names = netns::list(prefix)?;
        for name in &names {
            tracing::info!(netns = %name, "removing leftover namespace");
            netns::delete(name)?;
        }
        Ok(names)
    }

    /// The configuration.
    pub fn config(&self) -> &NetlinkConfig {
        &self.config
    }

    /// The namespace name a network with `vni` gets.
    pub fn netns_name(&self, vni: u32) -> String {
        format!("{}{vni}", self.config.netns_prefix)
    }

    /// The path of `network`'s namespace, if it is built.
    pub fn network_netns(&self, network: &NetworkId) -> Option<&Path> {
        self.networks.get(network).map(|n| n.path.as_path())
    }

    /// Builds `network`'s namespace, bridge and VXLAN device unless already built (then
    /// `spec` is ignored). A namespace of the same name left over from an earlier life is
    /// deleted first; so is a VXLAN device of the same temporary name in the underlay. On
    /// failure everything made so far is removed. Returns the namespace's path.
    pub async fn ensure_network(
        &mut self,
        network: &NetworkId,
        spec: NetworkSpec,
    ) -> Result<PathBuf, NetlinkError> {
        if let Some(net) = self.networks.get(network) {
            return Ok(net.path.clone());
        }
        if spec.vni == 0 || spec.vni >= 1 << 24 {
            return Err(NetlinkError::Config(format!(
                "VNI {} out of range",
                spec.vni
            )));
        }
        let name = self.netns_name(spec.vni);
        netns::delete(&name)?;
        let tmp = format!("vx-{:06x}", spec.vni);
        match self.build_network(&name, &tmp, spec).await {
            Ok(net) => {
                let path = net.path.clone();
                self.networks.insert(network.clone(), net);
                Ok(path)
            }
            Err(e) => {
                tracing::warn!(netns = %name, error = %e, "network setup failed; rolling back");
                if let Ok(Some(idx)) = self.link_index(&self.underlay, &tmp).await {
                    let _ = self
                        .run(
                            "delete vxlan",
                            self.underlay.handle.link().del(idx).execute(),
                        )
                        .await;
                }
                let _ = netns::delete(&name);
                Err(e)
            }
        }
    }

    /// Whether `network`'s namespace is built.
    pub fn has_network(&self, network: &NetworkId) -> bool {
        self.networks.contains_key(network)
    }

    /// Applies `ops` to `network`'s `vxlan0` as one pipelined batch (up to
    /// [`NetlinkConfig::batch_window`] requests in flight). Adds use replace semantics;
    /// a delete of an absent entry succeeds; an FDB delete is followed by a best-effort
    /// `NTF_MASTER` purge of the bridge's learned entry. A failed op does not stop the batch.
    pub async fn apply(&self, network: &NetworkId, ops: &[NeighOp]) -> Result<(), NetlinkError> {
        let net = self.network(network)?;
        let failures = neigh::apply(
            &net.conn.handle,
            net.vxlan,
            ops,
            self.config.batch_window,
            self.config.request_timeout,
        )
        .await;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NetlinkError::Ops { failures })
        }
    }

    /// The permanent neighbour and `self` FDB entries of `network`'s `vxlan0` (learned
    /// entries and the bridge's own entries are left out).
    pub async fn state(&self, network: &NetworkId) -> Result<KernelState, NetlinkError> {
        let net = self.network(network)?;
        match tokio::time::timeout(
            self.config.request_timeout,
            neigh::state(&net.conn.handle, net.vxlan),
        )
        .await
        {
            Ok(result) => result.map_err(neigh::dump_error),
            Err(_) => Err(NetlinkError::Timeout {
                what: "dump neighbours".into(),
            }),
        }
    }

    /// Deletes `network`'s namespace and everything in it (veths, bridge, VXLAN device). The
    /// network is forgotten even if a step fails. An unknown network is not an error.
    pub async fn remove_network(&mut self, network: &NetworkId) -> Result<(), NetlinkError> {
        let Some(net) = self.networks.remove(network) else {
            return Ok(());
        };
        // Delete the VXLAN device explicitly: the namespace may outlive our unmount for a
        // moment, and the VNI/port must be free for a re-created network right away.
        let deleted = self
            .run(
                "delete vxlan",
                net.conn.handle.link().del(net.vxlan).execute(),
            )
            .await;
        let name = net.name.clone();
        drop(net); // closes the socket that holds the namespace
        netns::delete(&name)?;
        deleted
    }

    /// Connects a container to `network`: a veth pair whose host end `ve<ip hex>` joins
    /// `br0` and whose other end becomes `ifname` in the namespace at `container_netns`, with
    /// `addr`, `mac` and `mtu`, up, and a default route via the network's gateway. On failure
    /// the pair is deleted.
    pub async fn attach_endpoint(
        &self,
        network: &NetworkId,
        container_netns: &Path,
        ifname: &str,
        addr: Ipv4Net,
        mac: Mac,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let side = ContainerSide::Namespace {
            netns: container_netns.to_path_buf(),
            ifname: ifname.to_owned(),
            default_route: true,
        };
        self.attach_endpoint_to(network, &side, addr, mac, mtu)
            .await
            .map(drop)
    }

    /// Connects a container to `network`: a veth pair whose host end `ve<ip hex>` joins
    /// `br0` and whose other end goes where `side` says. Returns the name of the container
    /// end. On failure the pair is deleted.
    pub async fn attach_endpoint_to(
        &self,
        network: &NetworkId,
        side: &ContainerSide,
        addr: Ipv4Net,
        mac: Mac,
        mtu: u32,
    ) -> Result<String, NetlinkError> {
        let net = self.network(network)?;
        let (host, peer) = veth_names(addr.addr());
        let result = match side {
            ContainerSide::Namespace {
                netns,
                ifname,
                default_route,
            } => {
                let target = Target {
                    netns,
                    ifname,
                    default_route: *default_route,
                };
                self.attach(net, &host, &peer, &target, addr, mac, mtu)
                    .await
                    .map(|()| ifname.clone())
            }
            ContainerSide::HandOver => {
                let peer = handover_name(net.vni, addr.addr());
                self.attach_handover(net, &host, &peer, mac, mtu)
                    .await
                    .map(|()| peer)
            }
        };
        if result.is_err()
            && let Ok(Some(idx)) = self.link_index(&net.conn, &host).await
        {
            let _ = self
                .run("delete veth", net.conn.handle.link().del(idx).execute())
                .await;
        }
        result
    }

    /// Disconnects the endpoint with address `ip` from `network` (deletes its veth pair).
    /// An absent endpoint is not an error.
    pub async fn detach_endpoint(
        &self,
        network: &NetworkId,
        ip: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let net = self.network(network)?;
        let (host, _) = veth_names(ip);
        match self.link_index(&net.conn, &host).await? {
            Some(idx) => {
                self.run("delete veth", net.conn.handle.link().del(idx).execute())
                    .await
            }
            None => Ok(()),
        }
    }

    fn network(&self, network: &NetworkId) -> Result<&Network, NetlinkError> {
        self.networks
            .get(network)
            .ok_or_else(|| NetlinkError::NoNetwork(network.clone()))
    }

    async fn build_network(
        &self,
        name: &str,
        tmp: &str,
        spec: NetworkSpec,
    ) -> Result<Network, NetlinkError> {
        let cfg = &self.config;
        let path = netns::create(name, cfg.request_timeout).await?;
        let conn = netns::connect_in(&path, cfg.request_timeout).await?;
        let links = conn.handle.link();

        let lo = self.need_index(&conn, "lo").await?;
        self.set_up(&conn, lo, "lo up").await?;

        let br = LinkBridge::new(BRIDGE_NAME).mtu(cfg.mtu).up().build();
        self.run("create bridge", links.add(br).execute()).await?;
        let bridge = self.need_index(&conn, BRIDGE_NAME).await?;
        let gw = spec.gateway;
        self.run(
            "bridge address",
            conn.handle
                .address()
                .add(bridge, IpAddr::V4(gw.addr()), gw.prefix_len())
                .execute(),
        )
        .await?;

        // The VXLAN device: created in the underlay (its UDP socket lives there), then moved.
        if let Some(stale) = self.link_index(&self.underlay, tmp).await? {
            tracing::info!(link = tmp, "deleting stale vxlan device in the underlay");
            self.run(
                "delete stale vxlan",
                self.underlay.handle.link().del(stale).execute(),
            )
            .await?;
        }
        let mut vx = LinkVxlan::new(tmp, spec.vni)
            .port(cfg.vxlan_port)
            .learning(false)
            .proxy(true)
            .l2miss(false)
            .l3miss(false);
        if let Some(local) = cfg.local_vtep {
            vx = vx.local(local);
        }
        let vx = vx.mtu(cfg.mtu).build();
        self.run(
            "create vxlan",
            self.underlay.handle.link().add(vx).execute(),
        )
        .await?;
        let tmp_idx = self.need_index(&self.underlay, tmp).await?;
        let ns_file = open_ns(&path)?;
        let mv = LinkUnspec::new_with_index(tmp_idx)
            .setns_by_fd(ns_file.as_raw_fd())
            .build();
        self.run("move vxlan", self.underlay.handle.link().set(mv).execute())
            .await?;
        drop(ns_file);

        let vxlan = self.need_index(&conn, tmp).await?;
        let rename = LinkUnspec::new_with_index(vxlan)
            .name(VXLAN_NAME)
            .controller(bridge)
            .build();
        self.run("rename vxlan", links.set(rename).execute())
            .await?;
        let up = LinkUnspec::new_with_index(vxlan).up().build();
        self.run("vxlan up", links.set(up).execute()).await?;

        Ok(Network {
            name: name.to_owned(),
            path,
            conn,
            bridge,
            vxlan,
            gateway: gw,
            vni: spec.vni,
        })
    }

    /// Creates the veth pair and puts its host end on the bridge; returns the peer's index.
    async fn create_pair(
        &self,
        net: &Network,
        host: &str,
        peer: &str,
        mtu: u32,
    ) -> Result<u32, NetlinkError> {
        let links = net.conn.handle.link();
        self.run(
            "create veth",
            links
                .add(LinkVeth::new(host, peer).mtu(mtu).build())
                .execute(),
        )
        .await?;
        let host_idx = self.need_index(&net.conn, host).await?;
        let enslave = LinkUnspec::new_with_index(host_idx)
            .controller(net.bridge)
            .up()
            .build();
        self.run("veth to bridge", links.set(enslave).execute())
            .await?;
        self.need_index(&net.conn, peer).await
    }

    /// The container end, named `peer`, with `mac` and `mtu`, moved to the underlay
    /// namespace (where the engine runs) and left down and without address: the engine moves
    /// it into the container and configures it. A stale link of that name there (a failed
    /// earlier attempt) is deleted first.
    async fn attach_handover(
        &self,
        net: &Network,
        host: &str,
        peer: &str,
        mac: Mac,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        if let Some(stale) = self.link_index(&self.underlay, peer).await? {
            self.run(
                "delete stale veth",
                self.underlay.handle.link().del(stale).execute(),
            )
            .await?;
        }
        let peer_idx = self.create_pair(net, host, peer, mtu).await?;
        let underlay_file = match &self.config.underlay_netns {
            Some(path) => open_ns(path)?,
            None => open_ns(Path::new("/proc/self/ns/net"))?,
        };
        let setup = LinkUnspec::new_with_index(peer_idx)
            .address(mac.octets().to_vec())
            .setns_by_fd(underlay_file.as_raw_fd())
            .build();
        self.run(
            "hand veth over",
            net.conn.handle.link().set(setup).execute(),
        )
        .await
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "private helper of attach_endpoint_to"
    )]
    async fn attach(
        &self,
        net: &Network,
        host: &str,
        peer: &str,
        target: &Target<'_>,
        addr: Ipv4Net,
        mac: Mac,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let links = net.conn.handle.link();
        let peer_idx = self.create_pair(net, host, peer, mtu).await?;
        let container_netns = target.netns;
        let container_file = open_ns(container_netns)?;
        let mv = LinkUnspec::new_with_index(peer_idx)
            .setns_by_fd(container_file.as_raw_fd())
            .build();
        self.run("move veth", links.set(mv).execute()).await?;
        drop(container_file);

        let c = netns::connect_in(container_netns, self.config.request_timeout).await?;
        // Loopback up, as a container runtime leaves it: the embedded DNS server listens on
        // 127.0.0.11 there.
        let lo = self.need_index(&c, "lo").await?;
        self.set_up(&c, lo, "container lo up").await?;
        let idx = self.need_index(&c, peer).await?;
        let ifname = match target.ifname.strip_suffix('*') {
            Some(prefix) => self.first_free_name(&c, prefix).await?,
            None => target.ifname.to_owned(),
        };
        let setup = LinkUnspec::new_with_index(idx)
            .name(ifname)
            .address(mac.octets().to_vec())
            .mtu(mtu)
            .build();
        self.run("configure eth0", c.handle.link().set(setup).execute())
            .await?;
        self.run(
            "eth0 address",
            c.handle
                .address()
                .add(idx, IpAddr::V4(addr.addr()), addr.prefix_len())
                .execute(),
        )
        .await?;
        self.set_up(&c, idx, "eth0 up").await?;
        if !target.default_route {
            return Ok(());
        }
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(net.gateway.addr())
            .build();
        self.run("default route", c.handle.route().add(route).execute())
            .await
    }

    /// `prefix` and the lowest number no link of `conn`'s namespace is named with.
    async fn first_free_name(&self, conn: &NsConn, prefix: &str) -> Result<String, NetlinkError> {
        let links: Vec<_> = self
            .run(
                "list links",
                conn.handle.link().get().execute().try_collect::<Vec<_>>(),
            )
            .await?;
        let taken: std::collections::BTreeSet<String> = link_names(&links).collect();
        Ok((0..)
            .map(|k| format!("{prefix}{k}"))
            .find(|n| !taken.contains(n))
            .unwrap_or_else(|| format!("{prefix}0")))
    }

    /// Brings link `index` of `conn`'s namespace up.
    async fn set_up(&self, conn: &NsConn, index: u32, what: &str) -> Result<(), NetlinkError> {
        let up = LinkUnspec::new_with_index(index).up().build();
        self.run(what, conn.handle.link().set(up).execute()).await
    }

    /// Runs one request with the configured timeout.
    async fn run<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, rtnetlink::Error>>,
    ) -> Result<T, NetlinkError> {
        bounded(what, self.config.request_timeout, fut).await
    }

    /// The index of link `name` in `conn`'s namespace, `None` if there is none.
    async fn link_index(&self, conn: &NsConn, name: &str) -> Result<Option<u32>, NetlinkError> {
        self.run("get link", find_link(&conn.handle, name)).await
    }

    async fn need_index(&self, conn: &NsConn, name: &str) -> Result<u32, NetlinkError> {
        self.link_index(conn, name)
            .await?
            .ok_or_else(|| NetlinkError::LinkNotFound(name.to_owned()))
    }
}

/// Runs one request, bounded by `timeout`.
pub(crate) async fn bounded<T>(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, rtnetlink::Error>>,
) -> Result<T, NetlinkError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(NetlinkError::Request {
            what: what.to_owned(),
            source,
        }),
        Err(_) => Err(NetlinkError::Timeout {
            what: what.to_owned(),
        }),
    }
}

/// The names of `links`.
pub(crate) fn link_names(
    links: &[rtnetlink::packet_route::link::LinkMessage],
) -> impl Iterator<Item = String> + '_ {
    links
        .iter()
        .flat_map(|l| &l.attributes)
        .filter_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
}

/// The index of link `name` in `handle`'s namespace, `None` when there is none (`ENODEV`).
async fn find_link(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code() == -(nix::errno::Errno::ENODEV as i32) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Where the container end of an endpoint's veth pair goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerSide {
    /// Into the namespace at `netns`, configured there: named `ifname`, with the address,
    /// MAC and MTU, up, and a default route via the network's gateway if `default_route`.
    Namespace {
        /// The container's network namespace.
        netns: PathBuf,
        /// The interface's name in it; `PREFIX*`: `PREFIX` and the lowest number free there
        /// (`eth*`, as a container engine numbers interfaces).
        ifname: String,
        /// Whether to add a default route via the gateway.
        default_route: bool,
    },
    /// Into the underlay namespace with its MAC and MTU, for a container engine to move into
    /// the container and configure (Docker's remote driver `Join` answers its name).
    HandOver,
}

/// A [`ContainerSide::Namespace`], borrowed.
struct Target<'a> {
    netns: &'a Path,
    ifname: &'a str,
    default_route: bool,
}

/// The name of a container end handed over to an engine: unique in the underlay namespace
/// per network and address (`dk`, the VNI's low 12 bits, the address), 13 bytes.
fn handover_name(vni: u32, ip: Ipv4Addr) -> String {
    format!("dk{:03x}{:08x}", vni & 0xfff, u32::from(ip))
}

/// Host-side and (temporary) container-side veth names for an endpoint; 10 bytes, unique
/// per IP within a network.
fn veth_names(ip: Ipv4Addr) -> (String, String) {
    let hex = u32::from(ip);
    (format!("ve{hex:08x}"), format!("vc{hex:08x}"))
}

fn open_ns(path: &Path) -> Result<File, NetlinkError> {
    File::open(path).map_err(|source| NetlinkError::Netns {
        name: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_fields_are_refused() {
        NetlinkConfig::default().validate().unwrap();
        for bad in [
            NetlinkConfig {
                netns_prefix: String::new(),
                ..Default::default()
            },
            NetlinkConfig {
                netns_prefix: "a/b".into(),
                ..Default::default()
            },
            NetlinkConfig {
                batch_window: 0,
                ..Default::default()
            },
            NetlinkConfig {
                mtu: 10,
                ..Default::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(NetlinkError::Config(_))));
        }
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let (a, b) = veth_names(Ipv4Addr::new(198, 18, 100, 10));
        assert_eq!(a, "vec612640a");
        assert_eq!(b, "vcc612640a");
        assert!(a.len() <= 15 && b.len() <= 15);
    }

    #[test]
    fn empty_cleanup_prefix_is_refused() {
        assert!(matches!(
            NetlinkDataplane::cleanup_leftovers(""),
            Err(NetlinkError::Config(_))
        ));
    }
}
