//! Upper directory -> OCI layer tar: conversion of overlay whiteouts and opaque dirs,
//! xattr filtering, names as bytes, determinism, errors and the atomic CLI output.
//!
//! Builds upper dirs by hand as root (mknod, trusted.* xattrs), like a kernel overlay upper.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use unionrs::image::layer_export::{ExportError, LayerInfo, export_upper, run_export_layer};

fn run(cmd: &str, args: &[&OsStr]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setfattr(path: &Path, name: &str, value: &str) {
    run(
        "setfattr",
        &[
            OsStr::new("-h"),
            OsStr::new("-n"),
            OsStr::new(name),
            OsStr::new("-v"),
            OsStr::new(value),
            path.as_os_str(),
        ],
    );
}

fn mknod(path: &Path, kind: &str, major: u32, minor: u32) {
    run(
        "mknod",
        &[
            path.as_os_str(),
            OsStr::new(kind),
            OsStr::new(&major.to_string()),
            OsStr::new(&minor.to_string()),
        ],
    );
}

/// Sets mtime (seconds) without following symlinks.
fn set_mtime(path: &Path, secs: i64) {
    run(
        "touch",
        &[
            OsStr::new("-h"),
            OsStr::new("-d"),
            OsStr::new(&format!("@{secs}")),
            path.as_os_str(),
        ],
    );
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn long_utf8_dir() -> String {
    "ü".repeat(60) // 120 bytes
}

fn long_utf8_file() -> String {
    "é".repeat(70) // 140 bytes; the whole path is > 255 bytes
}

fn long_non_utf8() -> Vec<u8> {
    let mut v = b"n".to_vec();
    v.extend(std::iter::repeat_n(0xfe_u8, 150));
    v
}

/// An upper dir with every kind of entry the export has to handle. Times are fixed last,
/// children before parents, so directory mtimes are known.
fn build_upper(root: &Path) -> PathBuf {
    let u = root.join("upper");
    fs::create_dir(&u).unwrap();

    fs::write(u.join("a.txt"), b"hello\n").unwrap();
    chmod(&u.join("a.txt"), 0o640);
    setfattr(&u.join("a.txt"), "user.mime", "text/plain");
    setfattr(&u.join("a.txt"), "trusted.overlay.origin", "0x00");
    setfattr(&u.join("a.txt"), "user.overlay.impure", "y");
    setfattr(&u.join("a.txt"), "trusted.unionrs.note", "x");
    setfattr(&u.join("a.txt"), "user.unionrs.note", "x");
    setfattr(&u.join("a.txt"), "trusted.keep", "yes");

    fs::create_dir(u.join("bin")).unwrap();
    fs::write(u.join("bin/su"), b"#!/bin/sh\n").unwrap();
    // chown clears setuid, so it comes first.
    std::os::unix::fs::chown(u.join("bin/su"), Some(1234), Some(5678)).unwrap();
    chmod(&u.join("bin/su"), 0o4755);
    fs::create_dir(u.join("bin/tmp")).unwrap();
    chmod(&u.join("bin/tmp"), 0o1777);

    // Kernel-style whiteouts, two of them sharing one inode (kernel >= 5.8 does that).
    mknod(&u.join("gone"), "c", 0, 0);
    fs::hard_link(u.join("gone"), u.join("gone2")).unwrap();
    // An AUFS/OCI-style whiteout file passes through.
    fs::write(u.join(".wh.old"), b"").unwrap();

    // Opaque dir (kernel form) with a child.
    fs::create_dir(u.join("opq")).unwrap();
    setfattr(&u.join("opq"), "trusted.overlay.opaque", "y");
    fs::write(u.join("opq/kept"), b"k").unwrap();
    // Opaque dir (rootless form), empty.
    fs::create_dir(u.join("uopq")).unwrap();
    setfattr(&u.join("uopq"), "user.overlay.opaque", "y");
    // opaque=x only says "holds xattr whiteouts": not opaque. Its child is such a whiteout.
    fs::create_dir(u.join("xwh")).unwrap();
    setfattr(&u.join("xwh"), "trusted.overlay.opaque", "x");
    fs::write(u.join("xwh/del"), b"").unwrap();
    setfattr(&u.join("xwh/del"), "user.overlay.whiteout", "");
    fs::write(u.join("xwh/tdel"), b"").unwrap();
    setfattr(&u.join("xwh/tdel"), "trusted.overlay.whiteout", "");

    std::os::unix::fs::symlink("a.txt", u.join("link")).unwrap();
    std::os::unix::fs::symlink("../x//./y/", u.join("odd-link")).unwrap();
    fs::write(u.join("h1"), b"shared").unwrap();
    fs::hard_link(u.join("h1"), u.join("h2")).unwrap();
    run("mkfifo", &[u.join("pipe").as_os_str()]);
    mknod(&u.join("null"), "c", 1, 3);
    mknod(&u.join("blk"), "b", 7, 200);
    let _sock = std::os::unix::net::UnixListener::bind(u.join("sock")).unwrap();
    fs::write(u.join("back\\slash"), b"").unwrap();

    let long_dir = u.join(long_utf8_dir());
    fs::create_dir(&long_dir).unwrap();
    fs::write(long_dir.join(long_utf8_file()), b"long").unwrap();
    fs::write(u.join(OsStr::from_bytes(b"bad\xff")), b"latin1").unwrap();
    fs::write(u.join(OsStr::from_bytes(&long_non_utf8())), b"").unwrap();

    // Fixed times, deepest first.
    for (p, t) in [
        ("a.txt", 1_600_000_001),
        ("bin/su", 1_600_000_002),
        ("gone", 1_600_000_003),
        ("opq/kept", 1_600_000_004),
        ("xwh/del", 1_600_000_005),
        ("link", 1_600_000_006),
        ("h1", 1_600_000_007),
        ("pipe", 1_600_000_008),
    ] {
        set_mtime(&u.join(p), t);
    }
    set_mtime(&long_dir.join(long_utf8_file()), 1_600_000_009);
    for (p, t) in [
        ("bin/tmp", 1_600_000_010),
        ("bin", 1_600_000_011),
        ("opq", 1_600_000_012),
        ("uopq", 1_600_000_013),
        ("xwh", 1_600_000_014),
    ] {
        set_mtime(&u.join(p), t);
    }
    set_mtime(&long_dir, 1_600_000_015);
    u
}

#[derive(Debug)]
struct Ent {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    dev: Option<(u32, u32)>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    data: Vec<u8>,
}

/// Reads a tar back with the tar crate: (path bytes, entry) in archive order.
fn read_back(tar_bytes: &[u8]) -> Vec<(Vec<u8>, Ent)> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                let r = r.unwrap();
                if let Some(name) = r.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.insert(name.to_vec(), r.value_bytes().to_vec());
                }
            }
        }
        let h = e.header().clone();
        let path = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let kind = h.entry_type();
        let dev = if kind.is_character_special() || kind.is_block_special() {
            Some((
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            ))
        } else {
            None
        };
        out.push((
            path,
            Ent {
                kind,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                link,
                dev,
                xattrs,
                data,
            },
        ));
    }
    out
}

