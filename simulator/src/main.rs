//! `netsim`: runs the deterministic simulator from the command line.
//!
//! Exit status: 0 when every checker passed, 1 when one failed (the seed and a replay
//! command are printed), 2 on bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use simulator::{LatencyRange, Scenario, SimOptions, Simulation};

/// Deterministic discrete-event simulator of the netctl node core (SWIM + NetworkDB).
#[derive(Debug, Parser)]
#[command(name = "netsim", version, about)]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Master seed: the same seed gives the same run and the same digest.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scenario: random, leave-rejoin-out-of-order, transient-failure, bootstrap-restart,
    /// concurrent-bulk-sync, join-populated, loss-30, asymmetric-partition.
    #[arg(long, default_value = "random", value_parser = parse_scenario)]
    scenario: Scenario,
    /// Probability that a datagram is lost during the fault phase (0..=1).
    #[arg(long)]
    loss: Option<f64>,
    /// Probability that a datagram is delivered twice during the fault phase (0..=1).
    #[arg(long)]
    duplicate: Option<f64>,
    /// One-way latency in milliseconds, uniform: `A..B` (or a fixed `A`).
    #[arg(long = "latency-ms")]
    latency_ms: Option<LatencyRange>,
    /// Extra random delay of datagrams in milliseconds (reorders them).
    #[arg(long = "jitter-ms")]
    jitter_ms: Option<f64>,
    /// Length of the fault phase in seconds (the calm phase follows).
    #[arg(long)]
    duration: Option<f64>,
    /// Length of the calm phase in seconds.
    #[arg(long)]
    calm: Option<f64>,
    /// Number of networks.
    #[arg(long)]
    networks: Option<usize>,
    /// Networks each node attaches to at start, on average (scenarios that attach at random).
    #[arg(long = "networks-per-node")]
    networks_per_node: Option<f64>,
    /// Workload operations per second, cluster-wide.
    #[arg(long)]
    ops: Option<f64>,
    /// Random faults (crashes, restarts, leaves, pauses, partitions) drawn from the seed.
    #[arg(long)]
    faults: Option<usize>,
    /// Largest clock offset of a node, in milliseconds.
    #[arg(long = "clock-offset-ms")]
    clock_offset_ms: Option<u64>,
    /// Entries preloaded for the join-populated scenario.
    #[arg(long)]
    populate: Option<usize>,
    /// Use the fast SWIM profile (NodeConfig::fast) instead of the default LAN profile.
    #[arg(long = "fast-swim", conflicts_with = "default_swim")]
    fast_swim: bool,
    /// Use the default SWIM profile even where the scenario picks the fast one.
    #[arg(long = "default-swim")]
    default_swim: bool,
    /// Size SWIM's dissemination for this many members (default: NodeConfig's 32).
    #[arg(long = "swim-cluster-size")]
    swim_cluster_size: Option<std::num::NonZeroU32>,
    /// Write an SVG plot of how the tracked writes spread.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print every scripted action and membership event on stderr.
    #[arg(long)]
    trace: bool,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
    /// Do not run the `kernel` checker (overlay peer DB and fake kernel per process).
    #[arg(long = "no-kernel-check")]
    no_kernel_check: bool,
    /// Do not run the `dns` checker (service discovery records per process).
    #[arg(long = "no-dns-check")]
    no_dns_check: bool,
    /// Networks of the IPAM workload.
    #[arg(long = "ipam-networks")]
    ipam_networks: Option<usize>,
    /// Prefix length of the IPAM workload's subnets (16..=28).
    #[arg(long = "ipam-prefix")]
    ipam_prefix: Option<u8>,
    /// IPAM operations per second, cluster-wide.
    #[arg(long = "ipam-ops")]
    ipam_ops: Option<f64>,
    /// Endpoints every node creates at one instant.
    #[arg(long = "ipam-burst")]
    ipam_burst: Option<usize>,
    /// Do not run the `ipam` checker.
    #[arg(long = "no-ipam-check")]
    no_ipam_check: bool,
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
}

fn seconds(field: &str, v: f64) -> Result<Duration, String> {
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("--{field} {v}: allowed 0..=86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn options(args: &Args) -> Result<SimOptions, String> {
    let mut o = SimOptions::preset(args.scenario, args.nodes, args.seed);
    if let Some(v) = args.loss {
        o.loss = v;
    }
    if let Some(v) = args.duplicate {
        o.duplicate = v;
    }
    if let Some(r) = args.latency_ms {
        o.latency_min = r.min;
        o.latency_max = r.max;
    }
    if let Some(v) = args.jitter_ms {
        o.jitter = seconds("jitter-ms", v / 1000.0)?;
    }
    if let Some(v) = args.duration {
        o.duration = seconds("duration", v)?;
    }
    if let Some(v) = args.calm {
        o.calm = seconds("calm", v)?;
    }
    if let Some(v) = args.networks {
        o.networks = v;
    }
    if let Some(v) = args.networks_per_node {
        o.networks_per_node = v;
    }
    if let Some(v) = args.ops {
        o.ops_per_sec = v;
    }
    if let Some(v) = args.faults {
        o.faults = v;
    }
    if let Some(v) = args.clock_offset_ms {
        o.clock_offset_max = Duration::from_millis(v);
    }
    if let Some(v) = args.populate {
        o.populate = v;
    }
    if args.swim_cluster_size.is_some() {
        o.swim_cluster_size = args.swim_cluster_size;
    }
    if args.fast_swim {
        o.fast_swim = true;
    }
    if args.default_swim {
        o.fast_swim = false;
    }
    o.progress = !args.quiet;
    o.trace = args.trace;
    o.check_kernel = !args.no_kernel_check;
    o.check_dns = !args.no_dns_check;
    o.check_ipam = !args.no_ipam_check;
    if let Some(v) = args.ipam_networks {
        o.ipam_networks = v;
    }
    if let Some(v) = args.ipam_prefix {
        o.ipam_prefix = v;
    }
    if let Some(v) = args.ipam_ops {
        o.ipam_ops_per_sec = v;
    }
    if let Some(v) = args.ipam_burst {
        o.ipam_burst = v;
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netsim: {e}");
            return ExitCode::from(2);
        }
    };
    let sim = match Simulation::new(opts) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("netsim: {e}");
            return ExitCode::from(2);
        }
    };
    let report = sim.run();
    print!("{report}");
    if let Some(path) = &args.plot {
        if let Err(e) = std::fs::write(path, simulator::spread_svg(&report)) {
            eprintln!("netsim: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("plot: {}", path.display());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
