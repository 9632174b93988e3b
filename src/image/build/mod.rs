//! `unionrs build`: images from a Dockerfile/Containerfile, without a daemon.
//!
//! - [`parse`]: the Dockerfile text -> instructions (directives, continuations, heredocs).
//! - [`words`]: quote removal and variable substitution for the instructions that take it.
//! - [`ignore`]: `.dockerignore` / `.containerignore` patterns.
//! - [`context`]: COPY/ADD sources resolved beneath the context (or a stage's rootfs).
//! - [`copy`]: what COPY/ADD write into a step's rootfs (ADD unpacks local archives).
//! - [`fetch`]: ADD of a URL (downloaded before the step).
//! - [`config`]: the metadata instructions as image config edits, and history entries.
//! - [`mounts`]: `RUN --mount` (bind, cache, tmpfs).
//! - [`cache`]: the layer cache (the state after each step, keyed as docker keys it).
//! - [`step`]: the steps that make a layer: RUN through the OCI runtime, COPY/ADD, commit.
//!
//! This file runs the stages: each FROM starts one (from a store image, pulling a missing
//! registry reference, from `scratch`, or from an earlier stage), each instruction is one
//! step, and the last stage built (or `--target`) is written to the store and tagged.

pub mod cache;
pub mod config;
pub mod context;
pub mod copy;
pub mod fetch;
pub mod ignore;
pub mod mounts;
pub mod parse;
pub mod step;
pub mod words;

use crate::image::container::now_rfc3339;
use crate::image::digest::Digest;
use crate::image::layout::{Descriptor, MT_OCI_CONFIG, MT_OCI_MANIFEST, Manifest};
use crate::image::reference::Reference;
use crate::image::registry::client::ClientOptions;
use crate::image::registry::pull::{self, Platform, PullOptions};
use crate::image::registry::reference::RemoteRef;
use crate::image::rootfs::Rootfs;
use crate::image::runtime;
use crate::image::runtime_spec::{Mount, Network};
use crate::image::store::{self, Store};
use crate::image::unpack;
use cache::State;
use context::Root;
use parse::{Args, Instruction};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::fs;
use std::path::{Path, PathBuf};
use step::{RunEnv, RunFailure, StepContainer};

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
    /// The cache key's parent: the current state's ID.
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

