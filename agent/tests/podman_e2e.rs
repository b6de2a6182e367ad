#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only end to end test of the CNI plugin with a real Podman (Debian's `podman`, CNI
//! backend) on the lab of `overlay_e2e`: three "hosts" (network namespaces on a bridge in an
//! underlay namespace), each running `netagent run`. Hosts 1 and 2 also run Podman, as a user
//! would: a conflist naming `netctl-cni` in the runtime's network directory, the plugin in its
//! CNI plugin directory. Each of them has a private mount namespace (held by a placeholder
//! process) shared by its agent and its Podman commands, where the host's own directories
//! are bind-mounted over `/var/lib/cni` and `/var/lib/containers` (Podman's CNI result cache
//! and its image cache, which it keeps there whatever its configuration says), so nothing of
//! the machine's is touched; Podman's storage, configuration and run directories are the
//! test's own (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`). Images come from a local
//! busybox rootfs (`podman import`): there is no registry.
//!
//! The scenario: containers started by Podman on hosts 1 and 2 ping each other across VXLAN by
//! name and by `--network-alias` through the embedded DNS server (the plugin's result gives
//! Podman the nameserver 127.0.0.11); a container made with the CLI on host 3 reaches them and
//! is reached by name; `--ip` is honoured and refused on the other host while held; `podman
//! network reload` (DEL then ADD) keeps the address; `podman stop` and `podman rm` withdraw
//! the endpoint cluster-wide; after an agent restart its containers are reachable again, and
//! a container removed while the agent was down is withdrawn when it comes back.
//!
//! Only 198.18.0.0/15 is used, inside namespaces the test makes; everything it starts is
//! stopped and everything it makes removed on the way out, panics included.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use overlay::netlink::{lab, netns_path};

mod common;
use common::engines::{ensure_dir, make_rootfs, remove_created, text};
use common::lab::{Lab, run_root_tests_needing, stop};
use common::poll::try_poll;

/// Hosts 1 and 2 run Podman; host 3 only an agent and a container made with the CLI.
const HOSTS: usize = 3;
const PODMAN_HOSTS: [usize; 2] = [1, 2];
const NETWORK: &str = "web";
const SUBNET: &str = "198.18.110.0/24";
/// How long each check may take.
const PATIENCE: Duration = Duration::from_secs(30);
/// Host directories Podman writes to whatever its configuration says: each Podman host sees
/// its own directory there.
const HOST_DIRS: [&str; 2] = ["/var/lib/cni", "/var/lib/containers"];

fn main() {
    run_root_tests_needing(
        "podman_e2e",
        &[
            ("podman", "podman"),
            ("conmon", "conmon (a dependency of podman)"),
            ("runc", "runc"),
            ("busybox", "busybox-static"),
            ("tar", "tar"),
        ],
        vec![(
            "podman_containers_on_two_hosts_share_a_cluster_network",
            podman_containers_on_two_hosts_share_a_cluster_network,
        )],
    )
}

/// The lab, plus a mount namespace holder per Podman host; removes the containers, stops
/// the holders and removes the host directories it had to create before the lab goes.
struct PodmanLab {
    lab: Lab,
    /// The process holding host `h`'s private mount namespace.
    holder: Vec<Option<Child>>,
    created: Vec<PathBuf>,
}

impl PodmanLab {
    fn new() -> Self {
        let mut created = Vec::new();
        for dir in HOST_DIRS {
            ensure_dir(Path::new(dir), &mut created);
        }
        let lab = Lab::new("pm", HOSTS, 1, &["--dns-forward=false"]);
        let mut pl = Self {
            lab,
            holder: (0..=HOSTS).map(|_| None).collect(),
            created,
        };
        for h in PODMAN_HOSTS {
            pl.configure_podman(h);
            pl.start_holder(h);
            pl.start_agent(h);
        }
        pl.lab.start_agent(3);
        pl
    }

    fn host_dir(&self, h: usize) -> PathBuf {
        self.lab.dir.join(format!("podman-h{h}"))
    }

