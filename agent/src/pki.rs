//! A cluster PKI for the demo, the tests and small deployments: one CA, one certificate per
//! node whose DNS name is the node name (the shell checks it against the claimed sender),
//! and a gossip key.
//!
//! `netagent pki init --dir DIR NAME...` writes `ca.pem`, `ca-key.pem`, `<name>.pem`,
//! `<name>-key.pem` and `gossip.key`; each host gets `ca.pem`, its own pair and the key. A
//! production cluster would use its own CA: the agent only needs the three PEM files.

use std::fs;
use std::path::{Path, PathBuf};

use cluster::shell::TlsIdentity;
use data_encoding::HEXLOWER;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the PKI could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Certificate generation failed (for example a name that is not a DNS name).
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A node name that cannot be a certificate's DNS name or a file name.
    #[error("{0}")]
    Name(String),
    /// A file could not be written (it exists already, for instance).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No randomness for the gossip key.
    #[error(transparent)]
    Random(#[from] crate::os_random::RandomError),
}

/// A node's certificate and key, as PEM and as the shell's TLS material.
pub struct NodeCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// The same material for [`cluster::shell::Security::Secure`].
    pub identity: TlsIdentity,
}

/// A cluster CA.
pub struct ClusterCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl ClusterCa {
    /// A new self-signed CA named `name`.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(Self { issuer, key_pem })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a certificate for node `name` (DNS subject alternative name `name`, usable as
    /// TLS server and client).
    pub fn issue(&self, name: &str) -> Result<NodeCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            identity: TlsIdentity {
                ca: self.issuer.der().clone(),
                chain: vec![cert.der().clone()],
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            },
        })
    }

    /// Writes the CA, a certificate pair per node and a fresh gossip key into `dir`
    /// (created if needed). Keys are written readable by the owner only.
    ///
    /// Every name must be a valid node name (it becomes a file name and a DNS name), and no
    /// file is overwritten: an existing bundle is never replaced by accident.
    pub fn write_bundle(&self, dir: &Path, nodes: &[String]) -> Result<(), PkiError> {
        for name in nodes {
            crate::config::check_node_name(name).map_err(|e| PkiError::Name(e.to_string()))?;
        }
        fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        write(&dir.join("ca.pem"), &self.cert_pem(), false)?;
        write(&dir.join("ca-key.pem"), &self.key_pem, true)?;
        for name in nodes {
            let cert = self.issue(name)?;
            write(&dir.join(format!("{name}.pem")), &cert.cert_pem, false)?;
            write(&dir.join(format!("{name}-key.pem")), &cert.key_pem, true)?;
        }
        let key: [u8; 32] = crate::os_random::bytes()?;
        write(
            &dir.join("gossip.key"),
            &format!(
                "# AES-256-GCM gossip key (hex); the first line is the primary key\n{}\n",
                HEXLOWER.encode(&key)
            ),
            true,
        )?;
        Ok(())
    }
}

fn io(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| io(path, source))
}
