//! Containers that live: `run -d` under a monitor, `ps` from the runtime's state, logs,
//! exec (with and without a terminal), stop/start/restart/kill/wait, commit of a running
//! container, `-p` through a private network namespace and pasta, `rm -f` after the monitor
//! was killed. Real runc, real union mounts, real pasta; needs root, /dev/fuse, runc,
//! busybox-static and passt (scripts/setup.sh installs them): fails loudly without them.

mod image_util;
use image_util::*;
use serde_json::json;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// busybox with the applets these tests use, a web root /www and a tiny CGI-free page.
fn store(tmp: &Path) -> PathBuf {
    let store = tmp.join("store");
    let bin = fs::read("/bin/busybox").expect("/bin/busybox: apt-get install busybox-static");
    let mut entries = vec![
        dir("bin"),
        E {
            mode: 0o755,
            ..file("bin/busybox", &bin)
        },
    ];
    for a in [
        "sh", "cat", "echo", "sleep", "httpd", "nc", "tty", "stty", "id", "ls", "true", "kill",
        "touch",
    ] {
        entries.push(symlink(&format!("bin/{a}"), "busybox"));
    }
    entries.extend([
        dir("etc"),
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        file("etc/group", b"root:x:0:\n"),
        E {
            mode: 0o1777,
            ..dir("tmp")
        },
        dir("www"),
        file("www/index.html", b"hello from the image\n"),
    ]);
    let l = layer(&entries, Comp::Gzip);
    load_image(
        &store,
        tmp,
        "bb:1",
        &[&l],
        config_with(
            &[&l],
            json!({"Cmd": ["sh"], "Env": ["PATH=/bin"], "ExposedPorts": {"8080/tcp": {}}}),
        ),
    );
    store
}

/// Removes every container of the store (rm -f) on drop, then unmounts what is left, so
/// a failed test leaves no container, monitor, forwarder or mount behind.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(self.0.join("containers")) {
            for e in rd.flatten() {
                let _ = unionrs(&self.0, &["rm", "-f", &e.file_name().to_string_lossy()]);
            }
        }
        drop(UnmountUnder(self.0.join("containers")));
    }
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited")
}

/// A free TCP port on 127.0.0.1 (bound and let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / over HTTP/1.0 from 127.0.0.1:port; the body. Retries for up to 10 s while the
/// server starts.
fn http_get(port: u16) -> String {
    let t = Instant::now();
    loop {
        let r = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match r {
            Ok(resp) if resp.starts_with("HTTP/1.") => {
                return resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            }
            other => {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "no HTTP answer on 127.0.0.1:{port}: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// `ps -a`'s line for the container called `name`.
fn ps_line(store: &Path, name: &str) -> String {
    let ps = ok(store, &["ps", "-a"]);
    ps.lines()
        .find(|l| l.ends_with(&format!(" {name}")))
        .unwrap_or_else(|| panic!("{name} not in ps -a:\n{ps}"))
        .to_string()
}

fn mounts_of(store: &Path) -> Vec<String> {
    let s = store.display().to_string();
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&s))
        .map(str::to_string)
        .collect()
}

/// Processes whose command line mentions `needle`, but ours.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(c) = fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push(format!("{pid}: {c}"));
            }
        }
    }
    out
}

/// The container's ID (64 hex) from its container.json (remembered for the check that its
/// attach socket goes with it).
fn id_of(store: &Path, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(
        &fs::read(store.join("containers").join(name).join("container.json")).unwrap(),
    )
    .unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    STARTED
        .lock()
        .unwrap()
        .push((store.to_path_buf(), id.clone()));
    id
}

/// IDs of the containers the tests looked at.
static STARTED: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

fn netns_exists(id: &str) -> bool {
    Path::new("/run/netns")
        .join(format!("unionrs-{}", &id[..12]))
        .exists()
}

