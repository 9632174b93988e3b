//! Attributes: getattr/setattr, extended attributes, readlink, statfs.
//! Changing metadata copies the object up first; overlay-private xattrs stay hidden.

use super::layer::{INDEX, LayerId, UPPER};
use super::node::{Loc, Node};
use super::override_stat::{self, Owner};
use super::{Ctx, Errno, Stat, SysResult, TimeSpec, Union, whiteout};
use crate::sys::{fs, io, xattr};
use std::os::fd::{AsFd, BorrowedFd};

/// The POSIX ACL xattrs, refused under `noacl`.
const ACL_XATTRS: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];
/// Answered from `context=` for every object instead of from the layers.
const SELINUX_XATTR: &[u8] = b"security.selinux";

/// Names the mount keeps to itself: overlay markers and stat overrides.
pub(crate) fn is_hidden_xattr(name: &[u8]) -> bool {
    whiteout::is_private_xattr(name) || override_stat::is_override_xattr(name)
}

/// The changes a setattr asks for; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSpec>,
    pub mtime: Option<TimeSpec>,
}

impl Union {
    /// Attributes of a node; `fh` lets a deleted-but-open file answer through its handle.
    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> SysResult<Stat> {
        let node = self.node(ino)?;
        self.stat_node(&node, fh)
    }

    pub(crate) fn stat_node(&self, node: &Node, fh: Option<u64>) -> SysResult<Stat> {
        // One read guard for everything the state says: a second read while a writer waits
        // would deadlock (parking_lot's RwLock is writer-fair), and one is cheaper on every
        // getattr. A merged directory cannot count its subdirectories cheaply (kernel: 1).
        let (unlinked, detached, upper, merged, metacopy) = {
            let s = node.state.read();
            let layers = s.lowers.len() + usize::from(s.upper);
            // A metacopy file: its data file, and the parent whose cached lower handles
            // reach it.
            let metacopy = s
                .metacopy_data(node.kind)
                .map(|d| (d.clone(), s.parent.clone()));
            (
                s.unlinked,
                s.detached.clone(),
                s.upper,
                layers > 1,
                metacopy,
            )
        };
        let mut st = if unlinked {
            let fd = match fh.and_then(|h| self.handles.get(h)) {
                Some(h) => h.fd.clone(),
                None => detached.ok_or(Errno::ENOENT)?,
            };
            let mut st = fs::fstat(fd.as_fd())?;
            // A whited-out lower file still has its links in the lower layer. A directory
            // shows them as the kernel does (a merged one 1, below).
            if !upper && !node.is_dir() {
                st.st_nlink = 0;
            } else {
                self.apply_override(UPPER, fd.as_fd(), b"", &mut st);
                // Its last known name went: if it is an index copy, its count still covers
                // the names left, which may all be lower names the kernel never looked up.
                self.fix_nlink_in(INDEX, fd.as_fd(), b"", &mut st);
            }
            st
        } else {
            let at = self.top_at(node)?;
            let mut st = fs::stat_at(at.dir.fd(), &at.name)?;
            self.fix_nlink_in(at.layer, at.dir.fd(), &at.name, &mut st);
            self.apply_override(at.layer, at.dir.fd(), &at.name, &mut st);
            if let Some((data, parent)) = metacopy {
                self.show_data_blocks(parent.as_deref(), &data, &mut st);
            }
            st
        };
        st.st_ino = node.ino;
        if node.is_dir() && merged {
            st.st_nlink = 1;
        }
        self.ids.show(&mut st);
        Ok(st)
    }

    /// A metacopy file's blocks are its lower data file's (the upper one has none): what
    /// the kernel reports, and what `du` should count.
    pub(crate) fn show_data_blocks(&self, parent: Option<&Node>, data: &Loc, st: &mut Stat) {
        let data_st = self
            .lower_at(parent, data)
            .and_then(|at| fs::stat_at(at.dir.fd(), &at.name));
        if let Ok(d) = data_st {
            st.st_blocks = d.st_blocks;
        }
    }

