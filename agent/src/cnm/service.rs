//! [`Cnm`]: the control API's operations, run by the node core inside the node's task, with
//! the I/O they need around them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use overlay::netlink::ContainerSide;
use std::sync::Arc;

use discovery::{Family, Lookup};
use networkdb::NodeName;
use nodecore::{Answer, CoreError, Started};
use tokio::sync::Mutex;

use super::error::CnmError;
use crate::NodeClient;
use crate::dataplane::DataplaneHandle;
use crate::dns::directory::Directory;
use crate::dns::sandbox::SandboxDns;
use crate::dns::server::Names;
use crate::engine::AgentEngine;
use nodecore::{
    DnsAnswer, DnsQuery, Endpoint, EndpointCreate, Info, JoinRequest, NetworkCreate, NetworkSpec,
    SandboxCreate, SandboxInfo,
};

/// Who this agent is, and the I/O around the core.
#[derive(Clone, Debug)]
pub struct CnmSettings {
    /// The configured node name.
    pub node_name: String,
    /// The NetworkDB name of this run (`name@incarnation`).
    pub db_name: NodeName,
    /// The address peers reach the node at.
    pub advertise: SocketAddr,
    /// The overlay driver the join and leave hooks drive; `None`: no dataplane at all.
    pub dataplane: Option<DataplaneHandle>,
    /// Service discovery, fed by the core.
    pub directory: Directory,
    /// The embedded DNS servers of the sandboxes; `None`: not run (not root, or disabled).
    pub dns: Option<Arc<SandboxDns>>,
    /// The counters of the attachment operations (shared with `/metrics`).
    pub attachment_stats: Arc<super::AttachmentStats>,
}

