//! Command-line front end: the fuse-overlayfs compatible mount command line (parsed by hand in
//! [`options`], as fuse-overlayfs and mount.fuse3 spell it) and the verbs (clap, derive).
//!
//! Adding a verb: give it an `#[derive(clap::Args)]` struct and a variant in the `Verb` enum of
//! its group's module (registry.rs: pull/push; image.rs: images, inspect ...; container.rs:
//! create, ps, mount ...; tools.rs: export-layer, stats ...), and handle the variant in that
//! module's `run`. A new group is one more `#[command(flatten)]` variant of [`Verb`] here. The
//! doc comments are the help text; `--help`, `unionrs help VERB`, the man pages, the shell
//! completions and the README's verb list all come from these definitions. A verb that sets
//! its own exit status (`run`, `check`) returns an `ExitCode` and has its own arm in `verbs`;
//! one whose usage errors exit 125 as docker's run-like verbs do goes into [`RUN_LIKE`].
//! tests/cli_help.rs then checks its --help, its usage errors, completions and man page.
//!
//! Exit codes: 0 success; 1 a verb failed (`check`: it found something); 2 a usage error
//! (`check`: also an I/O error); `run`: 125 when unionrs fails or the command line is wrong,
//! 126/127 when the command cannot be run, else the command's own status (docker's numbers).
pub mod build;
pub mod check;
pub mod container;
pub mod help;
pub mod image;
pub mod lifecycle;
pub mod mount;
pub mod options;
pub mod registry;
pub mod run;
pub mod template;
pub mod tools;
pub mod validate;

use clap::{ArgMatches, FromArgMatches, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

// Every verb, grouped by module (a doc comment here would become the top-level help).
#[derive(Subcommand)]
pub enum Verb {
    #[command(flatten)]
    Registry(registry::Verb),
    #[command(flatten)]
    Image(image::Verb),
    #[command(flatten)]
    Container(container::Verb),
    #[command(flatten)]
    Lifecycle(lifecycle::Verb),
    Run(run::RunArgs),
    Build(build::BuildArgs),
    Check(check::CheckArgs),
    #[command(flatten)]
    Tools(tools::Verb),
}

/// Verbs whose usage errors exit 125, as docker's `run` (its own failures, too, are 125).
pub const RUN_LIKE: &[&str] = &["run", "exec"];

/// A verb's failure: a wrong command line (exit 2, with a pointer to the verb's help) or a
/// failure while doing it (exit 1).
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Failed(String),
}

impl From<String> for CliError {
    fn from(s: String) -> CliError {
        CliError::Failed(s)
    }
}

/// What a verb's `run` returns.
pub type Res = Result<(), CliError>;

/// Dispatches on the first argument: a verb (or `--store`) goes to clap, anything else is
/// the fuse-overlayfs compatible mount command line.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let rest = &argv[1.min(argv.len())..];
    match rest.first().and_then(|a| a.to_str()) {
        Some("--version" | "-V") => {
            println!("unionrs {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            help::print_help();
            ExitCode::SUCCESS
        }
        Some("help") if rest.len() == 1 => {
            help::print_help();
            ExitCode::SUCCESS
        }
        // Hidden: a detached container's monitor, which `run -d` and `start` re-run us as.
        Some(crate::image::lifecycle::monitor::VERB) => match rest {
            [_, dir] => ExitCode::from(crate::image::lifecycle::monitor::main(
                std::path::Path::new(dir),
            )),
            _ => ExitCode::from(2),
        },
        None => {
            eprintln!("{}", help::short_usage());
            ExitCode::from(2)
        }
        _ if verb_of(rest).is_some() => verbs(rest),
        _ => mount::run(rest),
    }
}

/// The verb a command line names (after a leading `--store DIR`), unless it is the mount.fuse
/// form `SOURCE MNT -o OPTS` whose SOURCE happens to be a verb's name: a second positional
/// that is a directory and a `-o` make it a mount.
fn verb_of(args: &[OsString]) -> Option<String> {
    let mut i = 0;
    let mut store_given = false;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        if a == "--store" {
            (i, store_given) = (i + 2, true);
        } else if a.starts_with("--store=") {
            (i, store_given) = (i + 1, true);
        } else {
            break;
        }
    }
    let Some(first) = args.get(i).and_then(|a| a.to_str()) else {
        // `--store DIR` and nothing more: clap says what is missing.
        return store_given.then(String::new);
    };
    let known = first == "help"
        || help::command()
            .get_subcommands()
            .any(|s| s.get_name() == first || s.get_all_aliases().any(|a| a == first));
    if !known {
        return store_given.then(|| first.to_string());
    }
    let mount_shaped = i == 0
        && args.get(1).is_some_and(|mnt| {
            !mnt.to_string_lossy().starts_with('-') && std::path::Path::new(mnt).is_dir()
        })
        && args
            .iter()
            .any(|a| a.to_str().is_some_and(|s| s.starts_with("-o")));
    (!mount_shaped).then(|| first.to_string())
}

