//! Kernel parity found by fstests (issue 17): behaviours `FSTYP=fuse` runs of fstests showed
//! different from kernel overlayfs. Each `both!` test runs the same steps on kernel overlayfs
//! (the reference) and on unionrs with the same expectations.

mod common;

use common::*;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn errno<T>(r: std::io::Result<T>) -> i32 {
    sys::errno(&r)
}

// fstests generic/035: a directory replaced by rename, or removed, while a process holds it
// open keeps answering fstat: st_nlink 0 for an upper directory, the lower's own count for a
// whited-out lower-only one, 1 for a merged one (the kernel does not count merged
// subdirectories); it can still be chmod'ed and lists as empty.
both!(removed_directory_held_open_answers_fstat, |fs| {
    let l = Layers::new(1);
    mkdir(l.l(1).join("lowdir"));
    mkdir(l.l(1).join("merged"));
    write(l.l(1).join("merged/x"), "x");
    let _m = mount(fs, &l, &[]);
    // rename(dir1, dir2) over an empty dir2 that is open (generic/035's t_rename_overwrite).
    mkdir(l.m("dir1"));
    mkdir(l.m("dir2"));
    write(l.m("dir1/kept"), "k");
    let held = File::open(l.m("dir2")).unwrap();
    fs::rename(l.m("dir1"), l.m("dir2")).unwrap();
    let md = held.metadata().expect("fstat of the replaced directory");
    assert_eq!((md.nlink(), md.is_dir()), (0, true), "replaced upper dir");
    assert_eq!(names(l.m("dir2")), ["kept"]);
    // rmdir of an open upper directory.
    mkdir(l.m("gone"));
    let gone = File::open(l.m("gone")).unwrap();
    fs::remove_dir(l.m("gone")).unwrap();
    assert_eq!(gone.metadata().unwrap().nlink(), 0, "removed upper dir");
    let listing = fs::read_dir(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        gone.as_raw_fd()
    }));
    assert_eq!(listing.unwrap().count(), 0, "a removed dir lists as empty");
    // rmdir of an open lower-only directory: the lower keeps its links.
    let low = File::open(l.m("lowdir")).unwrap();
    fs::remove_dir(l.m("lowdir")).unwrap();
    let lower_links = fs::metadata(l.l(1).join("lowdir")).unwrap().nlink();
    assert_eq!(
        low.metadata().unwrap().nlink(),
        lower_links,
        "removed lower dir"
    );
    // rmdir of an open merged directory (upper copy over a lower one).
    fs::remove_file(l.m("merged/x")).unwrap();
    let merged = File::open(l.m("merged")).unwrap();
    fs::remove_dir(l.m("merged")).unwrap();
    assert_eq!(merged.metadata().unwrap().nlink(), 1, "removed merged dir");
    merged
        .set_permissions(fs::Permissions::from_mode(0o700))
        .expect("fchmod of a removed merged dir");
    assert_eq!(merged.metadata().unwrap().mode() & 0o7777, 0o700);
    assert_eq!(errno(fs::symlink_metadata(l.m("merged"))), libc::ENOENT);
});

