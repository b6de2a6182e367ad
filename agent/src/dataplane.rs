//! The agent's overlay driver: one task that owns an [`overlay::PeerDb`] and, when the agent
//! runs as root, an [`overlay::netlink::NetlinkDataplane`].
//!
//! Inputs arrive over one channel ([`DataplaneHandle`]): the NetworkDB watch events of
//! [`PEER_TABLE`] (forwarded by the daemon's fan-out task) and the CNM's join and leave
//! commands. A join builds the network's namespace, bridge and VXLAN device on the first
//! local endpoint of the network (then the peer DB replays the network's peers), and attaches
//! the endpoint to its sandbox; the CNM publishes the endpoint's records only after the
//! driver answered, as libnetwork does. A leave detaches the endpoint, and removes the network's
//! namespace after its last local endpoint. After every input the changed networks are
//! planned and applied; a failed apply is retried every [`RETRY_INTERVAL`].
//!
//! Without root, or for a sandbox whose namespace path does not exist, the driver runs in
//! control-plane-only mode: joins succeed without touching the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use networkdb::{NetworkId, WatchEvent};
use overlay::netlink::{ContainerSide, NetlinkConfig, NetlinkDataplane, NetworkSpec};
use overlay::{Mac, PEER_TABLE, PeerDb, plan};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::stable_hash::fnv1a_32;

/// How often failed applies and pending attachments are retried.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The MTU of the VXLAN devices, bridges and veths (libnetwork's default for a plain network).
const MTU: u32 = 1450;

/// How long [`DataplaneHandle::shutdown`] waits for the networks to be removed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// Capacity of the driver's input channel.
const CHANNEL_CAPACITY: usize = 4096;

/// The table the driver watches.
pub const WATCHED_TABLE: &str = PEER_TABLE;

/// The prefix of the network namespaces of an agent named `node_name` with state directory
/// `state_dir`: `ov<8 hex digits>-`, a hash of both, so several agents on one machine never
/// share a prefix (a state directory belongs to one agent at a time), and a restarted agent
/// finds its previous run's namespaces. Network `vni` lives in `/run/netns/<prefix><vni>`.
pub fn netns_prefix(node_name: &str, state_dir: &Path) -> String {
    // A stable hash: the next run (a new build, perhaps) must find the same prefix.
    let hash = fnv1a_32(
        node_name
            .as_bytes()
            .iter()
            .chain(&[0])
            .chain(state_dir.as_os_str().as_encoded_bytes()),
    );
    format!("ov{hash:08x}-")
}

/// What the driver needs to attach one local endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// The network's ID (also its NetworkDB network).
    pub network_id: String,
    /// The network's VNI.
    pub vni: u32,
    /// The gateway address with the subnet's prefix length (put on the bridge).
    pub gateway: Ipv4Net,
    /// The endpoint's address with the subnet's prefix length.
    pub addr: Ipv4Net,
    /// The endpoint's MAC address.
    pub mac: Mac,
    /// Where the container end goes: configured in the sandbox's namespace, or handed over
    /// to a container engine.
    pub side: ContainerSide,
}

impl JoinRequest {
    /// The sandbox's namespace, when the driver configures the container end itself.
    fn netns(&self) -> Option<&Path> {
        match &self.side {
            ContainerSide::Namespace { netns, .. } => Some(netns),
            ContainerSide::HandOver => None,
        }
    }
}

