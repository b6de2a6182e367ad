//! The endpoints: parameters in, one call on the node, the reply libnetwork gives.
//!
//! Usage texts, error texts and the order parameters are checked in follow
//! `networkdb/networkdbdiagnostic.go` and the dbserver of libnetwork. Where NetworkDB here
//! answers differently from Go's NetworkDB, the endpoint translates:
//!
//! * joining a joined network is `OK`;
//! * leaving a network being left is `OK`, leaving one never joined fails with Go's text;
//! * creating over a tombstone fails with "already exists" until the tombstone is reaped.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cluster::Node;
use networkdb::{Error, Key, NetworkId, PeerInfo, TableName, WatchFilter};

use super::form::Form;
use super::reply::{Details, EntryRow, PeerRow, Reply, go_lossy};
use super::{Answer, DiagState, Endpoint, PATHS, lock, stackdump};
use crate::base64;

/// How long `/join` waits for a member name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// `/createentry` or `/updateentry`.
#[derive(Clone, Copy, Debug)]
enum Write {
    Create,
    Update,
}

impl DiagState {
    /// Runs `endpoint` for a request to `path` with parameters `form`.
    pub(super) async fn answer(&self, endpoint: Endpoint, path: &str, form: &Form) -> Answer {
        let json = form.has("json");
        let pretty = form.get("json") == Some(b"pretty");
        let reply = match endpoint {
            Endpoint::Root => Reply::not_implemented(path),
            Endpoint::Help => {
                Reply::info(PATHS.iter().map(|p| format!("{p}\n")).collect::<String>())
            }
            Endpoint::Ready => Reply::info("OK"),
            Endpoint::Stackdump => self.stackdump().await,
            Endpoint::Join => self.join(form).await,
            Endpoint::NetworkPeers => self.network_peers(form).await,
            Endpoint::ClusterPeers => self.cluster_peers().await,
            Endpoint::JoinNetwork => self.join_network(form).await,
            Endpoint::LeaveNetwork => self.leave_network(form).await,
            Endpoint::CreateEntry => self.write_entry(form, Write::Create).await,
            Endpoint::UpdateEntry => self.write_entry(form, Write::Update).await,
            Endpoint::DeleteEntry => self.delete_entry(form).await,
            Endpoint::GetEntry => self.get_entry(form).await,
            Endpoint::GetTable => self.get_table(form).await,
            Endpoint::NetworkStats => self.network_stats(form).await,
            // The dbserver's own handlers write plain text and ignore `json`.
            Endpoint::MyIp => return Answer::text(format!("{}\n", self.inner.my_ip)),
            Endpoint::WatchTable => return self.watch_table(form).await,
            Endpoint::WatchedTableEntries => return self.watched_entries(form),
        };
        let body = if json {
            reply.json(pretty)
        } else {
            reply.text()
        };
        Answer { json, body }
    }

