//! The FUSE kernel ABI as unionrs speaks it (include/uapi/linux/fuse.h, protocol 7.42):
//! opcodes, flags, and the request decoder. Every field is read little endian through a
//! bounds-checked cursor, so a short or malformed request decodes to an error (answered
//! EINVAL), never to a panic.
//!
//! A request body may come in two pieces: over /dev/fuse it is one buffer; over io_uring
//! the per-opcode header arrives in the ring entry's header area and the rest (names,
//! write data) in its payload buffer. `Body` reads across both.

pub const FUSE_KERNEL_VERSION: u32 = 7;
/// 7.42: FUSE_OVER_IO_URING.
pub const FUSE_KERNEL_MINOR_VERSION: u32 = 42;
pub const FUSE_ROOT_ID: u64 = 1;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;

// Opcodes.
pub const LOOKUP: u32 = 1;
pub const FORGET: u32 = 2;
pub const GETATTR: u32 = 3;
pub const SETATTR: u32 = 4;
pub const READLINK: u32 = 5;
pub const SYMLINK: u32 = 6;
pub const MKNOD: u32 = 8;
pub const MKDIR: u32 = 9;
pub const UNLINK: u32 = 10;
pub const RMDIR: u32 = 11;
pub const RENAME: u32 = 12;
pub const LINK: u32 = 13;
pub const OPEN: u32 = 14;
pub const READ: u32 = 15;
pub const WRITE: u32 = 16;
pub const STATFS: u32 = 17;
pub const RELEASE: u32 = 18;
pub const FSYNC: u32 = 20;
pub const SETXATTR: u32 = 21;
pub const GETXATTR: u32 = 22;
pub const LISTXATTR: u32 = 23;
pub const REMOVEXATTR: u32 = 24;
pub const FLUSH: u32 = 25;
pub const INIT: u32 = 26;
pub const OPENDIR: u32 = 27;
pub const READDIR: u32 = 28;
pub const RELEASEDIR: u32 = 29;
pub const FSYNCDIR: u32 = 30;
pub const ACCESS: u32 = 34;
pub const CREATE: u32 = 35;
pub const INTERRUPT: u32 = 36;
pub const DESTROY: u32 = 38;
pub const IOCTL: u32 = 39;
pub const BATCH_FORGET: u32 = 42;
pub const FALLOCATE: u32 = 43;
pub const READDIRPLUS: u32 = 44;
pub const RENAME2: u32 = 45;
pub const LSEEK: u32 = 46;
pub const TMPFILE: u32 = 51;

// INIT flags (flags | flags2 << 32).
pub const FUSE_ASYNC_READ: u64 = 1 << 0;
pub const FUSE_ATOMIC_O_TRUNC: u64 = 1 << 3;
pub const FUSE_EXPORT_SUPPORT: u64 = 1 << 4;
pub const FUSE_BIG_WRITES: u64 = 1 << 5;
pub const FUSE_DONT_MASK: u64 = 1 << 6;
pub const FUSE_DO_READDIRPLUS: u64 = 1 << 13;
pub const FUSE_READDIRPLUS_AUTO: u64 = 1 << 14;
pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
pub const FUSE_POSIX_ACL: u64 = 1 << 20;
pub const FUSE_MAX_PAGES: u64 = 1 << 22;
pub const FUSE_CACHE_SYMLINKS: u64 = 1 << 23;
pub const FUSE_SETXATTR_EXT: u64 = 1 << 29;
pub const FUSE_INIT_EXT: u64 = 1 << 30;
pub const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
pub const FUSE_NO_EXPORT_SUPPORT: u64 = 1 << 38;
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;

// The ioctls served (through the kernel's fileattr operations: lsattr, chattr).
pub const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
pub const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
pub const FS_IOC32_GETFLAGS: u32 = 0x8004_6601;
pub const FS_IOC32_SETFLAGS: u32 = 0x4004_6602;
pub const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;
pub const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;

// SETATTR valid bits.
pub const FATTR_MODE: u32 = 1 << 0;
pub const FATTR_UID: u32 = 1 << 1;
pub const FATTR_GID: u32 = 1 << 2;
pub const FATTR_SIZE: u32 = 1 << 3;
pub const FATTR_ATIME: u32 = 1 << 4;
pub const FATTR_MTIME: u32 = 1 << 5;
pub const FATTR_FH: u32 = 1 << 6;
pub const FATTR_ATIME_NOW: u32 = 1 << 7;
pub const FATTR_MTIME_NOW: u32 = 1 << 8;
pub const FATTR_KILL_SUIDGID: u32 = 1 << 11;

