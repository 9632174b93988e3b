//! The verbs on a container that may be running: start, stop, kill, restart, wait, pause,
//! unpause, rm -f, commit while running. Each finds the container under the store lock and
//! lets go of the lock before it waits for anything (the monitor takes it when the
//! container ends).

use super::state::{self, RunConfig, RuntimeStatus, Status};
use super::{monitor, network};
use crate::image::container::{self, Container};
use crate::image::runtime;
use crate::image::store::Store;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A container found by name or ID prefix, with its dir and run settings.
pub struct Found {
    pub c: Container,
    pub dir: PathBuf,
    pub cfg: Option<RunConfig>,
}

impl Found {
    fn cfg(&self) -> Result<&RunConfig, String> {
        self.cfg.as_ref().ok_or_else(|| {
            format!(
                "container {} was made by create, not run: it has no process",
                self.c.name
            )
        })
    }
}

/// Finds `what` under the store lock, and lets the lock go.
pub fn find(store_root: &Path, what: &str) -> Result<Found, String> {
    let st = Store::open(store_root)?;
    find_in(&st, what)
}

pub fn find_in(st: &Store, what: &str) -> Result<Found, String> {
    let c = container::find(st, what)?;
    let dir = container::dir(st, &c.name);
    let cfg = state::load_run_config(&dir);
    Ok(Found { c, dir, cfg })
}

/// `RUNTIME VERB ID [AFTER...]`; its error message as ours.
fn runtime_cmd(cfg: &RunConfig, verb: &str, after: &[&str]) -> Result<(), String> {
    let out = runtime::command(&cfg.runtime)
        .arg(verb)
        .arg(&cfg.runtime_id)
        .args(after)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cfg.runtime.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let e = String::from_utf8_lossy(&out.stderr);
        let line = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!(
            "{} {verb}: {}",
            cfg.runtime.display(),
            line.split_once("msg=\"")
                .map_or(line, |(_, m)| m.trim_end_matches('"'))
        ))
    }
}

/// `start`: runs a stopped container again (a running one is left as it is).
pub fn start(store_root: &Path, what: &str) -> Result<Container, String> {
    let f = {
        let st = Store::open(store_root)?;
        let f = find_in(&st, what)?;
        f.cfg()?;
        if state::status(&f.dir).is_running() {
            return Ok(f.c);
        }
        container::mount(&st, &f.c)?;
        f
    };
    if let Err(m) = monitor::spawn(&f.dir) {
        if let Ok(st) = Store::open(store_root) {
            let _ = container::umount(&st, &f.c);
        }
        return Err(m);
    }
    Ok(f.c)
}

