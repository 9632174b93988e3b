//! The fuser::Filesystem adapter: converts arguments, calls the union core, replies in one
//! place. No union semantics live here.

use super::control::{Op, Requests};
use super::passthrough::{BackingKind, Candidate, Decision, Passthrough};
use crate::union::attr::SetAttr;
use crate::union::layer::UPPER;
use crate::union::{Ctx, Errno as UErrno, Stat, TimeSpec, Union};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may trust entries, attributes and negative entries. Every change to
/// the union goes through this daemon (lowers are immutable while mounted, and the upper may
/// only be changed through the mount, as with kernel overlayfs), and the kernel updates its
/// caches from our replies, so nothing it caches goes stale behind its back.
const TTL: Duration = Duration::from_secs(86400);

pub struct UnionFs {
    pub union: Union,
    /// Requests by kind, for `unionrs stats`.
    pub requests: Arc<Requests>,
    /// Let the kernel enforce POSIX ACLs (off with `noacl`).
    pub acl: bool,
    pub passthrough: Passthrough,
}

impl UnionFs {
    pub fn new(union: Union, acl: bool, passthrough: bool) -> UnionFs {
        UnionFs {
            union,
            requests: Arc::new(Requests::default()),
            acl,
            passthrough: Passthrough::new(passthrough),
        }
    }

    /// The `key value` report of `unionrs stats` (everything it reads is shared and atomic).
    pub fn reporter(&self) -> impl Fn() -> String + Send + use<> {
        let (requests, source) = (self.requests.clone(), self.union.stats_source());
        let passthrough = self.passthrough.state();
        move || {
            use std::sync::atomic::Ordering::Relaxed;
            let mut out = format!(
                "passthrough {}\ncached_inodes {}\ncopy_ups {}\nmetacopy_ups {}\ncopy_up_bytes {}\ndisk_fsyncs {}\ninode_moves {}\nrss_bytes {}\n",
                if passthrough.load(Relaxed) {
                    "on"
                } else {
                    "off"
                },
                source.cached_nodes(),
                source.stats.copy_ups.load(Relaxed),
                source.stats.metacopy_ups.load(Relaxed),
                source.stats.bytes_copied.load(Relaxed),
                source.stats.disk_fsyncs.load(Relaxed),
                source.stats.inode_moves.load(Relaxed),
                crate::sys::proc::rss_bytes(),
            );
            requests.report(&mut out);
            out
        }
    }

    /// How to answer an open of `ino` with handle `fh`: passthrough when the kernel allows.
    fn open_mode(
        &self,
        ino: u64,
        fh: u64,
        flags: i32,
        make: impl FnOnce(&std::os::fd::OwnedFd) -> std::io::Result<fuser::BackingId>,
    ) -> Decision {
        let wants_write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let candidate = match self.union.backing_fd(fh) {
            // A lower file's backing is read-only: a later open that needs the upper copy
            // moves the object to a new inode (passthrough.rs, `Decision::Stale`).
            Ok((fd, layer, writable)) => Candidate {
                kind: BackingKind { layer, writable },
                make: Some(move || make(&fd)),
            },
            // Only an upper handle that cannot be reopened read-write fails: it may still
            // share a backing the inode has.
            Err(_) => Candidate {
                kind: BackingKind {
                    layer: UPPER,
                    writable: false,
                },
                make: None,
            },
        };
        self.passthrough.decide(ino, fh, wants_write, candidate)
    }

    /// Drops a handle whose open the kernel would refuse in every form (`Decision::Busy`).
    fn refuse_open(&self, fh: u64) -> Errno {
        self.passthrough.release(fh);
        self.union.release(fh);
        Errno::EBUSY
    }

    /// Drops a handle that needs the upper copy of an inode whose backing is the lower file
    /// (`Decision::Stale`): the object moves to a new node id, and ESTALE makes the kernel
    /// look the path up again (LOOKUP_REVAL) and open the new inode. An open that cannot be
    /// walked again (a /proc/PID/fd link) gets the ESTALE.
    fn stale_open(&self, ino: u64, fh: u64) -> Errno {
        self.passthrough.release(fh);
        self.union.release(fh);
        match self.union.move_to_new_id(ino) {
            Ok(()) => Errno::ESTALE,
            Err(e) => err(e),
        }
    }
}

fn err(e: UErrno) -> Errno {
    // EIO from the daemon is always a bug or a failing disk: leave a trace, so an EIO a user
    // sees can be told apart from one the kernel made (e.g. an open reply it refused).
    if e == UErrno::EIO {
        log::warn!("answering EIO");
    }
    Errno::from_i32(e.0)
}

