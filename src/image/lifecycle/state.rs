//! What a container was started with (`run.json`, written once by `run`) and what became
//! of it (`state.json`, written by its monitor), and the status `ps` shows, which always
//! asks the runtime (`runc state`) rather than trusting our files alone.
//!
//! ```text
//! STORE/containers/<name>/run.json      runtime, runtime ID, command, ports, --rm, -t
//! STORE/containers/<name>/state.json    monitor PID, container PID, started, finished, exit code
//! STORE/containers/<name>/bundle/       the runtime bundle (kept for start and exec)
//! STORE/containers/<name>/ctr.log       the container's output, one timestamped line each
//! ```

use super::ports::PortMap;
use crate::image::runtime;
use crate::image::store::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the container runs; fixed when it is made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunConfig {
    pub runtime: PathBuf,
    pub runtime_id: String,
    /// The process's argv, for `ps`'s COMMAND.
    pub command: Vec<String>,
    /// A network namespace of its own with pasta (`--network private`, `-p`).
    #[serde(default)]
    pub network_private: bool,
    #[serde(default)]
    pub ports: Vec<PortMap>,
    #[serde(default)]
    pub remove: bool,
    #[serde(default)]
    pub tty: bool,
    /// `-i`: the container's stdin stays open for `attach`.
    #[serde(default)]
    pub interactive: bool,
    /// Signal `stop` sends first (the image's StopSignal, else SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Mount points the runtime adds to the rootfs (removed again when the container stops,
    /// so they stay out of `diff` and `commit`).
    #[serde(default)]
    pub missing_mount_points: Vec<String>,
}

/// What the monitor (or a foreground `run`) recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub monitor_pid: Option<i32>,
    pub pid: Option<i32>,
    pub forwarder_pid: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
}

pub fn run_config_path(dir: &Path) -> PathBuf {
    dir.join("run.json")
}

pub fn load_run_config(dir: &Path) -> Option<RunConfig> {
    serde_json::from_slice(&std::fs::read(run_config_path(dir)).ok()?).ok()
}

pub fn save_run_config(dir: &Path, c: &RunConfig) -> Result<(), String> {
    write_atomic(
        &run_config_path(dir),
        &serde_json::to_vec_pretty(c).map_err(|e| e.to_string())?,
    )
}

pub fn load_state(dir: &Path) -> State {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

pub fn save_state(dir: &Path, s: &State) -> Result<(), String> {
    write_atomic(
        &dir.join("state.json"),
        &serde_json::to_vec_pretty(s).map_err(|e| e.to_string())?,
    )
}

/// The runtime's view of a container (`runc state ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeStatus {
    /// The runtime does not know it (never created, or deleted).
    Unknown,
    Created,
    Running,
    Paused,
    Stopped,
}

pub fn runtime_status(rt: &Path, id: &str) -> RuntimeStatus {
    let Ok(out) = runtime::command(rt)
        .args(["state", id])
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return RuntimeStatus::Unknown;
    };
    if !out.status.success() {
        return RuntimeStatus::Unknown;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    match v["status"].as_str() {
        Some("created") => RuntimeStatus::Created,
        Some("running") => RuntimeStatus::Running,
        Some("paused") => RuntimeStatus::Paused,
        Some("stopped") => RuntimeStatus::Stopped,
        _ => RuntimeStatus::Unknown,
    }
}

/// True if `pid` is a live process whose command line holds all of `words` (a PID alone
/// may have been reused by something else since we wrote it down).
pub fn process_alive(pid: i32, words: &[&str]) -> bool {
    let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // A zombie has an empty command line: it is gone for our purposes.
    let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
    words.iter().all(|w| {
        args.iter()
            .any(|a| *a == w.as_bytes() || a.ends_with(w.as_bytes()))
    }) && !cmd.is_empty()
}

/// True once process `pid` has finished exiting (a zombie, or reaped): its files, sockets
/// included, are closed then. An exiting process's command line reads empty before that.
pub fn process_gone(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // "PID (COMM) STATE ...": COMM may hold anything, so look after its last ')'.
    matches!(
        stat.rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next()),
        Some('Z' | 'X') | None
    )
}

/// What `ps` says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Created,
    Running {
        started_at: String,
        paused: bool,
    },
    Exited {
        code: Option<i32>,
        finished_at: Option<String>,
    },
}

impl Status {
    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running { .. })
    }

    /// docker's State word: created, running, paused, exited.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running { paused: true, .. } => "paused",
            Status::Running { .. } => "running",
            Status::Exited { .. } => "exited",
        }
    }
}

/// The container's status from the runtime first, our records second.
pub fn status(dir: &Path) -> Status {
    let st = load_state(dir);
    let rs = match load_run_config(dir) {
        Some(cfg) => runtime_status(&cfg.runtime, &cfg.runtime_id),
        None => RuntimeStatus::Unknown,
    };
    match rs {
        RuntimeStatus::Running | RuntimeStatus::Paused => Status::Running {
            started_at: st.started_at.unwrap_or_default(),
            paused: rs == RuntimeStatus::Paused,
        },
        _ if st.started_at.is_none() => Status::Created,
        _ => Status::Exited {
            code: st.exit_code,
            finished_at: st.finished_at,
        },
    }
}
