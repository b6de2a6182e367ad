//! Randomness from the operating system, through ring's [`SystemRandom`]: the agent's keys and
//! IDs, and the seeds of its generators.
//!
//! The shells are the only place this may be called; the sans-IO cores take a seed instead
//! (house style: randomness is seeded and named).

use ring::rand::{SecureRandom, SystemRandom};

/// The operating system's random source failed (no state was changed).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed")]
#[non_exhaustive]
pub struct RandomError;

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| RandomError)?;
    Ok(out)
}

/// A random seed for a generator.
pub fn seed() -> Result<u64, RandomError> {
    bytes().map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ() {
        let (a, b) = (bytes::<32>().unwrap(), bytes::<32>().unwrap());
        assert_ne!(a, b, "two 256-bit draws are equal");
        assert_ne!(seed().unwrap(), seed().unwrap());
    }
}
