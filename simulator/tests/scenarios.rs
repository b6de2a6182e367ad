#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Every named scenario on a fixed set of seeds with a small cluster, and determinism.
//!
//! A failure prints the whole report, with the seed and the replay command.

use std::time::Duration;

use simulator::{CrashSpec, PartitionKind, PartitionSpec, Report, Scenario, SimOptions};

fn run(scenario: Scenario, nodes: usize, seed: u64, tweak: impl FnOnce(&mut SimOptions)) -> Report {
    let mut o = SimOptions::preset(scenario, nodes, seed);
    tweak(&mut o);
    simulator::run(o).unwrap()
}

fn check(scenario: Scenario, nodes: usize, seeds: &[u64], tweak: impl Fn(&mut SimOptions)) {
    for &seed in seeds {
        let report = run(scenario, nodes, seed, &tweak);
        assert!(report.passed(), "{report}");
    }
}

fn faulty(o: &mut SimOptions) {
    o.faults = 4;
    o.duplicate = 0.05;
    o.jitter = Duration::from_millis(20);
    o.clock_offset_max = Duration::from_millis(500);
}

#[test]
fn random_with_faults() {
    check(Scenario::Random, 12, &[1, 4, 5], faulty);
}

#[test]
fn random_with_faults_restart_before_detection() {
    check(Scenario::Random, 12, &[2, 3], faulty);
}

#[test]
fn leave_rejoin_out_of_order() {
    check(Scenario::LeaveRejoinOutOfOrder, 10, &[1, 2], |_| {});
}

#[test]
fn transient_failure() {
    check(Scenario::TransientFailure, 10, &[1, 2], |_| {});
}

#[test]
fn bootstrap_restart() {
    check(Scenario::BootstrapRestart, 10, &[1, 2], |_| {});
}

#[test]
fn concurrent_bulk_sync() {
    check(Scenario::ConcurrentBulkSync, 10, &[1, 2], |_| {});
}

#[test]
fn join_populated() {
    // 2,000 entries keep the debug build fast; `join_populated_10k` runs the full size.
    check(Scenario::JoinPopulated, 8, &[1], |o| o.populate = 2000);
}

#[test]
#[ignore = "slow in debug builds: run with --release -- --ignored"]
fn join_populated_10k() {
    check(Scenario::JoinPopulated, 10, &[1], |_| {});
}

#[test]
fn loss_30() {
    check(Scenario::Loss30, 10, &[1, 2], |_| {});
}

#[test]
fn asymmetric_partition() {
    check(Scenario::AsymmetricPartition, 10, &[1, 2], |_| {});
}

#[test]
fn fast_swim_profile() {
    check(Scenario::TransientFailure, 8, &[3], |o| o.fast_swim = true);
}

#[test]
fn same_seed_same_digest() {
    let tweak = |o: &mut SimOptions| {
        o.faults = 3;
        o.duplicate = 0.1;
        o.loss = 0.05;
        o.jitter = Duration::from_millis(30);
        o.clock_offset_max = Duration::from_millis(300);
        o.duration = Duration::from_secs(25);
        o.calm = Duration::from_secs(10);
    };
    let a = run(Scenario::Random, 8, 11, tweak);
    let b = run(Scenario::Random, 8, 11, tweak);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.events, b.events);
    assert_eq!(a.traffic, b.traffic);
    assert_eq!(a.drops, b.drops);
    assert_eq!(a.violations, b.violations);
    let c = run(Scenario::Random, 8, 12, tweak);
    assert_ne!(a.digest, c.digest, "another seed, another run");
}

#[test]
fn bad_options_are_refused() {
    let mut o = SimOptions::preset(Scenario::BootstrapRestart, 3, 1);
    let err = simulator::run(o.clone()).unwrap_err().to_string();
    assert!(err.contains("nodes"), "{err}");
    o.nodes = 10;
    o.duration = Duration::from_secs(5);
    let err = simulator::run(o).unwrap_err().to_string();
    assert!(err.contains("duration"), "{err}");
    assert!("no-such-scenario".parse::<Scenario>().is_err());
    for s in Scenario::ALL {
        assert_eq!(s.name().parse::<Scenario>(), Ok(s));
    }
}

#[test]
fn report_and_plot() {
    let report = run(Scenario::Random, 6, 5, |o| {
        o.duration = Duration::from_secs(15);
        o.calm = Duration::from_secs(5);
    });
    assert!(report.spread.measured > 0, "{report}");
    let text = report.to_string();
    assert!(text.contains("digest: "), "{text}");
    assert!(text.contains("epidemic bound"), "{text}");
    let svg = simulator::spread_svg(&report);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("median across writes"));
}

