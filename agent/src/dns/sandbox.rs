//! [`SandboxDns`]: one embedded DNS server per sandbox, inside the container's network
//! namespace at 127.0.0.11:53, started when the sandbox's first endpoint joins and stopped
//! when the sandbox is removed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::directory::Directory;
use super::resolv_conf::ResolvConf;
use super::server::{DnsConfig, DnsServer, DnsStats};
use crate::cnm::Sandbox;

/// The host's resolver configuration: upstreams when none are configured, and the search list
/// and options a sandbox's `resolv.conf` keeps.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// How long entering a namespace to bind may take.
const BIND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a sandbox's DNS server did not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxDnsError {
    /// Binding the server's address (port 53) inside the namespace failed.
    #[error("cannot listen at {ip}:53 in {netns}: {source}")]
    Bind {
        /// The address.
        ip: std::net::Ipv4Addr,
        /// The namespace.
        netns: PathBuf,
        /// Why.
        source: overlay::netlink::NetlinkError,
    },
    /// Writing the sandbox's `resolv.conf` failed.
    #[error("cannot write {path}: {source}")]
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The embedded DNS servers of this agent's sandboxes (root only: they live in the
/// containers' namespaces).
pub struct SandboxDns {
    directory: Directory,
    config: DnsConfig,
    host: ResolvConf,
    running: Mutex<HashMap<String, DnsServer>>,
    /// The counters of the servers stopped so far, so the totals never go down.
    retired: std::sync::Mutex<DnsStats>,
}

impl std::fmt::Debug for SandboxDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxDns")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SandboxDns {
    /// Servers answering from `directory` with `ttl`, forwarding to `upstreams`, or when that
    /// is empty to the nameservers of the host's `/etc/resolv.conf` (at most three, never
    /// 127.0.0.11); `None`: no forwarding at all. Upstreams are reached from the agent's own
    /// namespace.
    pub fn new(directory: Directory, ttl: u32, upstreams: Option<Vec<SocketAddr>>) -> Self {
        let host = match std::fs::read_to_string(HOST_RESOLV_CONF) {
            Ok(text) => ResolvConf::parse(&text),
            Err(e) => {
                tracing::warn!(path = HOST_RESOLV_CONF, error = %e, "cannot read the host's resolver configuration");
                ResolvConf::default()
            }
        };
        let upstreams = match upstreams {
            None => {
                tracing::info!("embedded DNS does not forward: unknown names get SERVFAIL");
                Vec::new()
            }
            Some(list) if list.is_empty() => host.upstreams(),
            Some(list) => list,
        };
        if upstreams.is_empty() {
            tracing::warn!(
                "no upstream DNS resolver: names the cluster does not know get SERVFAIL"
            );
        } else {
            tracing::info!(?upstreams, "embedded DNS forwards unknown names upstream");
        }
        let config = DnsConfig {
            ttl,
            upstreams,
            ndots_set: host.ndots_set(),
            ..DnsConfig::default()
        };
        Self {
            directory,
            config,
            host,
            running: Mutex::new(HashMap::new()),
            retired: std::sync::Mutex::new(DnsStats::default()),
        }
    }

    /// The upstream resolvers in use.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.config.upstreams
    }

    /// Starts the sandbox's server if it is not running, and writes its `resolv.conf` when
    /// the sandbox has one. Idempotent. Binding happens outside the lock, so a namespace that
    /// hangs delays only its own sandbox.
    pub async fn ensure(&self, sandbox: &Sandbox) -> Result<(), SandboxDnsError> {
        if self.running.lock().await.contains_key(&sandbox.name) {
            return Ok(());
        }
        let ip = super::listen_ip(sandbox.engine);
        let (udp, tcp) = bind_in(&sandbox.netns, ip).await?;
        let mut running = self.running.lock().await;
        if running.contains_key(&sandbox.name) {
            // Another call won the race; these sockets close here.
            return Ok(());
        }
        if let Some(path) = &sandbox.resolv_conf {
            write_atomic(path, &self.host.for_sandbox())
                .await
                .map_err(|source| SandboxDnsError::ResolvConf {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let names = Arc::new(self.directory.sandbox(&sandbox.name));
        let server = DnsServer::start(udp, tcp, names, self.config.clone());
        tracing::info!(sandbox = %sandbox.name, netns = %sandbox.netns.display(), %ip, "embedded DNS listening on port 53");
        running.insert(sandbox.name.clone(), server);
        Ok(())
    }

    /// Stops the sandbox's server, if any.
    pub async fn stop(&self, sandbox: &str) {
        let server = self.running.lock().await.remove(sandbox);
        if let Some(server) = server {
            self.retire(server.stats());
            server.shutdown().await;
            tracing::info!(sandbox, "embedded DNS stopped");
        }
    }

    /// Stops every server (the agent stops).
    pub async fn shutdown(&self) {
        let servers: Vec<DnsServer> = self.running.lock().await.drain().map(|(_, s)| s).collect();
        for server in servers {
            self.retire(server.stats());
            server.shutdown().await;
        }
    }

    /// Stops every server at once, without waiting (the agent is killed): their tasks are
    /// aborted and their sockets closed.
    pub fn abort(&self) {
        if let Ok(mut running) = self.running.try_lock() {
            running.clear();
        }
    }

    /// How many servers run, and the counters of every server this agent ran (running and
    /// stopped ones: they never go down).
    pub async fn stats(&self) -> (usize, DnsStats) {
        let running = self.running.lock().await;
        let mut total = *self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for server in running.values() {
            total += server.stats();
        }
        (running.len(), total)
    }

    fn retire(&self, stats: DnsStats) {
        *self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += stats;
    }
}

/// Binds UDP and TCP `ip`:53 inside the namespace at `netns`.
async fn bind_in(
    netns: &Path,
    ip: std::net::Ipv4Addr,
) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), SandboxDnsError> {
    let addr = SocketAddr::from((ip, 53));
    let (udp, tcp) = overlay::netlink::run_in_netns(netns, BIND_TIMEOUT, move || {
        let udp = std::net::UdpSocket::bind(addr)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(addr)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })
    .await
    .map_err(|source| SandboxDnsError::Bind {
        ip,
        netns: netns.to_owned(),
        source,
    })?;
    let err = |source: io::Error| SandboxDnsError::Bind {
        ip,
        netns: netns.to_owned(),
        source: overlay::netlink::NetlinkError::Netns {
            name: netns.display().to_string(),
            source,
        },
    };
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(err)?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(err)?;
    Ok((udp, tcp))
}

/// Writes `text` to `path` through a temporary file in the same directory (created if
/// missing) and a rename, so a reader never sees half a file. The temporary file does not
/// outlive a failure.
async fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("the path has no directory"))?;
    tokio::fs::create_dir_all(dir).await?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".netagent-tmp");
    let tmp = PathBuf::from(tmp);
    let written = match tokio::fs::write(&tmp, text).await {
        Ok(()) => tokio::fs::rename(&tmp, path).await,
        Err(e) => Err(e),
    };
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}
