//! The tokio shell: one task owns an [`Engine`] (a [`Node`], or a core built around one); it
//! reads the UDP socket and the stream inbox, fires timers, runs commands, then drains every
//! output (sealing datagrams with the keyring). Sockets are bound by the caller, so tests
//! bind port 0.
//!
//! Channels are bounded; when one is full the item is counted and dropped rather than
//! blocking the loop.

mod stream;
mod tls;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::stream::{Inbound, Outbound, StreamCounters};
pub use self::tls::{Tls, TlsError, TlsIdentity};
use crate::crypto::{Key, Keyring, KeyringError};
use crate::{Engine, MemberEvent, Node, NodeConfig, NodeConfigError, NodeIdentity, Output};
use networkdb::{WatchEvent, WatchId};

/// How a shell secures its traffic.
#[derive(Debug)]
pub enum Security {
    /// Datagrams sealed with the keyring, streams over mutual TLS.
    Secure {
        /// The gossip keyring.
        keyring: Keyring,
        /// The TLS material.
        tls: TlsIdentity,
    },
    /// Plaintext datagrams and plain TCP. Only for explicit `--insecure` use.
    Insecure,
}

/// Everything a shell needs besides its sockets.
#[derive(Debug)]
pub struct ShellConfig {
    /// The node's identity (its address must be the one peers reach the sockets at).
    pub identity: NodeIdentity,
    /// The node core's configuration.
    pub node: NodeConfig,
    /// Seed for the node's generator.
    pub seed: u64,
    /// Keys and TLS, or insecure.
    pub security: Security,
    /// The largest stream frame accepted. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// Capacity of the watch-event channel; events beyond it are counted and dropped.
    pub watch_capacity: usize,
    /// After a graceful leave, how long the node keeps running so the goodbye spreads.
    pub leave_grace: Duration,
}

impl ShellConfig {
    /// Defaults for everything but identity and security.
    pub fn new(identity: NodeIdentity, security: Security) -> Self {
        Self {
            seed: identity.incarnation ^ 0x9e37_79b9,
            identity,
            node: NodeConfig::default(),
            security,
            max_frame_bytes: 64 << 20,
            watch_capacity: 65_536,
            leave_grace: Duration::from_millis(500),
        }
    }
}

/// Why a shell could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    /// Bad node configuration.
    #[error(transparent)]
    Config(#[from] NodeConfigError),
    /// Bad TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A socket operation failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// The shell stopped (it left or crashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the node's shell has stopped")]
pub struct Stopped;

/// Counters of the shell, beside the core's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShellStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes of datagrams sent (sealed).
    pub datagram_bytes_out: u64,
    /// Datagrams dropped: no key opens them (wrong key, tampered, foreign, truncated).
    pub dropped_unauthenticated: u64,
    /// Datagrams dropped: a nonce seen recently (replay).
    pub dropped_replay: u64,
    /// Datagrams dropped: larger than `packet_size`.
    pub dropped_oversized: u64,
    /// Datagrams dropped: the core refused them.
    pub dropped_invalid: u64,
    /// Datagrams that could not be sent (socket busy or error).
    pub send_failures: u64,
    /// Stream frames received.
    pub frames_in: u64,
    /// Stream frames sent.
    pub frames_out: u64,
    /// Bytes of those frames, length prefixes included (before TLS).
    pub frame_bytes_out: u64,
    /// Stream frames the core refused (undecodable or impersonating).
    pub frames_refused: u64,
    /// TLS handshakes that failed (wrong CA, no certificate...).
    pub handshake_failures: u64,
    /// Stream frames not sent (connection failed, queue full).
    pub stream_send_failures: u64,
    /// Watch events dropped because the consumer lagged.
    pub watch_dropped: u64,
}

/// Sends a command's answer; called once the outputs of the command were carried out.
type Reply = Box<dyn FnOnce() + Send>;
type EngineFn<E> = Box<dyn FnOnce(&mut E, Instant) -> Reply + Send>;
type KeyringFn = Box<dyn FnOnce(&mut Keyring) -> Result<(), KeyringError> + Send>;

