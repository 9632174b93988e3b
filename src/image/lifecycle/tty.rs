//! `-t`: a real pseudo-terminal for the container's process. The runtime makes it inside
//! the container (runtime-spec `process.terminal`) and sends its master end over a unix
//! socket (`--console-socket`); we relay between that master and the user's terminal, in
//! raw mode, and pass the window size on (at the start and on every SIGWINCH).

use crate::sys::{proc, tty};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// A listening console socket, removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// A socket under /run/unionrs (short: a unix socket path holds 108 bytes).
    pub fn new() -> Result<ConsoleSocket, String> {
        let dir = Path::new("/run/unionrs");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!(
            "console-{}-{}.sock",
            std::process::id(),
            &crate::image::container::new_id()?[..8]
        ));
        let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal's master end, sent by the runtime `child` (an error if it exits first).
    pub fn receive(&self, child: &mut Child) -> Result<File, String> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).map_err(|e| e.to_string())?;
                    let fd = proc::recv_fd(s.as_fd())
                        .map_err(|e| format!("receiving the terminal: {e:?}"))?;
                    return Ok(File::from(fd));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                        return Err("the runtime exited before it sent the terminal".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("console socket: {e}")),
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Our terminal's size (stdout's, else stdin's) as the runtime spec's consoleSize.
pub fn our_size() -> Option<crate::image::runtime_spec::ConsoleSize> {
    let (height, width) = tty::window_size(std::io::stdout().as_fd())
        .or_else(|_| tty::window_size(std::io::stdin().as_fd()))
        .ok()?;
    (height > 0).then_some(crate::image::runtime_spec::ConsoleSize { height, width })
}

/// Gives `master` the size of our terminal, if we have one.
fn pass_window_size(master: &File) {
    if let Some(s) = our_size() {
        let _ = tty::set_window_size(master.as_fd(), s.height, s.width);
    }
}

/// Relays between our terminal and the container's `master` until the process `pid` (our
/// child: we are a subreaper) exits; its exit status. Stdin goes in only when
/// `interactive`. Our terminal is in raw mode meanwhile and restored afterwards.
fn relay(master: File, pid: i32, interactive: bool) -> Result<i32, String> {
    let stdin = std::io::stdin();
    let saved = if interactive && tty::is_tty(stdin.as_fd()) {
        tty::make_raw(stdin.as_fd()).ok()
    } else {
        None
    };
    // SIGWINCH waits here, blocked before the threads start so none of them takes it.
    proc::block_signals(&[libc::SIGWINCH]);
    pass_window_size(&master);
    let mut from = master.try_clone().map_err(|e| e.to_string())?;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 8192];
        // EIO: every slave end closed, the process is gone.
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    if interactive {
        let mut to = master.try_clone().map_err(|e| e.to_string())?;
        // Left running when the process ends first: it is blocked reading our stdin, and
        // the process exits right after.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut inp = std::io::stdin();
            while let Ok(n) = inp.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    let status = loop {
        match proc::try_wait_pid(pid) {
            Ok(Some(how)) => break Ok(how.code()),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for the process: {e:?}")),
        }
        if proc::wait_signal(&[libc::SIGWINCH], Duration::from_millis(50)).is_some() {
            pass_window_size(&master);
        }
    };
    // What the process wrote last is still in the master: give the reader a moment.
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    if let Some(s) = saved {
        tty::restore(stdin.as_fd(), &s);
    }
    status
}

/// Runs the runtime `cmd` (`run` or `exec` with its flags, to which `--detach
/// --console-socket --pid-file` and then `tail`, the ID and command, are added: runc hands
/// out a terminal's master only when it detaches), takes the master and relays until the
/// process ends; its exit status.
pub fn run_attached(
    mut cmd: std::process::Command,
    tail: &[String],
    interactive: bool,
) -> Result<i32, String> {
    // The process, left by the runtime, becomes our child to wait for.
    proc::set_child_subreaper().map_err(|e| format!("cannot become a subreaper: {e:?}"))?;
    let console = ConsoleSocket::new()?;
    let pid_file = console.path().with_extension("pid");
    cmd.arg("--detach")
        .arg("--console-socket")
        .arg(console.path())
        .arg("--pid-file")
        .arg(&pid_file)
        .args(tail);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let master = console.receive(&mut child);
    let status = child.wait().map_err(|e| e.to_string())?;
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let _ = std::fs::remove_file(&pid_file);
    let master = master?;
    let pid = match pid {
        Some(p) if status.success() => p,
        _ => return Err("the runtime failed to start the process".into()),
    };
    relay(master, pid, interactive)
}

/// `run -t` in the foreground: `RUNTIME run --console-socket` and [`relay`]; the process's
/// exit status.
pub fn run_foreground(
    rt: &Path,
    bundle: &Path,
    id: &str,
    interactive: bool,
) -> Result<i32, String> {
    crate::image::runtime::ensure_state_root(rt)?;
    let _ = crate::image::runtime::command(rt)
        .args(["delete", "--force", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let mut cmd = crate::image::runtime::command(rt);
    cmd.arg("run").arg("--bundle").arg(bundle);
    let r = run_attached(cmd, &[id.to_string()], interactive);
    let _ = crate::image::runtime::command(rt)
        .args(["delete", "--force", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    r
}
