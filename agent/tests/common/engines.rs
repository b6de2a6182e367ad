//! Helpers of the end-to-end tests with real container engines (dockerd, Podman): bounded
//! commands, a busybox image from a local rootfs (there is no registry), and host
//! directories an engine insists on, made and removed by the test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::lab::find_program;
use super::poll::try_poll;

/// The longest one engine command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// The busybox applets the image links.
const APPLETS: [&str; 6] = ["sh", "ping", "sleep", "ip", "cat", "nslookup"];

/// Creates `dir` and the missing directories above it, recording each made (to remove in
/// reverse order afterwards, when empty).
pub fn ensure_dir(dir: &Path, created: &mut Vec<PathBuf>) {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        std::fs::create_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        created.push(d);
    }
}

/// Removes the directories [`ensure_dir`] made, the deepest first, where empty.
pub fn remove_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Runs `cmd` (with `input` on its stdin) to its end, killed after [`COMMAND_TIMEOUT`].
pub fn run_bounded(mut cmd: Command, input: Option<std::process::ChildStdout>) -> Output {
    let stdin = match input {
        Some(out) => Stdio::from(out),
        None => Stdio::null(),
    };
    let child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    wait_bounded(child)
}

/// Waits for `child` (spawned with piped output) to end, killed after [`COMMAND_TIMEOUT`].
pub fn wait_bounded(mut child: std::process::Child) -> Output {
    let _ = try_poll(COMMAND_TIMEOUT, || match child.try_wait() {
        Ok(None) => Err(()),
        _ => Ok(()),
    });
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// A command's standard output and error, for a message.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A busybox rootfs in `dir`: `bin/busybox` and its applets' links.
pub fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for sub in ["etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let busybox = find_program("busybox").unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let mut f = std::fs::File::create(dir.join("etc").join("hostname")).unwrap();
    writeln!(f, "bb").unwrap();
}

/// Pipes a tar of `rootfs` into `import` (`docker import - IMAGE`, `podman import - IMAGE`);
/// it must succeed.
pub fn import_rootfs(rootfs: &Path, import: Command) {
    let mut tar = Command::new("tar")
        .args(["-C", &rootfs.display().to_string(), "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = run_bounded(import, tar.stdout.take());
    let _ = tar.wait();
    assert!(out.status.success(), "image import: {}", text(&out));
}

/// Polls `exec(["exec", CONTAINER, "ping", "-c1", "-W1", TARGET])` (`docker` or `podman` on
/// host `h`) until it succeeds, within `patience`; prints how long it took. On timeout it
/// panics with `logs()`.
pub fn wait_ping(
    h: usize,
    container: &str,
    target: &str,
    patience: Duration,
    exec: impl Fn(&[&str]) -> Output,
    logs: impl Fn() -> String,
) {
    let started = std::time::Instant::now();
    try_poll(patience, || {
        let out = exec(&["exec", container, "ping", "-c1", "-W1", target]);
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out))
        }
    })
    .unwrap_or_else(|t| panic!("h{h}: {container} never reached {target}: {t}\n{}", logs()));
    eprintln!(
        "h{h}: {container} reaches {target} ({:.2?})",
        started.elapsed()
    );
}