fn export_to_vec(upper: &Path) -> (Vec<u8>, LayerInfo) {
    let mut buf = Vec::new();
    let info = export_upper(upper, &mut buf).unwrap();
    (buf, info)
}

fn find<'a>(ents: &'a [(Vec<u8>, Ent)], path: &[u8]) -> &'a Ent {
    &ents
        .iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no entry {}", String::from_utf8_lossy(path)))
        .1
}

#[test]
fn converts_an_upper_into_an_oci_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = build_upper(tmp.path());
    let (bytes, info) = export_to_vec(&upper);
    assert_eq!(info.size, bytes.len() as u64);
    let ents = read_back(&bytes);
    assert_eq!(info.entries, ents.len() as u64);

    // Order: sorted by archive byte name at every level, parents before children,
    // opaque markers right after their directory.
    let ld = long_utf8_dir();
    let lf = format!("{ld}/{}", long_utf8_file());
    let names: Vec<Vec<u8>> = ents.iter().map(|(p, _)| p.clone()).collect();
    let mut want: Vec<Vec<u8>> = [".wh.gone", ".wh.gone2", ".wh.old", "a.txt", "back\\slash"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    want.push(b"bad\xff".to_vec());
    want.extend(
        [
            "bin/", "bin/su", "bin/tmp/", "blk", "h1", "h2", "link", "null",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec()),
    );
    want.push(long_non_utf8());
    want.extend(
        [
            "odd-link",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/kept",
            "pipe",
            "uopq/",
            "uopq/.wh..wh..opq",
            "xwh/",
            "xwh/.wh.del",
            "xwh/.wh.tdel",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec()),
    );
    want.push(format!("{ld}/").into_bytes());
    want.push(lf.clone().into_bytes());
    assert_eq!(
        names,
        want,
        "got {:?}",
        names
            .iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect::<Vec<_>>()
    );

    // Whiteouts: empty regular files, mode 0, 0:0, the whiteout's mtime.
    let wh = find(&ents, b".wh.gone");
    assert_eq!(wh.kind, tar::EntryType::Regular);
    assert_eq!(
        (wh.mode, wh.uid, wh.gid, wh.mtime),
        (0, 0, 0, 1_600_000_003)
    );
    assert!(wh.data.is_empty() && wh.xattrs.is_empty());
    // Shared-inode whiteouts are not turned into hardlinks.
    assert_eq!(find(&ents, b".wh.gone2").kind, tar::EntryType::Regular);
    let xw = find(&ents, b"xwh/.wh.del");
    assert_eq!((xw.mode, xw.mtime), (0, 1_600_000_005));
    assert!(xw.xattrs.is_empty());
    // opaque=x dir keeps no overlay xattr and gets no marker (checked by the order above).
    assert!(find(&ents, b"xwh/").xattrs.is_empty());

    // Opaque markers: empty, mode 0, 0:0, the directory's mtime.
    let m = find(&ents, b"opq/.wh..wh..opq");
    assert_eq!(
        (m.kind, m.mode, m.uid, m.gid, m.mtime),
        (tar::EntryType::Regular, 0, 0, 0, 1_600_000_012)
    );
    assert!(find(&ents, b"opq/").xattrs.is_empty());

    // Regular file: data, mode, mtime, xattrs minus overlay-private ones.
    let a = find(&ents, b"a.txt");
    assert_eq!(a.data, b"hello\n");
    assert_eq!((a.mode, a.mtime), (0o640, 1_600_000_001));
    let want_x: BTreeMap<Vec<u8>, Vec<u8>> = [
        (b"trusted.keep".to_vec(), b"yes".to_vec()),
        (b"user.mime".to_vec(), b"text/plain".to_vec()),
    ]
    .into_iter()
    .collect();
    assert_eq!(a.xattrs, want_x);

    let su = find(&ents, b"bin/su");
    assert_eq!((su.mode, su.uid, su.gid), (0o4755, 1234, 5678));
    let t = find(&ents, b"bin/tmp/");
    assert_eq!(
        (t.kind, t.mode, t.mtime),
        (tar::EntryType::Directory, 0o1777, 1_600_000_010)
    );
    assert_eq!(find(&ents, b"bin/").mtime, 1_600_000_011);

    let l = find(&ents, b"link");
    assert_eq!(l.kind, tar::EntryType::Symlink);
    assert_eq!(l.link.as_deref(), Some(&b"a.txt"[..]));
    // Symlink targets are bytes, kept as they are.
    assert_eq!(
        find(&ents, b"odd-link").link.as_deref(),
        Some(&b"../x//./y/"[..])
    );

    let h1 = find(&ents, b"h1");
    assert_eq!(
        (h1.kind, h1.data.as_slice()),
        (tar::EntryType::Regular, &b"shared"[..])
    );
    let h2 = find(&ents, b"h2");
    assert_eq!(h2.kind, tar::EntryType::Link);
    assert_eq!(h2.link.as_deref(), Some(&b"h1"[..]));
    assert!(h2.data.is_empty());

    assert_eq!(find(&ents, b"pipe").kind, tar::EntryType::Fifo);
    let n = find(&ents, b"null");
    assert_eq!((n.kind, n.dev), (tar::EntryType::Char, Some((1, 3))));
    let b = find(&ents, b"blk");
    assert_eq!((b.kind, b.dev), (tar::EntryType::Block, Some((7, 200))));
    assert!(!names.iter().any(|n| n == b"sock"));

    assert_eq!(find(&ents, lf.as_bytes()).data, b"long");
    assert_eq!(find(&ents, b"bad\xff").data, b"latin1");
}

