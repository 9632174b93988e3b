//! `unionrs run`: a fresh container of an image (the same upper/work/union mount as
//! `create`), an OCI runtime bundle for it, and the installed runtime running the command.
//!
//! ```text
//! STORE/containers/<name>/bundle/config.json   the runtime spec (root.path = the merged dir)
//! ```
//!
//! The store lock is held while the container is made and again for the clean-up, not while
//! the command runs, so `ps`, `diff` and other commands work meanwhile.

use super::container::{self, Container};
use super::rootfs::{CommandError, Rootfs};
use super::runtime;
use super::runtime_spec::{self, MOUNT_POINTS, Network, SpecInput};
use super::security::{self, Confinement, SecurityOptions};
use super::store::{self, Image, Store, remove_tree, write_atomic};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// PATH when neither the image nor `-e` sets one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug)]
pub struct RunOptions {
    pub image: String,
    pub name: Option<String>,
    /// `-e K=V` (or `-e K`: the value of K in our environment, if set).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub runtime: Option<PathBuf>,
    pub network: Network,
    pub remove: bool,
    /// `--privileged`, `--cap-add/--cap-drop`, `--security-opt`.
    pub security: SecurityOptions,
    /// Empty: the image's Cmd.
    pub command: Vec<String>,
}

/// How `run` ended when the command could not be run or did not start.
#[derive(Debug)]
pub enum RunError {
    /// unionrs itself failed (Docker's 125).
    Failed(String),
    /// The command is not in the image (127) or not executable (126).
    Command(u8, String),
}

impl From<String> for RunError {
    fn from(s: String) -> RunError {
        RunError::Failed(s)
    }
}

