//! The FUSE operations of unionrs, transport-neutral: each takes decoded arguments, counts
//! the request, makes the union core call and returns the data of the reply (or an errno).
//! Whichever transport carried the request (the /dev/fuse loop or the io_uring queues),
//! these are the only place the union is called from.

use super::control::Op;
use super::passthrough::{BackingKind, Candidate, Decision};
use super::state::UnionFs;
use crate::union::attr::SetAttr;
use crate::union::layer::UPPER;
use crate::union::{Ctx, Errno, Stat};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

pub type OpResult<T> = Result<T, Errno>;

/// How long the kernel may trust entries, attributes and negative entries. Every change to
/// the union goes through this daemon (lowers are immutable while mounted, and the upper may
/// only be changed through the mount, as with kernel overlayfs), and the kernel updates its
/// caches from our replies, so nothing it caches goes stale behind its back.
pub const TTL: Duration = Duration::from_secs(86400);

/// Open reply flags (include/uapi/linux/fuse.h, FOPEN_*).
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;

/// An entry reply: the node's attributes, its generation and how long the kernel keeps the
/// entry (`ttl`) and the attributes (`attr_ttl`). A negative entry (the name does not exist)
/// has node id 0.
#[derive(Clone, Copy)]
pub struct EntryOut {
    pub st: Stat,
    pub generation: u64,
    pub ttl: Duration,
    pub attr_ttl: Duration,
}

impl EntryOut {
    /// Node id of the entry (0 for a negative entry).
    pub fn ino(&self) -> u64 {
        self.st.st_ino
    }
}

/// An open (or create) reply: the handle, FOPEN_* flags, and the backing file when the open
/// is passthrough (FOPEN_PASSTHROUGH is then set in `flags`).
pub struct Opened<B> {
    pub fh: u64,
    pub flags: u32,
    pub backing: Option<Arc<B>>,
}

/// A getxattr/listxattr reply: the size asked for (size 0) or the value.
pub enum XattrOut {
    Size(u32),
    Data(Vec<u8>),
}

/// An empty stat with only node id and type set (readdirplus `.`/`..`, negative entries).
fn bare_stat(ino: u64, mode: u32) -> Stat {
    let mut st = crate::sys::fs::empty_stat();
    st.st_ino = ino;
    st.st_mode = mode;
    st
}

fn err(e: Errno) -> Errno {
    // EIO from the daemon is always a bug or a failing disk: leave a trace, so an EIO a user
    // sees can be told apart from one the kernel made (e.g. an open reply it refused).
    if e == Errno::EIO {
        log::warn!("answering EIO");
    }
    e
}

fn xattr_out(size: u32, r: OpResult<Vec<u8>>) -> OpResult<XattrOut> {
    match r {
        Ok(v) if size == 0 => Ok(XattrOut::Size(v.len() as u32)),
        Ok(v) if v.len() > size as usize => Err(Errno::ERANGE),
        Ok(v) => Ok(XattrOut::Data(v)),
        Err(e) => Err(err(e)),
    }
}

