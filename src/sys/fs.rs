//! Name-level filesystem calls relative to a directory fd, never following a final symlink.
//!
//! Paths below a layer root are opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
//! so neither `..` nor a symlink planted in a layer can lead the daemon outside it.

use super::{Errno, SysResult, check, check_size, cstr};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub type Stat = libc::stat;

/// openat2(2) under `root`, refusing `..` escapes, absolute paths and any symlink on the way.
/// An empty path opens `root` itself.
pub fn open_beneath(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: i32,
    mode: u32,
) -> SysResult<OwnedFd> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_SYMLINKS;
    openat2(root, path, flags, mode, resolve)
}

/// openat2(2) with `root` taken as `/`: symlinks are followed, but absolute targets and `..`
/// are resolved inside `root`, as the kernel would for a process chrooted there. For
/// reading files of a container's rootfs (its /etc/passwd, its commands) from outside it.
pub fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: i32) -> SysResult<OwnedFd> {
    openat2(
        root,
        path,
        flags,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

fn openat2(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: i32,
    mode: u32,
    resolve: u64,
) -> SysResult<OwnedFd> {
    let path = if path.is_empty() { &b"."[..] } else { path };
    let c = cstr(path)?;
    // SAFETY: open_how is plain data; all-zero is valid and the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = resolve;
    loop {
        // SAFETY: `c` is a valid NUL-terminated string and `how` a valid open_how for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel returned a fresh fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        let e = Errno::last();
        if e.0 != libc::EAGAIN && e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// Opens a directory path below `root` as an O_PATH handle, for the *at calls below.
pub fn open_dir_path(root: BorrowedFd<'_>, path: &[u8]) -> SysResult<OwnedFd> {
    open_beneath(root, path, libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// Opens an absolute or relative path (only for the daemon's own set-up, never layer content).
pub fn open_path(path: &CStr, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: valid C string; the returned fd is owned by the caller.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: fresh fd from open(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A detached bind mount of the directory `path` (open_tree(2) OPEN_TREE_CLONE) whose mount
/// attributes (mount_setattr(2)) are `attr_set`, with `attr_clr` cleared first (MOUNT_ATTR_*):
/// an O_PATH fd of its root. Files opened beneath it follow those attributes whatever flags
/// the opener uses: the kernel reopens FUSE passthrough backing files with the user's flags,
/// not ours, and its reads update atimes by the backing file's mount. Needs CAP_SYS_ADMIN
/// over the mount namespace.
pub fn open_private_tree(path: &CStr, attr_set: u64, attr_clr: u64) -> SysResult<OwnedFd> {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: valid C string; the returned fd is owned by the caller.
    let fd = check_size(unsafe {
        libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) as isize
    })?;
    // SAFETY: fresh fd from open_tree(2).
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = libc::mount_attr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `tree` is a live fd, the path is an empty C string, `attr` lives across the
    // call and its size is passed.
    check_size(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        ) as isize
    })?;
    Ok(tree)
}

/// `open_private_tree` made read-only and noatime: files beneath it keep their atime and
/// cannot be written (a lower layer, as kernel overlayfs mounts its lowers).
pub fn open_read_only_tree(path: &CStr) -> SysResult<OwnedFd> {
    open_private_tree(
        path,
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOATIME,
        libc::MOUNT_ATTR__ATIME,
    )
}

/// openat(2) of one name in `dir`, never following a final symlink.
pub fn open_at(dir: BorrowedFd<'_>, name: &[u8], flags: i32, mode: u32) -> SysResult<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid C string; the returned fd is owned by the caller.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    })?;
    // SAFETY: fresh fd from openat(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Re-opens an fd (typically O_PATH) with new flags through /proc/self/fd.
pub fn reopen(fd: BorrowedFd<'_>, flags: i32) -> SysResult<OwnedFd> {
    let path = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    open_path(&path, flags)
}

pub fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<Stat> {
    // The hottest call of all (every lookup): the C string is built on the stack.
    let mut buf = [0u8; 256];
    let c = super::cstr_in(&mut buf, name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: Stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// An all-zero stat (a valid value of the plain-data struct).
pub fn empty_stat() -> Stat {
    // SAFETY: libc::stat is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

pub fn fstat(fd: BorrowedFd<'_>) -> SysResult<Stat> {
    stat_at(fd, b"")
}

pub fn mkdir_at(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> SysResult<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }).map(drop)
}

pub fn mknod_at(dir: BorrowedFd<'_>, name: &[u8], mode: u32, rdev: u64) -> SysResult<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, rdev) }).map(drop)
}

pub fn symlink_at(target: &[u8], dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) }).map(drop)
}

/// A new name `new` in `new_dir` for the file open as `fd` (an O_TMPFILE file): linkat with
/// AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH, else through /proc/self/fd.
pub fn link_fd(fd: BorrowedFd<'_>, new_dir: BorrowedFd<'_>, new: &[u8]) -> SysResult<()> {
    match link_at(fd, b"", new_dir, new) {
        Err(e) if e == Errno::ENOENT || e.0 == libc::EPERM => {
            let (p, n) = (
                cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?,
                cstr(new)?,
            );
            // SAFETY: valid C strings.
            check(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    p.as_ptr(),
                    new_dir.as_raw_fd(),
                    n.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            })
            .map(drop)
        }
        r => r,
    }
}

pub fn link_at(
    old_dir: BorrowedFd<'_>,
    old: &[u8],
    new_dir: BorrowedFd<'_>,
    new: &[u8],
) -> SysResult<()> {
    let (o, n) = (cstr(old)?, cstr(new)?);
    let flags = if old.is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        0
    };
    // SAFETY: valid C strings.
    check(unsafe {
        libc::linkat(
            old_dir.as_raw_fd(),
            o.as_ptr(),
            new_dir.as_raw_fd(),
            n.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

pub fn unlink_at(dir: BorrowedFd<'_>, name: &[u8], remove_dir: bool) -> SysResult<()> {
    let c = cstr(name)?;
    let flags = if remove_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
}

/// renameat2(2); `flags` takes RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT.
pub fn rename_at(
    old_dir: BorrowedFd<'_>,
    old: &[u8],
    new_dir: BorrowedFd<'_>,
    new: &[u8],
    flags: u32,
) -> SysResult<()> {
    let (o, n) = (cstr(old)?, cstr(new)?);
    // SAFETY: valid C strings.
    check(unsafe {
        libc::renameat2(
            old_dir.as_raw_fd(),
            o.as_ptr(),
            new_dir.as_raw_fd(),
            n.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

pub fn readlink_at(dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<Vec<u8>> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buffer is valid for buf.len() bytes.
    let n = check_size(unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// chmod of one name without following a symlink (fchmodat2, with a fallback for old kernels
/// that is still safe because the union only chmods names it has just looked up as non-links).
pub fn chmod_at(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> SysResult<()> {
    let c = cstr(name)?;
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    // SAFETY: valid C string; fchmodat2 takes (dirfd, path, mode, flags).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            mode,
            flags,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let e = Errno::last();
    if e.0 != libc::ENOSYS && e.0 != libc::EINVAL {
        return Err(e);
    }
    if name.is_empty() {
        let p = cstr(format!("/proc/self/fd/{}", dir.as_raw_fd()).as_bytes())?;
        // SAFETY: valid C string.
        return check(unsafe { libc::chmod(p.as_ptr(), mode) }).map(drop);
    }
    // SAFETY: valid C string.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode, 0) }).map(drop)
}

/// lchown of one name; u32::MAX leaves an id unchanged. Empty name = `dir` itself.
pub fn chown_at(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> SysResult<()> {
    let c = cstr(name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: valid C string.
    check(unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), uid, gid, flags) }).map(drop)
}

/// A timestamp to set: seconds and nanoseconds, "now", or "leave as is".
#[derive(Clone, Copy, Debug)]
pub enum TimeSpec {
    At(i64, i64),
    Now,
    Omit,
}

fn to_timespec(t: TimeSpec) -> libc::timespec {
    match t {
        TimeSpec::At(s, ns) => libc::timespec {
            tv_sec: s,
            tv_nsec: ns,
        },
        TimeSpec::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        TimeSpec::Omit => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    }
}

/// utimensat of one name without following symlinks. Empty name = `dir` itself.
pub fn utimes_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    atime: TimeSpec,
    mtime: TimeSpec,
) -> SysResult<()> {
    let times = [to_timespec(atime), to_timespec(mtime)];
    if name.is_empty() {
        // The fd is usually O_PATH, which utimensat(fd, NULL) refuses: go through its
        // /proc/self/fd link, which names the object itself.
        let p = cstr(format!("/proc/self/fd/{}", dir.as_raw_fd()).as_bytes())?;
        // SAFETY: valid C string; `times` points to two valid timespecs.
        return check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) })
            .map(drop);
    }
    let c = cstr(name)?;
    // SAFETY: valid C string; `times` points to two valid timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fstatfs(fd: BorrowedFd<'_>) -> SysResult<libc::statvfs> {
    // SAFETY: zeroed statvfs is a valid out-buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// One directory entry as the kernel reports it; names are bytes.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: u8,
    pub name: Vec<u8>,
}

/// Reads a whole directory (without `.` and `..`) from an fd opened O_RDONLY|O_DIRECTORY.
pub fn read_dir(fd: BorrowedFd<'_>) -> SysResult<Vec<DirEntry>> {
    let mut out = Vec::new();
    // Not zeroed: only what the kernel wrote is read (zeroing 32 KiB cost more than the
    // getdents64 call itself for a small directory).
    let mut space: Vec<u8> = Vec::with_capacity(32 * 1024);
    loop {
        // SAFETY: the buffer is valid for writes of its capacity.
        let n = check_size(unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                space.as_mut_ptr(),
                space.capacity(),
            ) as isize
        })?;
        if n == 0 {
            return Ok(out);
        }
        // SAFETY: getdents64 initialized the first n bytes (n <= capacity).
        let buf = unsafe { std::slice::from_raw_parts(space.as_ptr(), n) };
        let mut off = 0;
        while off < n {
            // linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name...
            let ino = u64::from_ne_bytes(buf[off..off + 8].try_into().unwrap());
            let reclen = u16::from_ne_bytes(buf[off + 16..off + 18].try_into().unwrap()) as usize;
            let kind = buf[off + 18];
            let name_area = &buf[off + 19..off + reclen];
            let len = name_area
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_area.len());
            let name = &name_area[..len];
            if name != b"." && name != b".." {
                out.push(DirEntry {
                    ino,
                    kind,
                    name: name.to_vec(),
                });
            }
            off += reclen;
        }
    }
}

/// Opens a directory for listing relative to an O_PATH handle of it.
pub fn open_dir_for_listing(dir: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    open_at(dir, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// flock(LOCK_EX | LOCK_NB): EWOULDBLOCK when another open file holds the lock.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }).map(drop)
}

/// The process umask is cleared so modes the kernel sends are applied exactly.
pub fn clear_umask() {
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(0) };
}

pub fn major(dev: u64) -> u32 {
    libc::major(dev)
}

pub fn minor(dev: u64) -> u32 {
    libc::minor(dev)
}

pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

/// MAX_HANDLE_SZ of the kernel's exportfs.
const MAX_HANDLE_SZ: usize = 128;

/// struct file_handle with room for the largest handle.
#[repr(C)]
struct Handle {
    bytes: u32,
    kind: i32,
    data: [u8; MAX_HANDLE_SZ],
}

/// The filesystem's file handle of `name` in `dir` (not followed if a symlink): its type and
/// bytes, as name_to_handle_at(2) gives them. EOPNOTSUPP where the filesystem has none.
pub fn file_handle_at(dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<(i32, Vec<u8>)> {
    let c = cstr(name)?;
    let mut h = Handle {
        bytes: MAX_HANDLE_SZ as u32,
        kind: 0,
        data: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        0
    };
    // SAFETY: `h` is laid out as struct file_handle with room for MAX_HANDLE_SZ bytes, as
    // its `bytes` field says; valid C string and out-pointers.
    check(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut h as *mut Handle,
            &mut mount_id as *mut libc::c_int,
            flags,
        ) as libc::c_int
    })?;
    let n = (h.bytes as usize).min(MAX_HANDLE_SZ);
    Ok((h.kind, h.data[..n].to_vec()))
}

/// The UUID of the filesystem `fd` is on (FS_IOC_GETFSUUID: the superblock's, all zeros for
/// a filesystem that has none).
pub fn fs_uuid(fd: BorrowedFd<'_>) -> SysResult<[u8; 16]> {
    /// _IOR(0x15, 0, struct fsuuid2): struct fsuuid2 { __u8 len; __u8 uuid[16]; }.
    const FS_IOC_GETFSUUID: libc::c_ulong = 0x8011_1500;
    let mut buf = [0u8; 17];
    // SAFETY: the buffer has the size the ioctl number encodes (17 bytes).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFSUUID, buf.as_mut_ptr()) })?;
    let len = (buf[0] as usize).min(16);
    let mut uuid = [0u8; 16];
    uuid[..len].copy_from_slice(&buf[1..1 + len]);
    Ok(uuid)
}

/// Opens the object a file handle (from `file_handle_at`) names on the filesystem `mount_fd`
/// is on (open_by_handle_at(2); needs CAP_DAC_READ_SEARCH). ESTALE when it no longer exists.
pub fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
    flags: i32,
) -> SysResult<OwnedFd> {
    if handle.len() > MAX_HANDLE_SZ {
        return Err(super::Errno(libc::EINVAL));
    }
    let mut h = Handle {
        bytes: handle.len() as u32,
        kind: handle_type,
        data: [0; MAX_HANDLE_SZ],
    };
    h.data[..handle.len()].copy_from_slice(handle);
    // SAFETY: `h` is laid out as struct file_handle holding `bytes` bytes of handle.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &mut h as *mut Handle,
            flags | libc::O_CLOEXEC,
        ) as libc::c_int
    })?;
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (the kernel moves an int, whatever the encoding says)
/// and FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR (struct fsxattr, 28 bytes).
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;

/// The inode flags (`lsattr`) of an open file.
pub fn inode_flags(fd: BorrowedFd<'_>) -> SysResult<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int to the pointer, which is live and writable.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFLAGS, &mut v as *mut libc::c_int) })?;
    Ok(v as u32)
}

/// Sets the inode flags (`chattr`) of an open file.
pub fn set_inode_flags(fd: BorrowedFd<'_>, flags: u32) -> SysResult<()> {
    let v = flags as libc::c_int;
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer, which is live.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_SETFLAGS, &v as *const libc::c_int) })
        .map(drop)
}