    pub fn setattr(&self, ctx: &Ctx, ino: u64, fh: Option<u64>, a: SetAttr) -> SysResult<Stat> {
        self.writable()?;
        let node = self.node(ino)?;
        // An append-only object may still have its times set to now (`touch`), as the VFS
        // allows; any other change of a protected object is refused.
        let only_times_now = a.mode.is_none()
            && a.uid.is_none()
            && a.gid.is_none()
            && a.size.is_none()
            && [a.atime, a.mtime]
                .iter()
                .all(|t| matches!(t, None | Some(TimeSpec::Now) | Some(TimeSpec::Omit)));
        let p = self.protection(&node);
        if p.immutable || (p.append && !only_times_now) {
            return Err(Errno(libc::EPERM));
        }
        // chown, chmod and truncate may drop security.capability; chmod rewrites an ACL's
        // mask. No other name comes or goes, so a remembered list without those two stays
        // right (tar's fchown, fchmod, futimens then cost one listing per file, not three).
        let affected =
            |n: &Vec<u8>| n.as_slice() == b"security.capability" || n.as_slice() == ACL_XATTRS[0];
        let stale = node
            .known_xattr_names()
            .is_some_and(|names| names.iter().any(affected));
        let _change = stale.then(|| node.xattr_change());
        let _ = ctx;
        if node.state.read().unlinked || self.open_copy_outlived_its_name(&node, fh) {
            return self.setattr_detached(&node, fh, a);
        }
        // Only a size change needs the data; the rest is metadata (metacopy=on copies none).
        if a.size.is_some() {
            self.copy_up(&node)?;
        } else {
            self.copy_up_meta(&node)?;
        }
        let _gate = self.metacopy_gate(&node);
        let at = self.top_at(&node)?;
        let (d, name) = (at.dir.fd(), at.name.as_slice());
        if let Some(size) = a.size {
            match fh
                .and_then(|h| self.handles.get(h))
                .filter(|h| h.writable && h.layer == UPPER)
            {
                Some(h) => io::ftruncate(h.fd.as_fd(), size)?,
                None => {
                    let f = fs::open_at(d, name, libc::O_WRONLY, 0)?;
                    io::ftruncate(f.as_fd(), size)?;
                }
            }
        }
        let overridden = match self.upper_override() {
            Some(attr) if override_stat::applies_to(node.kind) => {
                self.set_override(d, name, attr, &a)?;
                true
            }
            _ => false,
        };
        if !overridden && (a.uid.is_some() || a.gid.is_some()) {
            fs::chown_at(
                d,
                name,
                self.ids.store_uid(a.uid.unwrap_or(u32::MAX)),
                self.ids.store_gid(a.gid.unwrap_or(u32::MAX)),
            )?;
        }
        if let (false, Some(mode)) = (overridden, a.mode) {
            fs::chmod_at(d, name, mode & 0o7777)?;
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let t = |x: Option<TimeSpec>| x.unwrap_or(TimeSpec::Omit);
            fs::utimes_at(d, name, t(a.atime), t(a.mtime))?;
        }
        self.stat_node(&node, fh)
    }

