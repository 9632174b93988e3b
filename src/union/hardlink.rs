//! Hard-linked lower files after copy-up: where their index copy lives, and the link count
//! shown for it. The copy is linked into the index (so every name shares it), which adds a
//! link nobody sees; the count users see is kept in an xattr on the shared inode. The
//! on-disk rules are index_format.rs's: the kernel's (`WORK/index/<origin handle>`, `U+N`
//! relative to the copy's own links) where it can be made, else unionrs's own
//! (`WORK/unionrs.index/DEV-INO`, an absolute count moved by every link and unlink).

use super::index_format::{self as fmt, NlinkBase};
use super::layer::{INDEX, LayerId, UPPER};
use super::node::Loc;
use super::whiteout::MarkerFormat;
use super::{Errno, Stat, SysResult, Union, path};
use crate::sys::{fs, xattr};
use std::os::fd::{AsFd, BorrowedFd};

/// Where a hard-linked lower file's index copy is, or would be.
pub(crate) struct IndexKey {
    /// Below the workdir (the INDEX layer's root).
    pub path: Vec<u8>,
    /// The lower file's origin file handle when the kernel's format applies.
    pub origin: Option<Vec<u8>>,
    /// The entry in unionrs's own format, which an older unionrs may have made.
    pub own_path: Vec<u8>,
}

/// How an index copy keeps its shown count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountForm {
    /// `trusted.overlay.nlink`, relative to the copy's own link count: links and unlinks of
    /// upper names move it by themselves.
    Relative,
    /// unionrs's own absolute count: every link and unlink moves it.
    Absolute,
}

pub(crate) fn is_hard_linked_file(st: &Stat) -> bool {
    is_regular(st) && st.st_nlink > 1
}