#[test]
fn uses_posix_ustar_and_pax_headers_only() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = build_upper(tmp.path());
    let (bytes, _) = export_to_vec(&upper);
    let mut off = 0;
    let mut types = Vec::new();
    while off + 512 <= bytes.len() {
        let h = &bytes[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        assert_eq!(
            &h[257..265],
            b"ustar\x0000",
            "not a POSIX ustar header at {off}"
        );
        assert_eq!(&h[265..329], &[0u8; 64][..], "uname/gname must be empty");
        let size = u64::from_str_radix(
            std::str::from_utf8(&h[124..135])
                .unwrap()
                .trim_matches(char::from(0)),
            8,
        )
        .unwrap();
        types.push(h[156]);
        off += 512 + size.div_ceil(512) as usize * 512;
    }
    assert!(
        types.contains(&b'x'),
        "long names and xattrs need pax headers"
    );
    assert!(
        !types.contains(&b'L') && !types.contains(&b'K'),
        "no GNU long names"
    );
    // Two zero blocks end the archive.
    assert!(bytes[off..].iter().all(|&b| b == 0) && bytes.len() - off >= 1024);
}

#[test]
fn gnu_tar_lists_and_extracts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = build_upper(tmp.path());
    let (bytes, _) = export_to_vec(&upper);
    let tar_path = tmp.path().join("layer.tar");
    fs::write(&tar_path, &bytes).unwrap();

    let out = Command::new("tar")
        .arg("tvf")
        .arg(&tar_path)
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Column widths are tar's business: compare with runs of spaces collapsed.
    let squash = |s: &str| {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let listing = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(squash)
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        "-rwsr-xr-x 1234/5678 10 2020-09-13 12:26 bin/su",
        "drwxrwxrwt 0/0 0 2020-09-13 12:26 bin/tmp/",
        "---------- 0/0 0 2020-09-13 12:26 .wh.gone",
        "---------- 0/0 0 2020-09-13 12:26 opq/.wh..wh..opq",
        "hrw-r--r-- 0/0 0 2020-09-13 12:26 h2 link to h1",
        "lrwxrwxrwx 0/0 0 2020-09-13 12:26 link -> a.txt",
        "prw-r--r-- 0/0 0 2020-09-13 12:26 pipe",
        "crw-r--r-- 0/0 1,3 ",
        "brw-r--r-- 0/0 7,200 ",
        " bad\\377\n",
        &format!("{}/{}", long_utf8_dir(), long_utf8_file()),
    ] {
        assert!(listing.contains(want), "missing {want:?} in\n{listing}");
    }
    assert!(!listing.contains("PaxHeader"), "{listing}");

    // Extract with xattrs and compare a few things with the source.
    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(x.join("a.txt")).unwrap(), b"hello\n");
    assert_eq!(
        fs::read(x.join(OsStr::from_bytes(b"bad\xff"))).unwrap(),
        b"latin1"
    );
    assert!(x.join(OsStr::from_bytes(&long_non_utf8())).exists());
    assert_eq!(
        fs::read(x.join(long_utf8_dir()).join(long_utf8_file())).unwrap(),
        b"long"
    );
    let g = Command::new("getfattr")
        .args(["-d", "-m", "-", "--absolute-names"])
        .arg(x.join("a.txt"))
        .output()
        .unwrap();
    let g = String::from_utf8_lossy(&g.stdout);
    assert!(g.contains("user.mime=\"text/plain\""), "{g}");
    assert!(g.contains("trusted.keep=\"yes\""), "{g}");
    assert!(!g.contains("overlay") && !g.contains("unionrs"), "{g}");
}

