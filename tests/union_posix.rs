//! POSIX operations through a union mount: create/rename/link, data, metadata, xattrs, locks,
//! inode numbers. Each `both!` test runs on kernel overlayfs (the reference) and on unionrs.

mod common;

use common::snapshot::{Kind, tree_snapshot, upper_snapshot};
use common::*;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{
    DirEntryExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::Path;

fn errno<T>(r: std::io::Result<T>) -> i32 {
    sys::errno(&r)
}

both!(create_node_types, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("lower"), "L");
    let _m = mount(fs, &l, &[]);
    write(l.m("file"), "data");
    sys::mkfifo(&l.m("fifo"), 0o600).unwrap();
    fs::create_dir(l.m("dir")).unwrap();
    std::os::unix::fs::symlink("file", l.m("sym")).unwrap();
    fs::hard_link(l.m("file"), l.m("hard")).unwrap();
    assert!(
        fs::symlink_metadata(l.m("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(fs::read_link(l.m("sym")).unwrap(), Path::new("file"));
    assert_eq!(fs::metadata(l.m("hard")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(l.m("hard")).unwrap().ino(),
        fs::metadata(l.m("file")).unwrap().ino()
    );
    let up = upper_snapshot(l.upper());
    for (n, k) in [
        ("file", Kind::File),
        ("fifo", Kind::Fifo),
        ("dir", Kind::Dir),
        ("sym", Kind::Symlink),
    ] {
        assert_eq!(up[Path::new(n)].kind, k, "{n} in upper");
    }
    fs::remove_file(l.m("hard")).unwrap();
    fs::remove_file(l.m("fifo")).unwrap();
    fs::remove_dir(l.m("dir")).unwrap();
    fs::remove_file(l.m("sym")).unwrap();
    assert_eq!(fs::metadata(l.m("file")).unwrap().nlink(), 1);
    assert_eq!(names(&l.mnt), ["file", "lower"]);
    let up = upper_snapshot(l.upper());
    assert!(
        !up.contains_key(Path::new("dir")),
        "upper-only entries leave no whiteout: {up:#?}"
    );
});

both!(rename_files, |fs| {
    let l = Layers::new(2);
    write(l.l(2).join("a"), "A");
    write(l.l(2).join("d/b"), "B");
    write(l.l(1).join("e/c"), "C");
    let _m = mount(fs, &l, &[]);
    let ino = fs::metadata(l.m("a")).unwrap().ino();
    fs::rename(l.m("a"), l.m("a2")).unwrap();
    assert_eq!(read(l.m("a2")), "A");
    assert_eq!(
        fs::metadata(l.m("a2")).unwrap().ino(),
        ino,
        "st_ino kept across rename"
    );
    fs::rename(l.m("d/b"), l.m("e/b")).unwrap();
    fs::rename(l.m("e/c"), l.m("a2")).unwrap();
    assert_eq!(names(&l.mnt), ["a2", "d", "e"]);
    assert_eq!(names(l.m("d")), Vec::<String>::new());
    assert_eq!(names(l.m("e")), ["b"]);
    assert_eq!(read(l.m("a2")), "C");
    let up = upper_snapshot(l.upper());
    assert_eq!(up[Path::new("a")].kind, Kind::Whiteout);
    assert_eq!(up[Path::new("d/b")].kind, Kind::Whiteout);
});

both!(rename_lower_directory, |fs| {
    let l = Layers::new(2);
    write(l.l(2).join("d/x"), "x");
    write(l.l(2).join("d/sub/y"), "y");
    write(l.l(1).join("d/z"), "z");
    mkdir(l.l(1).join("other"));
    write(l.l(2).join("d2/q"), "q");
    let _m = mount(fs, &l, &[]);
    let ino = fs::metadata(l.m("d")).unwrap().ino();
    fs::rename(l.m("d"), l.m("e")).expect("rename of a merged lower dir (no EXDEV)");
    assert_eq!(names(l.m("e")), ["sub", "x", "z"]);
    assert_eq!(read(l.m("e/sub/y")), "y");
    assert_eq!(
        fs::metadata(l.m("e")).unwrap().ino(),
        ino,
        "dir st_ino kept across rename"
    );
    fs::rename(l.m("d2"), l.m("other/moved")).expect("rename lower dir into another dir");
    assert_eq!(names(l.m("other/moved")), ["q"]);
    assert!(!names(&l.mnt).contains(&"d".into()) && !names(&l.mnt).contains(&"d2".into()));
    // A new dir at the old name does not resurrect the old contents.
    fs::create_dir(l.m("d")).unwrap();
    assert_eq!(names(l.m("d")), Vec::<String>::new());
    // Still right after remount.
    drop(_m);
    let _m = mount(fs, &l, &[]);
    assert_eq!(names(l.m("e")), ["sub", "x", "z"]);
    assert_eq!(names(l.m("other/moved")), ["q"]);
    assert_eq!(names(l.m("d")), Vec::<String>::new());
});

both!(rename_noreplace_and_exchange, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("a"), "A");
    write(l.l(1).join("b"), "B");
    write(l.l(1).join("dir/in"), "in");
    let _m = mount(fs, &l, &[]);
    let e = sys::renameat2(&l.m("a"), &l.m("b"), libc::RENAME_NOREPLACE);
    assert_eq!(errno(e), libc::EEXIST);
    sys::renameat2(&l.m("a"), &l.m("c"), libc::RENAME_NOREPLACE).unwrap();
    let e = sys::renameat2(&l.m("c"), &l.m("none"), libc::RENAME_EXCHANGE);
    assert_eq!(errno(e), libc::ENOENT);
    sys::renameat2(&l.m("c"), &l.m("b"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!((read(l.m("b")), read(l.m("c"))), ("A".into(), "B".into()));
    sys::renameat2(&l.m("b"), &l.m("dir"), libc::RENAME_EXCHANGE)
        .expect("exchange file and lower dir");
    assert_eq!(read(l.m("dir")), "A");
    assert_eq!(names(l.m("b")), ["in"]);
    assert_eq!(names(&l.mnt), ["b", "c", "dir"]);
});

both!(truncate_fallocate_append, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("t"), "0123456789");
    write(l.l(1).join("ap"), "start");
    let _m = mount(fs, &l, &[]);
    OpenOptions::new()
        .write(true)
        .open(l.m("t"))
        .unwrap()
        .set_len(4)
        .unwrap();
    assert_eq!(read(l.m("t")), "0123");
    fs::File::options()
        .write(true)
        .open(l.m("t"))
        .unwrap()
        .set_len(8)
        .unwrap();
    assert_eq!(fs::read(l.m("t")).unwrap(), b"0123\0\0\0\0");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(l.m("fa"))
        .unwrap();
    sys::fallocate(&f, 0, 0, 1 << 20).unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(md.len(), 1 << 20);
    assert!(
        md.blocks() * 512 >= 1 << 20,
        "fallocate allocates: {} blocks",
        md.blocks()
    );
    sys::fallocate(
        &f,
        libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE,
        0,
        1 << 19,
    )
    .unwrap();
    assert!(
        f.metadata().unwrap().blocks() * 512 < 1 << 20,
        "hole punched"
    );
    let mut a = OpenOptions::new().append(true).open(l.m("ap")).unwrap();
    a.write_all(b"+1").unwrap();
    let mut a2 = OpenOptions::new().append(true).open(l.m("ap")).unwrap();
    a2.write_all(b"+2").unwrap();
    a.write_all(b"+3").unwrap();
    assert_eq!(read(l.m("ap")), "start+1+2+3");
});

both!(large_file_beyond_4g, |fs| {
    let l = Layers::new(1);
    let _m = mount(fs, &l, &[]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(l.m("big"))
        .unwrap();
    let off = 5u64 << 30;
    f.write_all_at(b"far", off).unwrap();
    assert_eq!(f.metadata().unwrap().len(), off + 3);
    drop(f);
    let f = File::open(l.m("big")).unwrap();
    let mut buf = [0u8; 3];
    f.read_exact_at(&mut buf, off).unwrap();
    assert_eq!(&buf, b"far");
    assert!(f.metadata().unwrap().blocks() < 1024, "stays sparse");
});

both!(sparse_copy_up_keeps_holes, |fs| {
    let l = Layers::new(1);
    let lf = l.l(1).join("sparse");
    let f = File::create(&lf).unwrap();
    f.write_all_at(&[7u8; 4096], 0).unwrap();
    f.write_all_at(&[9u8; 4096], 64 << 20).unwrap();
    drop(f);
    let _m = mount(fs, &l, &[]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(l.m("sparse"))
        .unwrap();
    f.write_all_at(b"x", 1).unwrap(); // forces a data copy-up
    // The kernel copies up in 1 MiB chunks and skips all-zero (hole) chunks.
    let hole = sys::lseek(&f, 0, libc::SEEK_HOLE).unwrap();
    assert!((4096..=1 << 20).contains(&hole), "first hole at {hole}");
    assert_eq!(sys::lseek(&f, hole, libc::SEEK_DATA).unwrap(), 64 << 20);
    let mut buf = [0u8; 2];
    f.read_exact_at(&mut buf, 64 << 20).unwrap();
    assert_eq!(buf, [9, 9]);
    let blocks = f.metadata().unwrap().blocks();
    assert!(
        blocks <= 8192,
        "holes kept through copy-up: {blocks} blocks"
    );
    assert!(fs::metadata(l.upper().join("sparse")).unwrap().blocks() <= 8192);
});

// A copy-up copies every byte and keeps the size, whatever the file's allocation: dense
// files (copied without probing for holes), a file ending in a hole, and a file whose
// preallocated blocks cover its size while it still has a hole (read back as zeros).
both!(copy_up_keeps_every_byte_and_the_size, |fs| {
    let l = Layers::new(1);
    let pattern = |n: usize| (0..n).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>();
    let dense = pattern((3 << 20) + 17);
    fs::write(l.l(1).join("dense"), &dense).unwrap();
    fs::write(l.l(1).join("one"), b"1").unwrap();
    let f = File::create(l.l(1).join("tailhole")).unwrap();
    f.write_all_at(&[5u8; 4096], 0).unwrap();
    f.set_len(10 << 20).unwrap();
    drop(f);
    let f = File::create(l.l(1).join("prealloc")).unwrap();
    f.write_all_at(&pattern(8192), 0).unwrap();
    sys::fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20).unwrap();
    let punch = libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE;
    sys::fallocate(&f, punch, 4096, 4096).unwrap();
    let md = f.metadata().unwrap();
    assert!(md.blocks() * 512 >= md.len(), "blocks cover the size");
    drop(f);
    let mut prealloc = pattern(8192);
    prealloc[4096..].fill(0);
    let mut tailhole = vec![5u8; 4096];
    tailhole.resize(10 << 20, 0);
    let _m = mount(fs, &l, &[]);
    for (name, want) in [
        ("dense", &dense),
        ("one", &b"1".to_vec()),
        ("tailhole", &tailhole),
        ("prealloc", &prealloc),
    ] {
        // Rewriting the first byte forces a data copy-up and changes nothing.
        let f = OpenOptions::new().write(true).open(l.m(name)).unwrap();
        f.write_all_at(&want[..1], 0).unwrap();
        drop(f);
        let got = fs::read(l.m(name)).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: size");
        assert!(got == *want, "{name}: content differs after copy-up");
        assert_eq!(
            fs::read(l.upper().join(name)).unwrap().len(),
            want.len(),
            "{name}"
        );
    }
});

both!(chmod_chown_utimens_ns, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    mkdir(l.l(1).join("d"));
    symlink_at("f", l.l(1).join("s"));
    let _m = mount(fs, &l, &[]);
    fs::set_permissions(l.m("f"), fs::Permissions::from_mode(0o4751)).unwrap();
    assert_eq!(fs::metadata(l.m("f")).unwrap().mode() & 0o7777, 0o4751);
    std::os::unix::fs::lchown(l.m("d"), Some(42), Some(43)).unwrap();
    let md = fs::metadata(l.m("d")).unwrap();
    assert_eq!((md.uid(), md.gid()), (42, 43));
    std::os::unix::fs::lchown(l.m("s"), Some(7), Some(8)).unwrap();
    assert_eq!(fs::symlink_metadata(l.m("s")).unwrap().uid(), 7);
    for p in ["f", "d", "s"] {
        sys::lutimens(
            &l.m(p),
            (1_500_000_000, 111_111_111),
            (1_600_000_000, 987_654_321),
        )
        .unwrap();
        let md = fs::symlink_metadata(l.m(p)).unwrap();
        assert_eq!(
            (md.mtime(), md.mtime_nsec()),
            (1_600_000_000, 987_654_321),
            "{p}"
        );
        assert_eq!(
            (md.atime(), md.atime_nsec()),
            (1_500_000_000, 111_111_111),
            "{p}"
        );
    }
    assert_eq!(read(l.m("f")), "f");
});

both!(xattrs_and_private_hidden, |fs| {
    let l = Layers::new(2);
    write(l.l(2).join("f"), "f");
    setxattr(l.l(2).join("f"), "user.low", "1");
    opaque(l.l(1).join("od"), Opaque::XattrTrusted);
    write(l.l(2).join("md/low"), "l");
    mkdir(l.l(1).join("md"));
    let _m = mount(fs, &l, &[]);
    let f = l.m("f");
    assert_eq!(getxattr(&f, "user.low").as_deref(), Some("1"));
    setxattr(&f, "user.new", "2");
    setxattr(&f, "trusted.t", "3");
    let mut list = sys::llistxattr(&f).unwrap();
    list.retain(|x| !x.starts_with("security."));
    list.sort();
    assert_eq!(list, ["trusted.t", "user.low", "user.new"]);
    sys::lremovexattr(&f, "user.low").unwrap();
    assert_eq!(errno(sys::lgetxattr(&f, "user.low")), libc::ENODATA);
    assert_eq!(errno(sys::lremovexattr(&f, "user.none")), libc::ENODATA);
    assert_eq!(
        getxattr(l.upper().join("f"), "user.new").as_deref(),
        Some("2")
    );
    assert_eq!(
        getxattr(l.l(2).join("f"), "user.low").as_deref(),
        Some("1"),
        "lower untouched"
    );
    for p in [l.m("od"), f.clone(), l.mnt.clone()] {
        let list = sys::llistxattr(&p).unwrap();
        assert!(
            list.iter().all(|x| !snapshot::is_private_xattr(x)),
            "{}: {list:?}",
            p.display()
        );
    }
    assert_eq!(
        errno(sys::lgetxattr(&l.m("od"), "trusted.overlay.opaque")),
        libc::ENODATA
    );
    // Setting an overlay-private name through the mount must not forge overlay semantics:
    // the kernel stores it escaped (trusted.overlay.overlay.opaque); refusing it is fine too.
    if sys::lsetxattr(&l.m("md"), "trusted.overlay.opaque", b"y").is_ok() {
        assert_eq!(
            getxattr(l.upper().join("md"), "trusted.overlay.opaque"),
            None
        );
    }
    drop(_m);
    let _m = mount(fs, &l, &[]);
    assert_eq!(names(l.m("md")), ["low"], "dir stays merged");
});

both!(statfs_fsync, |fs| {
    let l = Layers::new(1);
    let _m = mount(fs, &l, &[]);
    let (s, u) = (
        sys::statfs(&l.mnt).unwrap(),
        sys::statfs(l.upper()).unwrap(),
    );
    let total = |s: &libc::statfs| s.f_blocks as u128 * s.f_bsize as u128;
    assert_eq!(total(&s), total(&u), "statfs reports the upper filesystem");
    assert_eq!(s.f_namelen, 255);
    let mut f = File::create(l.m("f")).unwrap();
    f.write_all(b"sync me").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    File::open(&l.mnt).unwrap().sync_all().unwrap();
});

both!(mmap_shared_write_survives_remount, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("m"), "lower-lower-lower");
    let m = mount(fs, &l, &[]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(l.m("m"))
        .unwrap();
    sys::mmap_write(&f, b"MAPPED").unwrap();
    drop(f);
    drop(m);
    let _m = mount(fs, &l, &[]);
    assert_eq!(read(l.m("m")), "MAPPEDlower-lower");
    assert_eq!(read(l.l(1).join("m")), "lower-lower-lower");
});

