//! Named scenarios: the script of timed actions and the expectations each one adds to the
//! generic checkers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::options::{CrashSpec, OptionsError, PartitionKind, PartitionSpec, PauseSpec};
use crate::{SimOptions, seeds};

/// A named, replayable case. Each reproduces the conditions of a bug reported against
/// libnetwork's NetworkDB (the issue is named on the variant) or runs the generic
/// workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// The generic workload: random network joins and leaves, creates, updates and deletes
    /// across the networks, with `faults` random faults.
    Random,
    /// moby#47728: nodes leave and rejoin a network quickly and recreate their keys while
    /// datagrams are heavily reordered; the keys must end up live everywhere.
    LeaveRejoinOutOfOrder,
    /// moby#53141: a node is partitioned away long enough to be declared down, then healed;
    /// its entries must be visible again everywhere.
    TransientFailure,
    /// libnetwork#2134: every seed node restarts with a new identity at the same address;
    /// the nodes must form one cluster again.
    BootstrapRestart,
    /// moby#51701: several nodes join networks with one populated peer at the same instant;
    /// no bulk sync may time out.
    ConcurrentBulkSync,
    /// libnetwork#2216: a node joins a network that already holds `populate` entries; its
    /// queues stay bounded and it gets every entry.
    JoinPopulated,
    /// The generic workload with 30% datagram loss.
    Loss30,
    /// The generic workload while a group of nodes cannot send to the others (they can still
    /// receive), then heals.
    AsymmetricPartition,
    /// Issue 13: every node creates endpoints on one network at the same instant (120 at
    /// once on 3 agents gave 15 duplicate addresses before the cluster-wide allocator).
    IpamBurst,
    /// Allocation on both sides of a partition, then the heal: each side allocates from the
    /// space it owns, nothing is claimed twice.
    IpamPartition,
    /// The owner of the space (node 0, the founder and the networks' creator) crashes and
    /// restarts; node 1 crashes for good; allocation goes on.
    IpamCrash,
    /// Nodes leave gracefully (one for good, one to come back) while allocating.
    IpamLeave,
    /// A nearly full subnet (a /26: 61 addresses) under heavy allocation: refusals name the
    /// network and its size, nothing is held twice.
    IpamFull,
}

impl Scenario {
    /// Every scenario, in the order of [`Scenario::name`]s listed by the CLI.
    pub const ALL: [Scenario; 13] = [
        Scenario::Random,
        Scenario::LeaveRejoinOutOfOrder,
        Scenario::TransientFailure,
        Scenario::BootstrapRestart,
        Scenario::ConcurrentBulkSync,
        Scenario::JoinPopulated,
        Scenario::Loss30,
        Scenario::AsymmetricPartition,
        Scenario::IpamBurst,
        Scenario::IpamPartition,
        Scenario::IpamCrash,
        Scenario::IpamLeave,
        Scenario::IpamFull,
    ];

