//! `unionrs check` on upper dirs written through real mounts: clean after normal use (by
//! unionrs and by kernel overlayfs), each planted problem reported on its own line, `--repair`
//! fixing them without changing the merged view, and a live mount's workdir left alone.

mod common;

use common::snapshot::tree_snapshot;
use common::{Fs, Layers, mount, sys, unionrs_bin};
use std::fs;
use std::path::Path;
use std::process::Command;

fn check(l: &Layers, extra: &[&str]) -> (i32, Vec<String>) {
    let out = Command::new(unionrs_bin())
        .arg("check")
        .arg(l.upper())
        .arg("--work")
        .arg(&l.work)
        .arg(format!(
            "--lower={}",
            l.lowers
                .iter()
                .map(|p| p.to_str().unwrap())
                .collect::<Vec<_>>()
                .join(":")
        ))
        .args(extra)
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.extend(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(|s| format!("stderr: {s}")),
    );
    (out.status.code().unwrap_or(-1), lines)
}

/// Normal use through a mount: copy-ups, deletes (whiteouts), a renamed lower dir
/// (redirect), an opaque dir, hard links to a lower file (index).
fn populate(l: &Layers) {
    common::write(l.l(2).join("dir/a"), "a\n");
    common::write(l.l(2).join("dir/b"), "b\n");
    common::write(l.l(1).join("top/file"), "top\n");
    common::write(l.l(1).join("gone"), "gone\n");
    common::write(l.l(1).join("hl1"), "linked\n");
    fs::hard_link(l.l(1).join("hl1"), l.l(1).join("hl2")).unwrap();
}

fn use_mount(l: &Layers) {
    fs::remove_file(l.m("gone")).unwrap();
    fs::remove_file(l.m("dir/a")).unwrap();
    fs::rename(l.m("dir"), l.m("moved")).unwrap();
    fs::remove_dir_all(l.m("top")).unwrap();
    common::write(l.m("top/new"), "new\n"); // opaque: replaces the lower dir
    common::write(l.m("hl1"), "changed\n"); // copy-up of a hard-linked file
    common::write(l.m("fresh"), "fresh\n");
}

#[test]
fn clean_after_normal_use_by_unionrs_and_by_the_kernel() {
    let _s = common::serial();
    for fs_ in [Fs::Unionrs, Fs::KernelOverlay] {
        let l = Layers::new(2);
        populate(&l);
        let g = mount(fs_, &l, &[]);
        use_mount(&l);
        drop(g);
        let (code, lines) = check(&l, &[]);
        assert_eq!(code, 0, "{fs_:?}: {lines:#?}");
        assert!(lines.is_empty(), "{fs_:?}: {lines:#?}");
    }
}