both!(flock_and_fcntl_locks, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("lk"), "lock");
    let _m = mount(fs, &l, &[]);
    let a = OpenOptions::new()
        .read(true)
        .write(true)
        .open(l.m("lk"))
        .unwrap();
    let b = OpenOptions::new()
        .read(true)
        .write(true)
        .open(l.m("lk"))
        .unwrap();
    sys::flock(&a, libc::LOCK_EX).unwrap();
    assert_eq!(
        errno(sys::flock(&b, libc::LOCK_EX | libc::LOCK_NB)),
        libc::EWOULDBLOCK
    );
    let st = std::process::Command::new("flock")
        .args(["-n", "-E", "99"])
        .arg(l.m("lk"))
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(99), "another process sees the flock");
    sys::flock(&a, libc::LOCK_UN).unwrap();
    sys::flock(&b, libc::LOCK_EX | libc::LOCK_NB).unwrap();
    sys::fcntl_lock(&a, libc::F_OFD_SETLK, libc::F_WRLCK).unwrap();
    assert_eq!(
        errno(sys::fcntl_lock(&b, libc::F_OFD_SETLK, libc::F_WRLCK)),
        libc::EAGAIN
    );
    let got = sys::fcntl_lock(&b, libc::F_OFD_GETLK, libc::F_WRLCK).unwrap();
    assert_eq!(i32::from(got.l_type), libc::F_WRLCK);
    sys::fcntl_lock(&a, libc::F_OFD_SETLK, libc::F_UNLCK).unwrap();
    sys::fcntl_lock(&b, libc::F_SETLK, libc::F_WRLCK).unwrap();
});