    /// The name the CLI selects it by.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Random => "random",
            Scenario::LeaveRejoinOutOfOrder => "leave-rejoin-out-of-order",
            Scenario::TransientFailure => "transient-failure",
            Scenario::BootstrapRestart => "bootstrap-restart",
            Scenario::ConcurrentBulkSync => "concurrent-bulk-sync",
            Scenario::JoinPopulated => "join-populated",
            Scenario::Loss30 => "loss-30",
            Scenario::AsymmetricPartition => "asymmetric-partition",
            Scenario::IpamBurst => "ipam-burst",
            Scenario::IpamPartition => "ipam-partition",
            Scenario::IpamCrash => "ipam-crash",
            Scenario::IpamLeave => "ipam-leave",
            Scenario::IpamFull => "ipam-full",
        }
    }

    /// The fewest nodes it runs with.
    pub fn min_nodes(self) -> usize {
        match self {
            Scenario::Random => 1,
            Scenario::Loss30 | Scenario::JoinPopulated => 2,
            Scenario::LeaveRejoinOutOfOrder
            | Scenario::TransientFailure
            | Scenario::ConcurrentBulkSync
            | Scenario::AsymmetricPartition
            | Scenario::IpamBurst
            | Scenario::IpamFull => 3,
            Scenario::IpamPartition | Scenario::IpamCrash | Scenario::IpamLeave => 4,
            Scenario::BootstrapRestart => 5,
        }
    }

    /// Sets the scenario's own defaults (phases, network model, workload).
    pub(crate) fn tune(self, o: &mut SimOptions) {
        match self {
            Scenario::Random => {}
            Scenario::Loss30 => o.loss = 0.3,
            Scenario::LeaveRejoinOutOfOrder => {
                o.duration = Duration::from_secs(30);
                o.jitter = Duration::from_millis(300);
                o.networks = 1;
                o.ops_per_sec = 10.0;
                o.mix.churn = 0;
            }
            Scenario::TransientFailure => {
                o.duration = Duration::from_secs(45);
                o.networks = 2;
                o.ops_per_sec = 20.0;
                o.mix.churn = 0;
            }
            Scenario::BootstrapRestart => {
                o.duration = Duration::from_secs(90);
                o.networks = 1;
                o.ops_per_sec = 10.0;
                o.mix.churn = 0;
            }
            Scenario::ConcurrentBulkSync => {
                o.duration = Duration::from_secs(50);
                o.networks = 3;
                o.ops_per_sec = 0.0;
                o.probes_per_sec = 2.0;
            }
            Scenario::JoinPopulated => {
                o.duration = Duration::from_secs(30);
                o.networks = 1;
                o.ops_per_sec = 0.0;
                o.probes_per_sec = 2.0;
            }
            Scenario::AsymmetricPartition => {
                o.duration = Duration::from_secs(45);
                o.ops_per_sec = 20.0;
                o.mix.churn = 0;
            }
            Scenario::IpamBurst => {
                o.duration = Duration::from_secs(40);
                o.ops_per_sec = 5.0;
                o.ipam_ops_per_sec = 2.0;
                o.ipam_burst = 40;
                o.ipam_prefix = 22;
            }
            Scenario::IpamPartition => {
                o.duration = Duration::from_secs(60);
                o.ops_per_sec = 5.0;
                o.ipam_ops_per_sec = 20.0;
                let half: Vec<usize> = (0..o.nodes / 2).collect();
                o.partitions.push(PartitionSpec {
                    start: Duration::from_secs(15),
                    end: Duration::from_secs(45),
                    kind: PartitionKind::Symmetric { group: half },
                });
            }
            Scenario::IpamCrash => {
                o.duration = Duration::from_secs(60);
                o.ops_per_sec = 5.0;
                o.ipam_ops_per_sec = 20.0;
                o.crashes.push(CrashSpec {
                    node: 0,
                    at: Duration::from_secs(20),
                    restart_after: Some(Duration::from_secs(10)),
                });
                o.crashes.push(CrashSpec {
                    node: 1,
                    at: Duration::from_secs(25),
                    restart_after: None,
                });
            }
            Scenario::IpamLeave => {
                o.duration = Duration::from_secs(60);
                o.ops_per_sec = 5.0;
                o.ipam_ops_per_sec = 20.0;
                o.leaves.push(CrashSpec {
                    node: 2,
                    at: Duration::from_secs(20),
                    restart_after: None,
                });
                o.leaves.push(CrashSpec {
                    node: 3,
                    at: Duration::from_secs(25),
                    restart_after: Some(Duration::from_secs(10)),
                });
            }
            Scenario::IpamFull => {
                o.duration = Duration::from_secs(40);
                o.ops_per_sec = 5.0;
                o.ipam_prefix = 26;
                o.ipam_ops_per_sec = 40.0;
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// Something the simulator does at a scheduled time.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// The node joins the cluster through the seeds.
    Join { node: usize },
    /// The node attaches to a network.
    JoinNetwork { node: usize, network: usize },
    /// The node creates (or recreates) a key it owns.
    Create {
        node: usize,
        network: usize,
        table: usize,
        key: String,
    },
    /// The node leaves a network, rejoins it after `gap` and recreates `keys`.
    Flap {
        node: usize,
        network: usize,
        gap: Duration,
        keys: Vec<String>,
    },
    /// The process dies; restarts after the delay with a new incarnation.
    Crash {
        node: usize,
        restart_after: Option<Duration>,
    },
    /// A graceful leave; the process stops 2 s later and restarts after the delay.
    LeaveCluster {
        node: usize,
        restart_after: Option<Duration>,
    },
    /// The process stops after a graceful leave (if it is still that incarnation).
    Stop {
        node: usize,
        incarnation: u64,
        restart_after: Option<Duration>,
    },
    /// A new process at the node's address, with a higher incarnation.
    Restart { node: usize },
    /// The process stops handling input and timers for `length`.
    Pause { node: usize, length: Duration },
    /// Partition number `index` of the run's list starts.
    PartitionStart { index: usize },
    /// Partition number `index` heals.
    PartitionEnd { index: usize },
    /// A scenario expectation checked now.
    Expect(Expectation),
}

/// Scenario-specific checks, on top of the generic ones.
#[derive(Clone, Debug)]
pub(crate) enum Expectation {
    /// Checked now: every node of `nodes` completed its join sync of `networks` and sees as
    /// many entries there as `source`.
    Synced {
        nodes: Vec<usize>,
        source: usize,
        networks: Vec<usize>,
    },
    /// Checked at the end: some live node saw `node` go down during the run.
    DeclaredDown { node: usize },
    /// Checked at the end: no bulk sync timed out anywhere.
    NoBulkSyncTimeouts,
    /// Checked at the end: no queue overflowed anywhere.
    NoQueueOverflow,
    /// Checked from now on at every sample: `node`'s queue of `network` stays within
    /// `bound`.
    QueueWithin {
        node: usize,
        network: usize,
        bound: usize,
    },
    /// Checked at the end: every live node attached to `network` sees `keys` of `node`.
    KeysLive {
        node: usize,
        network: usize,
        keys: Vec<String>,
    },
}

/// What a scenario adds to a run: a schedule, the extra faults it drew, and the window of
/// the random workload.
#[derive(Debug, Default)]
pub(crate) struct Script {
    pub(crate) actions: Vec<(Duration, Action)>,
    pub(crate) partitions: Vec<PartitionSpec>,
    /// The random workload and probes run in `[start, end)`.
    pub(crate) workload: (Duration, Duration),
    /// Expectations checked at the end.
    pub(crate) final_checks: Vec<Expectation>,
}

/// How long joining the cluster takes before networks are attached.
pub(crate) fn formation_time(o: &SimOptions) -> Duration {
    join_stagger(o.nodes) * o.nodes as u32 + Duration::from_secs(3)
}

fn join_stagger(nodes: usize) -> Duration {
    let window = Duration::from_secs(2) / nodes.max(1) as u32;
    window.min(Duration::from_millis(20))
}

/// The seed nodes every node joins through.
pub(crate) fn seed_nodes(nodes: usize) -> Vec<usize> {
    (0..nodes.min(3)).collect()
}

/// Builds the schedule of a run: cluster formation, network attachments, the scenario's
/// script, the random faults and the options' own faults.
pub(crate) fn build(o: &SimOptions) -> Result<Script, OptionsError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seeds::derive(o.seed, seeds::SCRIPT, 0));
    let mut s = Script::default();
    let n = o.nodes;
    let stagger = join_stagger(n);
    for i in 0..n {
        s.actions
            .push((stagger * i as u32, Action::Join { node: i }));
    }
    let t0 = formation_time(o);
    let need = |extra: u64| -> Result<(), OptionsError> {
        let min = t0 + Duration::from_secs(extra);
        if o.duration < min {
            return Err(OptionsError::OutOfRange {
                field: "duration",
                allowed: format!(
                    "at least {:.1} s for scenario {} with {} nodes",
                    min.as_secs_f64(),
                    o.scenario,
                    n
                ),
                value: format!("{:.1} s", o.duration.as_secs_f64()),
            });
        }
        Ok(())
    };
    let sec = Duration::from_secs;
    let ms = Duration::from_millis;
    s.workload = (t0 + sec(1), o.duration);
    match o.scenario {
        Scenario::IpamBurst
        | Scenario::IpamPartition
        | Scenario::IpamCrash
        | Scenario::IpamLeave
        | Scenario::IpamFull => {
            need(20)?;
            attach_random(o, &mut rng, t0, &mut s);
        }
        Scenario::Random | Scenario::Loss30 | Scenario::AsymmetricPartition => {
            attach_random(o, &mut rng, t0, &mut s);
            if o.scenario == Scenario::AsymmetricPartition {
                need(20)?;
                // About a fifth of the nodes (at least one) cannot send to the others for
                // 15 s; everything they receive still arrives.
                let k = (n / 5).max(1);
                let from: Vec<usize> = rand::seq::index::sample(&mut rng, n, k).into_vec();
                s.partitions.push(PartitionSpec {
                    start: t0 + sec(3),
                    end: t0 + sec(18),
                    kind: PartitionKind::OneWay { from, to: vec![] },
                });
            }
            random_faults(o, &mut rng, t0, &mut s);
        }
        Scenario::TransientFailure => {
            need(35)?;
            attach_all(o, t0, &mut s);
            let victim = n - 1;
            let friend = 0;
            for (at, node, tag) in [
                (t0 + sec(1), victim, "before"),
                (t0 + sec(12), victim, "during"),
                (t0 + sec(12), friend, "during"),
                (t0 + sec(28), victim, "after"),
            ] {
                for k in 0..5 {
                    let key = format!("n{node}-{tag}-{k}");
                    for network in 0..o.networks {
                        s.actions.push((
                            at + ms(k * 10),
                            Action::Create {
                                node,
                                network,
                                table: 0,
                                key: key.clone(),
                            },
                        ));
                    }
                }
            }
            // Long enough for the default SWIM profile to declare it down (about 8 s).
            s.partitions.push(PartitionSpec {
                start: t0 + sec(5),
                end: t0 + sec(25),
                kind: PartitionKind::Symmetric {
                    group: vec![victim],
                },
            });
            s.final_checks
                .push(Expectation::DeclaredDown { node: victim });
        }
        Scenario::BootstrapRestart => {
            // Detection of the old seeds (about 8 s) and one bootstrap check (60 s).
            need(80)?;
            attach_all(o, t0, &mut s);
            for seed in seed_nodes(n) {
                s.actions.push((
                    t0 + sec(5),
                    Action::Crash {
                        node: seed,
                        restart_after: Some(Duration::ZERO),
                    },
                ));
            }
        }
        Scenario::ConcurrentBulkSync => {
            need(40)?;
            // Node 0 holds every network, populated; the others are in the cluster but in no
            // network, then all join every network at the same instant.
            for network in 0..o.networks {
                s.actions
                    .push((t0, Action::JoinNetwork { node: 0, network }));
                for k in 0..200 {
                    s.actions.push((
                        t0 + ms(100) + ms(k),
                        Action::Create {
                            node: 0,
                            network,
                            table: (k % 2) as usize,
                            key: format!("n0-pop{k}"),
                        },
                    ));
                }
            }
            let joiners: Vec<usize> = (1..n).collect();
            let at = t0 + sec(3);
            for &node in &joiners {
                for network in 0..o.networks {
                    s.actions.push((at, Action::JoinNetwork { node, network }));
                }
            }
            let networks: Vec<usize> = (0..o.networks).collect();
            s.actions.push((
                at + sec(5),
                Action::Expect(Expectation::Synced {
                    nodes: joiners,
                    source: 0,
                    networks,
                }),
            ));
            s.workload = (at + sec(6), o.duration);
            s.final_checks.push(Expectation::NoBulkSyncTimeouts);
        }
        Scenario::JoinPopulated => {
            need(20)?;
            let joiner = n - 1;
            let owners: Vec<usize> = (0..n - 1).collect();
            for &node in &owners {
                s.actions
                    .push((t0, Action::JoinNetwork { node, network: 0 }));
            }
            // The entries are written over 5 s, spread over the owners.
            let total = o.populate;
            for k in 0..total {
                let node = owners[k % owners.len()];
                let at = t0 + ms(200) + sec(5) * k as u32 / total.max(1) as u32;
                s.actions.push((
                    at,
                    Action::Create {
                        node,
                        network: 0,
                        table: k % 2,
                        key: format!("n{node}-pop{k}"),
                    },
                ));
            }
            let at = t0 + sec(10);
            s.actions.push((
                at - ms(1),
                Action::Expect(Expectation::QueueWithin {
                    node: joiner,
                    network: 0,
                    bound: 500,
                }),
            ));
            s.actions.push((
                at,
                Action::JoinNetwork {
                    node: joiner,
                    network: 0,
                },
            ));
            s.actions.push((
                at + sec(5),
                Action::Expect(Expectation::Synced {
                    nodes: vec![joiner],
                    source: 0,
                    networks: vec![0],
                }),
            ));
            s.workload = (at + sec(6), o.duration);
            s.final_checks.push(Expectation::NoQueueOverflow);
        }
        Scenario::LeaveRejoinOutOfOrder => {
            need(20)?;
            attach_all(o, t0, &mut s);
            let flappers: Vec<usize> = (0..n.min(3)).map(|k| n - 1 - k).collect();
            for &node in &flappers {
                let keys: Vec<String> = (0..3).map(|k| format!("n{node}-flap{k}")).collect();
                for key in &keys {
                    s.actions.push((
                        t0 + sec(1),
                        Action::Create {
                            node,
                            network: 0,
                            table: 0,
                            key: key.clone(),
                        },
                    ));
                }
                for cycle in 0..6u32 {
                    let jitter = ms(rng.random_range(0..500));
                    s.actions.push((
                        t0 + sec(3) + sec(2) * cycle + jitter,
                        Action::Flap {
                            node,
                            network: 0,
                            gap: ms(rng.random_range(1..100)),
                            keys: keys.clone(),
                        },
                    ));
                }
                s.final_checks.push(Expectation::KeysLive {
                    node,
                    network: 0,
                    keys,
                });
            }
        }
    }
    // The options' own scripted faults.
    s.partitions.extend(o.partitions.iter().cloned());
    schedule_faults(&o.crashes, &o.leaves, &o.pauses, &mut s);
    for (index, p) in s.partitions.iter().enumerate() {
        s.actions.push((p.start, Action::PartitionStart { index }));
        s.actions.push((p.end, Action::PartitionEnd { index }));
    }
    for (at, action) in &s.actions {
        if *at > o.duration && !matches!(action, Action::Restart { .. }) {
            return Err(OptionsError::OutOfRange {
                field: "duration",
                allowed: format!("long enough for the script of scenario {}", o.scenario),
                value: format!("{:.1} s", o.duration.as_secs_f64()),
            });
        }
    }
    // Stable: same-time actions keep their order.
    s.actions.sort_by_key(|(at, _)| *at);
    Ok(s)
}