    /// Runs `f` on the node; a stopped node is a `FAIL` reply.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> R + Send + 'static,
    ) -> Result<R, Reply> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (self.inner.run)(Box::new(move |node, now| {
            let _ = tx.send(f(node, now));
        }))
        .await
        .map_err(Reply::fail)?;
        rx.await.map_err(|_| Reply::fail(cluster::shell::Stopped))
    }

    async fn stackdump(&self) -> Reply {
        let now = SystemTime::now();
        let path = stackdump::dump_path(now);
        let taken = stackdump::compact_rfc3339(now);
        let dump = match self
            .run(move |node, _| stackdump::state_dump(node, &taken))
            .await
        {
            Ok(dump) => dump,
            Err(reply) => return reply,
        };
        // A new file only (never through a link planted in /tmp), readable by the owner only:
        // the dump names the cluster's members and networks.
        let written = async {
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .await?;
            file.write_all(dump.as_bytes()).await?;
            file.flush().await
        };
        match written.await {
            // Go's wording, so that tools looking for "written to <path>" find the file.
            Ok(()) => Reply::info(format!("goroutine stacks written to {path}")),
            Err(err) => Reply::fail(format!("failed to write the state dump to {path}: {err}")),
        }
    }

    /// `/join?members=a,b`: resolves each member (host or host:port) and joins through all
    /// that resolve. Fails, as memberlist does, only when none resolves; whether the seeds
    /// answer is not awaited (the node keeps announcing to them until one does).
    async fn join(&self, form: &Form) -> Reply {
        let Some([members]) = form.require(["members"]) else {
            return Reply::missing("/join?members=ip1,ip2,...");
        };
        let members = go_lossy(members);
        let mut seeds = Vec::new();
        let mut errors = Vec::new();
        for member in members.split(',') {
            match resolve(member, self.inner.default_port).await {
                Ok(addrs) => seeds.extend(addrs),
                Err(err) => errors.push(format!("Failed to resolve {member}: {err}")),
            }
        }
        if seeds.is_empty() {
            return Reply::fail(format!(
                "/join error in the DB join could not join node to memberlist: {}",
                multierror(&errors)
            ));
        }
        match self.run(move |node, now| node.join(now, seeds)).await {
            Ok(()) => Reply::ok(),
            Err(reply) => reply,
        }
    }

    async fn network_peers(&self, form: &Form) -> Reply {
        let Some([nid]) = form.require(["nid"]) else {
            return Reply::missing("/networkpeers?nid=test");
        };
        let nid = go_lossy(nid);
        match self.run(move |node, _| node.db().peers(&nid)).await {
            Ok(peers) => peer_table(peers),
            Err(reply) => reply,
        }
    }

    async fn cluster_peers(&self) -> Reply {
        match self.run(|node, _| node.db().cluster_peers()).await {
            Ok(peers) => peer_table(peers),
            Err(reply) => reply,
        }
    }

    async fn join_network(&self, form: &Form) -> Reply {
        let Some([nid]) = form.require(["nid"]) else {
            return Reply::missing("/joinnetwork?nid=network_id");
        };
        let nid = NetworkId::from(go_lossy(nid));
        match self
            .run(move |node, now| node.db_mut().join_network(now, nid))
            .await
        {
            Ok(Ok(()) | Err(Error::AlreadyJoined(_))) => Reply::ok(),
            Ok(Err(err)) => Reply::fail(err),
            Err(reply) => reply,
        }
    }

    async fn leave_network(&self, form: &Form) -> Reply {
        let Some([nid]) = form.require(["nid"]) else {
            return Reply::missing("/leavenetwork?nid=network_id");
        };
        let nid = NetworkId::from(go_lossy(nid));
        let res = self
            .run(move |node, now| {
                let db = node.db_mut();
                match db.leave_network(now, nid.clone()) {
                    Ok(()) => Ok(()),
                    // Go keeps a left network until it is reaped: leaving it again is OK.
                    Err(Error::NotJoined(_)) if db.network_stats(&nid).is_some() => Ok(()),
                    Err(err) => Err(err.to_string()),
                }
            })
            .await;
        done(res)
    }

    async fn write_entry(&self, form: &Form, op: Write) -> Reply {
        let Some([tname, nid, key, value]) = form.require(["tname", "nid", "key", "value"]) else {
            return Reply::missing(match op {
                Write::Create => "/createentry?tname=table_name&nid=network_id&key=k&value=v",
                Write::Update => "/updateentry?tname=table_name&nid=network_id&key=k&value=v",
            });
        };
        let value = if form.has("unsafe") {
            value.to_vec()
        } else {
            match base64::decode(value) {
                Ok(value) => value,
                Err(err) => return Reply::fail(err),
            }
        };
        let (table, network, key) = names(tname, nid, key);
        let res = self
            .run(move |node, now| {
                let db = node.db_mut();
                let res = match op {
                    Write::Create => {
                        if let Err(Error::Deleted { .. }) = db.get_entry(&table, &network, &key) {
                            // Go's CreateEntry refuses tombstones too, until they are reaped.
                            return Err(format!(
                                "cannot create entry in table {table} with network id {network} \
                                 and key {key}, already exists"
                            ));
                        }
                        db.create_entry(now, table, network, key, value)
                    }
                    Write::Update => db.update_entry(now, table, network, key, value),
                };
                res.map_err(|err| err.to_string())
            })
            .await;
        done(res)
    }

    async fn delete_entry(&self, form: &Form) -> Reply {
        let Some([tname, nid, key]) = form.require(["tname", "nid", "key"]) else {
            return Reply::missing("/deleteentry?tname=table_name&nid=network_id&key=k");
        };
        let (table, network, key) = names(tname, nid, key);
        let res = self
            .run(move |node, now| {
                node.db_mut()
                    .delete_entry(now, table, network, key)
                    .map_err(|err| err.to_string())
            })
            .await;
        done(res)
    }

    /// `/getentry`: the owner is always empty, as in Go.
    async fn get_entry(&self, form: &Form) -> Reply {
        let Some([tname, nid, key]) = form.require(["tname", "nid", "key"]) else {
            return Reply::missing("/getentry?tname=table_name&nid=network_id&key=k");
        };
        let raw = form.has("unsafe");
        let key_bytes = key.to_vec();
        let (table, network, key) = names(tname, nid, key);
        match self
            .run(move |node, _| node.db().get_entry(&table, &network, &key))
            .await
        {
            Ok(Ok(value)) => Reply::succeed(Details::Entry(EntryRow {
                key: key_bytes,
                value: encode(&value, raw),
                owner: Vec::new(),
            })),
            Ok(Err(err)) => Reply::fail(err),
            Err(reply) => reply,
        }
    }

    /// `/gettable`: visible entries only (no tombstones), by key.
    async fn get_table(&self, form: &Form) -> Reply {
        let Some([tname, nid]) = form.require(["tname", "nid"]) else {
            return Reply::missing("/gettable?tname=table_name&nid=network_id");
        };
        let raw = form.has("unsafe");
        let table = go_lossy(tname);
        let network = go_lossy(nid);
        match self
            .run(move |node, _| node.db().table_by_network(&table, &network))
            .await
        {
            Ok(entries) => Reply::succeed(Details::Entries(
                entries
                    .into_iter()
                    .map(|(key, elem)| EntryRow {
                        key: key.as_bytes().to_vec(),
                        value: encode(&elem.value, raw),
                        owner: elem.owner.as_bytes().to_vec(),
                    })
                    .collect(),
            )),
            Err(reply) => reply,
        }
    }

    /// `/networkstats`: entries count tombstones; -1/-1 for a network not known locally.
    async fn network_stats(&self, form: &Form) -> Reply {
        let Some([nid]) = form.require(["nid"]) else {
            return Reply::missing("/networkstats?nid=test");
        };
        let nid = go_lossy(nid);
        match self.run(move |node, _| node.db().network_stats(&nid)).await {
            Ok(stats) => {
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                Reply::succeed(Details::Stats {
                    entries: stats.map_or(-1, |s| count(s.entries)),
                    queue_len: stats.map_or(-1, |s| count(s.queue_len)),
                })
            }
            Err(reply) => reply,
        }
    }

    /// `/watchtable`: watches the table in every network, once. Text only.
    async fn watch_table(&self, form: &Form) -> Answer {
        let Some([tname]) = form.require(["tname"]) else {
            return Answer::text(Reply::missing("/watchtable?tname=table_name").text());
        };
        let table = TableName::from(go_lossy(tname));
        if self.watched().contains(&table) {
            return Answer::text("OK\n");
        }
        let inner = Arc::clone(&self.inner);
        let res = self
            .run(move |node, _| {
                // Recorded inside the node's task, before it can emit any event of this watch.
                let mut watched = lock(&inner.watched);
                if !watched.contains(&table) {
                    let filter = WatchFilter {
                        table: Some(table.clone()),
                        network: None,
                        own: false,
                    };
                    let (id, snapshot) = node.db_mut().watch(filter);
                    watched.insert(table, id, &snapshot);
                }
            })
            .await;
        match res {
            Ok(()) => Answer::text("OK\n"),
            Err(reply) => Answer::text(reply.text()),
        }
    }

    /// `/watchedtableentries`: the live entries the watch reported. Text only.
    fn watched_entries(&self, form: &Form) -> Answer {
        let Some([tname]) = form.require(["tname"]) else {
            return Answer::text(Reply::missing("/watchedtableentries?tname=table_name").text());
        };
        let table = go_lossy(tname);
        match self.watched().render(&table) {
            Some(body) => Answer::text(body),
            None => Answer::text(format!("Table {table} not watched\n")),
        }
    }
}