/// st_ino of every path in the merged view (and checks d_ino == st_ino on the way).
fn inos(root: &Path) -> BTreeMap<std::path::PathBuf, (u64, u64)> {
    let snap = tree_snapshot(root);
    for (p, e) in &snap {
        if let Some(d) = e.d_ino {
            assert_eq!(d, e.ino, "d_ino == st_ino for {}", p.display());
        }
    }
    snap.into_iter()
        .map(|(p, e)| (p, (e.ino, e.nlink)))
        .collect()
}

both!(inode_numbers_stable_and_unique, |fs| {
    let l = Layers::new(3);
    for i in 1..=3 {
        write(l.l(i).join(format!("only{i}")), "o");
        write(l.l(i).join("d/same"), &format!("{i}"));
        write(l.l(i).join(format!("d/sub{i}/f")), "f");
    }
    fs::hard_link(l.l(2).join("only2"), l.l(2).join("d/only2-link")).unwrap();
    let m = mount(fs, &l, &[]);
    let first = inos(&l.mnt);
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for (ino, nlink) in first.values() {
        *seen.entry(*ino).or_default() += 1;
        assert!(
            seen[ino] <= (*nlink).max(1),
            "st_ino {ino} shared by unrelated files: {first:#?}"
        );
    }
    assert_eq!(
        first[Path::new("only2")].0,
        first[Path::new("d/only2-link")].0,
        "lower hard links"
    );
    write(l.m("d/same"), "written"); // copy-up keeps st_ino
    drop(m);
    let _m = mount(fs, &l, &[]);
    let second = inos(&l.mnt);
    assert_eq!(first, second, "st_ino stable across copy-up and remount");
    let ino = second[Path::new("only3")].0;
    fs::rename(l.m("only3"), l.m("d/moved")).unwrap();
    assert_eq!(
        fs::metadata(l.m("d/moved")).unwrap().ino(),
        ino,
        "stable across rename"
    );
    let e = fs::read_dir(l.m("d"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_name() == "moved")
        .unwrap();
    assert_eq!(e.ino(), ino);
});

both!(hard_links_to_lower_files, |fs| {
    let l = Layers::new(2);
    write(l.l(2).join("a"), "A");
    write(l.l(2).join("p"), "P");
    fs::hard_link(l.l(2).join("p"), l.l(2).join("q")).unwrap();
    let _m = mount(fs, &l, &[]);
    fs::hard_link(l.m("a"), l.m("a-link")).expect("link(2) to a lower file");
    let (x, y) = (
        fs::metadata(l.m("a")).unwrap(),
        fs::metadata(l.m("a-link")).unwrap(),
    );
    assert_eq!((x.ino(), x.nlink(), y.nlink()), (y.ino(), 2, 2));
    write(l.m("a-link"), "changed");
    assert_eq!(read(l.m("a")), "changed");
    // Names sharing a lower inode keep sharing it after copy-up (kernel index=on).
    write(l.m("p"), "P2");
    assert_eq!(read(l.m("q")), "P2");
    assert_eq!(
        fs::metadata(l.m("p")).unwrap().ino(),
        fs::metadata(l.m("q")).unwrap().ino()
    );
    assert_eq!(fs::metadata(l.m("q")).unwrap().nlink(), 2);
});

both!(name_too_long, |fs| {
    let l = Layers::new(1);
    let _m = mount(fs, &l, &[]);
    let long = "n".repeat(256);
    assert_eq!(errno(File::create(l.m(&long))), libc::ENAMETOOLONG);
    assert_eq!(errno(fs::symlink_metadata(l.m(&long))), libc::ENAMETOOLONG);
    assert_eq!(errno(fs::create_dir(l.m(&long))), libc::ENAMETOOLONG);
    File::create(l.m(&"n".repeat(255))).expect("255 bytes is fine");
});

both!(deleted_but_open_file_works, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("lower"), "lower data");
    let _m = mount(fs, &l, &[]);
    write(l.m("upper"), "upper data");
    for name in ["lower", "upper"] {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(l.m(name))
            .unwrap();
        fs::remove_file(l.m(name)).unwrap();
        assert_eq!(errno(fs::symlink_metadata(l.m(name))), libc::ENOENT);
        assert_eq!(
            f.metadata().unwrap().nlink(),
            0,
            "{name}: fstat after unlink"
        );
        f.set_len(5).unwrap();
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .unwrap();
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(b"+tail").unwrap();
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, format!("{}+tail", &format!("{name} data")[..5]));
        let md = f.metadata().unwrap();
        assert_eq!((md.len(), md.mode() & 0o777), (10, 0o600));
    }
});

