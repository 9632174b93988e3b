//! The image verbs: `pull`, `push`, `load`, `save`, `images`, `inspect`, `history`, `tag`,
//! `rmi`, `prune`, the container verbs, and `run` (parsed in [`super::run`]).
//! `--store DIR` may come before the verb or among its arguments (for `run`: among its
//! options, never in the command).

use crate::image::archive;
use crate::image::container;
use crate::image::digest::Digest;
use crate::image::layout::ANN_REF_NAME;
use crate::image::progress::Bars;
use crate::image::reference::Reference;
use crate::image::registry;
use crate::image::registry::auth::Creds;
use crate::image::registry::client::ClientOptions;
use crate::image::registry::pull::{Platform, PullOptions};
use crate::image::registry::push::PushOptions;
use crate::image::registry::reference::RemoteRef;
use crate::image::store::{self, Image, Store};
use crate::image::unpack::{Limits, Options};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const VERBS: &[&str] = &[
    "pull", "push", "load", "save", "images", "inspect", "history", "tag", "rmi", "create", "ps",
    "mount", "umount", "diff", "commit", "rm", "run", "prune", "build", "exec", "logs", "start",
    "stop", "restart", "kill", "wait", "pause", "unpause", "attach", "top",
];

pub const USAGE: &str = "\
       unionrs [--store DIR] pull [-q] [--platform OS/ARCH[/VARIANT]] [--creds USER:PASS]
                                  [--tls-verify=false] REF   (ubuntu, host:port/name:tag, name@sha256:..)
       unionrs [--store DIR] push [-q] [--creds USER:PASS] [--tls-verify=false]
                                  [--chunk-size BYTES] IMAGE [DEST-REF]
                  (pull, push: -u USER --password-stdin, or --creds USER --password-stdin,
                   reads the password from stdin as docker login does)
       unionrs [--store DIR] load [-i FILE] [-q]        (docker-archive or OCI layout tar)
       unionrs [--store DIR] save -o FILE IMAGE...      (docker-archive + OCI layout tar)
       unionrs [--store DIR] images [--format json] [--no-trunc]
       unionrs [--store DIR] inspect IMAGE...
       unionrs [--store DIR] history [--no-trunc] [--format json] IMAGE
       unionrs [--store DIR] tag SOURCE TARGET
       unionrs [--store DIR] rmi [-f] IMAGE...
       unionrs [--store DIR] create [--name N] IMAGE  (upper+work over the image's layers, mounted)
       unionrs [--store DIR] mount N | umount N
       unionrs [--store DIR] diff N                   (A/C/D lines from the upper)
       unionrs [--store DIR] commit [-a AUTHOR] [-m MSG] [-c CHANGE]... [-p=false] N [REPO[:TAG]]
       unionrs [--store DIR] prune [-a] [-f]          (unused images, then unused layers and blobs)
       unionrs [--store DIR] run [-d] [-i] [-t] [--rm] [--name N] [-e KEY=VALUE]... [-w DIR]
                                 [-u USER[:GROUP]] [-h HOSTNAME] [--entrypoint CMD]
                                 [-p [IP:]HOST:CONTAINER[/tcp|udp]]... [-P] [-v HOST:CTR[:ro]]...
                                 [--network host|none|private] [--runtime PATH] [--privileged]
                                 [--cap-add CAP]... [--cap-drop CAP]...
                                 [--security-opt seccomp=unconfined|FILE]
                                 [--security-opt no-new-privileges[=true|false]]
                                 IMAGE [--] [COMMAND [ARG...]]
       unionrs [--store DIR] build [-t NAME[:TAG]]... [-f FILE] [--build-arg K=V]... [--target STAGE]
                                   [--no-cache] [--pull] [--platform OS/ARCH] [--label K=V]...
                                   [--tls-verify=false] [--creds USER:PASS] [-q]
                                   [--network host|none] [--runtime PATH] CONTEXT";

/// Runs an image verb; `args` starts with `--store` or the verb.
pub fn run(args: &[OsString]) -> ExitCode {
    if let Some(code) = super::container::main(args) {
        return code;
    }
    if let Some((store_flag, rest)) = split_run(args) {
        return match rest {
            Ok(rest) => super::run::main(store_flag, &rest),
            Err(m) => {
                eprintln!("unionrs: run: {m}");
                ExitCode::from(125)
            }
        };
    }
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Usage(m)) => {
            eprintln!("unionrs: {m}\nusage:\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failed(m)) => {
            eprintln!("unionrs: {m}");
            ExitCode::from(1)
        }
    }
}