// fstests generic/215: mtime and ctime after a write through a shared writable mapping show
// at once in stat (asked for alone, as `stat --printf=%Y` asks), while the mapping is there
// and after the writer is gone. With FUSE passthrough the daemon never sees such a write.
both!(mapped_write_updates_mtime_and_ctime_at_once, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("lower"), &"l".repeat(8192));
    let m = mount(fs, &l, &[]);
    fs::write(l.m("upper"), vec![0u8; 8192]).unwrap();
    let times = |name: &str| {
        let p = l.m(name);
        let (mtime, _) = sys::statx_times(&p, libc::STATX_MTIME).unwrap();
        let (_, ctime) = sys::statx_times(&p, libc::STATX_CTIME).unwrap();
        (mtime, ctime)
    };
    // Through passthrough the mapping is the layer file's; without it, the daemon hears of
    // mapped data only at writeback (msync, close), as for any FUSE file without writeback
    // cache (docs/architecture.md, section 9).
    let at_once = fs == Fs::KernelOverlay || stats_text(&m).contains("passthrough on");
    for name in ["upper", "lower"] {
        // Attributes the kernel caches before the writer comes (stat, and the writer's own
        // fstat before it maps, as xfs_io and Python's mmap do).
        let before = times(name);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(l.m(name))
            .unwrap();
        assert_eq!(f.metadata().unwrap().len(), 8192);
        let mut during = None;
        sys::mmap_write_then(&f, b"MAPPED", || during = Some(times(name))).unwrap();
        let during = during.unwrap();
        if at_once {
            assert!(during.0 > before.0, "{name}: mtime while mapped");
            assert!(during.1 > before.1, "{name}: ctime while mapped");
        }
        drop(f);
        let after = times(name);
        assert!(after.0 > before.0, "{name}: mtime {before:?} -> {after:?}");
        assert!(after.1 > before.1, "{name}: ctime {before:?} -> {after:?}");
        assert_eq!(&fs::read(l.m(name)).unwrap()[..6], b"MAPPED");
    }
});

fn stats_text(m: &MountGuard) -> String {
    let out = std::process::Command::new(unionrs_bin())
        .arg("stats")
        .arg(&m.mnt)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

// O_TMPFILE (fstests generic/004, 389, 509...): an unnamed file in a lower directory (which is
// copied up), written, named by linkat, seen through that name and after a remount;
// O_EXCL keeps it unnameable; an unnamed file leaves nothing behind.
both!(o_tmpfile_then_linkat, |fs| {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let l = Layers::new(1);
    mkdir(l.l(1).join("d"));
    write(l.l(1).join("d/lower"), "lower");
    let m = mount(fs, &l, &[]);
    let tmp = |dir: &str, excl: bool| {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o640)
            .custom_flags(libc::O_TMPFILE | if excl { libc::O_EXCL } else { 0 })
            .open(l.m(dir))
    };
    let old = sys::umask(0o022);
    let mut f = tmp("d", false).expect("O_TMPFILE in a lower directory");
    sys::umask(old);
    f.write_all(b"tmp data").unwrap();
    let md = f.metadata().unwrap();
    assert_eq!((md.nlink(), md.mode(), md.len()), (0, 0o100640, 8));
    assert_eq!(names(l.m("d")), ["lower"]);
    sys::fsetxattr(&f, "user.t", b"1").unwrap();
    sys::link_fd(&f, &l.m("d/named")).expect("linkat of an O_TMPFILE file");
    assert_eq!(f.metadata().unwrap().nlink(), 1);
    assert_eq!(read(l.m("d/named")), "tmp data");
    assert_eq!(fs::metadata(l.m("d/named")).unwrap().ino(), md.ino());
    f.write_all(b"+more").unwrap();
    let mut s = String::new();
    f.rewind().unwrap();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(
        (s.as_str(), read(l.m("d/named")).as_str()),
        ("tmp data+more", "tmp data+more")
    );
    assert_eq!(sys::lgetxattr(&l.m("d/named"), "user.t").unwrap(), b"1");
    drop(f);
    // O_EXCL: never linkable. A tmpfile in the root, never named, leaves nothing.
    let f = tmp("d", true).unwrap();
    assert_eq!(errno(sys::link_fd(&f, &l.m("d/excl"))), libc::ENOENT);
    drop(f);
    drop(tmp(".", false).unwrap());
    assert_eq!(errno(tmp("d/lower", false)), libc::ENOTDIR);
    let mut shown = names(l.m("d"));
    shown.sort();
    assert_eq!(shown, ["lower", "named"]);
    drop(m);
    let mut upper = names(l.upper().join("d"));
    upper.sort();
    assert_eq!(upper, ["named"]);
    let _m = mount(fs, &l, &[]);
    assert_eq!(read(l.m("d/named")), "tmp data+more");
});

