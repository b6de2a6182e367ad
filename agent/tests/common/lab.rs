//! A root-only lab of network namespaces for the end to end tests: an underlay namespace
//! holding a bridge `ulbr`, `hosts` host namespaces plugged into it at 198.18.0.H/24, each
//! running `netagent run` through `ip netns exec`, and `containers` empty container namespaces
//! per host.
//!
//! Every name carries a tag (a prefix of the test's choosing and the process id); everything
//! made is removed when the [`Lab`] is dropped, panics included: agents, namespaces (those the
//! agents made too), `/etc/netns/<name>` directories and the scratch directory.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netagent;

/// Whether the test runs as root (namespaces, VXLAN, `ip netns exec`).
pub fn is_root() -> bool {
    agent::config::is_root()
}

/// Runs a command that must succeed; its standard output.
pub fn sh(args: &[&str]) -> String {
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

/// Runs `f` on a new thread that first moved into the network namespace `/run/netns/<name>`
/// (sockets it creates stay there, whichever thread uses them later).
pub fn spawn_in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = Path::new("/run/netns").join(name);
    std::thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
        f()
    })
}

/// Everything the test made; removed on drop.
pub struct Lab {
    /// The prefix of every name: the test's prefix and the process id.
    pub tag: String,
    /// The scratch directory: sockets, state directories, logs.
    pub dir: PathBuf,
    /// How many hosts (1-based: host `h` is `1..=hosts`).
    pub hosts: usize,
    /// Namespaces made with `ip netns add`.
    netns: Vec<String>,
    /// Directories made under `/etc/netns`.
    etc_netns: Vec<PathBuf>,
    /// The agents, indexed by host (0 unused).
    agents: Vec<Option<Child>>,
    /// Arguments added to every `netagent run`.
    agent_args: Vec<String>,
}

impl Lab {
    /// The underlay (a bridge `ulbr` in namespace [`Lab::underlay`]), `hosts` host namespaces
    /// plugged into it at [`Lab::host_ip`], `containers` container namespaces per host. The
    /// agents are not started: see [`Lab::start_agent`]; each gets `agent_args` on top of the
    /// usual ones.
    pub fn new(prefix: &str, hosts: usize, containers: usize, agent_args: &[&str]) -> Self {
        let tag = format!("{prefix}{}", std::process::id());
        let dir = Path::new("/tmp").join(format!("netagent-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Self {
            tag,
            dir,
            hosts,
            netns: Vec::new(),
            etc_netns: Vec::new(),
            agents: (0..=hosts).map(|_| None).collect(),
            agent_args: agent_args.iter().map(|a| (*a).to_owned()).collect(),
        };

        let ul = lab.underlay();
        lab.add_netns(&ul);
        sh(&["ip", "-n", &ul, "link", "add", "ulbr", "type", "bridge"]);
        sh(&["ip", "-n", &ul, "link", "set", "ulbr", "up"]);
        for h in 1..=hosts {
            let host = lab.host(h);
            lab.add_netns(&host);
            let port = format!("u{h}");
            sh(&[
                "ip", "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &host,
            ]);
            sh(&[
                "ip", "-n", &ul, "link", "set", &port, "master", "ulbr", "up",
            ]);
            let addr = format!("{}/24", Self::host_ip(h));
            sh(&["ip", "-n", &host, "addr", "add", &addr, "dev", "eth0"]);
            sh(&["ip", "-n", &host, "link", "set", "eth0", "up"]);
            for c in 1..=containers {
                let name = lab.container(h, c);
                lab.add_netns(&name);
            }
        }
        lab
    }

    /// The underlay namespace (it holds the bridge `ulbr`).
    pub fn underlay(&self) -> String {
        format!("{}ul", self.tag)
    }

    /// Host `h`'s namespace.
    pub fn host(&self, h: usize) -> String {
        format!("{}h{h}", self.tag)
    }

    /// Container `c` of host `h`: its namespace's name.
    pub fn container(&self, h: usize, c: usize) -> String {
        format!("{}h{h}c{c}", self.tag)
    }

    /// Host `h`'s underlay address.
    pub fn host_ip(h: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, h as u8)
    }

