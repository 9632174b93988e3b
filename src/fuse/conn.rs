//! unionrs's own FUSE protocol layer, transport-neutral: the INIT negotiation, and one
//! `handle` that decodes a request, calls the operation of `ops.rs` and encodes the reply
//! body. The /dev/fuse loop (`devloop.rs`) and the io_uring queues (`uring.rs`) only move
//! bytes.
//!
//! Nothing lives only in the INIT exchange but the negotiated flags, which a restarted
//! daemon can negotiate again: node ids are the union's, so a later step can resume a
//! connection (FUSE_NOTIFY_RESEND).

use super::abi::{self, Body, InHeader, Malformed, Out, Request, SetTime};
use super::abi::{decode_dev, encode_dev};
use super::ops::{EntryOut, FOPEN_PASSTHROUGH, Opened, XattrOut};
use super::state::UnionFs;
use crate::sys::fuse_dev::Backing;
use crate::union::attr::SetAttr;
use crate::union::{Ctx, Errno, Stat, TimeSpec};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Largest write (and read) the kernel may send: 256 pages, the kernel's default cap on
/// max_pages (fuse_max_pages_limit), so asking for more changes nothing but the io_uring
/// payload buffers' size, which must hold max(max_write, max_pages pages).
pub const MAX_WRITE: u32 = 1 << 20;
pub const MAX_PAGES: u16 = (MAX_WRITE / 4096) as u16;

/// What INIT settled.
#[derive(Clone, Copy, Debug)]
pub struct Negotiated {
    pub minor: u32,
    pub flags: u64,
}

/// How requests reach the daemon (mount options `io_uring=` and `queue_sched=`).
#[derive(Clone, Copy, Debug)]
pub struct Transport {
    /// Ask for FUSE_OVER_IO_URING when the kernel offers it.
    pub uring: bool,
    /// io_uring queue threads wait and answer at SCHED_IDLE (why: `uring.rs`).
    pub idle_queues: bool,
}

pub struct Conn {
    pub fs: UnionFs<Backing>,
    /// The session's /dev/fuse fd: backing files are registered on it, notifications go
    /// through it.
    pub dev: Arc<OwnedFd>,
    pub transport: Transport,
    setxattr_ext: AtomicBool,
    flags: AtomicU64,
}

fn time(t: SetTime) -> TimeSpec {
    match t {
        SetTime::Now => TimeSpec::Now,
        SetTime::At(s, ns) => TimeSpec::At(s, ns as i64),
    }
}

/// struct fuse_attr; `st.st_ino` is the node id, `shown` the number users see.
fn attr(o: &mut Out<'_>, st: &Stat, shown: u64) {
    o.u64(shown)
        .u64(st.st_size as u64)
        .u64(st.st_blocks as u64)
        .u64(st.st_atime as u64)
        .u64(st.st_mtime as u64)
        .u64(st.st_ctime as u64)
        .u32(st.st_atime_nsec as u32)
        .u32(st.st_mtime_nsec as u32)
        .u32(st.st_ctime_nsec as u32)
        .u32(st.st_mode)
        .u32(st.st_nlink as u32)
        .u32(st.st_uid)
        .u32(st.st_gid)
        .u32(encode_dev(st.st_rdev))
        .u32(st.st_blksize as u32)
        .u32(0);
}

/// struct fuse_entry_out
fn entry(o: &mut Out<'_>, e: &EntryOut, fs: &UnionFs<Backing>) {
    let (s, ns) = (e.ttl.as_secs(), e.ttl.subsec_nanos());
    let (attr_s, attr_ns) = (e.attr_ttl.as_secs(), e.attr_ttl.subsec_nanos());
    o.u64(e.ino())
        .u64(e.generation)
        .u64(s)
        .u64(attr_s)
        .u32(ns)
        .u32(attr_ns);
    attr(o, &e.st, fs.union.shown_ino(e.ino()));
}

