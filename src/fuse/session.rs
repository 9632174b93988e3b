//! Mounting and serving: open /dev/fuse, mount(2) it as `fuse.unionrs` (so mount(8) finds
//! our helper and findmnt shows the type), run the FUSE session on several threads, and
//! unmount on SIGTERM/SIGINT/SIGHUP.

use super::conn::{Conn, Transport};
pub use super::devloop::{Started, start};
use super::state::UnionFs;
use crate::sys::{fs, proc};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What to mount where, after option parsing.
#[derive(Clone, Debug)]
pub struct MountSpec {
    pub source: String,
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub allow_other: bool,
    pub default_permissions: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub noatime: bool,
    pub strictatime: bool,
    pub nodiratime: bool,
    /// A VFS flag only: the kernel keeps timestamp updates in memory longer.
    pub lazytime: bool,
    pub threads: usize,
}

/// Mounts /dev/fuse at the mountpoint (mount(2), else fusermount3) and returns the
/// connection's fd; nothing is served yet.
pub fn mount_dev(spec: &MountSpec) -> Result<OwnedFd, String> {
    match mount_direct(spec) {
        Ok(Some(dev)) => Ok(dev),
        Ok(None) => fusermount(spec),
        Err(e) => Err(e),
    }
}

/// Mounts the filesystem and completes the INIT handshake; requests are not served yet
/// (`serve`). As root: mount(2) directly. Otherwise (or when that is refused): fusermount3,
/// the setuid helper of fuse3, which mounts and hands back the /dev/fuse fd.
pub fn mount(
    fs: UnionFs<crate::sys::fuse_dev::Backing>,
    spec: &MountSpec,
    transport: Transport,
) -> Result<std::sync::Arc<Conn>, String> {
    let dev = std::sync::Arc::new(mount_dev(spec)?);
    let conn = std::sync::Arc::new(Conn::new(fs, dev, transport));
    match super::devloop::handshake(&conn) {
        Ok(n) => {
            log::info!(
                "FUSE 7.{} via unionrs's own layer, flags {:#x}",
                n.minor,
                n.flags
            );
            Ok(conn)
        }
        Err(e) => {
            let _ = proc::umount(spec.mountpoint.as_os_str().as_bytes(), true);
            Err(e)
        }
    }
}

/// mount(2) of /dev/fuse as `fuse.unionrs`; Ok(None) when not permitted.
fn mount_direct(spec: &MountSpec) -> Result<Option<OwnedFd>, String> {
    let dev = match fs::open_path(c"/dev/fuse", libc::O_RDWR) {
        Ok(d) => d,
        Err(e) if e.0 == libc::EACCES || e.0 == libc::EPERM => return Ok(None),
        Err(e) => return Err(format!("cannot open /dev/fuse: {e}")),
    };
    let st = std::fs::metadata(&spec.mountpoint)
        .map_err(|e| format!("cannot stat mountpoint {}: {e}", spec.mountpoint.display()))?;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={}",
        dev.as_raw_fd(),
        std::os::unix::fs::MetadataExt::mode(&st) & libc::S_IFMT,
        proc::geteuid(),
        proc::getegid()
    );
    if spec.allow_other {
        data.push_str(",allow_other");
    }
    if spec.default_permissions {
        data.push_str(",default_permissions");
    }
    let mut flags = 0u64;
    for (on, f) in [
        (spec.read_only, libc::MS_RDONLY),
        (spec.nosuid, libc::MS_NOSUID),
        (spec.nodev, libc::MS_NODEV),
        (spec.noexec, libc::MS_NOEXEC),
        (spec.noatime, libc::MS_NOATIME),
        (spec.strictatime, libc::MS_STRICTATIME),
        (spec.nodiratime, libc::MS_NODIRATIME),
        (spec.lazytime, libc::MS_LAZYTIME),
    ] {
        if on {
            flags |= f;
        }
    }
    let mnt = spec.mountpoint.as_os_str().as_bytes();
    match proc::mount(&spec.source, mnt, "fuse.unionrs", flags, &data) {
        Ok(()) => Ok(Some(dev)),
        Err(e) if e.0 == libc::EPERM => Ok(None),
        Err(e) => Err(format!("cannot mount {}: {e}", spec.mountpoint.display())),
    }
}