pub const FUSE_GETATTR_FH: u32 = 1;
pub const FUSE_FSYNC_FDATASYNC: u32 = 1;

// Notification codes (out header `error` field, unique 0).
pub const FUSE_NOTIFY_INVAL_INODE: i32 = 2;

/// Why a request could not be decoded (answered EINVAL, or EIO for a bad header).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// struct fuse_in_header
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub total_extlen: u16,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> Result<InHeader, Malformed> {
        let mut c = Body::one(b);
        let h = InHeader {
            len: c.u32()?,
            opcode: c.u32()?,
            unique: c.u64()?,
            nodeid: c.u64()?,
            uid: c.u32()?,
            gid: c.u32()?,
            pid: c.u32()?,
            total_extlen: c.u16()?,
        };
        c.u16()?; // padding
        Ok(h)
    }
}

/// A cursor over a request body in one or two pieces (see the module comment). A field never
/// spans the two pieces: the kernel splits a request only between its per-opcode header and
/// the rest.
#[derive(Clone, Copy)]
pub struct Body<'a> {
    a: &'a [u8],
    b: &'a [u8],
}

impl<'a> Body<'a> {
    pub fn one(a: &'a [u8]) -> Body<'a> {
        Body { a, b: &[] }
    }

    pub fn two(a: &'a [u8], b: &'a [u8]) -> Body<'a> {
        Body { a, b }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.a.is_empty() {
            std::mem::swap(&mut self.a, &mut self.b);
        }
        if self.a.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.a.split_at(n);
        self.a = tail;
        Ok(head)
    }

    pub fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut v = [0u8; 8];
        v.copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    }

    /// A NUL-terminated name; returned without the NUL.
    pub fn name(&mut self) -> Result<&'a [u8], Malformed> {
        if self.a.is_empty() {
            std::mem::swap(&mut self.a, &mut self.b);
        }
        let end = self.a.iter().position(|&c| c == 0).ok_or(Malformed)?;
        let name = &self.a[..end];
        self.a = &self.a[end + 1..];
        Ok(name)
    }

    /// Everything left (write data): must be in one piece.
    pub fn rest(&mut self) -> Result<&'a [u8], Malformed> {
        match (self.a.is_empty(), self.b.is_empty()) {
            (_, true) => Ok(std::mem::take(&mut self.a)),
            (true, false) => Ok(std::mem::take(&mut self.b)),
            (false, false) => Err(Malformed),
        }
    }
}

/// A time given to SETATTR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(i64, u32),
}

/// struct fuse_setattr_in, reduced to what was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SetattrIn {
    pub fh: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub kill_suidgid: bool,
}

/// A decoded request (names and data borrow from the request buffer).
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u64,
    },
    Destroy,
    Interrupt {
        unique: u64,
    },
    Lookup {
        name: &'a [u8],
    },
    Forget {
        nlookup: u64,
    },
    BatchForget {
        /// (node id, nlookup) pairs, 16 bytes each, read with `forgets()`.
        raw: &'a [u8],
    },
    Getattr {
        fh: Option<u64>,
    },
    Setattr(SetattrIn),
    Readlink,
    Symlink {
        name: &'a [u8],
        target: &'a [u8],
    },
    Mknod {
        mode: u32,
        rdev: u32,
        umask: u32,
        name: &'a [u8],
    },
    Mkdir {
        mode: u32,
        umask: u32,
        name: &'a [u8],
    },
    Unlink {
        name: &'a [u8],
    },
    Rmdir {
        name: &'a [u8],
    },
    Rename {
        newdir: u64,
        flags: u32,
        name: &'a [u8],
        newname: &'a [u8],
    },
    Link {
        oldnodeid: u64,
        newname: &'a [u8],
    },
    Open {
        flags: u32,
    },
    Read {
        fh: u64,
        offset: u64,
        size: u32,
    },
    Write {
        fh: u64,
        offset: u64,
        data: &'a [u8],
    },
    Statfs,
    Release {
        fh: u64,
    },
    Fsync {
        fh: u64,
        datasync: bool,
    },
    Setxattr {
        flags: u32,
        name: &'a [u8],
        value: &'a [u8],
    },
    Getxattr {
        size: u32,
        name: &'a [u8],
    },
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a [u8],
    },
    Flush,
    Opendir,
    Readdir {
        offset: u64,
        size: u32,
    },
    Readdirplus {
        offset: u64,
        size: u32,
    },
    Releasedir,
    Fsyncdir,
    Access {
        mask: u32,
    },
    Create {
        flags: u32,
        mode: u32,
        umask: u32,
        name: &'a [u8],
    },
    /// O_TMPFILE: an unnamed file in directory `nodeid`, created and opened (the request
    /// carries the name "/", which is no name).
    Tmpfile {
        flags: u32,
        mode: u32,
        umask: u32,
    },
    /// struct fuse_ioctl_in, restricted (the kernel sized `data` and the reply from the
    /// command's _IOC encoding).
    Ioctl {
        cmd: u32,
        out_size: u32,
        data: &'a [u8],
    },
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    Lseek {
        fh: u64,
        offset: u64,
        whence: u32,
    },
    /// An opcode unionrs does not serve (answered ENOSYS).
    Unsupported(u32),
}

