//! The security material: gossip key files ([`parse_keys`]) and the loading of keys and PEM
//! files into the shell's [`Security`] ([`AgentConfig::security`]).

use std::fs;
use std::path::Path;

use cluster::crypto::{KEY_LEN, Key, Keyring};
use cluster::shell::{Security, Tls, TlsIdentity};
use data_encoding::HEXLOWER_PERMISSIVE;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::agent::{AgentConfig, SecurityConfig};
use super::error::ConfigError;
use crate::base64;

/// Characters of a key written in hex.
pub(super) const HEX_KEY_CHARS: usize = 2 * KEY_LEN;

impl AgentConfig {
    /// Loads the security material: the keyring (first key primary, labelled with
    /// `cluster_label`) and the TLS identity, which is checked by building rustls
    /// configurations from it. Errors name the field and the file.
    pub fn security(&self) -> Result<Security, ConfigError> {
        let SecurityConfig::Secure {
            key_file,
            tls_ca,
            tls_cert,
            tls_key,
        } = &self.security
        else {
            return Ok(Security::Insecure);
        };
        let text = fs::read_to_string(key_file).map_err(|e| load_error("key_file", key_file, e))?;
        let mut keys = parse_keys(&text)
            .map_err(|e| load_error("key_file", key_file, e))?
            .into_iter();
        let Some(primary) = keys.next() else {
            return Err(load_error("key_file", key_file, ConfigError::NoKeys));
        };
        let mut keyring = Keyring::new(primary, self.cluster_label.as_bytes());
        for key in keys {
            keyring.add(key);
        }

        let ca = CertificateDer::from_pem_file(tls_ca)
            .map_err(|e| load_error("tls_ca", tls_ca, pem_error(e, "CERTIFICATE")))?;
        let chain = CertificateDer::pem_file_iter(tls_cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| load_error("tls_cert", tls_cert, e))?;
        if chain.is_empty() {
            return Err(load_error(
                "tls_cert",
                tls_cert,
                "no CERTIFICATE section found",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(tls_key)
            .map_err(|e| load_error("tls_key", tls_key, pem_error(e, "PRIVATE KEY")))?;

        let tls = TlsIdentity { ca, chain, key };
        // Refuse a mismatched key or a bad CA now, as a configuration error, rather than
        // when the shell starts.
        Tls::new(TlsIdentity {
            ca: tls.ca.clone(),
            chain: tls.chain.clone(),
            key: tls.key.clone_key(),
        })?;
        Ok(Security::Secure { keyring, tls })
    }
}

/// Parses a gossip key file: one key per line, either 64 hex characters or standard base64
/// (padding optional) of 32 bytes. Blank lines and lines starting with `#` are ignored; the
/// first key is the primary. At least one key is required. Errors give the line number but
/// never the key text.
///
pub fn parse_keys(text: &str) -> Result<Vec<Key>, ConfigError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = parse_key(line).map_err(|reason| ConfigError::BadKey {
            line: index + 1,
            reason,
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(ConfigError::NoKeys);
    }
    Ok(keys)
}

fn parse_key(line: &str) -> Result<Key, String> {
    if line.len() == HEX_KEY_CHARS
        && let Some(key) = HEXLOWER_PERMISSIVE
            .decode(line.as_bytes())
            .ok()
            .and_then(|b| Key::from_slice(&b).ok())
    {
        return Ok(key);
    }
    let base64 = line
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    if !base64 {
        return Err(format!(
            "{} characters, neither hex nor base64",
            line.chars().count()
        ));
    }
    let bytes = base64::decode_padding_optional(line.as_bytes())
        .map_err(|_| format!("{} characters, not valid base64", line.len()))?;
    Key::from_slice(&bytes).map_err(|_| format!("base64 of {} bytes, not {KEY_LEN}", bytes.len()))
}

fn load_error(
    field: &'static str,
    path: &Path,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ConfigError {
    ConfigError::Load {
        field,
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// Turns pem's "no items found" into a message naming the section looked for.
fn pem_error(
    err: rustls::pki_types::pem::Error,
    section: &str,
) -> Box<dyn std::error::Error + Send + Sync> {
    match err {
        rustls::pki_types::pem::Error::NoItemsFound => format!("no {section} section found").into(),
        other => other.into(),
    }
}
