//! Standard base64 (RFC 4648, padded) with the exact errors of Go's `base64.StdEncoding`: the
//! agent's one base64 codec.
//!
//! The diagnostic API takes and returns values in base64 unless `unsafe` is given; clients
//! compare error texts, so decoding follows Go's `decodeQuantum` step by step: `\r` and `\n`
//! are skipped anywhere, padding is required, non-zero trailing bits are accepted, and a
//! failure names the offending input byte the way Go does. Gossip key files use the same
//! decoder with padding made optional ([`decode_padding_optional`]).
//!
//! The `base64` crate is not used: it neither skips line breaks nor reports Go's offsets.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const PAD: u8 = b'=';

/// Go's `base64.CorruptInputError`: the input byte at which decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CorruptInput(pub(crate) usize);

impl fmt::Display for CorruptInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal base64 data at input byte {}", self.0)
    }
}

/// Encodes `data` with padding.
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(v >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push(char::from(PAD));
            }
        }
    }
    out
}

/// Decodes `src` as Go's `base64.StdEncoding.DecodeString` does.
pub(crate) fn decode(src: &[u8]) -> Result<Vec<u8>, CorruptInput> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        si = quantum(src, si, &mut out)?;
    }
    Ok(out)
}

/// Decodes `src` whose padding is either complete or absent (`Zg==` or `Zg`, not `Zg=`), as
/// gossip key files allow: absent padding is added, then [`decode`] applies. Offsets in
/// errors are those of the padded input.
pub(crate) fn decode_padding_optional(src: &[u8]) -> Result<Vec<u8>, CorruptInput> {
    if src.contains(&PAD) {
        return decode(src);
    }
    let symbols = src.iter().filter(|&&c| c != b'\n' && c != b'\r').count();
    let mut padded = Vec::with_capacity(src.len() + 3);
    padded.extend_from_slice(src);
    padded.resize(src.len() + (symbols.next_multiple_of(4) - symbols), PAD);
    decode(&padded)
}

/// Decodes one quantum (up to four symbols) starting at `si`; returns where the next starts.
fn quantum(src: &[u8], mut si: usize, out: &mut Vec<u8>) -> Result<usize, CorruptInput> {
    let mut dbuf = [0u8; 4];
    let mut dlen = 4;
    let mut j = 0;
    let mut trailing = None;
    while j < 4 {
        if si == src.len() {
            if j == 0 {
                return Ok(si);
            }
            // A padded encoding never ends inside a quantum.
            return Err(CorruptInput(si - j));
        }
        let c = src[si];
        si += 1;
        if let Some(v) = symbol(c) {
            dbuf[j] = v;
            j += 1;
            continue;
        }
        if c == b'\n' || c == b'\r' {
            continue;
        }
        if c != PAD {
            return Err(CorruptInput(si - 1));
        }
        match j {
            0 | 1 => return Err(CorruptInput(si - 1)),
            2 => {
                // "==" expected: the first '=' is consumed.
                si = skip_newlines(src, si);
                if si == src.len() {
                    return Err(CorruptInput(src.len()));
                }
                if src[si] != PAD {
                    return Err(CorruptInput(si - 1));
                }
                si += 1;
            }
            _ => {}
        }
        si = skip_newlines(src, si);
        if si < src.len() {
            trailing = Some(CorruptInput(si));
        }
        dlen = j;
        break;
    }
    let v = u32::from(dbuf[0]) << 18
        | u32::from(dbuf[1]) << 12
        | u32::from(dbuf[2]) << 6
        | u32::from(dbuf[3]);
    let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
    out.extend_from_slice(&bytes[..dlen - 1]);
    match trailing {
        Some(err) => Err(err),
        None => Ok(si),
    }
}

fn skip_newlines(src: &[u8], mut si: usize) -> usize {
    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
        si += 1;
    }
    si
}

fn symbol(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rfc4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain), coded);
            assert_eq!(decode(coded.as_bytes()).unwrap(), plain);
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(decode(b"+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn decode_skips_newlines_and_accepts_trailing_bits() {
        assert_eq!(decode(b"Zm\r\n9v\nYg=\n=\n").unwrap(), b"foob");
        // Go's StdEncoding is not strict: "dh==" decodes like "dg==".
        assert_eq!(decode(b"dh==").unwrap(), b"v");
    }

    #[test]
    fn padding_is_complete_or_absent() {
        for (coded, plain) in [
            ("Zg", &b"f"[..]),
            ("Zg==", b"f"),
            ("Zm8", b"fo"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("", b""),
        ] {
            assert_eq!(
                decode_padding_optional(coded.as_bytes()).unwrap(),
                plain,
                "{coded}"
            );
        }
        for bad in ["Zg=", "Z", "Zm9vY", "Zm9v=", "Zm=9v", "Zm9!"] {
            assert!(decode_padding_optional(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn decode_errors_match_go() {
        let cases: [(&[u8], usize); 11] = [
            (b"!!!", 0),
            (b"a", 0),
            (b"dg", 0),
            (b"dg=", 3),
            (b"dg=x", 2),
            (b"d===", 1),
            (b"====", 0),
            (b"dg==x", 4),
            (b"Zm9vdg", 4),
            (b"Zm9v\n\ndg", 6),
            (b"Zm9\xc3\xa9", 3),
        ];
        for (input, at) in cases {
            assert_eq!(
                decode(input),
                Err(CorruptInput(at)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            CorruptInput(0).to_string(),
            "illegal base64 data at input byte 0"
        );
    }
}
