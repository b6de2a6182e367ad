//! `/stackdump`: there are no goroutines to dump, so the file holds the node's state instead,
//! named and announced like Go's `stack.DumpToFile("/tmp/")`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use cluster::Node;

/// Where dumps are written (Go writes to `/tmp/` too).
pub(crate) const DUMP_DIR: &str = "/tmp";

/// The dump's path for a dump taken at `at`: `/tmp/netagent-stacks-<timestamp>.log`, the
/// timestamp being RFC 3339 in UTC without colons, as Go names its file.
pub(crate) fn dump_path(at: SystemTime) -> String {
    format!("{DUMP_DIR}/netagent-stacks-{}.log", compact_rfc3339(at))
}

/// `2026-11-28T134452Z`: Go's `time.RFC3339` in UTC with the colons removed.
pub(crate) fn compact_rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// A short human-readable dump of the node's state.
pub(crate) fn state_dump(node: &Node, taken: &str) -> String {
    let id = node.identity();
    let db = node.db();
    let mut out = String::new();
    let _ = writeln!(out, "netagent state dump, {taken}");
    let _ = writeln!(
        out,
        "node {} (NetworkDB name {}) at {}, incarnation {}, rejoins {}",
        id.name,
        id.db_name(),
        id.addr,
        id.incarnation,
        id.bump
    );
    let members = node.members();
    let _ = writeln!(out, "\nSWIM members ({}, self excluded):", members.len());
    for m in &members {
        let _ = writeln!(out, "  {} at {}", m.db_name(), m.addr);
    }
    let peers = db.cluster_peers();
    let _ = writeln!(out, "\nNetworkDB cluster peers ({}):", peers.len());
    for p in &peers {
        let addr = p
            .addr
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let _ = writeln!(out, "  {} at {addr}", p.name);
    }
    let networks = db.networks();
    let _ = writeln!(out, "\nnetworks joined ({}):", networks.len());
    for nid in &networks {
        match db.network_stats(nid) {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "  {nid}: entries {}, qlen {}, peers {}, in sync {}",
                    s.entries,
                    s.queue_len,
                    s.peers,
                    db.is_in_sync(nid)
                );
            }
            None => {
                let _ = writeln!(out, "  {nid}");
            }
        }
        for table in db.tables(nid) {
            let visible = db.table_by_network(&table, nid).len();
            let _ = writeln!(out, "    table {table}: {visible} visible entries");
        }
    }
    let (network_clock, table_clock) = db.clocks();
    let _ = writeln!(
        out,
        "\nclocks: network {network_clock}, table {table_clock}; cluster queue {}",
        db.cluster_queue_len()
    );
    let _ = writeln!(out, "\nnode stats: {:?}", node.stats());
    let _ = writeln!(out, "NetworkDB stats: {:?}", db.stats());
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_go_rfc3339_without_colons() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(compact_rfc3339(at(0)), "1970-01-01T000000Z");
        assert_eq!(compact_rfc3339(at(951_782_400)), "2000-02-29T000000Z");
        assert_eq!(compact_rfc3339(at(1_795_873_492)), "2026-11-28T134452Z");
        assert_eq!(
            dump_path(at(1_795_873_492)),
            "/tmp/netagent-stacks-2026-11-28T134452Z.log"
        );
    }
}
