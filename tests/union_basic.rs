//! Layering semantics on a real mount: merge, whiteouts, opaque dirs, copy-up and upper format.
//! Each `both!` test runs on kernel overlayfs (the reference) and on unionrs.

mod common;

use common::snapshot::{Kind, assert_same_tree, tree_snapshot, upper_snapshot};
use common::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn erofs<T: std::fmt::Debug>(r: std::io::Result<T>, what: &str) {
    let e = r.expect_err(what);
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
}

fn enoent(p: &Path) {
    let e = fs::symlink_metadata(p).expect_err(&format!("{} must not exist", p.display()));
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{}", p.display());
}

/// A 3-layer stack whose dir `d` merges across all layers.
fn three_layers() -> Layers {
    let l = Layers::new(3);
    write(l.l(3).join("a"), "a3");
    write(l.l(3).join("d/x"), "x3");
    write(l.l(3).join("d/y"), "y3");
    write(l.l(2).join("b"), "b2");
    write(l.l(2).join("a"), "a2");
    write(l.l(2).join("d/y"), "y2");
    write(l.l(2).join("d/z"), "z2");
    write(l.l(1).join("c"), "c1");
    write(l.l(1).join("d/w"), "w1");
    symlink_at("a", l.l(1).join("s"));
    fifo(l.l(2).join("p"));
    l
}

