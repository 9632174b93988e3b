//! The io_uring transport of unionrs's own protocol layer (kernel 6.14+, FUSE_OVER_IO_URING,
//! Documentation/filesystems/fuse-io-uring.rst). The kernel keeps one queue per possible
//! CPU and hands a request made on CPU N to queue N, so a request and its answer need no
//! cross-CPU wake-up, and one io_uring_enter both answers a request and fetches the next
//! (COMMIT_AND_FETCH).
//!
//! Each queue gets `DEPTH` ring entries, each served by its own thread pinned to the
//! queue's CPU with a one-entry io_uring of its own: a long operation (a copy-up of a large
//! file, an fsync) holds only its entry, and the queue's other entries go on serving. Each
//! entry is a header buffer (struct fuse_uring_req_header) and a payload buffer of
//! max_write bytes. FORGET, INTERRUPT and notifications stay on /dev/fuse (`devloop.rs`),
//! as do requests made before every queue is registered.
//!
//! With `queue_sched=idle` (the default) an entry's thread waits at SCHED_IDLE. When the
//! answer wakes the caller, the scheduler looks for a CPU for it: a CPU running only
//! SCHED_IDLE tasks counts as free, so the caller stays on the queue's CPU, and its next
//! request comes back to this queue. At SCHED_OTHER the queue's CPU is busy at that moment
//! and the caller is moved to an idle CPU: a wake-up of a halted vCPU per request (on this
//! project's VM: 10 us per GETXATTR round trip with the caller staying, 19-27 us moving;
//! `ls -laR usr` 0.12 s against 0.23-0.29 s; docs/architecture.md). Requests that may copy
//! file data (`may_copy_data`) are answered at SCHED_OTHER, so a copy-up under CPU
//! contention is not left the idle class's share of the CPU.

use super::abi::{self, Body, InHeader};
use super::conn::{Conn, MAX_WRITE};
use crate::sys::uring::{self, KernelBuf, Ring};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Ring entries (threads) per queue.
pub const DEPTH: usize = 2;

const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;

/// struct fuse_uring_req_header: in_out[128], op_in[128], fuse_uring_ent_in_out (32).
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;
const HEADER_LEN: usize = 288;

/// Size of the per-opcode header (the kernel's in_args[0]) that arrives in `op_in`; the
/// rest of the request is in the payload buffer.
fn op_header_len(opcode: u32, setxattr_ext: bool) -> usize {
    match opcode {
        abi::GETATTR | abi::MKNOD | abi::FSYNC | abi::FSYNCDIR | abi::CREATE | abi::TMPFILE => 16,
        abi::RENAME2 => 16,
        abi::SETATTR => 88,
        abi::MKDIR
        | abi::RENAME
        | abi::LINK
        | abi::OPEN
        | abi::OPENDIR
        | abi::GETXATTR
        | abi::LISTXATTR
        | abi::ACCESS
        | abi::FORGET
        | abi::INTERRUPT
        | abi::BATCH_FORGET => 8,
        abi::SETXATTR if setxattr_ext => 16,
        abi::SETXATTR => 8,
        abi::READ | abi::WRITE | abi::READDIR | abi::READDIRPLUS => 40,
        abi::RELEASE | abi::RELEASEDIR | abi::FLUSH | abi::LSEEK => 24,
        abi::IOCTL | abi::FALLOCATE => 32,
        _ => 0,
    }
}

/// struct fuse_uring_cmd_req in the SQE's command area.
fn cmd_req(qid: u16, commit_id: u64) -> [u8; 80] {
    let mut c = [0u8; 80];
    c[8..16].copy_from_slice(&commit_id.to_le_bytes());
    c[16..18].copy_from_slice(&qid.to_le_bytes());
    c
}

fn le_u64(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    u64::from_le_bytes(v)
}

