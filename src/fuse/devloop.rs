//! The /dev/fuse transport of unionrs's own protocol layer: the INIT handshake, then one
//! thread per cloned /dev/fuse fd reading a request, serving it (`Conn::handle`) and writing
//! the reply. With io_uring on, these threads still carry what io_uring does not: requests
//! made before every queue is registered, FORGET, INTERRUPT (and notifications go out here).

use super::abi::{self, Body, InHeader};
use super::conn::{Conn, MAX_WRITE, Negotiated};
use crate::sys::Errno;
use crate::sys::fuse_dev;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A read buffer holds the largest request: header, write header and max_write of data.
const BUF_LEN: usize = MAX_WRITE as usize + 8192;

/// Reads requests until INIT arrives and answers it.
pub fn handshake(conn: &Conn) -> Result<Negotiated, String> {
    let dev = conn.dev.as_fd();
    let mut buf = vec![0u8; BUF_LEN];
    let mut out = Vec::with_capacity(64);
    loop {
        let n = match fuse_dev::read_request(dev, &mut buf) {
            Ok(n) => n,
            Err(e) if retry(e) => continue,
            Err(e) => return Err(format!("reading INIT from /dev/fuse: {e}")),
        };
        let Ok(h) = InHeader::parse(&buf[..n]) else {
            return Err("short request during the FUSE handshake".into());
        };
        let body = &buf[abi::IN_HEADER_LEN.min(n)..n];
        let init = match abi::decode(h.opcode, Body::one(body), false) {
            Ok(abi::Request::Init {
                major,
                minor,
                max_readahead,
                flags,
            }) => (major, minor, max_readahead, flags),
            _ => {
                reply(dev, h.unique, -libc::EIO, &[]);
                return Err(format!("FUSE opcode {} before INIT", h.opcode));
            }
        };
        out.clear();
        return match conn.init(init.0, init.1, init.2, init.3, &mut out) {
            Ok(n) => {
                reply(dev, h.unique, 0, &out);
                Ok(n)
            }
            Err(e) => {
                reply(dev, h.unique, -e.0, &[]);
                Err(format!("FUSE handshake failed: {e}"))
            }
        };
    }
}

fn retry(e: Errno) -> bool {
    // EINTR: a signal; EAGAIN: nothing yet; ENOENT: the request was interrupted before we
    // read it.
    e.0 == libc::EINTR || e.0 == libc::EAGAIN || e.0 == libc::ENOENT
}

fn reply(dev: BorrowedFd<'_>, unique: u64, error: i32, body: &[u8]) {
    let h = abi::out_header(unique, error, body.len());
    if let Err(e) = fuse_dev::write_reply(dev, &[&h, body]) {
        // ENOENT: the request was interrupted and is gone; nothing to do.
        if e.0 != libc::ENOENT {
            log::debug!("writing reply {unique}: {e}");
        }
    }
}

/// How long the /dev/fuse reader waits after a FORGET once the io_uring queues carry every
/// request. A FORGET needs no answer, and the kernel hands whatever piled up meanwhile over
/// in one BATCH_FORGET: `rm -rf` of 4,153 entries sent 4,153 FORGETs, each waking a reader
/// thread (a context switch, or a halted vCPU's wake-up) for a few microseconds of work.
const FORGET_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Which reader a /dev/fuse thread is once the io_uring queues carry every request: then
/// only FORGET and INTERRUPT still come here, and one reader is enough.
#[derive(Clone, Copy, PartialEq)]
enum Reader {
    /// The session's fd: serves until unmounted.
    Main,
    /// A clone: stops after its first request once the rings are up.
    Clone,
}

