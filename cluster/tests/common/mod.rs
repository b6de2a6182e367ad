//! Shared helpers for the tests with real sockets: a test PKI and node spawning.

#![allow(dead_code, reason = "each test file uses a subset")]
#![allow(unreachable_pub, reason = "shared by several test crates")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::net::SocketAddr;
use std::time::Duration;

use cluster::crypto::{Key, Keyring};
use cluster::shell::{Handle, Security, ShellConfig, TlsIdentity, spawn};
use cluster::{NodeConfig, NodeIdentity};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, UdpSocket};

/// The cluster label bound to every datagram.
pub const LABEL: &[u8] = b"test-cluster";

/// A cluster CA that issues node certificates.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(cn: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, cn);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { ca }
    }

    /// A certificate for `name` (DNS SAN), usable as server and client.
    pub fn identity(&self, name: &str) -> TlsIdentity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        TlsIdentity {
            ca: self.ca.der().clone(),
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// This CA's certificate, for a node that trusts it while holding another CA's cert.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

pub fn key(byte: u8) -> Key {
    Key::new([byte; 32])
}

/// UDP and TCP sockets on the same loopback port.
pub async fn bind_pair() -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp, addr);
        }
    }
    panic!("no free port pair on loopback");
}

/// Options of one test node.
pub struct NodeOpts {
    pub name: String,
    pub incarnation: u64,
    pub key: Key,
    pub tls: TlsIdentity,
    pub config: NodeConfig,
}

pub fn opts(pki: &Pki, name: &str, incarnation: u64) -> NodeOpts {
    NodeOpts {
        name: name.to_owned(),
        incarnation,
        key: key(7),
        tls: pki.identity(name),
        config: NodeConfig::fast(),
    }
}

/// Spawns a secure node on fresh loopback sockets (or on `at`, to restart at an address).
pub async fn start(o: NodeOpts, at: Option<SocketAddr>) -> (Handle, SocketAddr) {
    let (udp, tcp, addr) = match at {
        Some(addr) => rebind(addr).await,
        None => bind_pair().await,
    };
    let identity = NodeIdentity::new(o.name, addr, o.incarnation);
    let security = Security::Secure {
        keyring: Keyring::new(o.key, LABEL),
        tls: o.tls,
    };
    let mut config = ShellConfig::new(identity, security);
    config.node = o.config;
    (spawn(udp, tcp, config).unwrap(), addr)
}

async fn rebind(addr: SocketAddr) -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..100 {
        if let (Ok(udp), Ok(tcp)) = (UdpSocket::bind(addr).await, TcpListener::bind(addr).await) {
            return (udp, tcp, addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not rebind {addr}");
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Number of active SWIM members a node sees.
pub async fn members(h: &Handle) -> usize {
    h.with_node(|n, _| n.members().len()).await.unwrap_or(0)
}

/// Visible entries of table `t` in network `n` on a node.
pub async fn entries(h: &Handle, table: &'static str, network: &'static str) -> usize {
    h.with_node(move |n, _| n.db().table_by_network(table, network).len())
        .await
        .unwrap_or(0)
}

/// The shell counters of a running node.
pub async fn stats(h: &Handle) -> cluster::shell::ShellStats {
    h.stats().await.unwrap()
}

/// Creates `key` with `value` in table `table` of network `network` on a node.
pub async fn create(
    h: &Handle,
    table: &'static str,
    network: &'static str,
    key: String,
    value: Vec<u8>,
) {
    h.with_node(move |n, now| {
        n.db_mut()
            .create_entry(now, table.into(), network.into(), key.into(), value)
    })
    .await
    .unwrap()
    .unwrap();
}

/// Whether a node shows `key` in table `table` of network `network`.
pub async fn has_key(h: &Handle, table: &'static str, network: &'static str, key: String) -> bool {
    h.with_node(move |n, _| {
        n.db()
            .table_by_network(table, network)
            .contains_key(key.as_str())
    })
    .await
    .unwrap_or(false)
}

/// Names of the active SWIM members a node sees.
pub async fn member_names(h: &Handle) -> Vec<String> {
    h.with_node(|n, _| n.members().iter().map(|m| m.name.to_string()).collect())
        .await
        .unwrap_or_default()
}

/// Joins network `network` on a node.
pub async fn join_network(h: &Handle, network: &'static str) {
    h.with_node(move |n, now| n.db_mut().join_network(now, network.into()))
        .await
        .unwrap()
        .unwrap();
}