/// An input of the driver.
enum Input {
    Watch(WatchEvent),
    Join {
        req: JoinRequest,
        restore: bool,
        reply: oneshot::Sender<Result<Option<String>, String>>,
    },
    Leave {
        network_id: String,
        ip: Ipv4Addr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// The driver's input side; cheap to clone.
#[derive(Clone)]
pub struct DataplaneHandle {
    tx: mpsc::Sender<Input>,
    prefix: String,
}

impl std::fmt::Debug for DataplaneHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataplaneHandle")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl DataplaneHandle {
    /// The namespace prefix of this driver's networks.
    pub fn netns_prefix(&self) -> &str {
        &self.prefix
    }

    /// Forwards a watch event (events of other tables are ignored by the peer DB).
    pub async fn watch_event(&self, ev: WatchEvent) {
        let _ = self.tx.send(Input::Watch(ev)).await;
    }

    /// Attaches a local endpoint; `Ok` once its dataplane is ready, with the name of the
    /// container end (`None` when the driver runs without a kernel, or the sandbox's
    /// namespace does not exist). With `restore`, a failure is logged and retried in the
    /// background instead of being returned.
    pub async fn join(&self, req: JoinRequest, restore: bool) -> Result<Option<String>, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Join {
                req,
                restore,
                reply,
            })
            .await
            .map_err(|_| "the overlay driver has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the overlay driver has stopped".to_owned())?
    }

    /// Detaches a local endpoint (and removes its network after the last one).
    pub async fn leave(&self, network_id: &str, ip: Ipv4Addr) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Input::Leave {
                network_id: network_id.to_owned(),
                ip,
                reply,
            })
            .await
            .is_err()
        {
            // Nothing left to detach from.
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// Removes every network the driver created and stops it (bounded wait).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Input::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, rx).await;
        }
    }
}