both!(merge_three_layers, |fs| {
    let l = three_layers();
    let _m = mount(fs, &l, &[]);
    assert_eq!(names(&l.mnt), ["a", "b", "c", "d", "p", "s"]);
    assert_eq!(names(l.m("d")), ["w", "x", "y", "z"]);
    assert_eq!(read(l.m("a")), "a2", "topmost layer wins");
    assert_eq!(read(l.m("d/y")), "y2");
    assert_eq!(read(l.m("d/x")), "x3");
    assert_eq!(read(l.m("s")), "a2", "symlink resolves in the union");
    assert!(
        fs::symlink_metadata(l.m("p"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    for dir in [l.mnt.clone(), l.m("d")] {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let st = fs::symlink_metadata(e.path()).unwrap();
            assert_eq!(
                e.ino(),
                st.ino(),
                "d_ino == st_ino for {}",
                e.path().display()
            );
        }
    }
});

// A copied-up entry shows its origin's number as d_ino in every batch of a listing: the
// first (READDIRPLUS: each entry's lookup gives it) and the later ones, which the kernel asks
// for with plain READDIR when nothing was looked up in the directory meanwhile (there unionrs
// reads the origin when it gives the entry out, not when it lists the directory).
both!(copied_up_d_ino_in_every_listing_batch, |fs| {
    let l = Layers::new(2);
    let names: Vec<String> = (0..1500)
        .map(|i| format!("{i:04}-a-name-long-enough-to-need-several-batches"))
        .collect();
    for n in &names {
        write(l.l(2).join("d").join(n), "lower");
    }
    {
        let _m = mount(fs, &l, &[]);
        for n in &names {
            let p = l.m("d").join(n);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        }
    }
    let m = mount(fs, &l, &[]);
    let listed: Vec<(String, u64)> = fs::read_dir(l.m("d"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.ino())
        })
        .collect();
    assert_eq!(listed.len(), names.len());
    for (name, d_ino) in &listed {
        let st = fs::symlink_metadata(l.m("d").join(name)).unwrap();
        assert_eq!(st.mode() & 0o777, 0o640, "{name} was copied up");
        assert_eq!(*d_ino, st.ino(), "d_ino == st_ino for copied-up {name}");
    }
    if fs == Fs::Unionrs {
        assert!(
            stats_value(&m.mnt, "requests.readdir") > 0,
            "the listing never used a plain READDIR: the later batches went untested"
        );
    }
});

/// Hides lower file `f` and lower dir `g` with `form` in l1; checks names never leak.
fn check_whiteout(fs: Fs, form: Whiteout, opts: &[&str]) {
    let l = Layers::new(2);
    write(l.l(2).join("d/f"), "f");
    write(l.l(2).join("d/keep"), "k");
    write(l.l(2).join("d/g/inner"), "i");
    write(l.l(2).join("top"), "t");
    whiteout(l.l(1).join("d/f"), form);
    whiteout(l.l(1).join("d/g"), form);
    whiteout(l.l(1).join("top"), form);
    let _m = mount(fs, &l, opts);
    assert_eq!(names(l.m("d")), ["keep"], "{form:?}");
    assert!(!names(&l.mnt).contains(&"top".to_string()), "{form:?}");
    enoent(&l.m("d/f"));
    enoent(&l.m("d/g"));
    enoent(&l.m("d/g/inner"));
    enoent(&l.m("top"));
    enoent(&l.m("d/.wh.f"));
    // The hidden names can be created anew.
    write(l.m("d/f"), "new");
    assert_eq!(read(l.m("d/f")), "new");
    fs::create_dir(l.m("d/g")).unwrap();
    assert_eq!(
        names(l.m("d/g")),
        Vec::<String>::new(),
        "recreated dir is empty"
    );
}

both!(whiteout_chardev_hides, |fs| check_whiteout(
    fs,
    Whiteout::CharDev,
    &[]
));
both!(whiteout_xattr_trusted_hides, |fs| check_whiteout(
    fs,
    Whiteout::XattrTrusted,
    &[]
));
both!(whiteout_xattr_user_hides, |fs| check_whiteout(
    fs,
    Whiteout::XattrUser,
    &["kernel:userxattr"]
));
unionrs_only!(whiteout_oci_hides, |fs| check_whiteout(
    fs,
    Whiteout::Oci,
    &[]
));

// Removing lower names leaves whiteouts that are links to one 0/0 device, as the kernel
// makes them (no inode allocated per whiteout): for files, and for a directory that was
// copied up to be emptied and then swapped for a whiteout by rmdir. The work dir holds
// nothing of unionrs's once it is unmounted (the kernel keeps its link in W/index).
both!(removals_leave_whiteouts_sharing_one_inode, |fs: Fs| {
    let l = Layers::new(1);
    for f in ["a", "b", "sub/c", "sub/deeper/e"] {
        write(l.l(1).join(format!("d/{f}")), "x");
    }
    let m = mount(fs, &l, &[]);
    fs::remove_file(l.m("d/a")).unwrap();
    fs::remove_file(l.m("d/b")).unwrap();
    fs::remove_dir_all(l.m("d/sub")).unwrap();
    assert_eq!(names(l.m("d")), Vec::<String>::new(), "{fs:?}");
    m.unmount();
    let mut inos = std::collections::BTreeSet::new();
    for n in ["d/a", "d/b", "d/sub"] {
        let md = fs::symlink_metadata(l.upper().join(n)).unwrap();
        assert!(
            md.file_type().is_char_device() && md.rdev() == 0,
            "{fs:?}: {n} is not a whiteout"
        );
        inos.insert(md.ino());
    }
    assert_eq!(inos.len(), 1, "{fs:?}: whiteouts on {} inodes", inos.len());
    if fs == Fs::Unionrs {
        assert_eq!(names(l.work.join("work")), Vec::<String>::new());
    }
    // The upper reads back the same through a new mount.
    let _m = mount(fs, &l, &[]);
    assert_eq!(names(l.m("d")), Vec::<String>::new(), "{fs:?}");
    write(l.m("d/a"), "new");
    assert_eq!(read(l.m("d/a")), "new");
});

fn check_opaque(fs: Fs, form: Opaque, opts: &[&str]) {
    let l = Layers::new(3);
    write(l.l(3).join("d/deep"), "3");
    write(l.l(2).join("d/low"), "2");
    write(l.l(2).join("d/sub/x"), "2");
    opaque(l.l(1).join("d"), form);
    write(l.l(1).join("d/mine"), "1");
    let _m = mount(fs, &l, opts);
    assert_eq!(names(l.m("d")), ["mine"], "{form:?} stops the merge");
    enoent(&l.m("d/low"));
    enoent(&l.m("d/sub"));
    let xattrs = sys::llistxattr(&l.m("d")).unwrap();
    assert!(
        xattrs.iter().all(|x| !snapshot::is_private_xattr(x)),
        "{xattrs:?}"
    );
}

both!(opaque_trusted_stops_merge, |fs| check_opaque(
    fs,
    Opaque::XattrTrusted,
    &[]
));
both!(opaque_user_stops_merge, |fs| check_opaque(
    fs,
    Opaque::XattrUser,
    &["kernel:userxattr"]
));
unionrs_only!(opaque_oci_stops_merge, |fs| check_opaque(
    fs,
    Opaque::Oci,
    &[]
));

unionrs_only!(oci_whiteout_and_new_dir_in_same_layer, |fs| {
    // An OCI layer that replaces file X by dir X holds both `.wh.X` and `X/`:
    // the whiteout applies to lower layers only.
    let l = Layers::new(2);
    write(l.l(2).join("X"), "old file");
    write(l.l(2).join("Y/old"), "old");
    whiteout(l.l(1).join("X"), Whiteout::Oci);
    write(l.l(1).join("X/new"), "new");
    whiteout(l.l(1).join("Y"), Whiteout::Oci);
    write(l.l(1).join("Y/fresh"), "fresh");
    let _m = mount(fs, &l, &[]);
    assert_eq!(names(&l.mnt), ["X", "Y"]);
    assert!(fs::metadata(l.m("X")).unwrap().is_dir());
    assert_eq!(names(l.m("X")), ["new"]);
    assert_eq!(
        names(l.m("Y")),
        ["fresh"],
        "the lower Y/ is hidden, not merged"
    );
});

both!(readonly_union_erofs, |fs| {
    let l = Layers::read_only(2);
    write(l.l(2).join("f"), "f");
    mkdir(l.l(1).join("d"));
    let _m = mount(fs, &l, &[]);
    assert_eq!(read(l.m("f")), "f");
    erofs(fs::write(l.m("new"), "x"), "create");
    erofs(
        OpenOptions::new().write(true).open(l.m("f")),
        "open for write",
    );
    erofs(fs::remove_file(l.m("f")), "unlink");
    erofs(fs::create_dir(l.m("nd")), "mkdir");
    erofs(fs::remove_dir(l.m("d")), "rmdir");
    erofs(fs::rename(l.m("f"), l.m("g")), "rename");
    erofs(sys::lsetxattr(&l.m("f"), "user.x", b"1"), "setxattr");
    erofs(
        fs::set_permissions(l.m("f"), fs::Permissions::from_mode(0o600)),
        "chmod",
    );
});

both!(copy_up_preserves_metadata, |fs| {
    let l = Layers::new(2);
    let lf = l.l(2).join("dir/f");
    write(&lf, "lower data");
    fs::set_permissions(&lf, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::lchown(&lf, Some(1234), Some(5678)).unwrap();
    setxattr(&lf, "user.keep", "u");
    setxattr(&lf, "trusted.keep", "t");
    sys::lutimens(&lf, (1_000_000_000, 5), (1_100_000_000, 123_456_789)).unwrap();
    let before = tree_snapshot(l.l(2));
    let _m = mount(fs, &l, &[]);
    // Opening for write copies up; mtime must not change without a write.
    drop(OpenOptions::new().write(true).open(l.m("dir/f")).unwrap());
    let uf = l.upper().join("dir/f");
    let up = fs::symlink_metadata(&uf).expect("copied up into upper");
    assert_eq!(up.mode() & 0o7777, 0o640);
    assert_eq!((up.uid(), up.gid()), (1234, 5678));
    assert_eq!((up.mtime(), up.mtime_nsec()), (1_100_000_000, 123_456_789));
    assert_eq!(getxattr(&uf, "user.keep").as_deref(), Some("u"));
    assert_eq!(getxattr(&uf, "trusted.keep").as_deref(), Some("t"));
    assert_eq!(read(&uf), "lower data");
    let mm = fs::symlink_metadata(l.m("dir/f")).unwrap();
    assert_eq!((mm.mtime(), mm.mtime_nsec()), (1_100_000_000, 123_456_789));
    assert_eq!(getxattr(l.m("dir/f"), "user.keep").as_deref(), Some("u"));
    let mut f = OpenOptions::new().append(true).open(l.m("dir/f")).unwrap();
    f.write_all(b"+more").unwrap();
    drop(f);
    assert_eq!(read(l.m("dir/f")), "lower data+more");
    let after = tree_snapshot(l.l(2));
    snapshot::assert_same_tree(&before, &after, "lower layer untouched");
    assert_eq!(
        before[Path::new("dir/f")].mtime_ns,
        after[Path::new("dir/f")].mtime_ns
    );
});

both!(unlink_lower_writes_chardev_whiteout, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("d/f"), "f");
    let _m = mount(fs, &l, &[]);
    fs::remove_file(l.m("d/f")).unwrap();
    enoent(&l.m("d/f"));
    let up = upper_snapshot(l.upper());
    assert_eq!(up[Path::new("d/f")].kind, Kind::Whiteout, "{up:#?}");
    assert_eq!(up[Path::new("d/f")].rdev, 0);
});