/// The `--store` given before `run`, and the arguments after it (or why they are unusable).
type RunArgs = (Option<PathBuf>, Result<Vec<String>, String>);

/// For the `run` verb: the `--store` given before it and the arguments after it, left
/// untouched (they end with the container's command, which may hold `--store` itself).
fn split_run(args: &[OsString]) -> Option<RunArgs> {
    let mut store_flag = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--store" {
            store_flag = args.get(i + 1).map(PathBuf::from);
            i += 2;
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--store=")) {
            store_flag = Some(PathBuf::from(v));
            i += 1;
        } else if a == "run" {
            let rest = args[i + 1..]
                .iter()
                .map(|a| {
                    a.to_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("argument {a:?} is not UTF-8"))
                })
                .collect();
            return Some((store_flag, rest));
        } else {
            return None;
        }
    }
    None
}

enum CliError {
    Usage(String),
    Failed(String),
}
use CliError::{Failed, Usage};

impl From<String> for CliError {
    fn from(s: String) -> CliError {
        Failed(s)
    }
}

type Res = Result<(), CliError>;

fn run_inner(args: &[OsString]) -> Res {
    let mut store_flag: Option<PathBuf> = None;
    let mut rest: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--store" {
            let v = it.next().ok_or(Usage("--store needs a directory".into()))?;
            store_flag = Some(PathBuf::from(v));
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--store=")) {
            store_flag = Some(PathBuf::from(v));
        } else {
            let s = a
                .to_str()
                .ok_or_else(|| Usage(format!("argument {a:?} is not UTF-8")))?;
            rest.push(s.to_string());
        }
    }
    let Some((verb, args)) = rest.split_first() else {
        return Err(Usage("no command given".into()));
    };
    let root = store::default_root(store_flag.as_deref())?;
    let open = || Store::open(&root).map_err(Failed);
    match verb.as_str() {
        "pull" => pull(&open()?, args),
        "push" => push(&open()?, args),
        "load" => load(&open()?, args),
        "save" => save(&open()?, args),
        "images" => images(&open()?, args),
        "inspect" => inspect(&open()?, args),
        "history" => history(&open()?, args),
        "tag" => tag(&open()?, args),
        "rmi" => rmi(&open()?, args),
        "create" => create(&open()?, args),
        "mount" => mount(&open()?, args),
        "umount" => umount(&open()?, args),
        "diff" => diff(&open()?, args),
        "commit" => commit(&open()?, args),
        "prune" => prune(&open()?, args),
        "build" => super::build::run(&root, args).map_err(|e| match e {
            super::build::Error::Usage(m) => Usage(m),
            super::build::Error::Failed(m) => Failed(m),
        }),
        v => Err(Usage(format!("unknown command {v:?}"))),
    }
}

/// Splits `args` into flags (with the value of those in `with_value`) and positionals.
struct Parsed {
    flags: Vec<(String, Option<String>)>,
    pos: Vec<String>,
}

