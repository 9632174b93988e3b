//! RUN: the command (shell form through SHELL, exec form, heredocs), its `--mount`s and
//! `--network`, its cache key (the instruction with the build args it sees), and the step
//! run in a container and committed.

use super::parse::{Args, Heredoc, Instruction};
use super::secrets::{self, AgentRelay, SecretFile};
use super::step::{self, RunEnv, RunFailure, StepContainer};
use super::{Builder, Stage, mounts, now_rfc3339, one_line};
use crate::image::runtime_spec::{Mount, Network};
use crate::image::store::Store;
use sha2::Digest as _;
use std::fs;
use std::path::PathBuf;

/// What a RUN's `--mount`s give its command.
struct RunMounts<'s> {
    /// The runtime's mounts.
    mounts: Vec<Mount>,
    /// Environment variables set for the command only (secrets with `env=`, SSH_AUTH_SOCK).
    env: Vec<(String, String)>,
    /// What they add to the cache key (never a secret's value).
    key: String,
    /// The containers holding `from=` sources: kept mounted until the command ends.
    holders: Vec<StepContainer<'s>>,
    /// Secret files and agent relays: removed when the command ends.
    secret_files: Vec<SecretFile>,
    relays: Vec<AgentRelay>,
}

impl Builder<'_> {
    /// RUN's `--mount`s (see `RunMounts`).
    fn run_mounts<'s>(&'s self, ins: &Instruction) -> Result<RunMounts<'s>, String> {
        let mut out = Vec::new();
        let mut holders = Vec::new();
        let mut key = String::new();
        let (mut env, mut secret_files, mut relays) = (Vec::new(), Vec::new(), Vec::new());
        for m in mounts::parse_all(ins.flag_all("mount"))? {
            let ro = if m.readonly { "ro" } else { "rw" };
            match &m.kind {
                mounts::Kind::Bind { source, from } => {
                    let (root, id) = match from {
                        Some(f) => {
                            let st = self.state_of_from(f)?;
                            let sc = StepContainer::new(self.st, &st, "build-from")?;
                            let root = sc.rootfs();
                            holders.push(sc);
                            (root, st.id().to_string())
                        }
                        None => (self.ctx.clone(), String::new()),
                    };
                    let src = root.sources(source)?.remove(0);
                    let mut h = sha2::Sha256::new();
                    if id.is_empty() {
                        root.checksum(&src, &mut h)?;
                    }
                    key.push_str(&format!(
                        "bind {id} {source} {} {:x}\n",
                        m.target,
                        h.finalize()
                    ));
                    out.push(Mount {
                        destination: m.target.clone(),
                        kind: "bind".into(),
                        source: src.host.display().to_string(),
                        options: vec!["rbind".into(), ro.into()],
                    });
                }
                mounts::Kind::Cache { id, mode, uid, gid } => {
                    let dir = mounts::cache_dir(self.st.root(), id);
                    if !dir.is_dir() {
                        use std::os::unix::fs::PermissionsExt;
                        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                        fs::set_permissions(&dir, fs::Permissions::from_mode(*mode))
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid))
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                    }
                    key.push_str(&format!("cache {id} {} {ro}\n", m.target));
                    out.push(Mount {
                        destination: m.target.clone(),
                        kind: "bind".into(),
                        source: dir.display().to_string(),
                        options: vec!["rbind".into(), ro.into()],
                    });
                }
                mounts::Kind::Tmpfs { size } => {
                    key.push_str(&format!("tmpfs {} {size:?}\n", m.target));
                    let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                    if let Some(n) = size {
                        options.push(format!("size={n}"));
                    }
                    out.push(Mount {
                        destination: m.target.clone(),
                        kind: "tmpfs".into(),
                        source: "tmpfs".into(),
                        options,
                    });
                }
                mounts::Kind::Secret {
                    id,
                    env: var,
                    file,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    key.push_str(&format!("secret {id} {} {file} {var:?}\n", m.target));
                    let Some((_, source)) = self.o.secrets.iter().find(|(i, _)| i == id) else {
                        if *required {
                            return Err(format!(
                                "secret {id:?} is required but not given (--secret id={id},src=FILE)"
                            ));
                        }
                        continue;
                    };
                    let value = secrets::read(id, source)?;
                    if let Some(name) = var {
                        let text = String::from_utf8(value.clone()).map_err(|_| {
                            format!("secret {id:?}: env={name} needs a UTF-8 value")
                        })?;
                        env.push((name.clone(), text));
                    }
                    if *file {
                        let f =
                            SecretFile::new(self.st.tmp_path("secret"), &value, *mode, *uid, *gid)?;
                        out.push(Mount {
                            destination: m.target.clone(),
                            kind: "bind".into(),
                            source: f.path().display().to_string(),
                            options: vec!["rbind".into(), "ro".into()],
                        });
                        secret_files.push(f);
                    }
                }
                mounts::Kind::Ssh {
                    id,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    key.push_str(&format!("ssh {id} {}\n", m.target));
                    let Some((_, agent)) = self.o.ssh.iter().find(|(i, _)| i == id) else {
                        if *required {
                            return Err(format!(
                                "ssh agent {id:?} is required but not given (--ssh {id}=SOCKET)"
                            ));
                        }
                        continue;
                    };
                    let relay = AgentRelay::new(self.st.tmp_path("ssh"), agent, *mode, *uid, *gid)?;
                    out.push(Mount {
                        destination: m.target.clone(),
                        kind: "bind".into(),
                        source: relay.path().display().to_string(),
                        options: vec!["rbind".into(), "rw".into()],
                    });
                    // The first ssh mount is the default agent, as in BuildKit.
                    if !env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK") {
                        env.push(("SSH_AUTH_SOCK".into(), m.target.clone()));
                    }
                    relays.push(relay);
                }
            }
        }
        Ok(RunMounts {
            mounts: out,
            env,
            key,
            holders,
            secret_files,
            relays,
        })
    }

    pub(super) fn run(
        &mut self,
        s: &mut Stage,
        ins: &Instruction,
        label: &str,
    ) -> Result<(), String> {
        let orig = one_line(&ins.original);
        let fail = |m: String| format!("{label}: {orig}: {m}");
        let network = match ins.flag("network") {
            None | Some("default") => self.o.network,
            Some("host") => Network::Host,
            Some("none") => Network::None,
            Some(n) => return Err(fail(format!("--network={n}: host, none or default"))),
        };
        if ins.flag("security").is_some() {
            return Err(fail("RUN --security is not supported".into()));
        }
        let (mut args, shown) = match &ins.args {
            Args::Exec(v) => (v.clone(), v.join(" ")),
            Args::Shell(cmd) => {
                let script = match ins.heredocs.as_slice() {
                    [] => cmd.clone(),
                    [h] if is_only_heredoc(cmd, &h.name) => h.body.clone(),
                    docs => {
                        let mut t = format!("{cmd}\n");
                        for h in docs {
                            t.push_str(&h.body);
                            t.push_str(&h.name);
                            t.push('\n');
                        }
                        t
                    }
                };
                let mut a = s.shell.clone();
                a.push(script.clone());
                let shown = format!("{} {}", s.shell.join(" "), script);
                (a, shown)
            }
            _ => return Err(fail("RUN needs a command".into())),
        };
        let created_by = format!("{}{}", Self::args_prefix(s), shown);
        let net = format!("{network:?}");
        let rm = self.run_mounts(ins).map_err(&fail)?;
        let mut mounts = rm.mounts;
        let (key, hit) = self.cached(s, &[&created_by, &net, &rm.key]);
        if hit {
            return Ok(());
        }
        // `RUN <<EOF` whose script starts with `#!`: run by the interpreter it names, as
        // BuildKit does, from /dev/pipes/NAME (in the /dev tmpfs, so never in the layer).
        let _script = match (&ins.args, ins.heredocs.as_slice()) {
            (Args::Shell(cmd), [h])
                if is_only_heredoc(cmd, &h.name) && h.body.starts_with("#!") =>
            {
                let (file, argv, mount) = shebang_script(self.st, h).map_err(&fail)?;
                args = argv;
                mounts.push(mount);
                Some(file)
            }
            _ => None,
        };
        let sc = StepContainer::new(self.st, &s.state, "build").map_err(&fail)?;
        let mut run_args = s.proxy.clone();
        run_args.retain(|(k, _)| !s.args.iter().any(|(a, _)| a == k));
        run_args.extend(s.args.iter().cloned());
        let env = RunEnv {
            args,
            build_args: &run_args,
            network,
            runtime: self
                .runtime
                .as_deref()
                .expect("found when the Dockerfile has RUN"),
            quiet: self.o.quiet,
            mounts,
            env: rm.env,
        };
        let res = step::run(self.st, &sc, &s.state, &env);
        drop((rm.holders, rm.secret_files, rm.relays));
        match res {
            Ok(()) => {}
            Err(RunFailure::Exit(n)) => return Err(fail(format!("exit status {n}"))),
            Err(RunFailure::Other(m)) => return Err(fail(m)),
        }
        sc.commit(&mut s.state, &now_rfc3339(), &created_by)
            .map_err(&fail)?;
        drop(sc);
        self.remember(&key, s).map_err(fail)
    }
}

