//! Raw calls on a /dev/fuse connection: read a request, write a reply (or a notification),
//! clone the connection for another thread (FUSE_DEV_IOC_CLONE), and register / drop
//! passthrough backing files (FUSE_DEV_IOC_BACKING_OPEN / _CLOSE), per the kernel's
//! include/uapi/linux/fuse.h.

use super::{Errno, SysResult, check, check_size};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

const FUSE_DEV_IOC_MAGIC: u32 = 229;

/// _IOC(dir, type, nr, size) on x86-64/aarch64 layout: dir 2 bits at 30, size 14 bits at 16.
const fn ioc(dir: u32, nr: u32, size: u32) -> libc::c_ulong {
    ((dir << 30) | (size << 16) | (FUSE_DEV_IOC_MAGIC << 8) | nr) as libc::c_ulong
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;
/// _IOR(229, 0, uint32_t)
const FUSE_DEV_IOC_CLONE: libc::c_ulong = ioc(IOC_READ, 0, 4);
/// _IOW(229, 1, struct fuse_backing_map) (16 bytes)
const FUSE_DEV_IOC_BACKING_OPEN: libc::c_ulong = ioc(IOC_WRITE, 1, 16);
/// _IOW(229, 2, uint32_t)
const FUSE_DEV_IOC_BACKING_CLOSE: libc::c_ulong = ioc(IOC_WRITE, 2, 4);

/// struct fuse_backing_map
#[repr(C)]
struct BackingMap {
    fd: i32,
    flags: u32,
    padding: u64,
}

/// Reads one request into `buf` (the kernel hands out whole requests only). ENOENT means the
/// request was interrupted before we read it; ENODEV that the filesystem was unmounted.
pub fn read_request(dev: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is a valid, writable region of buf.len() bytes for the call's duration.
    check_size(unsafe { libc::read(dev.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Writes one reply (or notification) made of `parts`, in a single writev as the kernel
/// requires.
pub fn write_reply(dev: BorrowedFd<'_>, parts: &[&[u8]]) -> SysResult<usize> {
    let iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: each iovec points into a live slice of `parts`; the kernel only reads them.
    check_size(unsafe { libc::writev(dev.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) })
}

/// A new /dev/fuse fd attached to the same connection: each serving thread reads its own, so
/// they do not contend on one read queue.
pub fn clone_dev(dev: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    let fd = super::fs::open_path(c"/dev/fuse", libc::O_RDWR | libc::O_CLOEXEC)?;
    let src: u32 = dev.as_raw_fd() as u32;
    // SAFETY: FUSE_DEV_IOC_CLONE reads one u32 (the fd to clone) from the pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FUSE_DEV_IOC_CLONE, &src as *const u32) })?;
    Ok(fd)
}

/// A dup of `fd` (a connection handle that outlives the session's own fd).
pub fn dup(fd: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd we then own alone.
    let n = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: n is a fresh fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// A passthrough backing file registered with the kernel; dropping it unregisters it.
pub struct Backing {
    dev: Arc<OwnedFd>,
    id: u32,
}

impl Backing {
    /// Registers `file` as a backing file of connection `dev` (needs CAP_SYS_ADMIN).
    pub fn open(dev: &Arc<OwnedFd>, file: BorrowedFd<'_>) -> std::io::Result<Backing> {
        let map = BackingMap {
            fd: file.as_raw_fd(),
            flags: 0,
            padding: 0,
        };
        // SAFETY: the ioctl reads one struct fuse_backing_map from the pointer.
        let id = check(unsafe {
            libc::ioctl(
                dev.as_raw_fd(),
                FUSE_DEV_IOC_BACKING_OPEN,
                &map as *const BackingMap,
            )
        })?;
        Ok(Backing {
            dev: dev.clone(),
            id: id as u32,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        let id = self.id;
        // SAFETY: the ioctl reads one u32 (the backing id) from the pointer.
        let r = unsafe {
            libc::ioctl(
                self.dev.as_raw_fd(),
                FUSE_DEV_IOC_BACKING_CLOSE,
                &id as *const u32,
            )
        };
        if r == -1 {
            log::debug!("closing backing id {id}: {:?}", Errno::last());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ioctl_numbers_match_the_kernel() {
        // Values as the C macros compute them (x86-64), e.g. printed by a test program.
        assert_eq!(super::FUSE_DEV_IOC_CLONE, 0x8004e500);
        assert_eq!(super::FUSE_DEV_IOC_BACKING_OPEN, 0x4010e501);
        assert_eq!(super::FUSE_DEV_IOC_BACKING_CLOSE, 0x4004e502);
    }
}
