//! Build secrets and SSH agents: what `--secret` and `--ssh` give a build, and what a
//! `RUN --mount=type=secret|ssh` makes of them for one command, as BuildKit does it:
//!
//! - a secret is read from a file or an environment variable of the `unionrs build` process
//!   and shown to the command as a read-only file (default `/run/secrets/ID`, mode 0400) and/or
//!   an environment variable (`env=NAME`); it never reaches a layer, the image config, the
//!   history or the cache key (a changed secret value does not rerun a cached step);
//! - an SSH agent socket is forwarded: the command sees a socket of its own (default
//!   `/run/buildkit/ssh_agent.N`, mode 0600) with `SSH_AUTH_SOCK` pointing at it, and each
//!   connection is relayed to the agent `--ssh` named. Private key files are refused: they
//!   would need an agent of our own.
//!
//! A mount whose secret or agent was not given is left out, unless it says `required`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// Parses one `--secret` value: `id=ID[,src|source=PATH][,env=VAR][,type=file|env]`.
/// Without `src` and `env`, an environment variable named ID is used when set, else the file
/// named ID (docker's rules).
pub fn parse_secret(v: &str) -> Result<(String, SecretSource), String> {
    let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
    for part in v.split(',').filter(|p| !p.is_empty()) {
        let (k, val) = part
            .split_once('=')
            .ok_or_else(|| format!("--secret {v}: {part:?} is not KEY=VALUE"))?;
        match k {
            "id" => id = Some(val.to_string()),
            "src" | "source" => src = Some(val.to_string()),
            "env" => env = Some(val.to_string()),
            "type" => kind = Some(val.to_string()),
            _ => {
                return Err(format!(
                    "--secret {v}: unknown key {k:?} (id, src, env, type)"
                ));
            }
        }
    }
    let id = id
        .or_else(|| src.as_deref().map(base_name))
        .or_else(|| env.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| format!("--secret {v}: id=ID is required"))?;
    let source = match (kind.as_deref(), src, env) {
        (Some("env"), Some(s), None) | (Some("env") | None, None, Some(s)) => SecretSource::Env(s),
        (Some("env"), None, None) => SecretSource::Env(id.clone()),
        (Some("file") | None, Some(s), None) => SecretSource::File(s.into()),
        (Some("file"), None, None) => SecretSource::File(id.clone().into()),
        (None, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None, None) => SecretSource::File(id.clone().into()),
        (Some(t), _, _) if t != "env" && t != "file" => {
            return Err(format!("--secret {v}: type={t} (file or env)"));
        }
        _ => return Err(format!("--secret {v}: give src= or env=, not both")),
    };
    Ok((id, source))
}

fn base_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Parses one `--ssh` value: `ID[=SOCKET]` (`default` alone means `$SSH_AUTH_SOCK`).
pub fn parse_ssh(v: &str) -> Result<(String, PathBuf), String> {
    let (id, path) = match v.split_once('=') {
        Some((id, p)) => (id, p.to_string()),
        None => (
            v,
            std::env::var("SSH_AUTH_SOCK")
                .map_err(|_| format!("--ssh {v}: SSH_AUTH_SOCK is not set (give {v}=SOCKET)"))?,
        ),
    };
    if id.is_empty() || path.is_empty() {
        return Err(format!("--ssh {v}: ID[=SOCKET]"));
    }
    if path.contains(',') {
        return Err(format!(
            "--ssh {v}: private key files are not supported: give an agent socket (ssh-agent, then {id}=$SSH_AUTH_SOCK)"
        ));
    }
    use std::os::unix::fs::FileTypeExt;
    match fs::metadata(&path) {
        Ok(m) if m.file_type().is_socket() => Ok((id.to_string(), path.into())),
        Ok(_) => Err(format!(
            "--ssh {v}: {path} is not a socket (private key files are not supported: give an agent socket)"
        )),
        Err(e) => Err(format!("--ssh {v}: {path}: {e}")),
    }
}

/// Reads a secret's value.
pub fn read(id: &str, s: &SecretSource) -> Result<Vec<u8>, String> {
    match s {
        SecretSource::File(p) => {
            fs::read(p).map_err(|e| format!("secret {id:?}: {}: {e}", p.display()))
        }
        SecretSource::Env(name) => std::env::var_os(name)
            .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
            .ok_or_else(|| format!("secret {id:?}: environment variable {name} is not set")),
    }
}

/// A secret's value in a private file (at a new path of STORE/tmp) for one command, removed
/// on drop.
pub struct SecretFile(PathBuf);

