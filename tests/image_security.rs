//! Container confinement through `unionrs run` and runc, in real containers of a busybox
//! image: the default seccomp profile refuses user namespaces and mount() with EPERM and
//! does not get in the way of ordinary work; `--security-opt seccomp=unconfined|FILE`,
//! `--privileged`, `--cap-add/--cap-drop` and `no-new-privileges` do what docker's do,
//! as /proc/self/status shows; bad flags are one-line errors that leave nothing behind.
//! Needs root, /dev/fuse, runc built with libseccomp, and busybox-static.

mod image_util;
use image_util::*;
use serde_json::json;
use std::fs;
use std::path::Path;
use std::process::Output;

/// `run --rm [flags] bb:1 sh -c script`.
fn run_sh(store: &Path, flags: &[&str], script: &str) -> Output {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend(["bb:1", "sh", "-c", script]);
    unionrs(store, &args)
}

/// Runs `script`, insists on exit 0, returns stdout.
fn sh_ok(store: &Path, flags: &[&str], script: &str) -> String {
    let o = run_sh(store, flags, script);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{flags:?} {script}: stdout {} stderr {}",
        out(&o),
        err(&o)
    );
    out(&o)
}

/// The value of `Field:` in the container's /proc/self/status.
fn status_field(store: &Path, flags: &[&str], field: &str) -> String {
    let s = sh_ok(store, flags, "cat /proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {s}"))
        .trim()
        .to_string()
}

fn assert_no_container(store: &Path) {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let s = store.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&s)),
        "a mount of the store is left:\n{mounts}"
    );
    let left: Vec<_> = fs::read_dir(store.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
}

const UNSHARE_USER: &str = "busybox unshare -U true";
const MOUNT_TMPFS: &str = "mkdir -p /mnt && busybox mount -t tmpfs none /mnt && echo mounted";

#[test]
fn user_namespaces_and_mount_are_refused_by_default_and_allowed_when_asked() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));

    // The default profile: EPERM for both (busybox mount words EPERM "permission
    // denied (are you root?)").
    for (script, eperm) in [
        (UNSHARE_USER, "Operation not permitted"),
        (MOUNT_TMPFS, "permission denied (are you root?)"),
    ] {
        let o = run_sh(&store, &[], script);
        assert_ne!(o.status.code(), Some(0), "{script}: {}", out(&o));
        assert!(err(&o).contains(eperm), "{script}: {}", err(&o));
    }
    // A user namespace needs no capability: only the profile stood in the way.
    sh_ok(
        &store,
        &["--security-opt", "seccomp=unconfined"],
        UNSHARE_USER,
    );
    // mount needs CAP_SYS_ADMIN as well: --privileged gives both.
    assert_eq!(sh_ok(&store, &["--privileged"], MOUNT_TMPFS), "mounted\n");
    // The profile follows the capabilities: with CAP_SYS_ADMIN added, docker's rule for
    // mount (and unshare) applies.
    assert_eq!(
        sh_ok(&store, &["--cap-add", "SYS_ADMIN"], MOUNT_TMPFS),
        "mounted\n"
    );
    // A profile file applies even with every capability: one that refuses only mount.
    let f = tmp.path().join("nomount.json");
    fs::write(
        &f,
        br#"{"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", f.display());
    let o = run_sh(
        &store,
        &["--privileged", "--security-opt", &opt],
        MOUNT_TMPFS,
    );
    assert_ne!(o.status.code(), Some(0), "{}", out(&o));
    assert!(err(&o).contains("are you root?"), "{}", err(&o));
    sh_ok(&store, &["--security-opt", &opt], UNSHARE_USER);
    assert_no_container(&store);
}

/// The bit mask of capabilities `names` (kernel numbers from capability.h).
fn mask(names: &[u32]) -> String {
    format!("{:016x}", names.iter().fold(0u64, |m, n| m | 1 << n))
}

