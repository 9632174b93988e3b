//! Extended attributes as a layer sees them: where they are read from ([`XattrSource`]) and
//! which of them a layer tar carries ([`is_exported`]).
//!
//! Names and values are bytes: Linux allows any byte but NUL in a name.

use crate::union::whiteout::{Marker, is_private_xattr};
use std::io;
use std::path::Path;

/// One entry's extended attributes, sorted by name (byte order), names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xattrs(Vec<(Vec<u8>, Vec<u8>)>);

impl Xattrs {
    /// Builds the set from (name, value) pairs in any order; a later duplicate name wins.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let mut v: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (name, value) in pairs {
            match v.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => v.push((name, value)),
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Xattrs(v)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.0
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_slice())
    }

    /// Reads the attributes as the overlay format's rules ask for them (name -> value).
    pub fn reader<'a>(&'a self) -> impl Fn(&[u8]) -> Option<&'a [u8]> + 'a {
        move |name| self.get(name)
    }

    /// The value of an overlay marker, in the first namespace that has it.
    pub fn marker(&self, m: Marker) -> Option<&[u8]> {
        m.read(self.reader())
    }

    /// All pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    /// The pairs a layer tar carries (see [`is_exported`]), sorted by name.
    pub fn exported(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter().filter(|(n, _)| is_exported(n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads all extended attributes of a path without following a final symlink.
pub trait XattrSource {
    fn read(&self, path: &Path) -> io::Result<Xattrs>;
}

/// Reads them with the system calls of `src/sys`: the parent directory is opened and the
/// entry's names listed and read beneath it, the final component never followed.
pub struct SysXattrs;

impl XattrSource for SysXattrs {
    fn read(&self, path: &Path) -> io::Result<Xattrs> {
        use crate::sys::{Errno, xattr};
        use std::os::fd::AsFd;
        use std::os::unix::ffi::OsStrExt;
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) if p.as_os_str().is_empty() => (Path::new("."), n.as_bytes()),
            (Some(p), Some(n)) => (p, n.as_bytes()),
            _ => (path, &b""[..]),
        };
        let dir = std::fs::File::open(dir)?;
        let names = match xattr::list(dir.as_fd(), name) {
            // A filesystem without xattrs has none to export.
            Err(e) if e == Errno::ENOTSUP => return Ok(Xattrs::default()),
            r => r?,
        };
        let mut pairs = Vec::with_capacity(names.len());
        for attr in names {
            match xattr::get(dir.as_fd(), name, &attr) {
                Ok(value) => pairs.push((attr, value)),
                // Removed between the listing and the read.
                Err(e) if e == Errno::ENODATA => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Xattrs::from_pairs(pairs))
    }
}

/// A source that reports no xattrs at all (for trees known to have none, and tests).
pub struct NoXattrs;

impl XattrSource for NoXattrs {
    fn read(&self, _path: &Path) -> io::Result<Xattrs> {
        Ok(Xattrs::default())
    }
}

/// Whether a layer tar carries attribute `name`: `user.*`, `trusted.*` and
/// `security.capability`, minus the overlay-private ones. Others (`security.selinux`,
/// `system.posix_acl_*`, ...) are host policy and are not exported.
pub fn is_exported(name: &[u8]) -> bool {
    let wanted = name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name == b"security.capability";
    wanted && !is_private_xattr(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_filter_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"user.mime_type", true),
            (b"trusted.foo", true),
            (b"security.capability", true),
            (b"security.selinux", false),
            (b"security.capabilityx", false),
            (b"system.posix_acl_access", false),
            (b"trusted.overlay.opaque", false),
            (b"trusted.overlay.redirect", false),
            (b"user.overlay.whiteout", false),
            (b"trusted.unionrs.anything", false),
            (b"user.unionrs.x", false),
            (b"user.overlayx", true),
            (b"trusted.overlay", true),
        ];
        for (name, want) in cases {
            assert_eq!(
                is_exported(name),
                *want,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn sorted_and_lookup() {
        let x = Xattrs::from_pairs([
            (b"user.b".to_vec(), b"2".to_vec()),
            (b"user.a".to_vec(), b"1".to_vec()),
            (b"user.overlay.opaque".to_vec(), b"y".to_vec()),
            (b"user.a".to_vec(), b"3".to_vec()),
        ]);
        let names: Vec<&[u8]> = x.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"user.a"[..], b"user.b", b"user.overlay.opaque"]);
        assert_eq!(x.get(b"user.a"), Some(&b"3"[..]));
        assert_eq!(x.marker(Marker::Opaque), Some(&b"y"[..]));
        assert!(x.marker(Marker::Redirect).is_none());
        assert_eq!(x.exported().count(), 2);
    }

    #[test]
    fn sys_source_reads_names_and_values_without_following_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"").unwrap();
        let dir = std::fs::File::open(t.path()).unwrap();
        use std::os::fd::AsFd;
        crate::sys::xattr::set(dir.as_fd(), b"f", b"user.a", b"1", 0).unwrap();
        crate::sys::xattr::set(dir.as_fd(), b"f", b"user.we=ird", b"\0\xff", 0).unwrap();
        std::os::unix::fs::symlink("f", t.path().join("l")).unwrap();
        let x = SysXattrs.read(&f).unwrap();
        assert_eq!(x.get(b"user.a"), Some(&b"1"[..]));
        assert_eq!(x.get(b"user.we=ird"), Some(&b"\0\xff"[..]));
        assert!(
            SysXattrs
                .read(&t.path().join("l"))
                .unwrap()
                .get(b"user.a")
                .is_none()
        );
        assert!(SysXattrs.read(t.path()).is_ok());
    }

    #[test]
    fn trusted_overlay_wins_over_user_overlay() {
        let x = Xattrs::from_pairs([
            (b"user.overlay.opaque".to_vec(), b"x".to_vec()),
            (b"trusted.overlay.opaque".to_vec(), b"y".to_vec()),
        ]);
        assert_eq!(x.marker(Marker::Opaque), Some(&b"y"[..]));
    }
}
