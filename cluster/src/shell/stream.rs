//! The stream path: length-prefixed frames over TCP (TLS unless insecure).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::tls::{Tls, cert_names, server_name};

/// A frame received on the stream path, with the names its sender authenticated as.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) names: Vec<String>,
    pub(crate) payload: Vec<u8>,
}

/// Counters shared by the stream tasks.
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    pub(crate) accepted: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) frame_bytes_out: AtomicU64,
    pub(crate) oversized_frames: AtomicU64,
    pub(crate) send_failures: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PEER_QUEUE: usize = 256;

/// Accepts connections and forwards their frames to the owner task.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<Tls>,
    inbound: mpsc::Sender<Inbound>,
    max_frame: usize,
    counters: Arc<StreamCounters>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let inbound = inbound.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    let accepted = tokio::time::timeout(CONNECT_TIMEOUT, tls.acceptor.accept(tcp));
                    let Ok(Ok(stream)) = accepted.await else {
                        counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let names = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(cert_names)
                        .unwrap_or_default();
                    if names.is_empty() {
                        counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    read_frames(stream, names, inbound, max_frame, counters).await;
                }
                None => read_frames(tcp, Vec::new(), inbound, max_frame, counters).await,
            }
        });
    }
}

async fn read_frames<S: AsyncRead + Unpin>(
    mut stream: S,
    names: Vec<String>,
    inbound: mpsc::Sender<Inbound>,
    max_frame: usize,
    counters: Arc<StreamCounters>,
) {
    loop {
        let Ok(len) = stream.read_u32().await else {
            return;
        };
        let len = len as usize;
        if len > max_frame {
            counters.oversized_frames.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return;
        }
        counters.frames_in.fetch_add(1, Ordering::Relaxed);
        // The owner applies backpressure here: a full queue slows this reader, not the node.
        if inbound
            .send(Inbound {
                names: names.clone(),
                payload,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Sends frames to peers, one writer task and connection per destination.
#[derive(Debug)]
pub(crate) struct Outbound {
    tls: Option<Tls>,
    peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    counters: Arc<StreamCounters>,
}

impl Outbound {
    pub(crate) fn new(tls: Option<Tls>, counters: Arc<StreamCounters>) -> Self {
        Self {
            tls,
            peers: HashMap::new(),
            counters,
        }
    }

    /// Queues a frame for `to` (whose certificate must name `peer`); a full queue drops it
    /// (anti-entropy repairs what is lost).
    pub(crate) fn send(&mut self, to: SocketAddr, peer: String, payload: Vec<u8>) {
        let tx = self.peers.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            tokio::spawn(writer(
                to,
                peer,
                self.tls.clone(),
                rx,
                self.counters.clone(),
            ));
            tx
        });
        match tx.try_send(payload) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.send_failures.fetch_add(1, Ordering::Relaxed);
                self.peers.remove(&to);
            }
        }
    }
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// One open connection: the write half, and a task that notices when the peer closes it (the
/// peer never writes, so any read completing means the connection is gone).
struct Open {
    write: tokio::io::WriteHalf<Box<dyn Conn>>,
    closed: tokio::task::JoinHandle<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.closed.abort();
    }
}

async fn writer(
    to: SocketAddr,
    peer: String,
    tls: Option<Tls>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    counters: Arc<StreamCounters>,
) {
    let mut conn: Option<Open> = None;
    while let Some(payload) = rx.recv().await {
        let Ok(len) = u32::try_from(payload.len()) else {
            counters.oversized_frames.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&payload);
        // A connection the peer closed (it restarted, say) is replaced before writing, and a
        // failed write is retried once on a fresh connection.
        let mut sent = false;
        for _ in 0..2 {
            if conn.as_ref().is_some_and(|c| c.closed.is_finished()) {
                conn = None;
            }
            if conn.is_none() {
                conn = connect(to, &peer, tls.as_ref()).await;
            }
            let Some(open) = conn.as_mut() else { break };
            let written = async {
                open.write.write_all(&frame).await?;
                open.write.flush().await
            };
            if written.await.is_ok() {
                sent = true;
                break;
            }
            conn = None;
        }
        if sent {
            counters.frames_out.fetch_add(1, Ordering::Relaxed);
            counters
                .frame_bytes_out
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
        } else {
            counters.send_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn connect(to: SocketAddr, peer: &str, tls: Option<&Tls>) -> Option<Open> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to))
        .await
        .ok()?
        .ok()?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Conn> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            let name = server_name(peer).ok()?;
            let connecting = tls.connector.connect(name, tcp);
            Box::new(
                tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .ok()?
                    .ok()?,
            )
        }
    };
    let (mut read, write) = tokio::io::split(stream);
    let closed = tokio::spawn(async move {
        let mut byte = [0u8; 1];
        let _ = read.read(&mut byte).await;
    });
    Some(Open { write, closed })
}