/// struct fuse_attr_out, valid for `ttl`.
fn attr_out(o: &mut Out<'_>, st: &Stat, ttl: Duration, fs: &UnionFs<Backing>) {
    o.u64(ttl.as_secs()).u32(ttl.subsec_nanos()).u32(0);
    attr(o, st, fs.union.shown_ino(st.st_ino));
}

/// struct fuse_open_out
fn open_out(o: &mut Out<'_>, op: &Opened<Backing>) {
    let (flags, id) = match &op.backing {
        Some(b) => (op.flags | FOPEN_PASSTHROUGH, b.id() as i32),
        None => (op.flags & !FOPEN_PASSTHROUGH, 0),
    };
    o.u64(op.fh).u32(flags).u32(id as u32);
}

/// struct fuse_dirent (+ name, padded to 8 bytes); false when it does not fit in `limit`.
fn dirent(o: &mut Out<'_>, limit: usize, ino: u64, off: u64, kind: u32, name: &[u8]) -> bool {
    let len = (24 + name.len()).next_multiple_of(8);
    if o.0.len() + len > limit {
        return false;
    }
    o.u64(ino).u64(off).u32(name.len() as u32).u32(kind);
    o.bytes(name).zeros(len - 24 - name.len());
    true
}

fn xattr(o: &mut Out<'_>, x: XattrOut) {
    match x {
        XattrOut::Size(n) => {
            o.u32(n).u32(0);
        }
        XattrOut::Data(v) => {
            o.bytes(&v);
        }
    }
}

impl Conn {
    pub fn new(fs: UnionFs<Backing>, dev: Arc<OwnedFd>, transport: Transport) -> Conn {
        Conn {
            fs,
            dev,
            transport,
            setxattr_ext: AtomicBool::new(false),
            flags: AtomicU64::new(0),
        }
    }