#[test]
fn capabilities_follow_cap_add_cap_drop_and_privileged() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    // Docker's default set: CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6,
    // SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10, NET_RAW 13, SYS_CHROOT 18, MKNOD 27,
    // AUDIT_WRITE 29, SETFCAP 31.
    let default = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
    assert_eq!(status_field(&store, &[], "CapEff"), mask(&default));
    assert_eq!(status_field(&store, &[], "CapBnd"), mask(&default));
    let mut v: Vec<u32> = default.iter().copied().filter(|c| *c != 0).collect();
    v.push(21);
    assert_eq!(
        status_field(
            &store,
            &["--cap-drop", "chown", "--cap-add", "CAP_SYS_ADMIN"],
            "CapEff"
        ),
        mask(&v)
    );
    assert_eq!(
        status_field(&store, &["--cap-drop=ALL", "--cap-add=net_raw"], "CapEff"),
        mask(&[13])
    );
    // Every capability unionrs holds itself (its bounding set; a sandbox may lack some).
    let own = fs::read_to_string("/proc/self/status").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap();
    let own = u64::from_str_radix(own.trim(), 16).unwrap();
    let all: Vec<u32> = (0..64).filter(|c| own & 1 << c != 0).collect();
    assert_eq!(
        status_field(&store, &["--privileged"], "CapEff"),
        mask(&all)
    );
    let mut but_admin = all.clone();
    but_admin.retain(|c| *c != 21);
    assert_eq!(
        status_field(
            &store,
            &["--cap-add", "ALL", "--cap-drop", "SYS_ADMIN"],
            "CapEff"
        ),
        mask(&but_admin)
    );
    assert_no_container(&store);
}

#[test]
fn seccomp_and_no_new_privileges_show_in_proc_status() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    // Seccomp: 2 is filter mode, 0 none.
    assert_eq!(status_field(&store, &[], "Seccomp"), "2");
    assert_eq!(status_field(&store, &[], "NoNewPrivs"), "0");
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    assert_eq!(status_field(&store, &unconfined, "Seccomp"), "0");
    assert_eq!(status_field(&store, &["--privileged"], "Seccomp"), "0");
    for nnp in [
        "no-new-privileges",
        "no-new-privileges=true",
        "no-new-privileges:true",
    ] {
        assert_eq!(
            status_field(&store, &["--security-opt", nnp], "NoNewPrivs"),
            "1",
            "{nnp}"
        );
    }
    assert_eq!(
        status_field(
            &store,
            &["--security-opt", "no-new-privileges=false"],
            "NoNewPrivs"
        ),
        "0"
    );
    // --privileged: the host's devices, /proc/sys writable, /proc/timer_list not masked
    // (by default: no /dev/fuse, read-only /proc/sys, an empty timer_list).
    let probe = "test -c /dev/fuse && echo fuse; \
                 touch /proc/sys/kernel/hostname 2>/dev/null && echo procsys; \
                 busybox wc -c < /proc/timer_list";
    assert_eq!(sh_ok(&store, &[], probe), "0\n");
    let p = sh_ok(&store, &["--privileged"], probe);
    let lines: Vec<&str> = p.lines().collect();
    assert_eq!(lines[..2], ["fuse", "procsys"], "{p}");
    assert!(lines[2].parse::<u64>().unwrap() > 0, "{p}");
    // The runtime's state (each container's spec and environment) is root's alone.
    use std::os::unix::fs::PermissionsExt;
    for d in ["/run/unionrs", "/run/unionrs/runc"] {
        let mode = fs::metadata(d).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }
    assert_no_container(&store);
}

#[test]
fn bad_security_flags_are_one_line_errors_and_leave_nothing() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let bad_json = write(tmp.path(), "bad.json", b"{\"defaultAction\": ");
    let bad_action = write(
        tmp.path(),
        "act.json",
        br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}]}"#,
    );
    let opt = |p: &Path| format!("seccomp={}", p.display());
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--cap-add".into(), "CAP_BOGUS".into()],
            "unionrs: run: --cap-add \"CAP_BOGUS\": unknown capability (see capabilities(7))"
                .into(),
        ),
        (
            vec!["--cap-drop".into(), "nope".into()],
            "unionrs: run: --cap-drop \"nope\": unknown capability (see capabilities(7))".into(),
        ),
        (
            vec![
                "--security-opt".into(),
                "seccomp=/nonexistent/p.json".into(),
            ],
            "unionrs: run: --security-opt seccomp=/nonexistent/p.json: No such file or \
             directory (os error 2)"
                .into(),
        ),
        (
            vec!["--security-opt".into(), opt(&bad_json)],
            format!(
                "unionrs: run: --security-opt {}: not a profile: EOF while parsing a value at \
                 line 1 column 18",
                opt(&bad_json)
            ),
        ),
        (
            vec!["--security-opt".into(), opt(&bad_action)],
            format!(
                "unionrs: run: --security-opt {}: syscalls[0]: unknown action \"SCMP_ACT_MAYBE\"",
                opt(&bad_action)
            ),
        ),
    ];
    for (flags, want) in cases {
        let mut args: Vec<&str> = vec!["run", "--rm", "--name", "bad"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["bb:1", "true"]);
        let o = unionrs(&store, &args);
        assert_eq!(o.status.code(), Some(125), "{flags:?}: {}", err(&o));
        assert_eq!(err(&o).trim_end(), want, "{flags:?}");
        assert_eq!(err(&o).lines().count(), 1);
        assert_no_container(&store);
    }
    let o = unionrs(&store, &["run", "--security-opt", "label=disable", "bb:1"]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    assert_no_container(&store);
}