impl Parsed {
    fn new(args: &[String], known: &[&str], with_value: &[&str]) -> Result<Parsed, CliError> {
        let mut p = Parsed {
            flags: Vec::new(),
            pos: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a.starts_with('-') && a.len() > 1 {
                let (name, inline) = match a.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (a.clone(), None),
                };
                if !known.contains(&name.as_str()) && !with_value.contains(&name.as_str()) {
                    return Err(Usage(format!("unknown option {name}")));
                }
                let v = if with_value.contains(&name.as_str()) {
                    Some(match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .cloned()
                            .ok_or_else(|| Usage(format!("{name} needs a value")))?,
                    })
                } else {
                    None
                };
                p.flags.push((name, v));
            } else {
                p.pos.push(a.clone());
            }
        }
        Ok(p)
    }

    fn has(&self, names: &[&str]) -> bool {
        self.flags.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    fn value(&self, names: &[&str]) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| names.contains(&n.as_str()))
            .and_then(|(_, v)| v.as_deref())
    }

    fn json(&self) -> Result<bool, CliError> {
        match self.value(&["--format"]) {
            None => Ok(false),
            Some("json") => Ok(true),
            Some(f) => Err(Usage(format!("--format {f:?}: only 'json' is supported"))),
        }
    }
}

fn unpack_options() -> Options {
    Options {
        limits: Limits::default(),
        as_root: store::is_root(),
    }
}

/// Takes `--tls-verify[=BOOL]` out of `args` (a boolean flag whose value must be attached,
/// as skopeo and podman spell it).
fn take_tls_verify(args: &[String]) -> Result<(bool, Vec<String>), CliError> {
    let mut verify = true;
    let mut rest = Vec::new();
    for a in args {
        match a.as_str() {
            "--tls-verify" | "--tls-verify=true" => verify = true,
            "--tls-verify=false" => verify = false,
            a if a.starts_with("--tls-verify=") => {
                return Err(Usage(format!("{a}: --tls-verify takes true or false")));
            }
            _ => rest.push(a.clone()),
        }
    }
    Ok((verify, rest))
}

/// Flags of `pull` and `push` that say how to log in.
const CRED_FLAGS: &[&str] = &["--creds", "-u", "--username"];

/// Credentials from `--creds USER:PASS`, or a user (`--creds USER`, `-u USER`) with the
/// password on stdin (`--password-stdin`, read as `docker login` reads it: all of stdin,
/// one trailing newline dropped). No message here ever holds the password.
fn client_options(p: &Parsed, tls_verify: bool) -> Result<ClientOptions, CliError> {
    let creds = p.value(&["--creds"]);
    let user = p.value(&["-u", "--username"]);
    let creds = if p.has(&["--password-stdin"]) {
        let user = match (creds, user) {
            (Some(_), Some(_)) => {
                return Err(Usage(
                    "give the user once: --creds USER or --username USER".into(),
                ));
            }
            (Some(c), None) if c.contains(':') => {
                return Err(Usage(
                    "--password-stdin takes the password from stdin: give --creds USER \
                     without :PASSWORD"
                        .into(),
                ));
            }
            (Some(u), None) | (None, Some(u)) if !u.is_empty() => u,
            _ => {
                return Err(Usage(
                    "--password-stdin needs a user: --username USER or --creds USER".into(),
                ));
            }
        };
        Some(Creds {
            user: user.to_string(),
            pass: password_from(io::stdin().lock())?,
        })
    } else if user.is_some() {
        return Err(Usage(
            "--username goes with --password-stdin (or give --creds USER:PASSWORD)".into(),
        ));
    } else {
        creds
            .map(|c| {
                Creds::parse(c).map_err(|_| {
                    "--creds takes USER:PASSWORD (or --creds USER with --password-stdin)"
                        .to_string()
                })
            })
            .transpose()
            .map_err(Usage)?
    };
    Ok(ClientOptions { tls_verify, creds })
}

/// The password piped in: everything up to EOF but one trailing newline (and a CR before
/// it), as `docker login --password-stdin`.
fn password_from(r: impl io::Read) -> Result<String, CliError> {
    use std::io::Read as _;
    const MAX: u64 = 64 << 10;
    let mut raw = Vec::new();
    r.take(MAX + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Failed(format!("--password-stdin: cannot read stdin: {e}")))?;
    if raw.len() as u64 > MAX {
        return Err(Usage(format!(
            "--password-stdin: stdin holds more than {MAX} bytes; a password is expected"
        )));
    }
    let mut pass = String::from_utf8(raw)
        .map_err(|_| Usage("--password-stdin: the password is not UTF-8".into()))?;
    if pass.ends_with('\n') {
        pass.pop();
        if pass.ends_with('\r') {
            pass.pop();
        }
    }
    if pass.is_empty() {
        return Err(Usage("--password-stdin: stdin held no password".into()));
    }
    Ok(pass)
}

