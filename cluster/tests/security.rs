//! Security of the shell on loopback with real sockets: wrong gossip keys, foreign CAs,
//! impersonation on the stream path, key rotation under load, hostile datagrams, and seeds
//! that restart with new identities.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster::KIND_NETWORKDB;
use cluster::crypto::Keyring;
use cluster::shell::{Handle, TlsIdentity};
use common::{
    LABEL, NodeOpts, Pki, create, eventually, has_key, join_network, key, member_names, members,
    opts, start, stats,
};
use networkdb::wire::{
    BulkSync, Message, NetworkEntry, NodeEvent, NodeEventKind, Part, PushPull, TableEvent,
    TableEventKind,
};
use networkdb::{Key, LTime, NodeName, NodeState, TableElem};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// Generous: every condition here normally holds within a few seconds.
const T: Duration = Duration::from_secs(20);

/// Starts `n` nodes named `node{i}` (incarnation 1) from `pki`; node `i > 0` joins through
/// the addresses of the first `seeds` nodes. Waits until every node lists `n - 1` members.
/// Nobody is attached to a network yet.
async fn cluster(pki: &Pki, n: usize, seeds: usize) -> (Vec<Handle>, Vec<SocketAddr>) {
    let mut handles = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let (h, addr) = start(opts(pki, &format!("node{i}"), 1), None).await;
        handles.push(h);
        addrs.push(addr);
    }
    for (i, h) in handles.iter().enumerate().skip(1) {
        let through: Vec<SocketAddr> = addrs[..seeds.min(i)].to_vec();
        h.join(through).await.unwrap();
    }
    for (i, h) in handles.iter().enumerate() {
        assert!(
            eventually(T, || async { members(h).await == n - 1 }).await,
            "node{i} lists {} members",
            n - 1
        );
    }
    (handles, addrs)
}

/// Attaches every node to network "net".
async fn attach(handles: &[Handle]) {
    for h in handles {
        join_network(h, "net").await;
    }
}

/// Waits until every node shows `key` in t/net.
async fn replicated(handles: &[Handle], key: &str) -> bool {
    for h in handles {
        let ok = eventually(T, || has_key(h, "t", "net", key.to_owned())).await;
        if !ok {
            return false;
        }
    }
    true
}

/// A sealed datagram carrying a valid NetworkDB message: a join of a node nobody knows, at
/// network-clock time `ltime`. A node that opens it changes nothing but witnesses the time,
/// so its network clock shows whether it was accepted.
fn sealed_networkdb(keyring: &Keyring, nonce: [u8; 12], ltime: u64) -> Vec<u8> {
    let msg = Message::NodeEvent(NodeEvent {
        kind: NodeEventKind::Join,
        ltime: LTime(ltime),
        node: NodeName::from("ghost@1"),
    });
    let mut plain = vec![KIND_NETWORKDB];
    plain.extend_from_slice(&msg.encode());
    keyring.seal(nonce, &plain)
}

/// A node's network clock.
async fn network_clock(h: &Handle) -> u64 {
    h.with_node(|n, _| n.db().clocks().0.0).await.unwrap()
}

fn random_nonce(rng: &SystemRandom) -> [u8; 12] {
    let mut n = [0u8; 12];
    rng.fill(&mut n).unwrap();
    n
}