both!(mknod_whiteout_device_is_eperm, |fs| {
    let l = Layers::new(1);
    let _m = mount(fs, &l, &[]);
    assert_eq!(
        errno(sys::mknod(&l.m("wh"), libc::S_IFCHR | 0o600, 0, 0)),
        libc::EPERM
    );
    enoent(&l.m("wh"));
});

both!(unsupported_ioctl_is_enotty, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    let _m = mount(fs, &l, &[]);
    let f = File::open(l.m("f")).unwrap();
    assert_eq!(errno(sys::ioctl_none(&f, libc::TCGETS)), libc::ENOTTY);
});

both!(umask_applies_to_creates, |fs| {
    let l = Layers::new(1);
    let _m = mount(fs, &l, &[]);
    let old = sys::umask(0o027);
    let r = std::panic::catch_unwind(|| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(l.m("f"))
            .unwrap();
        fs::create_dir(l.m("d")).unwrap();
        sys::mkfifo(&l.m("p"), 0o666).unwrap();
    });
    sys::umask(old);
    r.unwrap();
    for (p, m) in [("f", 0o640), ("d", 0o750), ("p", 0o640)] {
        assert_eq!(
            fs::symlink_metadata(l.m(p)).unwrap().mode() & 0o777,
            m,
            "{p}"
        );
    }
});

