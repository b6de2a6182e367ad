//! The daemon: one cluster node on real sockets, its control API (the Container Network
//! Model), its diagnostic and metrics server, and the fan-out of its watch events.
//!
//! `netagent run` is [`run`]: start, wait for SIGTERM or SIGINT, leave the cluster gracefully.
//! Tests and the demo use [`Daemon::start`] directly, several in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::get;
use cluster::NodeIdentity;
use cluster::shell::{Handle, ShellConfig, spawn_engine};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::NodeClient;
use crate::api::{self, ApiBindError, ApiListener};
use crate::cnm::{Cnm, CnmError, CnmSettings, StoreError, load_state};
use crate::config::{AgentConfig, ApiAddr, ConfigError};
use crate::dataplane::{self, DataplaneHandle};
use crate::diag::{self, DiagState};
use crate::dns::directory::Directory;
use crate::dns::sandbox::SandboxDns;
use crate::docker;
use crate::engine::AgentEngine;
use crate::metrics::Snapshot;
use crate::os_random;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration's files (keys, certificates) could not be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// What the socket is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The state directory could not be used.
    #[error("state_dir {path}: {source}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The node could not start.
    #[error(transparent)]
    Shell(#[from] cluster::shell::ShellError),
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signal(std::io::Error),
    /// No randomness for the node's seed.
    #[error(transparent)]
    Random(#[from] os_random::RandomError),
    /// The CNM state file (`state_dir/cnm.json`) could not be read or is corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The control API could not be bound.
    #[error(transparent)]
    Api(#[from] ApiBindError),
    /// The CNM could not be restored (the node stopped at once).
    #[error(transparent)]
    Cnm(#[from] CnmError),
}

/// How many port pairs [`bind_gossip`] tries when the system picks the port.
const GOSSIP_BIND_TRIES: usize = 16;

/// Binds gossip (UDP) and streams (TCP) on the same address. With port 0 the system picks
/// the UDP port, and another process may hold that port for TCP: then another pair is tried
/// (a few times), instead of failing a start on a race with an unrelated process.
async fn bind_gossip(
    addr: SocketAddr,
) -> Result<(UdpSocket, TcpListener, SocketAddr), DaemonError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let err = |what, addr, source| DaemonError::Bind { what, addr, source };
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| err("gossip (UDP)", addr, e))?;
        let bound = udp.local_addr().map_err(|e| err("gossip (UDP)", addr, e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries < GOSSIP_BIND_TRIES =>
            {
                tracing::debug!(
                    port = bound.port(),
                    "TCP port of the chosen UDP port taken: another pair"
                );
            }
            Err(e) => return Err(err("streams (TCP)", bound, e)),
        }
    }
}

/// How often the attachments of containers whose namespace is gone are withdrawn (the first
/// time right after start).
pub const ATTACHMENT_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A running agent.
pub struct Daemon {
    handle: Handle<AgentEngine>,
    identity: NodeIdentity,
    diag_addr: SocketAddr,
    api_addr: ApiAddr,
    cnm: Arc<Cnm>,
    tasks: Tasks,
    dataplane: DataplaneHandle,
    /// The overlay driver's task, stopped after the others (it removes its networks).
    dataplane_task: Tasks,
    /// The Docker plugin's socket, if served: removed when the agent stops, or every docker
    /// command would wait for it about 15 s.
    plugin_socket: Option<ApiAddr>,
    /// The Docker plugin, if served (its background tasks stop with the agent).
    docker_plugin: Option<Arc<docker::Plugin>>,
    /// Held for the daemon's life: one agent per state directory.
    _lock: std::fs::File,
}

/// The daemon's background tasks, aborted when dropped: a start that fails half-way stops
/// what it had started (a diagnostic server with no node behind it would hold its port).
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Daemon {
    /// Binds the node's UDP and TCP sockets, the control API and the diagnostic server,
    /// starts the node with a new incarnation (kept in the state directory, so a restarted
    /// agent is a new run to its peers), restores the CNM state (`state_dir/cnm.json`:
    /// endpoints re-attached and re-published) and joins the configured addresses.
    pub async fn start(config: &AgentConfig) -> Result<Self, DaemonError> {
        let security = config.security()?;
        warn_readable_secrets(&config.security);
        let lock = lock_state_dir(&config.state_dir)?;
        let incarnation = next_incarnation(&config.state_dir)?;
        let cnm_state = load_state(&config.state_dir)?;
        let (udp, tcp, bound) = bind_gossip(config.bind).await?;
        let api_listener = ApiListener::bind(&config.api).await?;
        let api_addr = api_listener.local_addr();
        // Until the daemon is up, a failure removes the socket file again.
        let socket_guard = SocketGuard(Some(api_addr.clone()));
        let mut advertise = config.advertise;
        if advertise.port() == 0 {
            advertise.set_port(bound.port());
        }
        let identity = NodeIdentity::new(config.name.clone(), advertise, incarnation);
        let mut shell = ShellConfig::new(identity.clone(), security);
        shell.node = config.node_config();
        shell.seed = os_random::seed()?;
        // The overlay driver: started before the node, fed by the core with the peer table's
        // changes of every network.
        let (dp, dp_task) =
            dataplane::start(&config.name, &config.state_dir, advertise.ip(), true).await;
        let mut dataplane_task = Tasks::default();
        dataplane_task.push(dp_task);
        let mut tasks = Tasks::default();
        let (peers_tx, mut peers_rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let dp = dp.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(event) = peers_rx.recv().await {
                    dp.watch_event(event).await;
                }
            }));
        }
        // Service discovery: fed by the core, in order, with every change of the endpoint
        // records of the networks it resolves on.
        let directory = Directory::new();
        let settings = nodecore::Settings::new(
            config.name.clone(),
            // The data-path address: the advertise address (no separate data-path address yet).
            advertise.ip(),
            config.join.is_empty(),
            shell.seed ^ 0x6e6f_6465_636f_7265,
        );
        let (state_dir, engine_directory) = (config.state_dir.clone(), directory.clone());
        let mut handle = spawn_engine(udp, tcp, shell, move |node| {
            #[allow(
                clippy::disallowed_methods,
                reason = "the shell is where the clock is read"
            )]
            let now = std::time::Instant::now();
            let stack = nodecore::Stack::new(node, now, settings, cnm_state);
            AgentEngine::new(stack, state_dir, engine_directory, peers_tx)
        })?;
        let diag_state = DiagState::new(handle.client(), advertise.ip(), bound.port());
        if let Some(mut events) = handle.take_events() {
            let diag_state = diag_state.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((_, event)) = events.recv().await {
                    diag_state.on_watch_event(&event);
                }
            }));
        }
        let dns = if !config.dns {
            None
        } else if crate::config::is_root() {
            Some(Arc::new(SandboxDns::new(
                directory.clone(),
                config.dns_ttl,
                config.dns_forward.then(|| config.dns_upstreams.clone()),
            )))
        } else {
            tracing::info!(
                "not running as root: no embedded DNS in sandboxes (`netagent dns lookup` still answers)"
            );
            None
        };
        let balancer_stats = Arc::new(crate::balancer::BalancerStats::default());
        if config.vip_balancer && crate::config::is_root() {
            let balancers = Arc::new(crate::balancer::SandboxBalancers::new());
            tasks.push(tokio::spawn(crate::balancer::run(
                balancers,
                directory.clone(),
                Arc::clone(&balancer_stats),
            )));
        } else if config.vip_balancer {
            tracing::info!("not running as root: service VIPs are not balanced in sandboxes");
        }
        let listener = TcpListener::bind(config.diag_addr)
            .await
            .map_err(|source| DaemonError::Bind {
                what: "diagnostic API",
                addr: config.diag_addr,
                source,
            })?;
        let diag_addr = listener.local_addr().map_err(|source| DaemonError::Bind {
            what: "diagnostic API",
            addr: config.diag_addr,
            source,
        })?;
        let metrics_client = handle.client();
        let (metrics_directory, metrics_dns) = (directory.clone(), dns.clone());
        let metrics_balancers = Arc::clone(&balancer_stats);
        let plugin_stats = Arc::new(docker::PluginStats::default());
        let metrics_plugin = Arc::clone(&plugin_stats);
        let attachment_stats = Arc::new(crate::cnm::AttachmentStats::default());
        let metrics_attachments = Arc::clone(&attachment_stats);
        let app = diag::router(diag_state).route(
            "/metrics",
            get(move || {
                let client = metrics_client.clone();
                let directory = metrics_directory.clone();
                let dns = metrics_dns.clone();
                let plugin = Arc::clone(&metrics_plugin);
                let attachments = Arc::clone(&metrics_attachments);
                let balancers = Arc::clone(&metrics_balancers);
                async move {
                    match Snapshot::take(&client).await {
                        Ok(mut s) => {
                            s.discovery = directory.stats();
                            s.docker = plugin.snapshot();
                            s.attachments = attachments.snapshot();
                            s.balancers = balancers.snapshot();
                            if let Some(dns) = dns {
                                s.dns = dns.stats().await;
                            }
                            s.render()
                        }
                        Err(_) => String::from("# node stopped\n"),
                    }
                }
            }),
        );
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        let settings = CnmSettings {
            node_name: config.name.clone(),
            db_name: identity.db_name(),
            advertise,
            dataplane: Some(dp.clone()),
            directory,
            dns,
            attachment_stats,
        };
        let cnm = Cnm::start(handle.client(), settings).await?;
        let api_router = api::router(Arc::clone(&cnm));
        let sweeper = Arc::clone(&cnm);
        tasks.push(tokio::spawn(async move {
            // Attachments of containers a CNI runtime removed while this agent could not
            // hear its DEL.
            let mut every = tokio::time::interval(ATTACHMENT_SWEEP_INTERVAL);
            loop {
                every.tick().await;
                sweeper.sweep_attachments().await;
            }
        }));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = api_listener.serve(api_router).await {
                tracing::error!(error = %e, "control API stopped");
            }
        }));
        let mut plugin_guard = SocketGuard(None);
        let mut docker_plugin = None;
        if let Some(name) = &config.docker_plugin {
            let plugin = docker::Plugin::new(
                name,
                Arc::clone(&cnm),
                &config.docker_api,
                &config.state_dir,
                plugin_stats,
            )?;
            let listener = docker::bind(&config.docker_plugin_dir, name).await?;
            let addr = listener.local_addr();
            tracing::info!(plugin = %name, socket = %addr, docker_api = %config.docker_api.display(), "serving the Docker plugin (network and IPAM driver)");
            plugin_guard = SocketGuard(Some(addr));
            plugin.start_reconciling();
            docker_plugin = Some(Arc::clone(&plugin));
            let router = docker::router(plugin);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = listener.serve(router).await {
                    tracing::error!(error = %e, "Docker plugin stopped");
                }
            }));
        }
        if !config.join.is_empty() {
            // The node keeps announcing to these every second while it has no member.
            let _ = handle.join(config.join.clone()).await;
        }
        tracing::info!(
            node = %identity.db_name(),
            gossip = %bound,
            advertise = %advertise,
            diag = %diag_addr,
            api = %api_addr,
            "netagent started"
        );
        socket_guard.disarm();
        let plugin_socket = plugin_guard.0.take();
        Ok(Self {
            handle,
            identity,
            diag_addr,
            api_addr,
            cnm,
            tasks,
            dataplane: dp,
            dataplane_task,
            plugin_socket,
            docker_plugin,
            _lock: lock,
        })
    }

    /// The node's identity (its NetworkDB name is `identity().db_name()`).
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// A client of the node.
    pub fn client(&self) -> NodeClient {
        self.handle.client()
    }

    /// Where the diagnostic API (and `/metrics`) listens.
    pub fn diag_addr(&self) -> SocketAddr {
        self.diag_addr
    }

    /// Where the control API listens (for TCP, with the port the system chose).
    pub fn api_addr(&self) -> &ApiAddr {
        &self.api_addr
    }

    /// The Container Network Model the control API serves.
    pub fn cnm(&self) -> &Arc<Cnm> {
        &self.cnm
    }

    /// Leaves the cluster gracefully, then stops every server and removes the control
    /// API's socket file.
    pub async fn shutdown(self) {
        // The servers stop first: a request arriving during the leave's grace period would
        // change local state the departing node no longer publishes.
        drop(self.tasks);
        api::remove_socket(&self.api_addr);
        if let Some(addr) = &self.plugin_socket {
            api::remove_socket(addr);
        }
        if let Some(plugin) = &self.docker_plugin {
            plugin.shutdown();
        }
        if let Some(dns) = &self.cnm.settings().dns {
            dns.shutdown().await;
        }
        // Empty address blocks go to another node first, and get a moment to spread: the
        // others drop a leaver's entries.
        let given = self
            .handle
            .with_engine(|e, now| {
                let (core, db) = e.stack().split();
                core.hand_back(db, now)
            })
            .await
            .unwrap_or(0);
        if given > 0 {
            tracing::info!(blocks = given, "address blocks handed back before leaving");
            tokio::time::sleep(HAND_BACK_GRACE).await;
        }
        self.handle.leave().await;
        // Then the overlay networks this agent created go.
        self.dataplane.shutdown().await;
        drop(self.dataplane_task);
    }

    /// Stops at once without a goodbye (the others see a failure). The control API's socket
    /// file is removed too, so an agent started in the same process can bind it while the
    /// aborted server is still being dropped; the CNM state file is left as it was.
    pub fn kill(self) {
        self.handle.kill();
        drop(self.tasks);
        if let Some(dns) = &self.cnm.settings().dns {
            dns.abort();
        }
        // As a crash: the overlay namespaces stay; the next start removes them.
        drop(self.dataplane_task);
        api::remove_socket(&self.api_addr);
        if let Some(addr) = &self.plugin_socket {
            api::remove_socket(addr);
        }
        if let Some(plugin) = &self.docker_plugin {
            plugin.shutdown();
        }
    }
}

