//! The container verbs: `create`, `ps`, `mount`, `umount`, `diff`, `commit`, `rm` (`run` has
//! its own module). To add one: a variant with its arguments in [`Verb`] (a verb that takes
//! only a container reuses [`ContainerArg`]), a line in [`Verb::name`] and an arm in
//! [`Verb::run`].

use super::image::{open_store, print_table, since};
use super::template::{self, Format};
use super::{CliError, Res};
use crate::image::container;
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
    /// Remove a container
    Rm(ContainerArg),
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
        let st = open_store(store)?;
        match self {
            Verb::Create(a) => create(&st, a),
            Verb::Ps(a) => ps(&st, a),
            Verb::Mount(a) => {
                let c = container::load(&st, &a.name)?;
                println!("{}", container::mount(&st, &c)?.display());
                Ok(())
            }
            Verb::Umount(a) => {
                let c = container::load(&st, &a.name)?;
                Ok(container::umount(&st, &c)?)
            }
            Verb::Diff(a) => {
                let c = container::load(&st, &a.name)?;
                for (k, p) in container::diff(&st, &c)? {
                    println!("{k} {p}");
                }
                Ok(())
            }
            Verb::Commit(a) => commit(&st, a),
            Verb::Rm(a) => {
                let c = container::load(&st, &a.name)?;
                container::remove(&st, &c)?;
                println!("{}", c.name);
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

fn ps(st: &Store, a: PsArgs) -> Res {
    let format = Format::parse(a.format.as_deref()).map_err(CliError::Usage)?;
    let mut rows = Vec::new();
    let mut objects = Vec::new();
    for c in container::list(st)? {
        let merged = container::dir(st, &c.name).join("merged");
        let state = if container::is_mounted(&merged) {
            "mounted"
        } else {
            "unmounted"
        };
        if let Format::Default = format {
            rows.push(vec![
                c.name.clone(),
                c.image_name.clone(),
                since(&c.created),
                state.to_string(),
                merged.display().to_string(),
            ]);
            continue;
        }
        // A container is known by its name: docker's ID and Names are both it.
        let line = json!({"ID": c.name, "Names": c.name, "Name": c.name,
            "Image": c.image_name, "ImageID": c.image_id, "CreatedAt": c.created,
            "CreatedSince": since(&c.created), "State": state,
            "Mountpoint": merged.display().to_string()});
        if let Format::Json = format {
            println!("{line}");
        } else {
            objects.push(line);
        }
    }
    match format {
        Format::Default => {
            print_table(&["NAME", "IMAGE", "CREATED", "STATE", "MOUNTPOINT"], &rows);
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
    let c = container::load(st, &a.container)?;
    let o = container::CommitOpts {
        author: a.author.as_deref(),
        message: a.message.as_deref(),
        changes: &a.change,
    };
    let id = container::commit(st, &c, target.as_ref(), &o)?;
    println!("{id}");
    Ok(())
}