/// Nothing of the store's containers is left: no dir, mount, monitor, forwarder or attach
/// socket.
fn assert_nothing_left(store: &Path) {
    let ids = STARTED.lock().unwrap().clone();
    for (_, id) in ids.iter().filter(|(s, _)| s == store) {
        let sock = format!("/run/unionrs/attach-{}.sock", &id[..12]);
        assert!(!Path::new(&sock).exists(), "{sock} left");
    }
    let left: Vec<_> = fs::read_dir(store.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
    assert_eq!(mounts_of(store), Vec::<String>::new());
    assert_eq!(
        processes_with(&store.display().to_string()),
        Vec::<String>::new()
    );
}

#[test]
fn detached_server_ports_logs_exec_commit_stop_start() {
    preflight();
    assert!(
        Path::new("/usr/bin/pasta").exists(),
        "pasta is missing: apt-get install passt (scripts/setup.sh)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let id = ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &publish,
            "bb:1",
            "sh",
            "-c",
            "echo serving; echo warming >&2; exec httpd -f -p 8080 -h /www",
        ],
    );
    let id = id.trim();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "run -d printed {id:?}"
    );
    assert_eq!(id, id_of(&store, "web"));
    assert!(netns_exists(id));
    // The server answers through pasta on the published port.
    assert_eq!(http_get(port), "hello from the image\n");
    let line = ps_line(&store, "web");
    assert!(line.starts_with(&id[..12]), "{line}");
    for want in ["bb:1", "Up ", &format!("127.0.0.1:{port}->8080/tcp")] {
        assert!(line.contains(want), "{want:?} missing: {line}");
    }
    // ps without -a lists it (it runs); -q prints the short ID; json has docker's names.
    assert!(ok(&store, &["ps"]).contains(" web\n"));
    assert_eq!(ok(&store, &["ps", "-q"]), format!("{}\n", &id[..12]));
    let j: serde_json::Value =
        serde_json::from_str(ok(&store, &["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(
        (j["ID"].as_str(), j["State"].as_str()),
        (Some(&id[..12]), Some("running"))
    );

    // Logs: stdout and stderr kept apart, with timestamps on request, --tail.
    let t = Instant::now();
    while !ok(&store, &["logs", "web"]).contains("serving") {
        assert!(t.elapsed() < Duration::from_secs(10), "no log");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = unionrs(&store, &["logs", &id[..8]]);
    assert_eq!((out(&o), err(&o)), ("serving\n".into(), "warming\n".into()));
    // --tail counts lines of both streams (which of the two came last is a race).
    let o = unionrs(&store, &["logs", "-t", "--tail", "1", "web"]);
    let both = out(&o) + &err(&o);
    assert_eq!(both.lines().count(), 1, "{both}");
    assert!(both.starts_with("20") && both.contains("Z "), "{both}");
    let o = unionrs(&store, &["logs", "-t", "web"]);
    assert!(
        out(&o).starts_with("20") && out(&o).ends_with("Z serving\n"),
        "{}",
        out(&o)
    );

    // exec changes a file: the server serves it, and a commit while it runs keeps it.
    let o = unionrs(
        &store,
        &[
            "exec",
            "web",
            "sh",
            "-c",
            "echo changed by exec > /www/index.html; exit 7",
        ],
    );
    assert_eq!(code(&o), 7, "{}", err(&o));
    assert_eq!(http_get(port), "changed by exec\n");
    // Docker's statuses for a command that is missing or not executable.
    let o = unionrs(&store, &["exec", "web", "nosuchcmd"]);
    assert_eq!(code(&o), 127, "{}", err(&o));
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    let o = unionrs(&store, &["exec", "web", "/www/index.html"]);
    assert_eq!(code(&o), 126, "{}", err(&o));
    let o = unionrs(
        &store,
        &[
            "exec",
            "-e",
            "A=b",
            "-w",
            "/www",
            "web",
            "sh",
            "-c",
            "echo $A $PWD",
        ],
    );
    assert_eq!(out(&o), "b /www\n", "{}", err(&o));
    ok(
        &store,
        &["commit", "-m", "changed", "-a", "tester", "web", "web:2"],
    );
    assert!(
        ps_line(&store, "web").contains("Up "),
        "commit left it paused"
    );
    let o = unionrs(&store, &["run", "--rm", "web:2", "cat", "/www/index.html"]);
    assert_eq!(out(&o), "changed by exec\n", "{}", err(&o));

    // top: the container's processes, from the host's ps.
    let top = ok(&store, &["top", "web"]);
    assert!(
        top.starts_with("UID") && top.contains("httpd -f -p 8080"),
        "{top}"
    );
    // pause / unpause.
    ok(&store, &["pause", "web"]);
    assert!(ps_line(&store, "web").contains("(Paused)"));
    ok(&store, &["unpause", "web"]);

    // stop: SIGTERM (httpd as PID 1 ignores it), SIGKILL after -t; everything goes down.
    ok(&store, &["stop", "-t", "1", "web"]);
    let line = ps_line(&store, "web");
    assert!(line.contains("Exited (137)"), "{line}");
    assert!(mounts_of(&store).is_empty(), "{:?}", mounts_of(&store));
    assert!(!netns_exists(id));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open after stop: {}",
        String::from_utf8_lossy(&Command::new("ss").args(["-ltnp"]).output().unwrap().stdout)
    );
    assert!(ok(&store, &["ps"]).lines().count() == 1);
    // exec into a stopped container: one line, 125.
    let o = unionrs(&store, &["exec", "web", "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    assert!(err(&o).contains("not running"), "{}", err(&o));

    // start again: the upper kept the change; restart too.
    ok(&store, &["start", "web"]);
    assert_eq!(http_get(port), "changed by exec\n");
    ok(&store, &["restart", "-t", "0", "web"]);
    assert_eq!(http_get(port), "changed by exec\n");
    assert!(ok(&store, &["logs", "web"]).matches("serving").count() == 3);

    // kill + wait: docker's 128+signal.
    ok(&store, &["kill", "web"]);
    assert_eq!(ok(&store, &["wait", "web"]), "137\n");
    ok(&store, &["rm", "web"]);
    assert_nothing_left(&store);

    // -p in the foreground: served while the command runs, gone with --rm.
    let fg_port = free_port();
    let fg_publish = format!("127.0.0.1:{fg_port}:8080");
    let child = Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(&store)
        .args(["run", "--rm", "-p", &fg_publish, "bb:1", "sh", "-c"])
        .arg("httpd -p 8080 -h /www; sleep 2; exit 6")
        .spawn()
        .unwrap();
    assert_eq!(http_get(fg_port), "hello from the image\n");
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 6);
    assert!(TcpStream::connect(("127.0.0.1", fg_port)).is_err());
    assert_nothing_left(&store);
}

#[test]
fn port_in_use_fails_in_one_line_and_leaves_nothing() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let netns_before = fs::read_dir("/run/netns").map_or(0, |d| d.count());
    for detach in [true, false] {
        let mut args = vec!["run"];
        if detach {
            args.push("-d");
        }
        let publish = format!("127.0.0.1:{port}:80");
        args.extend(["-p", &publish, "bb:1", "true"]);
        let o = unionrs(&store, &args);
        assert_eq!(code(&o), 125, "{}", err(&o));
        let e = err(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains(&format!("127.0.0.1:{port}->80/tcp")), "{e}");
        assert_nothing_left(&store);
        assert_eq!(
            fs::read_dir("/run/netns").map_or(0, |d| d.count()),
            netns_before
        );
    }
    // A bad mapping: one line, before anything is made.
    let e = fails(&store, &["run", "-d", "-p", "80", "bb:1", "true"]);
    assert!(e.contains("HOST_PORT:CONTAINER_PORT"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert_nothing_left(&store);
}

#[test]
fn exit_codes_wait_start_and_ids() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    let id = ok(
        &store,
        &["run", "-d", "bb:1", "sh", "-c", "sleep 0.3; exit 3"],
    );
    let id = id.trim().to_string();
    // A name of docker's form was given; the ID prefix finds it.
    assert_eq!(ok(&store, &["wait", &id[..6]]), "3\n");
    let name = ok(&store, &["ps", "-a", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(name.trim()).unwrap();
    let name = j["Names"].as_str().unwrap().to_string();
    assert!(name.contains('_'), "{name}");
    assert!(ps_line(&store, &name).contains("Exited (3)"));
    ok(&store, &["start", &id[..12]]);
    assert_eq!(ok(&store, &["wait", &name]), "3\n");
    // Foreground runs keep their exit status too, and show as exited.
    let o = unionrs(
        &store,
        &["run", "--name", "fg", "bb:1", "sh", "-c", "exit 5"],
    );
    assert_eq!(code(&o), 5);
    assert!(ps_line(&store, "fg").contains("Exited (5)"));
    // Unknown containers: one line.
    for verb in ["stop", "start", "logs", "kill", "wait", "rm"] {
        let e = fails(&store, &[verb, "nosuch"]);
        assert_eq!(e.trim(), "unionrs: no such container: nosuch", "{verb}");
    }
    // A container made before IDs existed gets one when first used.
    ok(&store, &["create", "--name", "old", "bb:1"]);
    let p = store.join("containers/old/container.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("id");
    fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    let line = ps_line(&store, "old");
    let new_id = id_of(&store, "old");
    assert_eq!(new_id.len(), 64);
    assert!(line.starts_with(&new_id[..12]), "{line}");
    assert!(line.contains("Created"), "{line}");
    // --rm with -d: the monitor removes it when it ends.
    let rid = ok(
        &store,
        &["run", "-d", "--rm", "--name", "gone", "bb:1", "true"],
    );
    let t = Instant::now();
    while store.join("containers/gone").exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "--rm left {rid}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in [&name, "fg", "old"] {
        ok(&store, &["rm", n]);
    }
    assert_nothing_left(&store);
}

#[test]
fn rm_f_cleans_up_after_the_monitor_was_killed() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    ok(
        &store,
        &["run", "-d", "--name", "k", "bb:1", "sleep", "1000"],
    );
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(store.join("containers/k/state.json")).unwrap()).unwrap();
    let monitor = state["monitor_pid"].as_i64().unwrap();
    Command::new("kill")
        .args(["-KILL", &monitor.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The runtime still runs it: ps says so.
    assert!(ps_line(&store, "k").contains("Up "));
    // rm without -f refuses a running container.
    let e = fails(&store, &["rm", "k"]);
    assert!(e.contains("is running"), "{e}");
    ok(&store, &["rm", "-f", "k"]);
    assert_nothing_left(&store);
    // stop after a killed monitor cleans up as well.
    ok(
        &store,
        &["run", "-d", "--name", "k2", "bb:1", "sleep", "1000"],
    );
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(store.join("containers/k2/state.json")).unwrap()).unwrap();
    Command::new("kill")
        .args(["-KILL", &state["monitor_pid"].as_i64().unwrap().to_string()])
        .status()
        .unwrap();
    ok(&store, &["stop", "-t", "0", "k2"]);
    assert!(mounts_of(&store).is_empty());
    assert!(ps_line(&store, "k2").contains("Exited"));
    ok(&store, &["rm", "k2"]);
    assert_nothing_left(&store);
}

#[test]
fn a_dead_union_daemon_shows_as_broken_and_rm_f_cleans_up() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    ok(
        &store,
        &["run", "-d", "--name", "b", "bb:1", "sleep", "1000"],
    );
    // The union mount's daemon: this binary with the merged dir on its command line.
    let merged = store.join("containers/b/merged").display().to_string();
    let daemons: Vec<String> = processes_with(&merged)
        .into_iter()
        .filter(|p| p.contains("lowerdir="))
        .collect();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    let pid = daemons[0].split(':').next().unwrap().to_string();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    let t = Instant::now();
    while !ps_line(&store, "b").contains("broken") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{}",
            ps_line(&store, "b")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ps_line(&store, "b").contains("Up "));
    ok(&store, &["rm", "-f", "b"]);
    assert_nothing_left(&store);
}

#[test]
fn commit_without_pause_and_volumes_stay_out_of_the_image() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    let vol = tmp.path().join("vol");
    fs::create_dir(&vol).unwrap();
    let v = format!("{}:/data", vol.display());
    ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "v",
            "-v",
            &v,
            "bb:1",
            "sh",
            "-c",
            "echo from-ctr > /data/x; echo up > /up; sleep 1000",
        ],
    );
    let t = Instant::now();
    while !vol.join("x").exists() || !store.join("containers/v/upper/up").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the command did not write"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fs::read(vol.join("x")).unwrap(), b"from-ctr\n");
    ok(&store, &["commit", "-p=false", "v", "v:1"]);
    ok(&store, &["commit", "--pause=true", "v", "v:2"]);
    assert!(ps_line(&store, "v").contains("Up ") && !ps_line(&store, "v").contains("Paused"));
    for img in ["v:1", "v:2"] {
        let o = unionrs(
            &store,
            &["run", "--rm", img, "sh", "-c", "cat /up; ls -A /data"],
        );
        assert_eq!(out(&o), "up\n", "{img}: {}", err(&o));
    }
    // A read-only volume is read-only inside.
    let ro = format!("{}:/ro:ro", vol.display());
    let o = unionrs(
        &store,
        &[
            "run",
            "--rm",
            "-v",
            &ro,
            "bb:1",
            "sh",
            "-c",
            "cat /ro/x; touch /ro/y",
        ],
    );
    assert_eq!(out(&o), "from-ctr\n");
    assert_ne!(code(&o), 0);
    assert!(!vol.join("y").exists());
    ok(&store, &["rm", "-f", "v"]);
    assert_nothing_left(&store);
}