both!(rmdir_mkdir_lower_dir_makes_opaque, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("d/f"), "f");
    let _m = mount(fs, &l, &[]);
    fs::remove_file(l.m("d/f")).unwrap();
    fs::remove_dir(l.m("d")).unwrap();
    fs::create_dir(l.m("d")).unwrap();
    assert_eq!(names(l.m("d")), Vec::<String>::new());
    assert_eq!(
        getxattr(l.upper().join("d"), "trusted.overlay.opaque").as_deref(),
        Some("y")
    );
    assert_eq!(
        getxattr(l.m("d"), "trusted.overlay.opaque"),
        None,
        "private xattr hidden"
    );
});

both!(rmdir_dir_that_only_looks_empty, |fs| {
    let l = Layers::new(2);
    write(l.l(2).join("d/x"), "x");
    write(l.l(2).join("d/y"), "y");
    whiteout(l.l(1).join("d/x"), Whiteout::CharDev);
    write(l.l(2).join("full/z"), "z");
    let _m = mount(fs, &l, &[]);
    let e = fs::remove_dir(l.m("full")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    let e = fs::remove_dir(l.m("d")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::ENOTEMPTY),
        "d/y is still visible"
    );
    fs::remove_file(l.m("d/y")).unwrap();
    fs::remove_dir(l.m("d")).unwrap();
    enoent(&l.m("d"));
    assert!(!names(&l.mnt).contains(&"d".to_string()));
    assert_eq!(
        upper_snapshot(l.upper())[Path::new("d")].kind,
        Kind::Whiteout
    );
});