/// How long a leaving agent lets the claims of the blocks it handed back spread before it
/// leaves (five gossip rounds; a backlog goes on the stream path at once).
const HAND_BACK_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Removes the control API's socket file when dropped, unless disarmed.
struct SocketGuard(Option<ApiAddr>);

impl SocketGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Some(addr) = &self.0 {
            api::remove_socket(addr);
        }
    }
}

/// `netagent run`: starts, waits for SIGTERM or SIGINT, leaves gracefully.
pub async fn run(config: AgentConfig) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before starting: a SIGTERM that arrives during start-up waits in the stream
    // and makes the agent leave right after, instead of killing it by the default action.
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let daemon = Daemon::start(&config).await?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("leaving the cluster");
    daemon.shutdown().await;
    Ok(())
}

/// Warns when the gossip key file or the TLS private key can be read by other users (as
/// ssh does for its keys; a warning, since group-readable keys are a deliberate setup in
/// some deployments).
fn warn_readable_secrets(security: &crate::config::SecurityConfig) {
    use std::os::unix::fs::PermissionsExt;
    let crate::config::SecurityConfig::Secure {
        key_file, tls_key, ..
    } = security
    else {
        return;
    };
    for (field, path) in [("key_file", key_file), ("tls_key", tls_key)] {
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    field,
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "secret readable by other users; chmod 600 it"
                );
            }
        }
    }
}

