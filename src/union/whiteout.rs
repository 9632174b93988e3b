//! Whiteout, opaque and redirect markers: every form read in lowers, the kernel form written.
//! The one owner of the overlay on-disk format: the mount, `check`, and the image side's
//! commit, export and unpack all ask the rules here.
//!
//! Read: a 0/0 character device; `.wh.NAME` (hides NAME in *lower* layers only); a zero-size
//! file with `trusted.`/`user.overlay.whiteout` inside a dir marked `overlay.opaque=x` (kernel
//! 6.8+; the `overlay.whiteouts` marker of 6.7 is read by no current kernel, nor here).
//! Opaque: `trusted.`/`user.overlay.opaque=y` or a `.wh..wh..opq` entry.

use crate::sys::fs::{self, Stat};
use crate::sys::xattr;
use std::os::fd::BorrowedFd;

pub const WH_PREFIX: &[u8] = b".wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// A marker xattr of the overlay format, each readable in two namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// On a directory: `y` opaque, `x` holds xattr whiteouts (and is not opaque).
    Opaque,
    /// On a zero-size file in a directory marked `opaque=x`: a whiteout.
    Whiteout,
    /// On a directory (renamed lower dir) or a metacopy file: where its lower copy is.
    Redirect,
    /// On a file: metadata-only copy-up, the data is in a lower layer.
    Metacopy,
}

impl Marker {
    /// Its names: the kernel's (`trusted.`) first, then the rootless form (`user.`).
    pub fn names(self) -> [&'static [u8]; 2] {
        match self {
            Marker::Opaque => [b"trusted.overlay.opaque", b"user.overlay.opaque"],
            Marker::Whiteout => [b"trusted.overlay.whiteout", b"user.overlay.whiteout"],
            Marker::Redirect => [b"trusted.overlay.redirect", b"user.overlay.redirect"],
            Marker::Metacopy => [b"trusted.overlay.metacopy", b"user.overlay.metacopy"],
        }
    }

    /// Its value in the first namespace that has it, through `read` (name -> value).
    pub fn read<V>(self, read: impl Fn(&[u8]) -> Option<V>) -> Option<V> {
        self.names().into_iter().find_map(read)
    }
}

/// `overlay.opaque` value of an opaque directory.
pub const OPAQUE_YES: &[u8] = b"y";
/// `overlay.opaque` value of a directory that holds xattr whiteouts (not opaque).
pub const OPAQUE_HOLDS_XWHITEOUTS: &[u8] = b"x";

/// Whether a directory's attributes (read through `read`) make it opaque.
pub fn marks_opaque<V: AsRef<[u8]>>(read: impl Fn(&[u8]) -> Option<V>) -> bool {
    Marker::Opaque
        .names()
        .into_iter()
        .any(|n| read(n).is_some_and(|v| v.as_ref() == OPAQUE_YES))
}

/// Whether a zero-size regular file whose attributes are read through `read` is a whiteout,
/// given whether its directory [`marks_xattr_whiteouts`].
pub fn is_xattr_whiteout<V>(in_marked_dir: bool, read: impl Fn(&[u8]) -> Option<V>) -> bool {
    in_marked_dir && Marker::Whiteout.read(read).is_some()
}

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
    /// Immutable and append-only flags of an upper object (kernel overlayfs keeps them here,
    /// not on the upper inode): "a", "i" or "ai".
    pub fn protattr_xattr(self) -> &'static [u8] {
        match self {
            MarkerFormat::Kernel => b"trusted.overlay.protattr",
            MarkerFormat::User => b"user.overlay.protattr",
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
        && is_xattr_whiteout(marked(), |attr| xattr::has(dir, name, attr).then_some(()))
}

/// The kernel only honours xattr whiteouts inside a directory marked as holding them
/// (`overlay.opaque=x`).
pub fn dir_has_xattr_whiteouts(dir: BorrowedFd<'_>) -> bool {
    marks_xattr_whiteouts(|attr| xattr::get(dir, b"", attr).ok())
}

/// The same, read through an open (not O_PATH) handle of the directory, as a listing has:
/// no /proc path walk, and one listing of its xattr names (most directories carry none of
/// the markers, and then none is read).
pub fn open_dir_has_xattr_whiteouts(dir: BorrowedFd<'_>) -> bool {
    let listed = Listed(xattr::flist(dir).ok());
    marks_xattr_whiteouts(|attr| {
        listed
            .may_have(attr)
            .then(|| xattr::fget(dir, attr).ok())
            .flatten()
    })
}

/// The rule, over a reader of the directory's attributes: opaque "x", the kernel's mark for
/// a directory holding xattr whiteouts, in either namespace.
pub fn marks_xattr_whiteouts<V: AsRef<[u8]>>(read: impl Fn(&[u8]) -> Option<V>) -> bool {
    Marker::Opaque
        .names()
        .into_iter()
        .any(|n| read(n).is_some_and(|v| v.as_ref() == OPAQUE_HOLDS_XWHITEOUTS))
}

/// An object's xattr names, when they could be listed: a name not listed is not there
/// (the same privileges list and read trusted.* names). Unlisted: every name may be there.
pub(crate) struct Listed(Option<Vec<Vec<u8>>>);