/// 1. A node with the wrong gossip key (but a valid certificate) neither joins nor injects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_gossip_key_cannot_join_nor_inject() {
    let pki = Pki::new("ca");
    let (handles, addrs) = cluster(&pki, 3, 1).await;
    attach(&handles).await;

    let intruder_opts = NodeOpts {
        key: key(9),
        ..opts(&pki, "intruder", 1)
    };
    let (intruder, _) = start(intruder_opts, None).await;
    // It announces to all three, so all three receive its datagrams.
    intruder.join(addrs.clone()).await.unwrap();
    join_network(&intruder, "net").await;
    create(&intruder, "t", "net", "from-intruder".into(), vec![6; 8]).await;

    // Invariant checked at every poll: nobody lists the intruder, it lists nobody, and its
    // entry shows up nowhere.
    let invariant = || async {
        for h in &handles {
            let names = member_names(h).await;
            assert!(!names.iter().any(|n| n == "intruder"), "intruder listed");
            assert!(
                !has_key(h, "t", "net", "from-intruder".into()).await,
                "intruder's entry applied"
            );
        }
        assert_eq!(members(&intruder).await, 0, "the intruder lists a member");
    };

    // Every honest node drops several of its datagrams as unauthenticated.
    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async {
            invariant().await;
            stats(h).await.dropped_unauthenticated >= 3
        })
        .await;
        assert!(
            ok,
            "node{i} counts the intruder's datagrams as unauthenticated"
        );
    }

    // Control: a write made now by an honest node reaches the others, so the cluster is
    // working and gossiping while the intruder's entry still is nowhere.
    create(&handles[0], "t", "net", "control".into(), vec![1]).await;
    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async {
            invariant().await;
            has_key(h, "t", "net", "control".into()).await
        })
        .await;
        assert!(ok, "node{i} gets the control entry");
    }
    invariant().await;

    intruder.kill();
    for h in handles {
        h.kill();
    }
}

/// 2. A node with the right gossip key but a certificate from another CA is a SWIM member,
/// yet TLS keeps it off the stream path in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused_on_the_stream_path() {
    let pki = Pki::new("ca");
    let other = Pki::new("other-ca");
    let (handles, addrs) = cluster(&pki, 3, 1).await;

    // Its certificate is signed by the other CA; it trusts the cluster CA (public), so the
    // honest servers' certificates verify and it is the honest side that refuses it.
    let foreign = other.identity("rogue");
    let tls = TlsIdentity {
        ca: pki.ca_der(),
        chain: foreign.chain,
        key: foreign.key,
    };
    let rogue_opts = NodeOpts {
        tls,
        ..opts(&pki, "rogue", 1)
    };
    let (rogue, _) = start(rogue_opts, None).await;
    rogue.join(vec![addrs[0]]).await.unwrap();

    // SWIM lets it in: it has the gossip key.
    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async {
            member_names(h).await.iter().any(|n| n == "rogue")
        })
        .await;
        assert!(ok, "node{i} lists the rogue as a SWIM member");
    }
    assert!(eventually(T, || async { members(&rogue).await == 3 }).await);

    // Every honest node refuses the handshakes of its push/pull on node up.
    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async { stats(h).await.handshake_failures >= 1 }).await;
        assert!(ok, "node{i} counts the rogue's handshake as failed");
    }

    // Everybody attaches to "net" now: attachments spread by gossip, which the rogue may
    // use, so it learns the honest ones and they learn its (push/pull and bulk sync, on the
    // stream path, fail).
    attach(&handles).await;
    join_network(&rogue, "net").await;
    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async {
            h.with_node(|n, _| n.db().is_attached("net", "rogue@1"))
                .await
                .unwrap()
        })
        .await;
        assert!(ok, "node{i} sees the rogue attached to net");
    }
    for i in 0..handles.len() {
        let name = format!("node{i}@1");
        let ok = eventually(T, || {
            let name = name.clone();
            let rogue = &rogue;
            async move {
                rogue
                    .with_node(move |n, _| n.db().is_attached("net", &name))
                    .await
                    .unwrap()
            }
        })
        .await;
        assert!(ok, "the rogue sees node{i} attached to net");
    }

    // An entry too large for a datagram travels only on the stream path.
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for h in &handles {
            v.push(stats(h).await.handshake_failures);
        }
        v
    };
    create(&rogue, "t", "net", "rogue-big".into(), vec![0xee; 4000]).await;
    assert!(
        rogue
            .with_node(|n, _| n.db().stats().oversized_via_stream)
            .await
            .unwrap()
            >= 1,
        "the rogue's entry went to the stream path"
    );
    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async {
            stats(h).await.handshake_failures > before[i]
        })
        .await;
        assert!(ok, "node{i} refuses the rogue's stream connection");
    }

    // Control: an honest oversized entry made after it reaches the other honest nodes by
    // stream, while the rogue's never arrives and the rogue never gets the honest one.
    create(
        &handles[0],
        "t",
        "net",
        "honest-big".into(),
        vec![0x11; 4000],
    )
    .await;
    let invariant = || async {
        for h in &handles {
            assert!(
                !has_key(h, "t", "net", "rogue-big".into()).await,
                "the rogue's stream entry was applied"
            );
        }
        assert!(
            !has_key(&rogue, "t", "net", "honest-big".into()).await,
            "an honest stream entry reached the rogue"
        );
    };
    for (i, h) in handles.iter().enumerate().skip(1) {
        let ok = eventually(T, || async {
            invariant().await;
            has_key(h, "t", "net", "honest-big".into()).await
        })
        .await;
        assert!(ok, "node{i} gets the honest oversized entry");
    }
    invariant().await;

    rogue.kill();
    for h in handles {
        h.kill();
    }
}