fn enoent(p: &Path) {
    assert_eq!(
        errno(fs::symlink_metadata(p)),
        libc::ENOENT,
        "{}",
        p.display()
    );
}

// pjdfstest link::remove_link: removing names of a file with three names, the first one
// first, must not lose track of the object.
both!(remove_three_hard_links, |fs| {
    let l = Layers::new(1);
    fs::create_dir(l.l(1).join("d")).unwrap();
    let _m = mount(fs, &l, &[]);
    write(l.m("d/f"), "data");
    fs::hard_link(l.m("d/f"), l.m("d/a")).unwrap();
    fs::hard_link(l.m("d/a"), l.m("d/b")).unwrap();
    fs::remove_file(l.m("d/f")).unwrap();
    fs::remove_file(l.m("d/b")).expect("unlink of the third name");
    assert!(!l.m("d/b").exists());
    assert_eq!(fs::metadata(l.m("d/a")).unwrap().nlink(), 1);
    assert_eq!(read(l.m("d/a")), "data");
});

// POSIX ACLs: a default ACL on the parent is inherited and replaces the umask; an access ACL
// set through the mount reads back.
both!(posix_acls_inherited_and_kept, |fs| {
    let l = Layers::new(1);
    fs::create_dir(l.l(1).join("d")).unwrap();
    let _m = mount(fs, &l, &[]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let d = l.m("d");
    run(&["setfacl", "-d", "-m", "u:65534:rwx", d.to_str().unwrap()]);
    let old = sys::umask(0o077);
    let r = std::panic::catch_unwind(|| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(l.m("d/f"))
            .unwrap();
    });
    sys::umask(old);
    r.unwrap();
    let acl = run(&["getfacl", "-cn", l.m("d/f").to_str().unwrap()]);
    assert!(
        acl.contains("user:65534:rwx"),
        "inherited entry missing:\n{acl}"
    );
    assert!(
        acl.contains("mask::rw-"),
        "umask must not apply under a default ACL:\n{acl}"
    );
    write(l.m("g"), "x");
    run(&["setfacl", "-m", "u:65534:r", l.m("g").to_str().unwrap()]);
    let acl = run(&["getfacl", "-cn", l.m("g").to_str().unwrap()]);
    assert!(acl.contains("user:65534:r--"), "{acl}");
});

