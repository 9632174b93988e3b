//! `unionrs build [OPTIONS] CONTEXT`: docker's and buildah's flag names, parsed into
//! [`crate::image::build::Options`]; the clap description of the same flags feeds the man
//! page and the shell completions.

use crate::image::build::{self, Options};
use crate::image::registry::auth::Creds;
use crate::image::registry::client::ClientOptions;
use crate::image::runtime_spec::Network;
use clap::{Arg, ArgAction, Command, ValueHint};
use std::path::{Path, PathBuf};

pub enum Error {
    Usage(String),
    Failed(String),
}

fn kv(flag: &str, v: &str, from_env: bool) -> Result<(String, String), Error> {
    match v.split_once('=') {
        Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
        None if from_env && !v.is_empty() => {
            Ok((v.to_string(), std::env::var(v).unwrap_or_default()))
        }
        _ => Err(Error::Usage(format!("{flag} {v:?}: expected KEY=VALUE"))),
    }
}

/// Parses the arguments after `build`.
pub fn parse(args: &[String]) -> Result<Options, Error> {
    let mut o = Options {
        context: PathBuf::new(),
        file: None,
        tags: Vec::new(),
        build_args: Vec::new(),
        target: None,
        no_cache: false,
        pull: false,
        platform: None,
        labels: Vec::new(),
        client: ClientOptions {
            tls_verify: true,
            creds: None,
        },
        quiet: false,
        network: Network::Host,
        runtime: None,
        secrets: Vec::new(),
        ssh: Vec::new(),
    };
    let mut context = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if !a.starts_with('-') || a == "-" {
            if context.replace(a.to_string()).is_some() {
                return Err(Error::Usage("build takes one CONTEXT directory".into()));
            }
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a, None),
        };
        // Booleans (docker accepts --no-cache=true too).
        let boolean = |v: &Option<String>| -> Result<bool, Error> {
            match v.as_deref() {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(x) => Err(Error::Usage(format!("{name}={x}: true or false"))),
            }
        };
        match name {
            "--no-cache" => o.no_cache = boolean(&inline)?,
            "--pull" => {
                o.pull = match inline.as_deref() {
                    Some("always") => true,
                    Some("missing") | Some("never") => false,
                    _ => boolean(&inline)?,
                }
            }
            "-q" | "--quiet" => o.quiet = boolean(&inline)?,
            "--tls-verify" => o.client.tls_verify = boolean(&inline)?,
            _ => {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| Error::Usage(format!("{name} needs a value")))?;
                        i += 1;
                        v
                    }
                };
                match name {
                    "-t" | "--tag" => o.tags.push(v),
                    "-f" | "--file" => o.file = Some(PathBuf::from(v)),
                    "--build-arg" => o.build_args.push(kv(name, &v, true)?),
                    "--label" => o.labels.push(kv(name, &v, false)?),
                    "--target" => o.target = Some(v),
                    "--platform" => o.platform = Some(v),
                    "--creds" => o.client.creds = Some(Creds::parse(&v).map_err(Error::Usage)?),
                    "--runtime" => o.runtime = Some(PathBuf::from(v)),
                    "--secret" => o
                        .secrets
                        .push(build::secrets::parse_secret(&v).map_err(Error::Usage)?),
                    "--ssh" => o
                        .ssh
                        .push(build::secrets::parse_ssh(&v).map_err(Error::Usage)?),
                    "--network" | "--net" => {
                        o.network = match v.as_str() {
                            "host" | "default" => Network::Host,
                            "none" => Network::None,
                            _ => {
                                return Err(Error::Usage(format!("--network {v:?}: host or none")));
                            }
                        }
                    }
                    _ => return Err(Error::Usage(format!("build: unknown option {name}"))),
                }
            }
        }
    }
    let context = context.ok_or_else(|| Error::Usage("build needs a CONTEXT directory".into()))?;
    o.context = PathBuf::from(context);
    if !o.context.is_dir() {
        return Err(Error::Failed(format!(
            "build context {}: not a directory",
            o.context.display()
        )));
    }
    Ok(o)
}

