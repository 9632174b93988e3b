//! `unionrs run [OPTIONS] IMAGE [--] [COMMAND [ARG...]]`, parsed as Docker does: options
//! end at the image; everything after it (but a leading `--`) is the command, passed as is.
//! The exit status is the command's; unionrs's own failures exit 125, a command missing
//! from the image 127, one that is not executable 126 (Docker's numbers).

use crate::image::run::{Ran, RunError, RunOptions};
use crate::image::runtime_spec::Network;
use crate::image::security::SecurityOptions;
use crate::image::store;
use clap::{Args, ValueHint};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status of `run` when unionrs itself fails or the command line is wrong (docker's).
pub const FAILED: u8 = 125;

/// Run a command in a new container (through runc or crun)
#[derive(Args)]
#[command(override_usage = "unionrs run [OPTIONS] IMAGE [--] [COMMAND [ARG...]]")]
pub struct RunArgs {
    /// Run in the background under a monitor; print the container's ID
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open (in the foreground: ours goes to the command)
    #[arg(short, long)]
    interactive: bool,
    /// Give the command a pseudo-terminal (ours, relayed, with our window size)
    #[arg(short, long)]
    tty: bool,
    /// Publish a port: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp] (implies --network private); may repeat
    #[arg(short, long, value_name = "[IP:]HOST:CONTAINER[/PROTO]")]
    publish: Vec<String>,
    /// Publish every port the image exposes on a free host port
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Bind-mount HOST_PATH at CONTAINER_PATH (not part of a commit); may repeat
    #[arg(short, long, value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// The container's hostname (default: its name)
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Replace the image's Entrypoint ("" clears it; the image's Cmd is then not used)
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Remove the container when the command exits
    #[arg(long)]
    rm: bool,
    /// The container's name
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE); may repeat
    #[arg(short, long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The command's working directory
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// Run as USER[:GROUP] (names from the image or numbers)
    #[arg(short, long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Network: host (the default), none, or private (a namespace of its own served by pasta)
    #[arg(
        long,
        alias = "net",
        value_name = "host|none|private",
        default_value = "host"
    )]
    network: String,
    /// OCI runtime (default: runc, else crun)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::ExecutablePath)]
    runtime: Option<PathBuf>,
    /// All capabilities, no seccomp filter, every device
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true")]
    privileged: bool,
    /// Add a capability (CHOWN, CAP_NET_ADMIN, ALL); may repeat
    #[arg(long, value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability; may repeat
    #[arg(long, value_name = "CAP")]
    cap_drop: Vec<String>,
    /// seccomp=unconfined|FILE or no-new-privileges[=true|false]; may repeat
    #[arg(long, value_name = "OPT")]
    security_opt: Vec<String>,
    /// The image, then the command and its arguments, passed as they are (default: the
    /// image's). Options end at the image, as in docker: a word after it that looks like
    /// an option is the command's.
    #[arg(
        value_name = "IMAGE [COMMAND [ARG...]]",
        required = true,
        trailing_var_arg = true
    )]
    image_and_command: Vec<String>,
}

/// The options `run` hands to [`crate::image::run::run`], or what is wrong with them.
fn options(a: RunArgs) -> Result<RunOptions, String> {
    let mut security = SecurityOptions {
        privileged: a.privileged,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        ..SecurityOptions::default()
    };
    for o in &a.security_opt {
        security.security_opt(o)?;
    }
    let network = match a.network.as_str() {
        "host" => Network::Host,
        "none" => Network::None,
        "private" | "bridge" => Network::Private,
        v => return Err(format!("--network {v:?}: host, none or private")),
    };
    let mut words = a.image_and_command.into_iter();
    let image = words.next().ok_or("no image given")?;
    let mut command: Vec<String> = words.collect();
    if command.first().is_some_and(|c| c == "--") {
        command.remove(0);
    }
    Ok(RunOptions {
        name: a.name,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
        runtime: a.runtime,
        network,
        remove: a.rm,
        security,
        command,
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        publish: a.publish,
        publish_all: a.publish_all,
        hostname: a.hostname,
        entrypoint: a.entrypoint,
        volumes: a.volume,
        ..RunOptions::new(&image)
    })
}