#[test]
fn planted_problems_are_reported_and_repaired_without_changing_the_view() {
    let _s = common::serial();
    let l = Layers::new(2);
    populate(&l);
    let g = mount(Fs::Unionrs, &l, &[]);
    use_mount(&l);
    // A live mount: check only notes it; --repair refuses.
    let (code, lines) = check(&l, &["--repair"]);
    assert_eq!(code, 2, "{lines:#?}");
    assert!(
        lines.iter().any(|x| x.contains("in use by a live mount")),
        "{lines:#?}"
    );
    let (code, lines) = check(&l, &[]);
    assert_eq!(code, 0, "{lines:#?}");
    let view = tree_snapshot(&l.mnt);
    drop(g);

    // Plant one of each problem.
    let u = l.upper();
    fs::write(l.work.join("work/#unionrs-4242-0"), "half a copy").unwrap();
    fs::create_dir(l.work.join("work/#unionrs-4242-1")).unwrap();
    fs::write(l.work.join("unionrs.index/ffff-1"), "orphan").unwrap();
    sys::mknod(&u.join("never-existed"), libc::S_IFCHR | 0o600, 0, 0).unwrap();
    sys::mknod(&u.join("top/under-opaque"), libc::S_IFCHR | 0o600, 0, 0).unwrap();
    common::mkdir(u.join("badopq"));
    common::setxattr(u.join("badopq"), "trusted.overlay.opaque", "1");
    common::mkdir(u.join("dangling"));
    common::setxattr(
        u.join("dangling"),
        "trusted.overlay.redirect",
        "/no/such/dir",
    );
    common::setxattr(u.join("fresh"), "trusted.unionrs.origin", "short");
    let g = mount(Fs::Unionrs, &l, &[]);
    let planted_view = tree_snapshot(&l.mnt);
    drop(g);
    // The mount emptied W/work: plant the stray entries again.
    fs::write(l.work.join("work/#unionrs-4242-0"), "half a copy").unwrap();

    let (code, lines) = check(&l, &[]);
    assert_eq!(code, 1, "{lines:#?}");
    let expect = [
        "stray work entry: ",
        "orphaned index entry (nlink 1): ",
        "whiteout hides nothing (no lower layer has the name): ",
        "whiteout hides nothing (inside an opaque directory): ",
        "bad xattr trusted.overlay.opaque=\"1\" (opaque must be y or x): ",
        "bad xattr trusted.overlay.redirect=\"/no/such/dir\" (redirect to no lower directory): ",
        "bad xattr trusted.unionrs.origin=\"short\" (origin must be 8 bytes): ",
    ];
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
    for e in expect {
        assert!(
            lines.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in {lines:#?}"
        );
    }
    // Without the lowers only what the upper alone shows.
    let out = Command::new(unionrs_bin())
        .args(["check", u.to_str().unwrap()])
        .output()
        .unwrap();
    let alone = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(alone, 3, "{}", String::from_utf8_lossy(&out.stdout));

    let (code, lines) = check(&l, &["--repair"]);
    assert_eq!(code, 0, "{lines:#?}");
    let repaired = lines.iter().filter(|x| x.starts_with("repaired: ")).count();
    assert_eq!(repaired, 7, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|x| x.contains("and set trusted.overlay.opaque=y")),
        "{lines:#?}"
    );
    let (code, lines) = check(&l, &[]);
    assert_eq!((code, lines.len()), (0, 0), "{lines:#?}");
    assert_eq!(fs::read_dir(l.work.join("work")).unwrap().count(), 0);

    // The merged view is what it was with the problems in place, and, apart from the planted
    // empty dirs, what it was before them.
    let g = mount(Fs::Unionrs, &l, &[]);
    let after = tree_snapshot(&l.mnt);
    let strip =
        |v: &std::collections::BTreeMap<std::path::PathBuf, common::snapshot::EntryInfo>| {
            v.iter()
                .filter(|(p, _)| !p.starts_with("badopq") && !p.starts_with("dangling"))
                .filter(|(p, _)| p != &Path::new(""))
                .map(|(p, e)| (p.clone(), e.kind.clone(), e.hash.clone(), e.mode))
                .collect::<Vec<_>>()
        };
    assert_eq!(strip(&after), strip(&planted_view));
    assert_eq!(strip(&after), strip(&view));
    assert!(common::names(l.m("dangling")).is_empty());
    assert_eq!(
        common::read(l.m("hl2")),
        "changed\n",
        "hard link kept its index"
    );
    drop(g);
}

/// An index copy without upper names is still what the remaining lower names of the file show
/// (it holds what was written through a name since deleted): repair must keep it.
#[test]
fn index_copy_shown_by_lower_names_is_kept() {
    let _s = common::serial();
    let l = Layers::new(1);
    common::write(l.l(1).join("h1"), "old\n");
    fs::hard_link(l.l(1).join("h1"), l.l(1).join("h2")).unwrap();
    let g = mount(Fs::Unionrs, &l, &[]);
    let mut f = fs::OpenOptions::new().append(true).open(l.m("h1")).unwrap();
    std::io::Write::write_all(&mut f, b"written\n").unwrap();
    drop(f);
    fs::remove_file(l.m("h1")).unwrap();
    assert_eq!(common::read(l.m("h2")), "old\nwritten\n");
    drop(g);
    let (code, lines) = check(&l, &["--repair"]);
    assert_eq!((code, lines.len()), (0, 0), "{lines:#?}");
    // Without the lowers it cannot be told: a note on stderr, no finding, nothing removed.
    let out = Command::new(unionrs_bin())
        .args(["check", l.upper().to_str().unwrap(), "--work"])
        .arg(&l.work)
        .arg("--repair")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give --lower"),
        "{out:?}"
    );
    let _g = mount(Fs::Unionrs, &l, &[]);
    assert_eq!(common::read(l.m("h2")), "old\nwritten\n");
}
