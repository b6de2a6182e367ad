//! The reply model of libnetwork's `diagnostic` package (`HTTPResult` and its detail types)
//! and its two renderings: text (`String()` methods) and JSON (`encoding/json`, byte for
//! byte: HTML characters and invalid UTF-8 escaped as Go escapes them).

use std::fmt::Write as _;

/// Message of a missing-parameter reply.
const MISSING_PARAMETER: &str = "missing parameter";

/// One reply: a message and optional details (`HTTPResult`).
#[derive(Debug)]
pub(crate) struct Reply {
    message: &'static str,
    details: Details,
}

/// The details of a reply; each is one Go type.
#[derive(Debug)]
pub(crate) enum Details {
    /// No details (JSON `null`).
    None,
    /// `StringCmd`: `{"info"}`.
    Info(String),
    /// `ErrorCmd`: `{"error"}`, text `Error: ...`.
    Error(String),
    /// `UsageCmd`: `{"usage"}`, text `Usage: ...`.
    Usage(String),
    /// `TableObj` of `PeerEntryObj`.
    Peers(Vec<PeerRow>),
    /// `TableObj` of `TableEntryObj`.
    Entries(Vec<EntryRow>),
    /// A lone `TableEntryObj` (index 0).
    Entry(EntryRow),
    /// `NetworkStatsResult`.
    Stats {
        /// Entries of the network, tombstones included; -1 for an unknown network.
        entries: i64,
        /// Queued table broadcasts; -1 for an unknown network.
        queue_len: i64,
    },
}

/// A peer line: `PeerEntryObj`.
#[derive(Debug)]
pub(crate) struct PeerRow {
    /// The node's name (`orphan-<name>` when its address is unknown).
    pub(crate) name: String,
    /// Its IP, or `unknown`.
    pub(crate) ip: String,
}

/// A table entry line: `TableEntryObj`. Bytes, because text mode writes them raw.
#[derive(Debug)]
pub(crate) struct EntryRow {
    /// The key.
    pub(crate) key: Vec<u8>,
    /// The value, already base64-encoded unless `unsafe`.
    pub(crate) value: Vec<u8>,
    /// The owner's name (empty for `/getentry`).
    pub(crate) owner: Vec<u8>,
}

impl Reply {
    /// `OK` with no details.
    pub(crate) fn ok() -> Self {
        Self::succeed(Details::None)
    }

    /// `OK` with details.
    pub(crate) fn succeed(details: Details) -> Self {
        Self {
            message: "OK",
            details,
        }
    }

    /// `OK` with a string.
    pub(crate) fn info(info: impl Into<String>) -> Self {
        Self::succeed(Details::Info(info.into()))
    }

    /// `FAIL` with an error text.
    pub(crate) fn fail(err: impl ToString) -> Self {
        Self {
            message: "FAIL",
            details: Details::Error(err.to_string()),
        }
    }

    /// `missing parameter` with the usage.
    pub(crate) fn missing(usage: &str) -> Self {
        Self {
            message: MISSING_PARAMETER,
            details: Details::Usage(usage.to_owned()),
        }
    }

    /// The `/` handler's answer to any path it does not serve.
    pub(crate) fn not_implemented(path: &str) -> Self {
        Self {
            message: "not implemented",
            details: Details::Usage(format!(
                "URL path: {path} no method implemented check /help\n"
            )),
        }
    }

    /// The text rendering: the message, then `\n` and the details if there are any.
    pub(crate) fn text(&self) -> Vec<u8> {
        let mut out = self.message.as_bytes().to_vec();
        if matches!(self.details, Details::None) {
            return out;
        }
        out.push(b'\n');
        match &self.details {
            Details::None => {}
            Details::Info(info) => out.extend_from_slice(info.as_bytes()),
            Details::Error(err) => {
                out.extend_from_slice(b"Error: ");
                out.extend_from_slice(err.as_bytes());
            }
            Details::Usage(usage) => {
                out.extend_from_slice(b"Usage: ");
                out.extend_from_slice(usage.as_bytes());
            }
            Details::Peers(rows) => {
                out.extend_from_slice(format!("total entries: {}\n", rows.len()).as_bytes());
                for (i, row) in rows.iter().enumerate() {
                    out.extend_from_slice(format!("{i}) {} -> {}\n", row.name, row.ip).as_bytes());
                }
            }
            Details::Entries(rows) => {
                out.extend_from_slice(format!("total entries: {}\n", rows.len()).as_bytes());
                for (i, row) in rows.iter().enumerate() {
                    entry_line(&mut out, i, row);
                }
            }
            Details::Entry(row) => entry_line(&mut out, 0, row),
            Details::Stats { entries, queue_len } => {
                out.extend_from_slice(
                    format!("entries: {entries}, qlen: {queue_len}\n").as_bytes(),
                );
            }
        }
        out
    }

    /// The JSON rendering (`json.Marshal`, or `json.MarshalIndent(.., "", "  ")` if
    /// `pretty`).
    pub(crate) fn json(&self, pretty: bool) -> Vec<u8> {
        let value = Json::Obj(vec![
            ("message", Json::str(self.message)),
            ("details", self.details.json()),
        ]);
        let mut out = Vec::new();
        value.write(&mut out, pretty.then_some(0));
        out
    }
}

