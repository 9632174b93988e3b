//! `unionrs run` through the installed OCI runtime (runc) over a real union mount of a
//! busybox image: exit status, output, --rm clean-up, diff/commit of what the command
//! wrote, -e/-w/--user and the image's Env/WorkingDir/User, signal forwarding, --network.
//! Needs root, /dev/fuse, runc and busybox-static (scripts/setup.sh installs them): fails
//! loudly without them.

mod image_util;
use image_util::*;
use serde_json::json;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A store holding `bb:1`: busybox with Cmd `echo from-cmd` and PATH=/bin.
fn store_with_busybox(tmp: &Path) -> (std::path::PathBuf, Layer) {
    let store = tmp.join("store");
    let bb = busybox_layer();
    load_image(
        &store,
        tmp,
        "bb:1",
        &[&bb],
        config_with(
            &[&bb],
            json!({"Cmd": ["sh", "-c", "echo from-cmd"], "Env": ["PATH=/bin"]}),
        ),
    );
    (store, bb)
}

fn status(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command exited with `code` and printed exactly `stdout` (stderr shown on failure).
fn assert_ran(o: &Output, code: i32, stdout: &str) {
    assert_eq!((status(o), out(o).as_str()), (code, stdout), "{}", err(o));
}

/// Nothing of the store is mounted and no container dir is left.
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

#[test]
fn exit_status_and_output_pass_through_and_rm_leaves_nothing() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));

    // The image's Cmd.
    let o = unionrs(&store, &["run", "--rm", "bb:1"]);
    assert_ran(&o, 0, "from-cmd\n");
    // A command, its stdout, stderr and exit status; options after the image are the
    // command's.
    let o = unionrs(
        &store,
        &[
            "run",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "echo out --rm; echo err >&2; exit 42",
        ],
    );
    assert_eq!(status(&o), 42, "{}", err(&o));
    assert_eq!(out(&o), "out --rm\n");
    assert_eq!(err(&o), "err\n");
    // A relative --store works too (the runtime gets absolute paths).
    let o = Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .current_dir(tmp.path())
        .args(["--store", "store", "run", "--rm", "bb:1", "pwd"])
        .output()
        .unwrap();
    assert_ran(&o, 0, "/\n");
    // `--` before the command is dropped.
    let o = unionrs(&store, &["run", "--rm", "bb:1", "--", "echo", "-n", "x"]);
    assert_ran(&o, 0, "x");
    assert_no_container(&store);

    // A command missing from the image: Docker's 127, one line, nothing left behind,
    // with or without --rm.
    for rm in [true, false] {
        let mut args = vec!["run"];
        if rm {
            args.push("--rm");
        }
        args.extend(["bb:1", "no-such-cmd"]);
        let o = unionrs(&store, &args);
        assert_eq!(status(&o), 127, "{}", err(&o));
        assert_eq!(
            err(&o).trim(),
            "unionrs: run: command \"no-such-cmd\" not found in the image (PATH=/bin)"
        );
        assert_no_container(&store);
    }
    let o = unionrs(&store, &["run", "--rm", "bb:1", "/etc/passwd"]);
    assert_eq!(status(&o), 126, "{}", err(&o));
    assert!(err(&o).contains("not an executable file"), "{}", err(&o));

    // unionrs's own errors exit 125 with one line, and leave nothing.
    let o = unionrs(&store, &["run", "--rm", "nope:1", "sh"]);
    assert_eq!(status(&o), 125);
    assert_eq!(err(&o).trim(), "unionrs: run: no such image: nope:1");
    let o = unionrs(&store, &["run", "--runtime", "/nonexistent/runc", "bb:1"]);
    assert_eq!(status(&o), 125);
    assert_eq!(
        err(&o).trim(),
        "unionrs: run: --runtime /nonexistent/runc: not an executable file"
    );
    // A usage error: docker's two lines, what is wrong and where the help is.
    let o = unionrs(&store, &["run", "--rm"]);
    assert_eq!(status(&o), 125);
    assert_eq!(err(&o).lines().count(), 2, "{}", err(&o));
    assert_eq!(err(&o).lines().last(), Some("See 'unionrs run --help'."));
    let o = unionrs(&store, &["run", "-w", "rel", "bb:1"]);
    assert_eq!(status(&o), 125);
    assert!(err(&o).contains("must be absolute"), "{}", err(&o));
    // An image without Cmd or Entrypoint and no command given.
    let bb = busybox_layer();
    load_image(
        &store,
        tmp.path(),
        "nocmd:1",
        &[&bb],
        config_with(&[&bb], json!({"Env": ["PATH=/bin"]})),
    );
    let o = unionrs(&store, &["run", "--rm", "nocmd:1"]);
    assert_eq!(status(&o), 125);
    assert_eq!(
        err(&o).trim(),
        "unionrs: run: no command: image nocmd:1 has no Cmd or Entrypoint; give one after the image"
    );
    // A runtime that fails to start the container: its status, and --rm still cleans up.
    let o = unionrs(
        &store,
        &["run", "--rm", "--runtime", "/bin/false", "bb:1", "sh"],
    );
    assert_eq!(status(&o), 1);
    assert_no_container(&store);
}