fn is_regular(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

impl Union {
    /// Whether the kernel should look this object's name up again on every path walk: a
    /// lower file with several names, not yet copied up, on a writable mount. A FUSE request
    /// names the node, which all the names share, so a copy-up materialises the name looked
    /// up last; a fresh lookup before each open or xattr change makes that the name the
    /// caller walked, the one kernel overlayfs copies up.
    /// Once a lower file of several names has an index copy, an upper name of it counts too:
    /// the node follows the name looked up last, so a walk through a lower name would leave
    /// the next open through a cached upper name copying up that lower name instead.
    pub fn name_picks_copy_up(&self, st: &Stat) -> bool {
        is_hard_linked_file(st)
            && !self.read_only()
            && self
                .node(st.st_ino)
                .is_ok_and(|n| !n.is_upper() || self.index_in_use())
    }

    /// The index key of lower regular file `name` in `dir` of `layer` (stat `st`), if it
    /// has several names.
    pub(crate) fn index_key(
        &self,
        layer: LayerId,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
    ) -> Option<IndexKey> {
        if !is_hard_linked_file(st) || self.index.is_none() {
            return None;
        }
        let own_path = fmt::own_index_path(st.st_dev, st.st_ino);
        let origin = (self.markers == MarkerFormat::Kernel)
            .then(|| {
                let uuid = self.layer(layer).fs_uuid()?;
                let (kind, handle) = fs::file_handle_at(dir, name).ok()?;
                fmt::origin_fh(&uuid, kind, &handle)
            })
            .flatten();
        let path = match &origin {
            Some(fh) => fmt::index_path(fh),
            None => own_path.clone(),
        };
        Some(IndexKey {
            path,
            origin,
            own_path,
        })
    }

    /// The index copy of `key` if one exists: its path below the workdir and its stat. An
    /// entry an older unionrs made in its own format is moved to the kernel's on a writable
    /// mount (where it is only read, it is used where it is).
    pub(crate) fn existing_index(&self, key: &IndexKey) -> Option<(Vec<u8>, Stat)> {
        let index = self.layer(INDEX);
        // Only a regular file is a copy: the kernel also keeps whiteouts there (entries of
        // files whose every name is gone, for NFS export).
        let copy = |p: &[u8]| index.stat(p).ok().filter(is_regular);
        if let Some(st) = copy(&key.path) {
            return Some((key.path.clone(), st));
        }
        let origin = key.origin.as_ref()?;
        let st = copy(&key.own_path)?;
        if self.read_only() || self.adopt_own_entry(key, origin, &st).is_err() {
            return Some((key.own_path.clone(), st));
        }
        Some((key.path.clone(), index.stat(&key.path).ok()?))
    }

    /// Moves an own-format index entry to the kernel's: origin handle set, count made
    /// relative, then renamed under its kernel name.
    fn adopt_own_entry(&self, key: &IndexKey, origin: &[u8], st: &Stat) -> SysResult<()> {
        let index = self.layer(INDEX);
        let (own_dir, own_name) = path::split(&key.own_path);
        let d = index.dir(own_dir)?;
        let own = self.markers.nlink_xattr();
        let shown = xattr::get(d.as_fd(), own_name, own)
            .ok()
            .and_then(|v| fmt::parse_own_nlink(&v))
            .unwrap_or(st.st_nlink);
        xattr::set(d.as_fd(), own_name, fmt::ORIGIN_XATTR, origin, 0)?;
        let rel = fmt::nlink_value(shown, st.st_nlink);
        xattr::set(d.as_fd(), own_name, fmt::NLINK_XATTR, &rel, 0)?;
        let _ = xattr::remove(d.as_fd(), own_name, own);
        let (new_dir, new_name) = path::split(&key.path);
        let nd = index.dir(new_dir)?;
        fs::rename_at(
            d.as_fd(),
            own_name,
            nd.as_fd(),
            new_name,
            libc::RENAME_NOREPLACE,
        )
    }

    /// Marks a staged copy of a hard-linked lower file (shown with `shown` links) before it
    /// is linked into the index: it will have `own_links` links then.
    pub(crate) fn mark_index_copy(
        &self,
        (dir, name): (BorrowedFd<'_>, &[u8]),
        key: &IndexKey,
        shown: u64,
        own_links: u64,
    ) -> SysResult<()> {
        match &key.origin {
            Some(fh) => {
                xattr::set(dir, name, fmt::ORIGIN_XATTR, fh, 0)?;
                xattr::set(
                    dir,
                    name,
                    fmt::NLINK_XATTR,
                    &fmt::nlink_value(shown, own_links),
                    0,
                )
            }
            None => xattr::set(
                dir,
                name,
                self.markers.nlink_xattr(),
                &fmt::own_nlink_value(shown),
                0,
            ),
        }
    }

    /// Whether `st`, found in `layer`, may be an indexed file (then its count is read). An
    /// upper name of one is linked to the index copy too (two links at least); the index
    /// copy alone has one link while every name left is still a lower one.
    fn may_be_indexed(&self, layer: LayerId, st: &Stat) -> bool {
        is_regular(st)
            && (layer == INDEX || (layer == UPPER && st.st_nlink > 1))
            && self.index.is_some()
    }

    /// The count shown for `name` in `dir` (stat `st`) if it is an index copy, and how it is
    /// kept.
    fn shown_count(&self, dir: BorrowedFd<'_>, name: &[u8], st: &Stat) -> Option<(u64, CountForm)> {
        if self.markers == MarkerFormat::Kernel
            && let Ok(v) = xattr::get(dir, name, fmt::NLINK_XATTR)
        {
            let (base, add) = fmt::parse_nlink(&v)?;
            let base_links = match base {
                NlinkBase::Upper => st.st_nlink,
                NlinkBase::Lower => self.origin_links(dir, name)?,
            };
            return Some((fmt::shown_nlink(add, base_links)?, CountForm::Relative));
        }
        let v = xattr::get(dir, name, self.markers.nlink_xattr()).ok()?;
        Some((fmt::parse_own_nlink(&v)?, CountForm::Absolute))
    }

    /// The link count of the lower file an index copy came from (for an `L+N` count).
    fn origin_links(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Option<u64> {
        let fh = xattr::get(dir, name, fmt::ORIGIN_XATTR).ok()?;
        self.open_origin(&fh)
            .ok()
            .and_then(|fd| fs::fstat(fd.as_fd()).ok())
            .map(|st| st.st_nlink)
    }

    /// Opens the lower object an origin file handle names, in the first lower layer whose
    /// filesystem it belongs to (by UUID, as the kernel decodes it).
    pub(crate) fn open_origin(&self, fh: &[u8]) -> SysResult<std::os::fd::OwnedFd> {
        let (uuid, kind, handle) = fmt::split_origin_fh(fh).ok_or(Errno::EINVAL)?;
        let first_lower = if self.has_upper { 1 } else { 0 };
        let mut tried_devs = Vec::new();
        for id in first_lower..self.layers.len() {
            let l = self.layer(id);
            if tried_devs.contains(&l.dev) || l.fs_uuid() != Some(uuid) {
                continue;
            }
            tried_devs.push(l.dev);
            let root = l.opened_root()?;
            match fs::open_by_handle(root.as_fd(), kind, handle, libc::O_PATH) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ESTALE) | Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Errno::ESTALE)
    }

    /// The count to show for an indexed file, when `st` (at `loc`) is one.
    pub(crate) fn indexed_nlink(&self, loc: &Loc, st: &Stat) -> Option<(u64, CountForm)> {
        if !self.may_be_indexed(loc.layer, st) {
            return None;
        }
        let (parent, name) = path::split(&loc.path);
        let d = self.layer(loc.layer).dir(parent).ok()?;
        self.shown_count(d.as_fd(), name, st)
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
            && let Some((n, _)) = self.shown_count(dir, name, st)
        {
            st.st_nlink = n;
        }
    }

    /// Moves the shown count of an indexed file at `loc` (stat `st`, read after the change)
    /// by `delta`. `moves_own_links`: the change linked or unlinked an upper name of the copy,
    /// which a relative count follows by itself.
    pub(crate) fn bump_indexed_nlink(
        &self,
        loc: &Loc,
        st: &Stat,
        delta: i64,
        moves_own_links: bool,
    ) {
        let Some((n, form)) = self.indexed_nlink(loc, st) else {
            return;
        };
        if form == CountForm::Relative && moves_own_links {
            return;
        }
        let (parent, name) = path::split(&loc.path);
        if let Ok(d) = self.layer(loc.layer).dir(parent) {
            let shown = (n as i64 + delta).max(0) as u64;
            let v = match form {
                CountForm::Relative => fmt::nlink_value(shown, st.st_nlink),
                CountForm::Absolute => fmt::own_nlink_value(shown).to_vec(),
            };
            let xattr_name = match form {
                CountForm::Relative => fmt::NLINK_XATTR,
                CountForm::Absolute => self.markers.nlink_xattr(),
            };
            let _ = xattr::set(d.as_fd(), name, xattr_name, &v, 0);
        }
    }

    /// Keeps the shown count of an index copy that just got one more upper name (a copy-up
    /// through another name: nothing was added that users see). `before` is the copy's
    /// stat before the link.
    pub(crate) fn keep_count_after_link_up(
        &self,
        (dir, name): (BorrowedFd<'_>, &[u8]),
        before: &Stat,
    ) {
        if let Some((shown, CountForm::Relative)) = self.shown_count(dir, name, before) {
            let v = fmt::nlink_value(shown, before.st_nlink + 1);
            let _ = xattr::set(dir, name, fmt::NLINK_XATTR, &v, 0);
        }
    }

    /// Applies the shown count to attributes read at `loc`.
    pub(crate) fn fix_nlink(&self, loc: &Loc, st: &mut Stat) {
        if let Some((n, _)) = self.indexed_nlink(loc, st) {
            st.st_nlink = n;
        }
    }
}
