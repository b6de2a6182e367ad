#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! The `netagent network|endpoint|sandbox|info` commands against real `netagent run`
//! processes on loopback: a network created through one agent is listed by another, objects
//! are created, joined and listed, and refusals exit with status 1 and the agent's message.
//!
//! Each agent gets its own loopback address (127.X.T.N, X derived from the process id, T from
//! 10 to 19 for this file) with libnetwork's ports: 7946 for gossip, 2000 for diagnostics.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
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
    fn start(test: u8, node: u8, join: Option<Ipv4Addr>) -> Self {
        let ip = ip(test, node);
        let dir = scratch("cli", &format!("{test}-{node}"));
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let mut cmd = netagent();
        cmd.args(["run", "--insecure", "--fast-failure-detection"])
            .args(["--name", &format!("agent{node}")])
            .args(["--bind", &format!("{ip}:7946")])
            .args(["--diag-addr", &format!("{ip}:2000")])
            .args(["--api", &api_of(&dir)])
            .args(["--state-dir", &dir.join("state").display().to_string()]);
        if let Some(seed) = join {
            cmd.args(["--join", &seed.to_string()]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let agent = Self {
            child: Some(child),
            ip,
            dir,
        };
        agent.wait_for_ready();
        agent
    }

    fn api(&self) -> String {
        api_of(&self.dir)
    }

    /// `netagent --api <this agent> ARGS...`.
    fn cli(&self, args: &[&str]) -> Output {
        netagent()
            .args(["--api", &self.api()])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {out:?}\nlog:\n{}",
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command until it succeeds with stdout satisfying `ok`.
    fn wait_for_output(&self, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
        try_poll(PATIENCE, || {
            let out = self.cli(args);
            if out.status.success() {
                accept(String::from_utf8_lossy(&out.stdout).into_owned(), |t| ok(t))
            } else {
                Err(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .unwrap_or_else(|t| panic!("{args:?}: {t}; log:\n{}", self.log()))
    }

    fn wait_for_ready(&self) {
        let addr = SocketAddr::from((self.ip, 2000));
        try_poll(PATIENCE, || {
            try_http(addr, "GET", "/ready")
                .filter(|b| b.contains("OK"))
                .ok_or("not ready")
        })
        .unwrap_or_else(|t| panic!("agent at {}: {t}; log:\n{}", self.ip, self.log()));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
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

fn api_of(dir: &Path) -> String {
    format!("unix:{}", dir.join("api.sock").display())
}

/// Asserts a refusal: exit status 1 and `needle` on stderr.
fn refused(out: &Output, needle: &str) {
    common::refused_with(out, 1, needle);
}

#[test]
fn the_cli_drives_two_agents() {
    let t = 10;
    let a1 = Agent::start(t, 1, None);
    let a2 = Agent::start(t, 2, Some(a1.ip));
    a1.wait_for_output(&["info"], |o| o.contains("Members:     2"));

    let id = a1.ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "198.18.10.0/24",
        "blue",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id:?}");

    // Listed on the other agent, docker-style.
    let ls = a2.wait_for_output(&["network", "ls"], |o| o.contains("blue"));
    let expected = format!(
        "NETWORK ID     NAME   DRIVER    SUBNET           VNI\n{}   blue   overlay   198.18.10.0/24   4096\n",
        &id[..12]
    );
    assert_eq!(ls, expected);
    let inspect: serde_json::Value =
        serde_json::from_str(&a2.ok(&["network", "inspect", "blue"])).unwrap();
    assert_eq!(inspect[0]["id"], id);
    assert_eq!(inspect[0]["gateway"], "198.18.10.1");
    assert_eq!(inspect[0]["created_by"], "agent1");

    // Endpoint, sandbox, join.
    let ep = a1.ok(&["endpoint", "create", "blue", "web", "--alias", "www"]);
    assert_eq!(ep.trim().len(), 64);
    assert_eq!(
        a1.ok(&["sandbox", "create", "c1", "--netns", "/var/run/netns/x"]),
        "c1\n"
    );
    assert_eq!(a1.ok(&["endpoint", "join", "web", "c1"]), "");
    let ls = a1.ok(&["endpoint", "ls"]);
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ENDPOINT", "ID", "NAME", "NETWORK", "IP", "MAC", "SANDBOX"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], &ep.trim()[..12]);
    assert_eq!(&row[1..3], ["web", "blue"]);
    assert!(
        row[3].starts_with("198.18.10.") && row[3].ends_with("/24"),
        "{row:?}"
    );
    assert!(row[4].starts_with("02:42:c6:12:0a:"), "{row:?}");
    assert_eq!(row[5], "c1");
    let sandboxes = a1.ok(&["sandbox", "ls"]);
    assert!(
        sandboxes.contains("c1     /var/run/netns/x   blue/web"),
        "{sandboxes}"
    );

    // NETAGENT_API is honoured when no --api is given.
    let out = netagent()
        .env("NETAGENT_API", a1.api())
        .args(["endpoint", "inspect", "blue/web"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect[0]["sandbox"], "c1");
    assert_eq!(inspect[0]["aliases"][0], "www");

    // Refusals: exit status 1 and the agent's message.
    refused(
        &a1.cli(&["network", "rm", "blue"]),
        "Error response from agent: network blue has active endpoints",
    );
    refused(
        &a2.cli(&["network", "create", "--subnet", "198.18.300.0/24", "bad"]),
        "Error response from agent: invalid subnet",
    );
    refused(
        &a2.cli(&["network", "create", "--subnet", "198.18.11.0/24", "blue"]),
        "Error response from agent: network with name blue already exists",
    );
    refused(
        &a1.cli(&["endpoint", "rm", "web"]),
        "Error response from agent: endpoint web is joined to sandbox c1; leave first",
    );
    refused(
        &a1.cli(&["endpoint", "rm", "nothing"]),
        "endpoint nothing not found",
    );
    assert!(!a2.ok(&["network", "ls"]).contains("bad"));

    // Undo everything; the network goes away on both agents.
    assert_eq!(a1.ok(&["endpoint", "leave", "blue/web"]), "");
    assert_eq!(a1.ok(&["endpoint", "rm", "web"]), "web\n");
    assert_eq!(a1.ok(&["sandbox", "rm", "c1"]), "c1\n");
    // agent2 refuses while it still sees agent1 attached (its endpoint's NetworkDB leave
    // takes a gossip round to arrive).
    let out = poll_until("agent2 to remove blue", Duration::from_secs(20), || {
        let out = a2.cli(&["network", "rm", "blue"]);
        if out.status.success() {
            return Ok(out);
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("has active endpoints on agent1"),
            "{out:?}"
        );
        Err(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "blue\n");
    a1.wait_for_output(&["network", "ls"], |o| !o.contains("blue"));
}

#[test]
fn an_unreachable_agent_is_named_and_exits_1() {
    let dir = scratch("cli", "unreachable");
    let api = api_of(&dir);
    let out = netagent()
        .args(["network", "ls", "--api", &api])
        .output()
        .unwrap();
    refused(
        &out,
        &format!("cannot connect to the netagent API at {api}"),
    );
    let out = netagent()
        .args(["--api", "nonsense", "info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