/// `unionrs stats` names the transport the mount really uses: io_uring exactly when the kernel
/// offers it (enable_uring=Y) and neither `-o io_uring=off` (e.g. from UNIONRS_TEST_MOUNT_OPTS,
/// as CI runs the suite once per transport) nor UNIONRS_IO_URING=off asks for /dev/fuse.
#[test]
fn stats_name_the_transport() {
    let l = Layers::new(2);
    write(l.l(2).join("d/f"), "lower");
    let m = mount(Fs::Unionrs, &l, &[]);
    assert_eq!(fs::read_to_string(m.mnt.join("d/f")).unwrap(), "lower");
    let text = stats(&m.mnt);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {key} in `unionrs stats`:\n{text}"))
            .to_string()
    };
    let offered = fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .is_ok_and(|v| v.trim() == "Y");
    let opts = std::env::var("UNIONRS_TEST_MOUNT_OPTS").unwrap_or_default();
    let env = std::env::var("UNIONRS_IO_URING").unwrap_or_default();
    let wanted = if opts.contains("io_uring=") {
        !opts.contains("io_uring=off")
    } else {
        env != "off"
    };
    assert_eq!(
        value("transport"),
        if offered && wanted { "uring" } else { "dev" }
    );
    assert!(value("requests.lookup").parse::<u64>().unwrap() >= 2);
}