    /// Host `h`'s Podman configuration: the CNI backend with the plugin and a conflist of
    /// the test's, storage and run directories of its own, runc (crun refuses this machine
    /// kind's hybrid cgroups), and the ulimits a container may have here.
    fn configure_podman(&self, h: usize) {
        let dir = self.host_dir(h);
        for sub in [
            "cni-conf",
            "cni-bin",
            "root",
            "run",
            "tmp",
            "volumes",
            "var-lib-cni",
            "var-lib-containers",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::copy(
            env!("CARGO_BIN_EXE_netctl-cni"),
            dir.join("cni-bin").join("netctl-cni"),
        )
        .unwrap();
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [{
                "type": "netctl-cni",
                "subnet": SUBNET,
                "agent": self.lab.api(h),
                "capabilities": {"ips": true, "mac": true, "aliases": true}
            }]
        });
        std::fs::write(
            dir.join("cni-conf").join(format!("{NETWORK}.conflist")),
            serde_json::to_string_pretty(&conflist).unwrap(),
        )
        .unwrap();
        let d = |sub: &str| dir.join(sub).display().to_string();
        let containers_conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [network]\n\
             network_backend = \"cni\"\n\
             network_config_dir = \"{}\"\n\
             cni_plugin_dirs = [\"{}\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{}\"\n\
             runtime = \"runc\"\n\
             tmp_dir = \"{}\"\n\
             volume_path = \"{}\"\n",
            d("cni-conf"),
            d("cni-bin"),
            dir.join("events.log").display(),
            d("tmp"),
            d("volumes"),
        );
        std::fs::write(dir.join("containers.conf"), containers_conf).unwrap();
        let storage_conf = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            d("root"),
            d("run")
        );
        std::fs::write(dir.join("storage.conf"), storage_conf).unwrap();
    }

    /// A process that only holds host `h`'s private mount namespace, so it outlives agent
    /// restarts; its agent and Podman commands join it.
    fn start_holder(&mut self, h: usize) {
        let dir = self.host_dir(h);
        let binds = vec![
            (dir.join("var-lib-cni"), PathBuf::from(HOST_DIRS[0])),
            (dir.join("var-lib-containers"), PathBuf::from(HOST_DIRS[1])),
        ];
        let mut cmd = Command::new("sleep");
        cmd.arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            lab::spawn_in_private_mounts(&netns_path(&self.lab.host(h)), &binds, cmd).unwrap();
        self.holder[h] = Some(child);
    }

    fn holder_pid(&self, h: usize) -> u32 {
        self.holder[h].as_ref().map(Child::id).expect("a holder")
    }

    fn start_agent(&mut self, h: usize) {
        let pid = self.holder_pid(h);
        self.lab
            .start_agent_with(h, move |ns, cmd| lab::spawn_in_mounts_of(ns, pid, cmd));
    }

    /// `podman ARGS` on host `h`, bounded in time.
    fn podman(&self, h: usize, args: &[&str]) -> Output {
        let dir = self.host_dir(h);
        let mut cmd = Command::new("podman");
        cmd.args(args)
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child =
            lab::spawn_in_mounts_of(&netns_path(&self.lab.host(h)), self.holder_pid(h), cmd)
                .unwrap_or_else(|e| panic!("podman on h{h}: {e}"));
        common::engines::wait_bounded(child)
    }

    /// `podman ARGS` on host `h`; it must succeed. Its standard output.
    fn podman_ok(&self, h: usize, args: &[&str]) -> String {
        let out = self.podman(h, args);
        assert!(
            out.status.success(),
            "h{h} podman {args:?}: {}\n{}",
            text(&out),
            self.lab.logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `podman run -d --name NAME --network web EXTRA local/bb sleep 3600` on host `h`.
    fn run(&self, h: usize, name: &str, extra: &[&str]) -> Output {
        let mut args = vec!["run", "-d", "--name", name, "--network", NETWORK];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["local/bb", "sleep", "3600"]);
        self.podman(h, &args)
    }

    /// Polls `podman exec CONTAINER ping -c1 -W1 TARGET` on host `h` until it succeeds.
    fn wait_ping(&self, h: usize, container: &str, target: &str) {
        common::engines::wait_ping(
            h,
            container,
            target,
            PATIENCE,
            |args| self.podman(h, args),
            || self.lab.logs(),
        );
    }

    /// The IPv4 address (CIDR) of `eth0` in a container, as `ip -4 -o addr` shows it.
    fn addr(&self, h: usize, container: &str) -> Option<String> {
        let out = self.podman(
            h,
            &["exec", container, "ip", "-4", "-o", "addr", "show", "eth0"],
        );
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        t.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .map(str::to_owned)
    }

    /// Waits until host `h`'s agent no longer resolves `name` on the network.
    fn wait_withdrawn(&self, h: usize, name: &str) {
        try_poll(PATIENCE, || {
            let out = self
                .lab
                .cli(h, &["dns", "lookup", name, "--network", NETWORK]);
            // Exit status 1: the name is unknown there.
            if out.status.code() == Some(1) {
                Ok(())
            } else {
                Err(text(&out))
            }
        })
        .unwrap_or_else(|t| panic!("{name} never withdrawn on h{h}: {t}\n{}", self.lab.logs()));
    }
}

impl Drop for PodmanLab {
    fn drop(&mut self) {
        for h in PODMAN_HOSTS {
            if self.holder[h].is_some() {
                let _ = self.podman(h, &["rm", "-a", "-f", "-t", "0"]);
                let _ = self.podman(h, &["rmi", "-a", "-f"]);
            }
        }
        for h in 1..=HOSTS {
            self.lab.stop_agent(h);
        }
        for child in self.holder.iter_mut().filter_map(Option::take) {
            stop(child, Duration::from_secs(5));
        }
        remove_created(&self.created);
    }
}

