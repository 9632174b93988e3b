//! Extended attributes of one name in a directory, without following a final symlink.
//!
//! There is no portable `*xattrat` call before Linux 6.13, so a name is reached as
//! `/proc/self/fd/DIRFD/NAME` with the `l*xattr` calls: the directory fd is already confined
//! to its layer and the final component is not followed. An empty name means the directory
//! (or file) behind the fd itself.

use super::{Errno, SysResult, check, check_size, cstr};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};

fn proc_path(fd: BorrowedFd<'_>, name: &[u8]) -> SysResult<CString> {
    let mut p = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    cstr(&p)
}

/// Reads an attribute; ENODATA when absent.
pub fn get(fd: BorrowedFd<'_>, name: &[u8], attr: &[u8]) -> SysResult<Vec<u8>> {
    let p = proc_path(fd, name)?;
    let a = cstr(attr)?;
    let follow = name.is_empty();
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings; buffer valid for its length.
        let n = unsafe {
            if follow {
                libc::getxattr(p.as_ptr(), a.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            } else {
                libc::lgetxattr(p.as_ptr(), a.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            }
        };
        match check_size(n) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::ERANGE) if buf.len() < 65536 * 2 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// True when the attribute exists (any error reads as absent).
pub fn has(fd: BorrowedFd<'_>, name: &[u8], attr: &[u8]) -> bool {
    get(fd, name, attr).is_ok()
}

/// Sets an attribute; `flags` is XATTR_CREATE / XATTR_REPLACE or 0.
pub fn set(
    fd: BorrowedFd<'_>,
    name: &[u8],
    attr: &[u8],
    value: &[u8],
    flags: i32,
) -> SysResult<()> {
    let p = proc_path(fd, name)?;
    let a = cstr(attr)?;
    // SAFETY: valid C strings; value valid for its length.
    check(unsafe {
        if name.is_empty() {
            libc::setxattr(
                p.as_ptr(),
                a.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        } else {
            libc::lsetxattr(
                p.as_ptr(),
                a.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        }
    })
    .map(drop)
}

pub fn remove(fd: BorrowedFd<'_>, name: &[u8], attr: &[u8]) -> SysResult<()> {
    let p = proc_path(fd, name)?;
    let a = cstr(attr)?;
    // SAFETY: valid C strings.
    check(unsafe {
        if name.is_empty() {
            libc::removexattr(p.as_ptr(), a.as_ptr())
        } else {
            libc::lremovexattr(p.as_ptr(), a.as_ptr())
        }
    })
    .map(drop)
}

/// Lists attribute names.
pub fn list(fd: BorrowedFd<'_>, name: &[u8]) -> SysResult<Vec<Vec<u8>>> {
    let p = proc_path(fd, name)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: valid C string; buffer valid for its length.
        let n = unsafe {
            if name.is_empty() {
                libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            } else {
                libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            }
        };
        match check_size(n) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_vec())
                    .collect());
            }
            Err(Errno::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}
