//! A hash whose values may be kept: the same on every build, Rust version and host (std's
//! hashers promise none of that).

/// 32-bit FNV-1a of `bytes`.
pub(crate) fn fnv1a_32<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference values of the FNV specification (draft-eastlake-fnv).
    #[test]
    fn reference_values() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }
}