/// Starts `DEPTH` threads per possible CPU; returns once each has tried to register its
/// entry, with the number registered (0: the kernel refused; /dev/fuse serves everything).
pub fn start(conn: &Arc<Conn>) -> usize {
    let cpus = uring::possible_cpus();
    let registered = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut started = 0;
    for cpu in 0..cpus {
        for d in 0..DEPTH {
            let (c, r, tx) = (conn.clone(), registered.clone(), tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("unionrs-q{cpu}.{d}"))
                .spawn(move || {
                    if let Err(e) = serve_entry(&c, cpu, &r, tx) {
                        log::warn!("io_uring queue {cpu}: {e}");
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => log::warn!("io_uring queue {cpu}: cannot start a thread: {e}"),
            }
        }
    }
    drop(tx);
    for _ in 0..started {
        if rx.recv().is_err() {
            break;
        }
    }
    registered.load(Ordering::Relaxed)
}

/// One ring entry of queue `qid`: register it, then answer and fetch until the connection
/// ends. `ready` is signalled once the registration was accepted or refused.
fn serve_entry(
    conn: &Conn,
    qid: usize,
    registered: &AtomicUsize,
    ready: std::sync::mpsc::Sender<()>,
) -> Result<(), String> {
    let mut ready = Some(ready);
    let mut result = || {
        if let Err(e) = uring::pin_to_cpu(qid) {
            log::info!("queue {qid}: not pinned to its CPU ({e})");
        }
        let idle = conn.transport.idle_queues && uring::set_idle_policy(true).is_ok();
        let mut ring = Ring::new(2, true).map_err(|e| format!("io_uring_setup: {e}"))?;
        let mut header = KernelBuf::new(4096).map_err(|e| e.to_string())?;
        let mut payload = KernelBuf::new(MAX_WRITE as usize).map_err(|e| e.to_string())?;
        let iov = [header.iovec(), payload.iovec()];
        let mut iov0 = iov[0];
        iov0.iov_len = HEADER_LEN;
        let iov = [iov0, iov[1]];
        let dev = conn.dev.as_fd();
        let q = qid as u16;
        ring.push_uring_cmd(
            dev,
            FUSE_IO_URING_CMD_REGISTER,
            uring::iovecs_addr(&iov),
            2,
            &cmd_req(q, 0),
            0,
        );
        ring.submit_and_wait(0)
            .map_err(|e| format!("registering: {e}"))?;
        // A refused registration completes at once; an accepted one only with a request.
        let mut first = ring.pop();
        if let Some((_, res)) = first
            && res < 0
        {
            return Err(format!(
                "registration refused: {}",
                std::io::Error::from_raw_os_error(-res)
            ));
        }
        registered.fetch_add(1, Ordering::Relaxed);
        ready.take();
        let mut out = Vec::with_capacity(64 * 1024);
        let setxattr_ext = conn.flags() & abi::FUSE_SETXATTR_EXT != 0;
        loop {
            let res = match first.take() {
                Some((_, res)) => res,
                None => loop {
                    if let Some((_, res)) = ring.pop() {
                        break res;
                    }
                    // Submits a queued COMMIT_AND_FETCH too; after EINTR it stays queued
                    // (`to_submit`) and goes with the next call.
                    match ring.submit_and_wait(1) {
                        Ok(()) => {}
                        Err(e) if e.0 == libc::EINTR => {}
                        Err(e) => return Err(format!("io_uring_enter: {e}")),
                    }
                },
            };
            if res < 0 {
                // ENOTCONN: the connection ended (unmount).
                if res == -libc::ENOTCONN || res == -libc::ECONNABORTED {
                    return Ok(());
                }
                return Err(format!(
                    "fetch failed: {}",
                    std::io::Error::from_raw_os_error(-res)
                ));
            }
            let commit_id = answer(
                conn,
                &mut header,
                &mut payload,
                setxattr_ext,
                idle,
                &mut out,
            );
            ring.push_uring_cmd(
                dev,
                FUSE_IO_URING_CMD_COMMIT_AND_FETCH,
                0,
                0,
                &cmd_req(q, commit_id),
                0,
            );
            // Submitted by the wait at the top of the loop: one io_uring_enter commits this
            // answer, fetches the next request and sleeps until it comes (a separate submit
            // cost a second system call per request).
        }
    };
    let r = result();
    drop(ready);
    r
}

/// Whether request `h` (its per-opcode header `op_in`) may copy file data: a copy-up of a
/// file with no full upper copy yet, or a read or write the daemon serves itself
/// (passthrough off). Such requests are served at SCHED_OTHER. Creations copy up parent
/// directories only (metadata), and a wait on the disk (fsync) needs no CPU share.
fn may_copy_data(conn: &Conn, h: &InHeader, op_in: &[u8]) -> bool {
    let field = |at: usize| op_in.get(at..at + 8).map_or(0, le_u64);
    let copies_up = |nodeid: u64| !conn.fs.union.has_full_upper_copy(nodeid);
    match h.opcode {
        // struct fuse_open_in starts with the open flags.
        abi::OPEN => {
            let flags = field(0) as u32 as i32;
            let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
            writes && copies_up(h.nodeid)
        }
        abi::SETATTR | abi::SETXATTR | abi::REMOVEXATTR | abi::FALLOCATE | abi::IOCTL => {
            copies_up(h.nodeid)
        }
        // struct fuse_link_in: the node linked to.
        abi::LINK => copies_up(field(0)),
        // The renamed node is only known by name here.
        abi::RENAME | abi::RENAME2 | abi::READ | abi::WRITE => true,
        _ => false,
    }
}

/// Serves the request in the entry's buffers and leaves the reply there; returns the commit
/// id to answer with. `idle`: the thread waits at SCHED_IDLE and serves a request that may
/// copy data at SCHED_OTHER.
fn answer(
    conn: &Conn,
    header: &mut KernelBuf,
    payload: &mut KernelBuf,
    setxattr_ext: bool,
    idle: bool,
    out: &mut Vec<u8>,
) -> u64 {
    let hb = header.as_slice();
    let ent = &hb[ENT_IN_OUT..ENT_IN_OUT + 32];
    let commit_id = le_u64(&ent[8..16]);
    let payload_sz = u32::from_le_bytes([ent[16], ent[17], ent[18], ent[19]]) as usize;
    let (error, body_len) = match InHeader::parse(&hb[..abi::IN_HEADER_LEN]) {
        Ok(h) => {
            let op_len = op_header_len(h.opcode, setxattr_ext);
            let op_in = &hb[OP_IN..OP_IN + op_len];
            let data = &payload.as_slice()[..payload_sz.min(MAX_WRITE as usize)];
            let raise = idle && may_copy_data(conn, &h, op_in);
            if raise {
                let _ = uring::set_idle_policy(false);
            }
            let handled = conn.handle(&h, Body::two(op_in, data), out);
            if raise {
                let _ = uring::set_idle_policy(true);
            }
            match handled {
                // No reply is due (FORGET, INTERRUPT: never sent here), but an entry must
                // be committed to be fetched again.
                None => (-libc::ENOSYS, 0),
                Some(0) if out.len() > payload.as_slice().len() => (-libc::EIO, 0),
                Some(0) => {
                    payload.as_mut_slice()[..out.len()].copy_from_slice(out);
                    (0, out.len())
                }
                Some(err) => (err, 0),
            }
        }
        Err(_) => (-libc::EIO, 0),
    };
    let oh = abi::out_header(commit_id, error, body_len);
    let hb = header.as_mut_slice();
    hb[..abi::OUT_HEADER_LEN].copy_from_slice(&oh);
    hb[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(body_len as u32).to_le_bytes());
    commit_id
}
