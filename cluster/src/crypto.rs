//! The datagram envelope: AES-256-GCM under a keyring (memberlist's scheme).
//!
//! `[version = 1][nonce: 12][ciphertext][tag: 16]`, sealed with the primary key; opening tries
//! every key, primary first. Rotation without loss: add the new key everywhere, make it
//! primary, then remove the old one. The nonce comes from the caller (the shell draws it from
//! the OS), so this module stays pure.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Envelope version byte.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes the envelope adds: version, nonce and tag.
pub const ENVELOPE_OVERHEAD: usize = 1 + NONCE_LEN + 16;
/// Key length: AES-256.
pub const KEY_LEN: usize = 32;

/// A gossip key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// Wraps 32 bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses a key from a slice; it must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyringError> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyringError::BadKeyLength(bytes.len()))?;
        Ok(Self(arr))
    }

    /// The first bytes in hex, for logs (libnetwork prints five hex characters).
    pub fn fingerprint(&self) -> String {
        self.0[..3].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}..)", self.fingerprint())
    }
}

/// Keyring errors. State is unchanged when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// A key was not 32 bytes.
    #[error("gossip keys must be {KEY_LEN} bytes (AES-256), got {0}")]
    BadKeyLength(usize),
    /// The key to make primary or remove is not in the ring.
    #[error("key {0} is not in the keyring")]
    UnknownKey(String),
    /// The primary key cannot be removed; make another key primary first.
    #[error("key {0} is the primary key and cannot be removed")]
    RemovePrimary(String),
}

/// Why a datagram could not be opened. It is dropped and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than the envelope.
    #[error("datagram shorter than the envelope")]
    Truncated,
    /// Unknown envelope version.
    #[error("unknown envelope version {0}")]
    Version(u8),
    /// No key in the ring authenticates it (wrong key, tampered or foreign).
    #[error("no key authenticates the datagram")]
    Unauthenticated,
}

/// The keys of a node: one primary that seals, all of them open.
pub struct Keyring {
    /// Primary first.
    keys: Vec<(Key, LessSafeKey)>,
    /// Authenticated data bound to every datagram (cluster label).
    label: Vec<u8>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<_> = self.keys.iter().map(|(k, _)| k.fingerprint()).collect();
        f.debug_struct("Keyring").field("keys", &keys).finish()
    }
}

impl Keyring {
    /// A keyring whose primary is `primary`; `label` is bound to every datagram as
    /// authenticated data, so clusters with different labels reject each other.
    pub fn new(primary: Key, label: &[u8]) -> Self {
        let mut ring = Self {
            keys: Vec::new(),
            label: label.to_vec(),
        };
        ring.add(primary);
        ring
    }

    /// Adds a key (no-op if present); it opens datagrams at once.
    pub fn add(&mut self, key: Key) {
        if self.keys.iter().any(|(k, _)| *k == key) {
            return;
        }
        let sealing = less_safe(&key);
        self.keys.push((key, sealing));
    }

    /// Makes a key already in the ring the primary.
    pub fn make_primary(&mut self, key: &Key) -> Result<(), KeyringError> {
        let pos = self
            .keys
            .iter()
            .position(|(k, _)| k == key)
            .ok_or_else(|| KeyringError::UnknownKey(key.fingerprint()))?;
        let entry = self.keys.remove(pos);
        self.keys.insert(0, entry);
        Ok(())
    }

    /// Removes a key that is not the primary.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyringError> {
        match self.keys.iter().position(|(k, _)| k == key) {
            None => Err(KeyringError::UnknownKey(key.fingerprint())),
            Some(0) => Err(KeyringError::RemovePrimary(key.fingerprint())),
            Some(pos) => {
                self.keys.remove(pos);
                Ok(())
            }
        }
    }

    /// Fingerprints of the keys, primary first.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|(k, _)| k.fingerprint()).collect()
    }

    /// Seals `plaintext` under the primary key with `nonce` (which must never repeat for a
    /// key: draw it from a CSPRNG).
    pub fn seal(&self, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        let Some((_, key)) = self.keys.first() else {
            debug_assert!(false, "BUG: empty keyring");
            return Vec::new();
        };
        let sealed = key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&self.label[..]),
            &mut body,
        );
        if sealed.is_err() {
            // Only fails for plaintexts beyond GCM's 64 GiB limit.
            debug_assert!(false, "BUG: AES-GCM seal failed");
            return Vec::new();
        }
        out.extend_from_slice(&body);
        out
    }

    /// Opens a datagram sealed by any key of the ring.
    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        if datagram.len() < ENVELOPE_OVERHEAD {
            return Err(OpenError::Truncated);
        }
        if datagram[0] != ENVELOPE_VERSION {
            return Err(OpenError::Version(datagram[0]));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&datagram[1..1 + NONCE_LEN]);
        let body = &datagram[1 + NONCE_LEN..];
        for (_, key) in &self.keys {
            let mut buf = body.to_vec();
            let opened = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.label[..]),
                &mut buf,
            );
            if let Ok(plain) = opened {
                let len = plain.len();
                buf.truncate(len);
                return Ok(buf);
            }
        }
        Err(OpenError::Unauthenticated)
    }
}

fn less_safe(key: &Key) -> LessSafeKey {
    match UnboundKey::new(&AES_256_GCM, &key.0) {
        Ok(k) => LessSafeKey::new(k),
        // A 32-byte key is always valid for AES-256-GCM.
        Err(_) => unreachable_key(),
    }
}

#[allow(
    clippy::panic,
    reason = "a 32-byte key is always accepted by AES-256-GCM"
)]
fn unreachable_key() -> LessSafeKey {
    panic!("BUG: ring refused a 32-byte AES-256-GCM key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::new([b; KEY_LEN])
    }

    #[test]
    fn seal_open_and_rotate() {
        let mut a = Keyring::new(key(1), b"cluster");
        let mut b = Keyring::new(key(1), b"cluster");
        let d = a.seal([7; NONCE_LEN], b"hello");
        assert_eq!(d.len(), 5 + ENVELOPE_OVERHEAD);
        assert_eq!(b.open(&d).unwrap(), b"hello");
        // Rotation: add everywhere, switch primary on one side, both still talk.
        a.add(key(2));
        b.add(key(2));
        a.make_primary(&key(2)).unwrap();
        let d2 = a.seal([8; NONCE_LEN], b"rotated");
        assert_eq!(b.open(&d2).unwrap(), b"rotated");
        assert_eq!(
            a.remove(&key(2)),
            Err(KeyringError::RemovePrimary(key(2).fingerprint()))
        );
        a.remove(&key(1)).unwrap();
        assert_eq!(a.open(&d), Err(OpenError::Unauthenticated));
    }

    #[test]
    fn wrong_key_label_or_tamper_refused() {
        let a = Keyring::new(key(1), b"cluster");
        let d = a.seal([1; NONCE_LEN], b"payload");
        assert_eq!(
            Keyring::new(key(9), b"cluster").open(&d),
            Err(OpenError::Unauthenticated)
        );
        assert_eq!(
            Keyring::new(key(1), b"other").open(&d),
            Err(OpenError::Unauthenticated)
        );
        let mut t = d.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(a.open(&t), Err(OpenError::Unauthenticated));
        assert_eq!(a.open(&d[..10]), Err(OpenError::Truncated));
        let mut v = d;
        v[0] = 9;
        assert_eq!(a.open(&v), Err(OpenError::Version(9)));
        assert_eq!(
            Key::from_slice(&[0; 16]),
            Err(KeyringError::BadKeyLength(16))
        );
    }
}
