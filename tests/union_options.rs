//! The effect of each mount option that changes behaviour: id mapping and squashing
//! (fuse-overlayfs), and the generic ro / noexec / nodev / nosuid flags.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::process::Command;

// uidmapping=INSIDE:OUTSIDE:COUNT: on-disk OUTSIDE ids show as INSIDE ids; a caller's id is
// stored mapped back; unmapped disk ids show as 65534.
unionrs_only!(uid_and_gid_mapping, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("mapped"), "m");
    chown(l.l(1).join("mapped"), Some(100005), Some(100007)).unwrap();
    write(l.l(1).join("unmapped"), "u");
    chown(l.l(1).join("unmapped"), Some(5), Some(5)).unwrap();
    let _m = mount(
        fs,
        &l,
        &["uidmapping=0:100000:65536", "gidmapping=0:100000:65536"],
    );
    let md = fs::metadata(l.m("mapped")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (5, 7),
        "disk 100005:100007 shows as 5:7"
    );
    let md = fs::metadata(l.m("unmapped")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (65534, 65534),
        "unmapped ids show as overflow"
    );
    // Created by root (inside id 0): stored as 100000 on disk, shown as 0.
    write(l.m("new"), "n");
    let md = fs::metadata(l.m("new")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    let disk = fs::metadata(l.upper.as_ref().unwrap().join("new")).unwrap();
    assert_eq!((disk.uid(), disk.gid()), (100000, 100000));
    // chown through the mount stores the mapped id.
    chown(l.m("new"), Some(33), Some(44)).unwrap();
    let disk = fs::metadata(l.upper.as_ref().unwrap().join("new")).unwrap();
    assert_eq!((disk.uid(), disk.gid()), (100033, 100044));
    assert_eq!(fs::metadata(l.m("new")).unwrap().uid(), 33);
});

