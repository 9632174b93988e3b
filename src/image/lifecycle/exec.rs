//! `exec`: another process in a running container, by the runtime (`runc exec`), which
//! starts from the container's own process settings (environment, user, capabilities,
//! confinement) and applies ours on top.

use super::control;
use super::state;
use super::tty::{self, ConsoleSocket};
use crate::image::rootfs::{CommandError, Rootfs};
use crate::image::runtime;
use serde_json::json;
use std::path::Path;
use std::process::Stdio;

/// A file removed on drop.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    /// `-e K=V` (or `-e K`: our value of K).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub command: Vec<String>,
}

/// Runs the command; its exit status (0 at once with `detach`).
pub fn exec(store_root: &Path, what: &str, o: &ExecOptions) -> Result<i32, String> {
    if o.command.is_empty() {
        return Err("exec needs a command".into());
    }
    if let Some(w) = &o.workdir
        && !w.starts_with('/')
    {
        return Err(format!("-w {w:?}: the working directory must be absolute"));
    }
    let f = control::find(store_root, what)?;
    let cfg = f
        .cfg
        .clone()
        .ok_or_else(|| format!("container {} is not running", f.c.name))?;
    if !state::status(&f.dir).is_running() {
        return Err(format!("container {} is not running", f.c.name));
    }
    let process = process_json(&f.dir, o)?;
    // Docker's 127 and 126 for a command that is missing or not executable, said in one
    // line before the runtime would fail with its own words and 255.
    let p: serde_json::Value = serde_json::from_slice(&process).map_err(|e| e.to_string())?;
    let path = p["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.strip_prefix("PATH="))
        .next_back()
        .unwrap_or(crate::image::run::DEFAULT_PATH);
    let cwd = p["cwd"].as_str().unwrap_or("/");
    match Rootfs::open(&f.dir.join("merged"))?.find_command(&o.command[0], cwd, path) {
        Ok(()) => {}
        Err(CommandError::NotFound(c)) => {
            eprintln!("unionrs: exec: command {c:?} not found in the container (PATH={path})");
            return Ok(127);
        }
        Err(CommandError::NotExecutable(c)) => {
            eprintln!("unionrs: exec: {c} in the container is not an executable file");
            return Ok(126);
        }
    }
    runtime::ensure_state_root(&cfg.runtime)?;
    // Beside the runtime's state: private (0700), as the environment may hold secrets.
    let file = Removed(std::path::PathBuf::from(format!(
        "/run/unionrs/exec-{}-{}.json",
        std::process::id(),
        &crate::image::container::new_id()?[..8]
    )));
    crate::image::store::write_atomic(&file.0, &process)?;
    let mut cmd = runtime::command(&cfg.runtime);
    cmd.arg("exec").arg("--process").arg(&file.0);
    let tail = vec![cfg.runtime_id.clone()];
    if o.tty && !o.detach {
        return tty::run_attached(cmd, &tail, o.interactive);
    }
    if o.detach {
        cmd.arg("--detach");
    }
    if o.tty {
        // -dt: runc insists on a console socket; the terminal is let go unread, as
        // docker exec -dt leaves it.
        let c = ConsoleSocket::new()?;
        cmd.arg("--console-socket").arg(c.path());
        cmd.args(&tail).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let _master = c.receive(&mut child)?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        return Ok(0);
    }
    cmd.args(&tail);
    if o.detach {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    } else if o.interactive {
        cmd.stdin(Stdio::inherit());
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cfg.runtime.display()))?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if o.detach && !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(out
        .status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)))
}

/// The process of the container's spec (environment, user, capabilities, confinement)
/// with the command and our `-e`, `-w`, `-u`, `-t` applied, for `runc exec --process`.
fn process_json(dir: &Path, o: &ExecOptions) -> Result<Vec<u8>, String> {
    let path = dir.join("bundle/config.json");
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut p = spec["process"].clone();
    let obj = p
        .as_object_mut()
        .ok_or("the bundle's spec has no process")?;
    obj.insert("args".into(), json!(o.command));
    obj.insert("terminal".into(), json!(o.tty));
    obj.remove("consoleSize");
    if o.tty
        && !o.detach
        && let Some(s) = tty::our_size()
    {
        obj.insert("consoleSize".into(), json!(s));
    }
    let mut env: Vec<String> = obj
        .get("env")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    for e in &o.env {
        let kv = match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => e.clone(),
            Some(_) => return Err(format!("-e {e:?}: expected KEY=VALUE")),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = format!("{}=", kv.split_once('=').map_or("", |(k, _)| k));
        env.retain(|x| !x.starts_with(&key));
        env.push(kv);
    }
    obj.insert("env".into(), json!(env));
    if let Some(w) = &o.workdir {
        obj.insert("cwd".into(), json!(w));
    }
    if let Some(u) = &o.user {
        let (user, _) = Rootfs::open(&dir.join("merged"))?.user(u)?;
        obj.insert(
            "user".into(),
            serde_json::to_value(&user).map_err(|e| e.to_string())?,
        );
    }
    serde_json::to_vec(&p).map_err(|e| e.to_string())
}