fn ctx(req: &Request, umask: u32) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
        umask,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::new((-sec) as u64, 0) + Duration::from_nanos(nsec as u64)
    }
}

fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// The kernel's 32-bit device encoding (new_encode_dev) of a glibc dev_t.
fn encode_dev(dev: u64) -> u32 {
    let (major, minor) = (crate::sys::fs::major(dev), crate::sys::fs::minor(dev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn decode_dev(dev: u32) -> u64 {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    crate::sys::fs::makedev(major, minor)
}

pub fn to_attr(st: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(st.st_ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: encode_dev(st.st_rdev),
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

fn timespec(t: Option<TimeOrNow>) -> Option<TimeSpec> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSpec::Now,
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::At(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                let (mut s, mut ns) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i64));
                if ns < 0 {
                    s -= 1;
                    ns += 1_000_000_000;
                }
                TimeSpec::At(s, ns)
            }
        },
    })
}

fn zeroed_stat() -> Stat {
    crate::sys::fs::empty_stat()
}

fn reply_entry(u: &Union, reply: ReplyEntry, r: Result<Stat, UErrno>) {
    match r {
        Ok(st) => reply.entry(&TTL, &to_attr(&st), Generation(u.generation(st.st_ino))),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), UErrno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, UErrno>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(err(e)),
    }
}

