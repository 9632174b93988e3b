//! Stat overrides: owner and permission bits kept in an xattr instead of the inode, as
//! fuse-overlayfs' `xattr_permissions=` and containers/storage's `force_mask` keep them.
//!
//! A rootless mount cannot chown files to other ids, and containers/storage with `force_mask`
//! unpacks every layer file with one fixed mode: in both cases the real owner and mode live
//! in an xattr whose value is `UID:GID:MODE` (decimal ids as stored on disk, octal mode).
//! Which xattr a layer uses is marked on its root directory, so a layer written this way is
//! read this way by any later mount. Only directories and regular files carry overrides
//! (user.* xattrs cannot be set on symlinks or device nodes).

use super::Stat;
use crate::sys::{Errno, SysResult, xattr};
use std::os::fd::BorrowedFd;

/// `xattr_permissions=1`: a security.* name only a privileged daemon may write.
pub const PRIVILEGED: &[u8] = b"security.fuseoverlayfs.override_stat";
/// `xattr_permissions=2`: a user.* name a rootless daemon may write.
pub const USER: &[u8] = b"user.fuseoverlayfs.override_stat";
/// What containers/storage writes into layers it unpacks with `force_mask`.
pub const CONTAINERS: &[u8] = b"user.containers.override_stat";

/// The xattr `xattr_permissions=N` writes; `None` for 0 (off).
pub fn name_for_option(level: u8) -> Option<&'static [u8]> {
    match level {
        1 => Some(PRIVILEGED),
        2 => Some(USER),
        _ => None,
    }
}

/// Whether `name` is one of the override xattrs (kept out of the user's view: they are
/// the mount's bookkeeping, and copy-up rewrites them rather than copying them).
pub fn is_override_xattr(name: &[u8]) -> bool {
    name == PRIVILEGED || name == USER || name == CONTAINERS
}

/// The override xattr a layer is marked with on its root, in fuse-overlayfs' order of
/// preference; `None` for a plain layer.
pub fn detect(root: BorrowedFd<'_>) -> Option<&'static [u8]> {
    [PRIVILEGED, CONTAINERS, USER]
        .into_iter()
        .find(|name| xattr::get(root, b"", name).is_ok())
}

/// Owner and permission bits as an override stores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits only (0o7777).
    pub perm: u32,
}

impl Owner {
    pub fn of(st: &Stat) -> Owner {
        Owner {
            uid: st.st_uid,
            gid: st.st_gid,
            perm: st.st_mode & 0o7777,
        }
    }

    /// `UID:GID:MODE`; a leading 0 on the mode (containers/storage writes one) and fields
    /// after the third (newer fuse-overlayfs adds the file type) are accepted.
    pub fn parse(value: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(value).ok()?.trim_end_matches('\0');
        let mut fields = text.split(':');
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        let perm = u32::from_str_radix(fields.next()?, 8).ok()?;
        Some(Owner {
            uid,
            gid,
            perm: perm & 0o7777,
        })
    }

    pub fn format(&self) -> Vec<u8> {
        format!("{}:{}:{:o}", self.uid, self.gid, self.perm).into_bytes()
    }

    /// Puts these values into `st` (the file type stays).
    pub fn apply(&self, st: &mut Stat) {
        st.st_uid = self.uid;
        st.st_gid = self.gid;
        st.st_mode = (st.st_mode & libc::S_IFMT) | self.perm;
    }
}

/// Whether an object of this type can carry an override.
pub fn applies_to(mode: u32) -> bool {
    matches!(mode & libc::S_IFMT, libc::S_IFDIR | libc::S_IFREG)
}

/// The override stored on `dir/name` under `attr`, if any. An unreadable or malformed
/// value counts as none: the inode's own values are then shown, as for a plain layer.
pub fn read(dir: BorrowedFd<'_>, name: &[u8], attr: &[u8]) -> Option<Owner> {
    let value = xattr::get(dir, name, attr).ok()?;
    let owner = Owner::parse(&value);
    if owner.is_none() {
        log::warn!(
            "ignoring malformed {} value {:?}",
            String::from_utf8_lossy(attr),
            String::from_utf8_lossy(&value)
        );
    }
    owner
}

pub fn write(dir: BorrowedFd<'_>, name: &[u8], attr: &[u8], owner: Owner) -> SysResult<()> {
    xattr::set(dir, name, attr, &owner.format(), 0)
}

/// Marks the upper root with `attr` so later mounts read this layer's overrides. The first
/// value is the top lower root's override (fuse-overlayfs' choice), else the root's own
/// owner and mode, so marking changes nothing that is shown.
pub fn mark_upper(
    upper: BorrowedFd<'_>,
    attr: &[u8],
    lower_roots: &[(BorrowedFd<'_>, Option<&'static [u8]>)],
) -> Result<(), String> {
    if xattr::get(upper, b"", attr).is_ok() {
        return Ok(());
    }
    let inherited = lower_roots
        .iter()
        .find_map(|(root, name)| name.and_then(|n| read(*root, b"", n)));
    let owner = match inherited {
        Some(o) => o,
        None => Owner::of(&crate::sys::fs::fstat(upper).map_err(|e| e.to_string())?),
    };
    write(upper, b"", attr, owner).map_err(|e| match e {
        Errno::EPERM | Errno::EACCES => format!(
            "xattr_permissions: cannot write {} on the upper dir ({e}): use xattr_permissions=2 when not privileged",
            String::from_utf8_lossy(attr)
        ),
        e => format!(
            "xattr_permissions: cannot write {} on the upper dir: {e}",
            String::from_utf8_lossy(attr)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_both_ways() {
        let o = Owner {
            uid: 1000,
            gid: 100,
            perm: 0o4755,
        };
        assert_eq!(o.format(), b"1000:100:4755");
        assert_eq!(Owner::parse(b"1000:100:4755"), Some(o));
        // containers/storage's form, a C string, and newer fuse-overlayfs' type field.
        assert_eq!(Owner::parse(b"1000:100:04755"), Some(o));
        assert_eq!(Owner::parse(b"1000:100:4755\0"), Some(o));
        assert_eq!(Owner::parse(b"1000:100:4755:file"), Some(o));
        // fuse-overlayfs 1.10 writes the file-type bits too (measured: `0:0:104711`).
        assert_eq!(Owner::parse(b"1000:100:104755"), Some(o));
        for bad in [&b""[..], b"1:2", b"a:2:755", b"1:2:9", b"1:-2:755", b"\xff"] {
            assert_eq!(Owner::parse(bad), None, "{bad:?}");
        }
        let mut st = crate::sys::fs::empty_stat();
        st.st_mode = libc::S_IFREG | 0o700;
        o.apply(&mut st);
        assert_eq!(
            (st.st_uid, st.st_gid, st.st_mode),
            (1000, 100, libc::S_IFREG | 0o4755)
        );
    }

    #[test]
    fn option_levels() {
        assert_eq!(name_for_option(0), None);
        assert_eq!(name_for_option(1), Some(PRIVILEGED));
        assert_eq!(name_for_option(2), Some(USER));
        assert!(is_override_xattr(CONTAINERS) && !is_override_xattr(b"user.other"));
        assert!(applies_to(libc::S_IFDIR) && !applies_to(libc::S_IFLNK));
    }
}