/// Files ADD downloaded, removed when the step is over.
struct Fetched<'a>(Vec<(&'a String, PathBuf)>);

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        for (_, p) in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
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

    /// RUN's `--mount`s: the runtime's mounts, the containers holding `from=` sources
    /// (kept mounted until the command ends) and what they add to the cache key.
    fn run_mounts<'s>(
        &'s self,
        ins: &Instruction,
    ) -> Result<(Vec<Mount>, Vec<StepContainer<'s>>, String), String> {
        let mut out = Vec::new();
        let mut holders = Vec::new();
        let mut key = String::new();
        for v in ins.flag_all("mount") {
            let m = mounts::parse(v)?;
            let ro = if m.readonly { "ro" } else { "rw" };
            match &m.kind {
                mounts::Kind::Bind { source, from } => {
                    let (root, id) = match from {
                        Some(f) => {
                            let st = self.state_of_from(f)?;
                            let sc = StepContainer::new(self.st, &st, "build-from")?;
                            let root = sc.rootfs();
                            holders.push(sc);
                            (root, st.id().to_string())
                        }
                        None => (self.ctx.clone(), String::new()),
                    };
                    let src = root.sources(source)?.remove(0);
                    let mut h = sha2::Sha256::new();
                    if id.is_empty() {
                        root.checksum(&src, &mut h)?;
                    }
                    key.push_str(&format!(
                        "bind {id} {source} {} {:x}\n",
                        m.target,
                        h.finalize()
                    ));
                    out.push(Mount {
                        destination: m.target.clone(),
                        kind: "bind".into(),
                        source: src.host.display().to_string(),
                        options: vec!["rbind".into(), ro.into()],
                    });
                }
                mounts::Kind::Cache { id, mode, uid, gid } => {
                    let dir = mounts::cache_dir(self.st.root(), id);
                    if !dir.is_dir() {
                        use std::os::unix::fs::PermissionsExt;
                        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                        fs::set_permissions(&dir, fs::Permissions::from_mode(*mode))
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid))
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                    }
                    key.push_str(&format!("cache {id} {} {ro}\n", m.target));
                    out.push(Mount {
                        destination: m.target.clone(),
                        kind: "bind".into(),
                        source: dir.display().to_string(),
                        options: vec!["rbind".into(), ro.into()],
                    });
                }
                mounts::Kind::Tmpfs { size } => {
                    key.push_str(&format!("tmpfs {} {size:?}\n", m.target));
                    let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                    if let Some(n) = size {
                        options.push(format!("size={n}"));
                    }
                    out.push(Mount {
                        destination: m.target.clone(),
                        kind: "tmpfs".into(),
                        source: "tmpfs".into(),
                        options,
                    });
                }
            }
        }
        Ok((out, holders, key))
    }

    fn run(&mut self, s: &mut Stage, ins: &Instruction, label: &str) -> Result<(), String> {
        let orig = one_line(&ins.original);
        let fail = |m: String| format!("{label}: {orig}: {m}");
        let network = match ins.flag("network") {
            None | Some("default") => self.o.network,
            Some("host") => Network::Host,
            Some("none") => Network::None,
            Some(n) => return Err(fail(format!("--network={n}: host, none or default"))),
        };
        if ins.flag("security").is_some() {
            return Err(fail("RUN --security is not supported".into()));
        }
        let (args, shown) = match &ins.args {
            Args::Exec(v) => (v.clone(), v.join(" ")),
            Args::Shell(cmd) => {
                let script = match ins.heredocs.as_slice() {
                    [] => cmd.clone(),
                    [h] if cmd
                        .trim()
                        .trim_start_matches("<<")
                        .trim_start_matches('-')
                        .trim_matches(['"', '\''])
                        == h.name =>
                    {
                        h.body.clone()
                    }
                    docs => {
                        let mut t = format!("{cmd}\n");
                        for h in docs {
                            t.push_str(&h.body);
                            t.push_str(&h.name);
                            t.push('\n');
                        }
                        t
                    }
                };
                let mut a = s.shell.clone();
                a.push(script.clone());
                let shown = format!("{} {}", s.shell.join(" "), script);
                (a, shown)
            }
            _ => return Err(fail("RUN needs a command".into())),
        };
        let created_by = format!("{}{}", Self::args_prefix(s), shown);
        let net = format!("{network:?}");
        let (mounts, holders, mounts_key) = self.run_mounts(ins).map_err(&fail)?;
        let (key, hit) = self.cached(s, &[&created_by, &net, &mounts_key]);
        if hit {
            return Ok(());
        }
        let sc = StepContainer::new(self.st, &s.state, "build").map_err(&fail)?;
        let mut run_args = s.proxy.clone();
        run_args.retain(|(k, _)| !s.args.iter().any(|(a, _)| a == k));
        run_args.extend(s.args.iter().cloned());
        let env = RunEnv {
            args,
            build_args: &run_args,
            network,
            runtime: self
                .runtime
                .as_deref()
                .expect("found when the Dockerfile has RUN"),
            quiet: self.o.quiet,
            mounts,
        };
        let res = step::run(self.st, &sc, &s.state, &env);
        drop(holders);
        match res {
            Ok(()) => {}
            Err(RunFailure::Exit(n)) => return Err(fail(format!("exit status {n}"))),
            Err(RunFailure::Other(m)) => return Err(fail(m)),
        }
        sc.commit(&mut s.state, &now_rfc3339(), &created_by)
            .map_err(&fail)?;
        drop(sc);
        self.remember(&key, s).map_err(fail)
    }

    /// --chown's USER[:GROUP] resolved in the step's rootfs; a user alone gives the same
    /// numeric group (docker's rule).
    fn owner(merged: &Path, spec: &str) -> Result<(u32, u32), String> {
        let (u, _) = Rootfs::open(merged)?
            .user(spec)
            .map_err(|e| format!("--chown={spec}: {e}"))?;
        Ok((u.uid, if spec.contains(':') { u.gid } else { u.uid }))
    }

    fn copy(&mut self, s: &mut Stage, ins: &Instruction) -> Result<(), String> {
        let kw = ins.keyword.as_str();
        let vars = s.vars();
        let mut list = match &ins.args {
            Args::Exec(v) => v
                .iter()
                .map(|w| words::expand_only(w, self.escape, &vars))
                .collect::<Result<Vec<_>, _>>()?,
            Args::Shell(t) => words::process_words(t, self.escape, &vars)?,
            _ => return Err(format!("{kw} needs SOURCE... DEST")),
        };
        let dest_raw = list.pop().ok_or(format!("{kw} needs SOURCE... DEST"))?;
        let workdir = config::string(&s.state.config, "WorkingDir").unwrap_or_else(|| "/".into());
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let mut d = format!("{}/{}", workdir.trim_end_matches('/'), dest_raw);
            if dest_raw == "." || dest_raw == "./" {
                d = format!("{}/", workdir.trim_end_matches('/'));
            }
            d
        };
        let chmod = ins
            .flag("chmod")
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777)
                    .ok_or_else(|| format!("--chmod={m}: an octal mode"))
            })
            .transpose()?;
        for f in ["checksum", "keep-git-dir", "parents", "exclude"] {
            if ins.flag(f).is_some() {
                return Err(format!("{kw} --{f} is not supported"));
            }
        }
        // Heredoc sources and file sources.
        let mut inline = Vec::new();
        let mut paths = Vec::new();
        let mut urls = Vec::new();
        for src in list {
            let name = src
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(['"', '\'']);
            if src.starts_with("<<")
                && let Some(h) = ins.heredocs.iter().find(|h| h.name == name)
            {
                let body = if h.expand {
                    words::expand_only(&h.body, self.escape, &vars)?
                } else {
                    h.body.clone()
                };
                inline.push((h.name.clone(), body));
            } else if kw == "ADD" && fetch::is_url(&src) {
                urls.push(src);
            } else if src.contains("://") {
                return Err(format!("{kw} {src}: only ADD takes URLs (http, https)"));
            } else {
                paths.push(src);
            }
        }
        // The sources' root: the context, an earlier stage, or an image.
        let from = ins.flag("from");
        let from_state = from.map(|f| self.state_of_from(f)).transpose()?;
        let from_sc = match &from_state {
            Some(fs) => Some(StepContainer::new(self.st, fs, "build-from")?),
            None => None,
        };
        let root = match &from_sc {
            Some(sc) => sc.rootfs(),
            None => self.ctx.clone(),
        };
        let mut sources = Vec::new();
        for p in &paths {
            sources.push(root.sources(p)?);
        }
        // URLs are fetched first: their content is part of the key.
        let fetched = Fetched(
            urls.iter()
                .map(|u| fetch::download(self.st, u, self.o.client.tls_verify).map(|p| (u, p)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let mut url_sources = Vec::new();
        for (u, p) in &fetched.0 {
            let name = match fetch::file_name(u) {
                Some(n) => n,
                None if !dest.ends_with('/') => "download".into(),
                None => {
                    return Err(format!(
                        "ADD {u}: no file name in the URL; give the destination file's"
                    ));
                }
            };
            url_sources.push(context::Source {
                rel: vec![name],
                host: p.clone(),
            });
        }
        let mut h = sha2::Sha256::new();
        match &from_state {
            Some(fs) => {
                // An earlier stage's or image's files are known by its ID.
                h.update(fs.id().as_str());
                for p in &paths {
                    h.update(p.as_bytes());
                    h.update([0]);
                }
            }
            None => {
                for group in &sources {
                    for src in group {
                        h.update(src.rel.join("/").as_bytes());
                        h.update([0]);
                        root.checksum(src, &mut h)?;
                    }
                }
            }
        }
        for (u, src) in urls.iter().zip(&url_sources) {
            h.update(u.as_bytes());
            h.update([0]);
            root.checksum(src, &mut h)?;
        }
        let all: Vec<_> = sources.iter().flatten().chain(url_sources.iter()).collect();
        if all.len() + inline.len() > 1 && !dest.ends_with('/') {
            return Err(format!(
                "{kw} with several sources needs a destination ending in / (got {dest_raw})"
            ));
        }
        let kind = match all.as_slice() {
            [one] if inline.is_empty() && one.host.is_dir() => "dir",
            [_] if inline.is_empty() => "file",
            _ => "multi",
        };
        for (n, b) in &inline {
            h.update(n.as_bytes());
            h.update([0]);
            h.update(b.as_bytes());
        }
        let sum = format!("{:x}", h.finalize());
        let created_by = format!("/bin/sh -c #(nop) {kw} {kind}:{sum} in {dest} ");
        let flags: Vec<String> = ins
            .flags
            .iter()
            .map(|(k, v)| format!("--{k}={}", v.as_deref().unwrap_or("")))
            .collect();
        let flags = flags.join(" ");
        let (key, hit) = self.cached(s, &[&created_by, &flags]);
        if hit {
            return Ok(());
        }
        let sc = StepContainer::new(self.st, &s.state, "build")?;
        step::ensure_workdir(&sc, &s.state)?;
        let chown = ins
            .flag("chown")
            .map(|c| Self::owner(&sc.merged, c))
            .transpose()?;
        let attrs = copy::Attrs {
            chown,
            chmod,
            keep_owner: from.is_some(),
        };
        let rootfs = sc.rootfs();
        for group in &sources {
            let unpacks = kw == "ADD" && from.is_none();
            for src in group {
                let kind = unpacks
                    .then(|| copy::archive_kind(&src.host))
                    .flatten()
                    .filter(|_| src.host.is_file());
                match kind {
                    Some(k) => copy::add_archive(self.st, &src.host, k, &rootfs, &dest)?,
                    None => copy::copy_sources(
                        &root,
                        std::slice::from_ref(src),
                        &rootfs,
                        &dest,
                        &attrs,
                    )?,
                }
            }
        }
        for src in &url_sources {
            copy::copy_sources(&root, std::slice::from_ref(src), &rootfs, &dest, &attrs)?;
        }
        for (n, b) in &inline {
            copy::write_inline(&rootfs, &dest, n, b, &attrs)?;
        }
        drop(from_sc);
        sc.commit(&mut s.state, &now_rfc3339(), &created_by)?;
        drop(sc);
        self.remember(&key, s)
    }

    /// The metadata instructions: config edits and an empty_layer history entry.
    fn meta(&mut self, s: &mut Stage, ins: &Instruction) -> Result<(), String> {
        let vars = s.vars();
        let esc = self.escape;
        let word = |t: &str| words::process_word(t, esc, &vars);
        let text = shell_text(ins);
        // The change, as a closure over the config, and the created_by text.
        let mut cfg = s.state.config.clone();
        let mut new_args = s.args.clone();
        let mut shell = s.shell.clone();
        let mut cmd_set = s.cmd_set;
        let as_list = |shell: &[String]| -> Vec<String> {
            match &ins.args {
                Args::Exec(v) => v.clone(),
                Args::Shell(t) => {
                    let mut a = shell.to_vec();
                    a.push(t.clone());
                    a
                }
                _ => Vec::new(),
            }
        };
        let shown: String = match ins.keyword.as_str() {
            "ENV" | "LABEL" => {
                let Args::Pairs(p) = &ins.args else {
                    return Err("expected KEY=VALUE".into());
                };
                let mut shown = Vec::new();
                for (k, v) in p {
                    let k = word(k)?;
                    let v = word(v)?;
                    if ins.keyword == "ENV" {
                        config::set_env(&mut cfg, &k, &v);
                    } else {
                        config::set_in_map(&mut cfg, "Labels", &k, json!(v));
                    }
                    shown.push(format!("{k}={v}"));
                }
                format!("{} {}", ins.keyword, shown.join(" "))
            }
            "ARG" => {
                let gv = self.global_vars()?;
                for w in parse::split_raw(text, esc)? {
                    let (name, default) = match w.split_once('=') {
                        Some((k, d)) => (k.to_string(), Some(word(d)?)),
                        None => (w.clone(), None),
                    };
                    let val = self
                        .build_arg(&name)
                        .or(default)
                        .or_else(|| gv.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()));
                    new_args.retain(|(k, _)| *k != name);
                    if let Some(v) = val {
                        new_args.push((name, v));
                    }
                }
                format!("ARG {text}")
            }
            "EXPOSE" => {
                let mut ports = Vec::new();
                for p in words::process_words(text, esc, &vars)? {
                    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let ok = !num.is_empty()
                        && num.split('-').all(|n| n.parse::<u16>().is_ok())
                        && matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp");
                    if !ok {
                        return Err(format!("invalid port {p:?}"));
                    }
                    let k = format!("{num}/{}", proto.to_ascii_lowercase());
                    config::set_in_map(&mut cfg, "ExposedPorts", &k, json!({}));
                    ports.push(k);
                }
                format!("EXPOSE {}", ports.join(" "))
            }
            "VOLUME" => {
                let vols = match &ins.args {
                    Args::Exec(v) => v
                        .iter()
                        .map(|w| words::expand_only(w, esc, &vars))
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => words::process_words(text, esc, &vars)?,
                };
                for v in &vols {
                    config::set_in_map(&mut cfg, "Volumes", v, json!({}));
                }
                format!("VOLUME {}", config::go_list(&vols).replace('"', ""))
            }
            "WORKDIR" => {
                let w = word(text)?;
                let base = config::string(&cfg, "WorkingDir").unwrap_or_else(|| "/".into());
                let joined = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", base.trim_end_matches('/'))
                };
                let clean = clean_path(&joined);
                config::inner(&mut cfg).insert("WorkingDir".into(), json!(clean));
                format!("WORKDIR {clean}")
            }
            "USER" => {
                let u = word(text)?;
                config::inner(&mut cfg).insert("User".into(), json!(u));
                format!("USER {u}")
            }
            "CMD" | "ENTRYPOINT" => {
                let v = as_list(&shell);
                let field = if ins.keyword == "CMD" {
                    "Cmd"
                } else {
                    "Entrypoint"
                };
                config::inner(&mut cfg).insert(field.into(), json!(v));
                if ins.keyword == "CMD" {
                    cmd_set = true;
                } else if !cmd_set {
                    // Docker: an ENTRYPOINT drops the Cmd inherited from the base.
                    config::inner(&mut cfg).insert("Cmd".into(), Value::Null);
                }
                format!("{} {}", ins.keyword, config::go_list(&v))
            }
            "SHELL" => {
                let Args::Exec(v) = &ins.args else {
                    return Err("SHELL must be a JSON array".into());
                };
                config::inner(&mut cfg).insert("Shell".into(), json!(v));
                shell = v.clone();
                format!("SHELL {}", config::go_list(v))
            }
            "STOPSIGNAL" => {
                let sig = word(text)?;
                config::inner(&mut cfg).insert("StopSignal".into(), json!(sig));
                format!("STOPSIGNAL {sig}")
            }
            "HEALTHCHECK" => {
                let mut hc = serde_json::Map::new();
                match &ins.args {
                    Args::None => {
                        hc.insert("Test".into(), json!(["NONE"]));
                    }
                    Args::Nested(c) => {
                        let test = match &c.args {
                            Args::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                            Args::Shell(t) => vec!["CMD-SHELL".to_string(), t.clone()],
                            _ => return Err("HEALTHCHECK CMD needs a command".into()),
                        };
                        hc.insert("Test".into(), json!(test));
                        for (flag, field) in [
                            ("interval", "Interval"),
                            ("timeout", "Timeout"),
                            ("start-period", "StartPeriod"),
                            ("start-interval", "StartInterval"),
                        ] {
                            if let Some(v) = ins.flag(flag) {
                                hc.insert(field.into(), json!(config::parse_duration(v)?));
                            }
                        }
                        if let Some(r) = ins.flag("retries") {
                            let n: u64 =
                                r.parse().map_err(|_| format!("--retries={r}: a number"))?;
                            hc.insert("Retries".into(), json!(n));
                        }
                    }
                    _ => return Err("HEALTHCHECK takes NONE or CMD".into()),
                }
                config::inner(&mut cfg).insert("Healthcheck".into(), Value::Object(hc));
                ins.original.clone()
            }
            "ONBUILD" => {
                let Args::Nested(n) = &ins.args else {
                    return Err("ONBUILD needs an instruction".into());
                };
                let list = config::inner(&mut cfg)
                    .entry("OnBuild")
                    .or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut()
                    .expect("an array")
                    .push(json!(n.original));
                format!("ONBUILD {}", n.original)
            }
            "MAINTAINER" => {
                cfg["author"] = json!(text);
                format!("MAINTAINER {text}")
            }
            k => return Err(format!("{k} is not a metadata instruction")),
        };
        let created_by = config::nop(&one_line(&shown));
        // ARG changes what later steps see, not the config: it is part of the key.
        let args_key: Vec<String> = new_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let args_key = args_key.join("\0");
        let (key, hit) = self.cached(
            s,
            &[
                &created_by,
                &args_key,
                &serde_json::to_string(&cfg["config"]).unwrap_or_default(),
            ],
        );
        s.args = new_args;
        s.shell = shell;
        s.cmd_set = cmd_set;
        if hit {
            return Ok(());
        }
        config::push_history(&mut cfg, &now_rfc3339(), &created_by, true);
        s.state.config = cfg;
        self.remember(&key, s)
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

/// `/a/./b/../c/` -> `/a/c` (lexically, as Go's path.Clean).
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
    }
}