fn pull(st: &Store, args: &[String]) -> Res {
    let (tls_verify, args) = take_tls_verify(args)?;
    let p = Parsed::new(
        &args,
        &["-q", "--quiet", "--password-stdin"],
        &[&["--platform"], CRED_FLAGS].concat(),
    )?;
    let [what] = p.pos.as_slice() else {
        return Err(Usage("pull takes one image reference".into()));
    };
    let r = RemoteRef::parse(what).map_err(Usage)?;
    let quiet = p.has(&["-q", "--quiet"]);
    let opts = PullOptions {
        client: client_options(&p, tls_verify)?,
        platform: p
            .value(&["--platform"])
            .map(Platform::parse)
            .transpose()
            .map_err(Usage)?,
        unpack: unpack_options(),
        progress: !quiet && io::stderr().is_terminal(),
    };
    let rep = registry::pull::pull(st, &r, &opts)?;
    if !quiet {
        eprintln!(
            "{}: {} layers, {} downloaded ({}), {} already in the store",
            rep.tag.as_deref().unwrap_or(&r.to_string()),
            rep.layers,
            rep.downloaded,
            human_size(rep.bytes),
            rep.layers - rep.downloaded
        );
        eprintln!("Digest: {}", rep.manifest_digest);
    }
    println!("{}", rep.id);
    Ok(())
}

fn push(st: &Store, args: &[String]) -> Res {
    let (tls_verify, args) = take_tls_verify(args)?;
    let p = Parsed::new(
        &args,
        &["-q", "--quiet", "--password-stdin"],
        &[&["--chunk-size"], CRED_FLAGS].concat(),
    )?;
    let (src, dst) = match p.pos.as_slice() {
        [one] => (one, one),
        [src, dst] => (src, dst),
        _ => return Err(Usage("push takes IMAGE [DESTINATION]".into())),
    };
    let img = st.resolve(src)?;
    let r = RemoteRef::parse(dst).map_err(Usage)?;
    let quiet = p.has(&["-q", "--quiet"]);
    let chunk_size = p
        .value(&["--chunk-size"])
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Usage(format!("--chunk-size {v:?}: a positive byte count")))
        })
        .transpose()?;
    let opts = PushOptions {
        client: client_options(&p, tls_verify)?,
        chunk_size,
    };
    let verbose = !quiet && io::stderr().is_terminal();
    let log = move |line: String| {
        if verbose {
            eprintln!("{line}");
        }
    };
    let rep = registry::push::push(st, &img, &r, &opts, &log)?;
    if !quiet {
        eprintln!(
            "{r}: {} blobs pushed ({}), {} already there, {} mounted",
            rep.uploaded,
            human_size(rep.bytes),
            rep.existed,
            rep.mounted
        );
    }
    println!("{}", img.manifest_digest);
    Ok(())
}

fn load(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &["-q", "--quiet"], &["-i", "--input"])?;
    if !p.pos.is_empty() {
        return Err(Usage("load takes no positional arguments".into()));
    }
    // Bars on a terminal, as docker load draws them; -q or a pipe keeps stderr quiet.
    let bars = Bars::new(!p.has(&["-q", "--quiet"]) && io::stderr().is_terminal());
    let loaded = match p.value(&["-i", "--input"]) {
        Some(f) if f != "-" => {
            let file = File::open(f).map_err(|e| format!("cannot open {f}: {e}"))?;
            let input = io::BufReader::with_capacity(1 << 20, file);
            archive::load_with(st, input, &unpack_options(), &bars)
        }
        _ => {
            if io::stdin().is_terminal() {
                return Err(Usage("load: give -i FILE or pipe an archive in".into()));
            }
            archive::load_with(st, io::stdin().lock(), &unpack_options(), &bars)
        }
    }
    .map_err(|m| format!("load: {m}"))?;
    if !p.has(&["-q", "--quiet"]) {
        for (id, tags) in loaded {
            if tags.is_empty() {
                println!("Loaded image ID: {id}");
            }
            for t in tags {
                println!("Loaded image: {t}");
            }
        }
    }
    Ok(())
}

