//! The hard-link index in kernel overlayfs's format: an upper whose hard-linked lower files
//! were partly copied up goes from unionrs to kernel overlayfs (`index=on`) and back with
//! its hard links intact (the same data, link count and inode under every name), and an
//! index entry of unionrs's older format (WORK/unionrs.index/DEV-INO) is read and moved to
//! the kernel's. Each view is compared with the other implementation's on the same upper.

mod common;
use common::{Fs, Layers, mount};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

/// Per visible name: (content, link count, the first name sharing its inode).
type View = BTreeMap<String, (String, u64, String)>;

fn view(l: &Layers) -> View {
    let mut names: Vec<String> = fs::read_dir(&l.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut by_ino: BTreeMap<u64, String> = BTreeMap::new();
    names
        .into_iter()
        .map(|n| {
            let m = fs::symlink_metadata(l.m(&n)).unwrap();
            let first = by_ino.entry(m.ino()).or_insert_with(|| n.clone()).clone();
            let content = fs::read_to_string(l.m(&n)).unwrap();
            (n, (content, m.nlink(), first))
        })
        .collect()
}

fn append(p: impl AsRef<std::path::Path>, s: &str) {
    let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

/// l1: a, b, c: one file with three names; s: a file of its own.
fn three_names() -> Layers {
    let l = Layers::new(1);
    common::write(l.l(1).join("a"), "data\n");
    fs::hard_link(l.l(1).join("a"), l.l(1).join("b")).unwrap();
    fs::hard_link(l.l(1).join("a"), l.l(1).join("c")).unwrap();
    common::write(l.l(1).join("s"), "solo\n");
    l
}

/// Mounts `fs_`, runs `f`, unmounts; the view before unmounting.
fn with(fs_: Fs, l: &Layers, f: impl FnOnce(&Layers)) -> View {
    let g = mount(fs_, l, &[]);
    f(l);
    let v = view(l);
    g.unmount();
    v
}

fn entry(content: &str, nlink: u64, first: &str) -> (String, u64, String) {
    (content.into(), nlink, first.into())
}

#[test]
fn unionrs_copy_up_reads_back_under_the_kernel_and_again() {
    let _s = common::serial();
    let l = three_names();
    let written = with(Fs::Unionrs, &l, |l| {
        append(l.m("a"), "more\n");
        fs::hard_link(l.m("b"), l.m("d")).unwrap();
        fs::remove_file(l.m("c")).unwrap();
    });
    let want: View = [
        ("a", entry("data\nmore\n", 3, "a")),
        ("b", entry("data\nmore\n", 3, "a")),
        ("d", entry("data\nmore\n", 3, "a")),
        ("s", entry("solo\n", 1, "s")),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_string(), e))
    .collect();
    assert_eq!(written, want, "unionrs");
    // The kernel's index: named by the lower file's origin handle, not unionrs's own.
    let entries: Vec<String> = fs::read_dir(l.work.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with("00fb"), "{entries:?}");
    assert_eq!(
        fs::read_dir(l.work.join("unionrs.index")).unwrap().count(),
        0
    );
    let kernel = with(Fs::KernelOverlay, &l, |l| append(l.m("b"), "kernel\n"));
    let mut want2 = want.clone();
    for n in ["a", "b", "d"] {
        want2.get_mut(n).unwrap().0 = "data\nmore\nkernel\n".into();
    }
    assert_eq!(kernel, want2, "kernel overlayfs on unionrs's upper");
    let again = with(Fs::Unionrs, &l, |_| {});
    assert_eq!(again, want2, "unionrs after the kernel");
}

#[test]
fn kernel_copy_up_reads_back_under_unionrs_and_again() {
    let _s = common::serial();
    let l = three_names();
    let kernel = with(Fs::KernelOverlay, &l, |l| append(l.m("a"), "more\n"));
    // unionrs shows what the kernel showed, then a copy-up through a lower name joins the
    // kernel's copy and an unlink of another lower name counts.
    let shown = with(Fs::Unionrs, &l, |_| {});
    assert_eq!(shown, kernel, "unionrs on the kernel's upper");
    let changed = with(Fs::Unionrs, &l, |l| {
        append(l.m("c"), "unionrs\n");
        fs::remove_file(l.m("b")).unwrap();
    });
    let want: View = [
        ("a", entry("data\nmore\nunionrs\n", 2, "a")),
        ("c", entry("data\nmore\nunionrs\n", 2, "a")),
        ("s", entry("solo\n", 1, "s")),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_string(), e))
    .collect();
    assert_eq!(changed, want, "unionrs");
    let kernel_again = with(Fs::KernelOverlay, &l, |_| {});
    assert_eq!(kernel_again, want, "kernel overlayfs after unionrs");
}

