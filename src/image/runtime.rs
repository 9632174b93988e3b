//! The installed OCI runtime (runc or crun): finding it, and running a bundle in the
//! foreground with its exit status as ours. unionrs never starts a container process itself.

use crate::sys::proc::{Received, block_signals, kill, wait_signal};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Looked for in this order when `--runtime` is not given. runc first: crun 1.8 (Debian 12)
/// fails on hosts with hybrid cgroups.
pub const SEARCHED: &[&str] = &["runc", "crun"];

/// Directories searched besides $PATH (root's sbin dirs are missing from some PATHs).
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The runtime binary: `explicit` if given (it must be an executable file), else the first
/// of [`SEARCHED`] in $PATH or the usual bin/sbin dirs.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if is_executable_file(p) {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--runtime {}: not an executable file", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .collect();
    find_in(&dirs)
}

fn find_in(dirs: &[PathBuf]) -> Result<PathBuf, String> {
    for name in SEARCHED {
        if let Some(p) = dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| is_executable_file(p))
        {
            return Ok(p);
        }
    }
    Err("no OCI runtime found: install runc (apt-get install runc) or pass --runtime PATH".into())
}

/// Where the runtime keeps its state for our containers (`--root`), apart from other
/// users of the same runtime (podman's runc uses /run/runc).
pub fn state_root(runtime: &Path) -> PathBuf {
    let name = runtime
        .file_name()
        .map_or_else(|| "runtime".into(), |n| n.to_string_lossy().into_owned());
    PathBuf::from("/run/unionrs").join(name)
}

/// Narrows `dir` and its parent (/run/unionrs) to 0700: the runtime's state holds each
/// container's spec, environment included, which other local users have no business
/// reading.
fn private_dirs(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for d in dir.parent().into_iter().chain([dir]) {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", d.display()))?;
    }
    Ok(())
}

/// [`state_root`], made (private) if missing.
pub fn ensure_state_root(runtime: &Path) -> Result<PathBuf, String> {
    let state = state_root(runtime);
    std::fs::create_dir_all(&state)
        .map_err(|e| format!("cannot create {}: {e}", state.display()))?;
    private_dirs(&state)?;
    Ok(state)
}

/// `RUNTIME --root STATE`, ready for a subcommand; its stdin is /dev/null.
pub fn command(runtime: &Path) -> Command {
    let mut c = Command::new(runtime);
    c.arg("--root")
        .arg(state_root(runtime))
        .stdin(Stdio::null());
    c
}

/// Signals unionrs passes on to the runtime (which passes them to the container) while it
/// waits. SIGCHLD is only waited for: it says the runtime exited.
const FORWARDED: &[i32] = &[libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// Runs `RUNTIME --root STATE run --bundle BUNDLE ID` with our stdin/stdout/stderr and
/// returns its exit status (128+N if it died of signal N). A stale runtime state of the
/// same ID (left by a killed run) is deleted first.
///
/// While it runs, unionrs blocks the termination signals so that it always lives to clean
/// up: a signal sent to unionrs alone (kill PID) is forwarded to the runtime; one the
/// terminal sent to the whole foreground group (^C) already reached the runtime and is
/// not sent twice. They stay blocked afterwards, so the cleanup runs to its end.
pub fn run_foreground(runtime: &Path, bundle: &Path, id: &str) -> Result<i32, String> {
    run_foreground_with(
        runtime,
        bundle,
        id,
        [Stdio::inherit(), Stdio::inherit(), Stdio::inherit()],
    )
}

/// [`run_foreground`] with the container's stdin, stdout and stderr given (`build` runs
/// its steps without stdin, and `-q` sends their output nowhere).
pub fn run_foreground_with(
    runtime: &Path,
    bundle: &Path,
    id: &str,
    stdio: [Stdio; 3],
) -> Result<i32, String> {
    let [stdin, stdout, stderr] = stdio;
    let state = ensure_state_root(runtime)?;
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let mut waited = FORWARDED.to_vec();
    waited.push(libc::SIGCHLD);
    block_signals(&waited);
    let mut child = Command::new(runtime)
        .arg("--root")
        .arg(&state)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", runtime.display()))?;
    let pid = child.id() as i32;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for {}: {e}", runtime.display()))?
        {
            use std::os::unix::process::ExitStatusExt;
            return Ok(status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
        }
        if let Some(Received {
            signo,
            sent_by_process: true,
        }) = wait_signal(&waited, Duration::from_secs(1))
            && signo != libc::SIGCHLD
        {
            let _ = kill(pid, signo);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn runc_before_crun_and_a_clear_error_for_none() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let dirs = [a.clone(), b.clone()];
        assert_eq!(
            find_in(&dirs).unwrap_err(),
            "no OCI runtime found: install runc (apt-get install runc) or pass --runtime PATH"
        );
        let exe = |p: &Path| {
            std::fs::write(p, b"").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // Not executable: not a runtime.
        std::fs::write(a.join("runc"), b"").unwrap();
        exe(&a.join("crun"));
        assert_eq!(find_in(&dirs).unwrap(), a.join("crun"));
        exe(&b.join("runc"));
        assert_eq!(find_in(&dirs).unwrap(), b.join("runc"));
        assert!(
            find(Some(&a.join("runc")))
                .unwrap_err()
                .contains("not an executable file")
        );
        assert_eq!(find(Some(&b.join("runc"))).unwrap(), b.join("runc"));
    }
}
