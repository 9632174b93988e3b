//! Reading a container's root filesystem from outside it, for `run`: the user named by
//! `--user` / the image's `User` (from the image's /etc/passwd and /etc/group), and whether
//! the command exists there. Every path is opened with openat2(RESOLVE_IN_ROOT) on the
//! rootfs, so an image's symlink (`/etc/passwd -> /root/x`) resolves inside the image,
//! never on the host.

use super::runtime_spec::User;
use crate::sys::fs::{fstat, open_in_root, open_path};
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Largest /etc/passwd or /etc/group read.
const MAX_DB: u64 = 16 << 20;

pub struct Rootfs {
    root: OwnedFd,
}

/// Why a command cannot be started.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandError {
    NotFound(String),
    NotExecutable(String),
}

impl Rootfs {
    pub fn open(path: &Path) -> Result<Rootfs, String> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: NUL in path", path.display()))?;
        let root = open_path(&c, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Rootfs { root })
    }

    /// Contents of a small file, None if it does not exist.
    fn read(&self, path: &str) -> Option<String> {
        let fd = open_in_root(self.root.as_fd(), path.as_bytes(), libc::O_RDONLY).ok()?;
        let mut s = String::new();
        File::from(fd).take(MAX_DB).read_to_string(&mut s).ok()?;
        Some(s)
    }

    /// Resolves `spec` (`""`, `user`, `uid`, `user:group`, `uid:gid`, ...) as Docker does:
    /// names through the image's passwd/group, the primary group from passwd (0 for a uid
    /// with no entry), supplementary groups from the group file's member lists.
    pub fn user(&self, spec: &str) -> Result<(User, Option<String>), String> {
        let passwd = self.read("/etc/passwd").unwrap_or_default();
        let group = self.read("/etc/group").unwrap_or_default();
        resolve_user(spec, &passwd, &group)
    }

    /// Finds `cmd` as execve in the container would: a name with `/` relative to `cwd`, any
    /// other name in the directories of `path` (the container's PATH).
    pub fn find_command(&self, cmd: &str, cwd: &str, path: &str) -> Result<(), CommandError> {
        let candidates: Vec<String> = if cmd.contains('/') {
            vec![if cmd.starts_with('/') {
                cmd.to_string()
            } else {
                format!("{}/{cmd}", cwd.trim_end_matches('/'))
            }]
        } else {
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
                .collect()
        };
        let mut not_exec = None;
        for c in &candidates {
            let Ok(fd) = open_in_root(self.root.as_fd(), c.as_bytes(), libc::O_PATH) else {
                continue;
            };
            match fstat(fd.as_fd()) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_mode & 0o111 != 0 => {
                    return Ok(());
                }
                _ => not_exec = Some(c.clone()),
            }
        }
        Err(match not_exec {
            Some(c) => CommandError::NotExecutable(c),
            None => CommandError::NotFound(cmd.to_string()),
        })
    }
}

/// Entries of a passwd/group style file: the `:`-separated fields of each line.
fn entries(db: &str) -> impl Iterator<Item = Vec<&str>> {
    db.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

/// The user for `spec` and its home directory (if the passwd file has the user).
pub fn resolve_user(
    spec: &str,
    passwd: &str,
    group: &str,
) -> Result<(User, Option<String>), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let pw = entries(passwd).find(|f| {
        f.len() >= 4 && (f[0] == u || (u.bytes().all(|b| b.is_ascii_digit()) && f[2] == u))
    });
    let (uid, mut gid, name, home) = match (&pw, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("/etc/passwd of the image: bad uid for {}", f[0]))?,
            f[3].parse::<u32>()
                .map_err(|_| format!("/etc/passwd of the image: bad gid for {}", f[0]))?,
            Some(f[0].to_string()),
            f.get(5).map(|h| h.to_string()),
        ),
        (None, Ok(n)) => (n, 0, None, None),
        (None, Err(_)) => {
            return Err(format!(
                "user {u:?} is not in the image's /etc/passwd (give a numeric uid)"
            ));
        }
    };
    let mut additional = Vec::new();
    match g {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => entries(group)
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?,
            };
        }
        _ => {
            if let Some(n) = &name {
                for f in entries(group) {
                    if f.len() >= 4
                        && f[3].split(',').any(|m| m == n)
                        && let Ok(id) = f[2].parse::<u32>()
                        && id != gid
                        && !additional.contains(&id)
                    {
                        additional.push(id);
                    }
                }
            }
        }
    }
    Ok((
        User {
            uid,
            gid,
            additional_gids: additional,
        },
        home,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # comment\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\nstaff:x:50:app\n";

    fn u(uid: u32, gid: u32, extra: &[u32]) -> User {
        User {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn users_as_docker_resolves_them() {
        let r = |s| resolve_user(s, PASSWD, GROUP);
        assert_eq!(r("").unwrap(), (u(0, 0, &[]), Some("/root".into())));
        assert_eq!(
            r("app").unwrap(),
            (u(1000, 1000, &[10, 50]), Some("/home/app".into()))
        );
        assert_eq!(r("1000").unwrap().0, u(1000, 1000, &[10, 50]));
        assert_eq!(r("app:staff").unwrap().0, u(1000, 50, &[]));
        assert_eq!(r("app:7").unwrap().0, u(1000, 7, &[]));
        assert_eq!(r("4242").unwrap(), (u(4242, 0, &[]), None));
        assert_eq!(r("4242:4243").unwrap().0, u(4242, 4243, &[]));
        assert!(
            r("nobody")
                .unwrap_err()
                .contains("not in the image's /etc/passwd")
        );
        assert!(r("app:nogroup").unwrap_err().contains("/etc/group"));
        assert_eq!(resolve_user("5", "", "").unwrap().0, u(5, 0, &[]));
    }
}