#[test]
fn what_the_command_writes_is_in_diff_survives_commit_and_runs() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let o = unionrs(
        &store,
        &[
            "run",
            "--name",
            "keep",
            "bb:1",
            "sh",
            "-c",
            "echo data > /made && rm /etc/group && mkdir /newdir",
        ],
    );
    assert_eq!(status(&o), 0, "{}", err(&o));
    // Without --rm the container stays, mounted, listed by ps.
    let ps = ok(&store, &["ps", "-a"]);
    assert!(
        ps.contains(" keep\n")
            && ps.contains("bb:1")
            && ps.contains("Exited (0)")
            && ps.contains("(mounted)"),
        "{ps}"
    );
    assert_eq!(
        fs::read(store.join("containers/keep/merged/made")).unwrap(),
        b"data\n"
    );
    // Only the command's changes: the mount points runc had to add (the image has no
    // /proc, /dev, /sys) are gone again, and the bundle is not in the container's tree.
    let diff = ok(&store, &["diff", "keep"]);
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        ["C /etc", "D /etc/group", "A /made", "A /newdir"],
        "{diff}"
    );
    // A second run of the same name is refused while it exists.
    let o = unionrs(&store, &["run", "--name", "keep", "bb:1", "true"]);
    assert_eq!(status(&o), 125);
    assert!(err(&o).contains("already exists"), "{}", err(&o));
    let id = ok(&store, &["commit", "keep", "bb:2"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let o = unionrs(
        &store,
        &[
            "run",
            "--rm",
            "bb:2",
            "sh",
            "-c",
            "cat /made; test -e /etc/group || echo nogroup",
        ],
    );
    assert_ran(&o, 0, "data\nnogroup\n");
    ok(&store, &["rm", "keep"]);
    assert_no_container(&store);
}

#[test]
fn env_workdir_and_user_from_the_image_and_the_flags() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let bb = busybox_layer();
    load_image(
        &store,
        tmp.path(),
        "cfg:1",
        &[&bb],
        config_with(
            &[&bb],
            json!({"Cmd": ["sh"], "Env": ["PATH=/bin", "IMG=image", "KEEP=k"],
                   "WorkingDir": "/tmp", "User": "app"}),
        ),
    );
    let _guard = UnmountUnder(store.join("containers"));
    let script = "echo $IMG $KEEP $HOME; pwd; id -u; id -g; id -G; touch ./w && echo wrote";
    // The image's Env, WorkingDir and User.
    let o = unionrs(&store, &["run", "--rm", "cfg:1", "sh", "-c", script]);
    assert_ran(
        &o,
        0,
        "image k /home/app\n/tmp\n1000\n1000\n1000 50\nwrote\n",
    );
    // The flags win; a workdir the image lacks is created.
    let o = unionrs(
        &store,
        &[
            "run",
            "--rm",
            "-e",
            "IMG=flag",
            "--env=HOME=/h",
            "-w",
            "/work/dir",
            "--user",
            "0:50",
            "cfg:1",
            "sh",
            "-c",
            script,
        ],
    );
    assert_ran(&o, 0, "flag k /h\n/work/dir\n0\n50\n50\nwrote\n");
    // A numeric user the image does not know: gid 0, HOME=/; it cannot write in / (the
    // kernel checks the union's permissions for it).
    let o = unionrs(
        &store,
        &[
            "run",
            "--rm",
            "-u",
            "4242",
            "-w",
            "/",
            "cfg:1",
            "sh",
            "-c",
            "id -u; id -g; echo $HOME; touch /x 2>/dev/null || echo denied",
        ],
    );
    assert_ran(&o, 0, "4242\n0\n/\ndenied\n");
    let o = unionrs(&store, &["run", "--rm", "-u", "nobody", "cfg:1", "true"]);
    assert_eq!(status(&o), 125);
    assert_eq!(
        err(&o).trim(),
        "unionrs: run: user \"nobody\" is not in the image's /etc/passwd (give a numeric uid)"
    );
    assert_no_container(&store);
}

#[test]
fn a_signal_to_unionrs_reaches_the_command_and_rm_still_cleans_up() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let child = Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(&store)
        .args([
            "run",
            "--rm",
            "--name",
            "sig",
            "bb:1",
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready > /ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = store.join("containers/sig/merged/ready");
    let t0 = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            t0.elapsed().as_secs() < 30,
            "the command did not start in 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The store is not locked while the command runs.
    let ps = ok(&store, &["ps", "-a"]);
    assert!(ps.contains(" sig\n") && ps.contains("Up "), "{ps}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(status(&o), 3, "{}", err(&o));
    assert_eq!(out(&o), "got-term\n");
    assert_no_container(&store);
}

#[test]
fn network_host_shares_the_interfaces_and_none_has_only_loopback() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let names = |dev: &str| -> Vec<String> {
        let mut v: Vec<String> = dev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|s| s.trim().to_string())
            .collect();
        v.sort();
        v
    };
    let host = names(&fs::read_to_string("/proc/net/dev").unwrap());
    let o = unionrs(&store, &["run", "--rm", "bb:1", "cat", "/proc/net/dev"]);
    assert_eq!(status(&o), 0, "{}", err(&o));
    assert_eq!(names(&out(&o)), host);
    let o = unionrs(
        &store,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "cat",
            "/proc/net/dev",
        ],
    );
    assert_eq!(status(&o), 0, "{}", err(&o));
    assert_eq!(names(&out(&o)), ["lo"]);
    assert_no_container(&store);
}