fn save(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &[], &["-o", "--output"])?;
    if p.pos.is_empty() {
        return Err(Usage("save needs at least one image".into()));
    }
    match p.value(&["-o", "--output"]) {
        Some(f) if f != "-" => {
            let out = Path::new(f);
            let tmp = PathBuf::from(format!("{f}.tmp-{}", std::process::id()));
            let res = (|| {
                let file = File::create_new(&tmp)
                    .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
                let mut w = io::BufWriter::with_capacity(1 << 20, file);
                archive::save(st, &p.pos, &mut w)?;
                let file = w
                    .into_inner()
                    .map_err(|e| format!("cannot write {f}: {}", e.error()))?;
                file.sync_all()
                    .map_err(|e| format!("cannot sync {f}: {e}"))?;
                fs::rename(&tmp, out).map_err(|e| format!("cannot rename to {f}: {e}"))
            })();
            if res.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            res?;
        }
        _ => {
            if io::stdout().is_terminal() {
                return Err(Usage(
                    "save: refusing to write an archive to a terminal; give -o FILE".into(),
                ));
            }
            let mut out = io::stdout().lock();
            archive::save(st, &p.pos, &mut out)?;
        }
    }
    Ok(())
}

/// The image's size: its layers' uncompressed tar bytes (as recorded when unpacked).
fn image_size(st: &Store, img: &Image) -> u64 {
    let diffs = img.diff_ids().unwrap_or_default();
    diffs
        .iter()
        .zip(&img.manifest.layers)
        .map(|(d, l)| st.layer_info(d).map_or(l.size, |i| i.size))
        .sum()
}

fn created(img: &Image) -> String {
    img.config
        .get("created")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn images(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &["--no-trunc"], &["--format"])?;
    let json = p.json()?;
    if !p.pos.is_empty() {
        return Err(Usage("images takes no positional arguments".into()));
    }
    let mut imgs = st.images()?;
    imgs.sort_by_key(|i| std::cmp::Reverse(parse_time(&created(i)).unwrap_or(i64::MIN)));
    let mut rows = Vec::new();
    for img in &imgs {
        let size = image_size(st, img);
        let id = if p.has(&["--no-trunc"]) {
            img.id().to_string()
        } else {
            img.id().hex()[..12].to_string()
        };
        let pairs: Vec<(String, String)> = if img.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            img.tags
                .iter()
                .map(|t| match Reference::parse(t) {
                    Ok(r) => (r.name, r.tag),
                    Err(_) => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in pairs {
            if json {
                let c = created(img);
                let line = json!({
                    "Repository": repo, "Tag": tag, "ID": img.id().to_string(),
                    "Digest": img.manifest_digest.to_string(), "CreatedAt": c,
                    "CreatedSince": since(&c), "Size": human_size(size), "SizeBytes": size,
                });
                println!("{line}");
            } else {
                rows.push(vec![
                    repo,
                    tag,
                    id.clone(),
                    since(&created(img)),
                    human_size(size),
                ]);
            }
        }
    }
    if !json {
        print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows);
    }
    Ok(())
}

fn inspect(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &[], &["--format"])?;
    p.json()?;
    if p.pos.is_empty() {
        return Err(Usage("inspect needs at least one image".into()));
    }
    let mut out = Vec::new();
    for name in &p.pos {
        let img = st.resolve(name)?;
        let diffs = img.diff_ids()?;
        let lower: Vec<String> = diffs
            .iter()
            .rev()
            .map(|d| st.layer_dir(d).display().to_string())
            .collect();
        let c = &img.config;
        out.push(json!({
            "Id": img.id().to_string(),
            "RepoTags": img.tags,
            "RepoDigests": [],
            "Created": c.get("created").cloned().unwrap_or(Value::Null),
            "Author": c.get("author").cloned().unwrap_or(json!("")),
            "Config": c.get("config").cloned().unwrap_or(Value::Null),
            "Architecture": c.get("architecture").cloned().unwrap_or(Value::Null),
            "Os": c.get("os").cloned().unwrap_or(Value::Null),
            "Size": image_size(st, &img),
            "RootFS": {"Type": "layers", "Layers": diffs.iter().map(Digest::to_string).collect::<Vec<_>>()},
            "History": c.get("history").cloned().unwrap_or(json!([])),
            "Manifest": {"Digest": img.manifest_digest.to_string(),
                         "MediaType": img.manifest.media_type},
            "GraphDriver": {"Name": "unionrs", "Data": {"LowerDir": lower.join(":")}},
        }));
    }
    let s = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    println!("{s}");
    Ok(())
}