/// A rustls client configuration from a node's TLS material, as the shell builds it.
fn client_config(identity: TlsIdentity) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain, identity.key)
        .unwrap();
    Arc::new(config)
}

/// One stream frame: `[u32 BE length][payload]`.
async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    w.write_all(&len.to_be_bytes()).await.unwrap();
    w.write_all(payload).await.unwrap();
    w.flush().await.unwrap();
}

fn table_event(kind: TableEventKind, owner: &str, key: &str, ltime: u64) -> TableEvent {
    TableEvent {
        kind,
        ltime: LTime(ltime),
        owner: NodeName::from(owner),
        network: "net".into(),
        table: "t".into(),
        key: key.into(),
        value: vec![0x66; 4].into(),
        residual_reap_secs: 0,
    }
}

/// Opens a TLS connection to `addr` (whose certificate must name `server`) with `identity`,
/// as a peer of the cluster would, but by hand.
async fn tls_connect(
    identity: TlsIdentity,
    addr: SocketAddr,
    server: &'static str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(client_config(identity));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(server).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// What a node shows of t/net, and of node0's state and attachment to net.
type View = (BTreeMap<Key, TableElem>, Option<NodeState>, bool);

async fn view_of_node0(h: &Handle) -> View {
    h.with_node(|n, _| {
        (
            n.db().table_by_network("t", "net"),
            n.db().node_state("node0@1"),
            n.db().is_attached("net", "node0@1"),
        )
    })
    .await
    .unwrap()
}

/// 3. A peer with a valid cluster certificate for "mallory" cannot speak for "node0".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_certificate_cannot_claim_another_nodes_name() {
    let pki = Pki::new("ca");
    let (handles, addrs) = cluster(&pki, 2, 1).await;
    attach(&handles).await;
    create(&handles[0], "t", "net", "k0".into(), vec![1]).await;
    assert!(replicated(&handles, "k0").await);
    let target = &handles[1];
    let before = view_of_node0(target).await;
    let base = stats(target).await;
    let base_impersonation = target
        .with_node(|n, _| n.stats().dropped_impersonation)
        .await
        .unwrap();

    // Mallory's own TLS connection to node1, with a valid certificate of the cluster CA.
    let mut tls = tls_connect(pki.identity("mallory"), addrs[1], "node1").await;

    // Were they believed, these would delete node0's k0, add entries in node0's name and
    // detach node0 from "net" (purging its entries).
    let forged_sync = Message::BulkSync(BulkSync {
        ltime: LTime(1_000),
        unsolicited: false,
        node: "node0@1".into(),
        networks: vec!["net".into()],
        attachments: vec![],
        events: vec![
            table_event(TableEventKind::Delete, "node0@1", "k0", 1_000),
            table_event(TableEventKind::Create, "node0@1", "forged", 1_001),
        ],
    });
    let forged_event = Message::TableEvent(table_event(
        TableEventKind::Create,
        "node0@1",
        "forged-event",
        1_002,
    ));
    let forged_push_pull = Message::PushPull(PushPull {
        ltime: LTime(5_000),
        node: "node0@1".into(),
        networks: vec![NetworkEntry {
            network: "net".into(),
            ltime: LTime(5_000),
            node: "node0@1".into(),
            leaving: true,
        }],
        reply: true,
    });
    // A compound that starts in mallory's name and slips node0's event in after it.
    let mixed = Message::Compound(vec![
        Part(
            Message::TableEvent(table_event(TableEventKind::Create, "mallory@1", "m", 5))
                .encode_part(),
        ),
        Part(
            Message::TableEvent(table_event(TableEventKind::Delete, "node0@1", "k0", 1_003))
                .encode_part(),
        ),
    ]);
    let frames = [forged_sync, forged_event, forged_push_pull, mixed];
    for msg in &frames {
        write_frame(&mut tls, &msg.encode()).await;
    }

    let n = frames.len() as u64;
    // Legitimate frames (node0's own syncs) may arrive meanwhile: count refusals exactly,
    // frames in at least.
    let ok = eventually(T, || async {
        let s = stats(target).await;
        s.frames_in >= base.frames_in + n && s.frames_refused == base.frames_refused + n
    })
    .await;
    assert!(
        ok,
        "node1 refuses every frame that claims node0: {:?}",
        stats(target).await
    );
    let impersonation = target
        .with_node(|n, _| n.stats().dropped_impersonation)
        .await
        .unwrap();
    assert!(
        impersonation >= base_impersonation + 3,
        "refused as impersonation"
    );
    assert_eq!(
        view_of_node0(target).await,
        before,
        "node1's state is unchanged"
    );
    assert!(has_key(target, "t", "net", "k0".into()).await);

    // The cluster still works.
    create(&handles[0], "t", "net", "after".into(), vec![2]).await;
    assert!(replicated(&handles, "after").await);
    drop(tls);
    for h in handles {
        h.kill();
    }
}