pub fn main(store_flag: Option<PathBuf>, args: RunArgs) -> ExitCode {
    let o = match options(args) {
        Ok(o) => o,
        Err(m) => {
            eprintln!("unionrs: run: {m}");
            return ExitCode::from(FAILED);
        }
    };
    let root = match store::default_root(store_flag.as_deref()) {
        Ok(r) => r,
        Err(m) => {
            eprintln!("unionrs: run: {m}");
            return ExitCode::from(FAILED);
        }
    };
    match crate::image::run::run(&root, &o) {
        Ok(Ran::Exited(status)) => ExitCode::from(u8::try_from(status).unwrap_or(FAILED)),
        Ok(Ran::Detached(id)) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(RunError::Failed(m)) => {
            eprintln!("unionrs: run: {m}");
            ExitCode::from(FAILED)
        }
        Err(RunError::Command(code, m)) => {
            eprintln!("unionrs: run: {m}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    fn p(args: &[&str]) -> Result<RunOptions, String> {
        let t = T::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        options(t.run)
    }

    #[test]
    fn options_stop_at_the_image() {
        let o = p(&[
            "--rm",
            "--name=c",
            "-e",
            "A=1",
            "--env=B=2",
            "-w",
            "/w",
            "--user",
            "1:2",
            "img:1",
            "sh",
            "-c",
            "echo --rm",
        ])
        .unwrap();
        assert!(o.remove);
        assert_eq!(o.name.as_deref(), Some("c"));
        assert_eq!(o.env, ["A=1", "B=2"]);
        assert_eq!(
            (o.workdir.as_deref(), o.user.as_deref()),
            (Some("/w"), Some("1:2"))
        );
        assert_eq!(o.image, "img:1");
        assert_eq!(o.command, ["sh", "-c", "echo --rm"]);
        assert_eq!(o.network, Network::Host);
        let o = p(&["--network", "none", "img", "--", "--x"]).unwrap();
        assert_eq!(
            (o.network, o.command),
            (Network::None, vec!["--x".to_string()])
        );
        // After the image every word is the command's, even one that looks like a flag.
        let o = p(&["img", "--rm", "--name", "x"]).unwrap();
        assert!(!o.remove);
        assert_eq!(o.command, ["--rm", "--name", "x"]);
        let o = p(&["--net=none", "img", "-x"]).unwrap();
        assert_eq!(
            (o.network, o.command),
            (Network::None, vec!["-x".to_string()])
        );
        let o = p(&["img"]).unwrap();
        assert!(o.command.is_empty());
        assert_eq!(o.security, SecurityOptions::default());
        let o = p(&[
            "--privileged",
            "--cap-add",
            "SYS_ADMIN",
            "--cap-drop=ALL",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt=no-new-privileges",
            "img",
        ])
        .unwrap();
        assert!(o.security.privileged && o.security.no_new_privileges);
        assert_eq!(
            (o.security.cap_add, o.security.cap_drop),
            (vec!["SYS_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert!(
            !p(&["--privileged=false", "img"])
                .unwrap()
                .security
                .privileged
        );
        assert!(p(&["--privileged=no", "img"]).is_err());
        assert!(p(&["--security-opt", "apparmor=x", "img"]).is_err());
        let o = p(&[
            "-dit",
            "-p",
            "127.0.0.1:8080:80",
            "-P",
            "-v",
            "/a:/b:ro",
            "img",
        ])
        .unwrap();
        assert!(o.detach && o.interactive && o.tty && o.publish_all);
        assert_eq!(
            (o.publish, o.volumes),
            (
                vec!["127.0.0.1:8080:80".to_string()],
                vec!["/a:/b:ro".to_string()]
            )
        );
    }

    #[test]
    fn bad_command_lines() {
        assert!(p(&[]).is_err());
        assert!(p(&["--rm"]).is_err());
        assert!(p(&["--name"]).is_err());
        assert!(p(&["--bogus", "img"]).unwrap_err().contains("--bogus"));
        assert!(p(&["--rm=yes", "img"]).is_err());
        assert!(
            p(&["--network", "overlay", "img"])
                .unwrap_err()
                .contains("host, none or private")
        );
    }
}
