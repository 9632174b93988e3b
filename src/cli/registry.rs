//! The registry verbs, `pull` and `push`, and how they log in. To add one: a variant with its
//! arguments in [`Verb`], a line in [`Verb::name`] and an arm in [`Verb::run`].

use super::image::{human_size, open_store, unpack_options};
use super::{CliError, Res};
use crate::image::registry;
use crate::image::registry::auth::Creds;
use crate::image::registry::client::ClientOptions;
use crate::image::registry::pull::{Platform, PullOptions};
use crate::image::registry::push::PushOptions;
use crate::image::registry::reference::RemoteRef;
use CliError::{Failed, Usage};
use clap::{Args, Subcommand};
use std::io::{self, IsTerminal};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Verb {
    /// Pull an image from a registry (ubuntu, host:port/name:tag, name@sha256:...)
    Pull(PullArgs),
    /// Push an image to a registry
    Push(PushArgs),
}

/// How to reach and log in to the registry.
#[derive(Args)]
pub struct Login {
    /// Credentials USER:PASSWORD, or USER with --password-stdin
    #[arg(long, value_name = "USER[:PASSWORD]")]
    creds: Option<String>,
    /// The user; the password comes from stdin (--password-stdin)
    #[arg(short = 'u', long, value_name = "USER")]
    username: Option<String>,
    /// Read the password from stdin, as docker login does
    #[arg(long)]
    password_stdin: bool,
    /// Verify the registry's TLS certificate (--tls-verify=false to skip)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    tls_verify: bool,
}

#[derive(Args)]
pub struct PullArgs {
    /// Print only the image ID
    #[arg(short, long)]
    quiet: bool,
    /// Platform of a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    #[command(flatten)]
    login: Login,
    /// The image reference
    #[arg(value_name = "REF")]
    reference: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Print only the manifest digest
    #[arg(short, long)]
    quiet: bool,
    /// Upload blobs in chunks of this many bytes (default: in one request)
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<String>,
    #[command(flatten)]
    login: Login,
    /// The image in the store
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to push it (default: IMAGE's own name)
    #[arg(value_name = "DEST-REF")]
    dest: Option<String>,
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Pull(_) => "pull",
            Verb::Push(_) => "push",
        }
    }

    pub fn run(self, store: Option<PathBuf>) -> Res {
        match self {
            Verb::Pull(a) => pull(store, a),
            Verb::Push(a) => push(store, a),
        }
    }
}

/// Credentials from `--creds USER:PASS`, or a user (`--creds USER`, `-u USER`) with the
/// password on stdin (`--password-stdin`, read as `docker login` reads it: all of stdin,
/// one trailing newline dropped). No message here ever holds the password.
fn client_options(l: &Login) -> Result<ClientOptions, CliError> {
    let (creds, user) = (l.creds.as_deref(), l.username.as_deref());
    let creds = if l.password_stdin {
        let user = match (creds, user) {
            (Some(_), Some(_)) => {
                return Err(Usage(
                    "give the user once: --creds USER or --username USER".into(),
                ));
            }
            (Some(c), None) if c.contains(':') => {
                return Err(Usage(
                    "--password-stdin takes the password from stdin: give --creds USER \
                     without :PASSWORD"
                        .into(),
                ));
            }
            (Some(u), None) | (None, Some(u)) if !u.is_empty() => u,
            _ => {
                return Err(Usage(
                    "--password-stdin needs a user: --username USER or --creds USER".into(),
                ));
            }
        };
        Some(Creds {
            user: user.to_string(),
            pass: password_from(io::stdin().lock())?,
        })
    } else if user.is_some() {
        return Err(Usage(
            "--username goes with --password-stdin (or give --creds USER:PASSWORD)".into(),
        ));
    } else {
        creds
            .map(|c| {
                Creds::parse(c).map_err(|_| {
                    "--creds takes USER:PASSWORD (or --creds USER with --password-stdin)"
                        .to_string()
                })
            })
            .transpose()
            .map_err(Usage)?
    };
    Ok(ClientOptions {
        tls_verify: l.tls_verify,
        creds,
    })
}

