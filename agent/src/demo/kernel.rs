//! The root part of `netagent demo`: the real dataplane, on the recipe of
//! `tests/overlay_e2e.rs`. An underlay namespace holds a bridge; three host namespaces are
//! plugged into it (eth0 at 198.18.0.1-3/24) and each runs `netagent run` (this executable,
//! started inside the host's namespace, in secure mode with the demo's CA, certificates and
//! gossip key); one container namespace per host is joined through the control API to network
//! 198.18.100.0/24, containers ping each other across VXLAN (ICMP echo from Rust) and resolve
//! each other's names with glibc's `getent`. The lab is built from Rust
//! ([`overlay::netlink::lab`]): nothing from iproute2 or iputils is needed.
//!
//! Every namespace carries the process id, every interface lives in a namespace made here,
//! only 198.18.0.0/15 is used, and [`Lab`]'s `Drop` stops the agents and deletes all of it,
//! on failure too.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use overlay::netlink::lab;
use overlay::netlink::{NetlinkDataplane, netns_path};

use super::{DemoError, NODES, PATIENCE, SUBNET, fail, node_name};
use crate::api::ApiClient;
use crate::cnm::{EndpointCreate, NetworkCreate, SandboxCreate};
use crate::config::ApiAddr;

/// The overlay network of this part.
const NETWORK: &str = "demo-overlay";
/// How long a stopping agent may take to leave before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(5);

/// Runs the real-dataplane part when the process is root; otherwise prints why it is
/// skipped. `dir` holds the demo's PKI (`dir/pki`).
pub(super) async fn run(dir: &Path) -> Result<(), DemoError> {
    if let Some(why) = lab::missing_privileges() {
        println!(
            "real dataplane: skipped ({why}; as root the demo also pings between containers \
             across the overlay)"
        );
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| DemoError(format!("real dataplane: cannot find this executable: {e}")))?;
    let tag = format!("nd{}", std::process::id());
    let mut lab = Lab {
        tag,
        dir: dir.join("dataplane"),
        pki: dir.join("pki"),
        exe,
        netns: Vec::new(),
        agents: (0..=NODES).map(|_| None).collect(),
    };
    let result = drive(&mut lab).await.map_err(|e| {
        DemoError(format!(
            "real dataplane: {}{}",
            e.0,
            lab.log_tails().unwrap_or_default()
        ))
    });
    let cleaned = lab.teardown();
    match &result {
        Ok(()) if cleaned.is_empty() => println!(
            "real dataplane: agents left gracefully; namespaces {}* deleted",
            lab.tag
        ),
        _ => {
            for warning in &cleaned {
                eprintln!("real dataplane: cleanup: {warning}");
            }
        }
    }
    result
}