fn schedule_faults(
    crashes: &[CrashSpec],
    leaves: &[CrashSpec],
    pauses: &[PauseSpec],
    s: &mut Script,
) {
    for c in crashes {
        s.actions.push((
            c.at,
            Action::Crash {
                node: c.node,
                restart_after: c.restart_after,
            },
        ));
    }
    for c in leaves {
        s.actions.push((
            c.at,
            Action::LeaveCluster {
                node: c.node,
                restart_after: c.restart_after,
            },
        ));
    }
    for p in pauses {
        s.actions.push((
            p.at,
            Action::Pause {
                node: p.node,
                length: p.length,
            },
        ));
    }
}

/// Every node attaches to every network, within the second after formation.
fn attach_all(o: &SimOptions, t0: Duration, s: &mut Script) {
    for node in 0..o.nodes {
        for network in 0..o.networks {
            let at = t0 + Duration::from_millis(((node * 37 + network * 11) % 1000) as u64);
            s.actions.push((at, Action::JoinNetwork { node, network }));
        }
    }
}

/// Each node attaches to each network with probability `networks_per_node / networks` (at
/// least one network).
fn attach_random(o: &SimOptions, rng: &mut Xoshiro256PlusPlus, t0: Duration, s: &mut Script) {
    let p = (o.networks_per_node / o.networks as f64).clamp(0.0, 1.0);
    for node in 0..o.nodes {
        let mut chosen: Vec<usize> = (0..o.networks).filter(|_| rng.random_bool(p)).collect();
        if chosen.is_empty() {
            chosen.push(rng.random_range(0..o.networks));
        }
        for network in chosen {
            let at = t0 + Duration::from_millis(rng.random_range(0..1000));
            s.actions.push((at, Action::JoinNetwork { node, network }));
        }
    }
}