/// Serves requests on `dev` until the filesystem is unmounted (ENODEV). `rings_up` turns
/// true once the io_uring queues carry every request.
fn serve_fd(
    conn: &Conn,
    dev: BorrowedFd<'_>,
    reader: Reader,
    rings_up: &AtomicBool,
) -> Result<(), String> {
    let mut buf = vec![0u8; BUF_LEN];
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let n = match fuse_dev::read_request(dev, &mut buf) {
            Ok(n) => n,
            Err(e) if retry(e) => continue,
            Err(e) if e.0 == libc::ENODEV => return Ok(()),
            Err(e) => return Err(format!("reading /dev/fuse: {e}")),
        };
        let req = &buf[..n];
        let Ok(h) = InHeader::parse(req) else {
            log::warn!("request shorter than its header ({n} bytes): dropped");
            continue;
        };
        // Extensions (security context, groups) come last; none is negotiated, but a body
        // never includes them.
        let end = (h.len as usize)
            .min(n)
            .saturating_sub(h.total_extlen as usize * 8);
        let body = &req[abi::IN_HEADER_LEN.min(end)..end];
        if let Some(err) = conn.handle(&h, Body::one(body), &mut out) {
            reply(dev, h.unique, err, &out);
        }
        if rings_up.load(Ordering::Acquire) {
            if reader == Reader::Clone {
                return Ok(());
            }
            if matches!(h.opcode, abi::FORGET | abi::BATCH_FORGET) {
                std::thread::sleep(FORGET_PAUSE);
            }
        }
    }
}

/// A connection whose readers and io_uring queues are started: the transport it uses is
/// settled (`unionrs stats` says which), and the session's own fd is served by `serve`.
pub struct Started {
    conn: Arc<Conn>,
    clones: Vec<std::thread::JoinHandle<Result<(), String>>>,
    rings_up: Arc<AtomicBool>,
    read_ahead: Vec<std::thread::JoinHandle<()>>,
    closer: std::thread::JoinHandle<()>,
}

/// Threads reading directories ahead of a cold walk (union::readahead): several, so that
/// their disk reads overlap; they mostly wait for the disk.
const READ_AHEAD_WORKERS: usize = 4;

/// Starts `threads - 1` readers on cloned /dev/fuse fds and, when the kernel offers it, the
/// io_uring queues; returns once every queue entry was registered or refused.
pub fn start(conn: Arc<Conn>, threads: usize) -> Result<Started, String> {
    let mut clones = Vec::new();
    let rings_up = Arc::new(AtomicBool::new(false));
    for i in 1..threads.max(1) {
        let fd =
            fuse_dev::clone_dev(conn.dev.as_fd()).map_err(|e| format!("cloning /dev/fuse: {e}"))?;
        let c = conn.clone();
        let up = rings_up.clone();
        let t = std::thread::Builder::new()
            .name(format!("unionrs-dev{i}"))
            .spawn(move || serve_fd(&c, fd.as_fd(), Reader::Clone, &up))
            .map_err(|e| e.to_string())?;
        clones.push(t);
    }
    if conn.flags() & abi::FUSE_OVER_IO_URING != 0 {
        let n = super::uring::start(&conn);
        let want = crate::sys::uring::possible_cpus() * super::uring::DEPTH;
        if n == want {
            *conn.fs.transport.lock() = "uring";
            rings_up.store(true, Ordering::Release);
        }
        log::info!("FUSE over io_uring: {n} of {want} ring entries registered");
    }
    let c = conn.clone();
    let closer = std::thread::Builder::new()
        .name("unionrs-close".into())
        .spawn(move || c.fs.closer.serve())
        .map_err(|e| e.to_string())?;
    let mut read_ahead = Vec::new();
    for i in 0..READ_AHEAD_WORKERS {
        let c = conn.clone();
        let t = std::thread::Builder::new()
            .name(format!("unionrs-ra{i}"))
            .spawn(move || c.fs.union.serve_read_ahead())
            .map_err(|e| e.to_string())?;
        read_ahead.push(t);
    }
    Ok(Started {
        conn,
        clones,
        rings_up,
        read_ahead,
        closer,
    })
}

impl Started {
    /// Serves the session's fd until unmounted, then waits for the other readers.
    pub fn serve(self) -> Result<(), String> {
        let main = serve_fd(
            &self.conn,
            self.conn.dev.as_fd(),
            Reader::Main,
            &self.rings_up,
        );
        for t in self.clones {
            match t.join() {
                Ok(Err(e)) => log::warn!("{e}"),
                Err(_) => log::error!("a /dev/fuse thread panicked"),
                Ok(Ok(())) => {}
            }
        }
        self.conn.fs.closer.stop();
        if self.closer.join().is_err() {
            log::error!("the closing thread panicked");
        }
        self.conn.fs.union.stop_read_ahead();
        for t in self.read_ahead {
            if t.join().is_err() {
                log::error!("a read-ahead thread panicked");
            }
        }
        main
    }
}
