//! File-data calls std does not wrap: copy_file_range, FICLONE, lseek SEEK_DATA/HOLE,
//! fallocate, fdatasync, ioctl passthrough.

use super::{Errno, SysResult, check};
use std::os::fd::{AsRawFd, BorrowedFd};

/// copy_file_range(2) with explicit offsets; returns bytes copied (0 at EOF).
pub fn copy_file_range(
    src: BorrowedFd<'_>,
    src_off: u64,
    dst: BorrowedFd<'_>,
    dst_off: u64,
    len: usize,
) -> SysResult<usize> {
    let mut so = src_off as i64;
    let mut d = dst_off as i64;
    // SAFETY: valid fds and offset pointers for the duration of the call.
    let n =
        unsafe { libc::copy_file_range(src.as_raw_fd(), &mut so, dst.as_raw_fd(), &mut d, len, 0) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// Shares all blocks of `src` with `dst` (reflink); EOPNOTSUPP/EXDEV where the fs cannot.
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> SysResult<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its argument.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) }).map(drop)
}

/// lseek(2); used for SEEK_DATA / SEEK_HOLE as well as plain seeks.
pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> SysResult<i64> {
    // SAFETY: plain syscall on a valid fd.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: i64, len: i64) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset, len) }).map(drop)
}

pub fn fsync(fd: BorrowedFd<'_>, data_only: bool) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe {
        if data_only {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })
    .map(drop)
}

/// Flushes every dirty inode of the filesystem holding `fd` (one call instead of an fsync per
/// file of a freshly unpacked tree).
pub fn syncfs(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as i64) }).map(drop)
}

pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> SysResult<usize> {
    // SAFETY: buffer valid for its length.
    let n = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            offset as i64,
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> SysResult<usize> {
    // SAFETY: buffer valid for its length.
    let n = unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            offset as i64,
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}