    /// The override xattr of a layer (the index holds upper copies, so it follows the upper).
    pub(crate) fn layer_override(&self, layer: LayerId) -> Option<&'static [u8]> {
        let layer = if layer == INDEX { UPPER } else { layer };
        self.overrides.get(layer).copied().flatten()
    }

    /// Where the upper keeps owners and modes, if not on the inodes.
    pub(crate) fn upper_override(&self) -> Option<&'static [u8]> {
        if self.has_upper {
            self.layer_override(UPPER)
        } else {
            None
        }
    }

    /// Shows the owner and mode an override keeps for `dir/name` in `layer`, if any.
    pub(crate) fn apply_override(
        &self,
        layer: LayerId,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &mut Stat,
    ) {
        if let Some(attr) = self.layer_override(layer)
            && override_stat::applies_to(st.st_mode)
            && let Some(owner) = override_stat::read(dir, name, attr)
        {
            owner.apply(st);
        }
    }

    /// chown/chmod under an override: the new values go to the xattr, the inode keeps its
    /// own (a rootless daemon could not give the file away anyway).
    fn set_override(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        attr: &[u8],
        a: &SetAttr,
    ) -> SysResult<()> {
        if a.uid.is_none() && a.gid.is_none() && a.mode.is_none() {
            return Ok(());
        }
        let mut owner = match override_stat::read(dir, name, attr) {
            Some(o) => o,
            None => Owner::of(&fs::stat_at(dir, name)?),
        };
        if let Some(uid) = a.uid.filter(|&u| u != u32::MAX) {
            owner.uid = self.ids.store_uid(uid);
        }
        if let Some(gid) = a.gid.filter(|&g| g != u32::MAX) {
            owner.gid = self.ids.store_gid(gid);
        }
        if let Some(mode) = a.mode {
            owner.perm = mode & 0o7777;
        }
        override_stat::write(dir, name, attr, owner)
    }

    /// Deleted-but-open: apply the change through the kept handle.
    /// A hard-linked file opened for writing through an upper name that is gone since: the
    /// node now goes by one of its lower names, whose data is the index copy the handle has
    /// open. A change through the handle (ftruncate, fchmod, futimens) is a change of that
    /// copy, as on the kernel, where the open file keeps its own name: copying the lower name
    /// up for it would add a name (and its directories) to the upper.
    fn open_copy_outlived_its_name(&self, node: &Node, fh: Option<u64>) -> bool {
        self.upper_override().is_none()
            && !node.is_upper()
            && node.top().is_some_and(|l| l.layer == INDEX)
            && fh
                .and_then(|h| self.handles.get(h))
                .is_some_and(|h| h.writable && h.layer == UPPER)
    }

    fn setattr_detached(&self, node: &Node, fh: Option<u64>, a: SetAttr) -> SysResult<Stat> {
        let fd = match fh.and_then(|h| self.handles.get(h)) {
            Some(h) => h.fd.clone(),
            None => node.state.read().detached.clone().ok_or(Errno::ENOENT)?,
        };
        let fd = fd.as_fd();
        if let Some(size) = a.size {
            let w = fs::reopen(fd, libc::O_WRONLY)?;
            io::ftruncate(w.as_fd(), size)?;
        }
        if a.uid.is_some() || a.gid.is_some() {
            fs::chown_at(
                fd,
                b"",
                self.ids.store_uid(a.uid.unwrap_or(u32::MAX)),
                self.ids.store_gid(a.gid.unwrap_or(u32::MAX)),
            )?;
        }
        if let Some(mode) = a.mode {
            fs::chmod_at(fd, b"", mode & 0o7777)?;
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let t = |x: Option<TimeSpec>| x.unwrap_or(TimeSpec::Omit);
            fs::utimes_at(fd, b"", t(a.atime), t(a.mtime))?;
        }
        self.stat_node(node, fh)
    }

    /// access(2) without default_permissions: the mode bits of the shown object decide.
    pub fn access(&self, ctx: &Ctx, ino: u64, mask: i32) -> SysResult<()> {
        let st = self.getattr(ino, None)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if mask & libc::W_OK != 0 && self.read_only() {
            return Err(Errno::EROFS);
        }
        let mode = st.st_mode;
        if ctx.uid == 0 {
            // Root may do anything but execute a file nobody may execute.
            let any_x = mode & 0o111 != 0 || mode & libc::S_IFMT == libc::S_IFDIR;
            return if mask & libc::X_OK != 0 && !any_x {
                Err(Errno::EACCES)
            } else {
                Ok(())
            };
        }
        let bits = if ctx.uid == st.st_uid {
            (mode >> 6) & 7
        } else if ctx.gid == st.st_gid {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        if (mask as u32) & !bits & 7 != 0 {
            Err(Errno::EACCES)
        } else {
            Ok(())
        }
    }

    pub fn readlink(&self, ino: u64) -> SysResult<Vec<u8>> {
        let node = self.node(ino)?;
        if node.state.read().unlinked {
            let fd = node.state.read().detached.clone().ok_or(Errno::ENOENT)?;
            return fs::readlink_at(fd.as_fd(), b"");
        }
        let at = self.top_at(&node)?;
        fs::readlink_at(at.dir.fd(), &at.name)
    }

    pub fn statfs(&self) -> SysResult<libc::statvfs> {
        let mut st = fs::fstatfs(self.layer(0).root())?;
        st.f_namemax = 255;
        Ok(st)
    }

    /// Runs `f` on the directory fd + name of the node's shown object.
    pub(crate) fn at_top<T>(
        &self,
        node: &Node,
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>, &[u8]) -> SysResult<T>,
    ) -> SysResult<T> {
        if node.state.read().unlinked {
            let fd = node.state.read().detached.clone().ok_or(Errno::ENOENT)?;
            return f(fd.as_fd(), b"");
        }
        let at = self.top_at(node)?;
        f(at.dir.fd(), &at.name)
    }

    /// `noacl` and `context=` answer some names for the mount itself, not from the layers.
    fn mount_answers_xattr(&self, name: &[u8]) -> Option<SysResult<Vec<u8>>> {
        if !self.acl && ACL_XATTRS.contains(&name) {
            // As a filesystem mounted with noacl answers.
            return Some(Err(Errno::ENOTSUP));
        }
        if name == SELINUX_XATTR
            && let Some(context) = &self.selinux_context
        {
            // SELinux hands out a context with its terminating NUL.
            let mut v = context.clone();
            v.push(0);
            return Some(Ok(v));
        }
        None
    }

    /// setxattr/removexattr of a name the mount answers itself: a context= mount refuses
    /// relabelling (EOPNOTSUPP, as SELinux does), noacl refuses ACLs.
    fn refuse_mount_xattr(&self, name: &[u8]) -> SysResult<()> {
        let context = name == SELINUX_XATTR && self.selinux_context.is_some();
        let acl = !self.acl && ACL_XATTRS.contains(&name);
        if context || acl {
            Err(Errno::ENOTSUP)
        } else {
            Ok(())
        }
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> SysResult<Vec<u8>> {
        if is_hidden_xattr(name) {
            return Err(Errno::ENODATA);
        }
        let node = self.node(ino)?;
        if let Some(answer) = self.mount_answers_xattr(name) {
            return answer;
        }
        // Most names asked for (security.selinux on every `ls -l`) exist nowhere: answer those
        // from the node's remembered name list instead of a syscall each time.
        if !self.xattr_names(&node)?.iter().any(|n| n == name) {
            return Err(Errno::ENODATA);
        }
        self.at_top(&node, |d, n| xattr::get(d, n, name))
    }

    /// The xattr names of a node's shown object, listed once and kept until a change through
    /// the mount (setxattr, removexattr, chmod, chown, copy-up) forgets them.
    pub(crate) fn xattr_names(&self, node: &Node) -> SysResult<std::sync::Arc<Vec<Vec<u8>>>> {
        if let Some(names) = node.known_xattr_names() {
            return Ok(names);
        }
        let changes = node.xattr_changes();
        let names = match self.at_top(node, xattr::list) {
            Ok(n) => n,
            Err(e) if e == Errno::ENOTSUP => Vec::new(),
            Err(e) => return Err(e),
        };
        let names = std::sync::Arc::new(names);
        node.remember_xattr_names(names.clone(), changes);
        Ok(names)
    }

    pub fn listxattr(&self, ino: u64) -> SysResult<Vec<u8>> {
        let node = self.node(ino)?;
        let names = self.xattr_names(&node)?;
        let mut out = Vec::new();
        // Hidden: the mount's bookkeeping, a label context= replaces, ACLs under noacl.
        let shown = |n: &&Vec<u8>| {
            let name = n.as_slice();
            let replaced = self.selinux_context.is_some() && name == SELINUX_XATTR;
            let refused = !self.acl && ACL_XATTRS.contains(&name);
            !(is_hidden_xattr(name) || replaced || refused)
        };
        for n in names.iter().filter(shown) {
            out.extend_from_slice(n);
            out.push(0);
        }
        if self.selinux_context.is_some() {
            out.extend_from_slice(SELINUX_XATTR);
            out.push(0);
        }
        Ok(out)
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> SysResult<()> {
        self.writable()?;
        if is_hidden_xattr(name) {
            return Err(Errno::EPERM);
        }
        self.refuse_mount_xattr(name)?;
        let node = self.node(ino)?;
        self.refuse_protected(&node)?;
        if !node.state.read().unlinked && !on_index_copy(&node) {
            self.copy_up_meta(&node)?;
        }
        let _gate = self.metacopy_gate(&node);
        let _change = node.xattr_change();
        self.at_top(&node, |d, n| xattr::set(d, n, name, value, flags))
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> SysResult<()> {
        self.writable()?;
        if is_hidden_xattr(name) {
            return Err(Errno::ENODATA);
        }
        self.refuse_mount_xattr(name)?;
        let node = self.node(ino)?;
        self.refuse_protected(&node)?;
        // Absent everywhere: nothing to copy up.
        self.at_top(&node, |d, n| xattr::get(d, n, name))?;
        if !node.state.read().unlinked && !on_index_copy(&node) {
            self.copy_up_meta(&node)?;
        }
        let _gate = self.metacopy_gate(&node);
        let _change = node.xattr_change();
        self.at_top(&node, |d, n| xattr::remove(d, n, name))
    }
}

/// A name of a hard-linked lower file that another name copied up already: the shared copy
/// is in the index, this name is not linked into the upper yet. Its xattrs change on that
/// copy, which every name shows, without linking this name up: kernel overlayfs changes the
/// xattrs of an inode that has an upper there (`ovl_xattr_set` copies up only an inode without
/// one), so its upper gets no entry for this name (tests/union_regressions.rs
/// `setxattr_through_another_name_of_a_copied_up_lower_hardlink`).
fn on_index_copy(node: &Node) -> bool {
    let s = node.state.read();
    !s.upper && s.lowers.first().is_some_and(|l| l.layer == INDEX)
}
