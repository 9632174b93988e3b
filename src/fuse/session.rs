//! Mounting and serving: open /dev/fuse, mount(2) it as `fuse.unionrs` (so mount(8) finds
//! our helper and findmnt shows the type), run the FUSE session on several threads, and
//! unmount on SIGTERM/SIGINT/SIGHUP.

use super::adapter::UnionFs;
use crate::sys::{fs, proc};
use fuser::{Config, MountOption, Session, SessionACL};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

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
    pub threads: usize,
}

/// Mounts the filesystem; returns the live session (requests are not served yet).
pub fn mount(fs: UnionFs, spec: &MountSpec) -> Result<Session<UnionFs>, String> {
    let mnt = spec.mountpoint.as_os_str().as_bytes();
    let dev = fs::open_path(c"/dev/fuse", libc::O_RDWR)
        .map_err(|e| format!("cannot open /dev/fuse: {e}"))?;
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
    ] {
        if on {
            flags |= f;
        }
    }
    let acl = if spec.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let mut config = Config::default();
    config.n_threads = Some(spec.threads.max(1));
    // One /dev/fuse fd per worker thread: no contention on a single read queue.
    config.clone_fd = true;
    match proc::mount(&spec.source, mnt, "fuse.unionrs", flags, &data) {
        Ok(()) => Session::from_fd(fs, dev, acl, config).map_err(|e| {
            let _ = proc::umount(mnt, true);
            format!("FUSE handshake failed: {e}")
        }),
        Err(e) if e.0 == libc::EPERM => {
            // Not allowed to mount(2) ourselves: let fusermount3 do it (rootless).
            drop(dev);
            config.mount_options = fusermount_options(spec);
            config.acl = acl;
            Session::new(fs, &spec.mountpoint, &config).map_err(|e| {
                format!(
                    "cannot mount {} (via fusermount3): {e}",
                    spec.mountpoint.display()
                )
            })
        }
        Err(e) => Err(format!("cannot mount {}: {e}", spec.mountpoint.display())),
    }
}

fn fusermount_options(spec: &MountSpec) -> Vec<MountOption> {
    let mut o = vec![
        MountOption::FSName(spec.source.clone()),
        MountOption::Subtype("unionrs".into()),
    ];
    if spec.default_permissions {
        o.push(MountOption::DefaultPermissions);
    }
    for (on, opt) in [
        (spec.read_only, MountOption::RO),
        (spec.nosuid, MountOption::NoSuid),
        (spec.nodev, MountOption::NoDev),
        (spec.noexec, MountOption::NoExec),
        (spec.noatime, MountOption::NoAtime),
    ] {
        if on {
            o.push(opt);
        }
    }
    if !spec.nodev {
        o.push(MountOption::Dev);
    }
    if !spec.nosuid {
        o.push(MountOption::Suid);
    }
    o
}

/// Serves requests until the filesystem is unmounted; a termination signal unmounts it.
pub fn serve(session: Session<UnionFs>, mountpoint: PathBuf) -> Result<(), String> {
    let mnt = mountpoint.as_os_str().as_bytes().to_vec();
    std::thread::Builder::new()
        .name("unionrs-signals".into())
        .spawn(move || {
            let sig = proc::wait_termination_signal();
            log::info!("signal {sig}: unmounting");
            if proc::umount(&mnt, false).is_err() {
                let _ = proc::umount(&mnt, true);
            }
        })
        .map_err(|e| e.to_string())?;
    session
        .run()
        .map_err(|e| format!("FUSE session ended: {e}"))
}