impl<B: Send + Sync + 'static> UnionFs<B> {
    fn entry(&self, r: OpResult<Stat>) -> OpResult<EntryOut> {
        r.map(|st| self.entry_of(st)).map_err(err)
    }

    /// The entry reply for a found object. Names whose walk decides what a copy-up
    /// materialises (lower hard links) are not cached: the kernel looks them up each time.
    fn entry_of(&self, st: Stat) -> EntryOut {
        let ttl = if self.union.name_picks_copy_up(&st) {
            Duration::ZERO
        } else {
            TTL
        };
        EntryOut {
            st,
            generation: self.union.generation(st.st_ino),
            ttl,
            attr_ttl: ttl.min(self.attr_ttl(st.st_ino)),
        }
    }

    /// How long the kernel may keep node `ino`'s attributes: `TTL`, except while the node has
    /// a passthrough open read-write (a shared writable mapping needs one; O_WRONLY writers
    /// such as cp and tar keep the cache). A write through a shared writable mapping of such a
    /// file changes the layer file's mtime and ctime without the daemon or the FUSE inode
    /// hearing of it (the kernel invalidates attributes after a passthrough write(2), never
    /// after a mapped one), so the kernel asks again on every stat while one may exist, and
    /// once more after (the last answer expired at once). fstests generic/215. The read-write
    /// open that makes a mapping possible drops the attributes cached before it
    /// (`Conn::inval_attrs`).
    pub fn attr_ttl(&self, ino: u64) -> Duration {
        if self.passthrough.has_writer(ino) {
            Duration::ZERO
        } else {
            TTL
        }
    }

    /// How to answer an open of `ino` with handle `fh`: passthrough when the kernel allows.
    fn open_mode(
        &self,
        ino: u64,
        fh: u64,
        flags: i32,
        make: impl FnOnce(&OwnedFd) -> std::io::Result<B>,
    ) -> Decision<B> {
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
        self.passthrough
            .decide(ino, fh, flags & libc::O_ACCMODE, candidate)
    }

    /// Drops a handle whose open the kernel would refuse in every form (`Decision::Busy`).
    fn refuse_open(&self, fh: u64) -> Errno {
        self.passthrough.release(fh);
        self.union.release(fh);
        Errno(libc::EBUSY)
    }

    /// Drops a handle that needs the upper copy of an inode whose backing is the lower file
    /// (`Decision::Stale`): the object moves to a new node id, and ESTALE makes the kernel
    /// look the path up again (LOOKUP_REVAL) and open the new inode. An open that cannot be
    /// walked again (a /proc/PID/fd link) gets the ESTALE.
    fn stale_open(&self, ino: u64, fh: u64) -> Errno {
        self.passthrough.release(fh);
        self.union.release(fh);
        match self.union.move_to_new_id(ino) {
            Ok(()) => Errno(libc::ESTALE),
            Err(e) => err(e),
        }
    }

    pub fn op_lookup(&self, parent: u64, name: &[u8]) -> OpResult<EntryOut> {
        self.requests.count(Op::Lookup);
        match self.union.lookup(parent, name) {
            // A negative entry (node id 0) lets the kernel remember the miss.
            Err(e) if e == Errno::ENOENT => Ok(EntryOut {
                st: bare_stat(0, 0),
                generation: 0,
                ttl: TTL,
                attr_ttl: TTL,
            }),
            r => self.entry(r),
        }
    }

    /// A FORGET (`batch` false) or a BATCH_FORGET: counted as one request either way.
    pub fn op_forget(&self, forgets: impl Iterator<Item = (u64, u64)>, batch: bool) {
        self.requests
            .count(if batch { Op::BatchForget } else { Op::Forget });
        for (ino, nlookup) in forgets {
            self.union.forget(ino, nlookup);
        }
    }

    pub fn op_getattr(&self, ino: u64, fh: Option<u64>) -> OpResult<Stat> {
        self.requests.count(Op::Getattr);
        self.union.getattr(ino, fh).map_err(err)
    }

    pub fn op_setattr(&self, ctx: &Ctx, ino: u64, fh: Option<u64>, a: SetAttr) -> OpResult<Stat> {
        self.requests.count(Op::Setattr);
        self.union.setattr(ctx, ino, fh, a).map_err(err)
    }

    pub fn op_readlink(&self, ino: u64) -> OpResult<Vec<u8>> {
        self.requests.count(Op::Readlink);
        self.union.readlink(ino).map_err(err)
    }

    /// `rdev` is a glibc dev_t (the transport decodes the kernel's 32-bit form).
    pub fn op_mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
    ) -> OpResult<EntryOut> {
        self.requests.count(Op::Mknod);
        self.entry(self.union.mknod(ctx, parent, name, mode, rdev))
    }

    pub fn op_mkdir(&self, ctx: &Ctx, parent: u64, name: &[u8], mode: u32) -> OpResult<EntryOut> {
        self.requests.count(Op::Mkdir);
        self.entry(self.union.mkdir(ctx, parent, name, mode))
    }

    pub fn op_unlink(&self, parent: u64, name: &[u8]) -> OpResult<()> {
        self.requests.count(Op::Unlink);
        self.closer.flush();
        self.union.unlink(parent, name).map_err(err)
    }

    pub fn op_rmdir(&self, parent: u64, name: &[u8]) -> OpResult<()> {
        self.requests.count(Op::Rmdir);
        self.union.rmdir(parent, name).map_err(err)
    }

    pub fn op_symlink(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> OpResult<EntryOut> {
        self.requests.count(Op::Symlink);
        self.entry(self.union.symlink(ctx, parent, name, target))
    }

    pub fn op_rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> OpResult<()> {
        self.requests.count(Op::Rename);
        self.closer.flush();
        self.union
            .rename(parent, name, newparent, newname, flags)
            .map_err(err)
    }

    pub fn op_link(&self, ino: u64, newparent: u64, newname: &[u8]) -> OpResult<EntryOut> {
        self.requests.count(Op::Link);
        self.entry(self.union.link(ino, newparent, newname))
    }

    /// `make` registers a backing file with the kernel (passthrough), when one is wanted.
    pub fn op_open(
        &self,
        ino: u64,
        flags: i32,
        make: impl FnOnce(&OwnedFd) -> std::io::Result<B>,
    ) -> OpResult<Opened<B>> {
        self.requests.count(Op::Open);
        let fh = self.union.open(ino, flags).map_err(err)?;
        // Page cache stays valid across opens: only this daemon changes file data.
        let (flags, backing) = match self.open_mode(ino, fh, flags, make) {
            Decision::Passthrough(b) => (FOPEN_PASSTHROUGH, Some(b)),
            Decision::DirectIo => (FOPEN_DIRECT_IO, None),
            Decision::Cached => (FOPEN_KEEP_CACHE, None),
            Decision::Stale => return Err(self.stale_open(ino, fh)),
            Decision::Busy => return Err(self.refuse_open(fh)),
        };
        Ok(Opened { fh, flags, backing })
    }

    pub fn op_read(&self, fh: u64, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        self.requests.count(Op::Read);
        self.union.read(fh, offset, size).map_err(err)
    }

    pub fn op_write(&self, fh: u64, offset: u64, data: &[u8]) -> OpResult<u32> {
        self.requests.count(Op::Write);
        self.union.write(fh, offset, data).map_err(err)
    }

    pub fn op_flush(&self) -> OpResult<()> {
        self.requests.count(Op::Other);
        // Nothing to do on close (data goes straight to the layer file and POSIX locks are
        // the kernel's): ENOSYS tells the kernel to stop sending FLUSH at all.
        Err(Errno::ENOSYS)
    }

    pub fn op_release(&self, fh: u64) {
        self.requests.count(Op::Release);
        let backing = self.passthrough.release(fh);
        let handle = self.union.release(fh);
        // An unlinked file's blocks are freed by its last close: that one is not put off.
        let unlinked = |h: &Arc<crate::union::FileHandle>| h.node.state.read().unlinked;
        match (&backing, &handle) {
            (None, None) => {}
            (_, Some(h)) if unlinked(h) => {}
            _ => self.closer.defer(Box::new((backing, handle))),
        }
    }

    pub fn op_fsync(&self, fh: u64, datasync: bool) -> OpResult<()> {
        self.requests.count(Op::Fsync);
        self.union.fsync(fh, datasync).map_err(err)
    }

    pub fn op_opendir(&self) -> OpResult<()> {
        self.requests.count(Op::Opendir);
        // ENOSYS: from then on the kernel opens and closes directories without asking (two
        // round trips less per directory walked) and keeps their listings cached across
        // opens (FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE, its default without OPENDIR), starting
        // a cache again when it sees the directory changed. Listings are served per
        // directory, never older than its last change (union::readdir), and a change to a
        // directory that was listed drops the kernel's cache (session::drop_listings_on_change).
        Err(Errno::ENOSYS)
    }

    pub fn op_releasedir(&self) {
        self.requests.count(Op::Releasedir);
    }

    /// Entries from `offset` on; `add(ino, cookie, mode_type, name)` returns true when the
    /// reply is full.
    pub fn op_readdir(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, u32, &[u8]) -> bool,
    ) -> OpResult<()> {
        self.requests.count(Op::Readdir);
        let (entries, start) = self.union.readdir_from(ino, offset).map_err(err)?;
        let mut upper = None;
        let mut given = start;
        for e in &entries[start..] {
            if add(
                self.union.dirent_ino(ino, e, &mut upper),
                e.cookie,
                e.kind,
                &e.name,
            ) {
                break;
            }
            given += 1;
        }
        self.union.listed_names_batch(ino, &entries[start..given]);
        Ok(())
    }

    /// Entries with their attributes: saves the kernel one lookup round trip per name. Each
    /// entry but `.` and `..` counts as a kernel lookup of that node. `add(cookie, name,
    /// entry)` returns true when the entry did not fit.
    pub fn op_readdirplus(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, &[u8], &EntryOut) -> bool,
    ) -> OpResult<()> {
        self.requests.count(Op::Readdirplus);
        let watch = self.union.watch_reads();
        let (entries, start) = self.union.readdir_from(ino, offset).map_err(err)?;
        // One directory context for the whole batch: each entry then costs its own stat only.
        let scope = self.union.lookup_scope(ino).map_err(err)?;
        let mut subdirs = Vec::new();
        for e in &entries[start..] {
            if e.name == b"." || e.name == b".." {
                let dot = EntryOut {
                    st: bare_stat(e.ino, libc::S_IFDIR),
                    generation: 0,
                    ttl: Duration::ZERO,
                    attr_ttl: Duration::ZERO,
                };
                if add(e.cookie, &e.name, &dot) {
                    break;
                }
                continue;
            }
            let st = match self.union.lookup_in(&scope, &e.name) {
                Ok(st) => st,
                // Gone since the listing was taken: leave it out.
                Err(_) => continue,
            };
            let entry = self.entry_of(st);
            if add(e.cookie, &e.name, &entry) {
                // Did not fit: the kernel will ask again, so this lookup does not count.
                self.union.forget(st.st_ino, 1);
                break;
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                subdirs.push(st.st_ino);
            }
        }
        self.union.listed_batch(&scope, offset, &subdirs, watch);
        Ok(())
    }

    pub fn op_fsyncdir(&self, ino: u64) -> OpResult<()> {
        self.requests.count(Op::Other);
        self.union.fsyncdir(ino).map_err(err)
    }

    pub fn op_statfs(&self) -> OpResult<libc::statvfs> {
        self.requests.count(Op::Statfs);
        self.closer.flush();
        self.union.statfs().map_err(err)
    }

    pub fn op_setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> OpResult<()> {
        self.requests.count(Op::Setxattr);
        self.union.setxattr(ino, name, value, flags).map_err(err)
    }

    pub fn op_getxattr(&self, ino: u64, name: &[u8], size: u32) -> OpResult<XattrOut> {
        self.requests.count(Op::Getxattr);
        xattr_out(size, self.union.getxattr(ino, name))
    }

    pub fn op_listxattr(&self, ino: u64, size: u32) -> OpResult<XattrOut> {
        self.requests.count(Op::Listxattr);
        xattr_out(size, self.union.listxattr(ino))
    }

    pub fn op_removexattr(&self, ino: u64, name: &[u8]) -> OpResult<()> {
        self.requests.count(Op::Removexattr);
        self.union.removexattr(ino, name).map_err(err)
    }

    pub fn op_access(&self, ctx: &Ctx, ino: u64, mask: i32) -> OpResult<()> {
        self.requests.count(Op::Access);
        self.union.access(ctx, ino, mask).map_err(err)
    }

    pub fn op_create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        make: impl FnOnce(&OwnedFd) -> std::io::Result<B>,
    ) -> OpResult<(EntryOut, Opened<B>)> {
        self.requests.count(Op::Create);
        let (st, fh) = self
            .union
            .create(ctx, parent, name, mode, flags)
            .map_err(err)?;
        let (flags, backing) = match self.open_mode(st.st_ino, fh, flags, make) {
            Decision::Passthrough(b) => (FOPEN_PASSTHROUGH, Some(b)),
            Decision::DirectIo => (FOPEN_DIRECT_IO, None),
            Decision::Cached => (0, None),
            Decision::Busy | Decision::Stale => return Err(self.refuse_open(fh)),
        };
        // After the open is recorded: a writer keeps the attributes uncached.
        let entry = EntryOut {
            st,
            generation: self.union.generation(st.st_ino),
            ttl: TTL,
            attr_ttl: self.attr_ttl(st.st_ino),
        };
        Ok((entry, Opened { fh, flags, backing }))
    }

    /// O_TMPFILE: an unnamed upper file, open (see `Union::tmpfile`); answered as a create.
    pub fn op_tmpfile(
        &self,
        ctx: &Ctx,
        parent: u64,
        mode: u32,
        flags: i32,
        make: impl FnOnce(&OwnedFd) -> std::io::Result<B>,
    ) -> OpResult<(EntryOut, Opened<B>)> {
        self.requests.count(Op::Create);
        let (st, fh) = self.union.tmpfile(ctx, parent, mode, flags).map_err(err)?;
        let (flags, backing) = match self.open_mode(st.st_ino, fh, flags, make) {
            Decision::Passthrough(b) => (FOPEN_PASSTHROUGH, Some(b)),
            Decision::DirectIo => (FOPEN_DIRECT_IO, None),
            Decision::Cached => (0, None),
            Decision::Busy | Decision::Stale => return Err(self.refuse_open(fh)),
        };
        let entry = EntryOut {
            st,
            generation: self.union.generation(st.st_ino),
            ttl: TTL,
            attr_ttl: self.attr_ttl(st.st_ino),
        };
        Ok((entry, Opened { fh, flags, backing }))
    }

    /// The inode flag ioctls (lsattr, chattr); every other ioctl is ENOTTY. Returns the
    /// reply's data.
    pub fn op_ioctl(&self, ino: u64, cmd: u32, data: &[u8]) -> OpResult<Vec<u8>> {
        use super::abi::*;
        self.requests.count(Op::Other);
        let word = |i: usize| -> OpResult<u32> {
            let b = data.get(i * 4..i * 4 + 4).ok_or(Errno(libc::EINVAL))?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let r = match cmd {
            FS_IOC_GETFLAGS | FS_IOC32_GETFLAGS => self
                .union
                .inode_flags(ino)
                .map(|f| f.to_le_bytes().to_vec()),
            FS_IOC_SETFLAGS | FS_IOC32_SETFLAGS => self
                .union
                .set_inode_flags(ino, word(0)?)
                .map(|()| Vec::new()),
            FS_IOC_FSGETXATTR => self
                .union
                .fsxattr(ino)
                .map(|v| v.iter().flat_map(|w| w.to_le_bytes()).collect()),
            FS_IOC_FSSETXATTR => {
                let mut v = [0u32; 7];
                for (i, w) in v.iter_mut().enumerate() {
                    *w = word(i)?;
                }
                self.union.set_fsxattr(ino, &v).map(|()| Vec::new())
            }
            _ => Err(Errno::ENOTTY),
        };
        r.map_err(err)
    }

    pub fn op_fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> OpResult<()> {
        self.requests.count(Op::Fallocate);
        self.union.fallocate(fh, mode, offset, length).map_err(err)
    }

    pub fn op_lseek(&self, fh: u64, offset: i64, whence: i32) -> OpResult<i64> {
        self.requests.count(Op::Lseek);
        self.union.lseek(fh, offset, whence).map_err(err)
    }
}