/// The scheduling policy of each io_uring queue thread (`unionrs-qCPU.N`) of a daemon, from
/// field 41 of /proc/PID/task/TID/stat (0 SCHED_OTHER, 5 SCHED_IDLE).
fn queue_thread_policies(pid: u32) -> Vec<u32> {
    let mut policies = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let comm = fs::read_to_string(t.join("comm")).unwrap_or_default();
        if !comm.starts_with("unionrs-q") {
            continue;
        }
        let stat = fs::read_to_string(t.join("stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let policy = after_comm.split(' ').nth(41 - 3).unwrap();
        policies.push(policy.parse().unwrap());
    }
    policies
}

/// Over io_uring the queue threads wait at SCHED_IDLE (so an answer leaves the caller on the
/// queue's CPU, issue 14), at SCHED_OTHER with -o queue_sched=normal; over /dev/fuse there
/// are no queue threads. Requests still get answered either way, and a copy-up (served at
/// SCHED_OTHER) leaves the thread at SCHED_IDLE again.
#[test]
fn queue_threads_wait_at_idle_priority() {
    for (opts, want) in [(&[][..], 5), (&["queue_sched=normal"][..], 0)] {
        let l = Layers::new(2);
        write(l.l(2).join("d/f"), "lower");
        let m = mount(Fs::Unionrs, &l, opts);
        assert_eq!(fs::read_to_string(m.mnt.join("d/f")).unwrap(), "lower");
        fs::write(m.mnt.join("d/f"), "copied up").unwrap();
        assert_eq!(fs::read_to_string(m.mnt.join("d/f")).unwrap(), "copied up");
        let uring = stats(&m.mnt).contains("transport uring");
        let policies = queue_thread_policies(m.pid().unwrap());
        if uring {
            assert!(!policies.is_empty(), "io_uring mount without queue threads");
            assert!(
                policies.iter().all(|&p| p == want),
                "{opts:?}: queue thread policies {policies:?}, want all {want}"
            );
        } else {
            assert_eq!(policies, Vec::<u32>::new(), "queue threads over /dev/fuse");
        }
    }
}

/// What `unionrs stats MNT` prints (it must succeed).
fn stats(mnt: &Path) -> String {
    let out = std::process::Command::new(unionrs_bin())
        .arg("stats")
        .arg(mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unionrs stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The request counters of `unionrs stats` (`requests.OP N` lines).
fn request_counts(mnt: &Path) -> std::collections::BTreeMap<String, u64> {
    stats(mnt)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.strip_prefix("requests.")?.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Every name below `dir` listed and lstat'ed, as `find -exec stat` does (but no statfs,
/// which find itself sends and no kernel caches).
fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        n += 1;
        if m.is_dir() {
            n += walk(&p);
        }
    }
    n
}

/// A warm tree costs no round trip (issue 14): after two walks (the second may still ask
/// for the attributes of directories whose atime the kernel marked stale after an uncached
/// READDIR), a third walk of every name sends nothing to the daemon, on either transport.
#[test]
fn a_tree_walked_twice_sends_no_request_on_the_third_walk() {
    let _s = serial();
    let l = Layers::new(2);
    for i in 0..40 {
        write(l.l(2).join(format!("d{}/low{i}", i % 4)), "lower");
        write(l.l(1).join(format!("d{}/top{i}", i % 4)), "top");
    }
    symlink_at("d1/low1", l.l(1).join("link"));
    whiteout(l.l(1).join("d0/low0"), Whiteout::CharDev);
    opaque(l.l(1).join("d3"), Opaque::XattrTrusted);
    let m = mount(Fs::Unionrs, &l, &[]);
    let names = walk(&m.mnt);
    assert_eq!(walk(&m.mnt), names);
    let before = request_counts(&m.mnt);
    assert!(
        before.get("readdirplus").is_some_and(|&n| n > 0),
        "{before:?}"
    );
    assert_eq!(walk(&m.mnt), names);
    let after = request_counts(&m.mnt);
    assert_eq!(
        before, after,
        "the third walk of {names} names sent requests"
    );
}

/// Empties the page, dentry and inode caches, so the next reads of the layers wait for the
/// disk. The layers must be on a disk: on a tmpfs nothing would be read ahead.
fn drop_caches(on: &Path) {
    let fstype = run("stat", &["-f", "-c", "%T", on.to_str().unwrap()]);
    assert_ne!(
        fstype.trim(),
        "tmpfs",
        "{}: the layers must be on a disk",
        on.display()
    );
    run("sync", &[]);
    fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
}

/// A cold walk reads directories ahead (issue 14): with the caches dropped, listing a
/// directory reads the disk, and its subdirectories are then listed and looked into on the
/// read-ahead threads while the walk goes on, those of a wide directory too (given by plain
/// READDIR batches, without nodes). The walk still sees exactly what the kernel's overlay
/// shows (whiteouts, opaque and merged directories read ahead too). A cold listing that does
/// not descend (`ls -l`) reads only a few subdirectories ahead, and a warm walk none.
#[test]
fn a_cold_walk_reads_directories_ahead_and_a_warm_one_does_not() {
    let _s = serial();
    let l = Layers::new(2);
    for a in 0..12 {
        for s in 0..4 {
            for f in 0..4 {
                write(
                    l.l(2).join(format!("a{a}/s{s}/f{f}")),
                    &format!("low {a} {s} {f}"),
                );
            }
        }
        if a % 2 == 0 {
            write(l.l(1).join(format!("a{a}/s1/top")), "top");
            write(l.l(1).join(format!("a{a}/s2/f0")), "over");
            whiteout(l.l(1).join(format!("a{a}/s0/f1")), Whiteout::CharDev);
        }
        if a % 3 == 0 {
            mkdir(l.l(1).join(format!("a{a}/s3")));
            write(l.l(1).join(format!("a{a}/s3/only")), "opaque");
            opaque(l.l(1).join(format!("a{a}/s3")), Opaque::XattrTrusted);
        }
    }
    // Enough that after the first batch (with attributes) come plain READDIR batches.
    let wide = 1000;
    for w in 0..wide {
        write(l.l(2).join(format!("wide/w{w:04}/f")), "low");
        if w % 7 == 0 {
            write(l.l(1).join(format!("wide/w{w:04}/top")), "top");
            whiteout(l.l(1).join(format!("wide/w{w:04}/f")), Whiteout::CharDev);
        }
    }
    let kernel = mount(Fs::KernelOverlay, &l, &[]);
    let want = tree_snapshot(&kernel.mnt);
    kernel.unmount();
    assert!(want.len() > 2000, "{}", want.len());

    // A listing with the attributes of each entry, as `ls -l` makes, and no descent.
    let m = mount(Fs::Unionrs, &l, &[]);
    drop_caches(l.l(1));
    let mut listed = 0;
    for e in fs::read_dir(m.mnt.join("wide")).unwrap() {
        fs::symlink_metadata(e.unwrap().path()).unwrap();
        listed += 1;
    }
    assert_eq!(listed, wide);
    let ahead = stats_value(&m.mnt, "dirs_read_ahead");
    assert!(
        ahead < 20,
        "ls -l of {wide} subdirectories read {ahead} ahead"
    );
    m.unmount();

    let m = mount(Fs::Unionrs, &l, &[]);
    drop_caches(l.l(1));
    assert_same_tree(&tree_snapshot(&m.mnt), &want, "cold walk");
    let ahead = stats_value(&m.mnt, "dirs_read_ahead");
    assert!(
        ahead >= 700,
        "a cold walk of {} directories read {ahead} ahead",
        12 * 5 + wide + 1
    );
    m.unmount();

    // Everything is cached now: a walk on a fresh mount never waits for the disk, and reads
    // nothing ahead. Whether it waited is the daemon's read_bytes: other work on the machine
    // can push the layers' blocks out of memory between walks (seen once in CI, the walk
    // after tests that wrote hundreds of MiB). Such a walk is cold, not warm, and proves
    // nothing here: it is made again, at most three times, and then the test fails.
    let mut cold = Vec::new();
    loop {
        upper_snapshot(l.l(1));
        upper_snapshot(l.l(2));
        let m = mount(Fs::Unionrs, &l, &[]);
        let pid = m.pid().expect("the daemon's pid");
        let before = read_bytes(pid);
        let walked = tree_snapshot(&m.mnt);
        let read = read_bytes(pid) - before;
        let ahead = stats_value(&m.mnt, "dirs_read_ahead");
        m.unmount();
        assert_same_tree(&walked, &want, "warm walk");
        if read == 0 {
            assert_eq!(ahead, 0, "a warm walk read ahead");
            break;
        }
        cold.push(format!("{read} bytes read, {ahead} directories ahead"));
        assert!(
            cold.len() < 3,
            "no walk stayed warm: the daemon read from the disk each time ({cold:?})"
        );
    }
}

/// The bytes process `pid` made the block layer fetch for it (/proc/PID/io `read_bytes`).
fn read_bytes(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no read_bytes in /proc/{pid}/io: {io}"))
}

/// A limit line of /proc/PID/limits: (soft, hard), "unlimited" as u64::MAX.
fn open_file_limits(pid: &str) -> (u64, u64) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let n = |v: &str| v.parse().unwrap_or(u64::MAX);
    let v: Vec<&str> = line.split_whitespace().collect();
    (n(v[3]), n(v[4]))
}

/// The daemon lifts its soft open-file limit to the hard one and sizes its descriptor table
/// before any thread starts (issue 14: growing a multi-threaded process's table waits for an
/// RCU grace period, 10-15 ms in the middle of a request). So a walk that keeps a handle per
/// cached directory copy works when a service manager hands out a low soft limit.
#[test]
fn walks_a_large_tree_under_a_low_soft_open_file_limit() {
    let (_, hard) = open_file_limits("self");
    let dirs = 400;
    let l = merged_directories(dirs);
    let soft_low = 256;
    let nofile = format!(
        "--nofile={soft_low}:{}",
        if hard == u64::MAX {
            "unlimited".into()
        } else {
            hard.to_string()
        }
    );
    let m = mount_via(Fs::Unionrs, &l, &l.mnt, &[], &["prlimit", &nofile]);
    let pid = m.pid().unwrap().to_string();
    assert_eq!(
        open_file_limits(&pid),
        (hard, hard),
        "the daemon's soft limit stays below its hard one"
    );
    walk_merged_directories(&m.mnt, dirs);
    let open = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
    assert!(
        open > soft_low,
        "the walk held {open} descriptors: not enough to prove anything above {soft_low}"
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let table: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        table >= hard.min(16384),
        "descriptor table of {table} slots: not reserved up front"
    );
}

/// Once the io_uring queues carry every request, the /dev/fuse reader pauses after a FORGET
/// so the kernel hands it the next ones in one BATCH_FORGET (issue 14: `rm -rf` woke a reader
/// thread per removed entry). Every node is still forgotten.
#[test]
fn forgets_of_a_removal_arrive_in_batches_over_io_uring() {
    let l = Layers::new(2);
    let files = 2000;
    fs::create_dir_all(l.l(2).join("d")).unwrap();
    for i in 0..files {
        fs::write(l.l(2).join(format!("d/f{i}")), "x").unwrap();
    }
    let m = mount(Fs::Unionrs, &l, &[]);
    let before = request_counts(&m.mnt);
    let cached = |mnt: &Path| -> u64 {
        let s = stats(mnt);
        let v = s.lines().find_map(|l| l.strip_prefix("cached_inodes "));
        v.unwrap().parse().unwrap()
    };
    let start_nodes = cached(&m.mnt);
    let started = std::time::Instant::now();
    for i in 0..files {
        fs::remove_file(m.mnt.join(format!("d/f{i}"))).unwrap();
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // Every removed file's node goes (the directory `d` stays looked up).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cached(&m.mnt) > start_nodes + 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        cached(&m.mnt) <= start_nodes + 1,
        "nodes left after removing {files} files: {} (started with {start_nodes})",
        cached(&m.mnt)
    );
    let after = request_counts(&m.mnt);
    let delta = |k: &str| after.get(k).unwrap_or(&0) - before.get(k).unwrap_or(&0);
    let messages = delta("forget") + delta("batch_forget");
    assert!(messages > 0, "no FORGET reached the daemon");
    if stats(&m.mnt).contains("transport uring") {
        // One reader, at most one FORGET message per pause, plus one per clone reader
        // that stops on its first request.
        let bound = elapsed_ms + 8;
        assert!(
            files as u64 > 2 * bound,
            "{files} removals took {elapsed_ms} ms: too slow to tell batches from single FORGETs"
        );
        assert!(
            messages <= bound,
            "{messages} FORGET messages for {files} removals in {elapsed_ms} ms"
        );
    }
}

/// `dirs` directories d0.. present in both lower layers of a 2-layer union, each with a file
/// of its own in each layer: a walk caches two lower handles per directory.
fn merged_directories(dirs: usize) -> Layers {
    let l = Layers::new(2);
    for i in 0..dirs {
        write(l.l(1).join(format!("d{i}/top")), &format!("top {i}"));
        write(l.l(2).join(format!("d{i}/bottom")), &format!("bottom {i}"));
    }
    l
}

/// Reads both files and lists every directory made by `merged_directories`.
fn walk_merged_directories(mnt: &Path, dirs: usize) {
    for i in 0..dirs {
        let d = mnt.join(format!("d{i}"));
        assert_eq!(
            fs::read_to_string(d.join("top")).unwrap(),
            format!("top {i}")
        );
        assert_eq!(
            fs::read_to_string(d.join("bottom")).unwrap(),
            format!("bottom {i}")
        );
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            2,
            "listing of {}",
            d.display()
        );
    }
}