fn config_strings(cfg: &Value, key: &str) -> Vec<String> {
    cfg.get("config")
        .and_then(|c| c.get(key))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn config_string(cfg: &Value, key: &str) -> Option<String> {
    cfg.get("config")
        .and_then(|c| c.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Docker's rule: Entrypoint + (the command line's CMD, else the image's Cmd).
pub fn process_args(img: &Image, command: &[String], image: &str) -> Result<Vec<String>, String> {
    let mut args = config_strings(&img.config, "Entrypoint");
    if command.is_empty() {
        args.extend(config_strings(&img.config, "Cmd"));
    } else {
        args.extend(command.iter().cloned());
    }
    if args.is_empty() {
        return Err(format!(
            "no command: image {image} has no Cmd or Entrypoint; give one after the image"
        ));
    }
    Ok(args)
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// The image's Env, then each `-e` (replacing the same key), then PATH, HOSTNAME and HOME
/// where still unset.
pub fn process_env(
    image_env: &[String],
    flags: &[String],
    hostname: &str,
    home: Option<&str>,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let k = env_key(&kv).to_string();
        env.retain(|e| env_key(e) != k);
        env.push(kv);
    };
    for e in image_env {
        set(e.clone());
    }
    for e in flags {
        if e.contains('=') {
            set(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            set(format!("{e}={v}"));
        }
    }
    for (k, v) in [
        ("PATH", DEFAULT_PATH),
        ("HOSTNAME", hostname),
        ("HOME", home.unwrap_or("/")),
    ] {
        if !env.iter().any(|e| env_key(e) == k) {
            env.push(format!("{k}={v}"));
        }
    }
    env
}

/// Refuses bad flags before anything is created.
fn check_options(o: &RunOptions) -> Result<(), String> {
    for e in &o.env {
        let k = env_key(e);
        if k.is_empty() || k.contains('\0') || e.contains('\0') {
            return Err(format!("-e {e:?}: expected KEY=VALUE"));
        }
    }
    if let Some(w) = &o.workdir
        && !w.starts_with('/')
    {
        return Err(format!("-w {w:?}: the working directory must be absolute"));
    }
    Ok(())
}

/// The runtime's container ID: the name, plus a hash of the store so that two stores'
/// containers of the same name do not collide in the runtime's state.
pub fn runtime_id(st: &Store, name: &str) -> String {
    let root = fs::canonicalize(st.root()).unwrap_or_else(|_| st.root().to_path_buf());
    let h = super::digest::Digest::of(root.as_os_str().as_encoded_bytes());
    format!("unionrs-{}-{name}", &h.hex()[..8])
}

/// What the run set up, for the clean-up.
struct Prepared {
    bundle: PathBuf,
    id: String,
    /// Mount points the runtime will create in the rootfs (the image lacks them).
    missing_mount_points: Vec<&'static str>,
}

/// Makes the bundle of a mounted container: user, command and spec.
fn prepare(
    st: &Store,
    c: &Container,
    img: &Image,
    o: &RunOptions,
    args: Vec<String>,
    confinement: Confinement,
) -> Result<Prepared, RunError> {
    let dir = container::dir(st, &c.name);
    let merged = dir.join("merged");
    let rootfs = Rootfs::open(&merged)?;
    let user_spec = o
        .user
        .clone()
        .or_else(|| config_string(&img.config, "User"))
        .unwrap_or_default();
    let (user, home) = rootfs.user(&user_spec)?;
    let env = process_env(
        &config_strings(&img.config, "Env"),
        &o.env,
        &c.name,
        home.as_deref(),
    );
    let cwd = o
        .workdir
        .clone()
        .or_else(|| config_string(&img.config, "WorkingDir"))
        .unwrap_or_else(|| "/".into());
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    match rootfs.find_command(&args[0], &cwd, path) {
        Ok(()) => {}
        Err(CommandError::NotFound(cmd)) => {
            return Err(RunError::Command(
                127,
                format!("command {cmd:?} not found in the image (PATH={path})"),
            ));
        }
        Err(CommandError::NotExecutable(p)) => {
            return Err(RunError::Command(
                126,
                format!("{p} in the image is not an executable file"),
            ));
        }
    }
    let missing_mount_points = MOUNT_POINTS
        .iter()
        .copied()
        .filter(|m| fs::symlink_metadata(merged.join(m)).is_err())
        .collect();
    let spec = runtime_spec::build_with(
        SpecInput {
            rootfs: merged.display().to_string(),
            hostname: c.name.clone(),
            args,
            env,
            cwd,
            user,
            network: o.network,
            nofile_hard: runtime_spec::own_nofile_hard(),
        },
        confinement,
    );
    let bundle = dir.join("bundle");
    fs::create_dir_all(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
    write_atomic(&bundle.join("config.json"), &json)?;
    Ok(Prepared {
        bundle,
        id: runtime_id(st, &c.name),
        missing_mount_points,
    })
}

/// After the command: the bundle goes, and so do the mount points the runtime had to add
/// (empty dirs the image did not have, as Docker's init layer keeps them out of `diff`).
fn tidy(st: &Store, c: &Container, p: &Prepared) {
    let merged = container::dir(st, &c.name).join("merged");
    if container::is_mounted(&merged) {
        for m in &p.missing_mount_points {
            // Only an empty dir: rmdir refuses anything the command put there.
            let _ = fs::remove_dir(merged.join(m));
        }
    }
    let _ = remove_tree(&p.bundle);
}

/// Runs the command; returns its exit status.
pub fn run(store_root: &Path, o: &RunOptions) -> Result<i32, RunError> {
    check_options(o)?;
    // Capability names and a seccomp file are checked before anything is created.
    let confinement = security::confinement(&o.security)?;
    if !store::is_root() {
        return Err(RunError::Failed(
            "run needs root (rootless containers need a user namespace, not built yet)".into(),
        ));
    }
    let rt = runtime::find(o.runtime.as_deref())?;
    // The runtime resolves a relative root.path against the bundle dir: make paths absolute.
    let store_root =
        &std::path::absolute(store_root).map_err(|e| format!("{}: {e}", store_root.display()))?;
    let (c, prepared) = {
        let st = Store::open(store_root)?;
        let img = st.resolve(&o.image)?;
        let args = process_args(&img, &o.command, &o.image)?;
        let c = container::create(&st, &o.image, o.name.as_deref())?;
        let setup = container::mount(&st, &c)
            .map_err(RunError::Failed)
            .and_then(|_| prepare(&st, &c, &img, o, args, confinement));
        match setup {
            Ok(p) => (c, p),
            Err(e) => {
                // Nothing ran: leave no container behind, --rm or not.
                if let Err(m) = container::remove(&st, &c) {
                    eprintln!("unionrs: run: cannot remove container {}: {m}", c.name);
                }
                return Err(e);
            }
        }
    };
    // `st` is gone: the store is unlocked while the command runs.
    let status = runtime::run_foreground(&rt, &prepared.bundle, &prepared.id);
    let st = Store::open(store_root)?;
    tidy(&st, &c, &prepared);
    if o.remove {
        container::remove(&st, &c)
            .map_err(|m| format!("cannot remove container {}: {m}", c.name))?;
    }
    Ok(status?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn env_flags_override_the_image_and_defaults_fill_in() {
        let env = process_env(
            &s(&["A=1", "PATH=/x", "B=2"]),
            &s(&["A=3", "C=4"]),
            "h",
            None,
        );
        assert_eq!(
            env,
            s(&["PATH=/x", "B=2", "A=3", "C=4", "HOSTNAME=h", "HOME=/"])
        );
        // `-e KEY` takes our value, or nothing when we have none.
        let ours = std::env::var("PATH").unwrap();
        let env = process_env(&[], &s(&["PATH", "UNIONRS_SURELY_UNSET_VAR"]), "n", None);
        assert_eq!(env, s(&[&format!("PATH={ours}"), "HOSTNAME=n", "HOME=/"]));
        let env = process_env(&[], &s(&["HOME=/h"]), "n", Some("/root"));
        assert_eq!(
            env,
            s(&["HOME=/h", &format!("PATH={DEFAULT_PATH}"), "HOSTNAME=n"])
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        let mut o = RunOptions {
            image: "i".into(),
            name: None,
            env: s(&["=x"]),
            workdir: None,
            user: None,
            runtime: None,
            network: Network::Host,
            remove: false,
            security: SecurityOptions::default(),
            command: vec![],
        };
        assert!(check_options(&o).unwrap_err().contains("KEY=VALUE"));
        o.env.clear();
        o.workdir = Some("rel".into());
        assert!(check_options(&o).unwrap_err().contains("absolute"));
    }
}