// fstests generic/756 and the open_by_handle tests: unionrs refuses to encode NFS file
// handles, as kernel overlayfs with its default nfs_export=off does, instead of handing out
// handles that go stale once the kernel forgets the inode (`echo 3 > drop_caches`).
// Handles for identification only (AT_HANDLE_FID: fanotify) still work.
both!(file_handles_refused_as_nfs_export_off, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("lower"), "l");
    let _m = mount(fs, &l, &["kernel:nfs_export=off"]);
    write(l.m("upper"), "u");
    for name in ["lower", "upper", ""] {
        let p = l.m(name);
        assert_eq!(
            errno(sys::name_to_handle(&p, 0)),
            libc::EOPNOTSUPP,
            "{name:?}"
        );
        let fid = sys::name_to_handle(&p, libc::AT_HANDLE_FID);
        assert!(fid.is_ok_and(|h| !h.is_empty()), "{name:?}: AT_HANDLE_FID");
    }
});

const IMMUTABLE: u32 = 0x10;
const APPEND: u32 = 0x20;

fn chattr(p: &std::path::Path, set: u32, clear: u32) {
    let f = File::open(p).unwrap();
    let old = sys::getflags(&f).unwrap();
    sys::setflags(&f, (old | set) & !clear).unwrap();
}

fn flags(p: &std::path::Path) -> u32 {
    sys::getflags(&File::open(p).unwrap()).unwrap() & (IMMUTABLE | APPEND)
}

