//! Lookups through deep stacks. unionrs resolves a name in a lower-merged directory from its
//! cached lower listings (the first layer whose listing mentions the name, as an entry or a
//! `.wh.` marker) instead of asking every layer in turn: the answers must stay the kernel's
//! for names in any layer, hidden in any form, merged or stopped by an opaque directory, with
//! and without an upper copy of the directory, and after the layers change between mounts.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn enoent(p: &Path) {
    let e = fs::symlink_metadata(p).expect_err(&format!("{} must not exist", p.display()));
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{}", p.display());
}

const LAYERS: usize = 8;

/// Eight lowers; `d` exists in every one (each adds `own-N`), so lookups in it go through
/// the merged index, and names sit at every depth.
fn deep_stack() -> Layers {
    let l = Layers::new(LAYERS);
    for i in 1..=LAYERS {
        write(l.l(i).join(format!("d/own-{i}")), &i.to_string());
    }
    write(l.l(8).join("d/bottom"), "8");
    write(l.l(6).join("d/twice"), "6");
    write(l.l(3).join("d/twice"), "3");
    write(l.l(8).join("d/gone-dev"), "8");
    whiteout(l.l(5).join("d/gone-dev"), Whiteout::CharDev);
    // An xattr whiteout: l4/d is marked as holding them; an empty file beside it that carries
    // no whiteout xattr stays a file.
    write(l.l(8).join("d/gone-xattr"), "8");
    whiteout(l.l(4).join("d/gone-xattr"), Whiteout::XattrTrusted);
    write(l.l(4).join("d/empty-in-marked"), "");
    write(l.l(7).join("d/empty"), "");
    // A file whited out above and created again further up.
    write(l.l(8).join("d/again"), "8");
    whiteout(l.l(6).join("d/again"), Whiteout::CharDev);
    write(l.l(2).join("d/again"), "2");
    // A merged directory, an opaque one, and a name that is a file low and a dir high.
    write(l.l(7).join("d/sub/from7"), "7");
    write(l.l(2).join("d/sub/from2"), "2");
    write(l.l(7).join("d/opq/hidden"), "7");
    opaque(l.l(3).join("d/opq"), Opaque::XattrTrusted);
    write(l.l(3).join("d/opq/shown"), "3");
    write(l.l(7).join("d/kind"), "file 7");
    write(l.l(2).join("d/kind/inner"), "2");
    l
}

/// What a fresh mount of `deep_stack` shows; `listing_first` lists `d` before any lookup in
/// it (the kernel then looks names up through readdirplus), else each name is looked up cold.
fn check_deep_view(l: &Layers, listing_first: bool) {
    let expected_names = [
        "again",
        "bottom",
        "empty",
        "empty-in-marked",
        "kind",
        "opq",
        "own-1",
        "own-2",
        "own-3",
        "own-4",
        "own-5",
        "own-6",
        "own-7",
        "own-8",
        "sub",
        "twice",
    ];
    if listing_first {
        assert_eq!(names(l.m("d")), expected_names);
    }
    assert_eq!(
        read(l.m("d/bottom")),
        "8",
        "a name only in the bottom layer"
    );
    assert_eq!(
        fs::symlink_metadata(l.m("d/bottom")).unwrap().ino(),
        fs::symlink_metadata(l.l(8).join("d/bottom")).unwrap().ino(),
        "a lower file shows its own inode number"
    );
    assert_eq!(read(l.m("d/twice")), "3", "the topmost copy wins");
    assert_eq!(read(l.m("d/again")), "2", "recreated above its whiteout");
    enoent(&l.m("d/gone-dev"));
    enoent(&l.m("d/gone-xattr"));
    enoent(&l.m("d/missing"));
    enoent(&l.m("d/.wh.again"));
    for empty in ["d/empty", "d/empty-in-marked"] {
        let st = fs::symlink_metadata(l.m(empty)).unwrap();
        assert!(st.is_file() && st.len() == 0, "{empty} is an empty file");
    }
    for i in 1..=LAYERS {
        assert_eq!(read(l.m(&format!("d/own-{i}"))), i.to_string());
    }
    assert_eq!(names(l.m("d/sub")), ["from2", "from7"], "merged below");
    assert_eq!(names(l.m("d/opq")), ["shown"], "opaque stops the merge");
    enoent(&l.m("d/opq/hidden"));
    assert!(fs::symlink_metadata(l.m("d/kind")).unwrap().is_dir());
    assert_eq!(names(l.m("d/kind")), ["inner"]);
    if !listing_first {
        assert_eq!(names(l.m("d")), expected_names);
    }
}