fn podman_containers_on_two_hosts_share_a_cluster_network() {
    let mut pl = PodmanLab::new();
    let rootfs = pl.lab.dir.join("rootfs");
    make_rootfs(&rootfs);
    let image = pl.lab.dir.join("bb.tar");
    let out = Command::new("tar")
        .args(["-C", &rootfs.display().to_string(), "-cf"])
        .arg(&image)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", text(&out));
    for h in PODMAN_HOSTS {
        pl.podman_ok(h, &["import", &image.display().to_string(), "local/bb"]);
    }

    // The first container anywhere creates the cluster network with the conflist's subnet;
    // the second host's agent finds it.
    let out = pl.run(1, "p1", &["--network-alias", "alias1"]);
    assert!(out.status.success(), "{}\n{}", text(&out), pl.lab.logs());
    pl.lab
        .wait_for(2, &["network", "ls"], |t| t.contains(NETWORK));
    let out = pl.run(2, "p2", &[]);
    assert!(out.status.success(), "{}\n{}", text(&out), pl.lab.logs());

    // The interface is the runtime's eth0 in the subnet, without a default route; Podman
    // wrote the plugin's nameserver into the container's resolv.conf.
    let p1 = pl.addr(1, "p1").expect("p1 has an address");
    assert!(p1.starts_with("198.18.110."), "{p1}");
    let routes = pl.podman_ok(1, &["exec", "p1", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let resolv = pl.podman_ok(1, &["exec", "p1", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");

    // Across VXLAN, by name and by alias, both ways.
    pl.wait_ping(1, "p1", "p2");
    pl.wait_ping(2, "p2", "p1");
    pl.wait_ping(2, "p2", "alias1");

    // A container of the CLI on host 3 reaches them, and is reached by name.
    let container = pl.lab.container(3, 1);
    pl.lab.ok(
        3,
        &[
            "sandbox",
            "create",
            "c1",
            "--netns",
            &format!("/run/netns/{container}"),
        ],
    );
    pl.lab.ok(3, &["endpoint", "create", NETWORK, "cli3"]);
    pl.lab.ok(3, &["endpoint", "join", "cli3", "c1"]);
    let p1_ip: Ipv4Addr = p1.split('/').next().unwrap().parse().unwrap();
    try_poll(PATIENCE, || {
        pl.lab.ping(&container, p1_ip).then_some(()).ok_or(())
    })
    .unwrap_or_else(|_| panic!("cli3 never reached p1\n{}", pl.lab.logs()));
    pl.wait_ping(1, "p1", "cli3");

    // --ip is honoured, and refused on the other host while it is held.
    let out = pl.run(1, "p3", &["--ip", "198.18.110.77"]);
    assert!(out.status.success(), "{}\n{}", text(&out), pl.lab.logs());
    assert_eq!(pl.addr(1, "p3").as_deref(), Some("198.18.110.77/24"));
    let out = pl.run(2, "p4", &["--ip", "198.18.110.77"]);
    assert!(!out.status.success(), "taken twice: {}", text(&out));
    assert!(
        text(&out).contains("Address already in use"),
        "{}",
        text(&out)
    );
    let _ = pl.podman(2, &["rm", "-f", "p4"]);
    pl.wait_ping(2, "p2", "p3");

    // podman network reload: DEL then ADD, with the address it had.
    let before = pl.addr(2, "p2");
    pl.podman_ok(2, &["network", "reload", "p2"]);
    assert_eq!(pl.addr(2, "p2"), before, "reload kept the address");
    pl.wait_ping(1, "p1", "p2");

    // podman stop withdraws the name cluster-wide; start brings it back; rm withdraws it.
    pl.podman_ok(2, &["stop", "-t", "0", "p2"]);
    pl.wait_withdrawn(1, "p2");
    pl.podman_ok(2, &["start", "p2"]);
    pl.wait_ping(1, "p1", "p2");
    pl.podman_ok(2, &["rm", "-f", "-t", "0", "p2"]);
    pl.wait_withdrawn(1, "p2");
    pl.wait_withdrawn(3, "p2");

    // An agent restart: its containers are reachable again; one removed while it was down
    // (its DEL finds no agent, and succeeds) is withdrawn when it is back.
    pl.lab.stop_agent(1);
    let out = pl.podman(1, &["rm", "-f", "-t", "0", "p3"]);
    assert!(out.status.success(), "DEL without an agent: {}", text(&out));
    pl.start_agent(1);
    try_poll(PATIENCE, || {
        pl.lab.ping(&container, p1_ip).then_some(()).ok_or(())
    })
    .unwrap_or_else(|_| {
        panic!(
            "p1 unreachable after its agent restarted\n{}",
            pl.lab.logs()
        )
    });
    pl.wait_ping(1, "p1", "cli3");
    pl.wait_withdrawn(3, "p3");
    let listed = pl.lab.ok(1, &["endpoint", "ls"]);
    assert!(!listed.contains("p3"), "{listed}");
}