async fn drive(lab: &mut Lab) -> Result<(), DemoError> {
    let start = Instant::now();
    let at = move || format!("[{:>6} ms]", start.elapsed().as_millis());
    println!(
        "{} real dataplane (running as root): underlay namespace {} with a bridge, host \
         namespaces {}..{} at 198.18.0.1-{NODES}/24, one `netagent run` in each (secure mode, \
         the demo's CA and gossip key)",
        at(),
        lab.underlay(),
        lab.host(1),
        lab.host(NODES)
    );
    lab.build_topology()?;
    for h in 1..=NODES {
        lab.start_agent(h)?;
    }
    for h in 1..=NODES {
        lab.wait_api(h).await?;
        println!(
            "{} started {} in {} (pid {}, gossip {}:7946, API {})",
            at(),
            node_name(h),
            lab.host(h),
            lab.pid(h).unwrap_or_default(),
            Lab::host_ip(h),
            lab.api(h)
        );
    }
    let clients: Vec<ApiClient> = (1..=NODES).map(|h| lab.client(h)).collect();
    super::wait(&format!("{NODES} members on {}", node_name(1)), || async {
        Ok(clients[0].info().await.is_ok_and(|i| i.members == NODES))
    })
    .await?;
    println!(
        "{} cluster formed across the underlay: {NODES} members",
        at()
    );

    let spec = clients[0]
        .create_network(&NetworkCreate {
            name: NETWORK.into(),
            driver: Some("overlay".into()),
            subnet: SUBNET.into(),
            vni: None,
        })
        .await
        .map_err(|e| DemoError(format!("network create on {}: {e}", node_name(1))))?;
    println!(
        "{} {} created network {NETWORK} ({SUBNET}, VNI {})",
        at(),
        node_name(1),
        spec.vni
    );
    super::wait("every agent lists the network", || async {
        for c in &clients {
            if c.network(NETWORK).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;

    let mut ips: Vec<Ipv4Addr> = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let h = i + 1;
        let sandbox = format!("c{h}");
        let endpoint = format!("ep{h}");
        client
            .create_sandbox(&SandboxCreate {
                name: sandbox.clone(),
                netns: format!("/run/netns/{}", lab.container(h)),
                // Mounted over /etc/resolv.conf where `getent` runs: the container's
                // resolver then asks the agent's embedded DNS server at 127.0.0.11.
                resolv_conf: Some(lab.resolv_conf(h).display().to_string()),
                engine: None,
            })
            .await
            .map_err(|e| DemoError(format!("sandbox create on {}: {e}", node_name(h))))?;
        client
            .create_endpoint(&EndpointCreate {
                network: NETWORK.into(),
                name: endpoint.clone(),
                ..EndpointCreate::default()
            })
            .await
            .map_err(|e| DemoError(format!("endpoint create on {}: {e}", node_name(h))))?;
        let joined = client
            .join(NETWORK, &endpoint, &sandbox)
            .await
            .map_err(|e| DemoError(format!("endpoint join on {}: {e}", node_name(h))))?;
        println!(
            "{} {}: endpoint {endpoint} {}/{} ({}) joined sandbox {sandbox} = namespace {}",
            at(),
            node_name(h),
            joined.ip,
            joined.prefix_len,
            joined.mac,
            lab.container(h)
        );
        ips.push(joined.ip);
    }

    let from = lab.container(1);
    let from_path = netns_path(&from);
    for (i, to) in ips.iter().enumerate().skip(1) {
        let target = lab.container(i + 1);
        let probe = Instant::now();
        super::wait(&format!("a first answer from {to} to {from}"), || async {
            let ok = echo(&from_path, *to).await?.is_some();
            if !ok {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(ok)
        })
        .await?;
        println!(
            "{} {from} -> {target} ({to}): first answer after {} ms; three ICMP echoes:",
            at(),
            probe.elapsed().as_millis()
        );
        for seq in 1..=3 {
            match echo(&from_path, *to).await? {
                Some(rtt) => println!(
                    "      echo reply from {to}: seq={seq} time={:.3} ms",
                    rtt.as_secs_f64() * 1e3
                ),
                None => return Err(DemoError(format!("echo {seq} {from} -> {to}: no reply"))),
            }
        }
    }
    // Service discovery: the container on host 1 finds the others by name through its
    // embedded DNS server (glibc's resolver, `nameserver 127.0.0.11`).
    for (i, to) in ips.iter().enumerate().skip(1) {
        let name = format!("ep{}", i + 1);
        let probe = Instant::now();
        let line = std::cell::RefCell::new(String::new());
        super::wait(&format!("{from} resolving {name}"), || async {
            let mut cmd = Command::new("getent");
            cmd.args(["ahostsv4", &name]);
            let resolv = lab.resolv_conf(1);
            let out = tokio::task::spawn_blocking({
                let from_path = from_path.clone();
                move || lab::output_in(&from_path, Some(&resolv), cmd)
            })
            .await
            .map_err(fail)?
            .map_err(|e| DemoError(format!("getent: {e}")))?;
            let first = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let ok = out.status.success() && first.starts_with(&format!("{to} "));
            *line.borrow_mut() = first;
            if !ok {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(ok)
        })
        .await?;
        let line = line.into_inner();
        println!(
            "{} {from} resolves {name} -> {to} through its embedded DNS ({} ms); \
             `getent ahostsv4 {name}` in {from}: {}",
            at(),
            probe.elapsed().as_millis(),
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    println!(
        "{} containers on different hosts reach and name each other across VXLAN; stopping \
         the agents (SIGTERM: they leave the cluster)",
        at()
    );
    Ok(())
}

/// Everything this part made; [`teardown`](Lab::teardown) (also run on drop) removes it.
struct Lab {
    tag: String,
    dir: PathBuf,
    pki: PathBuf,
    exe: PathBuf,
    /// Namespaces made here, in order.
    netns: Vec<String>,
    /// The agent of host `h` at index `h`.
    agents: Vec<Option<Child>>,
}

impl Lab {
    fn underlay(&self) -> String {
        format!("{}ul", self.tag)
    }

    fn host(&self, h: usize) -> String {
        format!("{}h{h}", self.tag)
    }

    fn container(&self, h: usize) -> String {
        format!("{}c{h}", self.tag)
    }

    fn host_ip(h: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, u8::try_from(h).unwrap_or(u8::MAX))
    }

    fn api(&self, h: usize) -> ApiAddr {
        ApiAddr::Unix(self.dir.join(format!("h{h}.sock")))
    }

    fn client(&self, h: usize) -> ApiClient {
        ApiClient::new(self.api(h)).with_timeout(Duration::from_secs(10))
    }

    fn state_dir(&self, h: usize) -> PathBuf {
        self.dir.join(format!("h{h}"))
    }

    /// The container's `resolv.conf` the agent of host `h` writes (in the demo's directory).
    fn resolv_conf(&self, h: usize) -> PathBuf {
        self.dir
            .join("resolv")
            .join(self.container(h))
            .join("resolv.conf")
    }

    fn log_path(&self, h: usize) -> PathBuf {
        self.dir.join(format!("h{h}.log"))
    }

    fn pid(&self, h: usize) -> Option<u32> {
        self.agents.get(h)?.as_ref().map(Child::id)
    }

    fn add_netns(&mut self, name: &str) -> Result<(), DemoError> {
        lab::add_netns(name).map_err(fail)?;
        self.netns.push(name.to_owned());
        Ok(())
    }

    fn build_topology(&mut self) -> Result<(), DemoError> {
        std::fs::create_dir_all(&self.dir).map_err(fail)?;
        let ul = self.underlay();
        self.add_netns(&ul)?;
        let ul_path = netns_path(&ul);
        lab::add_bridge(&ul_path, "ulbr").map_err(fail)?;
        for h in 1..=NODES {
            let host = self.host(h);
            self.add_netns(&host)?;
            let host_path = netns_path(&host);
            let port = format!("u{h}");
            lab::add_veth(&ul_path, &port, &host_path, "eth0").map_err(fail)?;
            lab::set_master(&ul_path, &port, "ulbr").map_err(fail)?;
            let addr = Ipv4Net::new(Self::host_ip(h), 24).map_err(fail)?;
            lab::add_addr(&host_path, "eth0", addr).map_err(fail)?;
            lab::link_up(&host_path, "eth0").map_err(fail)?;
            let container = self.container(h);
            self.add_netns(&container)?;
            if let Some(dir) = self.resolv_conf(h).parent() {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
        }
        Ok(())
    }

    fn start_agent(&mut self, h: usize) -> Result<(), DemoError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(h))
            .map_err(fail)?;
        let name = node_name(h);
        let pki = |f: String| self.pki.join(f).display().to_string();
        let ip = Self::host_ip(h);
        let mut cmd = Command::new(&self.exe);
        cmd.args(["run", "--fast-failure-detection", "--log-level", "info"])
            // The demo's names are all the cluster's: nothing is forwarded off the machine.
            .arg("--dns-forward=false")
            .args(["--name", &name])
            .args(["--bind", &format!("{ip}:7946")])
            .args(["--diag-addr", &format!("{ip}:2000")])
            .args(["--api", &self.api(h).to_string()])
            .args(["--state-dir", &self.state_dir(h).display().to_string()])
            .args(["--key-file", &pki("gossip.key".into())])
            .args(["--tls-ca", &pki("ca.pem".into())])
            .args(["--tls-cert", &pki(format!("{name}.pem"))])
            .args(["--tls-key", &pki(format!("{name}-key.pem"))]);
        if h != 1 {
            cmd.args(["--join", &Self::host_ip(1).to_string()]);
        }
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("NETAGENT_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = lab::spawn_in(&netns_path(&self.host(h)), cmd)
            .map_err(|e| DemoError(format!("cannot start {name}: {e}")))?;
        self.agents[h] = Some(child);
        Ok(())
    }

    /// Waits until agent `h` answers on its control API (or has exited: an error).
    async fn wait_api(&mut self, h: usize) -> Result<(), DemoError> {
        let client = self.client(h);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if client.info().await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.agents[h].as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.agents[h] = None;
                return Err(DemoError(format!("{} exited ({status})", node_name(h))));
            }
            if Instant::now() >= deadline {
                return Err(DemoError(format!(
                    "{}'s API never answered within {} s",
                    node_name(h),
                    PATIENCE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of each agent's log, for an error message.
    fn log_tails(&self) -> Option<String> {
        let mut out = String::new();
        for h in 1..=NODES {
            let Ok(text) = std::fs::read_to_string(self.log_path(h)) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("\n--- last lines of {}'s log:", node_name(h)));
            for line in &lines[lines.len().saturating_sub(15)..] {
                out.push_str("\n  ");
                out.push_str(line);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Stops the agents (SIGTERM, then SIGKILL after [`STOP_PATIENCE`]), deletes every
    /// namespace made here or left by the agents, and the directory; returns what went
    /// wrong. Idempotent.
    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let prefixes: Vec<String> = (1..=NODES)
            .map(|h| crate::dataplane::netns_prefix(&node_name(h), &self.state_dir(h)))
            .collect();
        let mut stopping: Vec<(usize, Child)> = Vec::new();
        for (h, slot) in self.agents.iter_mut().enumerate() {
            if let Some(child) = slot.take() {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
                stopping.push((h, child));
            }
        }
        let deadline = Instant::now() + STOP_PATIENCE;
        for (h, mut child) in stopping {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                problems.push(format!("{} did not stop in time: killed", node_name(h)));
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        for name in std::mem::take(&mut self.netns).iter().rev() {
            if let Err(e) = lab::del_netns(name) {
                problems.push(e.to_string());
            }
        }
        // Namespaces the agents left (a killed agent's overlay networks).
        for prefix in &prefixes {
            if let Err(e) = NetlinkDataplane::cleanup_leftovers(prefix) {
                problems.push(format!("{prefix}*: {e}"));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        problems
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for problem in self.teardown() {
            eprintln!("real dataplane: cleanup: {problem}");
        }
    }
}

/// One ICMP echo from the namespace at `from` to `to`, off the runtime: the round trip, or
/// `None` without a reply within a second.
async fn echo(from: &Path, to: Ipv4Addr) -> Result<Option<Duration>, DemoError> {
    let from = from.to_owned();
    tokio::task::spawn_blocking(move || lab::ping(&from, to, Duration::from_secs(1)))
        .await
        .map_err(fail)?
        .map_err(|e| DemoError(format!("echo to {to}: {e}")))
}
