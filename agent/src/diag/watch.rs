//! The tables watched through `/watchtable` and their live entries (libnetwork's dbserver
//! "dummyclient").

use std::collections::BTreeMap;

use bytes::Bytes;
use networkdb::{Key, TableName, WatchEvent, WatchId};

/// Watched tables by name.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    tables: BTreeMap<TableName, WatchedTable>,
}

/// One watched table: its NetworkDB watch and the entries it reported, by key (all
/// networks together, as the Go client keeps them).
#[derive(Debug)]
struct WatchedTable {
    /// Kept so the watch is registered once; never cancelled, as in Go.
    _id: WatchId,
    entries: BTreeMap<Key, Bytes>,
}

impl Watched {
    /// Whether `table` is watched.
    pub(crate) fn contains(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    /// Records a new watch of `table` and the snapshot NetworkDB returned with it.
    pub(crate) fn insert(&mut self, table: TableName, id: WatchId, snapshot: &[WatchEvent]) {
        let mut watched = WatchedTable {
            _id: id,
            entries: BTreeMap::new(),
        };
        for ev in snapshot {
            watched.apply(ev);
        }
        self.tables.insert(table, watched);
    }

    /// Applies an event to its table if watched: a create or update stores the value (the Go
    /// client crashes on an update; here it replaces), a delete removes the key.
    pub(crate) fn apply(&mut self, ev: &WatchEvent) {
        if let Some(table) = self.tables.get_mut(&ev.table) {
            table.apply(ev);
        }
    }

    /// The `/watchedtableentries` body for `table`: `None` if it is not watched.
    pub(crate) fn render(&self, table: &str) -> Option<Vec<u8>> {
        let watched = self.tables.get(table)?;
        let mut out = format!("total elements: {}\n", watched.entries.len()).into_bytes();
        for (i, (key, value)) in watched.entries.iter().enumerate() {
            out.extend_from_slice(format!("{i}) k:`{key}` -> v:`").as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(b"`\n");
        }
        Some(out)
    }
}

impl WatchedTable {
    fn apply(&mut self, ev: &WatchEvent) {
        match &ev.value {
            Some(value) => {
                self.entries.insert(ev.key.clone(), value.clone());
            }
            None => {
                self.entries.remove(&ev.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(table: &str, key: &str, prev: Option<&str>, value: Option<&str>) -> WatchEvent {
        WatchEvent {
            table: table.into(),
            network: "n".into(),
            key: key.into(),
            prev: prev.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    #[test]
    fn create_update_delete() {
        let mut w = Watched::default();
        assert!(w.render("t").is_none());
        w.apply(&ev("t", "ignored", None, Some("x")));
        w.insert("t".into(), WatchId(0), &[ev("t", "a", None, Some("1"))]);
        assert!(w.contains("t"));
        w.apply(&ev("t", "b", None, Some("2")));
        w.apply(&ev("t", "a", Some("1"), Some("3")));
        w.apply(&ev("other", "c", None, Some("4")));
        assert_eq!(
            w.render("t").unwrap(),
            b"total elements: 2\n0) k:`a` -> v:`3`\n1) k:`b` -> v:`2`\n"
        );
        w.apply(&ev("t", "a", Some("3"), None));
        w.apply(&ev("t", "zz", Some("3"), None));
        assert_eq!(
            w.render("t").unwrap(),
            b"total elements: 1\n0) k:`b` -> v:`2`\n"
        );
    }
}
