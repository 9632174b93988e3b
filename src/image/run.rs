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
use super::lifecycle::state::{self as lstate, RunConfig};
use super::lifecycle::{self, monitor, network, ports};
use super::rootfs::{CommandError, Rootfs};
use super::runtime;
use super::runtime_spec::{self, MOUNT_POINTS, Network, SpecInput};
use super::security::{self, Confinement, SecurityOptions};
use super::store::{self, Image, Store, write_atomic};
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
    /// `-d`: hand the container to a monitor and return its ID.
    pub detach: bool,
    /// `-i`: keep stdin open (foreground: our stdin goes to the process).
    pub interactive: bool,
    /// `-t`: a pseudo-terminal through the runtime's console socket.
    pub tty: bool,
    /// `-p [IP:]HOST:CONTAINER[/PROTO]` as given.
    pub publish: Vec<String>,
    /// `-P`: every port the image exposes, on free host ports.
    pub publish_all: bool,
    pub hostname: Option<String>,
    /// `--entrypoint`: replaces the image's Entrypoint ("" clears it).
    pub entrypoint: Option<String>,
    /// `-v HOST:CONTAINER[:ro]` bind mounts (not part of a commit).
    pub volumes: Vec<String>,
}

impl RunOptions {
    /// The options of `unionrs run IMAGE` with no flags.
    pub fn new(image: &str) -> RunOptions {
        RunOptions {
            image: image.to_string(),
            name: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            runtime: None,
            network: Network::Host,
            remove: false,
            security: SecurityOptions::default(),
            command: Vec::new(),
            detach: false,
            interactive: false,
            tty: false,
            publish: Vec::new(),
            publish_all: false,
            hostname: None,
            entrypoint: None,
            volumes: Vec::new(),
        }
    }
}

/// How `run` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ran {
    /// The command ran in the foreground and exited with this status.
    Exited(i32),
    /// `-d`: the container runs under its monitor; its ID.
    Detached(String),
}

/// A `-v` bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

/// Parses `-v HOST:CONTAINER[:ro|rw]`; the host path must exist (made absolute).
pub fn parse_volume(v: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, ctr, ro) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => return Err(format!("-v {v}: expected HOST_PATH:CONTAINER_PATH[:ro]")),
    };
    if !ctr.starts_with('/') {
        return Err(format!("-v {v}: the container path must be absolute"));
    }
    let host = fs::canonicalize(host).map_err(|e| format!("-v {v}: {host}: {e}"))?;
    Ok(Volume {
        host,
        container: ctr.to_string(),
        read_only: ro,
    })
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
    process_args_with(img, None, command, image)
}

