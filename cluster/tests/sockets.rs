//! Five nodes on loopback with real UDP and TCP sockets, mutual TLS and the keyring:
//! membership, replication, failure, restart, graceful leave.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{Pki, entries, eventually, members, opts, start};
use networkdb::NodeState;

const T: Duration = Duration::from_secs(20);

async fn cluster(pki: &Pki, n: usize) -> (Vec<cluster::shell::Handle>, Vec<std::net::SocketAddr>) {
    let mut handles = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let (h, addr) = start(opts(pki, &format!("node{i}"), 1), None).await;
        handles.push(h);
        addrs.push(addr);
    }
    for h in &handles[1..] {
        h.join(vec![addrs[0]]).await.unwrap();
    }
    for (i, h) in handles.iter().enumerate() {
        assert!(
            eventually(T, || async { members(h).await == n - 1 }).await,
            "node{i} members"
        );
    }
    for h in &handles {
        h.with_node(|n, now| n.db_mut().join_network(now, "net".into()))
            .await
            .unwrap()
            .unwrap();
    }
    (handles, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_replicate_create_update_delete() {
    let pki = Pki::new("ca");
    let (handles, _) = cluster(&pki, 5).await;
    for (i, h) in handles.iter().enumerate() {
        h.with_node(move |n, now| {
            n.db_mut().create_entry(
                now,
                "t".into(),
                "net".into(),
                format!("k{i}").into(),
                vec![1],
            )
        })
        .await
        .unwrap()
        .unwrap();
    }
    for (i, h) in handles.iter().enumerate() {
        assert!(
            eventually(T, || async { entries(h, "t", "net").await == 5 }).await,
            "node{i}"
        );
    }
    handles[0]
        .with_node(|n, now| {
            n.db_mut()
                .update_entry(now, "t".into(), "net".into(), "k0".into(), vec![2])
        })
        .await
        .unwrap()
        .unwrap();
    handles[1]
        .with_node(|n, now| {
            n.db_mut()
                .delete_entry(now, "t".into(), "net".into(), "k1".into())
        })
        .await
        .unwrap()
        .unwrap();
    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async {
            h.with_node(|n, _| {
                let t = n.db().table_by_network("t", "net");
                t.len() == 4 && t.get("k0").is_some_and(|e| e.value.as_ref() == [2])
            })
            .await
            .unwrap_or(false)
        })
        .await;
        assert!(ok, "node{i} sees the update and the delete");
    }
    for h in handles {
        h.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_failed_then_restart_rejoins_and_graceful_leave_removes() {
    let pki = Pki::new("ca");
    let (mut handles, addrs) = cluster(&pki, 5).await;
    for (i, h) in handles.iter().enumerate() {
        h.with_node(move |n, now| {
            n.db_mut().create_entry(
                now,
                "t".into(),
                "net".into(),
                format!("k{i}").into(),
                vec![1],
            )
        })
        .await
        .unwrap()
        .unwrap();
    }
    for h in &handles {
        assert!(eventually(T, || async { entries(h, "t", "net").await == 5 }).await);
    }

    // Kill node4 without a goodbye: the others mark it failed and hide its entry.
    let old = handles.pop().unwrap();
    let old_name = old.with_node(|n, _| n.identity().db_name()).await.unwrap();
    old.kill();
    for (i, h) in handles.iter().enumerate() {
        let name = old_name.clone();
        let ok = eventually(T, || {
            let name = name.clone();
            async move {
                h.with_node(move |n, _| {
                    n.db().node_state(name.as_str()) == Some(NodeState::Failed)
                        && n.db().table_by_network("t", "net").len() == 4
                })
                .await
                .unwrap_or(false)
            }
        })
        .await;
        assert!(
            ok,
            "node{i} marks the killed node failed and hides its entry"
        );
    }

    // Restart it at the same address with a new incarnation; it republishes its entry.
    let (h4, _) = start(opts(&pki, "node4", 2), Some(addrs[4])).await;
    h4.join(vec![addrs[0]]).await.unwrap();
    assert!(
        eventually(T, || async { members(&h4).await == 4 }).await,
        "restarted node rejoins"
    );
    h4.with_node(|n, now| {
        n.db_mut().join_network(now, "net".into()).unwrap();
        n.db_mut()
            .create_entry(now, "t".into(), "net".into(), "k4".into(), vec![4])
    })
    .await
    .unwrap()
    .unwrap();
    handles.push(h4);
    for (i, h) in handles.iter().enumerate() {
        assert!(
            eventually(T, || async { entries(h, "t", "net").await == 5 }).await,
            "node{i}"
        );
    }

    // A graceful leave removes the leaver's entry everywhere at once (no failure wait).
    let leaver = handles.remove(1);
    leaver.leave().await;
    for (i, h) in handles.iter().enumerate() {
        assert!(
            eventually(T, || async { entries(h, "t", "net").await == 4 }).await,
            "node{i}"
        );
    }
    for h in handles {
        h.kill();
    }
}
