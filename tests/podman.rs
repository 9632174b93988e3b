//! podman and buildah with `mount_program = unionrs` (issue 9), through scripts/podman-check.sh:
//! a two-layer image with whiteouts and an opaque dir is built with buildah, pushed to a
//! loopback registry and pulled; run, a container that writes/deletes/renames, commit, a run of
//! the committed image, `podman image mount`, buildah from/run/commit; /proc/mounts must show
//! fuse.unionrs for each, and every merged view must equal kernel overlayfs's for the same
//! layers. Each flow takes about 10 s; the configuration lives in a temporary directory
//! (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF / CONTAINERS_REGISTRIES_CONF), never
//! /etc/containers.
//!
//! These tests fail (never skip) when podman, buildah, runc, docker-registry or busybox-static
//! is missing: scripts/setup.sh installs them.

use std::path::Path;
use std::process::Command;

/// One flow at a time: each builds images, runs a registry and several containers.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(mode: &str, markers: &[&str]) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for tool in ["podman", "buildah", "runc", "docker-registry", "skopeo"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: run scripts/setup.sh (installs podman buildah runc uidmap docker-registry skopeo busybox-static)"
        );
    }
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the podman tests need root (rootless mode switches to an unprivileged user itself)"
    );
    let out = Command::new("bash")
        .arg(root.join("scripts/podman-check.sh"))
        .arg(mode)
        .env("UNIONRS", env!("CARGO_BIN_EXE_unionrs"))
        .output()
        .expect("run scripts/podman-check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        out.status.success() && fails.is_empty(),
        "podman-check {mode} failed (exit {:?}):\n{}\n{}",
        out.status.code(),
        fails.join("\n"),
        stderr
    );
    for m in markers {
        assert!(
            stdout.contains(m),
            "podman-check {mode} passed without the check '{m}':\n{stdout}"
        );
    }
}

const FLOW: &[&str] = &[
    "unionrs] podman pull",
    "unionrs] container / is fuse.unionrs",
    "unionrs] committed image shows the changes",
    "unionrs] podman image mount (read-only fuse.unionrs)",
    "unionrs] buildah run: / is fuse.unionrs",
    "unionrs] view-mutated is identical to kernel overlayfs's",
    "unionrs] view-committed is identical to kernel overlayfs's",
    "unionrs] view-built is identical to kernel overlayfs's",
];

#[test]
fn podman_root() {
    check("root", FLOW);
}

#[test]
fn podman_rootless() {
    check("rootless", FLOW);
}

/// containers/storage's `force_mask = "shared"` (root): layers unpacked with mode 0755 and the
/// image's owners and modes in user.containers.override_stat; the mount program gets
/// `xattr_permissions=2`. Inside the container unionrs must show what the kernel store shows.
#[test]
fn podman_force_mask() {
    check(
        "forcemask",
        &[
            "[fm-unionrs] containers/storage passed xattr_permissions=2",
            "[fm-unionrs] force_mask: owners and modes inside equal the kernel store's",
        ],
    );
}

/// `podman run --uidmap` (root): containers/storage passes `uidmapping=:0:100000:65536`
/// (leading ':', which fuse-overlayfs's strtok parser skips); unionrs rejects that spelling
/// ("bad uidmapping="). With the ':' dropped by a shim the run passes (containers/storage has
/// already made ID-shifted copies of the lowers under ID/mapped/0).
/// Known failure, see docs/podman.md; run with `cargo test --test podman -- --ignored`.
#[test]
#[ignore = "podman 4.3 --uidmap: runc gets EACCES on /run/.containerenv in the merged dir (fuse-overlayfs 1.10 fails the same way; docs/podman.md)"]
fn podman_uidmap() {
    check("uidmap", &["[unionrs] --uidmap: owners 0:0 inside"]);
}
