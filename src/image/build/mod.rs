//! `unionrs build`: images from a Dockerfile/Containerfile, without a daemon.
//!
//! - [`parse`]: the Dockerfile text -> instructions (directives, continuations, heredocs).
//! - [`words`]: quote removal and variable substitution for the instructions that take it.
//! - [`ignore`]: `.dockerignore` / `.containerignore` patterns.
//! - [`context`]: COPY/ADD sources resolved beneath the context (or a stage's rootfs).
//! - [`copy`]: what COPY/ADD write into a step's rootfs (ADD unpacks local archives).
//! - [`fetch`]: ADD of a URL (downloaded before the step).
//! - [`config`]: the metadata instructions as image config edits, and history entries.
//! - [`mounts`]: `RUN --mount` (bind, cache, tmpfs, secret, ssh).
//! - [`secrets`]: `--secret` and `--ssh`: secret files and agent relays for one command.
//! - [`cache`]: the layer cache (the state after each step, keyed as docker keys it).
//! - [`step`]: a layer step's container: RUN through the OCI runtime, the commit.
//! - `run_step`, `copy_step`, `meta_step`: each instruction kind as a build step (its
//!   substitution, cache key and effect).
//!
//! This file runs the stages: each FROM starts one (from a store image, pulling a missing
//! registry reference, from `scratch`, or from an earlier stage), each instruction is one
//! step, and the last stage built (or `--target`) is written to the store and tagged.

pub mod cache;
pub mod config;
pub mod context;
pub mod copy;
mod copy_step;
pub mod fetch;
pub mod ignore;
mod meta_step;
pub mod mounts;
pub mod parse;
mod run_step;
pub mod secrets;
pub mod step;
pub mod words;

use crate::image::container::now_rfc3339;
use crate::image::digest::Digest;
use crate::image::layout::{Descriptor, MT_OCI_CONFIG, MT_OCI_MANIFEST, Manifest};
use crate::image::reference::Reference;
use crate::image::registry::client::ClientOptions;
use crate::image::registry::pull::{self, Platform, PullOptions};
use crate::image::registry::reference::RemoteRef;
use crate::image::runtime;
use crate::image::runtime_spec::Network;
use crate::image::store::{self, Store};
use crate::image::unpack;
use cache::State;
use context::Root;
use parse::{Args, Instruction};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};

/// Build args docker knows without an ARG line (passed only when --build-arg sets them).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The signals that stop a build (at the next step boundary).
const TERMINATING: &[i32] = &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

#[derive(Debug)]
pub struct Options {
    pub context: PathBuf,
    pub file: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub platform: Option<String>,
    pub labels: Vec<(String, String)>,
    pub client: ClientOptions,
    pub quiet: bool,
    pub network: Network,
    pub runtime: Option<PathBuf>,
    /// `--secret`: id and where its value comes from.
    pub secrets: Vec<(String, secrets::SecretSource)>,
    /// `--ssh`: id and the agent socket.
    pub ssh: Vec<(String, PathBuf)>,
}

/// The Dockerfile of a build: `-f`, else CONTEXT/Dockerfile, else CONTEXT/Containerfile.
pub fn dockerfile_path(o: &Options) -> Result<PathBuf, String> {
    if let Some(f) = &o.file {
        return Ok(f.clone());
    }
    for n in ["Dockerfile", "Containerfile"] {
        let p = o.context.join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "no Dockerfile or Containerfile in {} (give one with -f)",
        o.context.display()
    ))
}

struct StageDef {
    name: Option<String>,
    from: Instruction,
    body: Vec<Instruction>,
}

/// A built stage: its name and final state.
struct Built {
    name: Option<String>,
    state: State,
}

struct Builder<'a> {
    st: &'a Store,
    o: &'a Options,
    escape: char,
    ctx: Root,
    global_args: Vec<(String, Option<String>)>,
    stages: Vec<Built>,
    step: usize,
    steps: usize,
    runtime: Option<PathBuf>,
}