#[test]
fn an_index_entry_of_the_old_unionrs_format_is_read_and_moved() {
    let _s = common::serial();
    let l = three_names();
    // What unionrs wrote before: the copy of `a` linked as WORK/unionrs.index/DEV-INO, its
    // absolute count and its origin number in trusted.unionrs.* xattrs.
    let lower = fs::metadata(l.l(1).join("a")).unwrap();
    let upper_a = l.upper().join("a");
    common::write(&upper_a, "data\nold format\n");
    for (name, value) in [
        ("trusted.unionrs.origin", lower.ino().to_le_bytes()),
        ("trusted.unionrs.nlink", 3u64.to_le_bytes()),
    ] {
        xattr_set(&upper_a, name, &value);
    }
    fs::create_dir(l.work.join("unionrs.index")).unwrap();
    let own = l
        .work
        .join(format!("unionrs.index/{:x}-{:x}", lower.dev(), lower.ino()));
    fs::hard_link(&upper_a, &own).unwrap();
    let shown = with(Fs::Unionrs, &l, |_| {});
    let want: View = [
        ("a", entry("data\nold format\n", 3, "a")),
        ("b", entry("data\nold format\n", 3, "a")),
        ("c", entry("data\nold format\n", 3, "a")),
        ("s", entry("solo\n", 1, "s")),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_string(), e))
    .collect();
    assert_eq!(shown, want, "unionrs on an old-format upper");
    assert!(!own.exists(), "the old entry was not moved");
    assert_eq!(fs::read_dir(l.work.join("index")).unwrap().count(), 1);
    let kernel = with(Fs::KernelOverlay, &l, |_| {});
    assert_eq!(kernel, want, "kernel overlayfs after the move");
}

fn xattr_set(p: &std::path::Path, name: &str, value: &[u8]) {
    let st = std::process::Command::new("setfattr")
        .arg("-n")
        .arg(name)
        .arg("-v")
        .arg(format!(
            "0x{}",
            value.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ))
        .arg(p)
        .status()
        .expect("setfattr (package attr)");
    assert!(st.success(), "setfattr {name} {}", p.display());
}

/// A rename over a name of a hard-linked file takes that name away as an unlink does: the
/// other names show one link less, over a lower name (not copied up) and over an upper one.
#[test]
fn renames_over_names_of_a_hard_linked_file_count_as_the_kernel() {
    let _s = common::serial();
    let steps = |fs_: Fs, l: &Layers| {
        common::write(l.l(1).join("t"), "t\n");
        let g = mount(fs_, l, &[]);
        fs::rename(l.m("t"), l.m("c")).unwrap(); // over a lower name, nothing copied up
        append(l.m("a"), "more\n");
        fs::hard_link(l.m("a"), l.m("d")).unwrap();
        fs::rename(l.m("s"), l.m("d")).unwrap(); // over an upper name of the copy
        fs::rename(l.m("c"), l.m("b")).unwrap(); // over a lower name of the copied file
        let v = view(l);
        g.unmount();
        v
    };
    let mut views = Vec::new();
    for fs_ in [Fs::KernelOverlay, Fs::Unionrs] {
        views.push(steps(fs_, &three_names()));
    }
    assert_eq!(views[1], views[0], "unionrs against kernel overlayfs");
    assert_eq!(views[0]["a"], entry("data\nmore\n", 1, "a"));
}