/// `unionrs build`: prints the steps (unless -q) and the image ID last.
pub fn run(store_root: &Path, args: &[String]) -> Result<(), Error> {
    let o = parse(args)?;
    let id = build::build(store_root, &o).map_err(Error::Failed)?;
    println!("{id}");
    Ok(())
}

/// The flags for --help, the man page and completions.
pub fn clap_command() -> Command {
    let val = |name: &'static str, long: &'static str, help: &'static str| {
        Arg::new(name).long(long).value_name("VALUE").help(help)
    };
    Command::new("build")
        .about("Build an image from a Dockerfile/Containerfile (docker's flags)")
        .arg(
            Arg::new("tag")
                .short('t')
                .long("tag")
                .value_name("NAME[:TAG]")
                .action(ArgAction::Append)
                .help("Tag the image; may repeat"),
        )
        .arg(
            Arg::new("file")
                .short('f')
                .long("file")
                .value_name("FILE")
                .value_hint(ValueHint::FilePath)
                .help("The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile)"),
        )
        .arg(
            val(
                "build-arg",
                "build-arg",
                "Set a build arg (K=V); may repeat",
            )
            .action(ArgAction::Append),
        )
        .arg(val("target", "target", "Build up to this stage"))
        .arg(
            Arg::new("no-cache")
                .long("no-cache")
                .action(ArgAction::SetTrue)
                .help("Run every step (no layer cache)"),
        )
        .arg(
            Arg::new("pull")
                .long("pull")
                .action(ArgAction::SetTrue)
                .help("Pull base images even when the store has them"),
        )
        .arg(val(
            "platform",
            "platform",
            "Platform of pulled base images (OS/ARCH[/VARIANT])",
        ))
        .arg(
            val(
                "label",
                "label",
                "Set a label (K=V) on the image; may repeat",
            )
            .action(ArgAction::Append),
        )
        .arg(val(
            "tls-verify",
            "tls-verify",
            "Verify registry certificates (true/false)",
        ))
        .arg(val("creds", "creds", "Registry credentials USER:PASS"))
        .arg(
            Arg::new("secret")
                .long("secret")
                .value_name("id=ID[,src=FILE|env=VAR]")
                .action(ArgAction::Append)
                .help("A secret for RUN --mount=type=secret; may repeat"),
        )
        .arg(
            Arg::new("ssh")
                .long("ssh")
                .value_name("default|ID[=SOCKET]")
                .action(ArgAction::Append)
                .help("An SSH agent socket for RUN --mount=type=ssh; may repeat"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .action(ArgAction::SetTrue)
                .help("Print only the image ID"),
        )
        .arg(val(
            "network",
            "network",
            "Network of RUN steps: host (default) or none",
        ))
        .arg(
            Arg::new("runtime")
                .long("runtime")
                .value_name("PATH")
                .value_hint(ValueHint::ExecutablePath)
                .help("OCI runtime (default: runc, else crun)"),
        )
        .arg(
            Arg::new("context")
                .value_name("CONTEXT")
                .required(true)
                .value_hint(ValueHint::DirPath),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_parse_as_docker_spells_them() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().to_str().unwrap();
        let o = match parse(&s(&[
            "-t",
            "a:1",
            "--tag=b",
            "-f",
            "F",
            "--build-arg",
            "X=1",
            "--build-arg=Y=2",
            "--no-cache",
            "--pull",
            "--label",
            "l=v",
            "--tls-verify=false",
            "-q",
            "--network",
            "none",
            "--target",
            "t",
            ctx,
        ])) {
            Ok(o) => o,
            Err(_) => panic!("parse failed"),
        };
        assert_eq!(o.tags, ["a:1", "b"]);
        assert_eq!(o.file, Some(PathBuf::from("F")));
        assert_eq!(
            o.build_args,
            [("X".into(), "1".into()), ("Y".into(), "2".into())]
        );
        assert!(o.no_cache && o.pull && o.quiet && !o.client.tls_verify);
        assert_eq!(o.network, Network::None);
        assert_eq!(o.target.as_deref(), Some("t"));
        for bad in [
            &["--bogus", ctx][..],
            &[ctx, ctx],
            &["--label", "x", ctx],
            &[],
        ] {
            assert!(matches!(parse(&s(bad)), Err(Error::Usage(_))), "{bad:?}");
        }
    }
}