/// One stage while it runs.
struct Stage {
    state: State,
    /// The build args in scope, with their values.
    args: Vec<(String, String)>,
    shell: Vec<String>,
    cmd_set: bool,
    /// The predefined proxy args given with --build-arg: in RUN's environment, not in
    /// history (docker's rule), unless an ARG line declares them.
    proxy: Vec<(String, String)>,
}

impl Stage {
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(config::env_pairs(&self.state.config));
        v
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', "\\n")
}

/// Runs the build; returns the image ID.
pub fn build(store_root: &Path, o: &Options) -> Result<Digest, String> {
    let path = dockerfile_path(o)?;
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fname = path.display().to_string();
    let df = parse::parse(&text).map_err(|e| format!("{fname}:{}: {}", e.line, e.msg))?;
    // ARGs before the first FROM, then the stages.
    let mut global_args = Vec::new();
    let mut stages: Vec<StageDef> = Vec::new();
    for ins in df.instructions {
        if ins.keyword == "FROM" {
            let w = parse::split_raw(shell_text(&ins), df.escape).unwrap_or_default();
            let name = (w.len() == 3).then(|| w[2].to_ascii_lowercase());
            if let Some(n) = &name
                && stages.iter().any(|s| s.name.as_ref() == Some(n))
            {
                return Err(format!(
                    "{fname}:{}: stage name {n:?} is used twice",
                    ins.line
                ));
            }
            stages.push(StageDef {
                name,
                from: ins,
                body: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.body.push(ins);
        } else if ins.keyword == "ARG" {
            for w in parse::split_raw(shell_text(&ins), df.escape).unwrap_or_default() {
                match w.split_once('=') {
                    Some((k, v)) => global_args.push((k.to_string(), Some(v.to_string()))),
                    None => global_args.push((w, None)),
                }
            }
        } else {
            return Err(format!(
                "{fname}:{}: {} before the first FROM (only ARG may come first)",
                ins.line, ins.keyword
            ));
        }
    }
    if stages.is_empty() {
        return Err(format!("{fname}: no FROM instruction"));
    }
    let last = match &o.target {
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
            .ok_or_else(|| format!("--target {t}: no stage of that name in {fname}"))?,
        None => stages.len() - 1,
    };
    stages.truncate(last + 1);
    let mut tags = Vec::new();
    for t in &o.tags {
        tags.push(Reference::parse(t).map_err(|e| format!("-t {t}: {e}"))?);
    }
    if !store::is_root() {
        return Err(
            "build needs root (its steps run as containers; rootless is not built yet)".into(),
        );
    }
    let runs = stages
        .iter()
        .any(|s| s.body.iter().any(|i| i.keyword == "RUN"));
    let runtime = if runs {
        Some(runtime::find(o.runtime.as_deref())?)
    } else {
        None
    };
    // Termination signals wait until a step boundary, so that a ^C or kill never leaves a
    // step's container or mount behind (during RUN they reach the container; see
    // runtime::run_foreground).
    crate::sys::proc::block_signals(TERMINATING);
    let st = Store::open(store_root)?;
    let ignore_text = [".dockerignore", ".containerignore"]
        .iter()
        .find_map(|n| fs::read_to_string(o.context.join(n)).ok())
        .unwrap_or_default();
    let ctx = Root::context(&o.context, ignore::Ignore::parse(&ignore_text))?;
    let mut b = Builder {
        st: &st,
        o,
        escape: df.escape,
        ctx,
        global_args,
        stages: Vec::new(),
        step: 0,
        steps: stages.iter().map(|s| 1 + s.body.len()).sum(),
        runtime,
    };
    for def in &stages {
        let state = b.stage(def)?;
        b.stages.push(Built {
            name: def.name.clone(),
            state,
        });
    }
    let mut fin = b.stages.pop().expect("at least one stage").state;
    for (k, v) in &o.labels {
        config::set_in_map(&mut fin.config, "Labels", k, json!(v));
    }
    let id = write_image(&st, &fin, &tags)?;
    Ok(id)
}

fn shell_text(i: &Instruction) -> &str {
    match &i.args {
        Args::Shell(s) => s,
        _ => "",
    }
}

/// Writes the final state as an image (config, manifest, index entries for the tags).
fn write_image(st: &Store, s: &State, tags: &[Reference]) -> Result<Digest, String> {
    let cfg_bytes = s.config_bytes();
    let cfg_digest = st.put_blob_bytes(&cfg_bytes)?;
    let m = Manifest {
        schema_version: 2,
        media_type: Some(MT_OCI_MANIFEST.into()),
        config: Descriptor::new(MT_OCI_CONFIG, cfg_digest.as_str(), cfg_bytes.len() as u64),
        layers: s.layers.clone(),
        annotations: None,
    };
    let m_bytes = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
    let m_digest = st.put_blob_bytes(&m_bytes)?;
    let desc = Descriptor::new(MT_OCI_MANIFEST, m_digest.as_str(), m_bytes.len() as u64);
    let mut index = st.read_index()?;
    if tags.is_empty() && !index.manifests.iter().any(|d| d.digest == desc.digest) {
        index.manifests.push(desc.clone());
    }
    for t in tags {
        Store::set_tag(&mut index, t, &desc);
    }
    st.write_index(&index)?;
    Ok(cfg_digest)
}

impl Builder<'_> {
    fn say(&self, line: &str) {
        if !self.o.quiet {
            println!("{line}");
        }
    }

    fn build_arg(&self, name: &str) -> Option<String> {
        self.o
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Global ARG values (for FROM lines and `ARG NAME` inside a stage).
    fn global_vars(&self) -> Result<Vec<(String, String)>, String> {
        let mut v: Vec<(String, String)> = Vec::new();
        for (k, d) in &self.global_args {
            let val = match self.build_arg(k) {
                Some(x) => Some(x),
                None => match d {
                    Some(d) => Some(words::process_word(d, self.escape, &v)?),
                    None => None,
                },
            };
            if let Some(val) = val {
                v.push((k.clone(), val));
            }
        }
        Ok(v)
    }

    fn stage(&mut self, def: &StageDef) -> Result<State, String> {
        self.step += 1;
        let label = format!("STEP {}/{}", self.step, self.steps);
        self.say(&format!("{label}: {}", one_line(&def.from.original)));
        let fail = |m: String| format!("{label}: {}: {m}", one_line(&def.from.original));
        let gv = self.global_vars().map_err(&fail)?;
        let w = words::process_words(shell_text(&def.from), self.escape, &gv).map_err(&fail)?;
        let base = w.first().cloned().ok_or_else(|| fail("no image".into()))?;
        let mut state = self.base(&base, def.from.flag("platform")).map_err(&fail)?;
        // The base's ONBUILD triggers run first; the new image does not inherit them.
        let triggers = config::strings(&state.config, "OnBuild");
        config::inner(&mut state.config).remove("OnBuild");
        let mut stage = Stage {
            state,
            args: Vec::new(),
            shell: default_shell(),
            cmd_set: false,
            proxy: PREDEFINED_ARGS
                .iter()
                .filter_map(|k| self.build_arg(k).map(|v| (k.to_string(), v)))
                .collect(),
        };
        if let Some(sh) = state_shell(&stage.state) {
            stage.shell = sh;
        }
        for t in triggers {
            let df = parse::parse(&t).map_err(|e| fail(format!("ONBUILD {t}: {}", e.msg)))?;
            for ins in df.instructions {
                self.say(&format!("--> ONBUILD trigger: {}", one_line(&ins.original)));
                self.instruction(&mut stage, &ins, &label)?;
            }
        }
        for ins in &def.body {
            self.step += 1;
            let label = format!("STEP {}/{}", self.step, self.steps);
            self.say(&format!("{label}: {}", one_line(&ins.original)));
            self.instruction(&mut stage, ins, &label)?;
        }
        Ok(stage.state)
    }

    /// The state a FROM starts from.
    fn base(&self, name: &str, platform: Option<&str>) -> Result<State, String> {
        if name.eq_ignore_ascii_case("scratch") {
            return Ok(State {
                config: config::scratch(),
                layers: Vec::new(),
            });
        }
        let lname = name.to_ascii_lowercase();
        if let Some(b) = self
            .stages
            .iter()
            .find(|b| b.name.as_deref() == Some(&lname))
        {
            return Ok(b.state.clone());
        }
        let img = self.image(name, platform)?;
        let mut config = img.config.clone();
        if config.get("history").is_none() {
            config["history"] = json!([]);
        }
        Ok(State {
            config,
            layers: img.manifest.layers.clone(),
        })
    }

    /// A store image, pulled when missing (or always with --pull).
    fn image(&self, name: &str, platform: Option<&str>) -> Result<store::Image, String> {
        if !self.o.pull
            && let Ok(i) = self.st.resolve(name)
        {
            return Ok(i);
        }
        let r = RemoteRef::parse(name).map_err(|e| format!("{name}: {e}"))?;
        let platform = platform
            .or(self.o.platform.as_deref())
            .map(Platform::parse)
            .transpose()?;
        let opts = PullOptions {
            client: self.o.client.clone(),
            platform,
            unpack: unpack::Options {
                limits: unpack::Limits::default(),
                as_root: store::is_root(),
            },
            progress: false,
        };
        self.say(&format!("Pulling {r}"));
        let rep = pull::pull(self.st, &r, &opts)
            .map_err(|e| format!("{name} is not in the store and cannot be pulled: {e}"))?;
        self.st.resolve(rep.id.as_str())
    }

    /// One instruction: a cache hit, or the step run and its state cached.
    fn instruction(&mut self, s: &mut Stage, ins: &Instruction, label: &str) -> Result<(), String> {
        let fail = |m: String| format!("{label}: {}: {m}", one_line(&ins.original));
        if let Some(r) = crate::sys::proc::wait_signal(TERMINATING, std::time::Duration::ZERO) {
            return Err(fail(format!("interrupted by signal {}", r.signo)));
        }
        match ins.keyword.as_str() {
            "RUN" => self.run(s, ins, label),
            "COPY" | "ADD" => self.copy(s, ins).map_err(fail),
            _ => self.meta(s, ins).map_err(fail),
        }
    }

    /// Cache lookup of the step after `s` described by `parts`: on a hit, `s` becomes it.
    fn cached(&self, s: &mut Stage, parts: &[&str]) -> (String, bool) {
        let k = cache::key(s.state.id().as_str(), parts);
        if !self.o.no_cache
            && let Some(hit) = cache::get(self.st, &k)
        {
            self.say(&format!("--> Using cache {}", hit.id().hex()));
            s.state = hit;
            return (k, true);
        }
        (k, false)
    }

    fn remember(&self, key: &str, s: &Stage) -> Result<(), String> {
        cache::put(self.st, key, &s.state)
    }

    /// The build args a RUN sees, as docker prefixes them to its created_by (`|2 A=1 B=2 `).
    fn args_prefix(s: &Stage) -> String {
        if s.args.is_empty() {
            return String::new();
        }
        let kv: Vec<String> = s.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("|{} {} ", kv.len(), kv.join(" "))
    }

    /// The state `--from=` names: an earlier stage (by name or index), else an image.
    fn state_of_from(&self, f: &str) -> Result<State, String> {
        let fl = f.to_ascii_lowercase();
        let by_index = f.parse::<usize>().ok().and_then(|i| self.stages.get(i));
        if let Some(b) = self
            .stages
            .iter()
            .find(|b| b.name.as_deref() == Some(&fl))
            .or(by_index)
        {
            return Ok(b.state.clone());
        }
        let img = self.image(f, None)?;
        Ok(State {
            config: img.config.clone(),
            layers: img.manifest.layers.clone(),
        })
    }
}

fn default_shell() -> Vec<String> {
    config::DEFAULT_SHELL
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The SHELL an image sets (`config.Shell`), which its children's shell forms use.
fn state_shell(s: &State) -> Option<Vec<String>> {
    let v = config::strings(&s.config, "Shell");
    (!v.is_empty()).then_some(v)
}