// Inode flags (fstests generic/079 and the chattr tests): `chattr +i`, `+a` on lower and
// upper objects copy them up and keep the flag in trusted.overlay.protattr on the upper
// copy (not on its inode); every change of a protected object is refused with EPERM, an
// append-only file still takes appends, and the protection survives a remount.
both!(immutable_and_append_only_flags, |fs| {
    use std::io::Write;
    let l = Layers::new(1);
    write(l.l(1).join("lower"), "lower");
    mkdir(l.l(1).join("dir"));
    write(l.l(1).join("dir/in"), "in");
    // A lower file immutable in its own layer: shown and enforced as such.
    write(l.l(1).join("locked"), "locked");
    chattr(&l.l(1).join("locked"), IMMUTABLE, 0);
    // A lower directory immutable in its layer stays so when a change inside copies it up.
    mkdir(l.l(1).join("ldir"));
    write(l.l(1).join("ldir/f"), "f");
    mkdir(l.l(1).join("ldir/full"));
    write(l.l(1).join("ldir/full/x"), "x");
    mkdir(l.l(1).join("ldir/empty"));
    chattr(&l.l(1).join("ldir"), IMMUTABLE, 0);
    let m = mount(fs, &l, &[]);
    fs::set_permissions(l.m("ldir/f"), fs::Permissions::from_mode(0o600)).unwrap();
    let prot = sys::lgetxattr(&l.upper().join("ldir"), "trusted.overlay.protattr");
    assert_eq!(prot.unwrap(), b"i", "copied-up immutable dir");
    assert_eq!(flags(&l.m("ldir")), IMMUTABLE);
    assert_eq!(errno(File::create(l.m("ldir/new"))), libc::EPERM);
    // EPERM comes before the directory's own state (fstests generic/079).
    assert_eq!(errno(fs::remove_dir(l.m("ldir/full"))), libc::EPERM);
    assert_eq!(errno(fs::remove_dir(l.m("ldir/empty"))), libc::EPERM);
    assert_eq!(flags(&l.m("locked")), IMMUTABLE);
    assert_eq!(
        errno(File::options().append(true).open(l.m("locked"))),
        libc::EPERM
    );
    assert_eq!(errno(fs::remove_file(l.m("locked"))), libc::EPERM);
    write(l.m("upper"), "upper");
    let open_w = |name: &str, append: bool, trunc: bool| {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .append(append)
            .custom_flags(if trunc { libc::O_TRUNC } else { 0 })
            .open(l.m(name))
    };
    for name in ["lower", "upper"] {
        assert_eq!(flags(&l.m(name)), 0, "{name}");
        chattr(&l.m(name), IMMUTABLE, 0);
        assert_eq!(flags(&l.m(name)), IMMUTABLE, "{name}");
        let prot = sys::lgetxattr(&l.upper().join(name), "trusted.overlay.protattr");
        assert_eq!(prot.unwrap(), b"i", "{name}: protattr");
        assert_eq!(errno(open_w(name, false, false)), libc::EPERM, "{name}");
        assert_eq!(errno(open_w(name, true, false)), libc::EPERM, "{name}");
        let perm = fs::Permissions::from_mode(0o600);
        assert_eq!(errno(fs::set_permissions(l.m(name), perm)), libc::EPERM);
        assert_eq!(
            errno(sys::lsetxattr(&l.m(name), "user.x", b"1")),
            libc::EPERM
        );
        assert_eq!(errno(fs::hard_link(l.m(name), l.m("link"))), libc::EPERM);
        assert_eq!(errno(fs::rename(l.m(name), l.m("moved"))), libc::EPERM);
        assert_eq!(errno(fs::remove_file(l.m(name))), libc::EPERM);
        assert_eq!(read(l.m(name)), name);
        chattr(&l.m(name), APPEND, IMMUTABLE);
        assert_eq!(flags(&l.m(name)), APPEND, "{name}");
        let prot = sys::lgetxattr(&l.upper().join(name), "trusted.overlay.protattr");
        assert_eq!(prot.unwrap(), b"a", "{name}: protattr");
        assert_eq!(errno(open_w(name, false, false)), libc::EPERM, "{name}");
        assert_eq!(errno(open_w(name, true, true)), libc::EPERM, "{name}");
        open_w(name, true, false).unwrap().write_all(b"+").unwrap();
        assert_eq!(read(l.m(name)), format!("{name}+"));
        assert_eq!(errno(fs::remove_file(l.m(name))), libc::EPERM);
        // Times may be set to now (`touch`), not to a given time (fstests generic/079).
        let touch = |args: &[&str]| {
            std::process::Command::new("touch")
                .args(args)
                .arg(l.m(name))
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        assert!(touch(&[]), "{fs:?}: touch of append-only {name}");
        assert!(!touch(&["-d", "@1000"]), "{fs:?}: explicit time on {name}");
    }
    // An immutable directory takes no new name and loses none.
    chattr(&l.m("dir"), IMMUTABLE, 0);
    assert_eq!(errno(File::create(l.m("dir/new"))), libc::EPERM);
    assert_eq!(errno(fs::create_dir(l.m("dir/sub"))), libc::EPERM);
    assert_eq!(errno(fs::remove_file(l.m("dir/in"))), libc::EPERM);
    assert_eq!(
        errno(fs::rename(l.m("upper"), l.m("dir/upper"))),
        libc::EPERM
    );
    // Kept across a remount.
    drop(m);
    let m = mount(fs, &l, &[]);
    assert_eq!(flags(&l.m("dir")), IMMUTABLE);
    assert_eq!(flags(&l.m("lower")), APPEND);
    assert_eq!(errno(open_w("lower", false, false)), libc::EPERM);
    assert_eq!(errno(File::create(l.m("dir/new"))), libc::EPERM);
    // Cleared: everything works again, and no protattr is left.
    chattr(&l.m("dir"), 0, IMMUTABLE);
    for name in ["lower", "upper"] {
        chattr(&l.m(name), 0, APPEND);
        open_w(name, false, true).unwrap();
        fs::remove_file(l.m(name)).unwrap();
    }
    File::create(l.m("dir/new")).unwrap();
    let prot = sys::lgetxattr(&l.upper().join("dir"), "trusted.overlay.protattr");
    assert_eq!(errno(prot), libc::ENODATA);
    // chattr -i of the lower immutable file copies it up without the flag.
    chattr(&l.m("locked"), 0, IMMUTABLE);
    assert_eq!(flags(&l.m("locked")), 0);
    fs::remove_file(l.m("locked")).unwrap();
    drop(m);
    chattr(&l.l(1).join("locked"), 0, IMMUTABLE);
    chattr(&l.l(1).join("ldir"), 0, IMMUTABLE);
});
