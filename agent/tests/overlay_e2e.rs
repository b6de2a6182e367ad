#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only end to end test of the overlay dataplane: three "hosts" (network namespaces
//! joined by a bridge in a fourth, underlay namespace), a `netagent run` in each, two
//! container namespaces per host, and pings between every pair of containers across VXLAN.
//! Then one agent is killed (its peers are withdrawn on the others) and restarted (its
//! endpoints are re-attached and connectivity returns).
//!
//! Every namespace the test makes carries the process id and is deleted on the way out,
//! panics included. Only 198.18.0.0/15 is used; nothing is created in the host namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::netagent;

const HOSTS: usize = 3;
const CONTAINERS: usize = 2;

fn is_root() -> bool {
    agent::dataplane::is_root()
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything the test made; removed on drop.
struct Lab {
    tag: String,
    dir: PathBuf,
    /// Namespaces made with `ip netns add`.
    netns: Vec<String>,
    agents: Vec<Option<Child>>,
}

impl Lab {
    fn host(&self, h: usize) -> String {
        format!("{}h{h}", self.tag)
    }

    fn container(&self, h: usize, c: usize) -> String {
        format!("{}h{h}c{c}", self.tag)
    }

    fn host_ip(h: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, h as u8)
    }

    fn api(&self, h: usize) -> String {
        format!("unix:{}", self.dir.join(format!("h{h}.sock")).display())
    }

    fn state_dir(&self, h: usize) -> PathBuf {
        self.dir.join(format!("h{h}"))
    }

    fn log_path(&self, h: usize) -> PathBuf {
        self.dir.join(format!("h{h}.log"))
    }

    fn log(&self, h: usize) -> String {
        std::fs::read_to_string(self.log_path(h)).unwrap_or_default()
    }

    fn add_netns(&mut self, name: &str) {
        sh(&["ip", "netns", "add", name]);
        self.netns.push(name.to_owned());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
    }

    fn start_agent(&mut self, h: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(h))
            .unwrap();
        let ip = Self::host_ip(h);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(h)])
            .arg(env!("CARGO_BIN_EXE_netagent"))
            .args(["run", "--insecure", "--fast-failure-detection"])
            .args(["--name", &format!("h{h}")])
            .args(["--bind", &format!("{ip}:7946")])
            .args(["--diag-addr", &format!("{ip}:2000")])
            .args(["--api", &self.api(h)])
            .args(["--state-dir", &self.state_dir(h).display().to_string()]);
        if h != 1 {
            cmd.args(["--join", &Self::host_ip(1).to_string()]);
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("NETAGENT_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agents[h] = Some(child);
        self.wait_for(h, &["info"], |_| true);
    }

    fn pid(&self, h: usize) -> u32 {
        self.agents[h].as_ref().unwrap().id()
    }

    fn cli(&self, h: usize, args: &[&str]) -> Output {
        netagent()
            .args(["--api", &self.api(h)])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, h: usize, args: &[&str]) -> String {
        let out = self.cli(h, args);
        assert!(
            out.status.success(),
            "h{h} {args:?}: {out:?}\nlog:\n{}",
            self.log(h)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn wait_for(&self, h: usize, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = self.cli(h, args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && ok(&text) {
                return text;
            }
            last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "h{h} {args:?} never matched; last {last:?}; log:\n{}",
            self.log(h)
        );
    }

    /// The IPv4 address of `eth0` in a container namespace, if it has one.
    fn container_ip(&self, h: usize, c: usize) -> Option<Ipv4Addr> {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.container(h, c),
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .filter(|a| a.starts_with("198.18.100."))
            .and_then(|a| a.split('/').next()?.parse().ok())
    }

    fn ping(&self, from: &str, to: Ipv4Addr) -> bool {
        Command::new("ip")
            .args(["netns", "exec", from, "ping", "-c", "1", "-W", "1"])
            .arg(to.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The `vxlan0` neighbours of host `h`'s overlay network namespace `name` (it lives in
    /// the agent's mount namespace: `ip netns exec` gives the agent its own).
    fn neighbours(&self, h: usize, name: &str) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid(h).to_string(), "-m", "--"])
            .args(["ip", "-n", name, "neigh", "show", "dev", "vxlan0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kill9(&mut self, h: usize) {
        if let Some(mut child) = self.agents[h].take() {
            sh(&["kill", "-9", &child.id().to_string()]);
            let _ = child.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let prefixes: Vec<String> = (1..=HOSTS)
            .map(|h| agent::dataplane::netns_prefix(&format!("h{h}"), &self.state_dir(h)))
            .collect();
        for child in self.agents.iter_mut().filter_map(Option::take) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let mut child = child;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in self.netns.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
        // Namespace files the agents left (their mounts died with the agents' mount
        // namespaces; a leftover file or mount is removed either way).
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                    let _ = Command::new("ip").args(["netns", "del", &name]).output();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Pings every (container, address) pair in `pairs` until all answered or `patience` ran out;
/// returns the pairs that never answered.
fn ping_all(lab: &Lab, pairs: &[(String, Ipv4Addr)], patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    let mut pending: Vec<&(String, Ipv4Addr)> = pairs.iter().collect();
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|(from, to)| !lab.ping(from, *to));
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    pending.iter().map(|(f, t)| format!("{f} -> {t}")).collect()
}

#[test]
fn containers_on_three_hosts_ping_across_vxlan_and_survive_an_agent_restart() {
    if !is_root() {
        println!("skipping overlay_e2e: needs root (network namespaces, VXLAN)");
        return;
    }
    let started = Instant::now();
    let tag = format!("oe{}", std::process::id());
    let dir = Path::new("/tmp").join(format!("netagent-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Lab {
        tag: tag.clone(),
        dir,
        netns: Vec::new(),
        agents: (0..=HOSTS).map(|_| None).collect(),
    };

    // The underlay: a bridge in its own namespace, one veth per host.
    let ul = format!("{tag}ul");
    lab.add_netns(&ul);
    sh(&["ip", "-n", &ul, "link", "add", "ulbr", "type", "bridge"]);
    sh(&["ip", "-n", &ul, "link", "set", "ulbr", "up"]);
    for h in 1..=HOSTS {
        let host = lab.host(h);
        lab.add_netns(&host);
        let port = format!("u{h}");
        sh(&[
            "ip", "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &host,
        ]);
        sh(&[
            "ip", "-n", &ul, "link", "set", &port, "master", "ulbr", "up",
        ]);
        let addr = format!("{}/24", Lab::host_ip(h));
        sh(&["ip", "-n", &host, "addr", "add", &addr, "dev", "eth0"]);
        sh(&["ip", "-n", &host, "link", "set", "eth0", "up"]);
        for c in 1..=CONTAINERS {
            let name = lab.container(h, c);
            lab.add_netns(&name);
        }
    }

    for h in 1..=HOSTS {
        lab.start_agent(h);
    }
    lab.wait_for(1, &["info"], |o| o.contains("Members:     3"));

    lab.ok(
        1,
        &[
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            "198.18.100.0/24",
            "e2e",
        ],
    );
    for h in 1..=HOSTS {
        lab.wait_for(h, &["network", "ls"], |o| o.contains("e2e"));
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.ok(1, &["network", "inspect", "e2e"])).unwrap();
    let vni = inspect[0]["vni"].as_u64().unwrap();

    let mut ips: BTreeMap<(usize, usize), Ipv4Addr> = BTreeMap::new();
    for h in 1..=HOSTS {
        for c in 1..=CONTAINERS {
            let sb = format!("c{c}");
            let ep = format!("ep{c}");
            let netns = format!("/run/netns/{}", lab.container(h, c));
            lab.ok(h, &["sandbox", "create", &sb, "--netns", &netns]);
            lab.ok(h, &["endpoint", "create", "e2e", &ep]);
            lab.ok(h, &["endpoint", "join", &ep, &sb]);
            let ip = lab
                .container_ip(h, c)
                .unwrap_or_else(|| panic!("h{h} c{c} has no address; log:\n{}", lab.log(h)));
            ips.insert((h, c), ip);
        }
    }

    let mut pairs = Vec::new();
    for h in 1..=HOSTS {
        for c in 1..=CONTAINERS {
            for h2 in 1..=HOSTS {
                for c2 in 1..=CONTAINERS {
                    if (h, c) != (h2, c2) {
                        pairs.push((lab.container(h, c), ips[&(h2, c2)]));
                    }
                }
            }
        }
    }
    let failed = ping_all(&lab, &pairs, Duration::from_secs(30));
    assert!(
        failed.is_empty(),
        "no answer: {failed:?}\nh1 log:\n{}",
        lab.log(1)
    );
    println!(
        "all {} container pairs answered after {:?}",
        pairs.len(),
        started.elapsed()
    );

    // h3 crashes: the others withdraw its endpoints.
    let h1_overlay = format!(
        "{}{vni}",
        agent::dataplane::netns_prefix("h1", &lab.state_dir(1))
    );
    let h3_ips: Vec<String> = (1..=CONTAINERS).map(|c| ips[&(3, c)].to_string()).collect();
    let neigh = lab.neighbours(1, &h1_overlay);
    assert!(
        h3_ips.iter().all(|ip| neigh.contains(&format!("{ip} "))),
        "h1 lacks h3's peers before the kill: {neigh}"
    );
    lab.kill9(3);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let neigh = lab.neighbours(1, &h1_overlay);
        if !h3_ips.iter().any(|ip| neigh.contains(&format!("{ip} "))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "h3's peers not withdrawn on h1: {neigh}\nlog:\n{}",
            lab.log(1)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("h3's peers withdrawn after {:?}", started.elapsed());

    // h3 comes back with its state: its endpoints are re-attached and reachable again.
    lab.start_agent(3);
    let back: Vec<(String, Ipv4Addr)> = (1..=CONTAINERS)
        .flat_map(|c| {
            let to = ips[&(3, c)];
            [(lab.container(1, 1), to), (lab.container(2, 2), to)]
        })
        .chain([(lab.container(3, 1), ips[&(1, 1)])])
        .collect();
    let failed = ping_all(&lab, &back, Duration::from_secs(30));
    assert!(
        failed.is_empty(),
        "no answer after h3's restart: {failed:?}\nh3 log:\n{}\nh1 log:\n{}",
        lab.log(3),
        lab.log(1)
    );
    println!("connectivity back after {:?}", started.elapsed());
}