/// `OK`, or `FAIL` with the error.
fn done(res: Result<Result<(), String>, Reply>) -> Reply {
    match res {
        Ok(Ok(())) => Reply::ok(),
        Ok(Err(err)) => Reply::fail(err),
        Err(reply) => reply,
    }
}

fn names(tname: &[u8], nid: &[u8], key: &[u8]) -> (TableName, NetworkId, Key) {
    (
        TableName::from(go_lossy(tname)),
        NetworkId::from(go_lossy(nid)),
        Key::from(go_lossy(key)),
    )
}

/// A value as the API shows it: raw if `unsafe`, else base64.
fn encode(value: &[u8], raw: bool) -> Vec<u8> {
    if raw {
        value.to_vec()
    } else {
        base64::encode(value).into_bytes()
    }
}

/// Peers sorted by name (Go lists them in random map order).
fn peer_table(mut peers: Vec<PeerInfo>) -> Reply {
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    Reply::succeed(Details::Peers(peers.into_iter().map(peer_row).collect()))
}

/// A peer line; a peer whose address is unknown is an orphan, as libnetwork lists it.
fn peer_row(peer: PeerInfo) -> PeerRow {
    match peer.addr {
        Some(addr) => PeerRow {
            name: peer.name.to_string(),
            ip: addr.ip().to_canonical().to_string(),
        },
        None => PeerRow {
            name: format!("orphan-{}", peer.name),
            ip: "unknown".to_owned(),
        },
    }
}