/// Starts the driver. `vtep` is the agent's data-path address; `kernel` asks for the netlink
/// dataplane (it is used only when the process runs as root). Returns the handle and the
/// driver's task.
pub async fn start(
    node_name: &str,
    state_dir: &Path,
    vtep: IpAddr,
    kernel: bool,
) -> (DataplaneHandle, JoinHandle<()>) {
    let prefix = netns_prefix(node_name, state_dir);
    let kernel = if !kernel {
        None
    } else if !crate::config::is_root() {
        tracing::info!("not running as root: overlay dataplane disabled (control plane only)");
        None
    } else {
        match NetlinkDataplane::cleanup_leftovers(&prefix) {
            Ok(names) if !names.is_empty() => {
                tracing::info!(?names, "removed the previous run's overlay namespaces");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove leftover overlay namespaces"),
        }
        let config = NetlinkConfig {
            netns_prefix: prefix.clone(),
            mtu: MTU,
            local_vtep: match vtep {
                IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
                _ => None,
            },
            ..NetlinkConfig::default()
        };
        match NetlinkDataplane::new(config).await {
            Ok(dp) => {
                tracing::info!(netns_prefix = %prefix, "overlay dataplane ready");
                Some(dp)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open netlink: overlay dataplane disabled");
                None
            }
        }
    };
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let driver = Driver {
        db: PeerDb::new(vtep),
        kernel,
        locals: BTreeMap::new(),
        failed: BTreeSet::new(),
        errors: 0,
    };
    let task = tokio::spawn(driver.run(rx));
    (DataplaneHandle { tx, prefix }, task)
}

/// A local endpoint the driver attached or has to attach.
struct Local {
    req: JoinRequest,
    attached: bool,
}

struct Driver {
    db: PeerDb,
    kernel: Option<NetlinkDataplane>,
    /// Local endpoints with a real sandbox namespace, by network and address.
    locals: BTreeMap<NetworkId, BTreeMap<Ipv4Addr, Local>>,
    /// Networks whose last apply failed.
    failed: BTreeSet<NetworkId>,
    /// Errors seen, for bounded logging.
    errors: u64,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut tick = tokio::time::interval(RETRY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(Input::Shutdown(done)) => {
                        self.remove_all().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(input) => self.handle(input).await,
                    None => {
                        self.remove_all().await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    self.attach_pending().await;
                    for nid in std::mem::take(&mut self.failed) {
                        self.db.mark_changed(&nid);
                    }
                }
            }
            self.sync().await;
        }
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Watch(ev) => {
                if ev.table.as_str() == PEER_TABLE {
                    self.db.apply(&ev);
                }
            }
            Input::Join {
                req,
                restore,
                reply,
            } => {
                let result = self.join(req, restore).await;
                let _ = reply.send(result);
            }
            Input::Leave {
                network_id,
                ip,
                reply,
            } => {
                let result = self.leave(&network_id, ip).await;
                let _ = reply.send(result);
            }
            Input::Shutdown(_) => {}
        }
    }

    async fn join(&mut self, req: JoinRequest, restore: bool) -> Result<Option<String>, String> {
        if self.kernel.is_none() {
            return Ok(None);
        }
        if let Some(netns) = req.netns()
            && !netns.exists()
        {
            tracing::warn!(
                netns = %netns.display(),
                endpoint = %req.addr,
                "sandbox namespace does not exist: endpoint is control plane only"
            );
            return Ok(None);
        }
        let handover = req.netns().is_none();
        let nid = NetworkId::from(req.network_id.as_str());
        let ip = req.addr.addr();
        self.locals.entry(nid.clone()).or_default().insert(
            ip,
            Local {
                req: req.clone(),
                attached: false,
            },
        );
        match self.attach(&nid, ip).await {
            Ok(ifname) => {
                tracing::info!(network = %nid, endpoint = %req.addr, interface = ?ifname, "endpoint attached");
                if handover {
                    // The engine owns the container end from now on: nothing to retry.
                    if let Some(local) = self.locals.get_mut(&nid).and_then(|l| l.get_mut(&ip)) {
                        local.attached = true;
                    }
                }
                Ok(ifname)
            }
            Err(e) if restore && !handover => {
                tracing::warn!(network = %nid, endpoint = %req.addr, error = %e, "restored endpoint not attached yet; retrying");
                Ok(None)
            }
            Err(e) => {
                self.forget(&nid, ip).await;
                Err(format!("overlay dataplane: {e}"))
            }
        }
    }

    /// Builds the network if needed and attaches the local endpoint `ip`; returns the name
    /// of the container end.
    async fn attach(&mut self, nid: &NetworkId, ip: Ipv4Addr) -> Result<Option<String>, String> {
        let Some(kernel) = self.kernel.as_mut() else {
            return Ok(None);
        };
        let Some(local) = self.locals.get(nid).and_then(|l| l.get(&ip)) else {
            return Ok(None);
        };
        let req = local.req.clone();
        if !kernel.has_network(nid) {
            let spec = NetworkSpec {
                vni: req.vni,
                gateway: req.gateway,
            };
            let path = kernel
                .ensure_network(nid, spec)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(network = %nid, netns = %path.display(), vni = req.vni, "overlay network created");
            self.db.network_ready(nid);
        }
        let ifname = kernel
            .attach_endpoint_to(nid, &req.side, req.addr, req.mac, MTU)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(local) = self.locals.get_mut(nid).and_then(|l| l.get_mut(&ip)) {
            local.attached = true;
        }
        Ok(Some(ifname))
    }

    /// Retries the attachment of restored endpoints that failed.
    async fn attach_pending(&mut self) {
        let pending: Vec<(NetworkId, Ipv4Addr)> = self
            .locals
            .iter()
            .flat_map(|(nid, l)| {
                l.iter()
                    .filter(|(_, local)| !local.attached)
                    .map(move |(ip, _)| (nid.clone(), *ip))
            })
            .collect();
        for (nid, ip) in pending {
            match self.attach(&nid, ip).await {
                Ok(_) => tracing::info!(network = %nid, endpoint = %ip, "endpoint attached"),
                Err(e) => self.log_error("endpoint attach retry failed", &nid, &e),
            }
        }
    }

    async fn leave(&mut self, network_id: &str, ip: Ipv4Addr) -> Result<(), String> {
        let nid = NetworkId::from(network_id);
        let Some(local) = self.locals.get(&nid).and_then(|l| l.get(&ip)) else {
            return Ok(());
        };
        if local.attached
            && let Some(kernel) = self.kernel.as_ref()
            && kernel.has_network(&nid)
        {
            kernel
                .detach_endpoint(&nid, ip)
                .await
                .map_err(|e| format!("overlay dataplane: {e}"))?;
        }
        self.forget(&nid, ip).await;
        tracing::info!(network = %nid, endpoint = %ip, "endpoint detached");
        Ok(())
    }

    /// Forgets a local endpoint; removes the network after its last one.
    async fn forget(&mut self, nid: &NetworkId, ip: Ipv4Addr) {
        let Some(locals) = self.locals.get_mut(nid) else {
            return;
        };
        locals.remove(&ip);
        if !locals.is_empty() {
            return;
        }
        self.locals.remove(nid);
        self.remove_network(nid).await;
    }

    async fn remove_network(&mut self, nid: &NetworkId) {
        self.failed.remove(nid);
        if let Some(kernel) = self.kernel.as_mut()
            && kernel.has_network(nid)
        {
            match kernel.remove_network(nid).await {
                Ok(()) => tracing::info!(network = %nid, "overlay network removed"),
                Err(e) => {
                    tracing::warn!(network = %nid, error = %e, "overlay network removal failed")
                }
            }
        }
        self.db.network_gone(nid);
    }

    async fn remove_all(&mut self) {
        let nids: Vec<NetworkId> = self.locals.keys().cloned().collect();
        self.locals.clear();
        for nid in nids {
            self.remove_network(&nid).await;
        }
    }

    /// Plans and applies every changed network.
    async fn sync(&mut self) {
        let Some(kernel) = self.kernel.as_ref() else {
            // Nothing is ever ready without a kernel; keep the queue empty anyway.
            while self.db.poll_changed().is_some() {}
            return;
        };
        let mut failed = Vec::new();
        while let Some(nid) = self.db.poll_changed() {
            let Some(wanted) = self.db.wanted(&nid) else {
                continue;
            };
            if !kernel.has_network(&nid) {
                continue;
            }
            let result = match kernel.state(&nid).await {
                Ok(programmed) => {
                    let ops = plan(wanted, &programmed);
                    if ops.is_empty() {
                        Ok(())
                    } else {
                        tracing::debug!(network = %nid, ops = ops.len(), "programming peers");
                        kernel.apply(&nid, &ops).await
                    }
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                failed.push((nid, e.to_string()));
            }
        }
        for (nid, e) in failed {
            self.log_error("peer programming failed; retrying", &nid, &e);
            self.failed.insert(nid);
        }
    }

    fn log_error(&mut self, what: &str, nid: &NetworkId, error: &str) {
        self.errors += 1;
        if self.errors <= 20 || self.errors.is_multiple_of(100) {
            tracing::warn!(network = %nid, error, errors = self.errors, "{what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_differ_per_agent_and_fit() {
        let a = netns_prefix("h1", Path::new("/tmp/a/h1"));
        let b = netns_prefix("h2", Path::new("/tmp/a/h2"));
        let c = netns_prefix("h1", Path::new("/tmp/b/h1"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, netns_prefix("h1", Path::new("/tmp/a/h1")));
        assert!(a.starts_with("ov") && a.ends_with('-') && a.len() == 11);
        // Pinned: a restarted agent must find the namespaces its previous run made.
        assert_eq!(
            netns_prefix("node1", Path::new("/var/lib/netagent")),
            "ovee16d8c3-"
        );
    }

    #[tokio::test]
    async fn without_kernel_joins_succeed() {
        let (dp, task) = start(
            "n",
            Path::new("/nonexistent"),
            "192.0.2.1".parse().unwrap(),
            false,
        )
        .await;
        let req = JoinRequest {
            network_id: "net".into(),
            vni: 4096,
            gateway: "198.18.100.1/24".parse().unwrap(),
            addr: "198.18.100.2/24".parse().unwrap(),
            mac: "02:42:c6:12:64:02".parse().unwrap(),
            side: ContainerSide::Namespace {
                netns: PathBuf::from("/run/netns/none"),
                ifname: "eth0".into(),
                default_route: true,
            },
        };
        assert_eq!(dp.join(req, false).await, Ok(None));
        assert_eq!(
            dp.leave("net", Ipv4Addr::new(198, 18, 100, 2)).await,
            Ok(())
        );
        dp.shutdown().await;
        task.await.unwrap();
    }
}
