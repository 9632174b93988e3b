//! Extended attributes as a layer sees them: where they are read from ([`XattrSource`]) and
//! which of them a layer tar carries ([`is_exported`]).
//!
//! Names and values are bytes: Linux allows any byte but NUL in a name.

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

    /// True if `trusted.overlay.SUFFIX` or `user.overlay.SUFFIX` is set.
    pub fn has_overlay(&self, suffix: &str) -> bool {
        self.overlay(suffix).is_some()
    }

    /// The value of `trusted.overlay.SUFFIX`, else of `user.overlay.SUFFIX`.
    pub fn overlay(&self, suffix: &str) -> Option<&[u8]> {
        self.get(format!("trusted.overlay.{suffix}").as_bytes())
            .or_else(|| self.get(format!("user.overlay.{suffix}").as_bytes()))
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
///
/// Today's implementation shells out to getfattr ([`crate::image::xattr_cmd`]); a
/// `src/sys` implementation over `llistxattr`/`lgetxattr` will replace it.
pub trait XattrSource {
    fn read(&self, path: &Path) -> io::Result<Xattrs>;
}

/// A source that reports no xattrs at all (for trees known to have none, and tests).
pub struct NoXattrs;

impl XattrSource for NoXattrs {
    fn read(&self, _path: &Path) -> io::Result<Xattrs> {
        Ok(Xattrs::default())
    }
}

/// Prefixes of names that belong to the union itself and never leave it: they describe
/// this upper's relation to its lowers, which means nothing in another stack.
const PRIVATE_PREFIXES: [&[u8]; 4] = [
    b"trusted.overlay.",
    b"user.overlay.",
    b"trusted.unionrs.",
    b"user.unionrs.",
];

/// True for the union's own bookkeeping attributes (overlay and unionrs namespaces).
pub fn is_overlay_private(name: &[u8]) -> bool {
    PRIVATE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether a layer tar carries attribute `name`: `user.*`, `trusted.*` and
/// `security.capability`, minus the overlay-private ones. Others (`security.selinux`,
/// `system.posix_acl_*`, ...) are host policy and are not exported.
pub fn is_exported(name: &[u8]) -> bool {
    let wanted = name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name == b"security.capability";
    wanted && !is_overlay_private(name)
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
        assert_eq!(x.overlay("opaque"), Some(&b"y"[..]));
        assert!(!x.has_overlay("redirect"));
        assert_eq!(x.exported().count(), 2);
    }

    #[test]
    fn trusted_overlay_wins_over_user_overlay() {
        let x = Xattrs::from_pairs([
            (b"user.overlay.opaque".to_vec(), b"x".to_vec()),
            (b"trusted.overlay.opaque".to_vec(), b"y".to_vec()),
        ]);
        assert_eq!(x.overlay("opaque"), Some(&b"y"[..]));
    }
}
