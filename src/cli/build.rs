//! `unionrs build [OPTIONS] CONTEXT`: docker's and buildah's flag names, parsed by clap into
//! [`crate::image::build::Options`].

use super::{CliError, Res};
use crate::image::build::{self, Options};
use crate::image::registry::auth::Creds;
use crate::image::registry::client::ClientOptions;
use crate::image::runtime_spec::Network;
use CliError::{Failed, Usage};
use clap::{Args, ValueHint};
use std::path::PathBuf;

/// Build an image from a Dockerfile/Containerfile (docker's flags)
#[derive(Args)]
pub struct BuildArgs {
    /// Tag the image; may repeat
    #[arg(short, long, value_name = "NAME[:TAG]")]
    tag: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile)
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    file: Option<PathBuf>,
    /// Set a build arg (KEY=VALUE, or KEY to take it from the environment); may repeat
    #[arg(long, value_name = "KEY[=VALUE]")]
    build_arg: Vec<String>,
    /// Build up to this stage
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Run every step (no layer cache)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true")]
    no_cache: bool,
    /// Pull base images even when the store has them (always|missing|never, true|false)
    #[arg(long, value_name = "POLICY", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pull: Option<String>,
    /// Platform of pulled base images (OS/ARCH[/VARIANT])
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Set a label (KEY=VALUE) on the image; may repeat
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Verify registry certificates (--tls-verify=false to skip)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    tls_verify: bool,
    /// Registry credentials USER:PASSWORD
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// A secret for RUN --mount=type=secret; may repeat
    #[arg(long, value_name = "id=ID[,src=FILE|env=VAR]")]
    secret: Vec<String>,
    /// An SSH agent socket for RUN --mount=type=ssh; may repeat
    #[arg(long, value_name = "default|ID[=SOCKET]")]
    ssh: Vec<String>,
    /// Print only the image ID
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true")]
    quiet: bool,
    /// Network of RUN steps: host (the default) or none
    #[arg(long, alias = "net", value_name = "host|none", default_value = "host")]
    network: String,
    /// OCI runtime (default: runc, else crun)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::ExecutablePath)]
    runtime: Option<PathBuf>,
    /// The build context directory
    #[arg(value_name = "CONTEXT", value_hint = ValueHint::DirPath)]
    context: PathBuf,
}

fn kv(flag: &str, v: &str, from_env: bool) -> Result<(String, String), CliError> {
    match v.split_once('=') {
        Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
        None if from_env && !v.is_empty() => {
            Ok((v.to_string(), std::env::var(v).unwrap_or_default()))
        }
        _ => Err(Usage(format!("{flag} {v:?}: expected KEY=VALUE"))),
    }
}

/// The build's options from its command line.
fn options(a: BuildArgs) -> Result<Options, CliError> {
    let pull = match a.pull.as_deref() {
        None | Some("missing" | "never" | "false") => false,
        Some("always" | "true") => true,
        Some(x) => {
            return Err(Usage(format!(
                "--pull={x}: always, missing, never, true or false"
            )));
        }
    };
    let network = match a.network.as_str() {
        "host" | "default" => Network::Host,
        "none" => Network::None,
        v => return Err(Usage(format!("--network {v:?}: host or none"))),
    };
    let build_args = a
        .build_arg
        .iter()
        .map(|v| kv("--build-arg", v, true))
        .collect::<Result<_, _>>()?;
    let labels = a
        .label
        .iter()
        .map(|v| kv("--label", v, false))
        .collect::<Result<_, _>>()?;
    let creds = a
        .creds
        .as_deref()
        .map(Creds::parse)
        .transpose()
        .map_err(Usage)?;
    let secrets = a
        .secret
        .iter()
        .map(|v| build::secrets::parse_secret(v))
        .collect::<Result<_, _>>()
        .map_err(Usage)?;
    let ssh = a
        .ssh
        .iter()
        .map(|v| build::secrets::parse_ssh(v))
        .collect::<Result<_, _>>()
        .map_err(Usage)?;
    if !a.context.is_dir() {
        return Err(Failed(format!(
            "build context {}: not a directory",
            a.context.display()
        )));
    }
    Ok(Options {
        context: a.context,
        file: a.file,
        tags: a.tag,
        build_args,
        target: a.target,
        no_cache: a.no_cache,
        pull,
        platform: a.platform,
        labels,
        client: ClientOptions {
            tls_verify: a.tls_verify,
            creds,
        },
        quiet: a.quiet,
        network,
        runtime: a.runtime,
        secrets,
        ssh,
    })
}

/// `unionrs build`: prints the steps (unless -q) and the image ID last.
pub fn run(store: Option<PathBuf>, a: BuildArgs) -> Res {
    let o = options(a)?;
    let root = crate::image::store::default_root(store.as_deref())?;
    let id = build::build(&root, &o)?;
    println!("{id}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        build: BuildArgs,
    }

    fn parse(v: &[&str]) -> Result<Options, CliError> {
        let t = T::try_parse_from(std::iter::once("build").chain(v.iter().copied()))
            .map_err(|e| Usage(e.to_string()))?;
        options(t.build)
    }

    #[test]
    fn flags_parse_as_docker_spells_them() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().to_str().unwrap();
        let o = match parse(&[
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
        ]) {
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
        let o = parse(&["--pull=missing", "--no-cache=false", ctx]).unwrap();
        assert!(!o.pull && !o.no_cache);
        for bad in [
            &["--bogus", ctx][..],
            &[ctx, ctx],
            &["--label", "x", ctx],
            &["--pull=sometimes", ctx],
            &[],
        ] {
            assert!(matches!(parse(bad), Err(Usage(_))), "{bad:?}");
        }
    }
}
