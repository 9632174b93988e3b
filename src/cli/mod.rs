//! Command-line front end: argument parsing and the mount / image commands.
pub mod build;
pub mod check;
pub mod container;
pub mod help;
pub mod image;
pub mod mount;
pub mod options;
pub mod run;
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
            help::print_help();
            println!(
                "\nImage and container commands:\n{}\n{}",
                image::USAGE,
                container::USAGE
            );
            ExitCode::SUCCESS
        }
        Some("check") => check::run(&rest[1..]),
        Some(crate::image::lifecycle::monitor::VERB) => {
            container::main(rest).unwrap_or(ExitCode::from(2))
        }
        Some("export-layer") => export_layer(&rest[1..]),
        Some("completions") => completions(&rest[1..]),
        Some("stats") => stats(&rest[1..]),
        Some("generate-man") => generate_man(&rest[1..]),
        Some(v) if v == "--store" || image::VERBS.contains(&v) => image::run(rest),
        Some(s) if s.starts_with("--store=") => image::run(rest),
        None => {
            eprintln!("{USAGE}{}", image::USAGE);
            ExitCode::from(2)
        }
        _ => mount::run(rest),
    }
}

/// `unionrs stats MNT`: the live counters of the unionrs mount at MNT.
fn stats(args: &[OsString]) -> ExitCode {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let [mnt] = args else {
        eprintln!("usage: unionrs stats MOUNTPOINT");
        return ExitCode::from(2);
    };
    let dev = match std::fs::metadata(mnt) {
        Ok(m) => m.dev(),
        Err(e) => {
            eprintln!("unionrs: cannot stat {}: {e}", mnt.to_string_lossy());
            return ExitCode::from(1);
        }
    };
    let (major, minor) = (crate::sys::fs::major(dev), crate::sys::fs::minor(dev));
    let path = crate::fuse::control::socket_path(major, minor);
    let mut out = String::new();
    match std::os::unix::net::UnixStream::connect(&path)
        .and_then(|mut s| s.read_to_string(&mut out))
    {
        Ok(_) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "unionrs: {} is not a live unionrs mount of this user ({}: {e})",
                mnt.to_string_lossy(),
                path.display()
            );
            ExitCode::from(1)
        }
    }
}

/// `unionrs completions SHELL`: a completion script for bash, zsh, fish, elvish or powershell.
fn completions(args: &[OsString]) -> ExitCode {
    let usage = "usage: unionrs completions bash|zsh|fish|elvish|powershell";
    match args {
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{usage}");
            ExitCode::SUCCESS
        }
        [shell] => match shell
            .to_str()
            .and_then(|s| s.parse::<clap_complete::Shell>().ok())
        {
            Some(shell) => {
                help::completions(shell, &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "unionrs: unknown shell {:?}; {usage}",
                    shell.to_string_lossy()
                );
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("{usage}");
            ExitCode::from(2)
        }
    }
}

/// `unionrs generate-man DIR`: writes DIR/unionrs.1 (hidden; scripts/setup.sh runs it).
fn generate_man(args: &[OsString]) -> ExitCode {
    match args {
        [dir] if dir != "--help" && dir != "-h" => {
            match help::generate_man(std::path::Path::new(dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "unionrs: cannot write {}/unionrs.1: {e}",
                        dir.to_string_lossy()
                    );
                    ExitCode::from(1)
                }
            }
        }
        _ => {
            eprintln!("usage: unionrs generate-man DIR");
            ExitCode::from(2)
        }
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
       unionrs check UPPER_DIR [--work W] [--lower L1:L2] [--repair]   (fsck of an upper dir)
       unionrs completions SHELL                (shell completion script)
       unionrs --help                           (every mount option)
";