impl Filesystem for UnionFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut want = InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_EXPORT_SUPPORT
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO;
        if self.acl {
            want |= InitFlags::FUSE_POSIX_ACL;
        }
        for flag in want.iter() {
            let _ = config.add_capabilities(flag);
        }
        // Depth 1: backing files must be on a plain filesystem, and this mount can still be
        // a layer of kernel overlayfs.
        let passthrough = self.passthrough.enabled()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        if !passthrough {
            self.passthrough.disable();
        }
        // Backing files must be read-write: open upper files so from the start.
        self.union.open_upper_read_write(passthrough);
        log::info!(
            "FUSE passthrough: {}",
            if passthrough { "on" } else { "off" }
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.requests.count(Op::Lookup);
        match self.union.lookup(parent.0, name.as_bytes()) {
            // A negative entry (node id 0) lets the kernel remember the miss.
            Err(e) if e == UErrno::ENOENT => {
                let mut attr = to_attr(&zeroed_stat());
                attr.ino = INodeNo(0);
                reply.entry(&TTL, &attr, Generation(0))
            }
            r => reply_entry(&self.union, reply, r),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.requests.count(Op::Forget);
        self.union.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.requests.count(Op::Getattr);
        match self.union.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(st) => reply.attr(&TTL, &to_attr(&st)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.requests.count(Op::Setattr);
        let a = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: timespec(atime),
            mtime: timespec(mtime),
        };
        match self.union.setattr(&ctx(req, 0), ino.0, fh.map(|f| f.0), a) {
            Ok(st) => reply.attr(&TTL, &to_attr(&st)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.requests.count(Op::Readlink);
        match self.union.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.requests.count(Op::Mknod);
        let r = self.union.mknod(
            &ctx(req, umask),
            parent.0,
            name.as_bytes(),
            mode,
            decode_dev(rdev),
        );
        reply_entry(&self.union, reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.requests.count(Op::Mkdir);
        reply_entry(
            &self.union,
            reply,
            self.union
                .mkdir(&ctx(req, umask), parent.0, name.as_bytes(), mode),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.requests.count(Op::Unlink);
        reply_empty(reply, self.union.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.requests.count(Op::Rmdir);
        reply_empty(reply, self.union.rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.requests.count(Op::Symlink);
        let r = self.union.symlink(
            &ctx(req, 0),
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
        );
        reply_entry(&self.union, reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Op::Rename);
        let r = self.union.rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            flags.bits(),
        );
        reply_empty(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.requests.count(Op::Link);
        reply_entry(
            &self.union,
            reply,
            self.union.link(ino.0, newparent.0, newname.as_bytes()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.requests.count(Op::Open);
        let o = match self.union.open(ino.0, flags.0) {
            Ok(o) => o,
            Err(e) => return reply.error(err(e)),
        };
        let fh = FileHandle(o);
        // Page cache stays valid across opens: only this daemon changes file data.
        let keep = FopenFlags::FOPEN_KEEP_CACHE;
        match self.open_mode(ino.0, o, flags.0, |fd| reply.open_backing(fd)) {
            Decision::Passthrough(b) => reply.opened_passthrough(fh, FopenFlags::empty(), &b),
            Decision::DirectIo => reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO),
            Decision::Cached => reply.opened(fh, keep),
            Decision::Stale => reply.error(self.stale_open(ino.0, o)),
            Decision::Busy => reply.error(self.refuse_open(o)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.requests.count(Op::Read);
        match self.union.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.requests.count(Op::Write);
        match self.union.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Op::Other);
        // Nothing to do on close (data goes straight to the layer file and POSIX locks are
        // the kernel's): ENOSYS tells the kernel to stop sending FLUSH at all.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Op::Release);
        self.passthrough.release(fh.0);
        self.union.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Op::Fsync);
        reply_empty(reply, self.union.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.requests.count(Op::Opendir);
        // ENOSYS: from then on the kernel opens and closes directories without asking (two
        // round trips less per directory walked) and keeps their listings cached across
        // opens (FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE, its default without OPENDIR), starting
        // a cache again when it sees the directory changed. Listings are served per
        // directory, never older than its last change (union::readdir), and a change to a
        // directory that was listed drops the kernel's cache (session::drop_listings_on_change).
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.requests.count(Op::Readdir);
        let (entries, start) = match self.union.readdir_from(ino.0, offset) {
            Ok(r) => r,
            Err(e) => return reply.error(err(e)),
        };
        for e in &entries[start..] {
            if reply.add(
                INodeNo(e.ino),
                e.cookie,
                file_type(e.kind),
                OsStr::from_bytes(&e.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    /// Entries with their attributes: saves the kernel one lookup round trip per name. Each
    /// entry but `.` and `..` counts as a kernel lookup of that node.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.requests.count(Op::Readdirplus);
        let (entries, start) = match self.union.readdir_from(ino.0, offset) {
            Ok(r) => r,
            Err(e) => return reply.error(err(e)),
        };
        // One directory context for the whole batch: each entry then costs its own stat only.
        let scope = match self.union.lookup_scope(ino.0) {
            Ok(s) => s,
            Err(e) => return reply.error(err(e)),
        };
        for e in &entries[start..] {
            let name = OsStr::from_bytes(&e.name);
            let next = e.cookie;
            if e.name == b"." || e.name == b".." {
                let mut attr = to_attr(&zeroed_stat());
                attr.ino = INodeNo(e.ino);
                attr.kind = FileType::Directory;
                if reply.add(
                    INodeNo(e.ino),
                    next,
                    name,
                    &Duration::ZERO,
                    &attr,
                    Generation(0),
                ) {
                    break;
                }
                continue;
            }
            let st = match self.union.lookup_in(&scope, &e.name) {
                Ok(st) => st,
                // Gone since the listing was taken: leave it out.
                Err(_) => continue,
            };
            if reply.add(
                INodeNo(st.st_ino),
                next,
                name,
                &TTL,
                &to_attr(&st),
                Generation(self.union.generation(st.st_ino)),
            ) {
                // Did not fit: the kernel will ask again, so this lookup does not count.
                self.union.forget(st.st_ino, 1);
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Op::Other);
        reply_empty(reply, self.union.fsyncdir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.requests.count(Op::Statfs);
        match self.union.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Op::Setxattr);
        reply_empty(
            reply,
            self.union.setxattr(ino.0, name.as_bytes(), value, flags),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.requests.count(Op::Getxattr);
        reply_xattr(reply, size, self.union.getxattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.requests.count(Op::Listxattr);
        reply_xattr(reply, size, self.union.listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.requests.count(Op::Removexattr);
        reply_empty(reply, self.union.removexattr(ino.0, name.as_bytes()));
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.requests.count(Op::Access);
        reply_empty(reply, self.union.access(&ctx(req, 0), ino.0, mask.bits()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.requests.count(Op::Create);
        match self
            .union
            .create(&ctx(req, umask), parent.0, name.as_bytes(), mode, flags)
        {
            Ok((st, fh)) => {
                let attr = to_attr(&st);
                let (g, h) = (Generation(self.union.generation(st.st_ino)), FileHandle(fh));
                match self.open_mode(st.st_ino, fh, flags, |fd| reply.open_backing(fd)) {
                    Decision::Passthrough(b) => {
                        reply.created_passthrough(&TTL, &attr, g, h, FopenFlags::empty(), &b)
                    }
                    Decision::DirectIo => {
                        reply.created(&TTL, &attr, g, h, FopenFlags::FOPEN_DIRECT_IO)
                    }
                    Decision::Cached => reply.created(&TTL, &attr, g, h, FopenFlags::empty()),
                    Decision::Busy | Decision::Stale => reply.error(self.refuse_open(fh)),
                }
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        self.requests.count(Op::Other);
        reply.error(Errno::ENOTTY);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Op::Fallocate);
        reply_empty(reply, self.union.fallocate(fh.0, mode, offset, length));
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.requests.count(Op::Lseek);
        match self.union.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(err(e)),
        }
    }
}
