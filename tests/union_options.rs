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