/// A `/join` member: `ip`, `ip:port`, `[v6]:port`, `host` or `host:port`; without a port,
/// `default_port`.
async fn resolve(member: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = member.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let bare = member
        .strip_prefix('[')
        .and_then(|m| m.strip_suffix(']'))
        .unwrap_or(member);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, default_port)]);
    }
    let (host, port) = match member.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, port),
            Err(_) => return Err(format!("invalid port {port:?}")),
        },
        None => (member, default_port),
    };
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)));
    let addrs: Vec<SocketAddr> = match lookup.await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(err)) => return Err(format!("lookup {host}: {err}")),
        Err(_) => return Err(format!("lookup {host}: timed out")),
    };
    if addrs.is_empty() {
        return Err(format!("lookup {host}: no such host"));
    }
    Ok(addrs)
}

/// hashicorp/go-multierror's list format.
fn multierror(errors: &[String]) -> String {
    if let [one] = errors {
        return format!("1 error occurred:\n\t* {one}\n\n");
    }
    let points: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    format!(
        "{} errors occurred:\n\t{}\n\n",
        errors.len(),
        points.join("\n\t")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn members_resolve_with_default_port() {
        let one = |s: &str| vec![s.parse::<SocketAddr>().unwrap()];
        assert_eq!(
            resolve("127.0.0.1", 7946).await.unwrap(),
            one("127.0.0.1:7946")
        );
        assert_eq!(
            resolve("127.0.0.1:9", 7946).await.unwrap(),
            one("127.0.0.1:9")
        );
        assert_eq!(resolve("::1", 7946).await.unwrap(), one("[::1]:7946"));
        assert_eq!(resolve("[::1]", 7946).await.unwrap(), one("[::1]:7946"));
        assert_eq!(resolve("[::1]:9", 7946).await.unwrap(), one("[::1]:9"));
        assert_eq!(
            resolve("127.0.0.1:x", 7946).await.unwrap_err(),
            "invalid port \"x\""
        );
        assert_eq!(resolve("", 7946).await.unwrap_err(), "missing host");
    }

    #[test]
    fn multierror_format() {
        assert_eq!(multierror(&["a".into()]), "1 error occurred:\n\t* a\n\n");
        assert_eq!(
            multierror(&["a".into(), "b".into()]),
            "2 errors occurred:\n\t* a\n\t* b\n\n"
        );
    }

    #[test]
    fn unknown_peers_are_orphans() {
        let row = peer_row(PeerInfo {
            name: "n@1".into(),
            addr: None,
        });
        assert_eq!(
            (row.name.as_str(), row.ip.as_str()),
            ("orphan-n@1", "unknown")
        );
        let row = peer_row(PeerInfo {
            name: "n@1".into(),
            addr: Some("[::ffff:10.0.0.1]:7946".parse().unwrap()),
        });
        assert_eq!(row.ip, "10.0.0.1");
    }
}
