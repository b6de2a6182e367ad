//! Request parameters, collected as Go's `Request.ParseForm` collects them.
//!
//! A urlencoded body of a POST, PUT or PATCH comes first, then the query string; each is
//! parsed like `url.ParseQuery`: pairs split on `&`, a pair holding `;` or a bad `%` escape is
//! skipped, `+` is a space. Handlers read the first value of a key and test flags by key
//! presence, as the Go handlers do.

use axum::http::Method;
use percent_encoding::percent_decode;

/// The largest urlencoded body parsed (Go's `maxFormSize`, 10 MiB); a larger one is ignored.
pub(crate) const MAX_FORM_BYTES: usize = 10 << 20;

/// Decoded parameters in order: body first, then query.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Form {
    /// Collects the parameters of `body` (already known to be a urlencoded form), then of
    /// `query`.
    pub(crate) fn parse(query: Option<&str>, body: Option<&[u8]>) -> Self {
        let mut pairs = Vec::new();
        if let Some(body) = body {
            parse_into(&mut pairs, body);
        }
        if let Some(query) = query {
            parse_into(&mut pairs, query.as_bytes());
        }
        Self { pairs }
    }

    /// The first value of `key`, if the key is present (possibly with an empty value).
    pub(crate) fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Whether `key` is present, whatever its value.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The first values of every key in `keys`, or `None` if one is missing.
    pub(crate) fn require<const N: usize>(&self, keys: [&str; N]) -> Option<[&[u8]; N]> {
        let values = keys.map(|k| self.get(k));
        if values.iter().any(Option::is_none) {
            return None;
        }
        Some(values.map(Option::unwrap_or_default))
    }
}

/// Whether a request's body is parsed as a form: Go's `parsePostForm` condition.
pub(crate) fn is_form_body(method: &Method, content_type: Option<&[u8]>) -> bool {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return false;
    }
    let Some(ct) = content_type else {
        return false;
    };
    let media = ct.split(|&b| b == b';').next().unwrap_or_default();
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

fn parse_into(pairs: &mut Vec<(Vec<u8>, Vec<u8>)>, src: &[u8]) {
    for part in src.split(|&b| b == b'&') {
        if part.is_empty() || part.contains(&b';') {
            continue;
        }
        let (key, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        if let (Some(key), Some(value)) = (unescape(key), unescape(value)) {
            pairs.push((key, value));
        }
    }
}

/// Go's `QueryUnescape`: `+` is a space, `%` must be followed by two hex digits.
fn unescape(src: &[u8]) -> Option<Vec<u8>> {
    // Hex digits are never `%`, so every `%` starts an escape. Go refuses a bad one, where
    // `percent_decode` would keep it as is.
    let bad_escape = src.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(src.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && src.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if bad_escape {
        return None;
    }
    // Before decoding, so that an escaped `+` (`%2B`) stays a `+`.
    let spaced: Vec<u8> = src
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Some(percent_decode(&spaced).collect())
}

/// Decodes a URL path's `%XX` escapes (Go's `URL.Path`); an invalid escape is kept as is.
pub(crate) fn decode_path(path: &str) -> String {
    let out: Vec<u8> = percent_decode(path.as_bytes()).collect();
    super::reply::go_lossy(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_body_before_query() {
        let f = Form::parse(Some("nid=q&nid=q2&json"), Some(b"nid=b&tname=t+1%21"));
        assert_eq!(f.get("nid"), Some(&b"b"[..]));
        assert_eq!(f.get("tname"), Some(&b"t 1!"[..]));
        assert!(f.has("json"));
        assert_eq!(f.get("json"), Some(&b""[..]));
        assert!(!f.has("unsafe"));
        assert_eq!(f.require(["nid", "tname"]), Some([&b"b"[..], &b"t 1!"[..]]));
        assert_eq!(f.require(["nid", "key"]), None);
    }

    #[test]
    fn bad_pairs_are_skipped() {
        let f = Form::parse(Some("a=%zz&b;c=1&&d=%41%4a&e=%4"), None);
        assert!(!f.has("a"));
        assert!(!f.has("b"));
        assert!(!f.has("c"));
        assert_eq!(f.get("d"), Some(&b"AJ"[..]));
        assert!(!f.has("e"));
        let f = Form::parse(Some("v=%FF&p=%2B+%2b"), None);
        assert_eq!(f.get("v"), Some(&[0xff][..]));
        assert_eq!(f.get("p"), Some(&b"+ +"[..]));
    }

    #[test]
    fn form_bodies_only_for_urlencoded_writes() {
        let ct = Some(&b"Application/X-WWW-Form-Urlencoded; charset=utf-8"[..]);
        assert!(is_form_body(&Method::POST, ct));
        assert!(is_form_body(&Method::PUT, ct));
        assert!(!is_form_body(&Method::GET, ct));
        assert!(!is_form_body(&Method::POST, None));
        assert!(!is_form_body(&Method::POST, Some(&b"application/json"[..])));
    }

    #[test]
    fn paths_are_decoded() {
        assert_eq!(decode_path("/foo%20bar"), "/foo bar");
        assert_eq!(decode_path("/a%zz+"), "/a%zz+");
        assert_eq!(decode_path("/a%4"), "/a%4");
        assert_eq!(decode_path("/%2fx%2F"), "//x/");
    }
}