/// Parses and runs a verb's command line (`args` without argv[0]).
fn verbs(args: &[OsString]) -> ExitCode {
    let verb = verb_of(args).unwrap_or_default();
    let argv = std::iter::once(OsString::from("unionrs")).chain(args.iter().cloned());
    let matches = match help::verbs_command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => return clap_error(&e, &verb),
    };
    let store = store_flag(&matches);
    let parsed = match Verb::from_arg_matches(&matches) {
        Ok(v) => v,
        Err(e) => return clap_error(&e, &verb),
    };
    let (verb, code) = match parsed {
        Verb::Run(a) => return run::main(store, a),
        Verb::Check(a) => return check::run(a),
        Verb::Lifecycle(v) => return v.run(store),
        Verb::Registry(v) => (v.name(), v.run(store)),
        Verb::Image(v) => (v.name(), v.run(store)),
        Verb::Container(v) => (v.name(), v.run(store)),
        Verb::Build(a) => ("build", build::run(store, a)),
        Verb::Tools(v) => (v.name(), v.run()),
    };
    match code {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(m)) => {
            eprintln!("unionrs {verb}: {}\n{}", one_line(&m), see_help(verb));
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            eprintln!("unionrs: {m}");
            ExitCode::from(1)
        }
    }
}

/// `--store DIR`, wherever it was given (before the verb or among its options).
fn store_flag(m: &ArgMatches) -> Option<PathBuf> {
    let mut m = m;
    let mut found = m.get_one::<PathBuf>("store").cloned();
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
        if let Some(s) = m.get_one::<PathBuf>("store") {
            found = Some(s.clone());
        }
    }
    found
}

/// "See 'unionrs VERB --help'." (docker's last line of a usage error).
pub fn see_help(verb: &str) -> String {
    if verb.is_empty() {
        "See 'unionrs --help'.".to_string()
    } else {
        format!("See 'unionrs {verb} --help'.")
    }
}

/// A message folded into one line.
fn one_line(m: &str) -> String {
    m.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Help and version go to stdout (exit 0); an error is two lines on stderr, as docker's:
/// what is wrong, then where the verb's help is. Exit 2, or 125 for [`RUN_LIKE`] verbs.
fn clap_error(e: &clap::Error, verb: &str) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let verb = if verb == "help" { "" } else { verb };
    let text = e.render().to_string();
    // clap's text: "error: WHAT\n\n  tip: ...\n\nUsage: ...": keep WHAT.
    let what = text.split("\n\n").next().unwrap_or(&text);
    let what = one_line(what.strip_prefix("error: ").unwrap_or(what));
    let name = if verb.is_empty() {
        "unionrs".to_string()
    } else {
        format!("unionrs {verb}")
    };
    eprintln!("{name}: {what}\n{}", see_help(verb));
    ExitCode::from(if RUN_LIKE.contains(&verb) {
        run::FAILED
    } else {
        2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn verbs_and_mounts_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        assert_eq!(verb_of(&os(&["pull", "x"])).as_deref(), Some("pull"));
        assert_eq!(
            verb_of(&os(&["--store", "/s", "images"])).as_deref(),
            Some("images")
        );
        assert_eq!(verb_of(&os(&["--store=/s", "x"])).as_deref(), Some("x"));
        assert_eq!(verb_of(&os(&["help", "pull"])).as_deref(), Some("help"));
        assert_eq!(verb_of(&os(&["-o", "lowerdir=/l", dir])), None);
        assert_eq!(verb_of(&os(&["unionrs", dir, "-o", "lowerdir=/l"])), None);
        // mount.fuse3's `SOURCE MNT -o OPTS` with a SOURCE that is a verb's name.
        assert_eq!(verb_of(&os(&["pull", dir, "-o", "lowerdir=/l"])), None);
        assert_eq!(verb_of(&os(&["run", dir, "-olowerdir=/l"])), None);
        // Not a directory, or no -o: the verb.
        assert_eq!(
            verb_of(&os(&["pull", "/nonexistent", "-o", "x"])).as_deref(),
            Some("pull")
        );
        assert_eq!(verb_of(&os(&["build", dir])).as_deref(), Some("build"));
    }

    #[test]
    fn the_clap_definitions_hold_together() {
        help::command().debug_assert();
    }
}
