//! A root-only lab of network namespaces for the end to end tests: an underlay namespace
//! holding a bridge `ulbr`, `hosts` host namespaces plugged into it at 198.18.0.H/24, each
//! running `netagent run`, and `containers` empty container namespaces per host; all of it
//! built from Rust ([`overlay::netlink::lab`]), nothing from iproute2 or iputils.
//!
//! Every name carries a tag (a prefix of the test's choosing and the process id); everything
//! made is removed when the [`Lab`] is dropped, panics included: agents, namespaces (those the
//! agents made too) and the scratch directory (logs, state, containers' `resolv.conf`).

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use libtest_mimic::{Arguments, Trial};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use overlay::netlink::lab;
use overlay::netlink::{NetlinkDataplane, netns_path};

use super::netagent;
use super::poll::try_poll;

/// Runs a root-only test file's tests under a harness that, without root, reports each as
/// ignored and says why on stderr: a test that cannot run never shows as passed.
pub fn run_root_tests(file: &str, tests: Vec<(&'static str, fn())>) -> ! {
    run_root_tests_needing(file, &[], tests)
}

/// [`run_root_tests`] for tests that also need programs a fresh machine may lack: without
/// root, or without one of `programs` (`(program, Debian package)`) on `PATH`, each test is
/// reported as ignored and stderr says why.
pub fn run_root_tests_needing(
    file: &str,
    programs: &[(&str, &str)],
    tests: Vec<(&'static str, fn())>,
) -> ! {
    let args = Arguments::from_args();
    let missing: Vec<String> = programs
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(program, package)| format!("{program} (Debian package {package})"))
        .collect();
    let skip = lab::missing_privileges()
        .map(str::to_owned)
        .or_else(|| (!missing.is_empty()).then(|| format!("needs {}", missing.join(", "))));
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            if let Some(why) = &skip {
                eprintln!("NOT RUN: {file} {name}: {why}");
            }
            Trial::test(name, move || {
                test();
                Ok(())
            })
            .with_ignored_flag(skip.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// The path of executable `program` on `PATH`, if any.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `f` on a new thread that first moved into the network namespace `/run/netns/<name>`
/// (sockets it creates stay there, whichever thread uses them later).
pub fn spawn_in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = netns_path(name);
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
    /// Namespaces made here, in order.
    netns: Vec<String>,
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
            agents: (0..=hosts).map(|_| None).collect(),
            agent_args: agent_args.iter().map(|a| (*a).to_owned()).collect(),
        };

        let ul = lab.underlay();
        lab.add_netns(&ul);
        let ul_path = netns_path(&ul);
        lab::add_bridge(&ul_path, "ulbr").unwrap();
        for h in 1..=hosts {
            let host = lab.host(h);
            lab.add_netns(&host);
            let host_path = netns_path(&host);
            let port = format!("u{h}");
            lab::add_veth(&ul_path, &port, &host_path, "eth0").unwrap();
            lab::set_master(&ul_path, &port, "ulbr").unwrap();
            let addr = ipnet::Ipv4Net::new(Self::host_ip(h), 24).unwrap();
            lab::add_addr(&host_path, "eth0", addr).unwrap();
            lab::link_up(&host_path, "eth0").unwrap();
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
        lab::add_netns(name).unwrap_or_else(|e| panic!("namespace {name}: {e}"));
        self.netns.push(name.to_owned());
    }

    /// Where the agent writes namespace `name`'s `resolv.conf` (its directory made), and
    /// where [`Lab::getent`] mounts it from.
    pub fn resolv_conf(&self, name: &str) -> PathBuf {
        let dir = self.dir.join("resolv").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("resolv.conf")
    }

    /// `getent ARGS` in container namespace `name`, its resolver reading the container's
    /// `resolv.conf` (glibc's, as a container would): its exit status and output.
    pub fn getent(&self, name: &str, args: &[&str]) -> (Option<i32>, String) {
        let mut cmd = Command::new("getent");
        cmd.args(args);
        match lab::output_in(&netns_path(name), Some(&self.resolv_conf(name)), cmd) {
            Ok(out) => (
                out.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
            Err(e) => (None, format!("getent in {name}: {e}")),
        }
    }

    /// Starts host `h`'s agent (joining host 1's unless it is host 1) and waits until its API
    /// answers.
    pub fn start_agent(&mut self, h: usize) {
        self.start_agent_with(h, lab::spawn_in);
    }

    /// [`Lab::start_agent`], the process started by `spawn` in host `h`'s namespace (a
    /// private mount namespace, say).
    pub fn start_agent_with(
        &mut self,
        h: usize,
        spawn: impl FnOnce(&Path, Command) -> Result<Child, overlay::netlink::NetlinkError>,
    ) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(h))
            .unwrap();
        let ip = Self::host_ip(h);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netagent"));
        cmd.args(["run", "--insecure", "--fast-failure-detection"])
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
        cmd.env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawn(&netns_path(&self.host(h)), cmd).unwrap();
        self.agents[h] = Some(child);
        self.wait_for(h, &["info"], |_| true);
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
        let matched = try_poll(Duration::from_secs(30), || {
            let out = self.cli(h, args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && ok(&text) {
                Ok(text)
            } else {
                Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            }
        });
        matched
            .unwrap_or_else(|t| panic!("h{h} {args:?} never matched: {t}; log:\n{}", self.log(h)))
    }

    /// Creates sandbox `c<c>` on host `h` for container namespace (h, c) (with its
    /// `resolv.conf` in the lab's directory when `resolv_conf`), an endpoint `name` on
    /// `network` (with `extra` options), joins them; the container's address.
    pub fn attach(
        &self,
        h: usize,
        c: usize,
        network: &str,
        name: &str,
        extra: &[&str],
        resolv_conf: bool,
    ) -> Ipv4Addr {
        let container = self.container(h, c);
        let sandbox = format!("c{c}");
        let netns = format!("/run/netns/{container}");
        let resolv = self.resolv_conf(&container).display().to_string();
        let mut create_sandbox = vec!["sandbox", "create", &sandbox, "--netns", &netns];
        if resolv_conf {
            create_sandbox.extend(["--resolv-conf", &resolv]);
        }
        self.ok(h, &create_sandbox);
        let mut create = vec!["endpoint", "create", network, name];
        create.extend_from_slice(extra);
        self.ok(h, &create);
        self.ok(h, &["endpoint", "join", name, &sandbox]);
        let ip = self
            .container_ip(h, c)
            .unwrap_or_else(|| panic!("h{h} c{c} has no address; log:\n{}", self.log(h)));
        println!("{name}: {ip} in {container} on h{h}");
        ip
    }

    /// The IPv4 address of `eth0` in a container namespace, if it has one in 198.18.100.0/24.
    pub fn container_ip(&self, h: usize, c: usize) -> Option<Ipv4Addr> {
        let addrs = lab::ipv4_addrs(&netns_path(&self.container(h, c)), "eth0").ok()?;
        addrs
            .iter()
            .map(|a| a.addr())
            .find(|a| a.octets()[..3] == [198, 18, 100])
    }

    /// One ICMP echo from namespace `from` to `to`; whether it was answered within a second.
    pub fn ping(&self, from: &str, to: Ipv4Addr) -> bool {
        lab::ping(&netns_path(from), to, Duration::from_secs(1)).is_ok_and(|rtt| rtt.is_some())
    }

    /// The addresses programmed as permanent neighbours on `vxlan0` of host `h`'s overlay
    /// network namespace `name`.
    pub fn neighbours(&self, h: usize, name: &str) -> Vec<Ipv4Addr> {
        match lab::vxlan_state(&netns_path(name), "vxlan0") {
            Ok(state) => state.neighbours.into_keys().collect(),
            Err(e) => panic!("h{h} neighbours of {name}: {e}"),
        }
    }

    /// The process ID of host `h`'s agent, if it runs.
    pub fn agent_pid(&self, h: usize) -> Option<u32> {
        self.agents[h].as_ref().map(Child::id)
    }

    /// Stops host `h`'s agent with SIGTERM (it leaves gracefully) and waits for it (15 s at
    /// most, then SIGKILL).
    pub fn stop_agent(&mut self, h: usize) {
        if let Some(child) = self.agents[h].take() {
            stop(child, Duration::from_secs(15));
        }
    }

    /// Kills host `h`'s agent with SIGKILL (it cleans nothing up).
    pub fn kill9(&mut self, h: usize) {
        if let Some(mut child) = self.agents[h].take() {
            signal(&child, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Stops `child` with SIGTERM and waits for it, `patience` at most, then SIGKILL.
pub fn stop(mut child: Child, patience: Duration) {
    signal(&child, Signal::SIGTERM);
    let _ = try_poll(patience, || match child.try_wait() {
        Ok(None) => Err(()),
        _ => Ok(()),
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` to `child` (gone already: nothing to do).
fn signal(child: &Child, sig: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let prefixes: Vec<String> = (1..=self.hosts)
            .map(|h| agent::dataplane::netns_prefix(&format!("h{h}"), &self.state_dir(h)))
            .collect();
        for child in self.agents.iter_mut().filter_map(Option::take) {
            stop(child, Duration::from_secs(5));
        }
        for name in self.netns.iter().rev() {
            if let Err(e) = lab::del_netns(name) {
                eprintln!("lab cleanup: {e}");
            }
        }
        // Namespaces a killed agent left behind.
        for prefix in &prefixes {
            if let Err(e) = NetlinkDataplane::cleanup_leftovers(prefix) {
                eprintln!("lab cleanup of {prefix}*: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