/// Runs `cmd` under `script` (a real pseudo-terminal of 33 rows, 101 columns); its output.
fn in_pty(cmd: &str) -> (i32, String) {
    let o = Command::new("script")
        .args([
            "-qec",
            &format!("stty rows 33 cols 101; {cmd}"),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        code(&o),
        String::from_utf8_lossy(&o.stdout).replace('\r', ""),
    )
}

#[test]
fn tty_for_run_and_exec_with_the_window_size() {
    preflight();
    assert!(have("script"), "script (bsdutils) is missing");
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    let bin = env!("CARGO_BIN_EXE_unionrs");
    let s = store.display();
    // -it in the foreground: a terminal inside, our window size, the exit status.
    let (c, o) = in_pty(&format!(
        "{bin} --store {s} run --rm -it bb:1 sh -c 'tty; stty size; exit 4'"
    ));
    assert_eq!(c, 4, "{o}");
    assert!(o.contains("/dev/pts/0\n") && o.contains("33 101\n"), "{o}");
    // Without -t there is no terminal.
    let o = unionrs(
        &store,
        &["run", "--rm", "bb:1", "sh", "-c", "tty || echo none"],
    );
    assert!(out(&o).contains("not a tty"), "{}", out(&o));
    // exec -it into a detached container; typed input reaches it.
    ok(
        &store,
        &["run", "-d", "--name", "t", "bb:1", "sleep", "1000"],
    );
    let (c, o) = in_pty(&format!(
        "{bin} --store {s} exec -it t sh -c 'tty; stty size; read x; echo got $x' <<EOF\nhello\nEOF"
    ));
    assert_eq!(c, 0, "{o}");
    assert!(o.contains("/dev/pts/") && o.contains("33 101\n"), "{o}");
    assert!(o.contains("got hello"), "{o}");
    // run -dt: the container's terminal output lands in its log.
    ok(
        &store,
        &[
            "run",
            "-dt",
            "--name",
            "dt",
            "bb:1",
            "sh",
            "-c",
            "tty; sleep 1000",
        ],
    );
    let t = Instant::now();
    while !ok(&store, &["logs", "dt"]).contains("/dev/pts/0") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{}",
            ok(&store, &["logs", "dt"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(&store, &["rm", "-f", "t", "dt"]);
    assert_nothing_left(&store);
}

#[test]
fn attach_with_detach_keys_and_the_exit_status() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let _c = Cleanup(store.clone());
    let bin = env!("CARGO_BIN_EXE_unionrs");
    let s = store.display();
    ok(&store, &["run", "-dit", "--name", "a", "bb:1", "sh"]);
    id_of(&store, "a");
    // Typed input reaches the shell; ctrl-p ctrl-q leaves it running.
    let (c, o) = in_pty(&format!(
        "(sleep 0.5; printf 'echo hi-$((40+2))\\n'; sleep 1; printf '\\020\\021') | {bin} --store {s} attach a"
    ));
    assert_eq!(c, 0, "{o}");
    assert!(o.contains("hi-42"), "{o}");
    assert!(ps_line(&store, "a").contains("Up "));
    // The shell's exit ends the attach with its status.
    let (c, o) = in_pty(&format!(
        "(sleep 0.5; printf 'exit 3\\n'; sleep 3) | {bin} --store {s} attach a"
    ));
    assert_eq!(c, 3, "{o}");
    assert!(ps_line(&store, "a").contains("Exited (3)"));
    // start -a: attached from the start.
    let (c, o) = in_pty(&format!(
        "(sleep 1; printf 'echo again; exit 4\\n'; sleep 3) | {bin} --store {s} start -a a"
    ));
    assert_eq!(c, 4, "{o}");
    assert!(o.contains("again"), "{o}");
    ok(&store, &["rm", "a"]);
    assert_nothing_left(&store);
}
