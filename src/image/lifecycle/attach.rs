//! `attach`: a terminal joins a detached container's output and input through its monitor.
//! The monitor listens on `/run/unionrs/attach-<ID12>.sock` (a unix socket path holds 108
//! bytes, so not in the store); a client sends its window size (rows, columns: two
//! big-endian u16) and then its keystrokes, and receives everything the container writes
//! from then on. Docker's detach keys, ctrl-p ctrl-q, leave the container running.

use crate::sys::tty;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// ctrl-p, ctrl-q.
const DETACH: [u8; 2] = [0x10, 0x11];

pub fn socket_path(id: &str) -> PathBuf {
    PathBuf::from(format!(
        "/run/unionrs/attach-{}.sock",
        &id[..id.len().min(12)]
    ))
}

/// The attached clients, written to by the monitor's output copiers.
#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<Vec<UnixStream>>>);

impl Clients {
    /// Sends `data` to every client; a client that cannot take it is dropped.
    pub fn send(&self, data: &[u8]) {
        if let Ok(mut v) = self.0.lock() {
            v.retain_mut(|c| c.write_all(data).is_ok());
        }
    }

    /// Ends every client's stream (the container stopped).
    pub fn close_all(&self) {
        if let Ok(mut v) = self.0.lock() {
            for c in v.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Monitor side: accepts clients on `listener` for the container's life. `input` is where
/// their keystrokes go (the terminal's master, or the stdin pipe of `-i`); `master`, with
/// `-t`, takes their window size.
pub fn serve(listener: UnixListener, clients: Clients, input: Option<File>, master: Option<File>) {
    let input = input.map(|f| Arc::new(Mutex::new(f)));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else {
            continue;
        };
        let mut size = [0u8; 4];
        if conn.read_exact(&mut size).is_err() {
            continue;
        }
        let (rows, cols) = (
            u16::from_be_bytes([size[0], size[1]]),
            u16::from_be_bytes([size[2], size[3]]),
        );
        if let Some(m) = &master
            && rows > 0
        {
            let _ = tty::set_window_size(m.as_fd(), rows, cols);
        }
        let Ok(writer) = conn.try_clone() else {
            continue;
        };
        if let Ok(mut v) = clients.0.lock() {
            v.push(writer);
        }
        if let Some(input) = input.clone() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let Ok(mut i) = input.lock() else {
                        break;
                    };
                    if i.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    }
}

/// How an attach ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// ctrl-p ctrl-q: the container runs on.
    Detached,
    /// The container stopped (its stream ended).
    Stopped,
}

/// Client side: relays our terminal to the container's monitor until the container stops
/// or the detach keys come.
pub fn attach(socket: &std::path::Path) -> Result<Ended, String> {
    let mut conn = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the container's monitor ({e})"))?;
    let stdin = std::io::stdin();
    let size = tty::window_size(std::io::stdout().as_fd()).unwrap_or((0, 0));
    let mut hello = size.0.to_be_bytes().to_vec();
    hello.extend(size.1.to_be_bytes());
    conn.write_all(&hello).map_err(|e| e.to_string())?;
    let saved = if tty::is_tty(stdin.as_fd()) {
        tty::make_raw(stdin.as_fd()).ok()
    } else {
        None
    };
    let detached = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut to = conn.try_clone().map_err(|e| e.to_string())?;
    let d = detached.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut held = false; // a ctrl-p waiting for what follows
        let mut inp = std::io::stdin();
        while let Ok(n) = inp.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut out = Vec::with_capacity(n + 1);
            for &b in &buf[..n] {
                if held {
                    held = false;
                    if b == DETACH[1] {
                        d.store(true, std::sync::atomic::Ordering::SeqCst);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    out.push(DETACH[0]);
                }
                if b == DETACH[0] {
                    held = true;
                } else {
                    out.push(b);
                }
            }
            if to.write_all(&out).is_err() {
                return;
            }
        }
    });
    let mut out = std::io::stdout();
    let mut buf = [0u8; 8192];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    if let Some(s) = saved {
        tty::restore(stdin.as_fd(), &s);
    }
    Ok(if detached.load(std::sync::atomic::Ordering::SeqCst) {
        Ended::Detached
    } else {
        Ended::Stopped
    })
}
