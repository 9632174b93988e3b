//! The verbs of containers that live: `ps`, `logs`, `exec`, `start`, `stop`, `restart`,
//! `kill`, `wait`, `pause`, `unpause`, `rm`, and the hidden `__monitor`. Parsing only: the
//! work is in [`crate::image::lifecycle`]. A container is named by name or ID prefix.

use crate::image::container;
use crate::image::lifecycle::attach::{self, Ended};
use crate::image::lifecycle::exec::ExecOptions;
use crate::image::lifecycle::logs::{self, LogOptions};
use crate::image::lifecycle::state::{self, Status};
use crate::image::lifecycle::{control, exec, monitor};
use crate::image::store::{self, Store};
use serde_json::json;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub const VERBS: &[&str] = &[
    "ps", "logs", "exec", "start", "stop", "restart", "kill", "wait", "pause", "unpause", "rm",
    "attach", "top",
];

pub const USAGE: &str = "\
       unionrs [--store DIR] ps [-a] [-q] [--no-trunc] [--format json]
       unionrs [--store DIR] logs [-f] [--tail N] [-t] CONTAINER
       unionrs [--store DIR] exec [-d] [-i] [-t] [-e K=V]... [-w DIR] [-u USER] CONTAINER CMD [ARG...]
       unionrs [--store DIR] attach CONTAINER      (detach: ctrl-p ctrl-q)
       unionrs [--store DIR] top CONTAINER [PS_OPTIONS]
       unionrs [--store DIR] start [-a] CONTAINER...
       unionrs [--store DIR] restart|pause|unpause|wait CONTAINER...
       unionrs [--store DIR] stop [-t SECS] CONTAINER...
       unionrs [--store DIR] kill [-s SIGNAL] CONTAINER...
       unionrs [--store DIR] rm [-f] CONTAINER...   (CONTAINER: a name or an ID prefix)";

/// `--store` before the verb, the verb, and its arguments; None unless the verb is ours.
fn split(args: &[OsString]) -> Option<(Option<PathBuf>, String, Vec<OsString>)> {
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
        } else {
            let verb = a.to_str()?;
            return VERBS
                .contains(&verb)
                .then(|| (store_flag, verb.to_string(), args[i + 1..].to_vec()));
        }
    }
    None
}

/// Runs a container verb if `args` (after the program name) holds one.
pub fn main(args: &[OsString]) -> Option<ExitCode> {
    if args.first().is_some_and(|a| a == monitor::VERB) {
        let [_, dir] = args else {
            return Some(ExitCode::from(2));
        };
        return Some(ExitCode::from(monitor::main(Path::new(dir))));
    }
    let (store_flag, verb, rest) = split(args)?;
    let rest: Vec<String> = match rest
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect::<Option<_>>()
    {
        Some(r) => r,
        None => {
            eprintln!("unionrs: {verb}: an argument is not UTF-8");
            return Some(ExitCode::from(2));
        }
    };
    let root = match store::default_root(store_flag.as_deref()) {
        Ok(r) => r,
        Err(m) => {
            eprintln!("unionrs: {m}");
            return Some(ExitCode::from(1));
        }
    };
    Some(match verb_main(&root, &verb, &rest) {
        Ok(code) => code,
        Err(Error::Usage(m)) => {
            eprintln!("unionrs: {verb}: {m}\nusage:\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Error::Failed(m)) => {
            eprintln!("unionrs: {verb}: {m}");
            // exec's own failures are docker's 125 (its command's status is passed on).
            ExitCode::from(if verb == "exec" { 125 } else { 1 })
        }
    })
}

enum Error {
    Usage(String),
    Failed(String),
}

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error::Failed(s)
    }
}

/// Flags (`-x`, `--xx`, `--xx=V`, `-x V` for those taking values) before the first
/// positional argument when `stop_at_positional`, else anywhere.
struct Args {
    flags: Vec<(String, Option<String>)>,
    pos: Vec<String>,
}

fn parse(
    args: &[String],
    switches: &[&str],
    valued: &[&str],
    stop_at_positional: bool,
) -> Result<Args, Error> {
    let mut p = Args {
        flags: Vec::new(),
        pos: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if !a.starts_with('-') || a == "-" || (stop_at_positional && !p.pos.is_empty()) {
            p.pos.push(a.clone());
            continue;
        }
        if a == "--" {
            p.pos.extend(args[i..].iter().cloned());
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if valued.contains(&name.as_str()) {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i - 1)
                        .cloned()
                        .ok_or_else(|| Error::Usage(format!("{name} needs a value")))?
                }
            };
            p.flags.push((name, Some(v)));
        } else if switches.contains(&name.as_str()) {
            p.flags.push((name, inline));
        } else if !name.starts_with("--")
            && name.len() > 2
            && name[1..]
                .chars()
                .all(|c| switches.contains(&format!("-{c}").as_str()))
        {
            // Combined short switches: -it, -dit.
            for c in name[1..].chars() {
                p.flags.push((format!("-{c}"), None));
            }
        } else {
            return Err(Error::Usage(format!("unknown option {name}")));
        }
    }
    Ok(p)
}

