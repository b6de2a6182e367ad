//! Processes started inside a namespace: the child inherits the namespaces of the thread
//! that forks it, so a thread enters the namespace, spawns, and ends.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::links::on_thread_blocking;
use crate::netlink::NetlinkError;

/// The file a container's resolver reads.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Starts `cmd` inside network namespace `ns` (the process's own mount namespace: what it
/// mounts, such as an agent's namespaces in `/run/netns`, everybody sees).
pub fn spawn_in(ns: &Path, cmd: Command) -> Result<Child, NetlinkError> {
    let path = ns.to_owned();
    on_thread_blocking(&ns.display().to_string(), move || {
        let mut cmd = cmd;
        enter(&path, None)?;
        cmd.spawn()
    })
}

/// Starts `cmd` inside network namespace `ns` and a private mount namespace of its own
/// where each `(source, target)` of `binds` is bind-mounted (a host of a lab with its own
/// view of fixed paths, such as dockerd's plugin directory). Nothing mounted there reaches
/// the caller's mount namespace; it lasts as long as a process uses it. Other processes
/// join it with [`spawn_in_mounts_of`].
pub fn spawn_in_private_mounts(
    ns: &Path,
    binds: &[(PathBuf, PathBuf)],
    cmd: Command,
) -> Result<Child, NetlinkError> {
    let path = ns.to_owned();
    let binds = binds.to_vec();
    on_thread_blocking(&ns.display().to_string(), move || {
        let mut cmd = cmd;
        enter(&path, None)?;
        private_mounts()?;
        for (source, target) in &binds {
            bind(source, target)?;
        }
        cmd.spawn()
    })
}

/// Starts `cmd` inside network namespace `ns` and the mount namespace of process `pid` (one
/// started by [`spawn_in_private_mounts`], or a process of its namespace).
pub fn spawn_in_mounts_of(ns: &Path, pid: u32, cmd: Command) -> Result<Child, NetlinkError> {
    let path = ns.to_owned();
    on_thread_blocking(&ns.display().to_string(), move || {
        let mut cmd = cmd;
        enter(&path, None)?;
        let mounts = File::open(format!("/proc/{pid}/ns/mnt"))?;
        // A thread that shares its filesystem attributes cannot change mount namespace.
        nix::sched::unshare(CloneFlags::CLONE_FS)?;
        nix::sched::setns(&mounts, CloneFlags::CLONE_NEWNS)?;
        cmd.spawn()
    })
}

/// Moves the calling thread into a mount namespace of its own, private: what is mounted in
/// it does not propagate back.
fn private_mounts() -> io::Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}

/// Bind-mounts `source` over `target` in the calling thread's mount namespace.
fn bind(source: &Path, target: &Path) -> io::Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        io::Error::other(format!(
            "bind-mount {} over {}: {e}",
            source.display(),
            target.display()
        ))
    })
}

/// Runs `cmd` to its end inside network namespace `ns`; its output. With `resolv_conf`, the
/// command runs in a private mount namespace where that file is bind-mounted over
/// `/etc/resolv.conf`, as `ip netns exec` does with `/etc/netns/<name>/resolv.conf`: a
/// resolver (glibc's `getent`) then asks the container's DNS server. A command still running
/// a second before [`LAB_TIMEOUT`](super::LAB_TIMEOUT) is killed (its output is what it wrote
/// by then); its output should fit a pipe's buffer (64 KiB), as a lookup's does.
pub fn output_in(
    ns: &Path,
    resolv_conf: Option<&Path>,
    cmd: Command,
) -> Result<Output, NetlinkError> {
    let path = ns.to_owned();
    let resolv_conf = resolv_conf.map(Path::to_owned);
    on_thread_blocking(&ns.display().to_string(), move || {
        let mut cmd = cmd;
        enter(&path, resolv_conf)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        wait_or_kill(
            child,
            super::LAB_TIMEOUT.saturating_sub(Duration::from_secs(1)),
        )
    })
}

/// Waits for `child` at most `patience`, then kills it (the caller has stopped waiting: it is
/// never left behind); its output.
#[allow(
    clippy::disallowed_methods,
    reason = "the lab (I/O side, not the sans-IO core) bounds a real process in wall-clock time"
)]
fn wait_or_kill(mut child: Child, patience: Duration) -> io::Result<Output> {
    let started = Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() >= patience {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output()
}

/// Moves the calling thread into network namespace `ns` and, with `resolv_conf`, into a
/// private mount namespace with that file over `/etc/resolv.conf`.
fn enter(ns: &Path, resolv_conf: Option<PathBuf>) -> io::Result<()> {
    let file = File::open(ns)?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
    if let Some(resolv_conf) = resolv_conf {
        // Private first: the bind mount below must not propagate to the host's namespace.
        private_mounts()?;
        bind(&resolv_conf, Path::new(RESOLV_CONF))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_patience_is_killed_and_one_within_it_is_not() {
        let slow = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_or_kill(slow, Duration::from_millis(100)).unwrap();
        assert!(!out.status.success(), "killed: {:?}", out.status);

        let quick = Command::new("echo")
            .arg("hello")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_or_kill(quick, Duration::from_secs(5)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello\n");
    }
}