impl Details {
    fn json(&self) -> Json {
        match self {
            Details::None => Json::Null,
            Details::Info(info) => Json::Obj(vec![("info", Json::str(info))]),
            Details::Error(err) => Json::Obj(vec![("error", Json::str(err))]),
            Details::Usage(usage) => Json::Obj(vec![("usage", Json::str(usage))]),
            Details::Peers(rows) => table(
                rows.iter()
                    .map(|r| {
                        // The key really is "-=name": a typo in Go's struct tag.
                        Json::Obj(vec![
                            ("-=name", Json::str(&r.name)),
                            ("ip", Json::str(&r.ip)),
                        ])
                    })
                    .collect(),
            ),
            Details::Entries(rows) => table(rows.iter().map(EntryRow::json).collect()),
            Details::Entry(row) => row.json(),
            Details::Stats { entries, queue_len } => Json::Obj(vec![
                ("entries", Json::Int(*entries)),
                // Go's tag is misspelled (`jsoin`), so the field name is the key.
                ("QueueLen", Json::Int(*queue_len)),
            ]),
        }
    }
}

impl EntryRow {
    fn json(&self) -> Json {
        Json::Obj(vec![
            ("key", Json::Str(self.key.clone())),
            ("value", Json::Str(self.value.clone())),
            ("owner", Json::Str(self.owner.clone())),
        ])
    }
}

/// `TableObj`: a nil Go slice marshals as `null`.
fn table(elements: Vec<Json>) -> Json {
    let size = i64::try_from(elements.len()).unwrap_or(i64::MAX);
    let entries = if elements.is_empty() {
        Json::Null
    } else {
        Json::Arr(elements)
    };
    Json::Obj(vec![("size", Json::Int(size)), ("entries", entries)])
}

fn entry_line(out: &mut Vec<u8>, index: usize, row: &EntryRow) {
    out.extend_from_slice(format!("{index}) k:`").as_bytes());
    out.extend_from_slice(&row.key);
    out.extend_from_slice(b"` -> v:`");
    out.extend_from_slice(&row.value);
    out.extend_from_slice(b"` owner:`");
    out.extend_from_slice(&row.owner);
    out.extend_from_slice(b"`\n");
}

/// A JSON value, written the way Go's `encoding/json` writes it.
#[derive(Debug)]
enum Json {
    Null,
    Int(i64),
    /// Go strings are bytes: invalid UTF-8 is written as `\ufffd`.
    Str(Vec<u8>),
    /// Fields in struct order.
    Obj(Vec<(&'static str, Json)>),
    Arr(Vec<Json>),
}

impl Json {
    fn str(s: &str) -> Self {
        Self::Str(s.as_bytes().to_vec())
    }

    /// Writes the value; `indent` is the current depth when pretty-printing.
    fn write(&self, out: &mut Vec<u8>, indent: Option<usize>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Json::Str(s) => write_string(out, s),
            Json::Obj(fields) => {
                if fields.is_empty() {
                    out.extend_from_slice(b"{}");
                    return;
                }
                out.push(b'{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    newline(out, indent.map(|d| d + 1));
                    write_string(out, key.as_bytes());
                    out.push(b':');
                    if indent.is_some() {
                        out.push(b' ');
                    }
                    value.write(out, indent.map(|d| d + 1));
                }
                newline(out, indent);
                out.push(b'}');
            }
            Json::Arr(items) => {
                if items.is_empty() {
                    out.extend_from_slice(b"[]");
                    return;
                }
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    newline(out, indent.map(|d| d + 1));
                    item.write(out, indent.map(|d| d + 1));
                }
                newline(out, indent);
                out.push(b']');
            }
        }
    }
}

/// In pretty mode, a newline and two spaces per level.
fn newline(out: &mut Vec<u8>, indent: Option<usize>) {
    if let Some(depth) = indent {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', 2 * depth));
    }
}

/// Go's `appendString` with HTML escaping (the `json.Marshal` default).
fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = s;
    while let Some(&b) = rest.first() {
        if b < 0x80 {
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'<' | b'>' | b'&' | 0..0x20 => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                _ => out.push(b),
            }
            rest = &rest[1..];
            continue;
        }
        match first_char(rest) {
            Some(('\u{2028}', len)) => {
                out.extend_from_slice(b"\\u2028");
                rest = &rest[len..];
            }
            Some(('\u{2029}', len)) => {
                out.extend_from_slice(b"\\u2029");
                rest = &rest[len..];
            }
            Some((_, len)) => {
                out.extend_from_slice(&rest[..len]);
                rest = &rest[len..];
            }
            None => {
                out.extend_from_slice(b"\\ufffd");
                rest = &rest[1..];
            }
        }
    }
    out.push(b'"');
}

