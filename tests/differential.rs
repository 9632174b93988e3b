//! Differential tests: one scripted list of operations run on kernel overlayfs and on unionrs
//! over identical copies of a 3-layer stack; errnos, merged views and upper dirs must agree,
//! and the unionrs upper must mount under the kernel and show the same view.
//! With `UNIONRS_TEST_ONLY=kernel` the second side is the kernel too (checks the harness).

mod common;

use common::diffrun::{Layered, normalize, other_fs, redirected};
use common::snapshot::{assert_same_tree, tree_snapshot, upper_snapshot};
use common::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One step of a script; paths are relative to the mount point.
#[derive(Debug)]
enum Op {
    Write(&'static str, &'static str),
    Append(&'static str, &'static str),
    Truncate(&'static str, u64),
    Chmod(&'static str, u32),
    Chown(&'static str, u32, u32),
    Utimes(&'static str, i64, i64),
    Mkdir(&'static str),
    Rmdir(&'static str),
    Unlink(&'static str),
    Rename(&'static str, &'static str),
    Exchange(&'static str, &'static str),
    Link(&'static str, &'static str),
    Symlink(&'static str, &'static str),
    SetXattr(&'static str, &'static str, &'static str),
    RemoveXattr(&'static str, &'static str),
    Mkfifo(&'static str),
}

/// Applies `op` under `root` and returns its errno (0 on success).
fn apply(root: &Path, op: &Op) -> i32 {
    use Op::*;
    let p = |s: &str| root.join(s);
    let r: std::io::Result<()> = match *op {
        Write(f, d) => fs::write(p(f), d),
        Append(f, d) => OpenOptions::new()
            .append(true)
            .open(p(f))
            .and_then(|mut h| h.write_all(d.as_bytes())),
        Truncate(f, n) => OpenOptions::new()
            .write(true)
            .open(p(f))
            .and_then(|h| h.set_len(n)),
        Chmod(f, m) => fs::set_permissions(p(f), fs::Permissions::from_mode(m)),
        Chown(f, u, g) => std::os::unix::fs::lchown(p(f), Some(u), Some(g)),
        Utimes(f, s, ns) => sys::lutimens(&p(f), (s, ns), (s, ns)),
        Mkdir(d) => fs::create_dir(p(d)),
        Rmdir(d) => fs::remove_dir(p(d)),
        Unlink(f) => fs::remove_file(p(f)),
        Rename(a, b) => fs::rename(p(a), p(b)),
        Exchange(a, b) => sys::renameat2(&p(a), &p(b), libc::RENAME_EXCHANGE),
        Link(a, b) => fs::hard_link(p(a), p(b)),
        Symlink(t, l) => std::os::unix::fs::symlink(t, p(l)),
        SetXattr(f, n, v) => sys::lsetxattr(&p(f), n, v.as_bytes()),
        RemoveXattr(f, n) => sys::lremovexattr(&p(f), n),
        Mkfifo(f) => sys::mkfifo(&p(f), 0o640),
    };
    sys::errno(&r)
}

/// The shared starting point: merging dirs, every kernel whiteout form, an opaque dir,
/// hard links, symlinks, fifos and xattrs spread over 3 lowers.
fn base_stack() -> Layers {
    let l = Layers::new(3);
    write(l.l(3).join("f3"), "three");
    write(l.l(3).join("shared"), "from 3");
    write(l.l(3).join("dir/a"), "a3");
    write(l.l(3).join("dir/deep/x"), "x3");
    write(l.l(3).join("gone/file"), "hidden by l1");
    write(l.l(3).join("op/old"), "hidden by opaque");
    write(l.l(2).join("shared"), "from 2");
    write(l.l(2).join("dir/b"), "b2");
    write(l.l(2).join("dir/deep/y"), "y2");
    write(l.l(2).join("big"), &"0123456789".repeat(1000));
    write(l.l(2).join("h1"), "hard");
    fs::hard_link(l.l(2).join("h1"), l.l(2).join("dir/h2")).unwrap();
    setxattr(l.l(2).join("shared"), "user.origin", "l2");
    setxattr(l.l(2).join("dir"), "user.dirattr", "d");
    write(l.l(2).join("other/o"), "o");
    mkdir(l.l(2).join("empty"));
    write(l.l(1).join("f1"), "one");
    write(l.l(1).join("dir/c"), "c1");
    fs::set_permissions(l.l(1).join("f1"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(l.l(1).join("dir/c"), Some(1000), Some(1000)).unwrap();
    whiteout(l.l(1).join("gone"), Whiteout::CharDev);
    whiteout(l.l(1).join("dir/a"), Whiteout::XattrTrusted);
    opaque(l.l(1).join("op"), Opaque::XattrTrusted);
    write(l.l(1).join("op/new"), "new");
    symlink_at("f1", l.l(1).join("link"));
    symlink_at("../shared", l.l(1).join("dir/up"));
    fifo(l.l(1).join("pipe"));
    l
}

fn run_script(script: &[Op]) {
    let _s = serial();
    let base = base_stack();
    let (a, b) = (base.copy(), base.copy());
    for (i, lw) in base.lowers.iter().enumerate() {
        let want = normalize(&upper_snapshot(lw), &[], &[]);
        assert_eq!(
            want,
            normalize(&upper_snapshot(&a.lowers[i]), &[], &[]),
            "cp -a copy of l{}",
            i + 1
        );
        assert_eq!(
            want,
            normalize(&upper_snapshot(&b.lowers[i]), &[], &[]),
            "cp -a copy of l{}",
            i + 1
        );
    }
    let other = other_fs();
    let ma = mount(Fs::KernelOverlay, &a, &[]);
    let mb = mount(other, &b, &[]);
    if other == Fs::Unionrs {
        check_passthrough_as_asked(&b.mnt);
    }
    let mut errs = Vec::new();
    for (i, op) in script.iter().enumerate() {
        let (ea, eb) = (apply(&a.mnt, op), apply(&b.mnt, op));
        if ea != eb {
            errs.push(format!(
                "step {i} {op:?}: kernel errno {ea}, {other:?} errno {eb}"
            ));
        }
    }
    let (ta, tb) = (tree_snapshot(&a.mnt), tree_snapshot(&b.mnt));
    drop((ma, mb));
    assert!(errs.is_empty(), "errnos differ:\n  {}", errs.join("\n  "));
    assert_same_tree(&ta, &tb, &format!("merged view, kernel vs {other:?}"));

    let (ua, ub) = (upper_snapshot(a.upper()), upper_snapshot(b.upper()));
    let mut skip = redirected(&ua);
    skip.extend(redirected(&ub));
    let rel = |l: &Layers| l.lowers.clone();
    let (na, nb) = (
        normalize(&ua, &rel(&a), &skip),
        normalize(&ub, &rel(&b), &skip),
    );
    let keys: std::collections::BTreeSet<_> = na.keys().chain(nb.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| na.get(*k) != nb.get(*k))
        .map(|k| {
            format!(
                "{}: kernel {:?} / {other:?} {:?}",
                k.display(),
                na.get(k),
                nb.get(k)
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "upper dirs differ:\n  {}",
        diffs.join("\n  ")
    );

    // The other side's upper, mounted by the kernel over the same lowers, shows the same view.
    fs::remove_dir_all(&b.work).unwrap();
    fs::create_dir(&b.work).unwrap();
    let _k = mount(Fs::KernelOverlay, &b, &[]);
    assert_same_tree(
        &ta,
        &tree_snapshot(&b.mnt),
        &format!("{other:?} upper under kernel overlayfs"),
    );
}

#[test]
fn files_only() {
    use Op::*;
    run_script(&[
        Write("new", "fresh"),
        Write("f3", "overwritten"),
        Append("shared", "+appended"),
        Append("nope", "x"),
        Truncate("big", 10),
        Truncate("dir", 0),
        Chmod("f1", 0o644),
        Chmod("dir/b", 0o4755),
        Chown("f3", 123, 456),
        Chown("dir/deep/x", 7, 8),
        Utimes("dir/c", 1_234_567_890, 123_456_789),
        Unlink("f1"),
        Unlink("new"),
        Unlink("gone"),
        Unlink("dir"),
        Write("gone", "back"),
        Mkfifo("fifo"),
        Mkfifo("pipe"),
        Rename("f3", "f3-renamed"),
        Rename("dir/b", "shared"),
        Rename("dir/c", "dir/deep/c"),
        Symlink("f3-renamed", "sl"),
        Unlink("pipe"),
        Write("dir/a", "was whited out"),
    ]);
}

#[test]
fn directories_and_renames() {
    use Op::*;
    run_script(&[
        Mkdir("nd"),
        Mkdir("nd"),
        Mkdir("dir"),
        Rmdir("dir"),
        Rmdir("f3"),
        Unlink("other/o"),
        Rmdir("other"),
        Mkdir("other"),
        Write("other/again", "again"),
        Rename("dir", "dir-moved"),
        Write("dir-moved/added", "added"),
        Unlink("dir-moved/b"),
        Mkdir("dir"),
        Rename("dir-moved/deep", "nd/deep"),
        Rename("nd", "nd/inside"),
        Rename("empty", "nd/empty"),
        Rename("op", "nd"),
        Rename("op", "empty-target"),
        Mkdir("e2"),
        Rename("e2", "empty-target"),
        Rename("f1", "dir-moved"),
        Rename("dir-moved", "f1"),
        Exchange("dir-moved", "empty-target"),
        Exchange("f1", "dir"),
        Rmdir("gone"),
        Mkdir("gone"),
        Rename("nd/deep", "gone/deep"),
    ]);
}

#[test]
fn links_and_xattrs() {
    use Op::*;
    run_script(&[
        Link("shared", "shared-link"),
        Link("h1", "h3"),
        Append("dir/h2", "+via h2"),
        Unlink("h1"),
        Link("dir", "dir-link"),
        Link("nope", "x"),
        Symlink("dir/up", "chain"),
        Symlink("x", "link"),
        SetXattr("f3", "user.new", "v"),
        SetXattr("dir", "user.dirattr", "changed"),
        SetXattr("dir/deep", "user.deep", "1"),
        SetXattr("link", "user.onlink", "1"),
        SetXattr("op", "trusted.mine", "t"),
        RemoveXattr("shared", "user.origin"),
        RemoveXattr("shared", "user.origin"),
        SetXattr("f3", "user.big", "0123456789abcdef0123456789abcdef"),
        Exchange("f3", "link"),
        Exchange("shared-link", "dir/deep/y"),
        Chmod("shared-link", 0o700),
        Write("h3", "rewritten"),
        Mkfifo("dir/fifo"),
        Link("dir/fifo", "fifo-link"),
        Link("pipe", "pipe-link"),
    ]);
}

/// The comparison must notice a difference: one extra step on one side only.
#[test]
fn harness_detects_differences() {
    let _s = serial();
    let base = base_stack();
    let (a, b) = (base.copy(), base.copy());
    let ma = mount(Fs::KernelOverlay, &a, &[]);
    let mb = mount(Fs::KernelOverlay, &b, &[]);
    assert_same_tree(&tree_snapshot(&a.mnt), &tree_snapshot(&b.mnt), "same stack");
    assert_eq!(apply(&b.mnt, &Op::Unlink("dir/b")), 0);
    assert_eq!(apply(&b.mnt, &Op::Chmod("f3", 0o700)), 0);
    let d = snapshot::diff_trees(&tree_snapshot(&a.mnt), &tree_snapshot(&b.mnt));
    assert_eq!(d.len(), 2, "{d:?}");
    drop((ma, mb));
    let (na, nb) = (
        normalize(&upper_snapshot(a.upper()), &a.lowers, &[]),
        normalize(&upper_snapshot(b.upper()), &b.lowers, &[]),
    );
    assert_eq!(nb.get(Path::new("dir/b")), Some(&Layered::Whiteout));
    assert_ne!(na, nb);
}