/// Runs `fusermount3 -o OPTS -- MNT` with a socket in _FUSE_COMMFD and receives /dev/fuse.
fn fusermount(spec: &MountSpec) -> Result<OwnedFd, String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
    proc::clear_cloexec(theirs.as_fd()).map_err(|e| e.to_string())?;
    let out = Command::new("fusermount3")
        .arg("-o")
        .arg(fusermount_options(spec))
        .arg("--")
        .arg(&spec.mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run fusermount3 (install fuse3): {e}"))?;
    drop(theirs);
    let received = proc::recv_fd(ours.as_fd());
    let result = out.wait_with_output().map_err(|e| e.to_string())?;
    match received {
        Ok(fd) if result.status.success() => Ok(fd),
        _ => Err(format!(
            "fusermount3 could not mount {}: {}",
            spec.mountpoint.display(),
            String::from_utf8_lossy(&result.stderr).trim()
        )),
    }
}

fn fusermount_options(spec: &MountSpec) -> String {
    if spec.lazytime {
        // Measured: fusermount3 3.14 fails the whole mount on "unknown option 'lazytime'".
        log::info!("lazytime: not passed to fusermount3, which refuses it");
    }
    let mut o = vec![
        format!("fsname={}", spec.source.replace(',', "\\,")),
        "subtype=unionrs".into(),
    ];
    for (on, name) in [
        (spec.allow_other, "allow_other"),
        (spec.default_permissions, "default_permissions"),
        (spec.read_only, "ro"),
        (spec.noexec, "noexec"),
        (spec.noatime, "noatime"),
    ] {
        if on {
            o.push(name.into());
        }
    }
    o.push(if spec.nosuid { "nosuid" } else { "suid" }.into());
    o.push(if spec.nodev { "nodev" } else { "dev" }.into());
    o.join(",")
}

/// Directory listings are cached by the kernel (FOPEN_CACHE_DIR, kept across opens). It starts
/// a cache again when it sees the directory changed, but measured under concurrent listers
/// and changes (tests/concurrency.rs `hammer`) a removed name still came back from a cache
/// now and then; so when a directory that was listed changes, its cached pages are dropped
/// too (FUSE_NOTIFY_INVAL_INODE). Directories nobody listed since their last change cost
/// nothing (untar, cp -a).
pub fn drop_listings_on_change(conn: &std::sync::Arc<Conn>, hook: &crate::union::ListingHook) {
    let conn = std::sync::Arc::downgrade(conn);
    let _ = hook.set(Box::new(move |ino| {
        if let Some(c) = conn.upgrade()
            && let Err(e) = c.inval_inode(ino)
        {
            log::debug!("dropping the kernel's listing of {ino}: {e}");
        }
    }));
}

/// Serves a started connection until the filesystem is unmounted; a termination signal
/// unmounts it.
pub fn serve(started: Started, mountpoint: PathBuf) -> Result<(), String> {
    unmount_on_signal(mountpoint)?;
    started.serve()
}

/// A thread that waits for SIGTERM/SIGINT/SIGHUP and unmounts.
fn unmount_on_signal(mountpoint: PathBuf) -> Result<(), String> {
    let mnt = mountpoint.as_os_str().as_bytes().to_vec();
    std::thread::Builder::new()
        .name("unionrs-signals".into())
        .spawn(move || {
            let sig = proc::wait_termination_signal();
            log::info!("signal {sig}: unmounting");
            if proc::umount(&mnt, false).is_err() && proc::umount(&mnt, true).is_err() {
                // Not root: only the setuid helper may unmount.
                let path = std::ffi::OsStr::from_bytes(&mnt);
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(path)
                    .status();
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