/// The first character of `s` and its length, or `None` if `s` does not start with valid
/// UTF-8 (Go then consumes one byte).
fn first_char(s: &[u8]) -> Option<(char, usize)> {
    let head = &s[..s.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(v) => v,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let c = valid.chars().next()?;
    Some((c, c.len_utf8()))
}

/// Bytes as a Go string converted to text: each invalid byte becomes U+FFFD.
pub(crate) fn go_lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len());
                out.extend(std::iter::repeat_n('\u{fffd}', bad));
                rest = &after[bad..];
            }
        }
    }
}

/// At most `max` bytes of `body` as text, for the request log.
pub(crate) fn snippet(body: &[u8], max: usize) -> String {
    let mut text = go_lossy(&body[..body.len().min(max)]);
    if body.len() > max {
        let _ = write!(text, "...({} bytes)", body.len());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Reply) -> String {
        String::from_utf8(r.text()).unwrap()
    }

    fn json(r: &Reply) -> String {
        String::from_utf8(r.json(false)).unwrap()
    }

    #[test]
    fn envelopes() {
        assert_eq!(text(&Reply::ok()), "OK");
        assert_eq!(json(&Reply::ok()), r#"{"message":"OK","details":null}"#);
        assert_eq!(text(&Reply::info("OK")), "OK\nOK");
        assert_eq!(
            json(&Reply::info("OK")),
            r#"{"message":"OK","details":{"info":"OK"}}"#
        );
        assert_eq!(text(&Reply::fail("boom")), "FAIL\nError: boom");
        assert_eq!(
            json(&Reply::fail("boom")),
            r#"{"message":"FAIL","details":{"error":"boom"}}"#
        );
        assert_eq!(
            text(&Reply::missing("/x?nid=test")),
            "missing parameter\nUsage: /x?nid=test"
        );
        assert_eq!(
            text(&Reply::not_implemented("/foo")),
            "not implemented\nUsage: URL path: /foo no method implemented check /help\n"
        );
        assert_eq!(
            json(&Reply::not_implemented("/foo")),
            r#"{"message":"not implemented","details":{"usage":"URL path: /foo no method implemented check /help\n"}}"#
        );
    }

    #[test]
    fn tables_and_stats() {
        let peers = Reply::succeed(Details::Peers(vec![PeerRow {
            name: "a@1".into(),
            ip: "127.0.0.1".into(),
        }]));
        assert_eq!(text(&peers), "OK\ntotal entries: 1\n0) a@1 -> 127.0.0.1\n");
        assert_eq!(
            json(&peers),
            r#"{"message":"OK","details":{"size":1,"entries":[{"-=name":"a@1","ip":"127.0.0.1"}]}}"#
        );
        let empty = Reply::succeed(Details::Entries(Vec::new()));
        assert_eq!(text(&empty), "OK\ntotal entries: 0\n");
        assert_eq!(
            json(&empty),
            r#"{"message":"OK","details":{"size":0,"entries":null}}"#
        );
        let entry = Reply::succeed(Details::Entry(EntryRow {
            key: b"k".to_vec(),
            value: b"dg==".to_vec(),
            owner: Vec::new(),
        }));
        assert_eq!(text(&entry), "OK\n0) k:`k` -> v:`dg==` owner:``\n");
        assert_eq!(
            json(&entry),
            r#"{"message":"OK","details":{"key":"k","value":"dg==","owner":""}}"#
        );
        let stats = Reply::succeed(Details::Stats {
            entries: -1,
            queue_len: -1,
        });
        assert_eq!(text(&stats), "OK\nentries: -1, qlen: -1\n");
        assert_eq!(
            json(&stats),
            r#"{"message":"OK","details":{"entries":-1,"QueueLen":-1}}"#
        );
    }

    #[test]
    fn pretty_is_go_marshal_indent() {
        let r = Reply::succeed(Details::Entries(vec![EntryRow {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            owner: b"o".to_vec(),
        }]));
        let want = "{\n  \"message\": \"OK\",\n  \"details\": {\n    \"size\": 1,\n    \"entries\": [\n      {\n        \"key\": \"k\",\n        \"value\": \"v\",\n        \"owner\": \"o\"\n      }\n    ]\n  }\n}";
        assert_eq!(String::from_utf8(r.json(true)).unwrap(), want);
        assert_eq!(
            String::from_utf8(Reply::ok().json(true)).unwrap(),
            "{\n  \"message\": \"OK\",\n  \"details\": null\n}"
        );
    }

    #[test]
    fn strings_escape_like_go() {
        let mut out = Vec::new();
        write_string(
            &mut out,
            b"a\"\\<>&\n\r\t\x08\x0c\x01\x7f\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9\xff\xe2\x82A\xef\xbf\xbd",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"\\\\\\u003c\\u003e\\u0026\\n\\r\\t\\b\\f\\u0001\u{7f}\u{e9}\\u2028\\u2029\\ufffd\\ufffd\\ufffdA\u{fffd}\""
        );
    }

    #[test]
    fn lossy_is_per_byte() {
        assert_eq!(go_lossy(b"a\xe2\x82Ab\xff"), "a\u{fffd}\u{fffd}Ab\u{fffd}");
        assert_eq!(snippet(b"abcdef", 3), "abc...(6 bytes)");
        assert_eq!(snippet(b"abc", 3), "abc");
    }
}