enum Command<E> {
    Run(EngineFn<E>),
    Keyring(KeyringFn, oneshot::Sender<Result<(), KeyringError>>),
    Stats(oneshot::Sender<ShellStats>),
    Leave(oneshot::Sender<()>),
}

/// A running node.
pub struct Handle<E: Engine = Node> {
    tx: mpsc::Sender<Command<E>>,
    task: JoinHandle<()>,
    events: Option<mpsc::Receiver<(WatchId, WatchEvent)>>,
    local_addr: SocketAddr,
    /// Dropped with the handle: the node stops (at once, as a crash) even while
    /// [`Client`]s remain.
    _alive: oneshot::Sender<()>,
}

/// A cloneable way to reach a running node from other tasks (API servers, watchers). It
/// does not keep the node running: once the [`Handle`] leaves or is killed, calls return
/// [`Stopped`].
pub struct Client<E: Engine = Node> {
    tx: mpsc::Sender<Command<E>>,
}

impl<E: Engine> Clone for Client<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<E: Engine> std::fmt::Debug for Client<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl<E: Engine> std::fmt::Debug for Handle<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<E: Engine> Client<E> {
    /// Runs `f` on the node inside its task (API calls: `node.db_mut().create_entry(..)`).
    pub async fn with_node<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        self.with_engine(move |engine, now| f(engine.node_mut(), now))
            .await
    }

    /// Runs `f` on the engine inside its task. The answer comes back once the outputs `f`
    /// caused were carried out (an engine that saves its state before answering has saved).
    pub async fn with_engine<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = oneshot::channel();
        let run: EngineFn<E> = Box::new(move |engine, now| {
            let result = f(engine, now);
            Box::new(move || {
                let _ = tx.send(result);
            })
        });
        self.tx.send(Command::Run(run)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// The shell's counters.
    pub async fn stats(&self) -> Result<ShellStats, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Stats(tx))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

impl<E: Engine> Handle<E> {
    /// A cloneable client of this node.
    pub fn client(&self) -> Client<E> {
        Client {
            tx: self.tx.clone(),
        }
    }

