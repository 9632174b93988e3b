//! The fuser transport: `UnionFs` (the state every transport shares) and the
//! fuser::Filesystem shim, which converts fuser's arguments, calls one operation of `ops.rs`
//! and replies. No union semantics live here.

use super::control::Requests;
use super::ops::{EntryOut, Opened, TTL, XattrOut};
use super::passthrough::Passthrough;
use crate::union::attr::SetAttr;
use crate::union::{Ctx, Errno as UErrno, Stat, TimeSpec, Union};
use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The state every transport shares. `B` is the transport's registered backing file (closed
/// when the last handle holding it goes).
pub struct UnionFs<B = BackingId> {
    pub union: Union,
    /// Requests by kind, for `unionrs stats`.
    pub requests: Arc<Requests>,
    /// Let the kernel enforce POSIX ACLs (off with `noacl`).
    pub acl: bool,
    pub passthrough: Passthrough<B>,
    /// Which transport carries requests, for `unionrs stats` (`dev` or `uring`).
    pub transport: Arc<parking_lot::Mutex<&'static str>>,
    /// Which protocol layer decodes them (`fuser` or `own`).
    pub layer: &'static str,
}

impl<B> UnionFs<B> {
    pub fn new(union: Union, acl: bool, passthrough: bool) -> UnionFs<B> {
        UnionFs {
            union,
            requests: Arc::new(Requests::default()),
            acl,
            passthrough: Passthrough::new(passthrough),
            transport: Arc::new(parking_lot::Mutex::new("dev")),
            layer: "fuser",
        }
    }

    /// The `key value` report of `unionrs stats` (everything it reads is shared and atomic).
    pub fn reporter(&self) -> Box<dyn Fn() -> String + Send> {
        let (requests, source) = (self.requests.clone(), self.union.stats_source());
        let passthrough = self.passthrough.state();
        let (transport, layer) = (self.transport.clone(), self.layer);
        Box::new(move || {
            use std::sync::atomic::Ordering::Relaxed;
            let mut out = format!(
                "transport {}\nfuse_layer {}\npassthrough {}\ncached_inodes {}\ncopy_ups {}\nmetacopy_ups {}\ncopy_up_bytes {}\ndisk_fsyncs {}\ninode_moves {}\nrss_bytes {}\n",
                *transport.lock(),
                layer,
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
        })
    }
}

fn err(e: UErrno) -> Errno {
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
pub(crate) fn encode_dev(dev: u64) -> u32 {
    let (major, minor) = (crate::sys::fs::major(dev), crate::sys::fs::minor(dev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

pub(crate) fn decode_dev(dev: u32) -> u64 {
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

fn reply_entry(reply: ReplyEntry, r: Result<EntryOut, UErrno>) {
    match r {
        Ok(e) => {
            let mut attr = to_attr(&e.st);
            attr.ino = INodeNo(e.ino());
            reply.entry(&e.ttl, &attr, Generation(e.generation))
        }
        Err(e) => reply.error(err(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), UErrno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, r: Result<XattrOut, UErrno>) {
    match r {
        Ok(XattrOut::Size(n)) => reply.size(n),
        Ok(XattrOut::Data(v)) => reply.data(&v),
        Err(e) => reply.error(err(e)),
    }
}

fn fopen(o: &Opened<BackingId>) -> FopenFlags {
    // The passthrough flag is fuser's to add, with the backing id.
    FopenFlags::from_bits_retain(o.flags & !super::ops::FOPEN_PASSTHROUGH)
}

impl Filesystem for UnionFs<BackingId> {
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
        reply_entry(reply, self.op_lookup(parent.0, name.as_bytes()));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.op_forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.op_getattr(ino.0, fh.map(|f| f.0)) {
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
        let a = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: timespec(atime),
            mtime: timespec(mtime),
        };
        match self.op_setattr(&ctx(req, 0), ino.0, fh.map(|f| f.0), a) {
            Ok(st) => reply.attr(&TTL, &to_attr(&st)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.op_readlink(ino.0) {
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
        let r = self.op_mknod(
            &ctx(req, umask),
            parent.0,
            name.as_bytes(),
            mode,
            decode_dev(rdev),
        );
        reply_entry(reply, r);
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
        let r = self.op_mkdir(&ctx(req, umask), parent.0, name.as_bytes(), mode);
        reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.op_unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.op_rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.op_symlink(
            &ctx(req, 0),
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
        );
        reply_entry(reply, r);
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
        let r = self.op_rename(
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
        reply_entry(reply, self.op_link(ino.0, newparent.0, newname.as_bytes()));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.op_open(ino.0, flags.0, |fd| reply.open_backing(fd)) {
            Ok(o) => match &o.backing {
                Some(b) => reply.opened_passthrough(FileHandle(o.fh), fopen(&o), b),
                None => reply.opened(FileHandle(o.fh), fopen(&o)),
            },
            Err(e) => reply.error(err(e)),
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
        match self.op_read(fh.0, offset, size) {
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
        match self.op_write(fh.0, offset, data) {
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
        reply_empty(reply, self.op_flush());
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
        self.op_release(fh.0);
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
        reply_empty(reply, self.op_fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.op_opendir() {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = self.op_readdir(ino.0, offset, |ino, cookie, kind, name| {
            reply.add(
                INodeNo(ino),
                cookie,
                file_type(kind),
                OsStr::from_bytes(name),
            )
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let r = self.op_readdirplus(ino.0, offset, |cookie, name, e| {
            reply.add(
                INodeNo(e.ino()),
                cookie,
                OsStr::from_bytes(name),
                &e.ttl,
                &to_attr(&e.st),
                Generation(e.generation),
            )
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.op_fsyncdir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.op_statfs() {
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
        reply_empty(
            reply,
            self.op_setxattr(ino.0, name.as_bytes(), value, flags),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, self.op_getxattr(ino.0, name.as_bytes(), size));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, self.op_listxattr(ino.0, size));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.op_removexattr(ino.0, name.as_bytes()));
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(reply, self.op_access(&ctx(req, 0), ino.0, mask.bits()));
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
        let r = self.op_create(
            &ctx(req, umask),
            parent.0,
            name.as_bytes(),
            mode,
            flags,
            |fd| reply.open_backing(fd),
        );
        match r {
            Ok((e, o)) => {
                let (attr, g, h) = (to_attr(&e.st), Generation(e.generation), FileHandle(o.fh));
                match &o.backing {
                    Some(b) => reply.created_passthrough(&e.ttl, &attr, g, h, fopen(&o), b),
                    None => reply.created(&e.ttl, &attr, g, h, fopen(&o)),
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
        match self.op_ioctl() {
            Ok(()) => reply.ioctl(0, &[]),
            Err(e) => reply.error(err(e)),
        }
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
        reply_empty(reply, self.op_fallocate(fh.0, offset, length, mode));
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
        match self.op_lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(err(e)),
        }
    }
}
