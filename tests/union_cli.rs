//! The unionrs binary as a mount program: fstype, option errors before mounting, SIGTERM,
//! background mode. unionrs only (these are about the binary, not union semantics).

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

unionrs_only!(mountinfo_fstype_is_fuse_unionrs, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "f");
    let _m = mount(fs, &l, &[]);
    assert_eq!(mounted_fstype(&l.mnt).as_deref(), Some("fuse.unionrs"));
    assert_eq!(read(l.m("f")), "f");
});

/// Runs the binary in the foreground with `opts`; it must exit non-zero with a one-line
/// error and leave nothing mounted.
fn must_refuse(l: &Layers, opts: &str, what: &str) {
    let mut child = Command::new(unionrs_bin())
        .args(["-f", "-o", opts])
        .arg(&l.mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = Command::new("umount").arg("-l").arg(&l.mnt).status();
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: unionrs -o {opts} kept running instead of refusing");
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let fstype = mounted_fstype(&l.mnt);
    if fstype.is_some() {
        let _ = Command::new("umount").arg("-l").arg(&l.mnt).status();
    }
    assert!(!out.status.success(), "{what}: exit status {}", out.status);
    assert_eq!(fstype, None, "{what}: something got mounted");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{what}: want a one-line error, got {err:?}"
    );
}

unionrs_only!(bad_options_fail_before_mounting, |_fs| {
    let l = Layers::new(2);
    let base = layer_opts(&l);
    must_refuse(&l, &format!("{base},no_such_option_xyz"), "unknown option");
    let missing = l.dir.path().join("missing");
    must_refuse(
        &l,
        &format!("lowerdir={}", missing.display()),
        "missing lowerdir",
    );
    let (u, w) = (l.upper().display(), l.work.display());
    must_refuse(
        &l,
        &format!("upperdir={u},workdir={w}"),
        "no lowerdir at all",
    );
    let inside = l.l(1).join("up");
    mkdir(&inside);
    let lowers = format!("{}:{}", l.l(1).display(), l.l(2).display());
    must_refuse(
        &l,
        &format!(
            "lowerdir={lowers},upperdir={},workdir={w}",
            inside.display()
        ),
        "upper inside a lower",
    );
    write(l.work.join("junk"), "j");
    must_refuse(&l, &base, "non-empty workdir");
});

fn wait_unmounted(mnt: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if mounted_fstype(mnt).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

unionrs_only!(sigterm_unmounts_cleanly, |fs| {
    let l = Layers::new(1);
    let m = mount(fs, &l, &[]);
    write(l.m("f"), "written");
    sys::kill(m.pid().unwrap(), libc::SIGTERM).unwrap();
    assert!(wait_unmounted(&l.mnt), "still mounted 10 s after SIGTERM");
    let status = m.unmount();
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon exit after SIGTERM: {status:?}"
    );
    assert_eq!(read(l.upper().join("f")), "written");
});

unionrs_only!(background_mode_returns_once_live, |_fs| {
    let l = Layers::read_only(2);
    write(l.l(2).join("f"), "bg");
    let lowers = format!("lowerdir={}:{}", l.l(1).display(), l.l(2).display());
    let out = Command::new(unionrs_bin())
        .args(["-o", &lowers])
        .arg(&l.mnt)
        .output()
        .unwrap();
    // Check at once: the parent may only exit once the mount is live.
    let fstype = mounted_fstype(&l.mnt);
    let content = std::fs::read_to_string(l.m("f"));
    if fstype.is_some() {
        let ok = Command::new("umount")
            .arg(&l.mnt)
            .status()
            .unwrap()
            .success();
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&l.mnt).status();
        }
    }
    assert!(
        out.status.success(),
        "background mount: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fstype.as_deref(),
        Some("fuse.unionrs"),
        "mount live when the parent exits"
    );
    assert_eq!(content.unwrap(), "bg");
    assert!(wait_unmounted(&l.mnt));
});

// mount.fuse3's form `unionrs SOURCE MNT -o OPTS` stays a mount when SOURCE is a verb's name:
// a second positional that is a directory and a `-o` make it one.
unionrs_only!(mount_fuse_form_with_a_verb_as_source, |_fs| {
    let l = Layers::read_only(1);
    write(l.l(1).join("f"), "src");
    let lowers = format!("lowerdir={}", l.l(1).display());
    let out = Command::new(unionrs_bin())
        .arg("pull")
        .arg(&l.mnt)
        .args(["-o", &lowers])
        .output()
        .unwrap();
    let fstype = mounted_fstype(&l.mnt);
    let content = std::fs::read_to_string(l.m("f"));
    if fstype.is_some() {
        let ok = Command::new("umount")
            .arg(&l.mnt)
            .status()
            .unwrap()
            .success();
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&l.mnt).status();
        }
    }
    assert!(
        out.status.success(),
        "unionrs pull MNT -o ...: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fstype.as_deref(), Some("fuse.unionrs"));
    assert_eq!(content.unwrap(), "src");
    assert!(wait_unmounted(&l.mnt));
});

// A second mount of the same upper/workdir is refused while the first is live (the kernel
// refuses it too).
unionrs_only!(second_mount_of_same_workdir_is_refused, |fs| {
    let l = Layers::new(1);
    let m2 = l.dir.path().join("m2");
    std::fs::create_dir(&m2).unwrap();
    let _first = mount(fs, &l, &[]);
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.l(1).display(),
        l.upper.as_ref().unwrap().display(),
        l.work.display()
    );
    let out = Command::new(unionrs_bin())
        .args(["-o", &opts])
        .arg(&m2)
        .output()
        .unwrap();
    assert!(!out.status.success(), "second mount must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another mount"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert!(mounted_fstype(&m2).is_none(), "nothing mounted at m2");
});

// `unionrs stats MNT` answers from the live daemon: copy-ups, cached inodes, requests.
unionrs_only!(stats_of_a_live_mount, |fs| {
    let l = Layers::new(1);
    write(l.l(1).join("f"), "lower");
    let m = mount(fs, &l, &[]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(l.m("f"))
        .unwrap();
    let out = Command::new(unionrs_bin())
        .arg("stats")
        .arg(&l.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_string))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    assert_eq!(value("copy_ups"), "1");
    assert_eq!(value("copy_up_bytes"), "5");
    assert!(value("cached_inodes").parse::<u64>().unwrap() >= 1);
    assert!(value("requests.open").parse::<u64>().unwrap() >= 1);
    assert!(["on", "off"].contains(&value("passthrough").as_str()));
    assert!(value("rss_bytes").parse::<u64>().unwrap() > 0);
    drop(m);
    let out = Command::new(unionrs_bin())
        .arg("stats")
        .arg(&l.mnt)
        .output()
        .unwrap();
    assert!(!out.status.success(), "no stats once unmounted");
});
