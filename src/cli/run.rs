//! `unionrs run [OPTIONS] IMAGE [--] [COMMAND [ARG...]]`, parsed as Docker does: options
//! end at the image; everything after it (but a leading `--`) is the command, passed as is.
//! The exit status is the command's; unionrs's own failures exit 125, a command missing
//! from the image 127, one that is not executable 126 (Docker's numbers).

use crate::image::run::{Ran, RunError, RunOptions};
use crate::image::runtime_spec::Network;
use crate::image::store;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status of `run` when unionrs itself fails (Docker's).
const FAILED: u8 = 125;

fn parse(
    store_flag: Option<PathBuf>,
    args: &[String],
) -> Result<(Option<PathBuf>, RunOptions), String> {
    let mut store_flag = store_flag;
    let mut o = RunOptions::new("");
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if !a.starts_with('-') || a == "-" {
            break;
        }
        i += 1;
        // Docker's short flags without values combine: -it, -dit, -dP.
        if !a.starts_with("--") && a.len() > 2 && a[1..].chars().all(|ch| "ditP".contains(ch)) {
            for ch in a[1..].chars() {
                match ch {
                    'd' => o.detach = true,
                    'i' => o.interactive = true,
                    't' => o.tty = true,
                    _ => o.publish_all = true,
                }
            }
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a, None),
        };
        if name == "--rm" {
            if inline.is_some() {
                return Err("--rm takes no value".into());
            }
            o.remove = true;
            continue;
        }
        let switch = match name {
            "-d" | "--detach" => Some(&mut o.detach),
            "-i" | "--interactive" => Some(&mut o.interactive),
            "-t" | "--tty" => Some(&mut o.tty),
            "-P" | "--publish-all" => Some(&mut o.publish_all),
            _ => None,
        };
        if let Some(flag) = switch {
            *flag = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("{name}={v}: true or false")),
            };
            continue;
        }
        if name == "--privileged" {
            o.security.privileged = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("--privileged={v}: true or false")),
            };
            continue;
        }
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => {
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("{name} needs a value"))?;
                    i += 1;
                    Ok(v)
                }
            }
        };
        match name {
            "--name" => o.name = Some(value()?),
            "-e" | "--env" => o.env.push(value()?),
            "-w" | "--workdir" => o.workdir = Some(value()?),
            "-u" | "--user" => o.user = Some(value()?),
            "--runtime" => o.runtime = Some(PathBuf::from(value()?)),
            "-p" | "--publish" => o.publish.push(value()?),
            "-v" | "--volume" => o.volumes.push(value()?),
            "-h" | "--hostname" => o.hostname = Some(value()?),
            "--entrypoint" => o.entrypoint = Some(value()?),
            "--store" => store_flag = Some(PathBuf::from(value()?)),
            "--cap-add" => o.security.cap_add.push(value()?),
            "--cap-drop" => o.security.cap_drop.push(value()?),
            "--security-opt" => o.security.security_opt(&value()?)?,
            "--network" | "--net" => {
                o.network = match value()?.as_str() {
                    "host" => Network::Host,
                    "none" => Network::None,
                    "private" | "bridge" => Network::Private,
                    v => return Err(format!("--network {v:?}: host, none or private")),
                }
            }
            _ => return Err(format!("unknown option {name}")),
        }
    }
    let Some(image) = args.get(i) else {
        return Err("no image given".into());
    };
    o.image = image.clone();
    let mut rest = &args[i + 1..];
    if rest.first().is_some_and(|a| a == "--") {
        rest = &rest[1..];
    }
    o.command = rest.to_vec();
    Ok((store_flag, o))
}

pub fn main(store_flag: Option<PathBuf>, args: &[String]) -> ExitCode {
    let (store_flag, o) = match parse(store_flag, args) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("unionrs: run: {m} (usage: unionrs --help)");
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
    use crate::image::security::SecurityOptions;

    fn p(args: &[&str]) -> Result<(Option<PathBuf>, RunOptions), String> {
        parse(
            None,
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn options_stop_at_the_image() {
        let (store, o) = p(&[
            "--rm",
            "--name=c",
            "-e",
            "A=1",
            "--env=B=2",
            "-w",
            "/w",
            "--user",
            "1:2",
            "--store",
            "/s",
            "img:1",
            "sh",
            "-c",
            "echo --rm",
        ])
        .unwrap();
        assert_eq!(store, Some(PathBuf::from("/s")));
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
        let (_, o) = p(&["--network", "none", "img", "--", "--x"]).unwrap();
        assert_eq!(
            (o.network, o.command),
            (Network::None, vec!["--x".to_string()])
        );
        let (_, o) = p(&["img"]).unwrap();
        assert!(o.command.is_empty());
        assert_eq!(o.security, SecurityOptions::default());
        let (_, o) = p(&[
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
            p(&["--privileged=no", "img"])
                .unwrap_err()
                .contains("true or false")
        );
        assert!(p(&["--security-opt", "apparmor=x", "img"]).is_err());
    }

    #[test]
    fn bad_command_lines() {
        assert!(p(&[]).unwrap_err().contains("no image given"));
        assert!(p(&["--rm"]).unwrap_err().contains("no image given"));
        assert!(p(&["--name"]).unwrap_err().contains("--name needs a value"));
        assert!(
            p(&["--bogus", "img"])
                .unwrap_err()
                .contains("unknown option --bogus")
        );
        assert!(
            p(&["--network", "overlay", "img"])
                .unwrap_err()
                .contains("host, none or private")
        );
    }
}
