//! `unionrs stats MNT`: a live mount answers on a unix socket named after its device number
//! (`/run/unionrs/MAJ-MIN.sock` for root, `$XDG_RUNTIME_DIR/unionrs/...` otherwise) with
//! `key value` lines: requests by type, copy-ups, cached inodes, passthrough, daemon RSS.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of request counted.
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Fallocate,
    Lseek,
    BatchForget,
    Other,
}

const NAMES: [&str; 32] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "fallocate",
    "lseek",
    "batch_forget",
    "other",
];

/// Request counters, one per kind; relaxed atomics, no lock on the request path.
#[derive(Default)]
pub struct Requests([AtomicU64; 32]);

impl Requests {
    pub fn count(&self, op: Op) {
        self.0[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `requests.NAME N` lines for the kinds seen at least once.
    pub fn report(&self, out: &mut String) {
        for (name, c) in NAMES.iter().zip(&self.0) {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                out.push_str(&format!("requests.{name} {n}\n"));
            }
        }
    }
}

/// Where the control socket of the mount with device `maj:min` lives.
pub fn socket_path(major: u32, minor: u32) -> PathBuf {
    let base = if crate::sys::proc::geteuid() == 0 {
        PathBuf::from("/run/unionrs")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("unionrs")
    };
    base.join(format!("{major}-{minor}.sock"))
}

/// The device number of the mount at `mountpoint`, read from /proc/self/mountinfo (a stat of
/// our own mountpoint from the daemon could wait on the daemon itself).
pub fn mount_dev(mountpoint: &Path) -> Option<(u32, u32)> {
    use std::os::unix::ffi::OsStrExt;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.as_os_str().as_bytes();
    info.lines().rev().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() > 4 && unescape(f[4].as_bytes()) == want {
            let (a, b) = f[2].split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        } else {
            None
        }
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo (octal).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 4 <= s.len() {
            let octal = std::str::from_utf8(&s[i + 1..i + 4]).ok();
            if let Some(v) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Starts answering stats requests on the mount's socket; returns the socket, to remove
/// when the mount is gone.
pub fn start(
    mountpoint: &Path,
    report: impl Fn() -> String + Send + 'static,
) -> Option<ControlSocket> {
    let (major, minor) = mount_dev(mountpoint)?;
    let path = socket_path(major, minor);
    let dir = path.parent()?;
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).ok()?;
    let ino = std::fs::symlink_metadata(&path).ok()?.ino();
    std::thread::Builder::new()
        .name("unionrs-control".into())
        .spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.write_all(report().as_bytes());
            }
        })
        .ok()?;
    Some(ControlSocket { path, ino })
}

/// A mount's control socket, as bound.
pub struct ControlSocket {
    path: PathBuf,
    ino: u64,
}

impl ControlSocket {
    /// Removes the socket once the mount is gone, unless it is no longer this one: the
    /// mount's device number is free again after the unmount, and a new mount that got it
    /// may have bound its own socket at the same path meanwhile (removing that one made
    /// `unionrs stats` of the new mount fail).
    pub fn remove(self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_mountinfo_paths() {
        assert_eq!(super::unescape(b"/a\\040b"), b"/a b");
        assert_eq!(super::unescape(b"/plain"), b"/plain");
        assert_eq!(super::unescape(b"/x\\134y"), b"/x\\y");
    }
}