fn history(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &["--no-trunc", "-q", "--quiet"], &["--format"])?;
    let json = p.json()?;
    let [name] = p.pos.as_slice() else {
        return Err(Usage("history takes one image".into()));
    };
    let img = st.resolve(name)?;
    let diffs = img.diff_ids()?;
    let hist: Vec<Value> = match img.config.get("history").and_then(Value::as_array) {
        Some(h) if !h.is_empty() => h.clone(),
        _ => diffs.iter().map(|_| json!({})).collect(),
    };
    // Pair each non-empty history entry with the next layer, bottom up.
    let mut layer = 0;
    let mut rows: Vec<(String, String, String, Option<u64>, String)> = Vec::new();
    for h in &hist {
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            None
        } else {
            let s = diffs.get(layer).map(|d| {
                st.layer_info(d)
                    .map_or(img.manifest.layers.get(layer).map_or(0, |l| l.size), |i| {
                        i.size
                    })
            });
            layer += 1;
            s
        };
        let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        rows.push((
            s("created"),
            s("created_by"),
            s("comment"),
            size,
            s("author"),
        ));
    }
    rows.reverse();
    let trunc = !p.has(&["--no-trunc"]);
    let mut table = Vec::new();
    for (i, (created, by, comment, size, _)) in rows.iter().enumerate() {
        let id = if i == 0 {
            if trunc {
                img.id().hex()[..12].to_string()
            } else {
                img.id().to_string()
            }
        } else {
            "<missing>".to_string()
        };
        if json {
            let line = json!({"ID": id, "CreatedAt": created, "CreatedSince": since(created),
                "CreatedBy": by, "Size": human_size(size.unwrap_or(0)),
                "SizeBytes": size.unwrap_or(0), "Comment": comment});
            println!("{line}");
        } else if p.has(&["-q", "--quiet"]) {
            println!("{id}");
        } else {
            let by = if trunc && by.chars().count() > 45 {
                format!("{}…", by.chars().take(44).collect::<String>())
            } else {
                by.clone()
            };
            table.push(vec![
                id,
                since(created),
                by,
                human_size(size.unwrap_or(0)),
                comment.clone(),
            ]);
        }
    }
    if !json && !p.has(&["-q", "--quiet"]) {
        print_table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table,
        );
    }
    Ok(())
}

fn tag(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &[], &[])?;
    let [src, dst] = p.pos.as_slice() else {
        return Err(Usage("tag takes SOURCE and TARGET".into()));
    };
    let img = st.resolve(src)?;
    let r = Reference::parse(dst)?;
    let mut index = st.read_index()?;
    let desc = index
        .manifests
        .iter()
        .find(|d| d.digest == img.manifest_digest.as_str())
        .cloned()
        .ok_or_else(|| Failed("image vanished from index.json".into()))?;
    Store::set_tag(&mut index, &r, &desc);
    st.write_index(&index)?;
    Ok(())
}