    /// Host `h`'s control API, for `--api`.
    pub fn api(&self, h: usize) -> String {
        format!("unix:{}", self.dir.join(format!("h{h}.sock")).display())
    }

    /// Host `h`'s `--state-dir`.
    pub fn state_dir(&self, h: usize) -> PathBuf {
        self.dir.join(format!("h{h}"))
    }

    /// Where host `h`'s agent logs.
    pub fn log_path(&self, h: usize) -> PathBuf {
        self.dir.join(format!("h{h}.log"))
    }

    /// Host `h`'s agent log so far.
    pub fn log(&self, h: usize) -> String {
        std::fs::read_to_string(self.log_path(h)).unwrap_or_default()
    }

    /// Every agent's log, one after the other, for a failure message.
    pub fn logs(&self) -> String {
        (1..=self.hosts)
            .map(|h| format!("--- h{h} log:\n{}", self.log(h)))
            .collect()
    }

    /// Makes a namespace (removed on drop) with its loopback up.
    pub fn add_netns(&mut self, name: &str) {
        sh(&["ip", "netns", "add", name]);
        self.netns.push(name.to_owned());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
    }

    /// `/etc/netns/<name>/resolv.conf`, its directory made (and removed on drop): the file
    /// `ip netns exec <name>` mounts over `/etc/resolv.conf`.
    pub fn resolv_conf(&mut self, name: &str) -> PathBuf {
        let dir = Path::new("/etc/netns").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        self.etc_netns.push(dir.clone());
        dir.join("resolv.conf")
    }

    /// Starts host `h`'s agent (joining host 1's unless it is host 1) and waits until its API
    /// answers.
    pub fn start_agent(&mut self, h: usize) {
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
            .args(["--state-dir", &self.state_dir(h).display().to_string()])
            .args(&self.agent_args);
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

    /// The process id of host `h`'s agent (`ip netns exec` execs it: the same process).
    pub fn pid(&self, h: usize) -> u32 {
        self.agents[h].as_ref().unwrap().id()
    }

    /// Runs the CLI against host `h`'s agent.
    pub fn cli(&self, h: usize, args: &[&str]) -> Output {
        netagent()
            .args(["--api", &self.api(h)])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs the CLI against host `h`'s agent; it must succeed. Its standard output.
    pub fn ok(&self, h: usize, args: &[&str]) -> String {
        let out = self.cli(h, args);
        assert!(
            out.status.success(),
            "h{h} {args:?}: {out:?}\nlog:\n{}",
            self.log(h)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI against host `h`'s agent until it succeeds with an output `ok` accepts
    /// (30 s at most); that output.
    pub fn wait_for(&self, h: usize, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
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

    /// The IPv4 address of `eth0` in a container namespace, if it has one in 198.18.100.0/24.
    pub fn container_ip(&self, h: usize, c: usize) -> Option<Ipv4Addr> {
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

    /// One ping from namespace `from` to `to`; whether it was answered within a second.
    pub fn ping(&self, from: &str, to: Ipv4Addr) -> bool {
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
    pub fn neighbours(&self, h: usize, name: &str) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid(h).to_string(), "-m", "--"])
            .args(["ip", "-n", name, "neigh", "show", "dev", "vxlan0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills host `h`'s agent with SIGKILL (it cleans nothing up).
    pub fn kill9(&mut self, h: usize) {
        if let Some(mut child) = self.agents[h].take() {
            sh(&["kill", "-9", &child.id().to_string()]);
            let _ = child.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let prefixes: Vec<String> = (1..=self.hosts)
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
        for dir in &self.etc_netns {
            let _ = std::fs::remove_dir_all(dir);
        }
        if !self.etc_netns.is_empty() {
            // Only when empty: another run may be using it.
            let _ = std::fs::remove_dir("/etc/netns");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
