//! Hexadecimal: the agent's one encoder and decoder, for gossip keys, random IDs, service IDs
//! and the `%XX` escapes of the diagnostic API's URLs.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes`, two digits a byte.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex digits of either case, two a byte; `None` for an odd length or a byte that is
/// not a hex digit.
pub(crate) fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The value of one hex digit of either case.
pub(crate) fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode(&bytes);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 4..], "feff");
        assert_eq!(decode(text.as_bytes()).unwrap(), bytes);
        assert_eq!(decode(text.to_uppercase().as_bytes()).unwrap(), bytes);
        assert_eq!(decode(b"").unwrap(), b"");
    }

    #[test]
    fn refuses_odd_length_and_non_digits() {
        assert_eq!(decode(b"abc"), None);
        assert_eq!(decode(b"0g"), None);
        assert_eq!(decode(b"+1"), None);
        assert_eq!(digit(b'G'), None);
        assert_eq!(digit(b'F'), Some(15));
    }
}