    /// Runs `f` on the node inside its task (API calls: `node.db_mut().create_entry(..)`).
    pub async fn with_node<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        self.client().with_node(f).await
    }

    /// Runs `f` on the engine inside its task (see [`Client::with_engine`]).
    pub async fn with_engine<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        self.client().with_engine(f).await
    }

    /// Joins the cluster through `seeds`.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), Stopped> {
        self.with_engine(move |engine, now| engine.join(now, seeds))
            .await
    }

    /// Adds a key to the keyring (it opens datagrams at once).
    pub async fn add_key(&self, key: Key) -> Result<(), KeyringError> {
        self.keyring(move |k| {
            k.add(key);
            Ok(())
        })
        .await
    }

    /// Makes a key of the ring the primary (it seals from now on).
    pub async fn use_key(&self, key: Key) -> Result<(), KeyringError> {
        self.keyring(move |k| k.make_primary(&key)).await
    }

    /// Removes a key that is not the primary.
    pub async fn remove_key(&self, key: Key) -> Result<(), KeyringError> {
        self.keyring(move |k| k.remove(&key)).await
    }

    async fn keyring(
        &self,
        f: impl FnOnce(&mut Keyring) -> Result<(), KeyringError> + Send + 'static,
    ) -> Result<(), KeyringError> {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Keyring(Box::new(f), tx))
            .await
            .is_err()
        {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// The shell's counters.
    pub async fn stats(&self) -> Result<ShellStats, Stopped> {
        self.client().stats().await
    }

    /// The watch events of every watch registered on the node (taken once).
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<(WatchId, WatchEvent)>> {
        self.events.take()
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Leaves the cluster gracefully and stops after `leave_grace`.
    pub async fn leave(self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Leave(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }

    /// Stops at once, without a goodbye (a crash, as the others see it).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Starts a node on sockets the caller bound (port 0 is fine; the identity's address must be
/// where peers reach them).
pub fn spawn(udp: UdpSocket, tcp: TcpListener, config: ShellConfig) -> Result<Handle, ShellError> {
    spawn_engine(udp, tcp, config, |node| node)
}

/// Starts an engine built around a new node by `build` (see [`spawn`]).
pub fn spawn_engine<E: Engine>(
    udp: UdpSocket,
    tcp: TcpListener,
    config: ShellConfig,
    build: impl FnOnce(Node) -> E,
) -> Result<Handle<E>, ShellError> {
    let now = clock();
    let node = Node::new(
        now,
        config.identity.clone(),
        config.seed,
        config.node.clone(),
    )?;
    let engine = build(node);
    let local_addr = udp.local_addr()?;
    let (keyring, tls) = match config.security {
        Security::Secure { keyring, tls } => (Some(keyring), Some(Tls::new(tls)?)),
        Security::Insecure => (None, None),
    };
    let counters = Arc::new(StreamCounters::default());
    let (inbound_tx, inbound_rx) = mpsc::channel(1024);
    let acceptor = AbortOnDrop(tokio::spawn(stream::accept_loop(
        tcp,
        tls.clone(),
        inbound_tx,
        config.max_frame_bytes,
        counters.clone(),
    )));
    let (tx, rx) = mpsc::channel(256);
    let (events_tx, events_rx) = mpsc::channel(config.watch_capacity.max(1));
    let owner = Owner {
        engine,
        udp,
        keyring,
        secure: tls.is_some(),
        outbound: Outbound::new(tls, counters.clone()),
        counters,
        packet_size: config.node.db.packet_size,
        replay: ReplayWindow::new(65_536),
        random: SystemRandom::new(),
        events: events_tx,
        stats: ShellStats::default(),
        leave_grace: config.leave_grace,
        _acceptor: acceptor,
    };
    let (alive_tx, alive_rx) = oneshot::channel();
    let task = tokio::spawn(owner.run(rx, inbound_rx, alive_rx));
    Ok(Handle {
        tx,
        task,
        events: Some(events_rx),
        local_addr,
        _alive: alive_tx,
    })
}

#[allow(
    clippy::disallowed_methods,
    reason = "the shell is where the clock is read"
)]
fn clock() -> Instant {
    Instant::now()
}

struct Owner<E> {
    engine: E,
    udp: UdpSocket,
    keyring: Option<Keyring>,
    secure: bool,
    outbound: Outbound,
    counters: Arc<StreamCounters>,
    packet_size: usize,
    replay: ReplayWindow,
    random: SystemRandom,
    events: mpsc::Sender<(WatchId, WatchEvent)>,
    stats: ShellStats,
    leave_grace: Duration,
    /// The TCP acceptor stops with the owner (a stopped node frees its port).
    _acceptor: AbortOnDrop,
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<E: Engine> Owner<E> {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command<E>>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut alive: oneshot::Receiver<()>,
    ) {
        let mut buf = vec![0u8; 65_536];
        let mut stop_at: Option<tokio::time::Instant> = None;
        let mut left: Option<oneshot::Sender<()>> = None;
        loop {
            let deadline = tokio::time::Instant::from_std(self.engine.poll_timeout());
            let deadline = stop_at.map_or(deadline, |s| s.min(deadline));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if stop_at.is_some_and(|s| s <= tokio::time::Instant::now()) {
                        break;
                    }
                    self.engine.handle_timeout(clock());
                }
                recv = self.udp.recv_from(&mut buf) => {
                    if let Ok((len, from)) = recv {
                        self.on_datagram(from, len, &buf);
                    }
                }
                Some(frame) = inbound.recv() => self.on_frame(frame),
                _ = &mut alive => break,
                cmd = commands.recv() => match cmd {
                    Some(Command::Run(f)) => {
                        let reply = f(&mut self.engine, clock());
                        self.flush();
                        reply();
                    }
                    Some(Command::Keyring(f, reply)) => {
                        let res = match self.keyring.as_mut() {
                            Some(k) => f(k),
                            None => Ok(()),
                        };
                        let _ = reply.send(res);
                    }
                    Some(Command::Stats(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Some(Command::Leave(reply)) => {
                        self.engine.leave(clock());
                        stop_at = Some(tokio::time::Instant::now() + self.leave_grace);
                        left = Some(reply);
                    }
                    None => break,
                },
            }
            self.flush();
        }
        self.flush();
        if let Some(reply) = left {
            let _ = reply.send(());
        }
    }

    fn on_datagram(&mut self, from: SocketAddr, len: usize, buf: &[u8]) {
        self.stats.datagrams_in += 1;
        let data = &buf[..len];
        if len > self.packet_size {
            self.stats.dropped_oversized += 1;
            return;
        }
        let plain = match &self.keyring {
            Some(keyring) => match keyring.open(data) {
                Ok(plain) => {
                    if !self.replay.insert(&data[1..13]) {
                        self.stats.dropped_replay += 1;
                        return;
                    }
                    plain
                }
                Err(_) => {
                    self.stats.dropped_unauthenticated += 1;
                    return;
                }
            },
            None => data.to_vec(),
        };
        if self
            .engine
            .node_mut()
            .handle_datagram(clock(), from, &plain)
            .is_err()
        {
            self.stats.dropped_invalid += 1;
        }
    }

    fn on_frame(&mut self, frame: Inbound) {
        let now = clock();
        let res = if self.secure {
            self.engine
                .node_mut()
                .handle_stream(now, &frame.names, &frame.payload)
        } else {
            self.engine
                .node_mut()
                .handle_stream_unauthenticated(now, &frame.payload)
        };
        if res.is_err() {
            self.stats.frames_refused += 1;
        }
    }

    fn flush(&mut self) {
        let now = clock();
        while let Some(out) = self.engine.poll_output(now) {
            match out {
                Output::Datagram { to, payload } => self.send_datagram(to, &payload),
                Output::Stream { to, peer, payload } => self.outbound.send(to, peer, payload),
                Output::Watch { watch, event } => {
                    if self.events.try_send((watch, event)).is_err() {
                        self.stats.watch_dropped += 1;
                    }
                }
                Output::Member(event) => log_member(&event),
            }
        }
    }

    fn send_datagram(&mut self, to: SocketAddr, payload: &[u8]) {
        let sealed = match &self.keyring {
            Some(keyring) => {
                let mut nonce = [0u8; 12];
                if self.random.fill(&mut nonce).is_err() {
                    self.stats.send_failures += 1;
                    return;
                }
                keyring.seal(nonce, payload)
            }
            None => payload.to_vec(),
        };
        debug_assert!(
            sealed.len() <= self.packet_size,
            "BUG: datagram over packet_size"
        );
        match self.udp.try_send_to(&sealed, to) {
            Ok(_) => {
                self.stats.datagrams_out += 1;
                self.stats.datagram_bytes_out += sealed.len() as u64;
            }
            Err(_) => self.stats.send_failures += 1,
        }
    }

    fn snapshot(&self) -> ShellStats {
        let c = &self.counters;
        ShellStats {
            frames_in: c.frames_in.load(Ordering::Relaxed),
            frames_out: c.frames_out.load(Ordering::Relaxed),
            frame_bytes_out: c.frame_bytes_out.load(Ordering::Relaxed),
            handshake_failures: c.handshake_failures.load(Ordering::Relaxed),
            stream_send_failures: c.send_failures.load(Ordering::Relaxed)
                + c.dropped_full.load(Ordering::Relaxed),
            ..self.stats
        }
    }
}

fn log_member(event: &MemberEvent) {
    match event {
        MemberEvent::Up(id) => tracing::info!(member = %id.name, addr = %id.addr, "member up"),
        MemberEvent::Down(id) => tracing::info!(member = %id.name, addr = %id.addr, "member down"),
        MemberEvent::Idle => tracing::warn!("no active member: announcing to the seeds"),
        MemberEvent::Active => tracing::info!("connected to the cluster"),
    }
}

/// Nonces seen recently; a datagram whose nonce is in it is a replay.
struct ReplayWindow {
    seen: HashSet<[u8; 12]>,
    order: VecDeque<[u8; 12]>,
    cap: usize,
}

impl ReplayWindow {
    fn new(cap: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Records a nonce; false if it was already seen.
    fn insert(&mut self, nonce: &[u8]) -> bool {
        let Ok(n) = <[u8; 12]>::try_from(nonce) else {
            return false;
        };
        if !self.seen.insert(n) {
            return false;
        }
        self.order.push_back(n);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}
