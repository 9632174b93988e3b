//! The container verbs: `create`, `ps`, `mount`, `umount`, `diff`, `commit`, `rm` (`run` has
//! its own module). To add one: a variant with its arguments in [`Verb`] (a verb that takes
//! only a container reuses [`ContainerArg`]), a line in [`Verb::name`] and an arm in
//! [`Verb::run`]. The verbs of containers that run (`logs`, `exec`, `start`, `stop`, ...)
//! are in [`super::lifecycle`]. A container is named by its name or an ID prefix.

use super::image::{open_store, print_table, since};
use super::template::{self, Format};
use super::{CliError, Res};
use crate::image::container;
use crate::image::lifecycle::control;
use crate::image::lifecycle::state::{self, Status};
use crate::image::reference::Reference;
use crate::image::store::Store;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Verb {
    /// Create a container: an upper and work dir over the image's layers, mounted
    Create(CreateArgs),
    /// List the containers
    Ps(PsArgs),
    /// Mount a container's merged view; prints where
    Mount(ContainerArg),
    /// Unmount a container's merged view
    Umount(ContainerArg),
    /// List what a container changed (A, C and D lines from its upper)
    Diff(ContainerArg),
    /// Make an image of a container's changes
    Commit(CommitArgs),
    /// Remove containers (-f: running ones too)
    Rm(RmArgs),
}

#[derive(Args)]
pub struct RmArgs {
    /// Kill a running container (and its monitor) first
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct ContainerArg {
    #[arg(value_name = "CONTAINER")]
    name: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The container's name (default: a generated one)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[arg(value_name = "IMAGE")]
    image: String,
}

#[derive(Args)]
pub struct PsArgs {
    /// All containers (default: the running ones)
    #[arg(short, long)]
    all: bool,
    /// Only the IDs
    #[arg(short, long)]
    quiet: bool,
    /// Full IDs and commands
    #[arg(long)]
    no_trunc: bool,
    /// json (JSON lines), or a Go template: '{{.ID}} {{.Image}}', 'table {{.Names}}\t{{.State}}'
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

#[derive(Args)]
pub struct CommitArgs {
    /// The image's author
    #[arg(short, long, value_name = "AUTHOR")]
    author: Option<String>,
    /// The commit message (the history entry's comment)
    #[arg(short, long, value_name = "MESSAGE")]
    message: Option<String>,
    /// A Dockerfile instruction to apply to the config (CMD, ENV, ...); may repeat
    #[arg(short, long, value_name = "CHANGE")]
    change: Vec<String>,
    /// Pause a running container while its layer is made (-p=false: do not)
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pause: bool,
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// The new image's name
    #[arg(value_name = "REPO[:TAG]")]
    target: Option<String>,
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Create(_) => "create",
            Verb::Ps(_) => "ps",
            Verb::Mount(_) => "mount",
            Verb::Umount(_) => "umount",
            Verb::Diff(_) => "diff",
            Verb::Commit(_) => "commit",
            Verb::Rm(_) => "rm",
        }
    }

    pub fn run(self, store: Option<PathBuf>) -> Res {
        let root = crate::image::store::default_root(store.as_deref())?;
        let st = open_store(store)?;
        match self {
            Verb::Create(a) => create(&st, a),
            Verb::Ps(a) => ps(&st, a),
            Verb::Mount(a) => {
                let c = container::find(&st, &a.name)?;
                println!("{}", container::mount(&st, &c)?.display());
                Ok(())
            }
            Verb::Umount(a) => {
                let c = container::find(&st, &a.name)?;
                Ok(container::umount(&st, &c)?)
            }
            Verb::Diff(a) => {
                let c = container::find(&st, &a.name)?;
                for (k, p) in container::diff(&st, &c)? {
                    println!("{k} {p}");
                }
                Ok(())
            }
            Verb::Commit(a) => commit(&st, a),
            Verb::Rm(a) => {
                // The lifecycle takes the store lock itself (and lets go before waiting).
                drop(st);
                for what in &a.containers {
                    control::remove(&root, what, a.force)?;
                    println!("{what}");
                }
                Ok(())
            }
        }
    }
}