/// A certificate alone (no gossip key, so no membership) must not let a peer rewrite what
/// other nodes own, even speaking in its own name. Today the core checks only the sender a
/// stream message names, then applies the third-party content it carries: a bulk sync in
/// mallory's own name may delete node0's entries, a push/pull in mallory's own name may
/// detach node0 from a network (which purges node0's entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_alone_cannot_rewrite_other_nodes_state() {
    let pki = Pki::new("ca");
    let (handles, addrs) = cluster(&pki, 2, 1).await;
    attach(&handles).await;
    create(&handles[0], "t", "net", "k0".into(), vec![1]).await;
    create(&handles[0], "t", "net", "k1".into(), vec![1]).await;
    assert!(replicated(&handles, "k0").await);
    assert!(replicated(&handles, "k1").await);
    let target = &handles[1];
    let before = view_of_node0(target).await;
    let streams_in = || async { target.with_node(|n, _| n.stats().streams_in).await.unwrap() };
    let base = streams_in().await;

    let mut tls = tls_connect(pki.identity("mallory"), addrs[1], "node1").await;
    // In mallory's own name: a bulk sync carrying node0's "delete" of k0...
    let sync = Message::BulkSync(BulkSync {
        ltime: LTime(1_000),
        unsolicited: false,
        node: "mallory@1".into(),
        networks: vec!["net".into()],
        attachments: vec![],
        events: vec![table_event(TableEventKind::Delete, "node0@1", "k0", 1_000)],
    });
    // ...and a push/pull saying node0 left "net".
    let push_pull = Message::PushPull(PushPull {
        ltime: LTime(5_000),
        node: "mallory@1".into(),
        networks: vec![NetworkEntry {
            network: "net".into(),
            ltime: LTime(5_000),
            node: "node0@1".into(),
            leaving: true,
        }],
        reply: true,
    });
    write_frame(&mut tls, &sync.encode()).await;
    write_frame(&mut tls, &push_pull.encode()).await;
    // The owner task has handled both once its counter shows them.
    assert!(eventually(T, || async { streams_in().await >= base + 2 }).await);
    assert_eq!(
        view_of_node0(target).await,
        before,
        "a certificate holder rewrote node0's state on node1"
    );
    drop(tls);
    for h in handles {
        h.kill();
    }
}