/// `o.faults` random faults within the fault phase, after formation: crashes (most restart),
/// graceful leaves with a restart, pauses, isolations, splits and one-way partitions.
fn random_faults(o: &SimOptions, rng: &mut Xoshiro256PlusPlus, t0: Duration, s: &mut Script) {
    let n = o.nodes;
    let start = t0 + Duration::from_secs(2);
    // Every fault ends, restart included, 5 s before the calm phase.
    let Some(window) = o.duration.checked_sub(start + Duration::from_secs(5)) else {
        return;
    };
    if window < Duration::from_secs(2) || n < 2 {
        return;
    }
    let window_ms = window.as_millis() as u64;
    for _ in 0..o.faults {
        let at_ms = rng.random_range(0..window_ms);
        let at = start + Duration::from_millis(at_ms);
        let room = window_ms - at_ms;
        let length = Duration::from_millis(rng.random_range(1000..=20_000u64).min(room.max(1)));
        let node = rng.random_range(0..n);
        match rng.random_range(0..7u32) {
            0 => s.actions.push((
                at,
                Action::Crash {
                    node,
                    restart_after: None,
                },
            )),
            1 | 2 => s.actions.push((
                at,
                Action::Crash {
                    node,
                    restart_after: Some(length),
                },
            )),
            3 => s.actions.push((
                at,
                Action::LeaveCluster {
                    node,
                    restart_after: Some(length),
                },
            )),
            4 => s.actions.push((at, Action::Pause { node, length })),
            5 => {
                let size = rng.random_range(1..=n.div_ceil(2));
                let group = rand::seq::index::sample(rng, n, size).into_vec();
                s.partitions.push(PartitionSpec {
                    start: at,
                    end: at + length,
                    kind: PartitionKind::Symmetric { group },
                });
            }
            _ => s.partitions.push(PartitionSpec {
                start: at,
                end: at + length,
                kind: PartitionKind::OneWay {
                    from: vec![node],
                    to: vec![],
                },
            }),
        }
    }
}