#[test]
fn same_upper_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = build_upper(tmp.path());
    let (one, i1) = export_to_vec(&upper);
    let (two, i2) = export_to_vec(&upper);
    assert_eq!(one, two);
    assert_eq!(i1, i2);
    let want = format!("sha256:{:x}", Sha256::digest(&one));
    assert_eq!(i1.diff_id.as_str(), want);

    // A copy with other inode numbers, atimes and ctimes gives the same layer too.
    let copy = tmp.path().join("copy");
    run(
        "cp",
        &[OsStr::new("-a"), upper.as_os_str(), copy.as_os_str()],
    );
    let (three, i3) = export_to_vec(&copy);
    assert_eq!(i3.diff_id, i1.diff_id);
    assert_eq!(three, one);
}

#[test]
fn renamed_lower_directory_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let u = tmp.path().join("upper");
    fs::create_dir_all(u.join("d/moved")).unwrap();
    setfattr(&u.join("d/moved"), "trusted.overlay.redirect", "/old");
    let err = export_upper(&u, Vec::new()).unwrap_err();
    match &err {
        ExportError::Redirect(p) => assert_eq!(p, &u.join("d/moved")),
        other => panic!("wrong error {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "upper dir {} is a renamed lower directory (trusted.overlay.redirect); \
             exporting it needs the lower layers",
            u.join("d/moved").display()
        )
    );
}

