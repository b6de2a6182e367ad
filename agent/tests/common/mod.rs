//! Helpers shared by the tests that run real `netagent` processes.

#![allow(dead_code, reason = "each test file uses a subset")]
#![allow(unreachable_pub, reason = "shared by several test crates")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// A loopback address of its own per test and node: 127.X.T.N, X derived from the process id
/// so concurrent runs do not collide.
pub fn ip(test: u8, node: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 20 + (std::process::id() % 200) as u8, test, node)
}

/// A fresh directory `netagent-<prefix>-<pid>-<tag>` under the temporary directory, removed
/// with everything in it when the guard is dropped (a failing test included).
pub fn scratch(prefix: &str, tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("netagent-{prefix}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A test's scratch directory; see [`scratch`].
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `netagent` binary under test, without the caller's `NETAGENT_*` variables.
pub fn netagent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netagent"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NETAGENT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// One HTTP/1.1 request; the body of the answer, or `None` when the server cannot be reached.
pub fn try_http(addr: SocketAddr, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Some(body.to_owned())
}

/// Asserts that a command exited with `status` and said `needle` on stderr.
pub fn refused_with(out: &Output, status: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(status), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} lacks {needle:?}"
    );
}

pub mod cni;
pub mod engines;
pub mod lab;
pub mod poll;

/// Starts an in-process agent; a start refused (a fixed gossip port still held by an agent
/// killed a moment ago, say) is retried for 20 s.
pub async fn start_daemon(config: &agent::config::AgentConfig) -> agent::daemon::Daemon {
    poll::poll_until_async(
        &format!("{} to start", config.name),
        Duration::from_secs(20),
        async || {
            agent::daemon::Daemon::start(config)
                .await
                .inspect_err(|e| eprintln!("start {}: {e}; retrying", config.name))
        },
    )
    .await
}

/// When dropped, removes the overlay namespaces an in-process agent of `config` left behind
/// (as root, a test that fails before its agent shut down would leave them, and their VXLAN
/// devices would hold the VNI's port for the next run).
pub struct OverlayLeftovers(String);

impl OverlayLeftovers {
    /// The guard of the agent `config` describes.
    pub fn of(config: &agent::config::AgentConfig) -> Self {
        Self(agent::dataplane::netns_prefix(
            &config.name,
            &config.state_dir,
        ))
    }
}

impl Drop for OverlayLeftovers {
    fn drop(&mut self) {
        if let Err(e) = overlay::netlink::NetlinkDataplane::cleanup_leftovers(&self.0) {
            eprintln!("cleanup of {}*: {e}", self.0);
        }
    }
}