/// How long the agent waits for an engine to create a sandbox's namespace before it gives
/// up starting the sandbox's DNS server.
const ENGINE_NETNS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often it tries meanwhile.
const ENGINE_NETNS_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The CNM of one agent. Operations run one at a time (the dataplane of a join must be ready
/// before the core publishes, with nothing in between).
#[derive(Debug)]
pub struct Cnm {
    client: NodeClient,
    settings: CnmSettings,
    ops: Mutex<()>,
    /// Serializes the composite attach and detach operations ([`super::attach`]), which
    /// take `ops` step by step.
    pub(super) attachments: Mutex<()>,
}

impl Cnm {
    /// The CNM of a running node: restores the dataplane and DNS servers of the joined
    /// endpoints of the loaded state (a failure is retried by the driver in the background).
    /// The core publishes their records again at its first reconciliation.
    pub async fn start(client: NodeClient, settings: CnmSettings) -> Result<Arc<Self>, CnmError> {
        let cnm = Arc::new(Self {
            client,
            settings,
            ops: Mutex::new(()),
            attachments: Mutex::new(()),
        });
        let plans = cnm
            .client
            .with_engine(|e, _| e.stack().core().joined_plans())
            .await?;
        for plan in plans {
            if let Some(dp) = &cnm.settings.dataplane
                && let Err(e) = dp.join(restore_request(&plan), true).await
            {
                tracing::warn!(network = %plan.network_id, error = %e, "cannot restore an endpoint's dataplane");
            }
            cnm.start_dns(&plan.sandbox).await;
        }
        Ok(cnm)
    }

    /// The settings this CNM runs with.
    pub fn settings(&self) -> &CnmSettings {
        &self.settings
    }

    /// The counters of the attachment operations.
    pub fn attachment_stats(&self) -> &super::AttachmentStats {
        &self.settings.attachment_stats
    }

    /// Runs `f` on the core and its NetworkDB; the answer comes once what `f` changed is
    /// saved (an agent that cannot save stops: see [`AgentEngine`]).
    pub(super) async fn core<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut nodecore::NodeCore, &mut networkdb::NetworkDb, std::time::Instant) -> R
        + Send
        + 'static,
    ) -> Result<R, CnmError> {
        Ok(self
            .client
            .with_engine(move |e: &mut AgentEngine, now| {
                let (core, db) = e.stack().split();
                f(core, db, now)
            })
            .await?)
    }

    /// Runs an operation that may wait for the cluster, registering for its answer in the
    /// same step. The operations lock (`op`) is released before the wait, so one slow owner
    /// does not hold up every other operation of the agent.
    async fn started<T: Send + 'static>(
        &self,
        op: tokio::sync::MutexGuard<'_, ()>,
        f: impl FnOnce(
            &mut nodecore::NodeCore,
            &mut networkdb::NetworkDb,
            std::time::Instant,
        ) -> Result<Started<T>, CoreError>
        + Send
        + 'static,
        unwrap: impl FnOnce(Answer) -> Option<Result<T, CoreError>>,
    ) -> Result<T, CnmError> {
        let started = self
            .client
            .with_engine(move |e: &mut AgentEngine, now| {
                let (core, db) = e.stack().split();
                f(core, db, now).map(|s| match s {
                    Started::Done(v) => Ok(v),
                    Started::Waiting(id) => Err(e.await_answer(id)),
                })
            })
            .await?;
        drop(op);
        match started? {
            Ok(v) => Ok(v),
            Err(rx) => {
                let answer = rx.await.map_err(|_| CnmError::Stopped)?;
                Ok(unwrap(answer).ok_or(CnmError::Stopped)??)
            }
        }
    }

    // ---- networks ----

    /// The catalogue, sorted by name.
    pub async fn networks(&self) -> Result<Vec<NetworkSpec>, CnmError> {
        self.core(|core, db, _| core.networks(db)).await
    }

    /// A network of the catalogue by name, ID or unique ID prefix.
    pub async fn network(&self, reference: &str) -> Result<NetworkSpec, CnmError> {
        let reference = reference.to_owned();
        Ok(self
            .core(move |core, db, _| core.network(db, &reference))
            .await??)
    }

    /// Creates a network in the catalogue.
    pub async fn create_network(&self, req: NetworkCreate) -> Result<NetworkSpec, CnmError> {
        let op = self.ops.lock().await;
        let spec = self
            .started(
                op,
                move |core, db, now| core.create_network(db, now, req),
                |a| match a {
                    Answer::Network(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        tracing::info!(network = %spec.name, id = %spec.id, subnet = %spec.subnet, vni = spec.vni, "network created");
        Ok(spec)
    }

    /// The network named exactly `name` (or with exactly that ID; never an ID prefix), or
    /// `None`.
    pub async fn network_named(&self, name: &str) -> Result<Option<NetworkSpec>, CnmError> {
        match self.network(name).await {
            Ok(spec) if spec.name == name || spec.id == name => Ok(Some(spec)),
            Ok(_) | Err(CnmError::Core(CoreError::Invalid(_))) => Ok(None),
            Err(CnmError::Core(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The network named `name`, created with `subnet` when the catalogue has none (a
    /// container engine's first container on it). The subnet of an existing network is
    /// the caller's to compare. A create refused as a conflict (another host created the
    /// name meanwhile, or the subnet overlaps another network) looks the name up once more
    /// and otherwise answers the refusal.
    pub async fn network_or_create(
        &self,
        name: &str,
        subnet: &str,
    ) -> Result<NetworkSpec, CnmError> {
        if let Some(spec) = self.network_named(name).await? {
            return Ok(spec);
        }
        let created = self
            .create_network(NetworkCreate {
                name: name.to_owned(),
                subnet: subnet.to_owned(),
                ..NetworkCreate::default()
            })
            .await;
        match created {
            Ok(spec) => Ok(spec),
            Err(CnmError::Core(e)) if e.is_conflict() => {
                let e = CnmError::Core(e);
                self.network_named(name).await?.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a network from the catalogue (refused while any node has endpoints on it).
    pub async fn remove_network(&self, reference: &str) -> Result<NetworkSpec, CnmError> {
        let _op = self.ops.lock().await;
        let reference = reference.to_owned();
        let spec = self
            .core(move |core, db, now| core.remove_network(db, now, &reference))
            .await??;
        tracing::info!(network = %spec.name, id = %spec.id, "network removed");
        Ok(spec)
    }

    // ---- endpoints ----

    /// This agent's endpoints, on one network (by name or ID) or on all.
    pub async fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, CnmError> {
        let network = network.map(str::to_owned);
        Ok(self
            .core(move |core, db, _| core.endpoints(db, network.as_deref()))
            .await??)
    }

    /// One endpoint by network (name or ID) and name.
    pub async fn endpoint(&self, network: &str, name: &str) -> Result<Endpoint, CnmError> {
        let (network, name) = (network.to_owned(), name.to_owned());
        Ok(self
            .core(move |core, _, _| core.endpoint(&network, &name).cloned())
            .await??)
    }

    /// Creates an endpoint with an address from the cluster-wide allocator (or the one
    /// given, claimed through the same rules).
    pub async fn create_endpoint(&self, req: EndpointCreate) -> Result<Endpoint, CnmError> {
        let op = self.ops.lock().await;
        let endpoint = self
            .started(
                op,
                move |core, db, now| core.create_endpoint(db, now, req),
                |a| match a {
                    Answer::Endpoint(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        tracing::info!(endpoint = %endpoint.name, network = %endpoint.network, ip = %endpoint.ip, "endpoint created");
        Ok(endpoint)
    }

    /// Removes an endpoint that is not joined.
    pub async fn remove_endpoint(&self, network: &str, name: &str) -> Result<Endpoint, CnmError> {
        let _op = self.ops.lock().await;
        let (network, name) = (network.to_owned(), name.to_owned());
        let endpoint = self
            .core(move |core, _, now| core.remove_endpoint(now, &network, &name))
            .await??;
        tracing::info!(endpoint = %endpoint.name, network = %endpoint.network, "endpoint removed");
        Ok(endpoint)
    }

    /// Joins an endpoint to a sandbox, the interface named as the core chooses: the
    /// dataplane first, then the records.
    pub async fn join(
        &self,
        network: &str,
        name: &str,
        sandbox: &str,
    ) -> Result<Endpoint, CnmError> {
        let req = JoinRequest {
            sandbox: sandbox.to_owned(),
            ifname: None,
        };
        Ok(self.join_sandbox(network, name, req).await?.0)
    }

    /// Joins an endpoint to a sandbox as `req` asks: the dataplane first, then the records.
    /// Also returns the name of the container end the agent handed over, for a sandbox whose
    /// engine moves its interfaces itself (Docker: see [`nodecore::Engine`]).
    pub async fn join_sandbox(
        &self,
        network: &str,
        name: &str,
        req: JoinRequest,
    ) -> Result<(Endpoint, Option<String>), CnmError> {
        let _op = self.ops.lock().await;
        let (network, name) = (network.to_owned(), name.to_owned());
        let (n, e, r) = (network.clone(), name.clone(), req.clone());
        let plan = self
            .core(move |core, _, _| core.join_plan(&n, &e, &r))
            .await??;
        let mut handed_over = None;
        if let Some(dp) = &self.settings.dataplane {
            handed_over = dp
                .join(join_request(&plan), false)
                .await
                .map_err(|e| CnmError::from(CoreError::Conflict(e)))?;
        }
        if plan.sandbox.engine.is_some() && handed_over.is_none() {
            return Err(CnmError::from(CoreError::Unavailable(
                "this agent runs no overlay dataplane (it needs root and netlink): it cannot \
                 give the container an interface"
                    .into(),
            )));
        }
        let joined = self
            .core(move |core, db, _| core.join(db, &network, &name, &req))
            .await
            .and_then(|r| r.map_err(CnmError::from));
        let joined = match joined {
            Ok(joined) => joined,
            Err(e) => {
                // The records were not published: the interface goes too.
                if let Some(dp) = &self.settings.dataplane
                    && let Err(leave) = dp.leave(&plan.network_id, plan.addr.addr()).await
                {
                    tracing::warn!(network = %plan.network_id, error = %leave, "cannot take the interface of a failed join down");
                }
                return Err(e);
            }
        };
        self.start_dns(&plan.sandbox).await;
        tracing::info!(endpoint = %joined.name, network = %joined.network, sandbox = %plan.sandbox.name, "endpoint joined");
        Ok((joined, handed_over))
    }

    /// Leaves an endpoint's sandbox: the dataplane first, then the records are withdrawn.
    pub async fn leave(&self, network: &str, name: &str) -> Result<Endpoint, CnmError> {
        let _op = self.ops.lock().await;
        let (network, name) = (network.to_owned(), name.to_owned());
        let (n, e) = (network.clone(), name.clone());
        let endpoint = self
            .core(move |core, _, _| core.check_leave(&n, &e).cloned())
            .await??;
        if let Some(dp) = &self.settings.dataplane {
            dp.leave(&endpoint.network_id, endpoint.ip)
                .await
                .map_err(|e| CnmError::from(CoreError::Conflict(e)))?;
        }
        let left = self
            .core(move |core, db, _| core.leave(db, &network, &name))
            .await??;
        tracing::info!(endpoint = %left.name, network = %left.network, "endpoint left");
        Ok(left)
    }

    /// Disables (drains) or enables again a service task.
    pub async fn set_service_enabled(
        &self,
        network: &str,
        name: &str,
        enabled: bool,
    ) -> Result<Endpoint, CnmError> {
        let _op = self.ops.lock().await;
        let (network, name) = (network.to_owned(), name.to_owned());
        Ok(self
            .core(move |core, db, _| core.set_service_enabled(db, &network, &name, enabled))
            .await??)
    }

    /// Reserves an address on a network (by name or ID) for a container engine's IPAM
    /// driver: `ip`, or any free one.
    pub async fn reserve_address(
        &self,
        network: &str,
        ip: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, CnmError> {
        let op = self.ops.lock().await;
        let network = network.to_owned();
        self.started(
            op,
            move |core, db, now| core.reserve_address(db, now, &network, ip),
            |a| match a {
                Answer::Address(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Gives a reserved address back; returns whether it was reserved.
    pub async fn release_address(&self, network_id: &str, ip: Ipv4Addr) -> Result<bool, CnmError> {
        let _op = self.ops.lock().await;
        let network_id = network_id.to_owned();
        Ok(self
            .core(move |core, _, now| core.release_address(now, &network_id, ip))
            .await??)
    }

    /// Renames an endpoint and replaces its container-level aliases (a joined one publishes
    /// them).
    pub async fn set_names(
        &self,
        network: &str,
        name: &str,
        new_name: &str,
        aliases: Vec<String>,
    ) -> Result<Endpoint, CnmError> {
        let _op = self.ops.lock().await;
        let (network, name, new_name) = (network.to_owned(), name.to_owned(), new_name.to_owned());
        Ok(self
            .core(move |core, db, _| core.set_names(db, &network, &name, &new_name, aliases))
            .await??)
    }

    // ---- sandboxes ----

    /// This agent's sandboxes, sorted by name.
    pub async fn sandboxes(&self) -> Result<Vec<SandboxInfo>, CnmError> {
        self.core(|core, _, _| core.sandboxes()).await
    }

    /// One sandbox.
    pub async fn sandbox(&self, name: &str) -> Result<SandboxInfo, CnmError> {
        let name = name.to_owned();
        Ok(self.core(move |core, _, _| core.sandbox(&name)).await??)
    }

    /// Creates a sandbox. Its namespace need not exist yet.
    pub async fn create_sandbox(&self, req: SandboxCreate) -> Result<SandboxInfo, CnmError> {
        let _op = self.ops.lock().await;
        let info = self
            .core(move |core, _, _| core.create_sandbox(req))
            .await??;
        if let Some(path) = &info.resolv_conf
            && self.settings.dns.is_none()
        {
            tracing::warn!(
                sandbox = %info.name,
                path = %path.display(),
                "this agent runs no embedded DNS (not root, or dns = false): the sandbox's resolv.conf will not be written"
            );
        }
        Ok(info)
    }

    /// Removes a sandbox no endpoint is joined to.
    pub async fn remove_sandbox(&self, name: &str) -> Result<SandboxInfo, CnmError> {
        let _op = self.ops.lock().await;
        let n = name.to_owned();
        let info = self
            .core(move |core, _, _| core.remove_sandbox(&n))
            .await??;
        if let Some(dns) = &self.settings.dns {
            dns.stop(name).await;
        }
        Ok(info)
    }

    // ---- service discovery ----

    /// What a container on `query.network` (or in `query.sandbox`) gets for `query.name`.
    pub async fn dns_lookup(&self, query: DnsQuery) -> Result<DnsAnswer, CnmError> {
        let ip = query.name.parse::<IpAddr>().ok();
        let record_type = match query.record_type.as_deref().map(str::to_ascii_uppercase) {
            None if ip.is_some() => "PTR".to_owned(),
            None => "A".to_owned(),
            Some(t) if ["A", "AAAA", "PTR"].contains(&t.as_str()) => t,
            Some(t) => {
                return Err(CnmError::from(CoreError::Invalid(format!(
                    "invalid type {t:?}: A, AAAA or PTR"
                ))));
            }
        };
        let (network, sandbox) = (query.network.clone(), query.sandbox.clone());
        let (ids, names) = self
            .core(move |core, _, _| {
                let ids = match (&network, &sandbox) {
                    (Some(network), None) => {
                        let spec = core.local_network(network)?;
                        if core.state().endpoints_on(&spec.id).next().is_none() {
                            return Err(CoreError::NotFound(format!(
                                "this agent has no endpoint on network {}: no container here resolves on it",
                                spec.name
                            )));
                        }
                        vec![spec.id.clone()]
                    }
                    (None, Some(sandbox)) => core.sandbox_networks(sandbox)?,
                    _ => {
                        return Err(CoreError::Invalid(
                            "give exactly one of network and sandbox".into(),
                        ));
                    }
                };
                let names: Vec<String> = ids
                    .iter()
                    .map(|id| {
                        core.state()
                            .networks
                            .get(id)
                            .map_or_else(|| id.clone(), |k| k.spec.name.clone())
                    })
                    .collect();
                Ok((ids, names))
            })
            .await??;
        let resolver = self.settings.directory.networks(ids);
        let (outcome, answers) = if record_type == "PTR" {
            let Some(ip) = ip else {
                return Err(CnmError::from(CoreError::Invalid(format!(
                    "invalid address {:?} for a PTR lookup",
                    query.name
                ))));
            };
            match resolver.reverse(ip) {
                Some(name) => ("answer", vec![format!("{name}.")]),
                None => ("forward", Vec::new()),
            }
        } else {
            let family = if record_type == "A" {
                Family::V4
            } else {
                Family::V6
            };
            match resolver.resolve(&query.name, family) {
                Lookup::Addrs(addrs) => ("answer", addrs.iter().map(ToString::to_string).collect()),
                Lookup::NoData => ("nodata", Vec::new()),
                Lookup::NotFound => ("forward", Vec::new()),
            }
        };
        Ok(DnsAnswer {
            name: query.name,
            record_type,
            networks: names,
            outcome: outcome.to_owned(),
            answers,
        })
    }

    // ---- ipam ----

    /// Who owns a network's address blocks, in this node's replica.
    pub async fn pool(&self, network: &str) -> Result<nodecore::PoolInfo, CnmError> {
        let network = network.to_owned();
        Ok(self
            .core(move |core, db, _| core.pool(db, &network))
            .await??)
    }

    /// Takes over the space of a node gone for good (refused while it is alive).
    pub async fn reclaim(
        &self,
        req: nodecore::ReclaimRequest,
    ) -> Result<nodecore::ReclaimAnswer, CnmError> {
        let _op = self.ops.lock().await;
        let node = req.node.clone();
        let blocks = self
            .core(move |core, db, now| core.reclaim(db, now, &node))
            .await??;
        tracing::warn!(node = %req.node, blocks, "address space of a node gone for good reclaimed");
        Ok(nodecore::ReclaimAnswer {
            node: req.node,
            blocks,
        })
    }

    // ---- info ----

    /// The node's name, address and member count, and the CNM's counts.
    pub async fn info(&self) -> Result<Info, CnmError> {
        let (members, networks, endpoints, sandboxes) = self
            .core(|core, db, _| {
                (
                    db.cluster_peers().len(),
                    core.networks(db).len(),
                    core.state().endpoints.len(),
                    core.state().sandboxes.len(),
                )
            })
            .await?;
        Ok(Info {
            name: self.settings.node_name.clone(),
            node: self.settings.db_name.to_string(),
            advertise: self.settings.advertise,
            members,
            networks,
            endpoints,
            sandboxes,
        })
    }

    /// Starts the sandbox's embedded DNS server (when this agent runs them). A failure is
    /// logged: the endpoint is joined and reachable; only its names are not served there.
    /// An engine's sandbox may not exist yet when its first endpoint joins (dockerd creates
    /// the container's namespace after the plugin's `Join`): its server starts in the
    /// background once the namespace can be entered, within [`ENGINE_NETNS_WAIT`].
    async fn start_dns(&self, sandbox: &nodecore::Sandbox) {
        let Some(dns) = &self.settings.dns else {
            return;
        };
        // A CNI runtime made the namespace before its ADD: the server starts before the
        // answer, so the container's first lookup finds it.
        if sandbox.engine != Some(nodecore::Engine::Docker) {
            if let Err(e) = dns.ensure(sandbox).await {
                tracing::warn!(sandbox = %sandbox.name, error = %e, "embedded DNS not started");
            }
            return;
        }
        let (dns, sandbox, client) = (Arc::clone(dns), sandbox.clone(), self.client.clone());
        // Whether the sandbox is still there (a container that stopped before its namespace
        // came must not get a server that would keep the namespace alive).
        let exists = move |client: NodeClient, name: String| async move {
            client
                .with_engine(move |e: &mut AgentEngine, _| e.stack().core().sandbox(&name).is_ok())
                .await
                .unwrap_or(false)
        };
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + ENGINE_NETNS_WAIT;
            loop {
                if !exists(client.clone(), sandbox.name.clone()).await {
                    return;
                }
                match dns.ensure(&sandbox).await {
                    Ok(()) => {
                        if !exists(client.clone(), sandbox.name.clone()).await {
                            dns.stop(&sandbox.name).await;
                        }
                        return;
                    }
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::warn!(sandbox = %sandbox.name, error = %e, "embedded DNS not started");
                        return;
                    }
                    Err(_) => tokio::time::sleep(ENGINE_NETNS_POLL).await,
                }
            }
        });
    }
}

/// What the overlay driver does for a join: configure the container end in the sandbox, or
/// hand it over to the sandbox's engine.
fn join_request(plan: &nodecore::JoinPlan) -> crate::dataplane::JoinRequest {
    let side = match plan.sandbox.engine {
        Some(nodecore::Engine::Docker) => ContainerSide::HandOver,
        None | Some(nodecore::Engine::Cni) => ContainerSide::Namespace {
            netns: plan.sandbox.netns.clone(),
            ifname: plan.sandbox_ifname().to_owned(),
            default_route: plan.default_route(),
        },
    };
    request(plan, side)
}

/// What the overlay driver does for a joined endpoint after the agent restarted (its
/// previous run's networks, and the veths in them, are gone): configure the container end in
/// the sandbox again. For a Docker sandbox, as dockerd did: the first free `eth<k>`, no
/// default route (Docker joins without a gateway).
fn restore_request(plan: &nodecore::JoinPlan) -> crate::dataplane::JoinRequest {
    let side = match plan.sandbox.engine {
        Some(nodecore::Engine::Docker) => ContainerSide::Namespace {
            netns: plan.sandbox.netns.clone(),
            ifname: "eth*".to_owned(),
            default_route: false,
        },
        None | Some(nodecore::Engine::Cni) => return join_request(plan),
    };
    request(plan, side)
}

fn request(plan: &nodecore::JoinPlan, side: ContainerSide) -> crate::dataplane::JoinRequest {
    crate::dataplane::JoinRequest {
        network_id: plan.network_id.clone(),
        vni: plan.vni,
        gateway: plan.gateway,
        addr: plan.addr,
        mac: plan.mac,
        side,
    }
}