impl SecretFile {
    pub fn new(path: PathBuf, value: &[u8], mode: u32, uid: u32, gid: u32) -> Result<Self, String> {
        let f = SecretFile(path);
        let err = |e: io::Error| format!("{}: {e}", f.0.display());
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&f.0)
                .map_err(err)?;
            io::Write::write_all(&mut out, value).map_err(err)?;
        }
        std::os::unix::fs::chown(&f.0, Some(uid), Some(gid)).map_err(err)?;
        fs::set_permissions(&f.0, fs::Permissions::from_mode(mode)).map_err(err)?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A socket of our own that relays each connection to an SSH agent, for one command.
/// Dropping it stops the relay and removes the socket.
pub struct AgentRelay {
    dir: PathBuf,
    sock: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentRelay {
    /// The relay's socket is made in a new directory `dir` (a path of STORE/tmp: short, as
    /// sun_path holds 108 bytes, and unreachable by others before the socket's mode is set).
    pub fn new(
        dir: PathBuf,
        agent: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<AgentRelay, String> {
        fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sock = dir.join("agent");
        let mut relay = AgentRelay {
            dir,
            sock,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        let err = |e: io::Error| format!("{}: {e}", relay.sock.display());
        let listener = UnixListener::bind(&relay.sock).map_err(err)?;
        std::os::unix::fs::chown(&relay.sock, Some(uid), Some(gid)).map_err(err)?;
        fs::set_permissions(&relay.sock, fs::Permissions::from_mode(mode)).map_err(err)?;
        let (stop, agent) = (relay.stop.clone(), agent.to_path_buf());
        relay.thread = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(upstream) = UnixStream::connect(&agent) else {
                    continue;
                };
                std::thread::spawn(move || pipe_both(client, upstream));
            }
        }));
        Ok(relay)
    }

    pub fn path(&self) -> &Path {
        &self.sock
    }
}

/// Copies both ways until either side ends.
fn pipe_both(a: UnixStream, b: UnixStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let _ = io::copy(&mut b2, &mut a2);
        let _ = a2.shutdown(std::net::Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = io::copy(&mut a, &mut b);
    let _ = b.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}

impl Drop for AgentRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop, which then sees `stop`.
        let _ = UnixStream::connect(&self.sock);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.sock);
        let _ = fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values() {
        let file = |p: &str| SecretSource::File(p.into());
        assert_eq!(
            parse_secret("id=tok,src=/a/b").unwrap(),
            ("tok".into(), file("/a/b"))
        );
        assert_eq!(
            parse_secret("src=/a/b.txt").unwrap(),
            ("b.txt".into(), file("/a/b.txt"))
        );
        assert_eq!(
            parse_secret("id=k,env=KUBECONFIG").unwrap(),
            ("k".into(), SecretSource::Env("KUBECONFIG".into()))
        );
        assert_eq!(
            parse_secret("id=k,type=env").unwrap(),
            ("k".into(), SecretSource::Env("k".into()))
        );
        assert_eq!(
            parse_secret("id=UNIONRS_SURELY_UNSET_VAR").unwrap().1,
            file("UNIONRS_SURELY_UNSET_VAR")
        );
        assert_eq!(
            parse_secret("id=PATH").unwrap().1,
            SecretSource::Env("PATH".into())
        );
        for bad in [
            "",
            "tok",
            "id=a,src=/x,env=Y",
            "id=a,type=nfs",
            "id=a,bogus=1",
        ] {
            assert!(parse_secret(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_values() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s");
        let _l = UnixListener::bind(&sock).unwrap();
        let file = d.path().join("key");
        fs::write(&file, "k").unwrap();
        let v = format!("default={}", sock.display());
        assert_eq!(parse_ssh(&v).unwrap(), ("default".into(), sock.clone()));
        assert!(parse_ssh(&format!("default={}", file.display())).is_err());
        assert!(parse_ssh(&format!("x={},{}", file.display(), file.display())).is_err());
        assert!(parse_ssh("=x").is_err());
    }

    /// Bytes go both ways through the relay; its socket has the mode asked for; dropping it
    /// removes the socket and its directory.
    #[test]
    fn relay_forwards_to_the_agent() {
        use std::io::{Read, Write};
        let d = tempfile::tempdir().unwrap();
        let agent = d.path().join("agent.sock");
        let l = UnixListener::bind(&agent).unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 4];
                c.read_exact(&mut buf).unwrap();
                c.write_all(&[b"re:", &buf[..]].concat()).unwrap();
            }
        });
        let dir = d.path().join("relay");
        let relay = AgentRelay::new(dir.clone(), &agent, 0o640, 0, 0).unwrap();
        let mode = fs::metadata(relay.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        for msg in [b"ping", b"pong"] {
            let mut c = UnixStream::connect(relay.path()).unwrap();
            c.write_all(msg).unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            assert_eq!(got, [&b"re:"[..], &msg[..]].concat());
        }
        server.join().unwrap();
        drop(relay);
        assert!(!dir.exists());
    }
}
