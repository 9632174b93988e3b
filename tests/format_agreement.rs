//! One overlay format, read the same way everywhere: a layer full of markers (every whiteout
//! and opaque form, and look-alikes that are not markers) is mounted through unionrs and
//! through kernel overlayfs, and exported to a layer tar by `unionrs export-layer` (what
//! `commit` writes); the tar, unpacked over the same base, must mount to the same tree.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The base layer every marker hides something in.
fn base(l: &Path) {
    for f in ["a", "b", "h/v", "g/w", "g/keep", "d/old", "e/old", "o/gone"] {
        write(l.join(f), &format!("base {f}\n"));
    }
}

/// Markers the kernel reads too: a 0/0 device, an xattr whiteout in a directory marked
/// `opaque=x` (not opaque itself), an `opaque=y` directory.
fn kernel_markers(l: &Path) {
    whiteout(l.join("a"), Whiteout::CharDev);
    whiteout(l.join("g/w"), Whiteout::XattrTrusted);
    write(l.join("g/new"), "new in g\n");
    opaque(l.join("d"), Opaque::XattrTrusted);
    write(l.join("d/new"), "new in d\n");
}

/// The OCI forms only unionrs reads (`.wh.NAME`, `.wh..wh..opq`), and a look-alike: a
/// zero-size file with the whiteout xattr in an unmarked directory, an ordinary empty file
/// (kernel 6.18 is of two minds there: readdir lists it, lookup answers ENOENT).
fn other_markers(l: &Path) {
    whiteout(l.join("b"), Whiteout::Oci);
    opaque(l.join("e"), Opaque::Oci);
    write(l.join("e/new"), "new in e\n");
    mkdir(l.join("h"));
    write(l.join("h/v"), "");
    setxattr(l.join("h/v"), "trusted.overlay.whiteout", "y");
}

/// Exports `layer` with `unionrs export-layer` and unpacks the tar (markers as the plain
/// `.wh.` files the OCI format makes them) into `into`.
fn export_and_unpack(layer: &Path, into: &Path) {
    let tar = into.with_extension("tar");
    let out = Command::new(unionrs_bin())
        .arg("export-layer")
        .arg(layer)
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export-layer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::create_dir_all(into).unwrap();
    run(
        "tar",
        &["-xf", tar.to_str().unwrap(), "-C", into.to_str().unwrap()],
    );
}

/// The merged tree of `fs` over `l`'s lowers.
fn view(fs: Fs, l: &Layers) -> std::collections::BTreeMap<std::path::PathBuf, snapshot::EntryInfo> {
    let m = mount(fs, l, &[]);
    let t = snapshot::tree_snapshot(&m.mnt);
    drop(m);
    t
}

#[test]
fn kernel_forms_read_alike_by_the_mount_the_kernel_and_the_export() {
    let _s = serial();
    let l = Layers::read_only(2);
    base(l.l(2));
    kernel_markers(l.l(1));
    let kernel = view(Fs::KernelOverlay, &l);
    let ours = view(Fs::Unionrs, &l);
    snapshot::assert_same_tree(&kernel, &ours, "kernel overlayfs vs unionrs");

    let exported = l.copy();
    let unpacked = exported.dir.path().join("exported");
    export_and_unpack(l.l(1), &unpacked);
    let mut via_tar = exported;
    via_tar.lowers[0] = unpacked;
    snapshot::assert_same_tree(&ours, &view(Fs::Unionrs, &via_tar), "mount vs its export");
}

#[test]
fn every_form_survives_the_export() {
    let _s = serial();
    let l = Layers::read_only(2);
    base(l.l(2));
    kernel_markers(l.l(1));
    other_markers(l.l(1));
    let ours = view(Fs::Unionrs, &l);
    for hidden in ["a", "b", "g/w", "e/old", "d/old"] {
        assert!(
            !ours.keys().any(|p| p.ends_with(hidden)),
            "{hidden} should be hidden"
        );
    }
    let look_alike = ours.iter().find(|(p, _)| p.ends_with("h/v"));
    assert!(
        look_alike.is_some_and(|(_, e)| e.size == 0),
        "the look-alike is an empty file"
    );
    let exported = l.copy();
    let unpacked = exported.dir.path().join("exported");
    export_and_unpack(l.l(1), &unpacked);
    let mut via_tar = exported;
    via_tar.lowers[0] = unpacked;
    snapshot::assert_same_tree(&ours, &view(Fs::Unionrs, &via_tar), "mount vs its export");
}
