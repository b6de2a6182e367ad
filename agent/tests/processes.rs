#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! Real `netagent run` processes on loopback, driven through the libnetwork-compatible
//! diagnostic API the way libnetwork's networkdb test client drives its servers; bad
//! configurations refused with exit status 2.
//!
//! Each agent gets its own loopback address (127.X.T.N, X derived from the process id so
//! concurrent runs do not collide) with libnetwork's ports: 7946 for gossip, 2000 for the
//! diagnostic API.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

mod common;
use common::poll::{accept, poll_until, try_poll};
use common::{Scratch, ip, netagent, scratch, try_http};

const PATIENCE: Duration = Duration::from_secs(30);

/// A running agent; killed and its directory removed on drop.
struct Agent {
    child: Option<Child>,
    ip: Ipv4Addr,
    dir: Scratch,
}

impl Agent {
    fn start(test: u8, node: u8) -> Self {
        let ip = ip(test, node);
        let dir = scratch("test", &format!("{test}-{node}"));
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = netagent()
            .args(["run", "--insecure", "--fast-failure-detection"])
            .args(["--name", &format!("agent{node}")])
            .args(["--bind", &format!("{ip}:7946")])
            .args(["--diag-addr", &format!("{ip}:2000")])
            .args(["--api", &format!("unix:{}", dir.join("api.sock").display())])
            .args(["--state-dir", &dir.join("state").display().to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent = Self {
            child: Some(child),
            ip,
            dir,
        };
        agent.wait_for("/ready", |b| b.contains("OK"));
        agent
    }

    fn get(&self, path: &str) -> String {
        http(SocketAddr::from((self.ip, 2000)), "GET", path)
    }

    /// GETs `path` until the body satisfies `ok` (the last observation on timeout is the
    /// last body, `None` when the agent did not answer).
    fn wait_for(&self, path: &str, ok: impl Fn(&str) -> bool) -> String {
        let addr = SocketAddr::from((self.ip, 2000));
        try_poll(PATIENCE, || match try_http(addr, "GET", path) {
            Some(body) => accept(body, |b| ok(b)).map_err(Some),
            None => Err(None),
        })
        .unwrap_or_else(|t| panic!("{path} on {}: {t}; log:\n{}", self.ip, self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        // The child stays in `self` until it exited, so a timeout still kills it on drop.
        let child = self.child.as_mut().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = poll_until("an exit after SIGTERM", PATIENCE, || {
            child.try_wait().unwrap().ok_or("running")
        });
        self.child = None;
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn http(addr: SocketAddr, method: &str, path: &str) -> String {
    try_http(addr, method, path).unwrap_or_else(|| panic!("{method} {path} on {addr} failed"))
}

/// libnetwork's dbclient flow against three agents: join, join a network, write on one,
/// read on the others; then a graceful leave on SIGTERM.
#[test]
fn three_processes_replicate_through_the_diagnostic_api() {
    let t = 1;
    let mut agents: Vec<Agent> = (1..=3).map(|n| Agent::start(t, n)).collect();
    let seed = agents[0].ip;
    for a in &agents[1..] {
        assert_eq!(a.get(&format!("/join?members={seed}")), "OK");
    }
    for a in &agents {
        a.wait_for("/clusterpeers", |b| b.contains("total entries: 3"));
        assert_eq!(a.get("/joinnetwork?nid=test"), "OK");
    }
    for a in &agents {
        a.wait_for("/networkpeers?nid=test", |b| b.contains("total entries: 3"));
    }
    assert_eq!(
        agents[0].get("/createentry?unsafe&nid=test&tname=t&value=v&key=k"),
        "OK"
    );
    for a in &agents[1..] {
        let body = a.wait_for("/gettable?nid=test&tname=t&unsafe", |b| {
            b.contains("total entries: 1")
        });
        assert_eq!(
            body,
            "OK\ntotal entries: 1\n0) k:`k` -> v:`v` owner:`agent1@1`\n"
        );
    }
    let metrics = agents[1].get("/metrics");
    assert!(
        metrics.contains("netagent_members{state=\"active\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("netagent_network_entries{network=\"test\"} 1"));
    assert!(
        metrics.contains("netagent_ipam_events_total{event=\"local_allocation\"}")
            && metrics.contains("netagent_operations_total{answer=\"waited\"}"),
        "{metrics}"
    );

    // SIGTERM: a graceful leave; the others drop the leaver at once (no failure timeout).
    let status = agents[2].terminate();
    assert!(status.success(), "exit status {status}");
    agents[0].wait_for("/clusterpeers", |b| b.contains("total entries: 2"));
    agents[0].wait_for("/networkpeers?nid=test", |b| b.contains("total entries: 2"));
}

fn run_args(args: &[&str]) -> Output {
    let dir = scratch("test", "config");
    let out = netagent()
        .arg("run")
        .args(["--state-dir", &dir.join("state").display().to_string()])
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn refused(out: &Output, needle: &str) {
    common::refused_with(out, 2, needle);
}

#[test]
fn bad_configuration_exits_with_status_2_naming_the_field() {
    let bind = format!("{}:7946", ip(2, 1));
    refused(
        &run_args(&["--insecure", "--bind", &bind, "--packet-size", "499"]),
        "invalid packet_size: 499 (allowed: 500..=65507 bytes)",
    );
    refused(
        &run_args(&["--insecure", "--bind", &bind, "--vxlan-port", "0"]),
        "vxlan_port",
    );
    refused(&run_args(&["--bind", &bind]), "--insecure");
    let dir = scratch("test", "toml");
    let file = dir.join("netagent.toml");
    std::fs::write(&file, "insecure = true\npacket_sise = 1400\n").unwrap();
    refused(
        &run_args(&["--bind", &bind, "--config", &file.display().to_string()]),
        "packet_sise",
    );
    // Files are read at start: a bad key file is a bad configuration as well (exit 2).
    let keys = dir.join("gossip.key");
    std::fs::write(&keys, "not a key\n").unwrap();
    let missing = dir.join("missing.pem").display().to_string();
    refused(
        &run_args(&[
            "--bind",
            &bind,
            "--key-file",
            &keys.display().to_string(),
            "--tls-ca",
            &missing,
            "--tls-cert",
            &missing,
            "--tls-key",
            &missing,
        ]),
        "key",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two agents cannot share a state directory (both would write `cnm.json` and the
/// incarnation counter): the second start fails naming the directory's lock.
#[test]
fn a_state_directory_serves_one_agent() {
    let first = Agent::start(3, 1);
    let ip = ip(3, 2);
    let out = netagent()
        .args(["run", "--insecure"])
        .args(["--bind", &format!("{ip}:7946")])
        .args(["--diag-addr", &format!("{ip}:2000")])
        .args([
            "--api",
            &format!("unix:{}", first.dir.join("other.sock").display()),
        ])
        .args([
            "--state-dir",
            &first.dir.join("state").display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another netagent"), "{stderr}");
}