// A minimal default ACL (no named entries, no mask) shapes new modes by itself: the
// requested mode masked by it, with umask 0 (fstests generic/099). unionrs made the object as
// asked, then its chmod after the chown put the requested mode back.
both!(minimal_default_acl_masks_new_modes, |fs| {
    let l = Layers::new(1);
    let _m = mount(fs, &l, &[]);
    fs::create_dir(l.m("d")).unwrap();
    let st = std::process::Command::new("setfacl")
        .args(["-d", "-m", "u::r-x,g::r--,o::---"])
        .arg(l.m("d"))
        .status()
        .unwrap();
    assert!(st.success());
    let old = sys::umask(0);
    let r = std::panic::catch_unwind(|| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(l.m("d/f"))
            .unwrap();
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o777)
            .create(l.m("d/sub"))
            .unwrap();
    });
    sys::umask(old);
    r.unwrap();
    let mode = |p: &str| fs::metadata(l.m(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("d/f"), 0o440, "{fs:?}: file");
    assert_eq!(mode("d/sub"), 0o540, "{fs:?}: directory");
});

// futimens on a deleted-but-open file works through its fd (the kernel sends no handle).
both!(deleted_open_file_set_times, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "lower");
    let _m = mount(fs, &l, &[]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(l.m("f"))
        .unwrap();
    fs::remove_file(l.m("f")).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(2000, 456);
    f.set_times(fs::FileTimes::new().set_modified(when))
        .expect("futimens on a deleted file");
    let md = f.metadata().unwrap();
    assert_eq!(md.modified().unwrap(), when);
    assert_eq!(md.nlink(), 0);
});

// Root creating in a set-gid directory that exists only in the upper: every new object gets
// the directory's group, a new directory also the set-gid bit, and a file exactly the mode
// asked for (unionrs skips its own chown/chmod there: the kernel already made them so).
both!(root_creates_in_setgid_upper_dir, |fs| {
    let l = Layers::new(1);
    let _m = mount(fs, &l, &[]);
    let d = l.m("sg");
    fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, None, Some(65534)).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o2775)).unwrap();
    let old = sys::umask(0);
    let r = std::panic::catch_unwind(|| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o4751)
            .open(d.join("f"))
            .unwrap();
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o750)
            .create(d.join("sub"))
            .unwrap();
        std::os::unix::fs::symlink("f", d.join("l")).unwrap();
    });
    sys::umask(old);
    r.unwrap();
    let f = fs::metadata(d.join("f")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (0, 65534, 0o4751));
    let s = fs::metadata(d.join("sub")).unwrap();
    assert_eq!((s.uid(), s.gid(), s.mode() & 0o7777), (0, 65534, 0o2750));
    let ln = fs::symlink_metadata(d.join("l")).unwrap();
    assert_eq!((ln.uid(), ln.gid()), (0, 65534));
});

