//! Two agents in this process on loopback, B joined to A, as the benchmarks start them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent::config::AgentConfig;
use agent::daemon::Daemon;

/// A benchmark's error.
pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How long the two agents may take to see each other.
const FORM_WITHIN: Duration = Duration::from_secs(10);

/// Agents `bench-a` and `bench-b` (no embedded DNS) under a fresh
/// `$TMPDIR/netagent-<tag>-bench-<pid>`, once each counts the other as a member; with the
/// directory, for the caller to remove.
pub(crate) async fn start_pair(tag: &str) -> BenchResult<(PathBuf, Daemon, Daemon)> {
    let root = std::env::temp_dir().join(format!("netagent-{tag}-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let a = start("bench-a", root.join("a"), None).await?;
    let b = start("bench-b", root.join("b"), Some(a.identity().addr)).await?;
    let deadline = Instant::now() + FORM_WITHIN;
    while a.cnm().info().await?.members < 2 || b.cnm().info().await?.members < 2 {
        if Instant::now() > deadline {
            return Err("the two agents did not form a cluster".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((root, a, b))
}

async fn start(
    name: &str,
    dir: PathBuf,
    seed: Option<std::net::SocketAddr>,
) -> BenchResult<Daemon> {
    let mut config = AgentConfig::local(name, dir);
    config.join = seed.into_iter().collect();
    config.dns = false;
    Ok(Daemon::start(&config).await?)
}
