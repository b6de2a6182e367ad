#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Root-only end to end test of the Docker plugin with real Docker engines (Debian's
//! `docker.io`) on the lab of `overlay_e2e`: two "hosts" (network namespaces on a bridge in
//! an underlay namespace), each running `netagent run --docker-plugin netctl` and its own
//! dockerd (own data-root, exec-root and socket; `--iptables=false --ip-masq=false
//! --ip-forward=false --bridge=none`, so the host's network is left alone). dockerd finds
//! plugins only in fixed directories: each host's agent and dockerd share a private mount
//! namespace where the host's own directory is bind-mounted over `/run/docker/plugins` (and
//! over `/etc/docker`, where dockerd keeps its key), so both hosts use the plugin name
//! `netctl`, as real hosts would. Images come from a local busybox rootfs (`docker import`):
//! there is no registry.
//!
//! The scenario, as a user types it on each host: `docker network create -d netctl
//! --ipam-driver netctl --subnet S web` on both hosts maps to one cluster network; containers
//! on the two hosts ping each other by name and by `--network-alias` (dockerd's resolver at
//! 127.0.0.11 forwards to the agent's at 127.0.0.12: `--dns 127.0.0.12`); `--ip` is honoured
//! and refused when taken on the other host; another subnet for an existing name is refused
//! with a clear error; `docker network connect`/`disconnect`; `docker rm` withdraws the name
//! cluster-wide; a restart-policy container is reachable again after its dockerd restarted;
//! the containers are reachable again after an agent restarted, and the stopped agent left no
//! plugin socket behind.
//!
//! Only 198.18.0.0/15 is used, inside namespaces the test makes; everything it starts is
//! stopped and everything it makes removed on the way out, panics included.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use overlay::netlink::{lab, netns_path};

mod common;
use common::engines::{ensure_dir, import_rootfs, make_rootfs, remove_created, run_bounded, text};
use common::lab::{Lab, run_root_tests_needing, stop};
use common::poll::try_poll;

const HOSTS: usize = 2;
const PLUGIN: &str = "netctl";
const SUBNET: &str = "198.18.100.0/24";
/// How long each check may take.
const PATIENCE: Duration = Duration::from_secs(30);
/// dockerd's fixed plugin directory, and its configuration directory.
const PLUGIN_DIR: &str = "/run/docker/plugins";
const ETC_DOCKER: &str = "/etc/docker";

fn main() {
    run_root_tests_needing(
        "docker_e2e",
        &[
            ("dockerd", "docker.io"),
            ("docker", "docker.io"),
            ("busybox", "busybox-static"),
            ("tar", "tar"),
        ],
        vec![(
            "docker_containers_on_two_hosts_share_a_cluster_network",
            docker_containers_on_two_hosts_share_a_cluster_network,
        )],
    )
}

/// The lab, plus a dockerd per host; stops the dockerds (their containers with them) and
/// removes the directories it had to create before the lab goes.
struct DockerLab {
    lab: Lab,
    dockerd: Vec<Option<Child>>,
    /// Directories of the host this test created (removed at the end if empty).
    created: Vec<PathBuf>,
}

impl DockerLab {
    fn new() -> Self {
        let mut created = Vec::new();
        for dir in [PLUGIN_DIR, ETC_DOCKER] {
            ensure_dir(Path::new(dir), &mut created);
        }
        let lab = Lab::new(
            "dk",
            HOSTS,
            0,
            &["--docker-plugin", PLUGIN, "--dns-forward=false"],
        );
        let mut dl = Self {
            lab,
            dockerd: (0..=HOSTS).map(|_| None).collect(),
            created,
        };
        for h in 1..=HOSTS {
            for sub in ["plugins", "etc-docker", "data", "exec"] {
                std::fs::create_dir_all(dl.host_dir(h).join(sub)).unwrap();
            }
            dl.start_agent(h);
            dl.start_dockerd(h);
        }
        dl
    }

    fn host_dir(&self, h: usize) -> PathBuf {
        self.lab.dir.join(format!("docker-h{h}"))
    }