/// The password piped in: everything up to EOF but one trailing newline (and a CR before
/// it), as `docker login --password-stdin`.
fn password_from(r: impl io::Read) -> Result<String, CliError> {
    use std::io::Read as _;
    const MAX: u64 = 64 << 10;
    let mut raw = Vec::new();
    r.take(MAX + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Failed(format!("--password-stdin: cannot read stdin: {e}")))?;
    if raw.len() as u64 > MAX {
        return Err(Usage(format!(
            "--password-stdin: stdin holds more than {MAX} bytes; a password is expected"
        )));
    }
    let mut pass = String::from_utf8(raw)
        .map_err(|_| Usage("--password-stdin: the password is not UTF-8".into()))?;
    if pass.ends_with('\n') {
        pass.pop();
        if pass.ends_with('\r') {
            pass.pop();
        }
    }
    if pass.is_empty() {
        return Err(Usage("--password-stdin: stdin held no password".into()));
    }
    Ok(pass)
}

fn pull(store: Option<PathBuf>, a: PullArgs) -> Res {
    let r = RemoteRef::parse(&a.reference).map_err(Usage)?;
    let opts = PullOptions {
        client: client_options(&a.login)?,
        platform: a
            .platform
            .as_deref()
            .map(Platform::parse)
            .transpose()
            .map_err(Usage)?,
        unpack: unpack_options(),
        progress: !a.quiet && io::stderr().is_terminal(),
    };
    let st = open_store(store)?;
    let rep = registry::pull::pull(&st, &r, &opts)?;
    if !a.quiet {
        eprintln!(
            "{}: {} layers, {} downloaded ({}), {} already in the store",
            rep.tag.as_deref().unwrap_or(&r.to_string()),
            rep.layers,
            rep.downloaded,
            human_size(rep.bytes),
            rep.layers - rep.downloaded
        );
        eprintln!("Digest: {}", rep.manifest_digest);
    }
    println!("{}", rep.id);
    Ok(())
}

fn push(store: Option<PathBuf>, a: PushArgs) -> Res {
    let dst = a.dest.as_deref().unwrap_or(&a.image);
    let r = RemoteRef::parse(dst).map_err(Usage)?;
    let chunk_size = a
        .chunk_size
        .as_deref()
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Usage(format!("--chunk-size {v:?}: a positive byte count")))
        })
        .transpose()?;
    let opts = PushOptions {
        client: client_options(&a.login)?,
        chunk_size,
    };
    let st = open_store(store)?;
    let img = st.resolve(&a.image)?;
    let verbose = !a.quiet && io::stderr().is_terminal();
    let log = move |line: String| {
        if verbose {
            eprintln!("{line}");
        }
    };
    let rep = registry::push::push(&st, &img, &r, &opts, &log)?;
    if !a.quiet {
        eprintln!(
            "{r}: {} blobs pushed ({}), {} already there, {} mounted",
            rep.uploaded,
            human_size(rep.bytes),
            rep.existed,
            rep.mounted
        );
    }
    println!("{}", img.manifest_digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        login: Login,
    }

    #[test]
    fn password_from_stdin_as_docker_login_reads_it() {
        let pw = |s: &[u8]| {
            password_from(s).map_err(|e| match e {
                Usage(m) | Failed(m) => m,
            })
        };
        assert_eq!(pw(b"s3cret\n").unwrap(), "s3cret");
        assert_eq!(pw(b"s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(pw(b"a:b c\n\n").unwrap(), "a:b c\n");
        assert_eq!(pw(b"nonl").unwrap(), "nonl");
        assert!(pw(b"\n").unwrap_err().contains("no password"));
        assert!(pw(b"").unwrap_err().contains("no password"));
    }

    #[test]
    fn tls_verification_stays_on_unless_turned_off() {
        let v = |a: &[&str]| {
            T::try_parse_from(std::iter::once("t").chain(a.iter().copied()))
                .map(|t| t.login.tls_verify)
                .map_err(|_| ())
        };
        assert_eq!(v(&[]), Ok(true));
        assert_eq!(v(&["--tls-verify"]), Ok(true));
        assert_eq!(v(&["--tls-verify=true"]), Ok(true));
        assert_eq!(v(&["--tls-verify=false"]), Ok(false));
        assert_eq!(v(&["--tls-verify=no"]), Err(()));
        let t = T::try_parse_from(["t"]).unwrap();
        assert!(client_options(&t.login).unwrap().tls_verify);
    }
}
