//! The monitor of a detached container (podman's conmon is the model): this binary re-run
//! as `unionrs __monitor CONTAINER_DIR`, in a session of its own. It
//!
//! 1. brings up the private network (if any), has the runtime create the container with
//!    the monitor's pipes (or, with `-t`, a pseudo-terminal through the runtime's console
//!    socket) as its output, and starts it; then it says `ok` (or `error WHY`) on stdout,
//!    which the `run -d`/`start` waiting for it reads;
//! 2. as the subreaper of what the runtime leaves behind, waits for the container's init,
//!    copying its output into the log with timestamps meanwhile;
//! 3. records the exit status, deletes the runtime's container, takes the network down and
//!    unmounts the union (or removes the container, `--rm`).
//!
//! Nothing of unionrs needs to run for the container to live; `stop` and `rm -f` clean up
//! by themselves when the monitor was killed.

use super::attach::{self, Clients};
use super::state::{self, RunConfig, State};
use super::{logs, network, tty};
use crate::image::container::{self, now_rfc3339};
use crate::image::runtime;
use crate::image::store::Store;
use crate::sys::proc;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The hidden verb that runs a monitor.
pub const VERB: &str = "__monitor";

/// Starts the monitor of the container in `dir` (mounted, with its bundle and run.json) and
/// waits until it says the container runs. The store must not be locked by the caller (the
/// monitor takes the lock when the container ends).
pub fn spawn(dir: &Path) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the unionrs binary: {e}"))?;
    let mlog = File::create(dir.join("monitor.log"))
        .map_err(|e| format!("{}: {e}", dir.join("monitor.log").display()))?;
    let mut child = Command::new(exe)
        .arg(VERB)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(mlog)
        .spawn()
        .map_err(|e| format!("cannot start the container's monitor: {e}"))?;
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "ok" => Ok(()),
        Some(("error", why)) => {
            let _ = child.wait();
            Err(why.to_string())
        }
        _ => {
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("monitor.log")).unwrap_or_default();
            Err(format!(
                "the container's monitor died before the container started: {}",
                log.lines().last().unwrap_or("no message")
            ))
        }
    }
}

/// `unionrs __monitor DIR`: returns the process's exit status.
pub fn main(dir: &Path) -> u8 {
    proc::setsid();
    proc::ignore_sigpipe();
    if let Err(e) = proc::set_child_subreaper() {
        println!("error cannot become a subreaper: {e:?}");
        return 1;
    }
    let mut out = std::io::stdout();
    match start(dir) {
        Err(m) => {
            let _ = writeln!(out, "error {m}");
            1
        }
        Ok(running) => {
            let _ = writeln!(out, "ok");
            let _ = out.flush();
            supervise(dir, running);
            0
        }
    }
}

/// A started container, as the monitor holds it.
struct Running {
    cfg: RunConfig,
    id: String,
    clients: Clients,
    pid: i32,
    forwarder: Option<i32>,
    copiers: Vec<JoinHandle<()>>,
}

/// The last thing the runtime said, from the log written since `from` (runc writes
/// `time=.. level=error msg="..."`: the message is what matters).
fn runtime_error(log: &Path, from: u64) -> String {
    let data = std::fs::read(log).unwrap_or_default();
    let tail = &data[(from as usize).min(data.len())..];
    let text: Vec<String> = tail
        .split(|&b| b == b'\n')
        .filter_map(logs::parse)
        .map(|r| String::from_utf8_lossy(&r.text).into_owned())
        .filter(|t| !t.trim().is_empty())
        .collect();
    let last = text.last().cloned().unwrap_or_else(|| "no message".into());
    match last.split_once("msg=\"") {
        Some((_, m)) => m.trim_end_matches('"').replace("\\\"", "\""),
        None => last,
    }
}

