//! Command-line front end: argument parsing and the mount / image commands.
pub mod mount;
pub mod options;
pub mod validate;

use std::ffi::OsString;
use std::process::ExitCode;

/// Dispatches on the first argument: image subcommands by name, anything else is the
/// fuse-overlayfs compatible mount command line.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let rest = &argv[1.min(argv.len())..];
    match rest.first().and_then(|a| a.to_str()) {
        Some("--version" | "-V") => {
            println!("unionrs {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h" | "help") => {
            println!("{}", USAGE);
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        _ => mount::run(rest),
    }
}

const USAGE: &str =
    "usage: unionrs [-f] [-d] -o lowerdir=L1:L2[,upperdir=U,workdir=W][,OPTS] MOUNTPOINT
       unionrs SOURCE MOUNTPOINT -o OPTS        (mount.fuse form)";