/// Waits until the runtime no longer runs the container, at most `limit`.
fn wait_stopped(cfg: &RunConfig, limit: Duration) -> bool {
    let t = Instant::now();
    loop {
        match state::runtime_status(&cfg.runtime, &cfg.runtime_id) {
            RuntimeStatus::Running | RuntimeStatus::Paused | RuntimeStatus::Created => {}
            _ => return true,
        }
        if t.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the monitor to finish its clean-up; if it is gone (killed) without having
/// done so, does the clean-up itself.
fn settle(f: &Found, cfg: &RunConfig) {
    let t = Instant::now();
    loop {
        let s = state::load_state(&f.dir);
        let alive = s
            .monitor_pid
            .is_some_and(|p| state::process_alive(p, &[monitor::VERB]));
        if !alive {
            if s.started_at.is_some() && s.finished_at.is_none() && f.dir.exists() {
                monitor::finish(&f.dir, cfg, s.forwarder_pid, None);
            }
            return;
        }
        if t.elapsed() > Duration::from_secs(30) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `stop [-t SECS]`: the stop signal, then SIGKILL after `timeout`; returns once the
/// container is cleaned up (runtime state deleted, network down, union unmounted).
pub fn stop(store_root: &Path, what: &str, timeout: Duration) -> Result<Container, String> {
    let f = find(store_root, what)?;
    let cfg = f.cfg()?.clone();
    if state::status(&f.dir).is_running() {
        let sig = cfg.stop_signal.clone().unwrap_or_else(|| "TERM".into());
        let paused = state::runtime_status(&cfg.runtime, &cfg.runtime_id) == RuntimeStatus::Paused;
        let _ = runtime_cmd(&cfg, "kill", &[&sig]);
        if paused {
            // A frozen process cannot act on the signal: thaw it (docker does too).
            let _ = runtime_cmd(&cfg, "resume", &[]);
        }
        if !wait_stopped(&cfg, timeout) {
            let _ = runtime_cmd(&cfg, "kill", &["KILL"]);
            wait_stopped(&cfg, Duration::from_secs(10));
        }
    }
    settle(&f, &cfg);
    Ok(f.c)
}

/// `kill [-s SIG]`: sends the signal (default KILL) to the container's init.
pub fn kill(store_root: &Path, what: &str, signal: &str) -> Result<Container, String> {
    let f = find(store_root, what)?;
    let cfg = f.cfg()?;
    if !state::status(&f.dir).is_running() {
        return Err(format!("container {} is not running", f.c.name));
    }
    runtime_cmd(cfg, "kill", &[signal.trim_start_matches("SIG")])
        .map_err(|e| format!("cannot send {signal} to {}: {e}", f.c.name))?;
    Ok(f.c)
}

/// `wait`: blocks until the container stopped (and is cleaned up); its exit code.
pub fn wait(store_root: &Path, what: &str) -> Result<i32, String> {
    let f = find(store_root, what)?;
    let cfg = f.cfg()?.clone();
    while state::status(&f.dir).is_running() {
        std::thread::sleep(Duration::from_millis(100));
    }
    settle(&f, &cfg);
    match state::status(&f.dir) {
        Status::Exited { code: Some(c), .. } => Ok(c),
        Status::Exited { code: None, .. } => {
            Err(format!("the exit status of {} is unknown", f.c.name))
        }
        _ => Err(format!("container {} never ran", f.c.name)),
    }
}

/// `pause` (true) / `unpause` (false): freezes or thaws every process of the container.
pub fn pause(store_root: &Path, what: &str, freeze: bool) -> Result<Container, String> {
    let f = find(store_root, what)?;
    let cfg = f.cfg()?;
    if !state::status(&f.dir).is_running() {
        return Err(format!("container {} is not running", f.c.name));
    }
    runtime_cmd(cfg, if freeze { "pause" } else { "resume" }, &[])?;
    Ok(f.c)
}

/// `rm [-f]`: a running container only with `force`, which kills it, its monitor and its
/// forwarder first; then the runtime's state, the network, the mount and the dir go.
pub fn remove(store_root: &Path, what: &str, force: bool) -> Result<Container, String> {
    let st = Store::open(store_root)?;
    let f = find_in(&st, what)?;
    if let Some(cfg) = &f.cfg {
        let s = state::load_state(&f.dir);
        let monitor_alive = s
            .monitor_pid
            .is_some_and(|p| state::process_alive(p, &[monitor::VERB]));
        if state::status(&f.dir).is_running() || monitor_alive {
            if !force {
                return Err(format!(
                    "container {} is running: stop it first, or rm -f",
                    f.c.name
                ));
            }
            if let Some(p) = s.monitor_pid.filter(|_| monitor_alive) {
                // Before the container: a monitor seeing its end would wait for our lock.
                let _ = crate::sys::proc::kill(p, libc::SIGKILL);
            }
        }
        let _ = runtime::command(&cfg.runtime)
            .args(["delete", "--force", &cfg.runtime_id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        network::down(&f.c.id, s.forwarder_pid);
        // A killed monitor could not remove its socket.
        let _ = std::fs::remove_file(super::attach::socket_path(&f.c.id));
    }
    container::remove(&st, &f.c)?;
    Ok(f.c)
}

/// Runs `f` (a commit) with the container frozen if it runs and `pause` is set, so the
/// layer is one moment's state; thawed again whatever `f` returned.
pub fn paused_for<T>(
    st: &Store,
    c: &Container,
    pause: bool,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let dir = container::dir(st, &c.name);
    let cfg = state::load_run_config(&dir);
    let froze = match &cfg {
        Some(cfg)
            if pause
                && state::runtime_status(&cfg.runtime, &cfg.runtime_id)
                    == RuntimeStatus::Running =>
        {
            runtime_cmd(cfg, "pause", &[])?;
            true
        }
        _ => false,
    };
    let r = f();
    if froze && let Some(cfg) = &cfg {
        runtime_cmd(cfg, "resume", &[])?;
    }
    r
}

/// `top [PS_OPTIONS]`: the container's processes, as `RUNTIME ps` lists them (the host's
/// `ps`, `-ef` unless options are given, narrowed to the container's cgroup).
pub fn top(store_root: &Path, what: &str, ps_options: &[String]) -> Result<String, String> {
    let f = find(store_root, what)?;
    let cfg = f.cfg()?;
    if !state::status(&f.dir).is_running() {
        return Err(format!("container {} is not running", f.c.name));
    }
    let out = runtime::command(&cfg.runtime)
        .arg("ps")
        .arg(&cfg.runtime_id)
        .args(if ps_options.is_empty() {
            vec!["-ef".to_string()]
        } else {
            ps_options.to_vec()
        })
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cfg.runtime.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
