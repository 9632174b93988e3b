//! The only place with `unsafe`: thin, safe wrappers over the raw syscalls the union needs.
//!
//! Every wrapper takes a directory fd plus a single name (or a path resolved with
//! openat2 RESOLVE_BENEATH), so a symlink inside a layer never leads outside it.
//! Errors are plain errno values so the union core can hand them to the kernel as is.

pub mod fs;
pub mod fuse_dev;
pub mod io;
pub mod proc;
pub mod tty;
pub mod uring;
pub mod xattr;

use std::ffi::{CStr, CString};
use std::fmt;

/// An errno value. Kept as a newtype so unknown kernel values stay representable.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

pub type SysResult<T> = Result<T, Errno>;

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EDQUOT: Errno = Errno(libc::EDQUOT);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const ENOTSUP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const ELOOP: Errno = Errno(libc::ELOOP);
    pub const EMLINK: Errno = Errno(libc::EMLINK);
    pub const ETXTBSY: Errno = Errno(libc::ETXTBSY);

    /// The calling thread's errno after a failed libc call.
    pub fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    pub fn code(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            std::io::Error::from_raw_os_error(self.0),
            self.0
        )
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// Turns a byte string into a C string; an interior NUL can never name a file.
pub(crate) fn cstr(bytes: &[u8]) -> SysResult<CString> {
    CString::new(bytes).map_err(|_| Errno::EINVAL)
}

/// Same, in `buf` when it fits (a name: at most 255 bytes), else on the heap.
pub(crate) fn cstr_in<'b>(
    buf: &'b mut [u8; 256],
    bytes: &[u8],
) -> SysResult<std::borrow::Cow<'b, CStr>> {
    if bytes.len() >= buf.len() {
        return Ok(std::borrow::Cow::Owned(cstr(bytes)?));
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()] = 0;
    CStr::from_bytes_with_nul(&buf[..=bytes.len()])
        .map(std::borrow::Cow::Borrowed)
        .map_err(|_| Errno::EINVAL)
}

/// Maps a libc return value (-1 = failure) to a result.
pub(crate) fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Same as [`check`] for calls returning ssize_t.
pub(crate) fn check_size(ret: isize) -> SysResult<usize> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as usize)
    }
}
