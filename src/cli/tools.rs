//! The verbs around a mount: `export-layer`, `stats`, `completions` and the hidden
//! `generate-man`. To add one: a variant with its arguments in [`Verb`], a line in
//! [`Verb::name`] and an arm in [`Verb::run`].

use super::{CliError, Res, help};
use clap::{Args, Subcommand, ValueHint};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Verb {
    /// Write an upper directory as an OCI layer tar; prints its diff ID
    ExportLayer(ExportLayerArgs),
    /// Print the live counters of the unionrs mount at MOUNTPOINT
    Stats(StatsArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Write the man pages (unionrs.1 and one per verb) into DIR
    #[command(hide = true)]
    GenerateMan(GenerateManArgs),
}

#[derive(Args)]
pub struct ExportLayerArgs {
    /// The upper directory of a union (whiteouts become .wh.NAME)
    #[arg(value_name = "UPPER_DIR", value_hint = ValueHint::DirPath)]
    upper: PathBuf,
    /// Where the tar goes
    #[arg(value_name = "OUT.tar", value_hint = ValueHint::FilePath)]
    out: PathBuf,
}

#[derive(Args)]
pub struct StatsArgs {
    #[arg(value_name = "MOUNTPOINT", value_hint = ValueHint::DirPath)]
    mountpoint: PathBuf,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct GenerateManArgs {
    #[arg(value_name = "DIR", value_hint = ValueHint::DirPath)]
    dir: PathBuf,
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::ExportLayer(_) => "export-layer",
            Verb::Stats(_) => "stats",
            Verb::Completions(_) => "completions",
            Verb::GenerateMan(_) => "generate-man",
        }
    }

    pub fn run(self) -> Res {
        match self {
            Verb::ExportLayer(a) => crate::image::layer_export::run_export_layer(&a.upper, &a.out)
                .map_err(|e| CliError::Failed(e.to_string())),
            Verb::Stats(a) => stats(&a.mountpoint),
            Verb::Completions(a) => {
                help::completions(a.shell, &mut std::io::stdout());
                Ok(())
            }
            Verb::GenerateMan(a) => help::generate_man(&a.dir).map_err(|e| {
                CliError::Failed(format!(
                    "cannot write the man pages into {}: {e}",
                    a.dir.display()
                ))
            }),
        }
    }
}

/// `unionrs stats MNT`: the live counters of the unionrs mount at MNT.
fn stats(mnt: &std::path::Path) -> Res {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mnt)
        .map_err(|e| format!("cannot stat {}: {e}", mnt.display()))?
        .dev();
    let (major, minor) = (crate::sys::fs::major(dev), crate::sys::fs::minor(dev));
    let path = crate::fuse::control::socket_path(major, minor);
    let mut out = String::new();
    std::os::unix::net::UnixStream::connect(&path)
        .and_then(|mut s| s.read_to_string(&mut out))
        .map_err(|e| {
            format!(
                "{} is not a live unionrs mount of this user ({}: {e})",
                mnt.display(),
                path.display()
            )
        })?;
    print!("{out}");
    Ok(())
}