// A directory made in a merged directory is marked opaque in the upper, as the kernel
// marks it (an optimization of its lookups that is also the on-disk format): mounted again
// over lowers that hold the same path, it hides them. One made in an upper-only directory
// is not marked.
both!(mkdir_in_a_merged_dir_is_opaque_on_disk, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("a/f"), "f");
    {
        let _m = mount(fs, &l, &[]);
        for d in ["n", "a/n", "n/x"] {
            fs::create_dir(l.m(d)).unwrap();
        }
    }
    let opaque = |p: &str| getxattr(l.upper().join(p), "trusted.overlay.opaque");
    assert_eq!(opaque("n").as_deref(), Some("y"));
    assert_eq!(opaque("a/n").as_deref(), Some("y"));
    assert_eq!(opaque("n/x"), None, "made in an upper-only directory");
    // The same upper over a lower that holds n/old and a/n/old: both stay hidden.
    write(l.l(1).join("n/old"), "old");
    write(l.l(1).join("a/n/old"), "old");
    let _m = mount(fs, &l, &[]);
    assert_eq!(names(l.m("n")), ["x"]);
    assert!(names(l.m("a/n")).is_empty());
});

// A whiteout left in an upper directory that no lower layer has: the name reads as absent,
// and a file and a directory can be made over whiteouts there. (Listings of such a
// directory differ: the kernel lists the whiteouts themselves, unionrs hides them.)
both!(create_over_whiteout_in_upper_only_dir, |fs| {
    let l = Layers::new(1);
    let u = l.upper().join("u");
    fs::create_dir(&u).unwrap();
    sys::mknod(&u.join("x"), libc::S_IFCHR, 0, 0).unwrap();
    sys::mknod(&u.join("y"), libc::S_IFCHR, 0, 0).unwrap();
    let _m = mount(fs, &l, &[]);
    assert!(fs::symlink_metadata(l.m("u/x")).is_err());
    write(l.m("u/x"), "new");
    assert_eq!(read(l.m("u/x")), "new");
    fs::create_dir(l.m("u/y")).unwrap();
    write(l.m("u/y/z"), "z");
    assert_eq!(names(l.m("u")), vec!["x", "y"]);
    assert_eq!(names(l.m("u/y")), vec!["z"]);
    // The whiteouts were replaced, and the directory made over one is opaque.
    for n in ["x", "y"] {
        let t = fs::symlink_metadata(u.join(n)).unwrap().file_type();
        assert!(!t.is_char_device(), "{n}: whiteout left in the upper");
    }
    assert_eq!(
        getxattr(u.join("y"), "trusted.overlay.opaque").as_deref(),
        Some("y")
    );
    // Anything else at the name stays in the way of an exclusive create and of mkdir.
    sys::mknod(&l.m("u/dev"), libc::S_IFCHR | 0o600, 1, 3).unwrap();
    for n in ["x", "y", "dev"] {
        let excl = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(l.m(&format!("u/{n}")));
        assert_eq!(errno(excl), libc::EEXIST, "create {n}");
        assert_eq!(
            errno(fs::create_dir(l.m(&format!("u/{n}")))),
            libc::EEXIST,
            "mkdir {n}"
        );
    }
    assert_eq!(read(l.m("u/x")), "new");
});