#[test]
fn the_default_profile_does_not_get_in_the_way_of_ordinary_work() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    // Files, owners, modes, links, renames, pipes, background jobs, subshells, a chroot
    // (CAP_SYS_CHROOT is a default capability), sleeping, and ping's ICMP socket on the
    // host's loopback.
    let script = r#"
        set -e
        cd /tmp
        mkdir -p a/b/c
        for i in 1 2 3 4 5; do echo "line $i" > a/b/c/f$i; done
        # Left: f1, f2, f3 and a link to f2 in c, the hard link and the moved file.
        busybox chown -R 1000:1000 a
        busybox chmod 0600 a/b/c/f1
        busybox ln -s f2 a/b/c/link
        busybox ln a/b/c/f3 a/hard
        busybox mv a/b/c/f4 a/moved
        rm a/b/c/f5
        cat a/b/c/* a/hard a/moved | wc -l
        busybox stat -c '%u:%g %a' a/b/c/f1
        (sleep 0.1; echo background) &
        wait
        echo "$(echo sub | busybox tr a-z A-Z)"
        busybox chroot / /bin/true && echo chroot
        busybox ping -c 1 -W 5 127.0.0.1 >/dev/null && echo ping
        busybox date +%Y >/dev/null && echo date
    "#;
    assert_eq!(
        sh_ok(&store, &[], script),
        "6\n1000:1000 600\nbackground\nSUB\nchroot\nping\ndate\n"
    );
    // And as a user other than root.
    assert_eq!(
        sh_ok(
            &store,
            &["-u", "1000"],
            "cd /tmp && echo x > mine && busybox stat -c %u mine"
        ),
        "1000\n"
    );
    assert_no_container(&store);
}

#[test]
fn an_image_symlink_cannot_make_unionrs_read_a_host_file() {
    preflight();
    // unionrs reads the image's /etc/passwd and /etc/group itself, as root on the host, to
    // resolve `-u NAME`: symlinks there, absolute or climbing with `..`, resolve inside the
    // image (the host has no /etc/in-image-*).
    for host_path in ["/etc/in-image-passwd", "/etc/in-image-group"] {
        assert!(
            !Path::new(host_path).exists(),
            "{host_path} exists on the host"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let bb = busybox_layer();
    let links = layer(
        &[
            dir("etc"),
            file(
                "etc/in-image-passwd",
                b"root:x:0:0:root:/root:/bin/sh\nimg:x:4321:4321:img:/:/bin/sh\n",
            ),
            file(
                "etc/in-image-group",
                b"root:x:0:\nimg:x:4321:\nextra:x:77:img\n",
            ),
            symlink("etc/passwd", "/etc/in-image-passwd"),
            symlink("etc/group", "../../../../../../../../etc/in-image-group"),
        ],
        Comp::Gzip,
    );
    load_image(
        &store,
        tmp.path(),
        "bb:1",
        &[&bb, &links],
        config_with(&[&bb, &links], json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]})),
    );
    let _guard = UnmountUnder(store.join("containers"));
    assert_eq!(
        sh_ok(&store, &["-u", "img"], "id -u; id -G"),
        "4321\n4321 77\n"
    );
    assert_no_container(&store);
}

/// A layer with `bin` and the shared objects it needs (as `ldd` lists them), each at its
/// host path.
fn host_binary_layer(bin: &str) -> Layer {
    let ldd = std::process::Command::new("ldd").arg(bin).output().unwrap();
    assert!(ldd.status.success(), "ldd {bin} failed");
    let mut paths = vec![bin.to_string()];
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        let p = l.split("=>").last().unwrap().trim();
        if let Some(p) = p.split_whitespace().next().filter(|p| p.starts_with('/')) {
            paths.push(p.to_string());
        }
    }
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for p in &paths {
        let rel = p.trim_start_matches('/');
        let mut d = Path::new(rel).parent();
        while let Some(x) = d.filter(|x| !x.as_os_str().is_empty()) {
            dirs.insert(x.to_string_lossy().into_owned());
            d = x.parent();
        }
        entries.push(E {
            mode: 0o755,
            ..file(rel, &fs::read(p).unwrap())
        });
    }
    let mut all: Vec<E> = dirs.iter().map(|d| dir(d)).collect();
    all.extend(entries);
    layer(&all, Comp::Gzip)
}

#[test]
fn threads_start_under_the_default_profile_as_clone3_answers_enosys() {
    // glibc's pthread_create tries clone3 first and falls back to clone only on ENOSYS:
    // the default profile's answer. A profile answering EPERM instead breaks threads,
    // which shows the fallback is what made them work. xz (with its libraries from the
    // host) compresses with two threads.
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let bb = busybox_layer();
    let xz = host_binary_layer("/usr/bin/xz");
    load_image(
        &store,
        tmp.path(),
        "bb:1",
        &[&bb, &xz],
        config_with(&[&bb, &xz], json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]})),
    );
    let _guard = UnmountUnder(store.join("containers"));
    let script = "busybox head -c 3000000 /dev/urandom > /tmp/in && \
                  /usr/bin/xz -vv -T2 --block-size=1000000 -0 -c /tmp/in > /tmp/o.xz && \
                  /usr/bin/xz -t /tmp/o.xz && echo ok";
    let o = run_sh(&store, &[], script);
    assert_eq!(
        (o.status.code(), out(&o).as_str()),
        (Some(0), "ok\n"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("Using up to 2 threads"), "{}", err(&o));
    let eperm = write(
        tmp.path(),
        "clone3-eperm.json",
        br#"{"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    );
    let opt = format!("seccomp={}", eperm.display());
    let o = run_sh(&store, &["--security-opt", &opt], script);
    assert_ne!(o.status.code(), Some(0), "{}", out(&o));
    assert_no_container(&store);
}

/// A plain layer holding one character device `name` MAJOR:MINOR (the tar helper writes
/// no device numbers: they are patched into the header here).
fn device_layer(name: &str, major: u32, minor: u32) -> Layer {
    let mut t = tar(&[E {
        kind: b'3',
        mode: 0o666,
        ..file(name, b"")
    }]);
    let h = &mut t[..512];
    h[329..337].copy_from_slice(format!("{major:07o}\0").as_bytes());
    h[337..345].copy_from_slice(format!("{minor:07o}\0").as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Layer {
        diff_id: format!("sha256:{}", sha(&t)),
        blob: t,
    }
}

#[test]
fn a_device_node_shipped_in_a_layer_cannot_be_opened_in_a_container() {
    preflight();
    // /dev/fuse's numbers (misc 229): not among the runtime's default devices, and opening
    // it needs no capability, so only the device rules stand in the way.
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let bb = busybox_layer();
    let dev = device_layer("evil-fuse", 10, 229);
    load_image(
        &store,
        tmp.path(),
        "bb:1",
        &[&bb, &dev],
        config_with(&[&bb, &dev], json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]})),
    );
    let _guard = UnmountUnder(store.join("containers"));
    let script = "busybox stat -c '%F %t:%T' /evil-fuse; exec 3</evil-fuse && echo opened";
    let o = run_sh(&store, &[], script);
    assert_eq!(out(&o), "character special file a:e5\n", "{}", err(&o));
    assert!(err(&o).contains("Operation not permitted"), "{}", err(&o));
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        sh_ok(&store, &["--privileged"], script),
        "character special file a:e5\nopened\n"
    );
    assert_no_container(&store);
}