/// Takes the exclusive lock of `state_dir/lock`, so two agents never share one state
/// directory (both would write `cnm.json` and the incarnation counter). The lock goes with
/// the process.
fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File, DaemonError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| DaemonError::State { path, source }
    };
    std::fs::create_dir_all(state_dir).map_err(err(state_dir))?;
    let path = state_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DaemonError::State {
            path,
            source: std::io::Error::other("in use by another netagent"),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(err(&path)(e)),
    }
}

/// Reads, increments and writes back the run counter in `state_dir/incarnation`.
fn next_incarnation(state_dir: &Path) -> Result<u64, DaemonError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| DaemonError::State { path, source }
    };
    std::fs::create_dir_all(state_dir).map_err(err(state_dir))?;
    let path = state_dir.join("incarnation");
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                // Starting again from 1 could reuse an incarnation peers still remember; the
                // seconds since the epoch are above any counter of a sane past.
                let floor = seconds_since_epoch();
                tracing::warn!(
                    path = %path.display(),
                    incarnation = floor,
                    "unreadable incarnation file: using the clock as the next incarnation"
                );
                floor
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(err(&path)(e)),
    };
    let next = previous.saturating_add(1);
    let tmp = state_dir.join("incarnation.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
        f.write_all(format!("{next}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(err(&path))?;
    Ok(next)
}

#[allow(
    clippy::disallowed_methods,
    reason = "the daemon is a shell: it may read the clock"
)]
fn seconds_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
