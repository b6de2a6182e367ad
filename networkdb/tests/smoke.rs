//! Smoke test: a 3-node cluster replicates an entry to the attached node only.

use std::time::Duration;

use networkdb::Config;
use networkdb::harness::Harness;

#[test]
fn crud_converges() {
    let mut h = Harness::cluster(3, Config::default(), 1);
    for i in 0..3 {
        assert_eq!(h.db(i).cluster_peers().len(), 3, "node {i}");
    }
    let now = h.now();
    h.db_mut(0).join_network(now, "net1".into()).unwrap();
    h.db_mut(1).join_network(now, "net1".into()).unwrap();
    h.run_for(Duration::from_secs(1));
    assert!(h.db(1).is_attached("net1", "node0"));
    let now = h.now();
    h.db_mut(0)
        .create_entry(now, "t".into(), "net1".into(), "k".into(), &b"v"[..])
        .unwrap();
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.db(1).get_entry("t", "net1", "k").unwrap(), &b"v"[..]);
    assert!(h.db(2).get_entry("t", "net1", "k").is_err());
    h.check_converged().unwrap();
}