/// With a hard open-file limit below what caching every directory would take, the daemon
/// keeps handles up to a share of it and opens the rest per use: the walk still works,
/// twice, and new files can still be made and opened.
#[test]
fn walks_more_directories_than_the_open_file_limit_allows() {
    let dirs = 400;
    let l = merged_directories(dirs);
    let limit = 200;
    let nofile = format!("--nofile={limit}:{limit}");
    let m = mount_via(Fs::Unionrs, &l, &l.mnt, &[], &["prlimit", &nofile]);
    let pid = m.pid().unwrap().to_string();
    assert_eq!(open_file_limits(&pid), (limit, limit));
    walk_merged_directories(&m.mnt, dirs);
    walk_merged_directories(&m.mnt, dirs);
    for i in (0..dirs).step_by(7) {
        let f = m.mnt.join(format!("d{i}/new"));
        fs::write(&f, format!("new {i}")).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), format!("new {i}"));
    }
    let open = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
    assert!(open < limit, "{open} descriptors open, limit {limit}");
}

/// `.wh.NAME` markers in an upper directory that existed before the mount (a rootless
/// fuse-overlayfs upper, an unpacked layer) still hide lower names, while directories this
/// mount made (copy-up, mkdir), which cannot hold such markers, skip that probe (issue 14):
/// both kinds show the lower names they should, before and after a remount.
#[test]
fn oci_markers_in_an_older_upper_directory_still_hide_lower_names() {
    let l = Layers::new(1);
    for f in ["d/a", "d/b", "e/x", "e/y"] {
        write(l.l(1).join(f), f);
    }
    fs::create_dir_all(l.upper().join("d")).unwrap();
    fs::write(l.upper().join("d/.wh.a"), "").unwrap();
    let check = |m: &Path| {
        assert_eq!(
            names(m.join("d")),
            ["b"],
            "d: a hidden by the upper's .wh.a"
        );
        assert!(fs::symlink_metadata(m.join("d/a")).is_err());
        assert_eq!(names(m.join("e")), ["new", "y"]);
        assert_eq!(fs::read_to_string(m.join("e/y")).unwrap(), "e/y");
        assert!(fs::symlink_metadata(m.join("e/x")).is_err());
        assert_eq!(names(m.join("f")), ["g"]);
    };
    let m = mount(Fs::Unionrs, &l, &[]);
    assert_eq!(names(m.mnt.join("d")), ["b"]);
    // e is copied up by this mount, then a lower name in it is removed and another read.
    fs::write(m.mnt.join("e/new"), "new").unwrap();
    fs::remove_file(m.mnt.join("e/x")).unwrap();
    fs::create_dir(m.mnt.join("f")).unwrap();
    fs::write(m.mnt.join("f/g"), "g").unwrap();
    check(&m.mnt);
    drop(m);
    let m = mount(Fs::Unionrs, &l, &[]);
    check(&m.mnt);
}