/// struct fsxattr of an open file, as 7 u32 (xflags, extsize, nextents, projid, cowextsize,
/// padding).
pub fn fsxattr(fd: BorrowedFd<'_>) -> SysResult<[u32; 7]> {
    let mut v = [0u32; 7];
    // SAFETY: FS_IOC_FSGETXATTR writes a 28-byte struct fsxattr into the live array.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, v.as_mut_ptr()) })?;
    Ok(v)
}

pub fn set_fsxattr(fd: BorrowedFd<'_>, v: &[u32; 7]) -> SysResult<()> {
    // SAFETY: FS_IOC_FSSETXATTR reads a 28-byte struct fsxattr from the live array.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, v.as_ptr()) }).map(drop)
}

/// The statx attributes (`STATX_ATTR_*`: immutable, append-only, ...) of `dir/name`,
/// without following a final symlink (an empty name: `dir` itself).
pub fn attributes_at(dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<u64> {
    let mut buf = [0u8; 256];
    let c = super::cstr_in(&mut buf, name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: statx is plain old data; zeroed is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a writable struct statx.
    check(unsafe { libc::statx(dir.as_raw_fd(), c.as_ptr(), flags, 0, &mut st) })?;
    Ok(st.stx_attributes & st.stx_attributes_mask)
}