#[test]
fn metacopy_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let u = tmp.path().join("upper");
    fs::create_dir(&u).unwrap();
    fs::write(u.join("f"), b"").unwrap();
    setfattr(&u.join("f"), "trusted.overlay.metacopy", "");
    let err = export_upper(&u, Vec::new()).unwrap_err();
    assert!(
        matches!(&err, ExportError::Metacopy(p) if p == &u.join("f")),
        "{err}"
    );
    assert!(err.to_string().contains("metacopy"));
}

#[test]
fn not_a_directory_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f");
    fs::write(&f, b"").unwrap();
    let err = export_upper(&f, Vec::new()).unwrap_err();
    assert!(matches!(err, ExportError::NotADirectory(_)), "{err}");
    let err = export_upper(&tmp.path().join("missing"), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn empty_upper_is_an_empty_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let (bytes, info) = export_to_vec(tmp.path());
    assert_eq!(bytes, vec![0u8; 1024]);
    assert_eq!(info.entries, 0);
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn cli_writes_atomically_and_cleans_up_on_error() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = build_upper(tmp.path());
    let outdir = tmp.path().join("out");
    fs::create_dir(&outdir).unwrap();

    let out = outdir.join("layer.tar");
    run_export_layer(&upper, &out).unwrap();
    assert_eq!(leftovers(&outdir), ["layer.tar"]);
    let (bytes, info) = export_to_vec(&upper);
    assert_eq!(fs::read(&out).unwrap(), bytes);
    assert_eq!(
        format!("sha256:{:x}", Sha256::digest(&bytes)),
        info.diff_id.as_str()
    );

    // A failing export leaves neither OUT nor its temporary file.
    let bad = tmp.path().join("bad");
    fs::create_dir_all(bad.join("a")).unwrap();
    fs::write(bad.join("a/big"), vec![7u8; 200_000]).unwrap();
    fs::create_dir(bad.join("z")).unwrap();
    setfattr(&bad.join("z"), "trusted.overlay.redirect", "/y");
    let out2 = outdir.join("bad.tar");
    let err = run_export_layer(&bad, &out2).unwrap_err();
    assert!(err.contains("renamed lower directory"), "{err}");
    assert!(!err.contains('\n'));
    assert_eq!(leftovers(&outdir), ["layer.tar"]);

    // A temporary file of the same name that someone else made is neither used nor removed.
    let squatter = outdir.join(format!("other.tar.tmp-{}", std::process::id()));
    fs::write(&squatter, b"theirs").unwrap();
    let err = run_export_layer(&upper, &outdir.join("other.tar")).unwrap_err();
    assert!(err.contains("cannot create"), "{err}");
    assert_eq!(fs::read(&squatter).unwrap(), b"theirs");
    fs::remove_file(&squatter).unwrap();

    // Nor does an OUT whose directory is missing.
    let err = run_export_layer(&upper, &tmp.path().join("nodir/l.tar")).unwrap_err();
    assert!(err.contains("nodir"), "{err}");

    // A failed re-export keeps the previous OUT intact.
    let err = run_export_layer(&bad, &out).unwrap_err();
    assert!(err.contains("renamed"), "{err}");
    assert_eq!(fs::read(&out).unwrap(), bytes);
    assert_eq!(leftovers(&outdir), ["layer.tar"]);
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn kernel_overlay(root: &Path, opts: &str) -> (PathBuf, Mounted) {
    let (lower, upper, work, mnt) = (
        root.join("lower"),
        root.join("upper"),
        root.join("work"),
        root.join("mnt"),
    );
    for d in [&upper, &work, &mnt] {
        fs::create_dir(d).unwrap();
    }
    let o = format!(
        "lowerdir={},upperdir={},workdir={}{opts}",
        lower.display(),
        upper.display(),
        work.display()
    );
    run(
        "mount",
        &[
            OsStr::new("-t"),
            OsStr::new("overlay"),
            OsStr::new("overlay"),
            OsStr::new("-o"),
            OsStr::new(&o),
            mnt.as_os_str(),
        ],
    );
    (upper, Mounted(mnt))
}

/// The kernel writes the upper; unionrs must read that format (DESIGN §2).
#[test]
fn exports_an_upper_written_by_kernel_overlayfs() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("etc/old")).unwrap();
    fs::write(lower.join("etc/old/conf"), b"x").unwrap();
    fs::write(lower.join("etc/a"), b"a").unwrap();
    fs::write(lower.join("etc/b"), b"b").unwrap();
    let (upper, m) = kernel_overlay(tmp.path(), "");
    let mnt = m.0.clone();
    fs::remove_file(mnt.join("etc/a")).unwrap();
    fs::remove_file(mnt.join("etc/b")).unwrap();
    fs::remove_dir_all(mnt.join("etc/old")).unwrap();
    fs::create_dir(mnt.join("etc/old")).unwrap(); // opaque
    fs::write(mnt.join("etc/new"), b"new").unwrap();
    drop(m);

    let (bytes, _) = export_to_vec(&upper);
    let ents = read_back(&bytes);
    let names: Vec<String> = ents
        .iter()
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/.wh.a",
            "etc/.wh.b",
            "etc/new",
            "etc/old/",
            "etc/old/.wh..wh..opq"
        ]
    );
    // No overlay bookkeeping (origin, impure, opaque) leaks into the layer.
    for (p, e) in &ents {
        assert!(e.xattrs.is_empty(), "{}", String::from_utf8_lossy(p));
    }
}

#[test]
fn kernel_redirect_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("d")).unwrap();
    fs::write(lower.join("d/f"), b"x").unwrap();
    let (upper, m) = kernel_overlay(tmp.path(), ",redirect_dir=on");
    fs::rename(m.0.join("d"), m.0.join("e")).unwrap();
    drop(m);
    let err = export_upper(&upper, Vec::new()).unwrap_err();
    assert!(
        matches!(&err, ExportError::Redirect(p) if p == &upper.join("e")),
        "{err}"
    );
}