/// The daemon's descriptors of files in the upper of `l` whose name starts with `prefix`,
/// and of deleted files.
fn daemon_fds(pid: u32, l: &Layers, prefix: &str) -> Vec<String> {
    // The daemon opens the upper beneath a private mount of its own, whose paths /proc shows
    // from that mount's root: tell upper files by their filesystem and their name.
    let upper_dev = fs::metadata(l.upper()).unwrap().dev();
    let mut names = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(t) = fs::read_link(e.path()) else {
            continue;
        };
        let in_upper = fs::metadata(e.path()).is_ok_and(|m| m.dev() == upper_dev);
        let t = t.to_string_lossy().into_owned();
        let named = std::path::Path::new(&t)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix));
        if t.ends_with(" (deleted)") || (in_upper && named) {
            names.push(t);
        }
    }
    names
}

/// Waits (up to 5 s) until the daemon has handled the RELEASE of every closed file: the kernel
/// sends it without waiting.
fn wait_released(mnt: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stats_value(mnt, "open_files") != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(stats_value(mnt, "open_files"), 0, "RELEASE not handled");
}

/// What a released handle held (the layer fd, the passthrough backing) is closed off the
/// request path, soon.
#[test]
fn released_files_are_closed_soon() {
    let l = Layers::new(1);
    let m = mount(Fs::Unionrs, &l, &[]);
    let pid = m.pid().expect("daemon pid");
    for i in 0..10 {
        write(l.m(&format!("kept{i}")), "x");
        assert_eq!(read(l.m(&format!("kept{i}"))), "x");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !daemon_fds(pid, &l, "kept").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(daemon_fds(pid, &l, "kept"), Vec::<String>::new());
}

/// A removal never waits on the closing of released files (here made to wait a minute):
/// once unlink or a rename over the name returns, the daemon holds no descriptor of the
/// removed file (its blocks are free, as on the kernel), nor once the last close of a file
/// unlinked while open is handled.
#[test]
fn a_removal_closes_the_removed_file_at_once() {
    let l = Layers::new(1);
    let mnt = l.mnt.clone();
    let m = mount_via(
        Fs::Unionrs,
        &l,
        &mnt,
        &[],
        &["env", "UNIONRS_CLOSE_LINGER_MS=60000"],
    );
    let pid = m.pid().expect("daemon pid");
    for i in 0..10 {
        let f = l.m(&format!("gone{i}"));
        write(&f, "data");
        assert_eq!(read(&f), "data");
        wait_released(&mnt);
        assert!(!daemon_fds(pid, &l, "gone").is_empty(), "the closing waits");
        fs::remove_file(&f).unwrap();
        assert_eq!(
            daemon_fds(pid, &l, "gone"),
            Vec::<String>::new(),
            "after unlink {i}"
        );
    }
    write(l.m("old"), "old");
    write(l.m("new"), "new");
    wait_released(&mnt);
    fs::rename(l.m("new"), l.m("old")).unwrap();
    assert_eq!(
        daemon_fds(pid, &l, "zzz"),
        Vec::<String>::new(),
        "after a rename over a file"
    );
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(l.m("open"))
        .unwrap();
    f.write_all(b"open").unwrap();
    fs::remove_file(l.m("open")).unwrap();
    drop(f);
    wait_released(&mnt);
    assert_eq!(
        daemon_fds(pid, &l, "zzz"),
        Vec::<String>::new(),
        "after the last close"
    );
}