    /// The flags INIT settled (0 before INIT).
    pub fn flags(&self) -> u64 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Answers INIT: the same capabilities fuser 0.18 negotiated for this adapter (async
    /// reads, big writes, max_pages, and the adapter's list), plus FUSE_OVER_IO_URING when
    /// the kernel offers it and it is wanted. Writes the fuse_init_out body into `out`.
    pub fn init(
        &self,
        major: u32,
        minor: u32,
        max_readahead: u32,
        offered: u64,
        out: &mut Vec<u8>,
    ) -> Result<Negotiated, Errno> {
        if major != abi::FUSE_KERNEL_VERSION || minor < 36 {
            log::error!("unsupported FUSE protocol {major}.{minor}");
            return Err(Errno(libc::EPROTO));
        }
        let mut want = abi::FUSE_ASYNC_READ
            | abi::FUSE_BIG_WRITES
            | abi::FUSE_MAX_PAGES
            | abi::FUSE_INIT_EXT
            | abi::FUSE_ATOMIC_O_TRUNC
            | abi::FUSE_PARALLEL_DIROPS
            | abi::FUSE_CACHE_SYMLINKS
            // No NFS export, as kernel overlayfs with its default nfs_export=off:
            // name_to_handle_at answers EOPNOTSUPP (fanotify's AT_HANDLE_FID handles still
            // work). A handle the kernel would hand out (node id + generation) could not be
            // opened once the kernel forgot the node: node ids are inode numbers, which
            // nothing maps back to a path (docs/architecture.md, section 9).
            | abi::FUSE_NO_EXPORT_SUPPORT
            | abi::FUSE_DONT_MASK
            | abi::FUSE_DIRECT_IO_ALLOW_MMAP
            | abi::FUSE_DO_READDIRPLUS
            | abi::FUSE_READDIRPLUS_AUTO;
        if self.fs.acl {
            want |= abi::FUSE_POSIX_ACL;
        }
        if self.fs.passthrough.enabled() {
            want |= abi::FUSE_PASSTHROUGH;
        }
        if self.transport.uring {
            want |= abi::FUSE_OVER_IO_URING;
        }
        let flags = want & offered;
        let passthrough = flags & abi::FUSE_PASSTHROUGH != 0;
        if !passthrough {
            self.fs.passthrough.disable();
        }
        // Backing files must be read-write: open upper files so from the start.
        self.fs.union.open_upper_read_write(passthrough);
        log::info!(
            "FUSE passthrough: {}",
            if passthrough { "on" } else { "off" }
        );
        self.setxattr_ext
            .store(flags & abi::FUSE_SETXATTR_EXT != 0, Ordering::Relaxed);
        self.flags.store(flags, Ordering::Relaxed);
        let minor = minor.min(abi::FUSE_KERNEL_MINOR_VERSION);
        let mut o = Out(out);
        o.u32(abi::FUSE_KERNEL_VERSION)
            .u32(minor)
            .u32(max_readahead)
            .u32(flags as u32)
            .u16(16) // max_background, as fuser
            .u16(12) // congestion_threshold: 3/4 of it, as fuser
            .u32(MAX_WRITE)
            .u32(1) // time_gran: nanoseconds
            .u16(MAX_PAGES)
            .u16(0) // map_alignment
            .u32((flags >> 32) as u32)
            // Depth 1: backing files must be on a plain filesystem, and this mount can
            // still be a layer of kernel overlayfs.
            .u32(if passthrough { 1 } else { 0 })
            .zeros(24); // request_timeout, unused
        Ok(Negotiated { minor, flags })
    }

    fn ctx(h: &InHeader, umask: u32) -> Ctx {
        Ctx {
            uid: h.uid,
            gid: h.gid,
            pid: h.pid,
            umask,
        }
    }

    /// Serves one request (not INIT). Returns None when the request takes no reply (FORGET,
    /// BATCH_FORGET, INTERRUPT), else the error to put in the out header (0 or -errno); on 0
    /// the reply body is in `out`.
    pub fn handle(&self, h: &InHeader, body: Body<'_>, out: &mut Vec<u8>) -> Option<i32> {
        out.clear();
        let req = match abi::decode(h.opcode, body, self.setxattr_ext.load(Ordering::Relaxed)) {
            Ok(r) => r,
            Err(Malformed) => {
                log::warn!("malformed request (opcode {}): EINVAL", h.opcode);
                return match h.opcode {
                    abi::FORGET | abi::BATCH_FORGET | abi::INTERRUPT => None,
                    _ => Some(-libc::EINVAL),
                };
            }
        };
        // A bug in one operation answers EIO and leaves the daemon (and, over io_uring, the
        // ring entry, which would otherwise never be committed again) serving.
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.serve(h, req, &mut Out(out))
        }));
        let r = match served {
            Ok(r) => r?,
            Err(_) => {
                log::error!("opcode {} panicked: answering EIO", h.opcode);
                Err(Errno::EIO)
            }
        };
        Some(match r {
            Ok(()) => 0,
            Err(e) => {
                out.clear();
                -e.0
            }
        })
    }

    fn serve(&self, h: &InHeader, req: Request<'_>, o: &mut Out<'_>) -> Option<Result<(), Errno>> {
        use Request as R;
        let fs = &self.fs;
        let ino = h.nodeid;
        let make = |fd: &OwnedFd| Backing::open(&self.dev, fd.as_fd());
        let r = match req {
            R::Init { .. } => Err(Errno::EINVAL),
            R::Destroy => Ok(()),
            R::Interrupt { .. } => return None,
            R::Forget { nlookup } => {
                fs.op_forget(std::iter::once((ino, nlookup)), false);
                return None;
            }
            R::BatchForget { raw } => {
                fs.op_forget(abi::forgets(raw), true);
                return None;
            }
            R::Lookup { name } => fs.op_lookup(ino, name).map(|e| entry(o, &e, fs)),
            R::Getattr { fh } => fs
                .op_getattr(ino, fh)
                .map(|st| attr_out(o, &st, fs.attr_ttl(ino), fs)),
            R::Setattr(a) => {
                let set = SetAttr {
                    mode: a.mode,
                    uid: a.uid,
                    gid: a.gid,
                    size: a.size,
                    atime: a.atime.map(time),
                    mtime: a.mtime.map(time),
                };
                fs.op_setattr(&Self::ctx(h, 0), ino, a.fh, set)
                    .map(|st| attr_out(o, &st, fs.attr_ttl(ino), fs))
            }
            R::Readlink => fs.op_readlink(ino).map(|t| {
                o.bytes(&t);
            }),
            R::Symlink { name, target } => fs
                .op_symlink(&Self::ctx(h, 0), ino, name, target)
                .map(|e| entry(o, &e, fs)),
            R::Mknod {
                mode,
                rdev,
                umask,
                name,
            } => fs
                .op_mknod(&Self::ctx(h, umask), ino, name, mode, decode_dev(rdev))
                .map(|e| entry(o, &e, fs)),
            R::Mkdir { mode, umask, name } => fs
                .op_mkdir(&Self::ctx(h, umask), ino, name, mode)
                .map(|e| entry(o, &e, fs)),
            R::Unlink { name } => fs.op_unlink(ino, name),
            R::Rmdir { name } => fs.op_rmdir(ino, name),
            R::Rename {
                newdir,
                flags,
                name,
                newname,
            } => fs.op_rename(ino, name, newdir, newname, flags),
            R::Link { oldnodeid, newname } => fs
                .op_link(oldnodeid, ino, newname)
                .map(|e| entry(o, &e, fs)),
            R::Open { flags } => fs.op_open(ino, flags as i32, make).map(|op| {
                // A read-write open may map the file shared: drop the attributes the kernel cached
                // before (see `UnionFs::attr_ttl`).
                if flags as i32 & libc::O_ACCMODE == libc::O_RDWR && op.backing.is_some() {
                    let _ = self.inval_attrs(ino);
                }
                open_out(o, &op)
            }),
            R::Read { fh, offset, size } => fs.op_read(fh, offset, size).map(|d| {
                o.bytes(&d);
            }),
            R::Write { fh, offset, data } => fs.op_write(fh, offset, data).map(|n| {
                o.u32(n).u32(0);
            }),
            R::Statfs => fs.op_statfs().map(|s| {
                o.u64(s.f_blocks)
                    .u64(s.f_bfree)
                    .u64(s.f_bavail)
                    .u64(s.f_files)
                    .u64(s.f_ffree)
                    .u32(s.f_bsize as u32)
                    .u32(s.f_namemax as u32)
                    .u32(s.f_frsize as u32)
                    .zeros(28);
            }),
            R::Release { fh } => {
                fs.op_release(fh);
                Ok(())
            }
            R::Fsync { fh, datasync } => fs.op_fsync(fh, datasync),
            R::Setxattr { flags, name, value } => fs.op_setxattr(ino, name, value, flags as i32),
            R::Getxattr { size, name } => fs.op_getxattr(ino, name, size).map(|x| xattr(o, x)),
            R::Listxattr { size } => fs.op_listxattr(ino, size).map(|x| xattr(o, x)),
            R::Removexattr { name } => fs.op_removexattr(ino, name),
            R::Flush => fs.op_flush(),
            R::Opendir => fs.op_opendir(),
            R::Releasedir => {
                fs.op_releasedir();
                Ok(())
            }
            R::Fsyncdir => fs.op_fsyncdir(ino),
            R::Readdir { offset, size } => {
                let limit = size as usize;
                fs.op_readdir(ino, offset, |ino, off, kind, name| {
                    !dirent(o, limit, ino, off, kind >> 12, name)
                })
            }
            R::Readdirplus { offset, size } => {
                let limit = size as usize;
                fs.op_readdirplus(ino, offset, |off, name, e| {
                    let need = 128 + (24 + name.len()).next_multiple_of(8);
                    if o.0.len() + need > limit {
                        return true;
                    }
                    entry(o, e, fs);
                    // d_ino: the shown number, as the entry's attributes carry it.
                    dirent(
                        o,
                        limit,
                        fs.union.shown_ino(e.ino()),
                        off,
                        (e.st.st_mode & libc::S_IFMT) >> 12,
                        name,
                    );
                    false
                })
            }
            R::Access { mask } => fs.op_access(&Self::ctx(h, 0), ino, mask as i32),
            R::Create {
                flags,
                mode,
                umask,
                name,
            } => fs
                .op_create(&Self::ctx(h, umask), ino, name, mode, flags as i32, make)
                .map(|(e, op)| {
                    entry(o, &e, fs);
                    open_out(o, &op);
                }),
            R::Tmpfile { flags, mode, umask } => fs
                .op_tmpfile(&Self::ctx(h, umask), ino, mode, flags as i32, make)
                .map(|(e, op)| {
                    entry(o, &e, fs);
                    open_out(o, &op);
                }),
            R::Ioctl {
                cmd,
                out_size,
                data,
            } => fs.op_ioctl(ino, cmd, data).map(|out| {
                // struct fuse_ioctl_out (result 0, no retry), then what fits of the data.
                o.zeros(16);
                o.bytes(&out[..out.len().min(out_size as usize)]);
            }),
            R::Fallocate {
                fh,
                offset,
                length,
                mode,
            } => fs.op_fallocate(fh, offset, length, mode as i32),
            R::Lseek { fh, offset, whence } => {
                fs.op_lseek(fh, offset as i64, whence as i32).map(|off| {
                    o.u64(off as u64);
                })
            }
            R::Unsupported(op) => {
                log::debug!("opcode {op}: ENOSYS");
                Err(Errno::ENOSYS)
            }
        };
        Some(r)
    }

    /// FUSE_NOTIFY_INVAL_INODE for the attributes of an inode only (offset -1: no page is
    /// dropped), over /dev/fuse.
    pub fn inval_attrs(&self, ino: u64) -> Result<(), Errno> {
        let mut body = Vec::with_capacity(24);
        Out(&mut body).u64(ino).u64(-1i64 as u64).u64(0);
        let h = abi::out_header(0, abi::FUSE_NOTIFY_INVAL_INODE, body.len());
        crate::sys::fuse_dev::write_reply(self.dev.as_fd(), &[&h, &body]).map(|_| ())
    }

    /// FUSE_NOTIFY_INVAL_INODE for a whole inode (its cached pages and listing). Always over
    /// /dev/fuse: io_uring carries no notifications.
    pub fn inval_inode(&self, ino: u64) -> Result<(), Errno> {
        let mut body = Vec::with_capacity(24);
        Out(&mut body).u64(ino).u64(0).u64(0);
        let h = abi::out_header(0, abi::FUSE_NOTIFY_INVAL_INODE, body.len());
        crate::sys::fuse_dev::write_reply(self.dev.as_fd(), &[&h, &body]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::TTL;
    use super::*;
    use crate::union::{Union, UnionConfig};

    fn conn() -> (tempfile::TempDir, Conn) {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("l");
        std::fs::create_dir_all(lower.join("d")).unwrap();
        std::fs::write(lower.join("d/file"), b"12345").unwrap();
        let union = Union::new(&UnionConfig {
            lowers: vec![lower],
            acl: true,
            ..Default::default()
        })
        .unwrap();
        let fs = UnionFs::new(union, true, false);
        let dev = crate::sys::fs::open_path(c"/dev/null", libc::O_RDWR).unwrap();
        (
            dir,
            Conn::new(
                fs,
                Arc::new(dev),
                Transport {
                    uring: false,
                    idle_queues: false,
                },
            ),
        )
    }

    fn header(opcode: u32, nodeid: u64) -> InHeader {
        InHeader {
            len: 0,
            opcode,
            unique: 1,
            nodeid,
            uid: 0,
            gid: 0,
            pid: 1,
            total_extlen: 0,
        }
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn replies_are_encoded_as_the_kernel_reads_them() {
        let (_dir, c) = conn();
        let mut out = Vec::new();
        // INIT: fuse_init_out is 64 bytes; only offered flags come back.
        let offered = abi::FUSE_ASYNC_READ | abi::FUSE_DO_READDIRPLUS | abi::FUSE_OVER_IO_URING;
        let n = c.init(7, 44, 65536, offered, &mut out).unwrap();
        assert_eq!(out.len(), 64);
        assert_eq!(n.minor, abi::FUSE_KERNEL_MINOR_VERSION);
        assert_eq!(n.flags, abi::FUSE_ASYNC_READ | abi::FUSE_DO_READDIRPLUS);
        assert_eq!(u32_at(&out, 20), MAX_WRITE);
        // LOOKUP: fuse_entry_out (40 + 88-byte fuse_attr); node id and st_ino agree.
        let lookup = |name: &[u8], out: &mut Vec<u8>| {
            let body = [name, b"\0"].concat();
            c.handle(
                &header(abi::LOOKUP, abi::FUSE_ROOT_ID),
                Body::one(&body),
                out,
            )
        };
        assert_eq!(lookup(b"d", &mut out), Some(0));
        assert_eq!(out.len(), 128);
        let d = u64_at(&out, 0);
        assert_eq!(u64_at(&out, 40), d, "attr.ino");
        assert_eq!(u64_at(&out, 16), TTL.as_secs(), "entry_valid");
        assert_eq!(
            u32_at(&out, 40 + 60) & libc::S_IFMT,
            libc::S_IFDIR,
            "attr.mode"
        );
        // A missing name: a negative entry (node id 0), not ENOENT.
        assert_eq!(lookup(b"nope", &mut out), Some(0));
        assert_eq!(u64_at(&out, 0), 0);
        // GETATTR: fuse_attr_out (16 + 88).
        let getattr = [0u8; 16];
        assert_eq!(
            c.handle(&header(abi::GETATTR, d), Body::one(&getattr), &mut out),
            Some(0)
        );
        assert_eq!(out.len(), 104);
        assert_eq!(u64_at(&out, 16), d);
        // READDIR: fuse_dirent records, 8-byte aligned, within the size asked for.
        let mut rd = Vec::new();
        Out(&mut rd).u64(0).u64(0).u32(4096).zeros(20);
        assert_eq!(
            c.handle(&header(abi::READDIR, d), Body::one(&rd), &mut out),
            Some(0)
        );
        let mut names = Vec::new();
        let mut off = 0;
        while off < out.len() {
            let len = u32_at(&out, off + 16) as usize;
            names.push(out[off + 24..off + 24 + len].to_vec());
            off += (24 + len).next_multiple_of(8);
        }
        assert_eq!(off, out.len());
        assert!(names.contains(&b"file".to_vec()), "{names:?}");
        // STATFS: fuse_kstatfs is 80 bytes.
        assert_eq!(
            c.handle(&header(abi::STATFS, 1), Body::one(&[]), &mut out),
            Some(0)
        );
        assert_eq!(out.len(), 80);
        // Errors: malformed EINVAL, unknown opcode ENOSYS, FORGET no reply at all.
        assert_eq!(
            c.handle(&header(abi::GETATTR, d), Body::one(&[1, 2]), &mut out),
            Some(-libc::EINVAL)
        );
        assert_eq!(
            c.handle(&header(4095, d), Body::one(&[]), &mut out),
            Some(-libc::ENOSYS)
        );
        assert_eq!(
            c.handle(
                &header(abi::FORGET, d),
                Body::one(&1u64.to_le_bytes()),
                &mut out
            ),
            None
        );
        // Read-only mount (no upper): a change is refused with the union's errno.
        let mk = [&0o755u32.to_le_bytes()[..], &0u32.to_le_bytes(), b"x\0"].concat();
        assert_eq!(
            c.handle(&header(abi::MKDIR, 1), Body::one(&mk), &mut out),
            Some(-libc::EROFS)
        );
    }
}