/// The (node id, nlookup) pairs of a BATCH_FORGET.
pub fn forgets(raw: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    raw.chunks_exact(16).map(|c| {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&c[..8]);
        b.copy_from_slice(&c[8..]);
        (u64::from_le_bytes(a), u64::from_le_bytes(b))
    })
}

/// struct fuse_read_in (READ, READDIR, READDIRPLUS): fh, offset, size.
fn read_in(c: &mut Body<'_>) -> Result<(u64, u64, u32), Malformed> {
    let r = (c.u64()?, c.u64()?, c.u32()?);
    c.take(20)?; // read_flags, lock_owner, flags, padding
    Ok(r)
}

fn setattr_in(c: &mut Body<'_>) -> Result<SetattrIn, Malformed> {
    let valid = c.u32()?;
    c.u32()?; // padding
    let fh = c.u64()?;
    let size = c.u64()?;
    c.u64()?; // lock_owner
    let (atime, mtime) = (c.u64()? as i64, c.u64()? as i64);
    c.u64()?; // ctime
    let (atimensec, mtimensec) = (c.u32()?, c.u32()?);
    c.u32()?; // ctimensec
    let mode = c.u32()?;
    c.u32()?; // unused4
    let (uid, gid) = (c.u32()?, c.u32()?);
    c.u32()?; // unused5
    let on = |bit: u32| valid & bit != 0;
    let time = |now: u32, set: u32, s: i64, ns: u32| {
        if on(now) {
            Some(SetTime::Now)
        } else if on(set) {
            Some(SetTime::At(s, ns))
        } else {
            None
        }
    };
    Ok(SetattrIn {
        fh: on(FATTR_FH).then_some(fh),
        mode: on(FATTR_MODE).then_some(mode),
        uid: on(FATTR_UID).then_some(uid),
        gid: on(FATTR_GID).then_some(gid),
        size: on(FATTR_SIZE).then_some(size),
        atime: time(FATTR_ATIME_NOW, FATTR_ATIME, atime, atimensec),
        mtime: time(FATTR_MTIME_NOW, FATTR_MTIME, mtime, mtimensec),
        kill_suidgid: on(FATTR_KILL_SUIDGID),
    })
}