fn create(st: &Store, a: CreateArgs) -> Res {
    let c = container::create(st, &a.image, a.name.as_deref())?;
    if let Err(m) = container::mount(st, &c) {
        let _ = container::remove(st, &c);
        return Err(CliError::Failed(m));
    }
    println!("{}", c.name);
    Ok(())
}

/// "Up 3 minutes", "Exited (0) 2 seconds ago", "Created", as docker words them; a stopped
/// container whose union is still mounted adds "(mounted)", one whose union daemon died
/// "(broken: union mount gone)".
fn status_text(s: &Status, mounted: bool, dead_mount: bool) -> String {
    let mut out = match s {
        Status::Created => "Created".to_string(),
        Status::Running { started_at, paused } => {
            let up = since(started_at);
            let up = match up.strip_suffix(" ago").unwrap_or(&up) {
                "0 seconds" => "Less than a second",
                u => u,
            };
            format!("Up {up}{}", if *paused { " (Paused)" } else { "" })
        }
        Status::Exited { code, finished_at } => format!(
            "Exited ({}) {}",
            code.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            finished_at.as_deref().map_or_else(String::new, since)
        ),
    };
    if dead_mount || (s.is_running() && !mounted) {
        out.push_str(" (broken: union mount gone)");
    } else if !s.is_running() && mounted {
        out.push_str(" (mounted)");
    }
    out.trim_end().to_string()
}

fn ps(st: &Store, a: PsArgs) -> Res {
    let format = Format::parse(a.format.as_deref()).map_err(CliError::Usage)?;
    let mut rows = Vec::new();
    let mut objects = Vec::new();
    let mut list = container::list(st)?;
    // Newest first, as docker lists them.
    list.sort_by(|x, y| y.created.cmp(&x.created).then(x.name.cmp(&y.name)));
    for c in list {
        let dir = container::dir(st, &c.name);
        let merged = dir.join("merged");
        let s = state::status(&dir);
        if !a.all && !s.is_running() {
            continue;
        }
        let cfg = state::load_run_config(&dir).unwrap_or_default();
        let mounted = container::is_mounted(&merged);
        let dead = container::is_dead_mount(&merged);
        let id = if a.no_trunc { &c.id[..] } else { &c.id[..12] };
        if a.quiet {
            println!("{id}");
            continue;
        }
        let ports: Vec<String> = if s.is_running() {
            cfg.ports.iter().map(|m| m.shown()).collect()
        } else {
            Vec::new()
        };
        let command = cfg.command.join(" ");
        let status = status_text(&s, mounted, dead);
        if let Format::Default = format {
            let shown = if a.no_trunc || command.chars().count() <= 20 {
                command
            } else {
                format!("{}…", command.chars().take(19).collect::<String>())
            };
            rows.push(vec![
                id.to_string(),
                c.image_name.clone(),
                format!("\"{shown}\""),
                since(&c.created),
                status,
                ports.join(", "),
                c.name.clone(),
            ]);
            continue;
        }
        let line = json!({"ID": id, "Names": c.name, "Name": c.name,
            "Image": c.image_name, "ImageID": c.image_id, "Command": command,
            "CreatedAt": c.created, "CreatedSince": since(&c.created), "State": s.word(),
            "Status": status, "Ports": ports.join(", "), "Mounted": mounted,
            "Mountpoint": merged.display().to_string()});
        if let Format::Json = format {
            println!("{line}");
        } else {
            objects.push(line);
        }
    }
    if a.quiet {
        return Ok(());
    }
    match format {
        Format::Default => {
            print_table(
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
        Format::Json => {}
        Format::Template(t) => {
            let header = |f: &str| match f {
                "ID" => "CONTAINER ID".to_string(),
                "CreatedSince" => "CREATED".to_string(),
                f => template::default_header(f),
            };
            print!("{}", t.render_all(&objects, &header)?);
        }
    }
    Ok(())
}

fn commit(st: &Store, a: CommitArgs) -> Res {
    let target = a.target.as_deref().map(Reference::parse).transpose()?;
    let c = container::find(st, &a.container)?;
    let o = container::CommitOpts {
        author: a.author.as_deref(),
        message: a.message.as_deref(),
        changes: &a.change,
    };
    let id = control::paused_for(st, &c, a.pause, || {
        container::commit(st, &c, target.as_ref(), &o)
    })?;
    println!("{id}");
    Ok(())
}
