//! unionrs through mount(8): `mount -t fuse.unionrs`, fstab entries (`mount -T FILE`), `umount`,
//! and `mount -o remount,ro|rw` through mount-helper/mount.fuse.unionrs.
//!
//! These need root, /dev/fuse and the helper at /sbin/mount.fuse.unionrs. The helper is what is
//! under test, so when the installed one is missing or differs from the repository's copy the
//! test installs the repository's copy (scripts/setup.sh installs the same file). They never
//! skip: anything missing is a failure that says what. mount(8) passes the environment on to
//! the helper, and the helper runs `$UNIONRS_BIN`, so these test the binary cargo built.

mod common;

use common::*;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HELPER: &str = "mount.fuse.unionrs";

/// Makes sure mount(8) finds the repository's helper; panics with the reason if it cannot.
fn ensure_helper() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mount-helper")
        .join(HELPER);
    let want = fs::read(&repo).unwrap_or_else(|e| panic!("{}: {e}", repo.display()));
    // /sbin -> usr/sbin on merged-/usr systems (Debian 12): install where the link points.
    let sbin =
        fs::canonicalize("/sbin").expect("/sbin must exist: mount(8) looks for helpers there");
    let installed = sbin.join(HELPER);
    if fs::read(&installed).ok().as_deref() == Some(&want[..]) {
        return;
    }
    let tmp = sbin.join(format!(".{HELPER}.test-{}", std::process::id()));
    fs::write(&tmp, &want).unwrap_or_else(|e| {
        panic!(
            "cannot install the mount helper into {} ({e}); run scripts/setup.sh as root",
            sbin.display()
        )
    });
    run("chmod", &["0755", &tmp.display().to_string()]);
    fs::rename(&tmp, &installed).unwrap();
    assert_eq!(fs::read("/sbin/mount.fuse.unionrs").ok(), Some(want));
}