unionrs_only!(squash_to_root_and_to_ids, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    chown(l.l(1).join("f"), Some(1234), Some(5678)).unwrap();
    {
        let _m = mount(fs, &l, &["squash_to_root"]);
        let md = fs::metadata(l.m("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (0, 0));
    }
    let _m = mount(fs, &l, &["squash_to_uid=7", "squash_to_gid=8"]);
    let md = fs::metadata(l.m("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (7, 8));
    // Only what is shown changes: the layer keeps its owner.
    assert_eq!(fs::metadata(l.l(1).join("f")).unwrap().uid(), 1234);
});

both!(ro_option_makes_writes_erofs, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    let _m = mount(fs, &l, &["ro"]);
    assert_eq!(read(l.m("f")), "f");
    let e = fs::write(l.m("g"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
});

both!(noexec_refuses_execution, |fs| {
    let l = Layers::new(1);
    fs::copy("/bin/true", l.l(1).join("t")).unwrap();
    fs::set_permissions(l.l(1).join("t"), fs::Permissions::from_mode(0o755)).unwrap();
    {
        let _m = mount(fs, &l, &[]);
        assert!(Command::new(l.m("t")).status().unwrap().success());
    }
    let _m = mount(fs, &l, &["noexec"]);
    let e = Command::new(l.m("t")).status().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
});

both!(nodev_refuses_device_access, |fs| {
    let l = Layers::new(1);
    let st = Command::new("mknod")
        .arg(l.l(1).join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(st.success());
    {
        let _m = mount(fs, &l, &["dev"]);
        fs::write(l.m("null"), "discarded").expect("device usable with dev");
    }
    let _m = mount(fs, &l, &["nodev"]);
    let e = fs::write(l.m("null"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
});

/// `unionrs stats MNT` as key -> value.
fn stats(mnt: &std::path::Path) -> std::collections::HashMap<String, String> {
    let out = Command::new(unionrs_bin())
        .arg("stats")
        .arg(mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes `name` through the mount, fsyncs it and its directory, appends to the lower file
/// (a copy-up syncs its data too, unless fsync is off); returns the daemon's count of fsync
/// calls that reached the layers, and the sync calls strace saw the daemon make meanwhile.
fn fsyncs_reaching_disk(l: &Layers, m: &MountGuard, name: &str) -> (u64, Vec<String>) {
    let trace = SyncTrace::attach(m.pid().unwrap(), l.dir.path().join("sync.strace"));
    let mut f = fs::File::create(l.m(name)).unwrap();
    std::io::Write::write_all(&mut f, b"data").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    fs::File::open(&l.mnt).unwrap().sync_all().unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(l.m("lower"))
        .unwrap();
    let s = stats(&l.mnt);
    let seen = trace.finish();
    assert!(s["requests.fsync"].parse::<u64>().unwrap() >= 2, "{s:?}");
    (s["disk_fsyncs"].parse().unwrap(), seen)
}

/// The independent witness of what reaches the disk: strace attached to every thread of the
/// daemon, recording the system calls that make the kernel write data out.
struct SyncTrace {
    child: std::process::Child,
    out: std::path::PathBuf,
}

const SYNC_CALLS: &[&str] = &["fsync", "fdatasync", "syncfs", "sync", "sync_file_range"];

impl SyncTrace {
    fn attach(pid: u32, out: std::path::PathBuf) -> SyncTrace {
        // Made at once, so that its Drop detaches strace on every way out.
        let trace = SyncTrace {
            child: Command::new("strace")
                .args(["-f", "-e", &format!("trace={}", SYNC_CALLS.join(",")), "-o"])
                .arg(&out)
                .args(["-p", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("strace (scripts/setup.sh installs it): {e}")),
            out,
        };
        // Attached once every thread of the daemon has it as tracer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let tasks: Vec<_> = fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .map(|t| t.unwrap().path())
                .collect();
            let traced = tasks.iter().all(|t| {
                fs::read_to_string(t.join("status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
            });
            if traced {
                return trace;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "strace did not attach to the daemon's {} threads in 10 s",
                tasks.len()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Detaches and returns the sync calls seen (one line each).
    fn finish(mut self) -> Vec<String> {
        common::sys::kill(self.child.id(), libc::SIGINT).unwrap();
        self.child.wait().unwrap();
        fs::read_to_string(&self.out)
            .unwrap()
            .lines()
            // "PID fsync(7) = 0", or "PID fsync(7 <unfinished ...>" then "<... fsync resumed>".
            .filter(|l| SYNC_CALLS.iter().any(|c| l.contains(&format!(" {c}("))))
            .map(str::to_string)
            .collect()
    }
}

/// A test that fails between attach and finish still detaches strace.
impl Drop for SyncTrace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// fsync=0 and volatile: fsync succeeds for the caller but no fsync/fdatasync reaches the
// layers; by default every one does (and each copy-up syncs). The daemon's own counter and
// strace of the daemon (an independent witness) must both say so.
unionrs_only!(fsync_0_and_volatile_skip_disk_syncs, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("lower"), "l");
    {
        let m = mount(fs, &l, &[]);
        let (n, seen) = fsyncs_reaching_disk(&l, &m, "a");
        eprintln!("default: daemon counts {n} disk syncs, strace saw {seen:#?}");
        assert!(
            n >= 4,
            "default: file fsync, fdatasync, dir fsync, copy-up: {n}"
        );
        assert!(
            seen.len() as u64 >= n,
            "default: the daemon counts {n} disk syncs, strace saw {}: {seen:#?}",
            seen.len()
        );
    }
    for opt in ["fsync=0", "volatile"] {
        let l = Layers::new(1);
        write(l.l(1).join("lower"), "l");
        let m = mount(fs, &l, &[opt]);
        let (n, seen) = fsyncs_reaching_disk(&l, &m, "a");
        assert_eq!(n, 0, "{opt}: the daemon's count");
        assert!(
            seen.is_empty(),
            "{opt}: strace saw the daemon sync: {seen:#?}"
        );
        assert_eq!(read(l.m("a")), "data");
    }
});

// volatile leaves the kernel's marker work/incompat/volatile in the workdir: no later mount
// of that upper (unionrs or kernel overlayfs) goes ahead until it is removed.
unionrs_only!(volatile_marks_the_workdir_like_the_kernel, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    let marker = l.work.join("work/incompat/volatile");
    drop(mount(fs, &l, &["volatile"]));
    assert!(marker.join("dirty").is_file(), "no kernel-form marker");
    let out = Command::new(unionrs_bin())
        .args(["-o", &layer_opts(&l)])
        .arg(&l.mnt)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted over a volatile marker");
    assert!(
        err.contains("used by a volatile mount") && err.contains("incompat/volatile"),
        "{err}"
    );
    assert!(mounted_fstype(&l.mnt).is_none());
    // The kernel reads the same marker the same way.
    let kernel = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &layer_opts(&l)])
        .arg(&l.mnt)
        .output()
        .unwrap();
    assert!(
        !kernel.status.success(),
        "kernel overlayfs ignored the marker"
    );
    fs::remove_dir_all(l.work.join("work/incompat")).unwrap();
    let _m = mount(fs, &l, &[]);
    assert_eq!(read(l.m("f")), "f");
});

/// Runs `args` as uid/gid 65534 (nobody) and returns its exit status and stderr.
fn as_nobody(args: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// noacl: an ACL in a layer that grants access is not enforced (mode bits alone decide, with
// default_permissions), and ACLs can be neither read nor set through the mount.
unionrs_only!(noacl_ignores_and_refuses_acls, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("secret"), "s");
    fs::set_permissions(l.l(1).join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let secret = l.l(1).join("secret").display().to_string();
    run("setfacl", &["-m", "u:65534:r", &secret]);
    let path = l.m("secret").display().to_string();
    {
        let _m = mount(fs, &l, &[]);
        let (ok, err) = as_nobody(&["cat", &path]);
        assert!(ok, "the layer's ACL grants nobody read: {err}");
        assert!(getxattr(l.m("secret"), "system.posix_acl_access").is_some());
    }
    let _m = mount(fs, &l, &["noacl"]);
    let (ok, err) = as_nobody(&["cat", &path]);
    assert!(
        !ok && err.contains("Permission denied"),
        "ACL enforced under noacl: {err}"
    );
    let e = common::sys::lgetxattr(&l.m("secret"), "system.posix_acl_access").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    let names = common::sys::llistxattr(&l.m("secret")).unwrap();
    assert!(
        !names.iter().any(|n| n.starts_with("system.posix_acl")),
        "{names:?}"
    );
    write(l.m("new"), "n");
    let e = common::sys::lsetxattr(
        &l.m("new"),
        "system.posix_acl_access",
        &acl_user_read(65534),
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    let out = Command::new("setfacl")
        .args(["-m", "u:65534:r"])
        .arg(l.m("new"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "setfacl succeeded under noacl");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(getxattr(l.upper().join("new"), "system.posix_acl_access").is_none());
});

/// The xattr form of the ACL `u::rw-,u:UID:r--,g::---,m::r--,o::---`.
fn acl_user_read(uid: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec(); // POSIX_ACL_XATTR_VERSION
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX), // ACL_USER_OBJ
        (0x02, 4, uid),            // ACL_USER
        (0x04, 0, u32::MAX),       // ACL_GROUP_OBJ
        (0x10, 4, u32::MAX),       // ACL_MASK
        (0x20, 0, u32::MAX),       // ACL_OTHER
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

// context=: every object shows that SELinux label (SELinux is off here, so without the
// option there is none), it cannot be changed, and nothing is written to the layers.
unionrs_only!(context_labels_every_object, |fs| {
    const CTX: &str = "system_u:object_r:container_file_t:s0:c1,c2";
    let l = Layers::new(1);
    write(l.l(1).join("d/f"), "f");
    {
        let _m = mount(fs, &l, &[]);
        assert_eq!(getxattr(l.m("d/f"), "security.selinux"), None);
    }
    // containers/storage's form (label.FormatMountLabel): quoted, as the value has a comma.
    let _m = mount(fs, &l, &[&format!("context=\"{CTX}\"")]);
    for p in ["", "d", "d/f"] {
        let v = common::sys::lgetxattr(&l.m(p), "security.selinux").unwrap();
        assert_eq!(v, format!("{CTX}\0").as_bytes(), "{p:?}");
        let names = common::sys::llistxattr(&l.m(p)).unwrap();
        assert!(
            names.iter().any(|n| n == "security.selinux"),
            "{p:?}: {names:?}"
        );
    }
    write(l.m("new"), "n");
    assert!(getxattr(l.m("new"), "security.selinux").is_some());
    let e = common::sys::lsetxattr(&l.m("new"), "security.selinux", b"other").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    let e = common::sys::lremovexattr(&l.m("new"), "security.selinux").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    assert_eq!(getxattr(l.upper().join("new"), "security.selinux"), None);
});

// xattr_permissions=1 (privileged): chown/chmod go to security.fuseoverlayfs.override_stat,
// the inode keeps its owner and mode, stat shows the stored values, the xattr stays hidden.
// (=2, the rootless form, is tested as a real unprivileged user in rootless.rs.)
unionrs_only!(xattr_permissions_1_stores_owner_and_mode, |fs| {
    use std::os::unix::fs::MetadataExt;
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    let stored = |p: &std::path::Path| getxattr(p, "security.fuseoverlayfs.override_stat");
    {
        let _m = mount(fs, &l, &[]);
        chown(l.m("f"), Some(5), Some(6)).unwrap();
        assert_eq!(
            fs::metadata(l.upper().join("f")).unwrap().uid(),
            5,
            "plain chown"
        );
    }
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    let _m = mount(fs, &l, &["xattr_permissions=1"]);
    assert!(stored(l.upper()).is_some(), "upper root not marked");
    chown(l.m("f"), Some(5), Some(6)).unwrap();
    fs::set_permissions(l.m("f"), fs::Permissions::from_mode(0o4711)).unwrap();
    let md = fs::metadata(l.m("f")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (5, 6, 0o4711));
    let disk = fs::metadata(l.upper().join("f")).unwrap();
    assert_eq!(
        (disk.uid(), disk.gid(), disk.mode() & 0o7777),
        (0, 0, 0o644)
    );
    assert_eq!(stored(&l.upper().join("f")).as_deref(), Some("5:6:4711"));
    assert!(getxattr(l.m("f"), "security.fuseoverlayfs.override_stat").is_none());
    let names = common::sys::llistxattr(&l.m("f")).unwrap();
    assert!(
        !names.iter().any(|n| n.contains("override_stat")),
        "{names:?}"
    );
});

/// A lower file `low` and an upper file `up`, both with an atime older than their mtime
/// (so relatime would update it); returns the atime they start with.
fn stale_atimes(l: &Layers) -> i64 {
    let old = (978_307_200, 0); // 2001-01-01
    write(l.l(1).join("low"), "l");
    write(l.upper().join("up"), "u");
    for p in [l.l(1).join("low"), l.upper().join("up")] {
        common::sys::lutimens(&p, old, (2_000_000_000, 0)).unwrap();
    }
    old.0
}

fn atime(p: std::path::PathBuf) -> i64 {
    std::os::unix::fs::MetadataExt::atime(&fs::metadata(p).unwrap())
}

// noatime: reading through the mount leaves every layer file's atime alone. Kernel overlayfs
// does the same on the same layers.
both!(noatime_leaves_layer_atimes_alone, |fs| {
    let l = Layers::new(1);
    let old = stale_atimes(&l);
    let _m = mount(fs, &l, &["noatime"]);
    assert_eq!(read(l.m("low")), "l");
    assert_eq!(read(l.m("up")), "u");
    assert_eq!(atime(l.l(1).join("low")), old, "lower atime changed");
    assert_eq!(atime(l.upper().join("up")), old, "upper atime changed");
});

// By default (relatime) reading an upper file whose atime is older than its mtime updates
// it, as on the kernel. The kernel never touches a lower file's atime (layers are
// read-only); unionrs reads lower files through O_NOATIME fds, and FUSE passthrough reads
// of them through a noatime bind mount of the layer (docs/mounting.md).
both!(relatime_updates_upper_atimes, |fs| {
    let l = Layers::new(1);
    let old = stale_atimes(&l);
    let _m = mount(fs, &l, &[]);
    assert_eq!(read(l.m("low")), "l");
    assert_eq!(read(l.m("up")), "u");
    assert_ne!(atime(l.upper().join("up")), old, "upper atime not updated");
    assert_eq!(atime(l.l(1).join("low")), old, "lower atime changed");
});

/// An upper file's atime to the nanosecond.
fn atime_ns(p: std::path::PathBuf) -> (i64, i64) {
    let md = fs::metadata(p).unwrap();
    (md.atime(), md.atime_nsec())
}

/// Reads the upper file `up` through the mount twice, 50 ms apart (more than a tick of the
/// coarse clock atimes use); returns its atime on disk before, after the first read and
/// after the second. Its atime starts a day old (2001) and newer than its mtime (2000), so
/// relatime updates it once: then it is newer than the mtime and the ctime.
fn two_reads(l: &Layers) -> [(i64, i64); 3] {
    common::sys::lutimens(&l.upper().join("up"), (978_307_200, 0), (946_684_800, 0)).unwrap();
    let before = atime_ns(l.upper().join("up"));
    assert_eq!(read(l.m("up")), "u");
    let first = atime_ns(l.upper().join("up"));
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(read(l.m("up")), "u");
    [before, first, atime_ns(l.upper().join("up"))]
}

// strictatime: every read updates an upper file's atime, through FUSE passthrough too (its
// backing files are opened on the upper's private mount, which carries the option); lower
// files keep theirs.
both!(strictatime_updates_upper_atimes_on_every_read, |fs| {
    let l = Layers::new(1);
    let old = stale_atimes(&l);
    let _m = mount(fs, &l, &["strictatime"]);
    let [before, first, second] = two_reads(&l);
    assert_ne!(before, first, "first read did not update the atime");
    assert_ne!(first, second, "second read did not update the atime");
    assert_eq!(atime_ns(l.m("up")), second, "the mount shows another atime");
    assert_eq!(read(l.m("low")), "l");
    assert_eq!(atime(l.l(1).join("low")), old, "lower atime changed");
});

// relatime (the default): the first read updates the stale atime, the second does not.
both!(relatime_updates_an_atime_once, |fs| {
    let l = Layers::new(1);
    stale_atimes(&l);
    let _m = mount(fs, &l, &[]);
    let [before, first, second] = two_reads(&l);
    assert_ne!(before, first, "first read did not update the atime");
    assert_eq!(first, second, "second read updated the atime");
});

// A read-only mount never updates an atime, strictatime or not.
both!(read_only_mount_leaves_upper_atimes_alone, |fs| {
    let l = Layers::new(1);
    stale_atimes(&l);
    let _m = mount(fs, &l, &["ro", "strictatime"]);
    let [before, first, second] = two_reads(&l);
    assert_eq!(
        (before, before),
        (first, second),
        "a read changed the atime"
    );
});

// nodiratime: listing an upper directory leaves its atime alone; without it, listing
// updates a stale one (relatime). Looking a name up in it never does.
both!(nodiratime_leaves_directory_atimes_alone, |fs| {
    let l = Layers::new(1);
    let d = l.upper().join("d");
    fs::create_dir(&d).unwrap();
    write(d.join("f"), "f");
    let stale = || common::sys::lutimens(&d, (978_307_200, 0), (2_000_000_000, 0)).unwrap();
    let listed = |l: &Layers| fs::read_dir(l.m("d")).unwrap().count();
    stale();
    {
        let _m = mount(fs, &l, &[]);
        assert_eq!(read(l.m("d/f")), "f");
        assert_eq!(atime(d.clone()), 978_307_200, "a lookup changed the atime");
        assert_eq!(listed(&l), 1);
        assert_ne!(
            atime(d.clone()),
            978_307_200,
            "listing did not update the atime"
        );
    }
    stale();
    let _m = mount(fs, &l, &["nodiratime"]);
    assert_eq!(listed(&l), 1);
    assert_eq!(atime(d.clone()), 978_307_200, "listing changed the atime");
});

// noatime keeps FUSE passthrough on: the upper's private mount keeps the atimes, not the
// daemon serving every read itself.
unionrs_only!(noatime_keeps_passthrough, |fs| {
    let l = Layers::new(1);
    let old = stale_atimes(&l);
    let _m = mount(fs, &l, &["noatime"]);
    let stats = stats_text(&l.mnt);
    assert!(stats.lines().any(|x| x == "passthrough on"), "{stats}");
    assert_eq!(read(l.m("up")), "u");
    assert_eq!(atime(l.upper().join("up")), old, "upper atime changed");
});

// lazytime is a VFS flag: the mount carries it (and stays usable); without it, it does not.
both!(lazytime_is_set_on_the_mount, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    let has_lazytime = |l: &Layers| {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        let mnt = l.mnt.display().to_string();
        let line = mounts
            .lines()
            .rfind(|x| x.split(' ').nth(1) == Some(mnt.as_str()))
            .unwrap()
            .to_string();
        line.split(' ')
            .nth(3)
            .unwrap()
            .split(',')
            .any(|o| o == "lazytime")
    };
    {
        let _m = mount(fs, &l, &[]);
        assert!(!has_lazytime(&l));
    }
    let _m = mount(fs, &l, &["lazytime"]);
    assert!(has_lazytime(&l));
    write(l.m("g"), "g");
    assert_eq!(read(l.m("g")), "g");
    assert_eq!(read(l.m("f")), "f");
});
