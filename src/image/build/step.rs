//! The steps that make a layer: a container over the stage's layers (the same upper/work
//! union mount as `create`), the change made in it (RUN through the OCI runtime with the
//! spec `run` uses; COPY/ADD written into the mount), then the upper committed by the
//! commit path (`container::stage_layer`) and the container removed, whatever happened.

use super::cache::State;
use super::config;
use super::context::Root;
use crate::image::container::{self, Container};
use crate::image::digest::Digest;
use crate::image::rootfs::Rootfs;
use crate::image::run::{DEFAULT_PATH, process_env, runtime_id};
use crate::image::runtime;
use crate::image::runtime_spec::{self, MOUNT_POINTS, Network, SpecInput};
use crate::image::store::{Store, remove_tree, write_atomic};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A mounted container of a build, removed (unmounted, its dirs deleted) on drop.
pub struct StepContainer<'a> {
    st: &'a Store,
    pub c: Container,
    pub merged: PathBuf,
}

impl<'a> StepContainer<'a> {
    pub fn new(st: &'a Store, s: &State, what: &str) -> Result<StepContainer<'a>, String> {
        let id = s.id();
        let c = container::create_over(st, id.as_str(), what, s.diff_ids(), None)?;
        let merged = match container::mount(st, &c) {
            Ok(m) => m,
            Err(e) => {
                let _ = container::remove(st, &c);
                return Err(e);
            }
        };
        Ok(StepContainer { st, c, merged })
    }

    pub fn rootfs(&self) -> Root {
        Root::rootfs(&self.merged)
    }

    /// Commits the upper as a layer on top of `s` (blob and layer dir published).
    pub fn commit(&self, s: &mut State, created: &str, created_by: &str) -> Result<(), String> {
        let mut layer = container::stage_layer(self.st, &self.c)?;
        layer.publish(self.st)?;
        s.layers.push(layer.descriptor());
        let rootfs = s
            .config
            .as_object_mut()
            .ok_or("image config is not an object")?
            .entry("rootfs")
            .or_insert_with(|| serde_json::json!({"type": "layers", "diff_ids": []}));
        rootfs["diff_ids"]
            .as_array_mut()
            .ok_or("rootfs.diff_ids is not a list")?
            .push(serde_json::json!(layer.diff_id.to_string()));
        config::push_history(&mut s.config, created, created_by, false);
        Ok(())
    }
}

impl Drop for StepContainer<'_> {
    fn drop(&mut self) {
        if let Err(m) = container::remove(self.st, &self.c) {
            eprintln!(
                "unionrs: build: cannot remove container {}: {m}",
                self.c.name
            );
        }
    }
}

/// The stage's working directory, made in the rootfs when missing (as docker does for
/// WORKDIR) so that it lands in this step's layer.
pub fn ensure_workdir(sc: &StepContainer<'_>, s: &State) -> Result<(), String> {
    if let Some(w) = config::string(&s.config, "WorkingDir") {
        let root = sc.rootfs();
        let comps = root.resolve(&w, true)?;
        let mut p = root.dir.clone();
        for c in comps {
            p.push(c);
            if fs::symlink_metadata(&p).is_err() {
                fs::create_dir(&p).map_err(|e| format!("WORKDIR {w}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// What RUN needs besides the stage's config.
pub struct RunEnv<'a> {
    pub args: Vec<String>,
    /// Build args in scope: in the environment unless ENV sets the same name.
    pub build_args: &'a [(String, String)],
    pub network: Network,
    pub runtime: &'a Path,
    pub quiet: bool,
    /// `RUN --mount`s, added to the spec's mounts.
    pub mounts: Vec<runtime_spec::Mount>,
    /// Set for this command only, over everything else (secrets with `env=`, SSH_AUTH_SOCK).
    pub env: Vec<(String, String)>,
}

/// How a RUN ended badly.
pub enum RunFailure {
    /// The command ran and exited with this status.
    Exit(i32),
    Other(String),
}

impl From<String> for RunFailure {
    fn from(s: String) -> RunFailure {
        RunFailure::Other(s)
    }
}

/// Runs one RUN in `sc` with the stage's Env, User and WorkingDir.
pub fn run(
    st: &Store,
    sc: &StepContainer<'_>,
    s: &State,
    r: &RunEnv<'_>,
) -> Result<(), RunFailure> {
    ensure_workdir(sc, s)?;
    let rootfs = Rootfs::open(&sc.merged)?;
    let user_spec = config::string(&s.config, "User").unwrap_or_default();
    let (user, home) = rootfs.user(&user_spec)?;
    let mut image_env = config::strings(&s.config, "Env");
    for (k, v) in r.build_args {
        if !image_env
            .iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) == k)
        {
            image_env.push(format!("{k}={v}"));
        }
    }
    let mut env = process_env(&image_env, &[], &sc.c.name, home.as_deref());
    for (k, v) in &r.env {
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
        env.push(format!("{k}={v}"));
    }
    let cwd = config::string(&s.config, "WorkingDir").unwrap_or_else(|| "/".into());
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    if rootfs.find_command(&r.args[0], &cwd, path).is_err() {
        return Err(RunFailure::Other(format!(
            "{:?} not found in the image (PATH={path})",
            r.args[0]
        )));
    }
    let missing: Vec<&str> = MOUNT_POINTS
        .iter()
        .copied()
        .filter(|m| fs::symlink_metadata(sc.merged.join(m)).is_err())
        .collect();
    // Mount targets the runtime will have to make: removed after the command.
    let mut made: Vec<PathBuf> = Vec::new();
    for m in &r.mounts {
        let comps = sc.rootfs().resolve(&m.destination, true)?;
        let mut p = sc.merged.clone();
        let mut missing = false;
        for c in comps {
            p.push(c);
            missing = missing || fs::symlink_metadata(&p).is_err();
            if missing && !made.contains(&p) {
                made.push(p.clone());
            }
        }
    }
    let mut spec = runtime_spec::build(SpecInput {
        rootfs: sc.merged.display().to_string(),
        hostname: sc.c.name.clone(),
        args: r.args.clone(),
        env,
        cwd,
        user,
        network: r.network,
        nofile_hard: runtime_spec::own_nofile_hard(),
    });
    spec.mounts
        .extend(r.mounts.iter().map(|m| runtime_spec::Mount {
            destination: m.destination.clone(),
            kind: m.kind.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        }));
    let bundle = container::dir(st, &sc.c.name).join("bundle");
    fs::create_dir_all(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
    write_atomic(&bundle.join("config.json"), &json)?;
    let out = || {
        if r.quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        }
    };
    let status = runtime::run_foreground_with(
        r.runtime,
        &bundle,
        &runtime_id(st, &sc.c.name),
        [Stdio::null(), out(), out()],
    );
    // The mount points the runtime had to add are not the command's doing.
    for m in &missing {
        let _ = fs::remove_dir(sc.merged.join(m));
    }
    for p in made.iter().rev() {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir(p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = fs::remove_file(p);
            }
            _ => {}
        }
    }
    let _ = remove_tree(&bundle);
    match status? {
        0 => Ok(()),
        n => Err(RunFailure::Exit(n)),
    }
}

/// The image ID shown for a state, short as buildah shows it.
pub fn short_id(d: &Digest) -> String {
    d.hex()[..12].to_string()
}