fn delete(cfg: &RunConfig) {
    let _ = runtime::command(&cfg.runtime)
        .args(["delete", "--force", &cfg.runtime_id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn start(dir: &Path) -> Result<Running, String> {
    let cfg = state::load_run_config(dir).ok_or("the container has no run.json")?;
    let id = load_container_id(dir)?;
    runtime::ensure_state_root(&cfg.runtime)?;
    delete(&cfg);
    let log_path = logs::path(dir);
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let from = log_file.metadata().map_or(0, |m| m.len());
    let log = Arc::new(Mutex::new(log_file));
    let forwarder = match cfg.network_private {
        true => Some(network::up(&id, &cfg.ports, dir)?),
        false => None,
    };
    // Whatever fails from here on takes the network down again.
    let undo = |e: String| -> String {
        network::down(&id, forwarder);
        e
    };
    let pid_file = dir.join("container.pid");
    let _ = std::fs::remove_file(&pid_file);
    let mut copiers = Vec::new();
    let clients = Clients::default();
    // Where attached clients' keystrokes go, and the terminal that takes their size.
    let mut input: Option<File> = None;
    let mut master_for_size: Option<File> = None;
    let created = {
        let mut cmd = runtime::command(&cfg.runtime);
        cmd.arg("create")
            .arg("--bundle")
            .arg(dir.join("bundle"))
            .arg("--pid-file")
            .arg(&pid_file);
        let mut console = None;
        if cfg.tty {
            let c = tty::ConsoleSocket::new().map_err(undo)?;
            cmd.arg("--console-socket").arg(c.path());
            // runc's own errors still need somewhere to go.
            let (r, w) = proc::pipe().map_err(|e| undo(format!("pipe: {e:?}")))?;
            cmd.stdout(Stdio::null()).stderr(Stdio::from(w));
            let l = log.clone();
            copiers.push(std::thread::spawn(move || {
                logs::copy(File::from(r), "stderr", l, None)
            }));
            console = Some(c);
        } else {
            if cfg.interactive {
                let (r, w) = proc::pipe().map_err(|e| undo(format!("pipe: {e:?}")))?;
                cmd.stdin(Stdio::from(r));
                input = Some(File::from(w));
            }
            for stream in ["stdout", "stderr"] {
                let (r, w) = proc::pipe().map_err(|e| undo(format!("pipe: {e:?}")))?;
                if stream == "stdout" {
                    cmd.stdout(Stdio::from(w));
                } else {
                    cmd.stderr(Stdio::from(w));
                }
                let (l, cl) = (log.clone(), clients.clone());
                copiers.push(std::thread::spawn(move || {
                    logs::copy(File::from(r), stream, l, Some(cl))
                }));
            }
        }
        cmd.arg(&cfg.runtime_id);
        let mut child = cmd
            .spawn()
            .map_err(|e| undo(format!("cannot run {}: {e}", cfg.runtime.display())))?;
        // Our copies of the pipes' write ends go with `cmd`, so the copiers see EOF once
        // the container (and the runtime) closed theirs.
        drop(cmd);
        // Not received: the runtime failed, and says why in the log.
        let master = console.as_ref().and_then(|c| c.receive(&mut child).ok());
        let status = child.wait().map_err(|e| undo(e.to_string()))?;
        if let Some(m) = master {
            // The copier holds the master for the container's life: closing it would hang
            // up the container's terminal.
            input = m.try_clone().ok();
            master_for_size = m.try_clone().ok();
            let (l, cl) = (log.clone(), clients.clone());
            copiers.push(std::thread::spawn(move || {
                logs::copy(m, "stdout", l, Some(cl))
            }));
        }
        status.success()
    };
    let fail = |why: String, copiers: Vec<JoinHandle<()>>| -> String {
        delete(&cfg);
        network::down(&id, forwarder);
        for c in copiers {
            let _ = c.join();
        }
        why
    };
    if !created {
        fail(String::new(), copiers);
        return Err(runtime_error(&log_path, from));
    }
    let pid: i32 = match std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(p) => p,
        None => return Err(fail("the runtime wrote no PID file".into(), copiers)),
    };
    let out = match runtime::command(&cfg.runtime)
        .args(["start", &cfg.runtime_id])
        .output()
    {
        Ok(o) => o,
        Err(e) => return Err(fail(e.to_string(), copiers)),
    };
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(fail(
            format!("the runtime could not start it: {why}"),
            copiers,
        ));
    }
    let sock = attach::socket_path(&id);
    let _ = std::fs::remove_file(&sock);
    match std::os::unix::net::UnixListener::bind(&sock) {
        Ok(l) => {
            let cl = clients.clone();
            std::thread::spawn(move || attach::serve(l, cl, input, master_for_size));
        }
        // The container runs without attach; say why in the monitor's log.
        Err(e) => eprintln!("unionrs: {}: {e}", sock.display()),
    }
    let st = State {
        monitor_pid: Some(std::process::id() as i32),
        pid: Some(pid),
        forwarder_pid: forwarder,
        started_at: Some(now_rfc3339()),
        finished_at: None,
        exit_code: None,
    };
    if let Err(m) = state::save_state(dir, &st) {
        // The container runs: failing now would leave it unwatched. ps still asks runc.
        eprintln!("unionrs: {m}");
    }
    Ok(Running {
        cfg,
        id,
        clients,
        pid,
        forwarder,
        copiers,
    })
}

/// The container's ID from its container.json (read without the store lock: it never
/// changes once written).
fn load_container_id(dir: &Path) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("container.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    v["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "container.json has no id".into())
}

fn supervise(dir: &Path, r: Running) {
    let code = loop {
        match proc::wait_any_child() {
            Some((pid, how)) if pid == r.pid => break Some(how.code()),
            Some(_) => continue,
            None => break None,
        }
    };
    for c in r.copiers {
        let _ = c.join();
    }
    let _ = std::fs::remove_file(attach::socket_path(&r.id));
    finish(dir, &r.cfg, r.forwarder, code);
    // Attached clients learn of the end once the exit status is recorded.
    r.clients.close_all();
}

/// Everything after the container's end, by the monitor or (when it was killed) by `stop`
/// or `wait`: the runtime's container, the network, the mount points the runtime added,
/// the union mount (or the whole container, `--rm`), then the exit status.
pub fn finish(dir: &Path, cfg: &RunConfig, forwarder: Option<i32>, code: Option<i32>) {
    delete(cfg);
    if let Ok(id) = load_container_id(dir) {
        network::down(&id, forwarder);
        let _ = std::fs::remove_file(attach::socket_path(&id));
    }
    let Some(root) = store_root_of(dir) else {
        return;
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(st) = Store::open(&root) else {
        return;
    };
    let Ok(c) = container::load(&st, &name) else {
        return;
    };
    super::tidy_mount_points(dir, cfg);
    if cfg.remove {
        if let Err(m) = container::remove(&st, &c) {
            eprintln!("unionrs: cannot remove container {name}: {m}");
        }
        return;
    }
    if let Err(m) = container::umount(&st, &c) {
        eprintln!("unionrs: {m}");
    }
    let mut s = state::load_state(dir);
    s.monitor_pid = None;
    s.pid = None;
    s.forwarder_pid = None;
    s.finished_at = Some(now_rfc3339());
    s.exit_code = code;
    if let Err(m) = state::save_state(dir, &s) {
        eprintln!("unionrs: {m}");
    }
}

/// STORE of STORE/containers/NAME.
fn store_root_of(dir: &Path) -> Option<PathBuf> {
    Some(dir.parent()?.parent()?.to_path_buf())
}