/// Runs mount(8) or umount(8) with `UNIONRS_BIN` pointing at the binary under test.
fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("UNIONRS_BIN", unionrs_bin())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Like `sh`, and the command must succeed.
fn ok(cmd: &str, args: &[&str]) -> String {
    let out = sh(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn findmnt(mnt: &Path, column: &str) -> String {
    let out = sh("findmnt", &["-n", "-o", column, &s(mnt)]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Pids of unionrs daemons serving `mnt` (their last argument is the mount point).
fn daemons(mnt: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(exe) = fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe.file_name().and_then(|n| n.to_str()) != Some("unionrs") {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let last = cmdline.split(|&b| b == 0).rfind(|a| !a.is_empty());
        if last == Some(mnt.as_os_str().as_encoded_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_no_daemon(mnt: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemons(mnt).is_empty() {
        assert!(
            Instant::now() < deadline,
            "daemon {:?} for {} still running 10 s after umount",
            daemons(mnt),
            mnt.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts whatever is still mounted at `mnt` when a test ends, even by panic.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for _ in 0..4 {
            if mounted_fstype(&self.0).is_none() {
                break;
            }
            let ok = Command::new("umount").arg(&self.0).status();
            if !ok.map(|s| s.success()).unwrap_or(false) {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
}

/// A two-layer writable stack with `lower.txt` in the lower layer.
fn stack() -> (Layers, Cleanup) {
    ensure_helper();
    let l = Layers::new(1);
    write(l.l(1).join("lower.txt"), "from lower\n");
    let c = Cleanup(l.mnt.clone());
    (l, c)
}

#[test]
fn mount_t_fuse_unionrs_then_umount() {
    let _s = serial();
    let (l, _c) = stack();
    ok(
        "mount",
        &[
            "-t",
            "fuse.unionrs",
            "unionrs",
            &s(&l.mnt),
            "-o",
            &layer_opts(&l),
        ],
    );
    assert_eq!(findmnt(&l.mnt, "FSTYPE"), "fuse.unionrs");
    assert_eq!(findmnt(&l.mnt, "SOURCE"), "unionrs");
    assert_eq!(daemons(&l.mnt).len(), 1, "one daemon serves the mount");
    assert_eq!(read(l.m("lower.txt")), "from lower\n");
    write(l.m("new.txt"), "new\n");
    assert_eq!(read(l.upper().join("new.txt")), "new\n");

    ok("umount", &[&s(&l.mnt)]);
    assert_eq!(mounted_fstype(&l.mnt), None);
    wait_no_daemon(&l.mnt);
}

#[test]
fn mount_errors_come_back_through_mount8() {
    let _s = serial();
    let (l, _c) = stack();
    let opts = format!("{},no_such_option_xyz", layer_opts(&l));
    let out = sh(
        "mount",
        &["-t", "fuse.unionrs", "unionrs", &s(&l.mnt), "-o", &opts],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mount with a bad option succeeded");
    assert!(
        err.contains("no_such_option_xyz"),
        "error names the option: {err}"
    );
    assert_eq!(mounted_fstype(&l.mnt), None);
    assert!(daemons(&l.mnt).is_empty());
}

#[test]
fn fstab_entry_mounts() {
    let _s = serial();
    let (l, _c) = stack();
    // A private fstab (mount -T), so /etc/fstab is never touched. `nofail` and `x-*` are what
    // real entries carry; mount(8) and the daemon must both take them.
    let fstab = l.dir.path().join("fstab");
    let line = format!(
        "# test fstab\nunionrs {} fuse.unionrs {},nofail,x-systemd.requires-mounts-for=/tmp 0 0\n",
        s(&l.mnt),
        layer_opts(&l)
    );
    fs::write(&fstab, line).unwrap();

    // `mount MNT` looks the rest up in the fstab.
    ok("mount", &["-T", &s(&fstab), &s(&l.mnt)]);
    assert_eq!(findmnt(&l.mnt, "FSTYPE"), "fuse.unionrs");
    assert_eq!(read(l.m("lower.txt")), "from lower\n");
    ok("umount", &[&s(&l.mnt)]);
    wait_no_daemon(&l.mnt);

    // `mount -a` mounts every entry of the fstab.
    ok("mount", &["-a", "-T", &s(&fstab)]);
    assert_eq!(findmnt(&l.mnt, "FSTYPE"), "fuse.unionrs");
    assert_eq!(read(l.m("lower.txt")), "from lower\n");
    // A second `mount -a` sees it mounted and leaves it alone: still one daemon.
    ok("mount", &["-a", "-T", &s(&fstab)]);
    assert_eq!(daemons(&l.mnt).len(), 1, "mount -a started a second daemon");
    ok("umount", &[&s(&l.mnt)]);
    wait_no_daemon(&l.mnt);
}

fn write_errno(p: &Path) -> Option<i32> {
    fs::write(p, "x\n")
        .err()
        .map(|e| e.raw_os_error().unwrap_or(-1))
}

#[test]
fn remount_ro_rw_cycle_keeps_one_daemon() {
    let _s = serial();
    let (l, _c) = stack();
    ok(
        "mount",
        &[
            "-t",
            "fuse.unionrs",
            "unionrs",
            &s(&l.mnt),
            "-o",
            &layer_opts(&l),
        ],
    );
    let pids = daemons(&l.mnt);
    assert_eq!(pids.len(), 1, "one daemon after mount: {pids:?}");
    write(l.m("before.txt"), "before\n");

    for round in 0..2 {
        ok("mount", &["-o", "remount,ro", &s(&l.mnt)]);
        let opts = findmnt(&l.mnt, "OPTIONS");
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "round {round}: not ro: {opts}"
        );
        assert_eq!(findmnt(&l.mnt, "FSTYPE"), "fuse.unionrs");
        assert_eq!(
            write_errno(&l.m("ro.txt")),
            Some(libc::EROFS),
            "create on ro"
        );
        assert_eq!(
            write_errno(&l.m("before.txt")),
            Some(libc::EROFS),
            "write on ro"
        );
        assert_eq!(
            fs::remove_file(l.m("lower.txt")).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EROFS)),
            "unlink on ro"
        );
        assert_eq!(read(l.m("lower.txt")), "from lower\n");
        assert_eq!(read(l.m("before.txt")), "before\n");
        assert_eq!(
            daemons(&l.mnt),
            pids,
            "round {round}: remount,ro changed the daemons"
        );

        ok("mount", &["-o", "remount,rw", &s(&l.mnt)]);
        let opts = findmnt(&l.mnt, "OPTIONS");
        assert!(
            opts.split(',').any(|o| o == "rw"),
            "round {round}: not rw: {opts}"
        );
        write(l.m("after.txt"), &format!("after {round}\n"));
        assert_eq!(read(l.m("after.txt")), format!("after {round}\n"));
        assert_eq!(
            daemons(&l.mnt),
            pids,
            "round {round}: remount,rw changed the daemons"
        );
    }
    assert!(
        matches!(fs::metadata(l.m("ro.txt")), Err(e) if e.kind() == ErrorKind::NotFound),
        "a create on the ro mount left a file"
    );

    ok("umount", &[&s(&l.mnt)]);
    assert_eq!(mounted_fstype(&l.mnt), None);
    wait_no_daemon(&l.mnt);
}

#[test]
fn remount_keeps_generic_flags_and_drops_layer_options() {
    let _s = serial();
    let (l, _c) = stack();
    ok(
        "mount",
        &[
            "-t",
            "fuse.unionrs",
            "unionrs",
            &s(&l.mnt),
            "-o",
            &layer_opts(&l),
        ],
    );
    let pids = daemons(&l.mnt);
    // Layer options on a remount cannot change anything; the helper drops them, and the
    // generic flags reach the kernel.
    let opts = format!("remount,ro,nosuid,{}", layer_opts(&l));
    ok("mount", &["-o", &opts, &s(&l.mnt)]);
    let now = findmnt(&l.mnt, "OPTIONS");
    let has = |f: &str| now.split(',').any(|o| o == f);
    assert!(has("ro") && has("nosuid"), "flags not applied: {now}");
    assert_eq!(daemons(&l.mnt), pids);
    ok("umount", &[&s(&l.mnt)]);
    wait_no_daemon(&l.mnt);
}

#[test]
fn help_version_man_and_completions() {
    let bin = unionrs_bin();
    let out = Command::new(&bin).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for o in [
        "lowerdir=",
        "upperdir=",
        "squash_to_uid=",
        "uidmapping=",
        "volatile",
        "noacl",
    ] {
        assert!(help.contains(o), "--help lacks {o}");
    }
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("unionrs {}", env!("CARGO_PKG_VERSION"))
    );
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(&bin)
        .arg("generate-man")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let page = fs::read_to_string(dir.path().join("unionrs.1")).unwrap();
    assert!(page.contains(".TH unionrs 1") && page.contains("squash_to_uid"));
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(&bin)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = Command::new(&bin)
        .args(["completions", "nosuchsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
