//! Thin, checked wrappers over the few syscalls std does not offer (the only `unsafe` in tests).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The errno of a result, 0 for success: what tests compare.
pub fn errno<T>(r: &io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

pub fn lsetxattr(p: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(r as _).map(drop)
}

pub fn lgetxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid strings; buf is writable for its length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(check(r as _)? as usize);
    Ok(buf)
}

pub fn llistxattr(p: &Path) -> io::Result<Vec<String>> {
    let c = cpath(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid string; buf is writable for its length.
    let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(check(r as _)? as usize);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

pub fn lremovexattr(p: &Path, name: &str) -> io::Result<()> {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings.
    check(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) } as _).map(drop)
}

pub fn mknod(p: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let c = cpath(p);
    // SAFETY: valid NUL-terminated string.
    check(unsafe { libc::mknod(c.as_ptr(), mode, libc::makedev(major, minor)) } as _).map(drop)
}

pub fn mkfifo(p: &Path, mode: u32) -> io::Result<()> {
    mknod(p, libc::S_IFIFO | mode, 0, 0)
}

/// truncate(2): by path, with no open file.
pub fn truncate(p: &Path, len: u64) -> io::Result<()> {
    let c = cpath(p);
    // SAFETY: valid NUL-terminated string.
    check(unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) } as _).map(drop)
}

/// renameat2(2) with flags such as `libc::RENAME_NOREPLACE` / `RENAME_EXCHANGE`.
pub fn renameat2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (a, b) = (cpath(from), cpath(to));
    // SAFETY: valid NUL-terminated strings; AT_FDCWD for relative resolution.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    check(r as _).map(drop)
}

/// utimensat(2) on a path without following a final symlink, nanosecond precision.
pub fn lutimens(p: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    let c = cpath(p);
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid string and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(r as _).map(drop)
}

pub fn fallocate(f: &File, mode: i32, off: i64, len: i64) -> io::Result<()> {
    // SAFETY: plain syscall on an owned fd.
    check(unsafe { libc::fallocate(f.as_raw_fd(), mode, off, len) } as _).map(drop)
}

pub fn lseek(f: &File, off: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: plain syscall on an owned fd.
    check(unsafe { libc::lseek(f.as_raw_fd(), off, whence) } as _)
}

pub fn flock(f: &File, op: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an owned fd.
    check(unsafe { libc::flock(f.as_raw_fd(), op) } as _).map(drop)
}

/// fcntl record lock on the whole file: `cmd` is F_SETLK/F_OFD_SETLK/F_OFD_GETLK..., returns the lock.
pub fn fcntl_lock(f: &File, cmd: i32, typ: i32) -> io::Result<libc::flock> {
    // SAFETY: flock is plain old data; zeroed is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: fcntl with a pointer to a live, writable struct flock.
    check(unsafe { libc::fcntl(f.as_raw_fd(), cmd, &mut fl as *mut libc::flock) } as _)?;
    Ok(fl)
}

pub fn statfs(p: &Path) -> io::Result<libc::statfs> {
    let c = cpath(p);
    // SAFETY: statfs is plain old data; the kernel fills it.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid string and a writable struct.
    check(unsafe { libc::statfs(c.as_ptr(), &mut s) } as _)?;
    Ok(s)
}

pub fn ioctl_none(f: &File, req: libc::c_ulong) -> io::Result<()> {
    let mut arg = [0u8; 256];
    // SAFETY: a 256-byte scratch buffer is larger than any argument of the requests used.
    check(unsafe { libc::ioctl(f.as_raw_fd(), req, arg.as_mut_ptr()) } as _).map(drop)
}

pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid as i32, sig) } as _).map(drop)
}

/// Writes `data` at offset 0 through a MAP_SHARED mapping of `f` (which must be at least that long).
pub fn mmap_write(f: &File, data: &[u8]) -> io::Result<()> {
    // SAFETY: a fresh shared mapping of len bytes of an fd opened read-write; unmapped below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            data.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), data.len());
        let r = libc::msync(p, data.len(), libc::MS_SYNC);
        libc::munmap(p, data.len());
        check(r as _).map(drop)
    }
}

/// statx(2) of `p` asking for `mask` only (as `stat --printf=%Y` does): (mtime, ctime) as
/// (seconds, nanoseconds). A FUSE inode refreshes only the fields asked for that it knows
/// to be stale, so this sees what a full stat may not.
pub fn statx_times(p: &Path, mask: u32) -> io::Result<((i64, u32), (i64, u32))> {
    let c = cpath(p);
    // SAFETY: statx is plain old data; zeroed is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid string and a writable struct statx.
    check(unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, mask, &mut st) } as _)?;
    let t = |t: libc::statx_timestamp| (t.tv_sec, t.tv_nsec);
    Ok((t(st.stx_mtime), t(st.stx_ctime)))
}

/// Writes `data` at offset 0 through a MAP_SHARED mapping of `f`, as `xfs_io -c 'mmap'
/// -c 'mwrite'` does: no msync; `during` runs while the mapping is still there.
pub fn mmap_write_then(f: &File, data: &[u8], during: impl FnOnce()) -> io::Result<()> {
    // SAFETY: a fresh shared mapping of len bytes of an fd opened read-write; unmapped below,
    // after `during`, which does not touch it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            data.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), data.len());
        during();
        libc::munmap(p, data.len());
    }
    Ok(())
}

/// linkat(2) of an open file (an O_TMPFILE one) to `new`, with AT_EMPTY_PATH (root).
pub fn link_fd(f: &File, new: &Path) -> io::Result<()> {
    let (e, n) = (CString::new("").unwrap(), cpath(new));
    // SAFETY: valid NUL-terminated strings; an open fd.
    let r = unsafe {
        libc::linkat(
            f.as_raw_fd(),
            e.as_ptr(),
            libc::AT_FDCWD,
            n.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    check(r as _).map(drop)
}

pub fn fsetxattr(f: &File, name: &str, value: &[u8]) -> io::Result<()> {
    let n = CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated name and a buffer of the given length; an open fd.
    let r = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(r as _).map(drop)
}

/// name_to_handle_at(2) of `p` with `flags` (0, or `libc::AT_HANDLE_FID`): the handle's
/// bytes, or the error.
pub fn name_to_handle(p: &Path, flags: i32) -> io::Result<Vec<u8>> {
    let c = cpath(p);
    // struct file_handle (handle_bytes, handle_type) followed by room for 128 bytes.
    let mut buf = [0u32; 2 + 32];
    buf[0] = 128;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: buf is a writable, aligned file_handle with 128 bytes of f_handle room, as
    // handle_bytes says; valid string and out-pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c.as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id as *mut libc::c_int,
            flags,
        )
    };
    check(r as _)?;
    let n = buf[0] as usize;
    Ok(buf[2..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(n)
        .collect())
}

/// FS_IOC_GETFLAGS (`lsattr`) of an open file.
pub fn getflags(f: &File) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the live pointer.
    check(unsafe { libc::ioctl(f.as_raw_fd(), 0x8008_6601, &mut v as *mut libc::c_int) } as _)?;
    Ok(v as u32)
}

/// FS_IOC_SETFLAGS (`chattr`) of an open file.
pub fn setflags(f: &File, flags: u32) -> io::Result<()> {
    let v = flags as libc::c_int;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the live pointer.
    check(unsafe { libc::ioctl(f.as_raw_fd(), 0x4008_6602, &v as *const libc::c_int) } as _)
        .map(drop)
}
