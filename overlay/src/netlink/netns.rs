//! Named network namespaces (`/run/netns/<name>`, as `ip netns` keeps them) and netlink
//! connections opened inside one.
//!
//! A namespace is entered only on a short-lived, dedicated OS thread: `setns` and `unshare`
//! change the calling thread's namespace, and a tokio worker must never be moved. A netlink
//! socket stays in the namespace it was created in, so the thread only creates the socket and
//! exits; the connection then runs on the caller's runtime.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::NetlinkError;

/// Where named namespaces live (`ip netns` uses the same directory).
pub const NETNS_DIR: &str = "/run/netns";

/// The path of the named namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// A netlink connection inside one namespace. Dropping it ends the connection task and closes
/// the socket, which releases the socket's reference on the namespace.
pub(crate) struct NsConn {
    pub(crate) handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NsConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a netlink connection in the calling thread's namespace.
pub(crate) fn connect_here(what: &str) -> Result<NsConn, NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetlinkError::Netns {
        name: what.to_owned(),
        source,
    })?;
    let task = tokio::spawn(conn);
    Ok(NsConn { handle, task })
}

/// Opens a netlink connection inside the namespace at `path`.
pub(crate) async fn connect_in(path: &Path, timeout: Duration) -> Result<NsConn, NetlinkError> {
    let name = path.display().to_string();
    let rt = tokio::runtime::Handle::current();
    let on_thread = {
        let path = path.to_owned();
        move || -> io::Result<_> {
            let ns = File::open(&path)?;
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)?;
            // The socket registers with the caller's reactor; the thread ends right after.
            let _guard = rt.enter();
            rtnetlink::new_connection()
        }
    };
    let (conn, handle, _) = on_ns_thread(&name, timeout, on_thread).await?;
    let task = tokio::spawn(conn);
    Ok(NsConn { handle, task })
}

/// Creates the named namespace `name` (like `ip netns add`): a thread unshares its network
/// namespace and bind-mounts it onto `/run/netns/<name>`. Fails if the name exists.
///
/// Unlike `ip netns add`, `/run/netns` is not made a shared mount point, so the namespace is
/// not visible from other mount namespaces created earlier; nothing here needs that.
pub(crate) async fn create(name: &str, timeout: Duration) -> Result<PathBuf, NetlinkError> {
    let path = netns_path(name);
    let on_thread = {
        let path = path.clone();
        move || create_on_this_thread(&path)
    };
    on_ns_thread(name, timeout, on_thread).await?;
    Ok(path)
}

/// The body of [`create`]: unshares the calling thread's network namespace and bind-mounts
/// it onto `path`. The thread is left in the new namespace, so it must be one made for this
/// and ended afterwards. Fails if `path` exists; a half-made file is removed.
pub(crate) fn create_on_this_thread(path: &Path) -> io::Result<()> {
    fs::create_dir_all(NETNS_DIR)?;
    File::options().write(true).create_new(true).open(path)?;
    let made = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .and_then(|()| {
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .map_err(io::Error::from);
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// Deletes the named namespace `name` (like `ip netns del`): detaches the bind mount and
/// removes the file. The namespace itself goes away once nothing else holds it. An absent
/// namespace is not an error.
pub(crate) fn delete(name: &str) -> Result<(), NetlinkError> {
    let path = netns_path(name);
    if !path.exists() {
        return Ok(());
    }
    let err = |source: io::Error| NetlinkError::Netns {
        name: name.to_owned(),
        source,
    };
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: the file is not a mount point (a half-made namespace); remove it anyway.
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(err(e.into())),
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// The names in `/run/netns` that start with `prefix`, sorted.
pub(crate) fn list(prefix: &str) -> Result<Vec<String>, NetlinkError> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetlinkError::Netns {
                name: NETNS_DIR.to_owned(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

/// Runs `f` on a fresh OS thread inside the network namespace at `path`, at most `timeout`,
/// without blocking the runtime. Sockets `f` creates stay in that namespace after the thread
/// ends: this is how a server binds an address of a container's namespace. (Turn them into
/// tokio sockets on the caller's runtime.)
pub async fn run_in_netns<T, F>(path: &Path, timeout: Duration, f: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let name = path.display().to_string();
    let path = path.to_owned();
    on_ns_thread(&name, timeout, move || {
        let ns = File::open(&path)?;
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)?;
        f()
    })
    .await
}

/// Runs `f` on a fresh OS thread (which may change its own namespaces and then ends) and
/// waits for it without blocking the runtime, at most `timeout`.
async fn on_ns_thread<T, F>(name: &str, timeout: Duration, f: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ov-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|source| NetlinkError::Netns {
            name: name.to_owned(),
            source,
        })?;
    let err = |source| NetlinkError::Netns {
        name: name.to_owned(),
        source,
    };
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result.map_err(err),
        Ok(Err(_)) => Err(err(io::Error::other("namespace thread panicked"))),
        Err(_) => Err(NetlinkError::Timeout {
            what: format!("namespace operation on {name}"),
        }),
    }
}