both!(deep_stack_lookups_cold, |fs| {
    let l = deep_stack();
    let _m = mount(fs, &l, &[]);
    check_deep_view(&l, false);
});

both!(deep_stack_lookups_after_listing, |fs| {
    let l = deep_stack();
    let _m = mount(fs, &l, &[]);
    check_deep_view(&l, true);
});

both!(deep_stack_lookups_with_upper_copy, |fs| {
    // Once `d` has an upper copy holding a whiteout and a new file, a fresh mount resolves
    // names there first, then through the lower index.
    let l = deep_stack();
    {
        let _m = mount(fs, &l, &[]);
        write(l.m("d/new"), "upper");
        fs::remove_file(l.m("d/twice")).unwrap();
    }
    let _m = mount(fs, &l, &[]);
    assert_eq!(read(l.m("d/new")), "upper");
    enoent(&l.m("d/twice"));
    assert_eq!(read(l.m("d/bottom")), "8");
    assert_eq!(read(l.m("d/again")), "2");
    enoent(&l.m("d/gone-xattr"));
    assert_eq!(names(l.m("d/sub")), ["from2", "from7"]);
});

both!(lower_changes_seen_after_remount, |fs| {
    // The index lives as long as the mount: names added to or hidden in the layers while
    // unmounted are what the next mount shows, never a stale answer.
    let l = deep_stack();
    {
        let _m = mount(fs, &l, &[]);
        assert_eq!(read(l.m("d/bottom")), "8");
        enoent(&l.m("d/late"));
    }
    write(l.l(8).join("d/late"), "late");
    whiteout(l.l(2).join("d/bottom"), Whiteout::CharDev);
    write(l.l(5).join("d/twice"), "5");
    fs::remove_file(l.l(3).join("d/twice")).unwrap();
    let _m = mount(fs, &l, &[]);
    assert_eq!(read(l.m("d/late")), "late");
    enoent(&l.m("d/bottom"));
    assert_eq!(read(l.m("d/twice")), "5");
});

unionrs_only!(deep_stack_oci_markers, |fs| {
    // `.wh.NAME` files are not entries of their layer, only marks in its listing: the index
    // must still stop a lookup there (the kernel knows no such form, so unionrs alone).
    let l = deep_stack();
    write(l.l(8).join("d/oci-gone"), "8");
    whiteout(l.l(3).join("d/oci-gone"), Whiteout::Oci);
    write(l.l(7).join("d/oci-again"), "7");
    whiteout(l.l(4).join("d/oci-again"), Whiteout::Oci);
    write(l.l(4).join("d/oci-again"), "4");
    write(l.l(8).join("d/oci-opq/hidden"), "8");
    opaque(l.l(5).join("d/oci-opq"), Opaque::Oci);
    write(l.l(5).join("d/oci-opq/shown"), "5");
    let _m = mount(fs, &l, &[]);
    enoent(&l.m("d/oci-gone"));
    assert_eq!(
        read(l.m("d/oci-again")),
        "4",
        "a .wh. marker hides only the layers below its own"
    );
    assert_eq!(names(l.m("d/oci-opq")), ["shown"]);
    enoent(&l.m("d/oci-opq/hidden"));
    assert_eq!(read(l.m("d/bottom")), "8");
});