    fn docker_sock(&self, h: usize) -> PathBuf {
        self.host_dir(h).join("docker.sock")
    }

    /// Starts host `h`'s agent: in a private mount namespace of the host's own (the first
    /// start), or in the one its dockerd runs in (a restart).
    fn start_agent(&mut self, h: usize) {
        let docker_api = self.docker_sock(h);
        let binds = vec![
            (self.host_dir(h).join("plugins"), PathBuf::from(PLUGIN_DIR)),
            (
                self.host_dir(h).join("etc-docker"),
                PathBuf::from(ETC_DOCKER),
            ),
        ];
        let dockerd = self.dockerd[h].as_ref().map(Child::id);
        self.lab.start_agent_with(h, move |ns, mut cmd| {
            cmd.args(["--docker-api", &docker_api.display().to_string()]);
            match dockerd {
                Some(pid) => lab::spawn_in_mounts_of(ns, pid, cmd),
                None => lab::spawn_in_private_mounts(ns, &binds, cmd),
            }
        });
    }

    /// Starts host `h`'s dockerd in its agent's mount namespace and waits until it answers.
    fn start_dockerd(&mut self, h: usize) {
        let dir = self.host_dir(h);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .unwrap();
        let mut cmd = Command::new("dockerd");
        cmd.args(["--storage-driver", "vfs"])
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .args(["--ip-forward=false", "--bridge=none"])
            .args(["--data-root", &dir.join("data").display().to_string()])
            .args(["--exec-root", &dir.join("exec").display().to_string()])
            .args(["-H", &format!("unix://{}", self.docker_sock(h).display())])
            .args(["--pidfile", &dir.join("docker.pid").display().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let agent = self.lab.agent_pid(h).expect("the agent runs");
        let child = lab::spawn_in_mounts_of(&netns_path(&self.lab.host(h)), agent, cmd).unwrap();
        self.dockerd[h] = Some(child);
        try_poll(PATIENCE, || {
            let out = self.docker(h, &["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(text(&out))
            }
        })
        .unwrap_or_else(|t| panic!("dockerd on h{h} did not start: {t}\n{}", self.logs()));
    }

    /// Stops host `h`'s dockerd (SIGTERM: it stops its containers) and waits for it.
    fn stop_dockerd(&mut self, h: usize) {
        if let Some(child) = self.dockerd[h].take() {
            stop(child, Duration::from_secs(30));
        }
    }

    /// `docker -H <host h's dockerd> ARGS`, bounded in time.
    fn docker(&self, h: usize, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["-H", &format!("unix://{}", self.docker_sock(h).display())])
            .args(args)
            .env("DOCKER_CONFIG", self.lab.dir.join("docker-cli"));
        run_bounded(cmd, None)
    }

    /// `docker ARGS` on host `h`; it must succeed. Its standard output.
    fn docker_ok(&self, h: usize, args: &[&str]) -> String {
        let out = self.docker(h, args);
        assert!(
            out.status.success(),
            "h{h} docker {args:?}: {}\n{}",
            text(&out),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls `docker exec CONTAINER ping -c1 -W1 TARGET` on host `h` until it succeeds.
    fn wait_ping(&self, h: usize, container: &str, target: &str) {
        common::engines::wait_ping(
            h,
            container,
            target,
            PATIENCE,
            |args| self.docker(h, args),
            || self.logs(),
        );
    }

    /// The agents' and dockerds' logs, for a failure message.
    fn logs(&self) -> String {
        let mut out = self.lab.logs();
        for h in 1..=HOSTS {
            let log =
                std::fs::read_to_string(self.host_dir(h).join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str(&format!("--- h{h} dockerd log (last lines):\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for DockerLab {
    fn drop(&mut self) {
        for h in 1..=HOSTS {
            if self.dockerd[h].is_some() {
                let ids = self.docker(h, &["ps", "-aq"]);
                let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids);
                    let _ = self.docker(h, &args);
                }
            }
            self.stop_dockerd(h);
        }
        for h in 1..=HOSTS {
            self.lab.stop_agent(h);
        }
        remove_created(&self.created);
    }
}

/// The busybox rootfs imported as image `local/bb` on host `h`.
fn import_image(dl: &DockerLab, h: usize, rootfs: &Path) {
    let mut cmd = Command::new("docker");
    cmd.args(["-H", &format!("unix://{}", dl.docker_sock(h).display())])
        .args(["import", "-", "local/bb"])
        .env("DOCKER_CONFIG", dl.lab.dir.join("docker-cli"));
    import_rootfs(rootfs, cmd);
}

/// The IPv4 address of `ifname` in a container, as `ip -4 -o addr` shows it.
fn container_addr(dl: &DockerLab, h: usize, container: &str, ifname: &str) -> Option<String> {
    let out = dl.docker(
        h,
        &["exec", container, "ip", "-4", "-o", "addr", "show", ifname],
    );
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    t.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(str::to_owned)
}

fn docker_containers_on_two_hosts_share_a_cluster_network() {
    let mut dl = DockerLab::new();
    let rootfs = dl.lab.dir.join("rootfs");
    make_rootfs(&rootfs);
    for h in 1..=HOSTS {
        import_image(&dl, h, &rootfs);
    }
    let net = |name: &str, subnet: &str| -> Vec<String> {
        [
            "network",
            "create",
            "-d",
            PLUGIN,
            "--ipam-driver",
            PLUGIN,
            "--subnet",
            subnet,
            name,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let run = |dl: &DockerLab, h: usize, v: Vec<String>| {
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        dl.docker(h, &v)
    };

    // One network on both hosts: created by h1, adopted by h2 once it sees it.
    let out = run(&dl, 1, net("web", SUBNET));
    assert!(out.status.success(), "{}\n{}", text(&out), dl.logs());
    dl.lab
        .wait_for(2, &["network", "ls"], |t| t.contains("web"));
    let out = run(&dl, 2, net("web", SUBNET));
    assert!(out.status.success(), "{}\n{}", text(&out), dl.logs());

    let c = |name: &str, extra: &[&str]| -> Vec<String> {
        // `--pull never`: there is no registry, and nothing may be fetched from one.
        let mut v: Vec<String> = [
            "run",
            "-d",
            "--pull",
            "never",
            "--name",
            name,
            "--network",
            "web",
            "--dns",
            "127.0.0.12",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v.extend(
            ["local/bb", "sleep", "3600"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        v
    };
    let out = run(&dl, 1, c("c1", &["--network-alias", "alias1"]));
    assert!(out.status.success(), "{}\n{}", text(&out), dl.logs());
    let out = run(&dl, 2, c("c2", &[]));
    assert!(out.status.success(), "{}\n{}", text(&out), dl.logs());

    // No docker_gwbridge: the container has one interface, no default route.
    let routes = dl.docker_ok(1, &["exec", "c1", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let links = dl.docker_ok(1, &["exec", "c1", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
    let ip1 = container_addr(&dl, 1, "c1", "eth0").expect("c1 has an address");
    assert!(ip1.starts_with("198.18.100."), "{ip1}");

    // Across VXLAN, by name and by alias, both ways.
    dl.wait_ping(1, "c1", "c2");
    dl.wait_ping(2, "c2", "c1");
    dl.wait_ping(2, "c2", "alias1");

    // --ip is honoured, and refused on the other host while it is held.
    let out = run(&dl, 1, c("c3", &["--ip", "198.18.100.77"]));
    assert!(out.status.success(), "{}\n{}", text(&out), dl.logs());
    assert_eq!(
        container_addr(&dl, 1, "c3", "eth0").as_deref(),
        Some("198.18.100.77/24")
    );
    let out = run(&dl, 2, c("c4", &["--ip", "198.18.100.77"]));
    assert!(!out.status.success(), "taken twice: {}", text(&out));
    assert!(
        text(&out).contains("Address already in use"),
        "{}",
        text(&out)
    );
    let _ = dl.docker(2, &["rm", "-f", "c4"]);
    dl.wait_ping(2, "c2", "c3");

    // docker rm withdraws the endpoint cluster-wide: its name goes on the other host.
    dl.docker_ok(1, &["rm", "-f", "c3"]);
    try_poll(PATIENCE, || {
        let out = dl.lab.cli(2, &["dns", "lookup", "c3", "--network", "web"]);
        // Exit status 1: the name is unknown there.
        let t = text(&out);
        if out.status.code() == Some(1) && !t.contains("198.18.100.77") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .unwrap_or_else(|t| panic!("c3 never withdrawn: {t}\n{}", dl.logs()));

    // Another subnet under an existing name is refused with a clear error.
    let out = run(&dl, 1, net("blue", "198.18.102.0/24"));
    assert!(out.status.success(), "{}", text(&out));
    dl.lab
        .wait_for(2, &["network", "ls"], |t| t.contains("blue"));
    let _ = run(&dl, 2, net("blue", "198.18.103.0/24"));
    let mut v = c("b2", &[]);
    v[7] = "blue".into();
    let out = run(&dl, 2, v);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("exists in the cluster with subnet 198.18.102.0/24"),
        "{}",
        text(&out)
    );
    let _ = dl.docker(2, &["rm", "-f", "b2"]);

    // network connect / disconnect, on a network with an auxiliary address.
    let mut green = net("green", "198.18.104.0/24");
    green.insert(2, "--aux-address=gw2=198.18.104.250".into());
    let out = run(&dl, 2, green);
    assert!(out.status.success(), "{}", text(&out));
    dl.docker_ok(2, &["network", "connect", "green", "c2"]);
    let ip = container_addr(&dl, 2, "c2", "eth1").expect("c2 on green");
    assert!(ip.starts_with("198.18.104."), "{ip}");
    dl.docker_ok(2, &["network", "disconnect", "green", "c2"]);
    assert_eq!(container_addr(&dl, 2, "c2", "eth1"), None);
    // The auxiliary address is kept from every container while the network exists, and
    // given back with it: `docker network rm` on h2, then h1 may use it.
    dl.lab
        .wait_for(1, &["network", "ls"], |t| t.contains("green"));
    let out = run(&dl, 1, net("green", "198.18.104.0/24"));
    assert!(out.status.success(), "{}", text(&out));
    let mut g1 = c("g1", &["--ip", "198.18.104.250"]);
    g1[7] = "green".into();
    let out = run(&dl, 1, g1.clone());
    assert!(
        !out.status.success(),
        "an auxiliary address was given: {}",
        text(&out)
    );
    let _ = dl.docker(1, &["rm", "-f", "g1"]);
    dl.docker_ok(2, &["network", "rm", "green"]);
    let out = run(&dl, 1, g1);
    assert!(out.status.success(), "{}\n{}", text(&out), dl.logs());
    assert_eq!(
        container_addr(&dl, 1, "g1", "eth0").as_deref(),
        Some("198.18.104.250/24")
    );
    dl.docker_ok(1, &["rm", "-f", "g1"]);
    // The cluster network outlives the Docker networks mapped to it.
    assert!(dl.lab.ok(2, &["network", "ls"]).contains("green"));

    // dockerd replays nothing after a restart: a restart-policy container joins again, and
    // is reachable by name again.
    let out = run(&dl, 1, c("r1", &["--restart", "always"]));
    assert!(out.status.success(), "{}", text(&out));
    dl.wait_ping(2, "c2", "r1");
    dl.stop_dockerd(1);
    dl.start_dockerd(1);
    dl.wait_ping(2, "c2", "r1");
    dl.wait_ping(1, "r1", "c2");

    // An agent restart: its socket goes with it, and its containers come back.
    dl.lab.stop_agent(2);
    let socket = dl
        .host_dir(2)
        .join("plugins")
        .join(format!("{PLUGIN}.sock"));
    assert!(
        !socket.exists(),
        "a stopped agent left {}",
        socket.display()
    );
    dl.start_agent(2);
    dl.wait_ping(2, "c2", "r1");
    dl.wait_ping(1, "r1", "c2");
    // And it serves dockerd again.
    let out = run(&dl, 2, c("c5", &[]));
    assert!(out.status.success(), "{}\n{}", text(&out), dl.logs());
    dl.wait_ping(1, "r1", "c5");
}