/// Decodes the body of a request with opcode `opcode`. `setxattr_ext`: whether INIT
/// negotiated FUSE_SETXATTR_EXT (the longer fuse_setxattr_in).
pub fn decode<'a>(
    opcode: u32,
    mut c: Body<'a>,
    setxattr_ext: bool,
) -> Result<Request<'a>, Malformed> {
    use Request as R;
    Ok(match opcode {
        INIT => {
            let (major, minor, max_readahead, flags) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
            // flags2 exists from 7.36 on; older kernels send the short struct.
            let flags2 = if minor >= 36 { c.u32().unwrap_or(0) } else { 0 };
            R::Init {
                major,
                minor,
                max_readahead,
                flags: flags as u64 | (flags2 as u64) << 32,
            }
        }
        DESTROY => R::Destroy,
        INTERRUPT => R::Interrupt { unique: c.u64()? },
        LOOKUP => R::Lookup { name: c.name()? },
        FORGET => R::Forget { nlookup: c.u64()? },
        BATCH_FORGET => {
            let count = c.u32()? as usize;
            c.u32()?;
            let raw = c.take(count.checked_mul(16).ok_or(Malformed)?)?;
            R::BatchForget { raw }
        }
        GETATTR => {
            let (flags, _dummy, fh) = (c.u32()?, c.u32()?, c.u64()?);
            R::Getattr {
                fh: (flags & FUSE_GETATTR_FH != 0).then_some(fh),
            }
        }
        SETATTR => R::Setattr(setattr_in(&mut c)?),
        READLINK => R::Readlink,
        SYMLINK => R::Symlink {
            name: c.name()?,
            target: c.name()?,
        },
        MKNOD => {
            let (mode, rdev, umask, _pad) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
            R::Mknod {
                mode,
                rdev,
                umask,
                name: c.name()?,
            }
        }
        MKDIR => {
            let (mode, umask) = (c.u32()?, c.u32()?);
            R::Mkdir {
                mode,
                umask,
                name: c.name()?,
            }
        }
        UNLINK => R::Unlink { name: c.name()? },
        RMDIR => R::Rmdir { name: c.name()? },
        RENAME => R::Rename {
            newdir: c.u64()?,
            flags: 0,
            name: c.name()?,
            newname: c.name()?,
        },
        RENAME2 => {
            let (newdir, flags, _pad) = (c.u64()?, c.u32()?, c.u32()?);
            R::Rename {
                newdir,
                flags,
                name: c.name()?,
                newname: c.name()?,
            }
        }
        LINK => R::Link {
            oldnodeid: c.u64()?,
            newname: c.name()?,
        },
        OPEN => {
            let (flags, _open_flags) = (c.u32()?, c.u32()?);
            R::Open { flags }
        }
        READ => {
            let (fh, offset, size) = read_in(&mut c)?;
            R::Read { fh, offset, size }
        }
        WRITE => {
            let (fh, offset, size) = (c.u64()?, c.u64()?, c.u32()?);
            c.take(20)?; // write_flags, lock_owner, flags, padding
            let data = c.rest()?;
            if data.len() < size as usize {
                return Err(Malformed);
            }
            R::Write {
                fh,
                offset,
                data: &data[..size as usize],
            }
        }
        STATFS => R::Statfs,
        RELEASE => {
            let fh = c.u64()?;
            c.take(16)?; // flags, release_flags, lock_owner
            R::Release { fh }
        }
        FSYNC | FSYNCDIR => {
            let (fh, flags, _pad) = (c.u64()?, c.u32()?, c.u32()?);
            if opcode == FSYNCDIR {
                R::Fsyncdir
            } else {
                R::Fsync {
                    fh,
                    datasync: flags & FUSE_FSYNC_FDATASYNC != 0,
                }
            }
        }
        SETXATTR => {
            let (size, flags) = (c.u32()?, c.u32()?);
            if setxattr_ext {
                c.take(8)?; // setxattr_flags, padding
            }
            let name = c.name()?;
            let value = c.take(size as usize)?;
            R::Setxattr { flags, name, value }
        }
        GETXATTR => {
            let (size, _pad) = (c.u32()?, c.u32()?);
            R::Getxattr {
                size,
                name: c.name()?,
            }
        }
        LISTXATTR => {
            let (size, _pad) = (c.u32()?, c.u32()?);
            R::Listxattr { size }
        }
        REMOVEXATTR => R::Removexattr { name: c.name()? },
        FLUSH => R::Flush,
        OPENDIR => R::Opendir,
        READDIR | READDIRPLUS => {
            let (_fh, offset, size) = read_in(&mut c)?;
            if opcode == READDIR {
                R::Readdir { offset, size }
            } else {
                R::Readdirplus { offset, size }
            }
        }
        RELEASEDIR => R::Releasedir,
        ACCESS => {
            let (mask, _pad) = (c.u32()?, c.u32()?);
            R::Access { mask }
        }
        CREATE => {
            let (flags, mode, umask, _open_flags) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
            R::Create {
                flags,
                mode,
                umask,
                name: c.name()?,
            }
        }
        TMPFILE => {
            let (flags, mode, umask, _open_flags) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
            R::Tmpfile { flags, mode, umask }
        }
        IOCTL => {
            let (_fh, _flags, cmd, _arg) = (c.u64()?, c.u32()?, c.u32()?, c.u64()?);
            let (in_size, out_size) = (c.u32()?, c.u32()?);
            let data = if in_size == 0 {
                &[][..]
            } else {
                c.take(in_size as usize)?
            };
            R::Ioctl {
                cmd,
                out_size,
                data,
            }
        }
        FALLOCATE => {
            let (fh, offset, length, mode) = (c.u64()?, c.u64()?, c.u64()?, c.u32()?);
            R::Fallocate {
                fh,
                offset,
                length,
                mode,
            }
        }
        LSEEK => {
            let (fh, offset, whence) = (c.u64()?, c.u64()?, c.u32()?);
            R::Lseek { fh, offset, whence }
        }
        other => R::Unsupported(other),
    })
}

