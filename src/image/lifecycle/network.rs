//! The private network (`--network private`, and `-p`/`-P`): a named network namespace
//! (`ip netns add unionrs-<ID12>`, so the runtime joins it by path and `rm -f` finds it
//! again by name after a crash) and pasta serving it ([`super::ports`]). Made before the
//! runtime starts the container, taken down after it stopped; a failure on the way up
//! takes down what was made.

use super::ports::{self, PortMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The netns name of container `id` (the first 12 hex digits of its ID).
pub fn netns_name(id: &str) -> String {
    format!("unionrs-{}", &id[..id.len().min(12)])
}

/// Where `ip netns` keeps it: the path the runtime spec names.
pub fn netns_path(id: &str) -> PathBuf {
    Path::new("/run/netns").join(netns_name(id))
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes the namespace and starts pasta on it; returns pasta's PID.
pub fn up(id: &str, maps: &[PortMap], dir: &Path) -> Result<i32, String> {
    down(id, None);
    ip(&["netns", "add", &netns_name(id)])?;
    let _ = ip(&["-n", &netns_name(id), "link", "set", "lo", "up"]);
    match ports::start_forwarder(&netns_path(id), maps, dir) {
        Ok(pid) => Ok(pid),
        Err(e) => {
            down(id, None);
            Err(e)
        }
    }
}

/// Stops pasta (if `forwarder` is still it) and deletes the namespace; quiet when either
/// is gone already.
pub fn down(id: &str, forwarder: Option<i32>) {
    if let Some(pid) = forwarder
        && super::state::process_alive(pid, &["pasta"])
    {
        // Gone (its ports free) before we return: `stop` promises the port is closed.
        let _ = crate::sys::proc::kill(pid, libc::SIGTERM);
        let t = std::time::Instant::now();
        while !super::state::process_gone(pid) {
            if t.elapsed() > std::time::Duration::from_secs(2) {
                let _ = crate::sys::proc::kill(pid, libc::SIGKILL);
            }
            if t.elapsed() > std::time::Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    if netns_path(id).exists() {
        let _ = ip(&["netns", "delete", &netns_name(id)]);
    }
}