fn rmi(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &["-f", "--force"], &[])?;
    if p.pos.is_empty() {
        return Err(Usage("rmi needs at least one image".into()));
    }
    let force = p.has(&["-f", "--force"]);
    let mut first_err = None;
    for name in &p.pos {
        if let Err(m) = rmi_one(st, name, force) {
            eprintln!("unionrs: rmi {name}: {m}");
            first_err.get_or_insert(m);
        }
    }
    for d in st.gc(&container::used_diff_ids(st)?)?.layers {
        println!("Deleted: {d}");
    }
    match first_err {
        Some(_) => Err(Failed("some images were not removed".into())),
        None => Ok(()),
    }
}

fn rmi_one(st: &Store, name: &str, force: bool) -> Result<(), String> {
    let img = st.resolve(name)?;
    if let Some(c) = container::list(st)?
        .iter()
        .find(|c| c.image_id == img.id().as_str())
    {
        return Err(format!(
            "image is used by container {}; remove it first",
            c.name
        ));
    }
    let mut index = st.read_index()?;
    let by_tag = Reference::parse(name)
        .ok()
        .map(|r| r.to_string())
        .filter(|t| img.tags.contains(t));
    let untag: Vec<String> = match by_tag {
        Some(t) => vec![t],
        None if img.tags.len() > 1 && !force => {
            return Err(format!(
                "image {} is tagged {}; remove the tags one by one or use -f",
                &img.id().hex()[..12],
                img.tags.join(", ")
            ));
        }
        None => img.tags.clone(),
    };
    index.manifests.retain(|d| {
        let tagged = d
            .annotation(ANN_REF_NAME)
            .is_some_and(|r| untag.iter().any(|t| t == r));
        let untagged_same =
            d.digest == img.manifest_digest.as_str() && d.annotation(ANN_REF_NAME).is_none();
        !(tagged || untagged_same)
    });
    for t in &untag {
        println!("Untagged: {t}");
    }
    if !index
        .manifests
        .iter()
        .any(|d| d.digest == img.manifest_digest.as_str())
    {
        println!("Deleted: {}", img.id());
    }
    st.write_index(&index)
}

fn prune(st: &Store, args: &[String]) -> Res {
    // -f is Docker's "do not ask"; prune never asks.
    let p = Parsed::new(args, &["-a", "--all", "-f", "--force"], &[])?;
    if !p.pos.is_empty() {
        return Err(Usage("prune takes no positional arguments".into()));
    }
    let r = crate::image::prune::prune(st, p.has(&["-a", "--all"]))?;
    if !r.untagged.is_empty() || !r.images.is_empty() {
        println!("Deleted Images:");
        for t in &r.untagged {
            println!("untagged: {t}");
        }
        for id in &r.images {
            println!("deleted: {id}");
        }
    }
    for l in &r.freed.layers {
        println!("deleted layer: {l}");
    }
    println!(
        "Total reclaimed space: {} ({} bytes; {} images, {} layers, {} blobs)",
        human_size(r.freed.bytes),
        r.freed.bytes,
        r.images.len(),
        r.freed.layers.len(),
        r.freed.blobs.len()
    );
    Ok(())
}

fn one_container(
    st: &Store,
    args: &[String],
    verb: &str,
) -> Result<container::Container, CliError> {
    let p = Parsed::new(args, &[], &[])?;
    let [name] = p.pos.as_slice() else {
        return Err(Usage(format!("{verb} takes one container name")));
    };
    Ok(container::find(st, name)?)
}

fn create(st: &Store, args: &[String]) -> Res {
    let p = Parsed::new(args, &[], &["--name"])?;
    let [image] = p.pos.as_slice() else {
        return Err(Usage("create takes one image".into()));
    };
    let c = container::create(st, image, p.value(&["--name"]))?;
    if let Err(m) = container::mount(st, &c) {
        let _ = container::remove(st, &c);
        return Err(Failed(m));
    }
    println!("{}", c.name);
    Ok(())
}

fn mount(st: &Store, args: &[String]) -> Res {
    let c = one_container(st, args, "mount")?;
    println!("{}", container::mount(st, &c)?.display());
    Ok(())
}

fn umount(st: &Store, args: &[String]) -> Res {
    let c = one_container(st, args, "umount")?;
    container::umount(st, &c)?;
    Ok(())
}