/// 4. Rotating the gossip key everywhere while writes keep coming loses no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_during_writes_loses_nothing() {
    const WRITES: usize = 200;
    let pki = Pki::new("ca");
    let (handles, addrs) = cluster(&pki, 3, 1).await;
    attach(&handles).await;
    let handles = Arc::new(handles);
    let key_a = key(7);
    let key_b = key(8);

    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let handles = handles.clone();
        let written = written.clone();
        tokio::spawn(async move {
            for i in 0..WRITES {
                let h = &handles[i % handles.len()];
                create(h, "t", "net", format!("k{i}"), vec![(i % 251) as u8; 16]).await;
                written.store(i + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let reached = |n: usize| {
        let written = written.clone();
        async move {
            let ok = eventually(Duration::from_secs(30), || {
                let w = written.load(Ordering::SeqCst);
                async move { w >= n }
            })
            .await;
            assert!(ok, "the writer stalled before {n} writes");
        }
    };

    // Add B everywhere, then switch the primary one node at a time with writes in between:
    // for over a second (longer than gossip retransmits an event) node0 seals with B while
    // the others seal with A, so every write of that window crosses keys. Then drop A one
    // node at a time.
    reached(10).await;
    for h in handles.iter() {
        h.add_key(key_b.clone()).await.unwrap();
    }
    for (h, at) in handles.iter().zip([20, 140, 160]) {
        reached(at).await;
        h.use_key(key_b.clone()).await.unwrap();
    }
    for (h, at) in handles.iter().zip([170, 180, 190]) {
        reached(at).await;
        h.remove_key(key_a.clone()).await.unwrap();
    }
    writer.await.unwrap();

    for (i, h) in handles.iter().enumerate() {
        let ok = eventually(T, || async {
            common::entries(h, "t", "net").await == WRITES
        })
        .await;
        assert!(ok, "node{i} holds all {WRITES} entries");
        assert!(
            eventually(T, || async { members(h).await == 2 }).await,
            "node{i} sees both others"
        );
    }

    // Not one datagram failed to open during the rotation: every node could open whatever
    // the others sealed at every step (A is dropped only long after the last switch to B).
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(
            stats(h).await.dropped_unauthenticated,
            0,
            "node{i} refused datagrams during the rotation"
        );
    }

    // Key A is really gone and B really in use: an A-sealed datagram is refused (its clock
    // time is never witnessed), a B-sealed one is opened (its time is).
    let rng = SystemRandom::new();
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let node0 = &handles[0];
    let base = stats(node0).await;
    let old = sealed_networkdb(&Keyring::new(key_a, LABEL), random_nonce(&rng), 3_000_000);
    probe.send_to(&old, addrs[0]).await.unwrap();
    assert!(
        eventually(T, || async {
            stats(node0).await.dropped_unauthenticated == base.dropped_unauthenticated + 1
        })
        .await,
        "a datagram sealed with the removed key is refused"
    );
    let new = sealed_networkdb(&Keyring::new(key_b, LABEL), random_nonce(&rng), 2_000_000);
    probe.send_to(&new, addrs[0]).await.unwrap();
    assert!(
        eventually(T, || async { network_clock(node0).await >= 2_000_000 }).await,
        "a datagram sealed with the new key is opened"
    );
    assert!(
        network_clock(node0).await < 3_000_000,
        "the datagram sealed with the removed key was applied"
    );
    assert_eq!(
        stats(node0).await.dropped_unauthenticated,
        base.dropped_unauthenticated + 1
    );

    drop(handles);
}

/// 5. Hostile datagrams are counted and dropped; the node keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_are_counted_and_dropped() {
    let pki = Pki::new("ca");
    let (handles, addrs) = cluster(&pki, 2, 1).await;
    attach(&handles).await;
    let target = addrs[0];
    let node = &handles[0];
    let base = stats(node).await;
    let rng = SystemRandom::new();
    let ring = Keyring::new(key(7), LABEL);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // Unauthenticated: random bytes (long and shorter than the envelope), a valid sealed
    // datagram truncated (tag cut, and down to half the envelope), foreign key, foreign
    // label, and a valid one with its version byte changed.
    let mut random = vec![0u8; 300];
    rng.fill(&mut random).unwrap();
    random[0] = 1; // even with the right version byte
    let mut short = vec![0u8; 10];
    rng.fill(&mut short).unwrap();
    let valid = sealed_networkdb(&ring, random_nonce(&rng), 1);
    let cut_tag = valid[..valid.len() - 5].to_vec();
    let cut_envelope = valid[..14].to_vec();
    // These carry clock times the node must never witness.
    let foreign_key = sealed_networkdb(&Keyring::new(key(9), LABEL), random_nonce(&rng), 9_000_000);
    let foreign_label = sealed_networkdb(
        &Keyring::new(key(7), b"other-cluster"),
        random_nonce(&rng),
        9_000_000,
    );
    let mut bad_version = sealed_networkdb(&ring, random_nonce(&rng), 9_000_000);
    bad_version[0] = 2;
    let unauthenticated = [
        random,
        short,
        cut_tag,
        cut_envelope,
        foreign_key,
        foreign_label,
        bad_version,
    ];
    for d in &unauthenticated {
        sock.send_to(d, target).await.unwrap();
    }

    // Oversized: beyond packet_size (1400), even if correctly sealed.
    let mut big = vec![KIND_NETWORKDB];
    big.extend_from_slice(&[0u8; 1500]);
    let big = ring.seal(random_nonce(&rng), &big);
    sock.send_to(&big, target).await.unwrap();
    let mut junk = vec![0u8; 9000];
    rng.fill(&mut junk).unwrap();
    sock.send_to(&junk, target).await.unwrap();

    // Authenticated but malformed: the core refuses them.
    let garbage = ring.seal(random_nonce(&rng), &[KIND_NETWORKDB, 1, 0xff, 0xff, 0xff]);
    let unknown_kind = ring.seal(random_nonce(&rng), &[99, 1, 2, 3]);
    let empty = ring.seal(random_nonce(&rng), &[]);
    let bad_swim = ring.seal(random_nonce(&rng), &[cluster::KIND_SWIM, 0xff, 0x00, 0x13]);
    for d in [&garbage, &unknown_kind, &empty, &bad_swim] {
        sock.send_to(d, target).await.unwrap();
    }

    // Replay: the same valid sealed datagram twice; the first is accepted (the node witnesses
    // its clock time), the second is not.
    let replayed = sealed_networkdb(&ring, random_nonce(&rng), 1_000_000);
    sock.send_to(&replayed, target).await.unwrap();
    sock.send_to(&replayed, target).await.unwrap();

    let expected = |s: cluster::shell::ShellStats| {
        s.dropped_unauthenticated == base.dropped_unauthenticated + unauthenticated.len() as u64
            && s.dropped_oversized == base.dropped_oversized + 2
            && s.dropped_replay == base.dropped_replay + 1
            && s.dropped_invalid >= base.dropped_invalid + 4
    };
    let ok = eventually(T, || async { expected(stats(node).await) }).await;
    assert!(
        ok,
        "every hostile datagram is counted: {:?}",
        stats(node).await
    );
    assert!(
        eventually(T, || async { network_clock(node).await >= 1_000_000 }).await,
        "the first copy of the replayed datagram was accepted"
    );
    assert!(
        network_clock(node).await < 9_000_000,
        "an unauthenticated datagram was applied"
    );

    // A replay much later is still refused (the window holds 65,536 nonces).
    sock.send_to(&replayed, target).await.unwrap();
    assert!(
        eventually(T, || async {
            stats(node).await.dropped_replay == base.dropped_replay + 2
        })
        .await
    );

    // The node keeps working in both directions.
    assert_eq!(members(node).await, 1);
    create(&handles[0], "t", "net", "after-0".into(), vec![1]).await;
    create(&handles[1], "t", "net", "after-1".into(), vec![1]).await;
    assert!(replicated(&handles, "after-0").await);
    assert!(replicated(&handles, "after-1").await);
    for h in handles {
        h.kill();
    }
}

/// 6. Every seed restarts with a new identity at its old address, joining nobody: the
/// survivors and the restarted seeds form one cluster again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_seeds_and_survivors_form_one_cluster() {
    let pki = Pki::new("ca");
    // node1 joins through node0, nodes 2 to 4 through node0 and node1.
    let (mut handles, addrs) = cluster(&pki, 5, 2).await;
    attach(&handles).await;

    let survivors = handles.split_off(2);
    for h in handles {
        h.kill();
    }
    for (i, h) in survivors.iter().enumerate() {
        let ok = eventually(T, || async {
            h.with_node(|n, _| {
                n.members().len() == 2
                    && n.db().node_state("node0@1") == Some(NodeState::Failed)
                    && n.db().node_state("node1@1") == Some(NodeState::Failed)
            })
            .await
            .unwrap()
        })
        .await;
        assert!(ok, "node{} sees both seeds down", i + 2);
    }

    let (s0, _) = start(opts(&pki, "node0", 2), Some(addrs[0])).await;
    let (s1, _) = start(opts(&pki, "node1", 2), Some(addrs[1])).await;
    let all: Vec<Handle> = [s0, s1].into_iter().chain(survivors).collect();
    for (i, h) in all.iter().enumerate() {
        let ok = eventually(Duration::from_secs(30), || async { members(h).await == 4 }).await;
        assert!(
            ok,
            "node{i} lists 4 members; it lists {:?}",
            member_names(h).await
        );
    }
    // The members are the new runs of the seeds, and NetworkDB follows: the new runs are
    // active everywhere and a write of a restarted seed reaches everyone.
    for (i, h) in all.iter().enumerate() {
        let ok = eventually(T, || async {
            h.with_node(|n, _| {
                let seeds_new = n
                    .members()
                    .iter()
                    .filter(|m| &*m.name == "node0" || &*m.name == "node1")
                    .all(|m| m.incarnation == 2);
                let db = n.db();
                let active = |name: &str| {
                    name == n.identity().db_name().as_str()
                        || db.node_state(name) == Some(NodeState::Active)
                };
                seeds_new
                    && active("node0@2")
                    && active("node1@2")
                    && !active("node0@1")
                    && !active("node1@1")
            })
            .await
            .unwrap()
        })
        .await;
        assert!(ok, "node{i} knows the seeds' new runs, not the old ones");
    }
    join_network(&all[0], "net").await;
    join_network(&all[1], "net").await;
    create(&all[0], "t", "net", "from-new-seed".into(), vec![1]).await;
    assert!(replicated(&all, "from-new-seed").await);
    create(&all[4], "t", "net", "from-survivor".into(), vec![1]).await;
    assert!(replicated(&all, "from-survivor").await);
    for h in all {
        h.kill();
    }
}
