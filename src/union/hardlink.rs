//! Link counts of hard-linked lower files after copy-up. The copy is also linked into the
//! index (so every name shares it), which adds a link nobody sees; the count users see is
//! kept in a private xattr on the shared inode and moved by link and unlink.

use super::layer::{INDEX, LayerId, UPPER};
use super::node::Loc;
use super::{Stat, Union, path};
use crate::sys::xattr;
use std::os::fd::{AsFd, BorrowedFd};

impl Union {
    /// Whether the kernel should look this object's name up again on every path walk: a
    /// lower file with several names, not yet copied up, on a writable mount. A FUSE request
    /// names the node, which all the names share, so a copy-up materialises the name looked
    /// up last; a fresh lookup before each open or xattr change makes that the name the
    /// caller walked, the one kernel overlayfs copies up.
    pub fn name_picks_copy_up(&self, st: &Stat) -> bool {
        st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_nlink > 1
            && !self.read_only()
            && self.node(st.st_ino).is_ok_and(|n| !n.is_upper())
    }

    /// Whether `st`, found in `layer`, may be an indexed file (then its count is read). An
    /// upper name of one is linked to the index copy too (two links at least); the index
    /// copy alone has one link while every name left is still a lower one.
    fn may_be_indexed(&self, layer: LayerId, st: &Stat) -> bool {
        st.st_mode & libc::S_IFMT == libc::S_IFREG
            && (layer == INDEX || (layer == UPPER && st.st_nlink > 1))
            && self.index.is_some()
    }

    /// The count to show for an indexed file, when `st` (at `loc`) is one.
    pub(crate) fn indexed_nlink(&self, loc: &Loc, st: &Stat) -> Option<u64> {
        if !self.may_be_indexed(loc.layer, st) {
            return None;
        }
        let (parent, name) = path::split(&loc.path);
        let d = self.layer(loc.layer).dir(parent).ok()?;
        self.nlink_xattr(d.as_fd(), name)
    }

    fn nlink_xattr(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Option<u64> {
        let v = xattr::get(dir, name, self.markers.nlink_xattr()).ok()?;
        Some(u64::from_le_bytes(v.as_slice().try_into().ok()?))
    }

    /// Applies the shown count to attributes read as `name` in `dir` of `layer`.
    pub(crate) fn fix_nlink_in(
        &self,
        layer: LayerId,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &mut Stat,
    ) {
        if self.may_be_indexed(layer, st)
            && let Some(n) = self.nlink_xattr(dir, name)
        {
            st.st_nlink = n;
        }
    }

    /// Moves the shown count of an indexed file by `delta` (no-op for other files).
    pub(crate) fn bump_indexed_nlink(&self, loc: &Loc, st: &Stat, delta: i64) {
        let Some(n) = self.indexed_nlink(loc, st) else {
            return;
        };
        let (parent, name) = path::split(&loc.path);
        if let Ok(d) = self.layer(loc.layer).dir(parent) {
            let v = (n as i64 + delta).max(0) as u64;
            let _ = xattr::set(
                d.as_fd(),
                name,
                self.markers.nlink_xattr(),
                &v.to_le_bytes(),
                0,
            );
        }
    }

    /// Applies the shown count to attributes read at `loc`.
    pub(crate) fn fix_nlink(&self, loc: &Loc, st: &mut Stat) {
        if let Some(n) = self.indexed_nlink(loc, st) {
            st.st_nlink = n;
        }
    }
}
