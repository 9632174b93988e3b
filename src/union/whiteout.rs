//! Whiteout, opaque and redirect markers: every form read in lowers, the kernel form written.
//!
//! Read: a 0/0 character device; `.wh.NAME` (hides NAME in *lower* layers only); a zero-size
//! file with `trusted.`/`user.overlay.whiteout` inside a dir marked `overlay.whiteouts`.
//! Opaque: `trusted.`/`user.overlay.opaque=y` or a `.wh..wh..opq` entry.

use crate::sys::fs::{self, Stat};
use crate::sys::xattr;
use std::os::fd::BorrowedFd;

pub const WH_PREFIX: &[u8] = b".wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Which xattr namespace the overlay markers use in the upper layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerFormat {
    /// `trusted.overlay.*` and 0/0 char-device whiteouts: what kernel overlayfs writes.
    Kernel,
    /// `user.overlay.*` and `.wh.NAME` files: for mounts that may not mknod or set trusted.*.
    User,
}

impl MarkerFormat {
    pub fn opaque_xattr(self) -> &'static [u8] {
        match self {
            MarkerFormat::Kernel => b"trusted.overlay.opaque",
            MarkerFormat::User => b"user.overlay.opaque",
        }
    }
    pub fn redirect_xattr(self) -> &'static [u8] {
        match self {
            MarkerFormat::Kernel => b"trusted.overlay.redirect",
            MarkerFormat::User => b"user.overlay.redirect",
        }
    }
    /// Marks a metadata-only copy-up: the upper file carries the metadata, a lower file the
    /// data (kernel overlayfs' metacopy format; the kernel writes an empty value).
    pub fn metacopy_xattr(self) -> &'static [u8] {
        match self {
            MarkerFormat::Kernel => b"trusted.overlay.metacopy",
            MarkerFormat::User => b"user.overlay.metacopy",
        }
    }
    pub fn nlink_xattr(self) -> &'static [u8] {
        match self {
            MarkerFormat::Kernel => b"trusted.unionrs.nlink",
            MarkerFormat::User => b"user.unionrs.nlink",
        }
    }
    pub fn origin_xattr(self) -> &'static [u8] {
        match self {
            MarkerFormat::Kernel => b"trusted.unionrs.origin",
            MarkerFormat::User => b"user.unionrs.origin",
        }
    }
}

/// Names users never see: `.wh.*` entries are markers, not files.
pub fn is_hidden_name(name: &[u8]) -> bool {
    name.starts_with(WH_PREFIX)
}

/// The `.wh.NAME` marker for a name.
pub fn wh_name(name: &[u8]) -> Vec<u8> {
    [WH_PREFIX, name].concat()
}

/// A 0/0 character device: the kernel's whiteout.
pub fn is_device_whiteout(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Whether `name` (already stat'ed as `st`) in directory `dir` is any form of whiteout object.
pub fn is_whiteout(dir: BorrowedFd<'_>, name: &[u8], st: &Stat) -> bool {
    is_whiteout_marked(dir, name, st, || dir_has_xattr_whiteouts(dir))
}

/// The same, where whether `dir` may hold xattr whiteouts is already known (a cached
/// listing read it once): `marked` is only asked for a zero-size regular file. Reading it
/// again per name costs four getxattr calls through /proc.
pub fn is_whiteout_marked(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &Stat,
    marked: impl FnOnce() -> bool,
) -> bool {
    if is_device_whiteout(st) {
        return true;
    }
    st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_size == 0
        && marked()
        && (xattr::has(dir, name, b"trusted.overlay.whiteout")
            || xattr::has(dir, name, b"user.overlay.whiteout"))
}

/// The kernel only honours xattr whiteouts inside a directory marked as holding them:
/// `overlay.opaque=x` (what kernel 6.x checks) or the older `overlay.whiteouts` marker.
pub fn dir_has_xattr_whiteouts(dir: BorrowedFd<'_>) -> bool {
    let x = |attr: &[u8]| {
        xattr::get(dir, b"", attr)
            .map(|v| v == b"x")
            .unwrap_or(false)
    };
    x(b"trusted.overlay.opaque")
        || x(b"user.overlay.opaque")
        || xattr::has(dir, b"", b"trusted.overlay.whiteouts")
        || xattr::has(dir, b"", b"user.overlay.whiteouts")
}

/// The same, read through an open (not O_PATH) handle of the directory, as a listing has:
/// no /proc path walk per marker.
pub fn open_dir_has_xattr_whiteouts(dir: BorrowedFd<'_>) -> bool {
    let x = |attr: &[u8]| xattr::fget(dir, attr).map(|v| v == b"x").unwrap_or(false);
    let has = |attr: &[u8]| xattr::fget(dir, attr).is_ok();
    x(b"trusted.overlay.opaque")
        || x(b"user.overlay.opaque")
        || has(b"trusted.overlay.whiteouts")
        || has(b"user.overlay.whiteouts")
}

/// Whether directory `name` inside `dir` is opaque (hides everything below its layer).
pub fn is_opaque(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    let yes = |attr: &[u8]| {
        xattr::get(dir, name, attr)
            .map(|v| v == b"y")
            .unwrap_or(false)
    };
    if yes(b"trusted.overlay.opaque") || yes(b"user.overlay.opaque") {
        return true;
    }
    match fs::open_at(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0) {
        Ok(d) => fs::stat_at(std::os::fd::AsFd::as_fd(&d), OPAQUE_MARKER).is_ok(),
        Err(_) => false,
    }
}

/// The redirect of a renamed directory, as a path below the layer root without leading `/`.
/// A relative redirect (no `/`) names a sibling in the same parent directory.
pub fn redirect(dir: BorrowedFd<'_>, name: &[u8], parent_path: &[u8]) -> Option<Vec<u8>> {
    let value = xattr::get(dir, name, b"trusted.overlay.redirect")
        .or_else(|_| xattr::get(dir, name, b"user.overlay.redirect"))
        .ok()?;
    if let Some(abs) = value.strip_prefix(b"/") {
        Some(abs.to_vec())
    } else if value.contains(&b'/') || value.is_empty() {
        None
    } else {
        Some(super::path::join(parent_path, &value))
    }
}

/// Whether a metacopy xattr value is one the kernel accepts: empty (what it writes without
/// fs-verity), or its `struct ovl_metacopy` (version 0, then its own length, flags and an
/// optional digest; at least 4 bytes).
pub fn is_valid_metacopy(value: &[u8]) -> bool {
    value.is_empty() || (value.len() >= 4 && value[0] == 0 && usize::from(value[1]) == value.len())
}

/// Overlay-private xattrs, never shown to or settable by users.
pub fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name.starts_with(b"trusted.unionrs.")
        || name.starts_with(b"user.unionrs.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_private_names() {
        for (name, hidden) in [
            (&b".wh.foo"[..], true),
            (b".wh..wh..opq", true),
            (b"foo", false),
            (b".whfoo", false),
            (b".w", false),
        ] {
            assert_eq!(
                is_hidden_name(name),
                hidden,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
        for (name, private) in [
            (&b"trusted.overlay.opaque"[..], true),
            (b"user.overlay.whiteout", true),
            (b"trusted.unionrs.origin", true),
            (b"user.mime_type", false),
            (b"security.capability", false),
            (b"trusted.foo", false),
        ] {
            assert_eq!(is_private_xattr(name), private);
        }
        assert_eq!(wh_name(b"x"), b".wh.x");
    }
}