// A running program cannot be written or truncated (ETXTBSY), and a refused truncating open
// leaves it whole. O_RDONLY|O_TRUNC is the case the kernel checks only after the filesystem
// opened the file (pjdfstest open::etxtbsy): truncating it there killed the program (SIGBUS)
// and, raced by its exit, the open then succeeded on an emptied file. Kernel overlayfs
// copies a lower program up emptied before its own check, so after the refused open the
// merged file reads 0 bytes there; unionrs refuses before the copy-up and keeps it whole.
both!(running_program_is_not_truncated, |fs| {
    let l = Layers::new(1);
    let program = fs::read("/bin/sleep").unwrap();
    fs::write(l.l(1).join("lower-sleep"), &program).unwrap();
    fs::set_permissions(
        l.l(1).join("lower-sleep"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let _m = mount(fs, &l, &[]);
    fs::write(l.m("upper-sleep"), &program).unwrap();
    fs::set_permissions(l.m("upper-sleep"), fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["upper-sleep", "lower-sleep"] {
        let path = l.m(name);
        let mut running = std::process::Command::new(&path).arg("30").spawn().unwrap();
        let open = |flags: i32| {
            let acc = flags & libc::O_ACCMODE;
            OpenOptions::new()
                .read(acc != libc::O_WRONLY)
                .write(acc != libc::O_RDONLY)
                .custom_flags(flags & !libc::O_ACCMODE)
                .open(&path)
        };
        for flags in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_WRONLY | libc::O_TRUNC,
            libc::O_RDONLY | libc::O_TRUNC,
        ] {
            assert_eq!(
                errno(open(flags)),
                libc::ETXTBSY,
                "{name}: open flags {flags:#o}"
            );
        }
        assert_eq!(
            running.try_wait().unwrap(),
            None,
            "{name}: the program died"
        );
        let kernel_empties_lower = fs == Fs::KernelOverlay && name == "lower-sleep";
        if !kernel_empties_lower {
            assert!(
                fs::read(&path).unwrap() == program,
                "{name}: content changed"
            );
        }
        running.kill().unwrap();
        running.wait().unwrap();
    }
});

// A lower file held open by a reader, then copied up by chmod: a new open reads the upper
// copy with the new mode, and the reader goes on. (unionrs: the reader's inode reads the
// lower file through FUSE passthrough and cannot switch; the new open is answered ESTALE,
// the kernel looks the name up again and gets a new inode for the upper copy.)
both!(
    reopen_after_copy_up_while_a_reader_holds_the_lower_file,
    |fs| {
        let l = Layers::new(1);
        write(l.l(1).join("f"), "lower data\n");
        let _m = mount(fs, &l, &[]);
        let mut reader = File::open(l.m("f")).unwrap();
        let mut first = [0u8; 6];
        reader.read_exact(&mut first).unwrap();
        fs::set_permissions(l.m("f"), fs::Permissions::from_mode(0o600)).unwrap();
        for _ in 0..2 {
            let again = File::open(l.m("f")).unwrap();
            assert_eq!(again.metadata().unwrap().mode() & 0o7777, 0o600);
            assert_eq!(fs::read_to_string(l.m("f")).unwrap(), "lower data\n");
        }
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "data\n");
        OpenOptions::new()
            .append(true)
            .open(l.m("f"))
            .unwrap()
            .write_all(b"more\n")
            .unwrap();
        assert_eq!(read(l.m("f")), "lower data\nmore\n");
        drop(reader);
        assert_eq!(read(l.m("f")), "lower data\nmore\n");
    }
);

/// Kernel overlayfs keeps a file's st_ino through a copy-up made while a reader holds it, and
/// so does unionrs: there the reader's inode keeps the lower file as its passthrough backing,
/// so the object moves to a new node id (docs/architecture.md section 10), but st_ino is the
/// object's number, not the node id (section 7): the reader and the new open show one number.
#[test]
fn st_ino_through_a_copy_up_while_a_reader_holds_the_file() {
    with_a_reader_of_a_lower_file(|fs, l, reader| {
        let before = reader.metadata().unwrap().ino();
        fs::set_permissions(l.m("f"), fs::Permissions::from_mode(0o600)).unwrap();
        let again = File::open(l.m("f")).unwrap();
        let after = again.metadata().unwrap().ino();
        assert_eq!(
            reader.metadata().unwrap().ino(),
            before,
            "{fs:?}: the reader's st_ino"
        );
        assert_eq!(
            fs::metadata(l.m("f")).unwrap().ino(),
            after,
            "{fs:?}: stat by name"
        );
        assert_eq!(after, before, "{fs:?}: st_ino kept through the copy-up");
    });
}

/// On kernel overlayfs, then on unionrs: lower file `f`, mounted, held open for reading.
fn with_a_reader_of_a_lower_file(check: impl Fn(Fs, &Layers, &File)) {
    let _s = serial();
    for fs in [Fs::KernelOverlay, Fs::Unionrs] {
        let l = Layers::new(1);
        write(l.l(1).join("f"), "lower\n");
        let m = mount(fs, &l, &[]);
        let reader = File::open(l.m("f")).unwrap();
        check(fs, &l, &reader);
        drop((reader, m));
    }
}

/// Kernel overlayfs keeps one inode through a copy-up, so a lock taken through an fd opened
/// before it conflicts with one taken through an fd opened after it. unionrs differs,
/// deliberately (docs/architecture.md section 10, "Costs"): a lower file held open by a reader
/// moves to a new inode when it is copied up and opened again (FUSE passthrough allows one
/// backing per inode), and the kernel keeps locks per inode, so the two do not conflict
/// while the earlier fd stays open. Each side is held to what it does.
#[test]
fn lock_across_a_copy_up_while_a_reader_holds_the_file() {
    with_a_reader_of_a_lower_file(|fs, l, reader| {
        sys::flock(reader, libc::LOCK_EX | libc::LOCK_NB).unwrap();
        let writer = OpenOptions::new().append(true).open(l.m("f")).unwrap();
        let second = sys::flock(&writer, libc::LOCK_EX | libc::LOCK_NB);
        match fs {
            Fs::KernelOverlay => assert_eq!(sys::errno(&second), libc::EWOULDBLOCK, "kernel"),
            Fs::Unionrs => assert_eq!(
                sys::errno(&second),
                0,
                "unionrs: the locks now conflict: docs/architecture.md section 10 says they \
                 do not; update the document (and this test)"
            ),
        }
    });
}
