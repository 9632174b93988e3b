//! Disk full: the upper and workdir on a 16 MiB tmpfs, the lower on disk. Writers get
//! ENOSPC (never EIO), a copy-up larger than the free space fails with ENOSPC and leaves
//! nothing in the upper or W/work, and once space is freed the mount works on.

mod common;

use common::{Fs, Layers, mount, sys, unionrs_bin};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A size-limited tmpfs, unmounted on drop (after the union mount that uses it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        common::run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                at.to_str().unwrap(),
            ],
        );
        Tmpfs(at.to_path_buf())
    }
    /// Bytes in use on it.
    fn used(&self) -> u64 {
        let s = sys::statfs(&self.0).unwrap();
        (s.f_blocks - s.f_bfree) * s.f_bsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const MIB: usize = 1 << 20;

fn lower_content(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ salt | 1).collect()
}

/// The errno a whole write sequence ends with: write, then fsync, then close.
fn write_until_error(p: &Path, chunk: &[u8], max: usize) -> (usize, i32) {
    let mut f = fs::File::create(p).unwrap();
    let mut written = 0;
    while written < max {
        match f.write(chunk) {
            Ok(n) => written += n,
            Err(e) => return (written, e.raw_os_error().unwrap()),
        }
    }
    (written, sys::errno(&f.sync_all()))
}

fn names_in(p: &Path) -> Vec<String> {
    common::names(p)
}

#[test]
fn enospc_reaches_the_writer_and_copy_up_is_all_or_nothing() {
    let _s = common::serial();
    let mut l = Layers::new(1);
    let small = l.dir.path().join("small");
    let tmpfs = Tmpfs::new(&small, "16m");
    l.upper = Some(small.join("upper"));
    l.work = small.join("work");
    fs::create_dir(l.upper()).unwrap();
    fs::create_dir(&l.work).unwrap();
    let big = lower_content(24 * MIB, 0x5a);
    let medium = lower_content(2 * MIB, 0xa5);
    fs::write(l.l(1).join("big"), &big).unwrap();
    fs::write(l.l(1).join("medium"), &medium).unwrap();
    common::write(l.l(1).join("dir/kept"), "kept\n");

    let g = mount(Fs::Unionrs, &l, &[]);
    let used0 = tmpfs.used();

    // 1. A copy-up larger than the whole filesystem: ENOSPC, and no trace of it.
    let r = fs::OpenOptions::new().append(true).open(l.m("big"));
    assert_eq!(
        sys::errno(&r),
        libc::ENOSPC,
        "copy-up of 24 MiB into 16 MiB: {r:?}"
    );
    assert!(!l.upper().join("big").exists(), "half copy in the upper");
    assert_eq!(
        names_in(&l.work.join("work")),
        Vec::<String>::new(),
        "W/work"
    );
    assert!(
        tmpfs.used() <= used0 + 64 * 1024,
        "space not given back: {}",
        tmpfs.used()
    );
    assert_eq!(
        fs::read(l.m("big")).unwrap(),
        big,
        "lower file still shown whole"
    );

    // 2. Filling the upper through the mount: the writer sees ENOSPC.
    let chunk = vec![0x42u8; MIB];
    let (filled, e) = write_until_error(&l.m("fill"), &chunk, 64 * MIB);
    assert_eq!(e, libc::ENOSPC, "writer error after {filled} bytes: {e}");
    assert!(
        filled > 8 * MIB && filled <= 16 * MIB,
        "wrote {filled} bytes"
    );
    assert_eq!(fs::metadata(l.m("fill")).unwrap().len() as usize, filled);
    eprintln!("writer got ENOSPC after {filled} bytes on a 16 MiB tmpfs");

    // 3. Full: copy-up of a small lower file (data or metadata-only) fails cleanly too.
    let r = fs::OpenOptions::new().append(true).open(l.m("medium"));
    assert_eq!(sys::errno(&r), libc::ENOSPC, "copy-up when full: {r:?}");
    assert!(!l.upper().join("medium").exists());
    assert_eq!(
        names_in(&l.work.join("work")),
        Vec::<String>::new(),
        "W/work"
    );
    let r = fs::write(l.m("dir/new"), vec![1u8; MIB]);
    assert_eq!(
        sys::errno(&r),
        libc::ENOSPC,
        "new file in a lower dir when full"
    );
    assert_eq!(fs::read(l.m("medium")).unwrap(), medium);
    assert_eq!(common::read(l.m("dir/kept")), "kept\n");

    // 4. Space freed: everything works again.
    fs::remove_file(l.m("fill")).unwrap();
    let _ = fs::remove_file(l.m("dir/new"));
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(l.m("medium"))
        .unwrap();
    f.write_all(b"tail").unwrap();
    drop(f);
    let mut want = medium.clone();
    want.extend_from_slice(b"tail");
    assert_eq!(fs::read(l.m("medium")).unwrap(), want);
    assert_eq!(fs::read(l.upper().join("medium")).unwrap(), want);
    fs::write(l.m("dir/after"), vec![7u8; 4 * MIB]).unwrap();
    assert_eq!(fs::read(l.m("dir/after")).unwrap(), vec![7u8; 4 * MIB]);
    common::write(l.m("dir/kept"), "changed\n");
    assert_eq!(common::read(l.m("dir/kept")), "changed\n");
    let status = g.unmount();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "daemon exit: {status:?}"
    );

    // 5. The fsck finds nothing left over.
    let out = Command::new(unionrs_bin())
        .arg("check")
        .arg(l.upper())
        .arg("--work")
        .arg(&l.work)
        .arg("--lower")
        .arg(l.l(1))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(tmpfs);
}