/// [`process_args`] with `--entrypoint` (which also drops the image's Cmd, as docker's).
pub fn process_args_with(
    img: &Image,
    entrypoint: Option<&str>,
    command: &[String],
    image: &str,
) -> Result<Vec<String>, String> {
    let mut args = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => config_strings(&img.config, "Entrypoint"),
    };
    if command.is_empty() && entrypoint.is_none() {
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
    if (!o.publish.is_empty() || o.publish_all) && o.network == Network::None {
        return Err("-p/-P: --network none has no ports to publish".into());
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
    missing_mount_points: Vec<String>,
}

/// What `prepare` needs besides the run options.
struct Plan {
    args: Vec<String>,
    confinement: Confinement,
    private: bool,
    volumes: Vec<Volume>,
}

/// Makes the bundle of a mounted container: user, command and spec.
fn prepare(
    st: &Store,
    c: &Container,
    img: &Image,
    o: &RunOptions,
    plan: Plan,
) -> Result<Prepared, RunError> {
    let Plan {
        args,
        confinement,
        private,
        volumes,
    } = plan;
    let hostname = o.hostname.clone().unwrap_or_else(|| c.name.clone());
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
        &hostname,
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
    let mut missing_mount_points: Vec<String> = MOUNT_POINTS
        .iter()
        .map(|m| m.to_string())
        .chain(volumes.iter().map(|v| v.container.clone()))
        .filter(|m| fs::symlink_metadata(merged.join(m.trim_start_matches('/'))).is_err())
        .collect();
    missing_mount_points.dedup();
    let mut spec = runtime_spec::build_with(
        SpecInput {
            rootfs: merged.display().to_string(),
            hostname,
            args,
            env,
            cwd,
            user,
            network: if private { Network::Private } else { o.network },
            nofile_hard: runtime_spec::own_nofile_hard(),
        },
        confinement,
    );
    spec.process.terminal = o.tty;
    if o.tty && !o.detach {
        spec.process.console_size = lifecycle::tty::our_size();
    }
    if private {
        for ns in &mut spec.linux.namespaces {
            if ns.kind == "network" {
                ns.path = Some(network::netns_path(&c.id).display().to_string());
            }
        }
    }
    for v in &volumes {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if v.read_only {
            options.push("ro".into());
        }
        spec.mounts.push(runtime_spec::Mount {
            destination: v.container.clone(),
            kind: "bind".into(),
            source: v.host.display().to_string(),
            options,
        });
    }
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

/// The image's ExposedPorts keys (`80/tcp`).
fn exposed_ports(img: &Image) -> Vec<String> {
    img.config
        .get("config")
        .and_then(|c| c.get("ExposedPorts"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Runs the command: in the foreground (its exit status), or with `-d` under a monitor
/// (the container's ID).
pub fn run(store_root: &Path, o: &RunOptions) -> Result<Ran, RunError> {
    check_options(o)?;
    let mut maps = o
        .publish
        .iter()
        .map(|p| ports::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let volumes = o
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>, _>>()?;
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
    let (c, prepared, cfg) = {
        let st = Store::open(store_root)?;
        let img = st.resolve(&o.image)?;
        if o.publish_all {
            maps.extend(ports::publish_all(&exposed_ports(&img))?);
        }
        // -p asks for the private network, as docker's default bridge gives it.
        let private = o.network == Network::Private || !maps.is_empty();
        if private {
            ports::find_pasta()?;
        }
        let args = process_args_with(&img, o.entrypoint.as_deref(), &o.command, &o.image)?;
        let c = container::create(&st, &o.image, o.name.as_deref())?;
        let plan = Plan {
            args: args.clone(),
            confinement,
            private,
            volumes,
        };
        let setup = container::mount(&st, &c)
            .map_err(RunError::Failed)
            .and_then(|_| prepare(&st, &c, &img, o, plan))
            .and_then(|p| {
                let cfg = RunConfig {
                    runtime: rt.clone(),
                    runtime_id: p.id.clone(),
                    command: args,
                    network_private: private,
                    ports: maps.clone(),
                    remove: o.remove,
                    tty: o.tty,
                    interactive: o.interactive,
                    stop_signal: config_string(&img.config, "StopSignal"),
                    missing_mount_points: p.missing_mount_points.clone(),
                };
                lstate::save_run_config(&container::dir(&st, &c.name), &cfg)?;
                Ok((p, cfg))
            });
        match setup {
            Ok((p, cfg)) => (c, p, cfg),
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
    let dir = store_root.join("containers").join(&c.name);
    let undo = |e: String| -> RunError {
        if let Ok(st) = Store::open(store_root)
            && let Err(m) = container::remove(&st, &c)
        {
            eprintln!("unionrs: run: cannot remove container {}: {m}", c.name);
        }
        RunError::Failed(e)
    };
    if o.detach {
        return match monitor::spawn(&dir) {
            Ok(()) => Ok(Ran::Detached(c.id.clone())),
            Err(e) => Err(undo(e)),
        };
    }
    let forwarder = if cfg.network_private {
        Some(network::up(&c.id, &cfg.ports, &dir).map_err(undo)?)
    } else {
        None
    };
    let mut state = lstate::State {
        started_at: Some(container::now_rfc3339()),
        ..Default::default()
    };
    if let Err(m) = lstate::save_state(&dir, &state) {
        // Only ps's "Exited" needs it: not worth failing the run (and its clean-up) for.
        eprintln!("unionrs: run: {m}");
    }
    let status = if o.tty {
        lifecycle::tty::run_foreground(&rt, &prepared.bundle, &prepared.id, o.interactive)
    } else {
        runtime::run_foreground(&rt, &prepared.bundle, &prepared.id)
    };
    network::down(&c.id, forwarder);
    let st = Store::open(store_root)?;
    lifecycle::tidy_mount_points(&dir, &cfg);
    if o.remove {
        container::remove(&st, &c)
            .map_err(|m| format!("cannot remove container {}: {m}", c.name))?;
    } else {
        state.finished_at = Some(container::now_rfc3339());
        state.exit_code = status.as_ref().ok().copied();
        lstate::save_state(&dir, &state)?;
    }
    Ok(Ran::Exited(status?))
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
            env: s(&["=x"]),
            ..RunOptions::new("i")
        };
        assert!(check_options(&o).unwrap_err().contains("KEY=VALUE"));
        o.env.clear();
        o.workdir = Some("rel".into());
        assert!(check_options(&o).unwrap_err().contains("absolute"));
    }
}