impl Args {
    fn on(&self, names: &[&str]) -> Result<bool, Error> {
        let mut v = false;
        for (n, inline) in &self.flags {
            if names.contains(&n.as_str()) {
                v = match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(x) => return Err(Error::Usage(format!("{n}={x}: true or false"))),
                };
            }
        }
        Ok(v)
    }

    fn value(&self, names: &[&str]) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| names.contains(&n.as_str()))
            .and_then(|(_, v)| v.as_deref())
    }

    fn values(&self, names: &[&str]) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn containers(&self, verb: &str) -> Result<&[String], Error> {
        if self.pos.is_empty() {
            return Err(Error::Usage(format!("{verb} needs a container")));
        }
        Ok(&self.pos)
    }
}

fn verb_main(root: &Path, verb: &str, args: &[String]) -> Result<ExitCode, Error> {
    match verb {
        "ps" => ps(root, args).map(|_| ExitCode::SUCCESS),
        "logs" => {
            let p = parse(
                args,
                &["-f", "--follow", "-t", "--timestamps"],
                &["--tail", "-n"],
                false,
            )?;
            let [what] = p.pos.as_slice() else {
                return Err(Error::Usage("logs takes one container".into()));
            };
            let tail = match p.value(&["--tail", "-n"]) {
                None | Some("all") => None,
                Some(n) => Some(
                    n.parse()
                        .map_err(|_| Error::Usage(format!("--tail {n:?}: a number or all")))?,
                ),
            };
            let o = LogOptions {
                follow: p.on(&["-f", "--follow"])?,
                tail,
                timestamps: p.on(&["-t", "--timestamps"])?,
            };
            let f = control::find(root, what)?;
            let dir = f.dir.clone();
            let mut done = || !state::status(&dir).is_running();
            logs::show(
                &logs::path(&f.dir),
                &o,
                &mut done,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        "exec" => {
            let p = parse(
                args,
                &["-d", "--detach", "-i", "--interactive", "-t", "--tty"],
                &["-e", "--env", "-w", "--workdir", "-u", "--user"],
                true,
            )?;
            let Some((what, command)) = p.pos.split_first() else {
                return Err(Error::Usage("exec needs a container and a command".into()));
            };
            let o = ExecOptions {
                detach: p.on(&["-d", "--detach"])?,
                interactive: p.on(&["-i", "--interactive"])?,
                tty: p.on(&["-t", "--tty"])?,
                env: p.values(&["-e", "--env"]),
                workdir: p.value(&["-w", "--workdir"]).map(str::to_string),
                user: p.value(&["-u", "--user"]).map(str::to_string),
                command: command.to_vec(),
            };
            let code = exec::exec(root, what, &o)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)))
        }
        "stop" | "restart" => {
            let p = parse(args, &[], &["-t", "--time"], false)?;
            let secs: u64 = match p.value(&["-t", "--time"]) {
                None => 10,
                Some(s) => s
                    .parse()
                    .map_err(|_| Error::Usage(format!("-t {s:?}: seconds")))?,
            };
            for what in p.containers(verb)? {
                control::stop(root, what, Duration::from_secs(secs))?;
                if verb == "restart" {
                    control::start(root, what)?;
                }
                println!("{what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        "kill" => {
            let p = parse(args, &[], &["-s", "--signal"], false)?;
            let sig = p.value(&["-s", "--signal"]).unwrap_or("KILL");
            for what in p.containers(verb)? {
                control::kill(root, what, sig)?;
                println!("{what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        "top" => {
            let Some((what, opts)) = args.split_first() else {
                return Err(Error::Usage("top needs a container".into()));
            };
            print!("{}", control::top(root, what, opts)?);
            Ok(ExitCode::SUCCESS)
        }
        "attach" => {
            let p = parse(args, &[], &[], false)?;
            let [what] = p.pos.as_slice() else {
                return Err(Error::Usage("attach takes one container".into()));
            };
            attach_to(root, what)
        }
        "start"
            if parse(args, &["-a", "--attach", "-i", "--interactive"], &[], false)
                .and_then(|p| p.on(&["-a", "--attach"]))
                .unwrap_or(false) =>
        {
            let p = parse(args, &["-a", "--attach", "-i", "--interactive"], &[], false)?;
            let [what] = p.pos.as_slice() else {
                return Err(Error::Usage("start -a takes one container".into()));
            };
            control::start(root, what)?;
            attach_to(root, what)
        }
        "start" | "pause" | "unpause" => {
            let p = parse(args, &[], &[], false)?;
            for what in p.containers(verb)? {
                match verb {
                    "start" => control::start(root, what)?,
                    v => control::pause(root, what, v == "pause")?,
                };
                println!("{what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        "wait" => {
            let p = parse(args, &[], &[], false)?;
            for what in p.containers(verb)? {
                println!("{}", control::wait(root, what)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        "rm" => {
            let p = parse(args, &["-f", "--force"], &[], false)?;
            let force = p.on(&["-f", "--force"])?;
            for what in p.containers(verb)? {
                control::remove(root, what, force)?;
                println!("{what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        v => Err(Error::Usage(format!("unknown command {v:?}"))),
    }
}

/// Attaches to a running container; the container's exit status when it stops, 0 when
/// detached.
fn attach_to(root: &Path, what: &str) -> Result<ExitCode, Error> {
    let f = control::find(root, what)?;
    if !state::status(&f.dir).is_running() {
        return Err(Error::Failed(format!(
            "container {} is not running",
            f.c.name
        )));
    }
    match attach::attach(&attach::socket_path(&f.c.id))? {
        Ended::Detached => Ok(ExitCode::SUCCESS),
        Ended::Stopped => {
            let code = control::wait(root, what)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
    }
}

/// "Up 3 minutes", "Exited (0) 2 seconds ago", "Created", as docker words them.
fn status_text(s: &Status, mounted: bool, dead_mount: bool) -> String {
    let ago = |t: &str| super::image::since(t);
    let mut out = match s {
        Status::Created => "Created".to_string(),
        Status::Running { started_at, paused } => {
            let up = ago(started_at);
            let up = match up.strip_suffix(" ago").unwrap_or(&up) {
                "0 seconds" => "Less than a second",
                u => u,
            };
            format!("Up {up}{}", if *paused { " (Paused)" } else { "" })
        }
        Status::Exited { code, finished_at } => format!(
            "Exited ({}) {}",
            code.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            finished_at.as_deref().map_or_else(String::new, ago)
        ),
    };
    if dead_mount || (s.is_running() && !mounted) {
        // The union's daemon died: the container's files are gone until rm -f or stop.
        out.push_str(" (broken: union mount gone)");
    } else if !s.is_running() && mounted {
        out.push_str(" (mounted)");
    }
    out.trim_end().to_string()
}

fn ps(root: &Path, args: &[String]) -> Result<(), Error> {
    let p = parse(
        args,
        &["-a", "--all", "-q", "--quiet", "--no-trunc"],
        &["--format"],
        false,
    )?;
    if !p.pos.is_empty() {
        return Err(Error::Usage("ps takes no arguments".into()));
    }
    let all = p.on(&["-a", "--all"])?;
    let quiet = p.on(&["-q", "--quiet"])?;
    let no_trunc = p.on(&["--no-trunc"])?;
    let json = match p.value(&["--format"]) {
        None => false,
        Some("json") => true,
        Some(f) => {
            return Err(Error::Usage(format!(
                "--format {f:?}: only 'json' is supported"
            )));
        }
    };
    let st = Store::open(root)?;
    let mut rows = Vec::new();
    let mut list = container::list(&st)?;
    // Newest first, as docker lists them.
    list.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
    for c in list {
        let dir = container::dir(&st, &c.name);
        let merged = dir.join("merged");
        let s = state::status(&dir);
        if !all && !s.is_running() {
            continue;
        }
        let cfg = state::load_run_config(&dir).unwrap_or_default();
        let mounted = container::is_mounted(&merged);
        let dead = container::is_dead_mount(&merged);
        let id = if no_trunc { &c.id[..] } else { &c.id[..12] };
        let ports: Vec<String> = if s.is_running() {
            cfg.ports.iter().map(|m| m.shown()).collect()
        } else {
            Vec::new()
        };
        let command = cfg.command.join(" ");
        let command = if no_trunc || command.chars().count() <= 20 || json {
            command
        } else {
            format!("{}…", command.chars().take(19).collect::<String>())
        };
        if quiet {
            println!("{id}");
        } else if json {
            let line = json!({"ID": c.id, "Names": c.name, "Image": c.image_name,
                "ImageID": c.image_id, "Command": command, "CreatedAt": c.created,
                "State": s.word(), "Status": status_text(&s, mounted, dead),
                "Ports": ports.join(", "), "Mounted": mounted,
                "Mountpoint": merged.display().to_string()});
            println!("{line}");
        } else {
            rows.push(vec![
                id.to_string(),
                c.image_name.clone(),
                format!("\"{command}\""),
                super::image::since(&c.created),
                status_text(&s, mounted, dead),
                ports.join(", "),
                c.name.clone(),
            ]);
        }
    }
    if !quiet && !json {
        super::image::print_table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ],
            &rows,
        );
    }
    Ok(())
}