/// `<<EOF` (or `<<-EOF`, `<<"EOF"`) is the whole command.
fn is_only_heredoc(cmd: &str, name: &str) -> bool {
    cmd.trim()
        .trim_start_matches("<<")
        .trim_start_matches('-')
        .trim_matches(['"', '\''])
        == name
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The script of a `#!` heredoc in STORE/tmp, the command running it (the interpreter and
/// its one optional argument, as the kernel reads a `#!` line) and its mount.
fn shebang_script(st: &Store, h: &Heredoc) -> Result<(TempFile, Vec<String>, Mount), String> {
    use std::os::unix::fs::PermissionsExt;
    let line = h.body.lines().next().unwrap_or_default();
    let line = line.trim_start_matches("#!").trim();
    let mut argv: Vec<String> = match line.split_once(char::is_whitespace) {
        Some((interp, arg)) => vec![interp.to_string(), arg.trim().to_string()],
        None => vec![line.to_string()],
    };
    if argv[0].is_empty() {
        return Err(format!("heredoc {}: #! names no interpreter", h.name));
    }
    let file = TempFile(st.tmp_path("heredoc"));
    fs::write(&file.0, &h.body).map_err(|e| format!("{}: {e}", file.0.display()))?;
    fs::set_permissions(&file.0, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", file.0.display()))?;
    let dest = format!("/dev/pipes/{}", h.name);
    argv.push(dest.clone());
    let mount = Mount {
        destination: dest,
        kind: "bind".into(),
        source: file.0.display().to_string(),
        options: vec!["rbind".into(), "ro".into()],
    };
    Ok((file, argv, mount))
}
