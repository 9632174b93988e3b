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
