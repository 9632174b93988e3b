//! Extended attributes of one name in a directory, without following a final symlink.
//!
//! There is no portable `*xattrat` call before Linux 6.13, so a name is reached as
//! `/proc/self/fd/DIRFD/NAME` with the `l*xattr` calls: the directory fd is already confined
//! to its layer and the final component is not followed. An empty name means the directory
//! (or file) behind the fd itself.

use super::{Errno, SysResult, check, check_size, cstr};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

// Linux 6.13+ `*xattrat` calls (x86_64 and aarch64 share these numbers): no /proc walk.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// Cleared the first time the kernel answers ENOSYS to an `*xattrat` call.
static HAVE_XATTRAT: AtomicBool = AtomicBool::new(true);

#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// The (dirfd, path, flags) triple for an `*xattrat` call on `name` in `fd` (or `fd` itself).
fn at_args(name: &[u8]) -> SysResult<(CString, libc::c_uint)> {
    Ok((cstr(name)?, at_flags(name)))
}

fn at_flags(name: &[u8]) -> libc::c_uint {
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    flags as libc::c_uint
}

/// Runs an `*xattrat` call; None when the kernel lacks them (use the /proc path instead).
/// An empty name (the fd itself) always goes through /proc: with AT_EMPTY_PATH the kernel
/// wants a real open file, and our directory handles are O_PATH.
fn xattrat(name: &[u8], call: impl FnOnce() -> libc::c_long) -> Option<SysResult<usize>> {
    if name.is_empty() || !HAVE_XATTRAT.load(Ordering::Relaxed) {
        return None;
    }
    let r = call();
    if r >= 0 {
        return Some(Ok(r as usize));
    }
    let e = Errno::last();
    if e == Errno::ENOSYS {
        HAVE_XATTRAT.store(false, Ordering::Relaxed);
        return None;
    }
    Some(Err(e))
}

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
    // Asked on every directory a lookup meets (opaque, redirect), mostly for nothing: the
    // C strings are built on the stack.
    let (mut abuf, mut nbuf) = ([0u8; 256], [0u8; 256]);
    let a = super::cstr_in(&mut abuf, attr)?;
    let (path, flags) = (super::cstr_in(&mut nbuf, name)?, at_flags(name));
    let mut buf = vec![0u8; 256];
    let read = growing(&mut buf, VALUE_MAX, |buf| {
        let mut args = XattrArgs {
            value: buf.as_mut_ptr() as u64,
            size: buf.len() as u32,
            flags: 0,
        };
        // SAFETY: valid C strings; `args` points at a buffer valid for `size` bytes.
        xattrat(name, || unsafe {
            libc::syscall(
                SYS_GETXATTRAT,
                fd.as_raw_fd(),
                path.as_ptr(),
                flags,
                a.as_ptr(),
                &mut args as *mut XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        })
    });
    let n = match read {
        Some(r) => r?,
        None => {
            let p = proc_path(fd, name)?;
            let follow = name.is_empty();
            always(growing(&mut buf, VALUE_MAX, |buf| {
                // SAFETY: valid C strings; buffer valid for its length.
                Some(check_size(unsafe {
                    if follow {
                        libc::getxattr(p.as_ptr(), a.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                    } else {
                        libc::lgetxattr(p.as_ptr(), a.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                    }
                }))
            }))?
        }
    };
    buf.truncate(n);
    Ok(buf)
}

/// Reads an attribute of an open file or directory (not an O_PATH handle) through the fd
/// itself: no /proc path walk. ENODATA when absent.
pub fn fget(fd: BorrowedFd<'_>, attr: &[u8]) -> SysResult<Vec<u8>> {
    let mut abuf = [0u8; 256];
    let a = super::cstr_in(&mut abuf, attr)?;
    let mut buf = vec![0u8; 256];
    let n = always(growing(&mut buf, VALUE_MAX, |buf| {
        // SAFETY: valid C string; buffer valid for its length.
        Some(check_size(unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                a.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }))
    }))?;
    buf.truncate(n);
    Ok(buf)
}

/// Largest value / name list read, in bytes (the buffers grow x4 up to this).
const VALUE_MAX: usize = 65536 * 2;
const LIST_MAX: usize = 1 << 20;

/// Calls `read` with `buf`, growing it (x4, below `max`) while the kernel answers ERANGE.
/// None when `read` says the call is not available (see `xattrat`).
fn growing(
    buf: &mut Vec<u8>,
    max: usize,
    mut read: impl FnMut(&mut Vec<u8>) -> Option<SysResult<usize>>,
) -> Option<SysResult<usize>> {
    loop {
        match read(buf)? {
            Err(Errno::ERANGE) if buf.len() < max => {
                let n = buf.len() * 4;
                buf.resize(n, 0);
            }
            r => return Some(r),
        }
    }
}

/// The answer of a `growing` call that is always available.
fn always(r: Option<SysResult<usize>>) -> SysResult<usize> {
    r.unwrap_or(Err(Errno::ENOSYS))
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
    let a = cstr(attr)?;
    let (path, at_flags) = at_args(name)?;
    let args = XattrArgs {
        value: value.as_ptr() as u64,
        size: value.len() as u32,
        flags: flags as u32,
    };
    // SAFETY: valid C strings; `args` points at `value`, valid for its length.
    let r = xattrat(name, || unsafe {
        libc::syscall(
            SYS_SETXATTRAT,
            fd.as_raw_fd(),
            path.as_ptr(),
            at_flags,
            a.as_ptr(),
            &args as *const XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    });
    if let Some(r) = r {
        return r.map(drop);
    }
    let p = proc_path(fd, name)?;
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
    let a = cstr(attr)?;
    let (path, at_flags) = at_args(name)?;
    // SAFETY: valid C strings.
    let r = xattrat(name, || unsafe {
        libc::syscall(
            SYS_REMOVEXATTRAT,
            fd.as_raw_fd(),
            path.as_ptr(),
            at_flags,
            a.as_ptr(),
        )
    });
    if let Some(r) = r {
        return r.map(drop);
    }
    let p = proc_path(fd, name)?;
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
    let (path, at_flags) = at_args(name)?;
    let mut buf = vec![0u8; 1024];
    let read = growing(&mut buf, LIST_MAX, |buf| {
        // SAFETY: valid C string; buffer valid for its length.
        xattrat(name, || unsafe {
            libc::syscall(
                SYS_LISTXATTRAT,
                fd.as_raw_fd(),
                path.as_ptr(),
                at_flags,
                buf.as_mut_ptr(),
                buf.len(),
            )
        })
    });
    let n = match read {
        Some(r) => r?,
        None => {
            let p = proc_path(fd, name)?;
            always(growing(&mut buf, LIST_MAX, |buf| {
                // SAFETY: valid C string; buffer valid for its length.
                Some(check_size(unsafe {
                    if name.is_empty() {
                        libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                    } else {
                        libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                    }
                }))
            }))?
        }
    };
    Ok(split_names(&buf[..n]))
}

/// Lists the attribute names of an open file or directory (not an O_PATH handle) through
/// the fd itself: no /proc path walk.
pub fn flist(fd: BorrowedFd<'_>) -> SysResult<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    let n = always(growing(&mut buf, LIST_MAX, |buf| {
        // SAFETY: buffer valid for its length.
        Some(check_size(unsafe {
            libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
        }))
    }))?;
    Ok(split_names(&buf[..n]))
}

fn split_names(buf: &[u8]) -> Vec<Vec<u8>> {
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect()
}
