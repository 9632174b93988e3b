//! Command-line front end: argument parsing and the mount / image commands.
pub mod image;
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
            println!("{USAGE}{}", image::USAGE);
            ExitCode::SUCCESS
        }
        Some("export-layer") => export_layer(&rest[1..]),
        Some(v) if v == "--store" || image::VERBS.contains(&v) => image::run(rest),
        Some(s) if s.starts_with("--store=") => image::run(rest),
        None => {
            eprintln!("{USAGE}{}", image::USAGE);
            ExitCode::from(2)
        }
        _ => mount::run(rest),
    }
}

/// `unionrs export-layer UPPER OUT.tar`: the upper dir as an OCI layer tar; prints its diff ID.
fn export_layer(args: &[OsString]) -> ExitCode {
    match args {
        [flag] if flag == "--help" || flag == "-h" => {
            println!("usage: unionrs export-layer UPPER_DIR OUT.tar");
            ExitCode::SUCCESS
        }
        [upper, out] => {
            match crate::image::layer_export::run_export_layer(upper.as_ref(), out.as_ref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unionrs: {e}");
                    ExitCode::from(1)
                }
            }
        }
        _ => {
            eprintln!("usage: unionrs export-layer UPPER_DIR OUT.tar");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str =
    "usage: unionrs [-f] [-d] -o lowerdir=L1:L2[,upperdir=U,workdir=W][,OPTS] MOUNTPOINT
       unionrs SOURCE MOUNTPOINT -o OPTS        (mount.fuse form)
       unionrs export-layer UPPER_DIR OUT.tar   (upper dir -> OCI layer tar; prints its diff ID)
";