impl Listed {
    pub(crate) fn of(dir: BorrowedFd<'_>, name: &[u8]) -> Listed {
        Listed(xattr::list(dir, name).ok())
    }

    pub(crate) fn may_have(&self, attr: &[u8]) -> bool {
        self.0
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == attr))
    }

    /// Whether `name` in `dir` (the object listed) carries `attr`: from the list, else asked.
    pub(crate) fn has(&self, dir: BorrowedFd<'_>, name: &[u8], attr: &[u8]) -> bool {
        match &self.0 {
            Some(names) => names.iter().any(|n| n == attr),
            None => xattr::has(dir, name, attr),
        }
    }
}

/// What a directory's own markers say about merging below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirMarkers {
    pub opaque: bool,
    pub redirect: Option<Vec<u8>>,
}

/// The markers of directory `name` inside `dir` (at `parent_path` in its layer): one listing
/// of its xattr names, then only the markers it carries are read.
pub fn dir_markers(dir: BorrowedFd<'_>, name: &[u8], parent_path: &[u8]) -> DirMarkers {
    dir_markers_listed(dir, name, parent_path, &Listed::of(dir, name), true)
}

/// The same, from a listing of its xattr names already taken. `merges_below`: layers below
/// this one are merged under it. When none is and it carries no redirect, its opaque flag
/// changes nothing, and it is not read (an `.wh..wh..opq` probe spared per directory of an
/// upper-only tree).
pub(crate) fn dir_markers_listed(
    dir: BorrowedFd<'_>,
    name: &[u8],
    parent_path: &[u8],
    listed: &Listed,
    merges_below: bool,
) -> DirMarkers {
    let redirect = redirect_marked(dir, name, parent_path, listed);
    DirMarkers {
        opaque: (merges_below || redirect.is_some()) && opaque_marked(dir, name, listed),
        redirect,
    }
}

/// Whether directory `name` inside `dir` is opaque (hides everything below its layer).
pub fn is_opaque(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    opaque_marked(dir, name, &Listed(None))
}

fn opaque_marked(dir: BorrowedFd<'_>, name: &[u8], listed: &Listed) -> bool {
    if marks_opaque(|attr| {
        listed
            .may_have(attr)
            .then(|| xattr::get(dir, name, attr).ok())
            .flatten()
    }) {
        return true;
    }
    // `name/.wh..wh..opq`, resolved beneath `dir` without following any symlink (one
    // openat2, not an open of `name` and a stat in it).
    !name.is_empty()
        && fs::open_beneath(
            dir,
            &super::path::join(name, OPAQUE_MARKER),
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )
        .is_ok()
}

/// The redirect of a renamed directory, as a path below the layer root without leading `/`.
/// A relative redirect (no `/`) names a sibling in the same parent directory.
pub fn redirect(dir: BorrowedFd<'_>, name: &[u8], parent_path: &[u8]) -> Option<Vec<u8>> {
    redirect_marked(dir, name, parent_path, &Listed(None))
}

fn redirect_marked(
    dir: BorrowedFd<'_>,
    name: &[u8],
    parent_path: &[u8],
    listed: &Listed,
) -> Option<Vec<u8>> {
    let value = Marker::Redirect.read(|attr| {
        listed
            .may_have(attr)
            .then(|| xattr::get(dir, name, attr).ok())
            .flatten()
    })?;
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

/// Overlay-private xattrs, never shown to or settable by users, and never carried into a
/// layer tar: they describe an upper's relation to its lowers, which means nothing in
/// another stack.
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

    #[test]
    fn marker_rules_table() {
        type Attrs<'a> = &'a [(&'a [u8], &'a [u8])];
        let reader = |attrs: Attrs<'static>| {
            move |n: &[u8]| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_vec())
        };
        let cases: &[(Attrs<'static>, bool, bool)] = &[
            // (attributes, opaque, holds xattr whiteouts)
            (&[], false, false),
            (&[(b"trusted.overlay.opaque", b"y")], true, false),
            (&[(b"user.overlay.opaque", b"y")], true, false),
            (&[(b"trusted.overlay.opaque", b"x")], false, true),
            (&[(b"user.overlay.opaque", b"x")], false, true),
            (&[(b"trusted.overlay.opaque", b"n")], false, false),
            // Kernel 6.7's marker: no kernel reads it any more.
            (&[(b"trusted.overlay.whiteouts", b"")], false, false),
            (&[(b"user.opaque", b"y")], false, false),
        ];
        for (attrs, opaque, xwh) in cases {
            assert_eq!(marks_opaque(reader(attrs)), *opaque, "{attrs:?}");
            assert_eq!(marks_xattr_whiteouts(reader(attrs)), *xwh, "{attrs:?}");
        }
        let wh = reader(&[(b"user.overlay.whiteout", b"")]);
        assert!(is_xattr_whiteout(true, wh));
        assert!(!is_xattr_whiteout(false, wh));
        assert!(!is_xattr_whiteout(true, reader(&[])));
        assert_eq!(
            Marker::Redirect.read(reader(&[
                (b"user.overlay.redirect", b"u"),
                (b"trusted.overlay.redirect", b"t")
            ])),
            Some(b"t".to_vec())
        );
    }
}
