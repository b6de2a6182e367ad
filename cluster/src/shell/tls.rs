//! Mutual TLS with a cluster CA: every node presents a certificate from the cluster CA whose
//! DNS name is its node name, and requires one from its peer.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A node's TLS material: the cluster CA, its certificate chain and key.
#[derive(Debug)]
pub struct TlsIdentity {
    /// The cluster CA certificate (DER).
    pub ca: CertificateDer<'static>,
    /// The node's certificate chain, leaf first (DER); the leaf carries the node name as a DNS
    /// subject alternative name and both server and client EKUs.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    pub key: PrivateKeyDer<'static>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA certificate was refused.
    #[error("cluster CA certificate: {0}")]
    Ca(String),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// A node name is not a valid DNS name.
    #[error("node name {0:?} is not a valid DNS name for a certificate")]
    Name(String),
}

/// Acceptor and connector for one node.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Builds both sides from the node's material.
    pub fn new(identity: TlsIdentity) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(identity.ca.clone())
            .map_err(|e| TlsError::Ca(e.to_string()))?;
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(identity.chain, identity.key)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

/// The server name a peer's certificate must be valid for.
pub(crate) fn server_name(peer: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(peer.to_owned()).map_err(|_| TlsError::Name(peer.to_owned()))
}

/// The DNS names a verified peer certificate carries.
pub(crate) fn cert_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee.valid_dns_names().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}