fn diff(st: &Store, args: &[String]) -> Res {
    let c = one_container(st, args, "diff")?;
    for (k, p) in container::diff(st, &c)? {
        println!("{k} {p}");
    }
    Ok(())
}

fn commit(st: &Store, args: &[String]) -> Res {
    // -p/--pause[=true|false] (docker's default: pause a running container while its
    // layer is made), taken out before the generic parse, which has no `=false`.
    let mut pause = true;
    let mut rest = Vec::new();
    for a in args {
        match a.as_str() {
            "-p" | "--pause" | "-p=true" | "--pause=true" => pause = true,
            "-p=false" | "--pause=false" => pause = false,
            _ => rest.push(a.clone()),
        }
    }
    let args = &rest[..];
    let p = Parsed::new(
        args,
        &[],
        &["-a", "--author", "-m", "--message", "-c", "--change"],
    )?;
    let (name, target) = match p.pos.as_slice() {
        [n] => (n, None),
        [n, t] => (n, Some(Reference::parse(t)?)),
        _ => {
            return Err(Usage(
                "commit takes a container and an optional REPO[:TAG]".into(),
            ));
        }
    };
    let c = container::find(st, name)?;
    let changes: Vec<String> = p
        .flags
        .iter()
        .filter(|(n, _)| n == "-c" || n == "--change")
        .filter_map(|(_, v)| v.clone())
        .collect();
    let o = container::CommitOpts {
        author: p.value(&["-a", "--author"]),
        message: p.value(&["-m", "--message"]),
        changes: &changes,
    };
    let id = crate::image::lifecycle::control::paused_for(st, &c, pause, || {
        container::commit(st, &c, target.as_ref(), &o)
    })?;
    println!("{id}");
    Ok(())
}

pub fn print_table(head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 3));
            }
        }
        s
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", line(head.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// Docker's human sizes: decimal units, 3 significant digits ("5.59MB", "123B").
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[u])
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `+01:00`).
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let off = match b.get(i) {
        Some(b'Z' | b'z') => 0,
        Some(c @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if *c == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - off)
}

/// "3 days ago", as Docker words it.
pub fn since(created: &str) -> String {
    let Some(t) = parse_time(created) else {
        return "N/A".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let s = (now - t).max(0);
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86399 => (s / 3600, "hour"),
        86400..=1_209_599 => (s / 86400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_from_stdin_as_docker_login_reads_it() {
        let pw = |s: &[u8]| {
            password_from(s).map_err(|e| match e {
                Usage(m) | Failed(m) => m,
            })
        };
        assert_eq!(pw(b"s3cret\n").unwrap(), "s3cret");
        assert_eq!(pw(b"s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(pw(b"a:b c\n\n").unwrap(), "a:b c\n");
        assert_eq!(pw(b"nonl").unwrap(), "nonl");
        assert!(pw(b"\n").unwrap_err().contains("no password"));
        assert!(pw(b"").unwrap_err().contains("no password"));
    }

    #[test]
    fn tls_verification_stays_on_unless_turned_off() {
        let v = |a: &[&str]| {
            take_tls_verify(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map(|(verify, rest)| (verify, rest.len()))
                .map_err(|_| ())
        };
        assert_eq!(v(&["ref"]), Ok((true, 1)));
        assert_eq!(v(&["--tls-verify", "ref"]), Ok((true, 1)));
        assert_eq!(v(&["--tls-verify=false", "ref"]), Ok((false, 1)));
        assert_eq!(v(&["--tls-verify=no", "ref"]), Err(()));
        let p = Parsed::new(&[], &[], &[]).map_err(|_| ()).unwrap();
        assert!(client_options(&p, true).map_err(|_| ()).unwrap().tls_verify);
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(human_size(123), "123B");
        assert_eq!(human_size(5_590_000), "5.59MB");
        assert_eq!(human_size(77_800_000), "77.8MB");
        assert_eq!(human_size(5_000_000), "5MB");
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time("2024-01-02T03:04:05.5+01:00"),
            Some(1704164645 - 3600)
        );
        assert_eq!(parse_time("junk"), None);
    }
}
