//! The store as a local unprivileged user meets it (issue 20, docker's CVE-2021-41091):
//! nothing inside is reachable by path — not a layer's files (setuid programs included), not
//! a blob, not a container's upper or merged tree — and a store left open by an older
//! version is closed again on its next use.

mod image_util;
use image_util::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The second, unprivileged user the checks run as.
const USER: &str = "unionrs-perms";

/// Makes the test user when it is missing; fails loudly when it cannot.
fn ensure_user() {
    let known = || {
        Command::new("id")
            .arg("-u")
            .arg(USER)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !known() {
        let st = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", USER])
            .status()
            .expect("run useradd");
        assert!(st.success() || known(), "useradd {USER} failed");
    }
}

/// Runs `argv` as the test user, without supplementary groups.
fn as_user(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--clear-groups", "--"])
        .args(argv)
        .output()
        .expect("run setpriv (util-linux)")
}

/// stat, read and exec of `p` by the test user all fail with EACCES.
fn user_is_refused(p: &Path) {
    let s = p.to_str().unwrap();
    // exec through a shell: setpriv itself execs its command before its capabilities are
    // gone, so a path it is given directly is walked with root's rights.
    for argv in [
        vec!["stat", s],
        vec!["cat", s],
        vec!["sh", "-c", "exec \"$0\"", s],
    ] {
        let o = as_user(&argv);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("Permission denied"),
            "{argv:?} as {USER} was not refused with EACCES: status {:?}, stdout {:?}, stderr {err:?}",
            o.status,
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

const STORE_DIRS: [&str; 7] = [
    "",
    "blobs",
    "blobs/sha256",
    "layers",
    "layerinfo",
    "containers",
    "tmp",
];

fn assert_private(store: &Path) {
    for d in STORE_DIRS {
        assert_eq!(mode(&store.join(d)), 0o700, "mode of STORE/{d}");
    }
}

/// The layer dir of the store that holds `rel`.
fn in_a_layer(store: &Path, rel: &str) -> PathBuf {
    fs::read_dir(store.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path().join(rel))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no layer holds {rel}"))
}

fn any_blob(store: &Path) -> PathBuf {
    fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .next()
        .expect("the store has no blob")
        .unwrap()
        .path()
}

#[test]
fn nothing_in_the_store_is_reachable_by_another_user() {
    assert!(can_mount(), "this test needs root and /dev/fuse");
    ensure_user();
    let tmp = tempfile::tempdir().unwrap();
    // The store's parent is open to everyone, as /var/lib is.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let store = tmp.path().join("store");
    let setuid = layer(
        &[
            dir("usr"),
            dir("usr/bin"),
            E {
                mode: 0o4755,
                ..file("usr/bin/su", b"#!/bin/sh\nid -u\n")
            },
        ],
        Comp::Gzip,
    );
    let bb = busybox_layer();
    load_image(
        &store,
        tmp.path(),
        "setuid:1",
        &[&bb, &setuid],
        config(&[&bb, &setuid], "2024-01-01T00:00:00Z"),
    );
    let _guard = UnmountUnder(store.join("containers"));
    ok(&store, &["create", "--name", "c", "setuid:1"]);
    let merged = store.join("containers/c/merged");
    fs::write(merged.join("secret"), b"only root\n").unwrap();
    fs::set_permissions(merged.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();

    let layer_su = in_a_layer(&store, "usr/bin/su");
    assert_eq!(mode(&layer_su), 0o4755, "the layer keeps the setuid bit");
    let targets = [
        layer_su,
        in_a_layer(&store, "bin/busybox"),
        any_blob(&store),
        store.join("containers/c/upper/secret"),
        merged.join("secret"),
        merged.join("usr/bin/su"),
    ];
    assert_private(&store);
    for t in &targets {
        user_is_refused(t);
    }

    // A store an older version left open: reachable, until the next command opens it.
    for d in STORE_DIRS {
        fs::set_permissions(store.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = as_user(&[
        "cat",
        store.join("containers/c/upper/secret").to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "the test user should read an open store (else this test proves nothing): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&store, &["images"]);
    assert_private(&store);
    for t in &targets {
        user_is_refused(t);
    }
}

#[test]
fn a_directory_everyone_may_write_is_refused_as_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let err = fails(&shared, &["images"]);
    assert!(
        err.contains("writable by every user") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        mode(&shared),
        0o1777,
        "a refused directory is left as it was"
    );
    assert_eq!(
        fs::read_dir(&shared).unwrap().count(),
        0,
        "nothing made in it"
    );
}
