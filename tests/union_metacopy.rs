//! metacopy=on: a metadata change of a lower file copies up its metadata only, in kernel
//! overlayfs' format, and the data follows on the first write-open or truncate. Checked on
//! the upper itself (no data blocks, the kernel's xattr), through the mount, and across
//! implementations: kernel overlayfs (metacopy=on) reads what unionrs wrote, and unionrs
//! reads what the kernel wrote.

mod common;

use common::sys::{lgetxattr, lseek, lsetxattr, lutimens};
use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const METACOPY: &str = "trusted.overlay.metacopy";
/// Kernel overlayfs needs metacopy=on to follow a metacopy upper (redirect_dir=on and
/// index=on come from the harness).
const KERNEL_METACOPY: &str = "kernel:metacopy=on";

/// One lower layer with files a..f (200 KiB each, f hard-linked as f2) under d/.
fn stack() -> Layers {
    let l = Layers::new(1);
    mkdir(l.l(1).join("d"));
    for (i, name) in ["a", "b", "c", "e", "f", "g"].iter().enumerate() {
        let p = l.l(1).join("d").join(name);
        fs::write(&p, noise(200 * 1024, i as u64)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }
    lsetxattr(&l.l(1).join("d/e"), "user.gone", b"1").unwrap();
    fs::hard_link(l.l(1).join("d/f"), l.l(1).join("d/f2")).unwrap();
    l
}

fn lower_data(l: &Layers, name: &str) -> Vec<u8> {
    fs::read(l.l(1).join("d").join(name)).unwrap()
}

/// Whether the file has any data extent (SEEK_DATA finds one).
fn has_data(p: &Path) -> bool {
    let f = File::open(p).unwrap();
    match lseek(&f, 0, libc::SEEK_DATA) {
        Ok(_) => true,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => false,
        Err(e) => panic!("SEEK_DATA on {}: {e}", p.display()),
    }
}

/// The metadata changes the tests make: chmod a, chown b, utimes c, setxattr e (and
/// removexattr of a lower one), chmod of the hard-linked f.
fn change_metadata(l: &Layers) {
    fs::set_permissions(l.m("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(l.m("d/b"), Some(1234), Some(5678)).unwrap();
    lutimens(&l.m("d/c"), (1_000_000, 5), (2_000_000, 7)).unwrap();
    lsetxattr(&l.m("d/e"), "user.added", b"v").unwrap();
    common::sys::lremovexattr(&l.m("d/e"), "user.gone").unwrap();
    fs::set_permissions(l.m("d/f"), fs::Permissions::from_mode(0o640)).unwrap();
}

/// The files of the stack's d/.
const NAMES: [&str; 7] = ["a", "b", "c", "e", "f", "f2", "g"];

/// What the tests compare across mounts: content and shown metadata of each file.
type Shown = (Vec<u8>, (u32, u32, u32, i64, i64));

fn shown(l: &Layers, name: &str) -> Shown {
    let p = l.m("d").join(name);
    let st = fs::symlink_metadata(&p).unwrap();
    (
        fs::read(&p).unwrap(),
        (st.mode(), st.uid(), st.gid(), st.mtime(), st.mtime_nsec()),
    )
}

#[test]
fn metadata_changes_copy_no_data_and_the_kernel_reads_the_result() {
    let _s = serial();
    let l = stack();
    let m = mount(Fs::Unionrs, &l, &["metacopy=on"]);
    change_metadata(&l);
    let up = |name: &str| l.upper().join("d").join(name);
    for name in ["a", "b", "c", "e"] {
        let st = fs::symlink_metadata(up(name)).unwrap();
        assert_eq!(st.len(), 200 * 1024, "{name}: the upper keeps the size");
        // e's xattrs overflow the ext4 inode into an xattr block (8 sectors): data or
        // not, SEEK_DATA below tells.
        if name != "e" {
            assert_eq!(st.blocks(), 0, "{name}: the upper file has no blocks");
        }
        assert!(!has_data(&up(name)), "{name}: the upper file has no data");
        assert_eq!(lgetxattr(&up(name), METACOPY).unwrap(), b"", "{name}");
        // Through the mount: the lower's data, the upper's metadata, the lower's blocks.
        assert_eq!(fs::read(l.m("d").join(name)).unwrap(), lower_data(&l, name));
        let shown = fs::symlink_metadata(l.m("d").join(name)).unwrap();
        let lower = fs::symlink_metadata(l.l(1).join("d").join(name)).unwrap();
        assert_eq!(
            shown.blocks(),
            lower.blocks(),
            "{name}: st_blocks of the data"
        );
    }
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&l.m("d/a")), 0o600);
    let b = fs::symlink_metadata(l.m("d/b")).unwrap();
    assert_eq!((b.uid(), b.gid()), (1234, 5678));
    let c = fs::symlink_metadata(l.m("d/c")).unwrap();
    assert_eq!((c.mtime(), c.mtime_nsec()), (2_000_000, 7));
    assert_eq!(lgetxattr(&l.m("d/e"), "user.added").unwrap(), b"v");
    assert!(lgetxattr(&l.m("d/e"), "user.gone").is_err());
    // A hard-linked lower file is copied whole (its other names share the copy).
    assert!(lgetxattr(&up("f"), METACOPY).is_err());
    assert!(has_data(&up("f")));
    assert_eq!(mode(&l.m("d/f2")), 0o640);
    assert_eq!(stats_value(&l.mnt, "metacopy_ups"), 4);
    assert_eq!(
        stats_value(&l.mnt, "copy_up_bytes"),
        200 * 1024,
        "only f's data"
    );

    // A reader opened before the data is copied up keeps reading; a writer then gets the
    // upper file with the data in it (no EBUSY/EIO from the kernel's one-backing rule).
    let mut reader = File::open(l.m("d/a")).unwrap();
    let mut first = vec![0u8; 4096];
    reader.read_exact(&mut first).unwrap();
    let mut w = OpenOptions::new().append(true).open(l.m("d/a")).unwrap();
    w.write_all(b"tail").unwrap();
    drop(w);
    let mut rest = Vec::new();
    reader.seek(SeekFrom::Start(0)).unwrap();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(&rest[..4096], &first[..]);
    drop(reader);
    let mut want_a = lower_data(&l, "a");
    want_a.extend_from_slice(b"tail");
    assert_eq!(fs::read(l.m("d/a")).unwrap(), want_a);
    assert_eq!(
        fs::read(up("a")).unwrap(),
        want_a,
        "the data is in the upper now"
    );
    assert!(lgetxattr(&up("a"), METACOPY).is_err(), "no longer metacopy");
    assert_eq!(mode(&l.m("d/a")), 0o600, "the metadata stayed");
    // Truncate copies the data, then cuts it.
    OpenOptions::new()
        .write(true)
        .open(l.m("d/c"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    assert_eq!(fs::read(up("c")).unwrap(), lower_data(&l, "c")[..1000]);
    let c = fs::symlink_metadata(l.m("d/c")).unwrap();
    assert_eq!(c.len(), 1000);

    let before: Vec<_> = NAMES.iter().map(|n| shown(&l, n)).collect();
    m.unmount();
    // Kernel overlayfs on the same upper shows the same files, data from the lowers.
    let k = mount(Fs::KernelOverlay, &l, &[KERNEL_METACOPY]);
    let after: Vec<_> = NAMES.iter().map(|n| shown(&l, n)).collect();
    for ((name, b), a) in NAMES.iter().zip(&before).zip(&after) {
        if *name == "f2" {
            // The other name of a copied-up hard link: unionrs ties them by its own index,
            // which the kernel does not read (a listed difference, docs/architecture.md §9).
            continue;
        }
        assert!(a.0 == b.0, "{name}: kernel overlayfs shows other content");
        assert_eq!(
            a.1, b.1,
            "{name}: (mode, uid, gid, mtime) under kernel overlayfs"
        );
    }
    drop(k);
    // And unionrs again, now without the option: it still reads metacopy files.
    let _m = mount(Fs::Unionrs, &l, &[]);
    assert_eq!(fs::read(l.m("d/b")).unwrap(), lower_data(&l, "b"));
    assert_eq!(fs::read(l.m("d/e")).unwrap(), lower_data(&l, "e"));
}

#[test]
fn without_the_option_metadata_changes_copy_the_data() {
    let _s = serial();
    let l = stack();
    let _m = mount(Fs::Unionrs, &l, &[]);
    fs::set_permissions(l.m("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
    let up = l.upper().join("d/a");
    assert!(lgetxattr(&up, METACOPY).is_err());
    assert_eq!(fs::read(&up).unwrap(), lower_data(&l, "a"));
}

#[test]
fn unionrs_reads_what_kernel_metacopy_wrote() {
    let _s = serial();
    let l = stack();
    let k = mount(Fs::KernelOverlay, &l, &[KERNEL_METACOPY]);
    fs::set_permissions(l.m("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
    lsetxattr(&l.m("d/e"), "user.added", b"v").unwrap();
    // A renamed metacopy file: the kernel writes an absolute redirect to its data.
    fs::rename(l.m("d/b"), l.m("b-moved")).unwrap();
    drop(k);
    // The kernel wrote metacopy files (else this test would prove nothing).
    for p in ["d/a", "d/e", "b-moved"] {
        let up = l.upper().join(p);
        assert!(
            lgetxattr(&up, METACOPY).is_ok(),
            "{p}: kernel wrote no metacopy"
        );
        assert!(!has_data(&up), "{p}: kernel copied data");
    }
    assert!(lgetxattr(&l.upper().join("b-moved"), "trusted.overlay.redirect").is_ok());
    let _m = mount(Fs::Unionrs, &l, &["metacopy=on"]);
    assert_eq!(fs::read(l.m("d/a")).unwrap(), lower_data(&l, "a"));
    assert_eq!(fs::read(l.m("d/e")).unwrap(), lower_data(&l, "e"));
    assert_eq!(fs::read(l.m("b-moved")).unwrap(), lower_data(&l, "b"));
    assert!(!l.m("d/b").exists());
    let mode = fs::symlink_metadata(l.m("d/a")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    // Writing completes the kernel's metacopy file; the kernel reads the result.
    let mut w = OpenOptions::new()
        .append(true)
        .open(l.m("b-moved"))
        .unwrap();
    w.write_all(b"!").unwrap();
    drop(w);
    let mut want = lower_data(&l, "b");
    want.push(b'!');
    assert_eq!(fs::read(l.upper().join("b-moved")).unwrap(), want);
    drop(_m);
    let _k = mount(Fs::KernelOverlay, &l, &[KERNEL_METACOPY]);
    assert_eq!(fs::read(l.m("b-moved")).unwrap(), want);
    assert_eq!(fs::read(l.m("d/a")).unwrap(), lower_data(&l, "a"));
}

#[test]
fn rename_link_and_unlink_of_metacopy_files() {
    let _s = serial();
    let l = stack();
    let m = mount(Fs::Unionrs, &l, &["metacopy=on"]);
    for n in ["a", "b", "c", "e"] {
        fs::set_permissions(l.m("d").join(n), fs::Permissions::from_mode(0o604)).unwrap();
    }
    fs::rename(l.m("d/a"), l.m("a2")).unwrap();
    assert_eq!(fs::read(l.m("a2")).unwrap(), lower_data(&l, "a"));
    assert!(!l.m("d/a").exists());
    // Renamed without its data, as the kernel does: metacopy plus an absolute redirect.
    let a2 = l.upper().join("a2");
    assert!(!has_data(&a2), "rename copied the data");
    assert_eq!(lgetxattr(&a2, METACOPY).unwrap(), b"");
    assert_eq!(lgetxattr(&a2, "trusted.overlay.redirect").unwrap(), b"/d/a");
    // Renamed again: the redirect still leads to the data.
    fs::rename(l.m("a2"), l.m("a3")).unwrap();
    fs::rename(l.m("a3"), l.m("a2")).unwrap();
    assert_eq!(fs::read(l.m("a2")).unwrap(), lower_data(&l, "a"));
    assert_eq!(stats_value(&l.mnt, "copy_up_bytes"), 0);
    fs::hard_link(l.m("d/b"), l.m("b2")).unwrap();
    assert_eq!(fs::read(l.m("b2")).unwrap(), lower_data(&l, "b"));
    assert_eq!(fs::symlink_metadata(l.m("d/b")).unwrap().nlink(), 2);
    fs::remove_file(l.m("d/c")).unwrap();
    assert!(!l.m("d/c").exists());
    // Unlinked while open: the open file keeps its data.
    let mut open = File::open(l.m("d/e")).unwrap();
    fs::remove_file(l.m("d/e")).unwrap();
    let mut got = Vec::new();
    open.read_to_end(&mut got).unwrap();
    assert_eq!(got, lower_data(&l, "e"));
    drop(open);
    assert_eq!(names(l.m("d")), ["b", "f", "f2", "g"]);
    m.unmount();
    // The kernel agrees on the result.
    let _k = mount(Fs::KernelOverlay, &l, &[KERNEL_METACOPY]);
    assert_eq!(names(l.m("d")), ["b", "f", "f2", "g"]);
    assert_eq!(fs::read(l.m("a2")).unwrap(), lower_data(&l, "a"));
    assert_eq!(fs::read(l.m("b2")).unwrap(), lower_data(&l, "b"));
    assert_eq!(fs::read(l.m("d/b")).unwrap(), lower_data(&l, "b"));
}

#[test]
fn commit_export_takes_metacopy_data_from_the_lower() {
    let _s = serial();
    let l = stack();
    let _m = mount(Fs::Unionrs, &l, &["metacopy=on"]);
    fs::set_permissions(l.m("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(lgetxattr(&l.upper().join("d/a"), METACOPY).is_ok());
    let mut tar = Vec::new();
    unionrs::image::layer_export::export_upper_merged(l.upper(), &l.mnt, &mut tar).unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut found = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().as_os_str() == "d/a" {
            let mode = e.header().mode().unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            found = Some((mode, v));
        }
    }
    let (mode, content) = found.expect("d/a in the layer");
    assert_eq!(mode & 0o7777, 0o600);
    assert_eq!(content, lower_data(&l, "a"));
}

#[test]
fn check_judges_metacopy_files_by_their_lower_data() {
    let _s = serial();
    let l = stack();
    let m = mount(Fs::Unionrs, &l, &["metacopy=on"]);
    fs::set_permissions(l.m("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
    m.unmount();
    let check = |lower: &Path| {
        Command::new(unionrs_bin())
            .arg("check")
            .arg(l.upper())
            .arg("--lower")
            .arg(lower)
            .output()
            .unwrap()
    };
    let ok = check(l.l(1));
    assert!(
        ok.status.success(),
        "a good metacopy file is no error: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // The same upper over a lower that lost the file: its data is gone.
    let other = l.dir.path().join("other-lower");
    mkdir(&other);
    mkdir(other.join("d"));
    let bad = check(&other);
    let text =
        String::from_utf8_lossy(&bad.stdout).into_owned() + &String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{text}");
    assert!(
        text.contains("metacopy file whose data no lower layer holds"),
        "{text}"
    );
}

#[test]
fn metacopy_files_in_renamed_directories() {
    let _s = serial();
    let l = stack();
    let m = mount(Fs::Unionrs, &l, &["metacopy=on"]);
    fs::set_permissions(l.m("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(l.m("d/b"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(l.m("d"), l.m("d2")).unwrap();
    assert_eq!(fs::read(l.m("d2/a")).unwrap(), lower_data(&l, "a"));
    // Out of the renamed directory: the redirect names the lower path.
    fs::rename(l.m("d2/b"), l.m("b-out")).unwrap();
    assert_eq!(fs::read(l.m("b-out")).unwrap(), lower_data(&l, "b"));
    assert_eq!(stats_value(&l.mnt, "copy_up_bytes"), 0);
    m.unmount();
    let _k = mount(Fs::KernelOverlay, &l, &[KERNEL_METACOPY]);
    assert_eq!(fs::read(l.m("d2/a")).unwrap(), lower_data(&l, "a"));
    assert_eq!(fs::read(l.m("b-out")).unwrap(), lower_data(&l, "b"));
    assert_eq!(fs::read(l.m("d2/c")).unwrap(), lower_data(&l, "c"));
}

/// A hard link to a metacopy file copies its data up; the file keeps its times, as on the
/// kernel (found by tests/differential_random.rs with UNIONRS_DIFF_METACOPY=1, seed 27:
/// unionrs showed the copy's time as mtime).
#[test]
fn data_copy_up_for_a_hard_link_keeps_the_times() {
    let _s = serial();
    for fs in [Fs::KernelOverlay, Fs::Unionrs] {
        let l = stack();
        let opt = if fs == Fs::KernelOverlay {
            KERNEL_METACOPY
        } else {
            "metacopy=on"
        };
        lutimens(&l.l(1).join("d/a"), (1_400_000_000, 0), (1_500_000_000, 7)).unwrap();
        let m = mount(fs, &l, &[opt]);
        fs::set_permissions(l.m("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::hard_link(l.m("d/a"), l.m("d/a-link")).unwrap();
        let st = fs::metadata(l.m("d/a")).unwrap();
        assert_eq!((st.mtime(), st.mtime_nsec()), (1_500_000_000, 7), "{fs:?}");
        assert_eq!(
            fs::read(l.m("d/a-link")).unwrap(),
            lower_data(&l, "a"),
            "{fs:?}"
        );
        drop(m);
    }
}