/// SWIM gossip alone left late joiners missing members for minutes from about 150 nodes; the
/// membership exchange on the stream path fixes it. Slow in debug builds.
#[test]
#[ignore = "slow in debug builds: run with --release -- --ignored"]
fn membership_converges_at_200_nodes() {
    check(Scenario::Random, 200, &[1], |_| {});
}

/// The random workload under faults, plus at least one crash of `node` with a restart and a
/// partition, whatever the draw.
fn run_with_faults(seed: u64, node: usize) -> Report {
    run(Scenario::Random, 10, seed, |o| {
        faulty(o);
        o.faults = 6;
        o.crashes.push(CrashSpec {
            node,
            at: o.duration / 3,
            restart_after: Some(Duration::from_secs(5)),
        });
        o.partitions.push(PartitionSpec {
            start: o.duration / 2,
            end: o.duration / 2 + Duration::from_secs(8),
            kind: PartitionKind::Symmetric {
                group: vec![0, 1, 2],
            },
        });
        assert!(o.check_kernel, "the kernel checker is on by default");
        assert!(o.check_dns, "the dns checker is on by default");
    })
}

#[test]
fn random_with_faults_kernel_check() {
    // Crashes, restarts, leaves and partitions, with every process's overlay driver
    // programming a fake kernel that must match its node's view of overlay_peer_table.
    for seed in [6, 7] {
        let report = run_with_faults(seed, 3);
        assert!(report.passed(), "{report}");
        assert!(report.kernel_ops > 0, "no op reached a kernel:\n{report}");
        assert!(
            report.to_string().contains("ops applied to fake kernels"),
            "{report}"
        );
    }
}

#[test]
fn random_with_faults_dns_check() {
    // Crashes, restarts, leaves, network churn and partitions, with every process's service
    // discovery (fed by its endpoint_table watch and its own writes) checked against its
    // node's view of endpoint_table.
    for seed in [8, 9] {
        let report = run_with_faults(seed, 4);
        assert!(report.passed(), "{report}");
        assert!(
            report.dns_applied > 0,
            "no change reached service discovery:\n{report}"
        );
        assert!(
            report
                .to_string()
                .contains("changes applied to service discovery"),
            "{report}"
        );
    }
}

/// The `ipam` scenarios of issue 13 on the real node cores: every node allocating at once,
/// allocation across a partition and its heal, the owner's crash and restart with another
/// node lost for good, graceful leaves, a nearly full subnet. The `ipam` checker runs
/// continuously (no address or VNI held twice, every request answered in time).
#[test]
fn ipam_scenarios() {
    for scenario in [
        Scenario::IpamBurst,
        Scenario::IpamPartition,
        Scenario::IpamCrash,
        Scenario::IpamLeave,
        Scenario::IpamFull,
    ] {
        for seed in [1, 2] {
            let report = run(scenario, 8, seed, |o| {
                assert!(o.check_ipam, "the ipam checker is on by default");
            });
            assert!(report.passed(), "{report}");
            let c = report.ipam;
            assert!(c.local > 0 && c.waited > 0, "{scenario}: {report}");
            assert!(report.to_string().contains("ipam: "), "{report}");
        }
    }
}

/// Every node creates 40 endpoints at one instant: all 8 x 40 get distinct addresses, the
/// nodes that owned no space got theirs after a wait.
#[test]
fn ipam_burst_gives_every_endpoint_its_own_address() {
    let report = run(Scenario::IpamBurst, 8, 3, |o| o.ipam_ops_per_sec = 0.0);
    assert!(report.passed(), "{report}");
    assert!(report.ipam.local + report.ipam.waited >= 8 * 40, "{report}");
    assert_eq!(report.ipam.refused, 0, "{report}");
}

/// Faults end 5 s before the calm phase; within 3 s of it every node must agree again, on
/// membership included (a member that missed a renewal used to wait for the 30 s exchange).
#[test]
#[ignore = "slow in debug builds: run with --release -- --ignored"]
fn random_with_faults_settles_within_3_s_of_calm() {
    for seed in [1, 2, 3] {
        let report = run(Scenario::Random, 40, seed, faulty);
        assert!(report.passed(), "{report}");
        let settled = report.settled_after.expect("settled");
        assert!(
            settled <= Duration::from_secs(3),
            "seed {seed}: settled {settled:?} into the calm phase\n{report}"
        );
    }
}