/// Little-endian writer for reply bodies.
pub struct Out<'v>(pub &'v mut Vec<u8>);

impl Out<'_> {
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// The fuse_out_header of a reply with a body of `body_len` bytes.
pub fn out_header(unique: u64, error: i32, body_len: usize) -> [u8; OUT_HEADER_LEN] {
    let mut h = [0u8; OUT_HEADER_LEN];
    h[..4].copy_from_slice(&((OUT_HEADER_LEN + body_len) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&error.to_le_bytes());
    h[8..].copy_from_slice(&unique.to_le_bytes());
    h
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

#[cfg(test)]
mod tests {
    use super::*;

    fn le(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }
    fn u32b(v: u32) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }
    fn u64b(v: u64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    /// (opcode, body, expected request) for every opcode unionrs serves.
    fn cases() -> Vec<(u32, Vec<u8>, Request<'static>)> {
        use Request as R;
        let read_in = le(&[&u64b(7), &u64b(4096), &u32b(512), &[0u8; 20]]);
        let mut setattr = vec![0u8; 88];
        setattr[..4].copy_from_slice(
            &(FATTR_MODE | FATTR_SIZE | FATTR_MTIME_NOW | FATTR_ATIME | FATTR_KILL_SUIDGID)
                .to_le_bytes(),
        );
        setattr[16..24].copy_from_slice(&100u64.to_le_bytes());
        setattr[32..40].copy_from_slice(&5u64.to_le_bytes()); // atime
        setattr[56..60].copy_from_slice(&9u32.to_le_bytes()); // atimensec
        setattr[68..72].copy_from_slice(&0o100644u32.to_le_bytes());
        vec![
            (
                INIT,
                le(&[
                    &u32b(7),
                    &u32b(44),
                    &u32b(131072),
                    &u32b(FUSE_ASYNC_READ as u32),
                    &u32b(1 << 9),
                    &[0u8; 44],
                ]),
                R::Init {
                    major: 7,
                    minor: 44,
                    max_readahead: 131072,
                    flags: FUSE_ASYNC_READ | FUSE_OVER_IO_URING,
                },
            ),
            (LOOKUP, b"name\0".to_vec(), R::Lookup { name: b"name" }),
            (FORGET, u64b(3), R::Forget { nlookup: 3 }),
            (
                BATCH_FORGET,
                le(&[&u32b(1), &u32b(0), &u64b(5), &u64b(2)]),
                R::BatchForget {
                    raw: &[5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
                },
            ),
            (
                GETATTR,
                le(&[&u32b(FUSE_GETATTR_FH), &u32b(0), &u64b(9)]),
                R::Getattr { fh: Some(9) },
            ),
            (
                GETATTR,
                le(&[&u32b(0), &u32b(0), &u64b(9)]),
                R::Getattr { fh: None },
            ),
            (
                SETATTR,
                setattr,
                R::Setattr(SetattrIn {
                    mode: Some(0o100644),
                    size: Some(100),
                    atime: Some(SetTime::At(5, 9)),
                    mtime: Some(SetTime::Now),
                    kill_suidgid: true,
                    ..Default::default()
                }),
            ),
            (READLINK, vec![], R::Readlink),
            (
                SYMLINK,
                b"l\0t/x\0".to_vec(),
                R::Symlink {
                    name: b"l",
                    target: b"t/x",
                },
            ),
            (
                MKNOD,
                le(&[
                    &u32b(0o20644),
                    &u32b(0x103),
                    &u32b(0o22),
                    &u32b(0),
                    b"dev\0",
                ]),
                R::Mknod {
                    mode: 0o20644,
                    rdev: 0x103,
                    umask: 0o22,
                    name: b"dev",
                },
            ),
            (
                MKDIR,
                le(&[&u32b(0o755), &u32b(0o22), b"d\0"]),
                R::Mkdir {
                    mode: 0o755,
                    umask: 0o22,
                    name: b"d",
                },
            ),
            (UNLINK, b"f\0".to_vec(), R::Unlink { name: b"f" }),
            (RMDIR, b"d\0".to_vec(), R::Rmdir { name: b"d" }),
            (
                RENAME,
                le(&[&u64b(4), b"a\0b\0"]),
                R::Rename {
                    newdir: 4,
                    flags: 0,
                    name: b"a",
                    newname: b"b",
                },
            ),
            (
                RENAME2,
                le(&[&u64b(4), &u32b(2), &u32b(0), b"a\0b\0"]),
                R::Rename {
                    newdir: 4,
                    flags: 2,
                    name: b"a",
                    newname: b"b",
                },
            ),
            (
                LINK,
                le(&[&u64b(8), b"n\0"]),
                R::Link {
                    oldnodeid: 8,
                    newname: b"n",
                },
            ),
            (OPEN, le(&[&u32b(2), &u32b(0)]), R::Open { flags: 2 }),
            (
                READ,
                read_in.clone(),
                R::Read {
                    fh: 7,
                    offset: 4096,
                    size: 512,
                },
            ),
            (
                WRITE,
                le(&[&u64b(7), &u64b(0), &u32b(3), &[0u8; 20], b"abc"]),
                R::Write {
                    fh: 7,
                    offset: 0,
                    data: b"abc",
                },
            ),
            (STATFS, vec![], R::Statfs),
            (RELEASE, le(&[&u64b(7), &[0u8; 16]]), R::Release { fh: 7 }),
            (
                FSYNC,
                le(&[&u64b(7), &u32b(1), &u32b(0)]),
                R::Fsync {
                    fh: 7,
                    datasync: true,
                },
            ),
            (FSYNCDIR, le(&[&u64b(7), &u32b(0), &u32b(0)]), R::Fsyncdir),
            (
                SETXATTR,
                le(&[&u32b(2), &u32b(1), b"user.a\0", b"vv"]),
                R::Setxattr {
                    flags: 1,
                    name: b"user.a",
                    value: b"vv",
                },
            ),
            (
                GETXATTR,
                le(&[&u32b(64), &u32b(0), b"user.a\0"]),
                R::Getxattr {
                    size: 64,
                    name: b"user.a",
                },
            ),
            (
                LISTXATTR,
                le(&[&u32b(0), &u32b(0)]),
                R::Listxattr { size: 0 },
            ),
            (
                REMOVEXATTR,
                b"user.a\0".to_vec(),
                R::Removexattr { name: b"user.a" },
            ),
            (FLUSH, vec![0u8; 24], R::Flush),
            (OPENDIR, vec![0u8; 8], R::Opendir),
            (
                READDIR,
                read_in.clone(),
                R::Readdir {
                    offset: 4096,
                    size: 512,
                },
            ),
            (
                READDIRPLUS,
                read_in,
                R::Readdirplus {
                    offset: 4096,
                    size: 512,
                },
            ),
            (RELEASEDIR, vec![0u8; 24], R::Releasedir),
            (ACCESS, le(&[&u32b(4), &u32b(0)]), R::Access { mask: 4 }),
            (
                CREATE,
                le(&[&u32b(0o101), &u32b(0o100644), &u32b(0o22), &u32b(0), b"c\0"]),
                R::Create {
                    flags: 0o101,
                    mode: 0o100644,
                    umask: 0o22,
                    name: b"c",
                },
            ),
            (INTERRUPT, u64b(77), R::Interrupt { unique: 77 }),
            (DESTROY, vec![], R::Destroy),
            (
                TMPFILE,
                le(&[
                    &u32b(0o20000002),
                    &u32b(0o100600),
                    &u32b(0o22),
                    &u32b(0),
                    b"/\0",
                ]),
                R::Tmpfile {
                    flags: 0o20000002,
                    mode: 0o100600,
                    umask: 0o22,
                },
            ),
            (
                IOCTL,
                le(&[&u64b(3), &u32b(0), &u32b(FS_IOC_SETFLAGS), &u64b(0)])
                    .into_iter()
                    .chain(le(&[&u32b(4), &u32b(0), &u32b(0x10)]))
                    .collect(),
                R::Ioctl {
                    cmd: FS_IOC_SETFLAGS,
                    out_size: 0,
                    data: &[0x10, 0, 0, 0],
                },
            ),
            (
                FALLOCATE,
                le(&[&u64b(7), &u64b(1), &u64b(2), &u32b(3), &u32b(0)]),
                R::Fallocate {
                    fh: 7,
                    offset: 1,
                    length: 2,
                    mode: 3,
                },
            ),
            (
                LSEEK,
                le(&[&u64b(7), &u64b(10), &u32b(3), &u32b(0)]),
                R::Lseek {
                    fh: 7,
                    offset: 10,
                    whence: 3,
                },
            ),
            (47, vec![0u8; 56], R::Unsupported(47)),
        ]
    }

    #[test]
    fn every_served_opcode_decodes() {
        for (op, body, want) in cases() {
            let got = decode(op, Body::one(&body), false).unwrap_or_else(|_| panic!("opcode {op}"));
            assert_eq!(got, want, "opcode {op}");
        }
    }

    /// Every truncation of every request decodes to an error or a request, never a panic;
    /// and a request cut inside its fixed header is always an error.
    #[test]
    fn truncated_requests_never_panic() {
        for (op, body, _) in cases() {
            for n in 0..body.len() {
                let _ = decode(op, Body::one(&body[..n]), false);
                let _ = decode(op, Body::one(&body[..n]), true);
            }
        }
        assert_eq!(
            decode(SETATTR, Body::one(&[0u8; 87]), false),
            Err(Malformed)
        );
        assert_eq!(decode(LOOKUP, Body::one(b"no-nul"), false), Err(Malformed));
        assert_eq!(
            decode(
                WRITE,
                Body::one(&le(&[&u64b(1), &u64b(0), &u32b(9), &[0u8; 20], b"abc"])),
                false
            ),
            Err(Malformed)
        );
        // A count that would overflow the multiplication is refused.
        assert_eq!(
            decode(
                BATCH_FORGET,
                Body::one(&le(&[&u32b(u32::MAX), &u32b(0)])),
                false
            ),
            Err(Malformed)
        );
    }

    /// io_uring form: the per-opcode header in one piece, names and data in the other.
    #[test]
    fn split_bodies_decode_like_whole_ones() {
        let write = le(&[&u64b(7), &u64b(0), &u32b(3), &[0u8; 20]]);
        assert_eq!(
            decode(WRITE, Body::two(&write, b"abc"), false),
            Ok(Request::Write {
                fh: 7,
                offset: 0,
                data: b"abc"
            })
        );
        assert_eq!(
            decode(LOOKUP, Body::two(&[], b"x\0"), false),
            Ok(Request::Lookup { name: b"x" })
        );
        let mkdir = le(&[&u32b(0o755), &u32b(0)]);
        assert_eq!(
            decode(MKDIR, Body::two(&mkdir, b"d\0"), false),
            Ok(Request::Mkdir {
                mode: 0o755,
                umask: 0,
                name: b"d"
            })
        );
        // A field spanning the two pieces is malformed.
        assert_eq!(
            decode(FORGET, Body::two(&[1, 0, 0, 0], &[0, 0, 0, 0]), false),
            Err(Malformed)
        );
    }

    #[test]
    fn headers_encode_and_decode() {
        let h = out_header(42, -2, 8);
        assert_eq!(h[..4], 24u32.to_le_bytes());
        assert_eq!(h[4..8], (-2i32).to_le_bytes());
        assert_eq!(h[8..], 42u64.to_le_bytes());
        let mut raw = Vec::new();
        Out(&mut raw)
            .u32(56)
            .u32(LOOKUP)
            .u64(9)
            .u64(1)
            .u32(1000)
            .u32(100)
            .u32(4242)
            .u16(0)
            .u16(0);
        assert_eq!(
            InHeader::parse(&raw),
            Ok(InHeader {
                len: 56,
                opcode: LOOKUP,
                unique: 9,
                nodeid: 1,
                uid: 1000,
                gid: 100,
                pid: 4242,
                total_extlen: 0
            })
        );
        assert_eq!(InHeader::parse(&raw[..39]), Err(Malformed));
    }
}
