//! Removing names: unlink and rmdir. A name that lower layers still hold gets a whiteout in
//! the upper; deleting a lower file never copies its data up.

use super::lookup::Found;
use super::node::{Loc, Node};
use super::{Errno, SysResult, Union, path, whiteout};
use crate::sys::{fs, xattr};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

impl Union {
    /// Whether any lower layer shows something at `name` in directory `dir` (its lower
    /// copies: an upper-only directory has none).
    pub(crate) fn lower_has(&self, dir: &Node, name: &[u8]) -> SysResult<bool> {
        let lowers = dir.state.read().lowers.clone();
        Ok(!lowers.is_empty() && self.resolve_in(&lowers, name)?.is_some())
    }

    /// `lower_has` for a name found as `f`: as the kernel (`ovl_lower_positive`), by the
    /// name in the directory's lower copies, not by the object's own lower copies, which a
    /// renamed (redirected) object has elsewhere: removing one from an upper-only directory
    /// leaves no whiteout. No lookup when the object's lower copy is at the name.
    fn lower_has_found(&self, dir: &Node, name: &[u8], f: &Found) -> SysResult<bool> {
        let at_name = |o: &Loc| {
            let s = dir.state.read();
            s.lowers
                .iter()
                .any(|d| d.layer == o.layer && path::split(&o.path) == (&d.path[..], name))
        };
        if f.lowers.iter().any(at_name) {
            return Ok(true);
        }
        self.lower_has(dir, name)
    }

    /// Writes a whiteout for `name` into an upper directory, in the mount's marker format.
    pub(crate) fn make_whiteout(&self, upper_dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<()> {
        match self.markers {
            whiteout::MarkerFormat::Kernel => self.put_device_whiteout(upper_dir, name),
            whiteout::MarkerFormat::User => {
                let wh = whiteout::wh_name(name);
                drop(fs::open_at(
                    upper_dir,
                    &wh,
                    libc::O_CREAT | libc::O_WRONLY,
                    0,
                )?);
                Ok(())
            }
        }
    }

    /// An immutable or append-only object, or any name in such a directory, cannot be
    /// removed: EPERM before any other check, as the VFS's may_delete does it.
    fn refuse_removal(&self, dir: &Arc<Node>, name: &[u8], f: &Found) -> SysResult<()> {
        let node = self.nodes.get(self.ino_of(f));
        self.refuse_protected_name(dir, name, f, node.as_deref())?;
        if self.protection(dir).any() {
            return Err(Errno(libc::EPERM));
        }
        Ok(())
    }

    /// Finds the child for a removal: (directory node, found object).
    fn removal_target(&self, parent: u64, name: &[u8]) -> SysResult<(Arc<Node>, Found)> {
        self.writable()?;
        let dir = self.node(parent)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let f = self.resolve(&dir, name)?.ok_or(Errno::ENOENT)?;
        Ok((dir, f))
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> SysResult<()> {
        let (dir, f) = self.removal_target(parent, name)?;
        self.refuse_removal(&dir, name, &f)?;
        if f.is_dir() {
            return Err(Errno::EISDIR);
        }
        let ino = self.ino_of(&f);
        self.remove_entry(&dir, name, &f, ino)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> SysResult<()> {
        let (dir, f) = self.removal_target(parent, name)?;
        self.refuse_removal(&dir, name, &f)?;
        if !f.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let child_path = path::join(&dir.path(), name);
        if !self.merged_dir_is_empty(&child_path, &f)? {
            return Err(Errno::ENOTEMPTY);
        }
        let ino = self.ino_of(&f);
        if f.upper {
            self.clear_upper_dir(&child_path)?;
        }
        self.remove_entry(&dir, name, &f, ino)
    }

    /// A name of `f` (at `name_path`) is about to go, by unlink or by a rename over it: the
    /// link count its other names show drops by one. For a hard-linked lower file that has
    /// no index copy yet, the copy is made now, carrying the new count (a file with one name,
    /// the common case, has no index copy to make).
    pub(crate) fn count_name_going(&self, f: &Found, name_path: &[u8]) -> SysResult<()> {
        let Some(top) = f.top(name_path) else {
            return Ok(());
        };
        // An upper name's removal takes a link of the copy itself; a lower name's does not.
        self.bump_indexed_nlink(&top, &f.st, -1, top.layer == super::layer::UPPER);
        if top.layer != super::layer::UPPER
            && top.layer != super::layer::INDEX
            && super::hardlink::is_hard_linked_file(&f.st)
            && self.index.is_some()
        {
            self.index_lower_file(&top, self.number_of(f), -1)?;
        }
        Ok(())
    }

    /// Removes `name` from the merged view: the upper object goes, and a whiteout is left
    /// when lower layers hold the name.
    fn remove_entry(&self, dir: &Arc<Node>, name: &[u8], f: &Found, ino: u64) -> SysResult<()> {
        let node = self.nodes.get(ino);
        self.entries_change(dir);
        if let Some(n) = &node {
            self.detach_if_open(n, f, &path::join(&dir.path(), name))?;
        }
        self.copy_up(dir)?;
        let child_path = path::join(&dir.path(), name);
        self.count_name_going(f, &child_path)?;
        let ud = self.upper_dir(dir)?;
        let ud = ud.as_fd();
        if f.upper {
            let needs_whiteout = self.lower_has_found(dir, name, f)?;
            if needs_whiteout && self.markers == whiteout::MarkerFormat::Kernel {
                // Swap the object for a whiteout in one step, then drop the object.
                let work = self.work()?;
                let tmp = self.temp_name();
                self.swap_for_whiteout(ud, name, &tmp)?;
                let _ = fs::unlink_at(work, &tmp, f.is_dir());
            } else {
                fs::unlink_at(ud, name, f.is_dir())?;
                if needs_whiteout {
                    self.make_whiteout(ud, name)?;
                }
            }
        } else {
            self.make_whiteout(ud, name)?;
        }
        if let Some(n) = node {
            self.forget_name(&n, dir, name);
        }
        Ok(())
    }

    /// EPERM when `name` in `dir` (found as `f`, its node `node` if the kernel knows it) is
    /// immutable or append-only.
    pub(crate) fn refuse_protected_name(
        &self,
        dir: &Node,
        name: &[u8],
        f: &Found,
        node: Option<&Node>,
    ) -> SysResult<()> {
        let protected = match node {
            Some(n) => self.protection(n).any(),
            None if f.upper => {
                let ud = self.upper_dir(dir)?;
                self.protection_at(ud.as_fd(), name).any()
            }
            None => false,
        };
        if protected {
            return Err(Errno(libc::EPERM));
        }
        Ok(())
    }

    /// Keeps a handle on an object whose name is about to go while it stays reachable: open
    /// files (deleted-but-open must keep working), FIFOs, sockets and devices (which may be
    /// open unseen) and hard links (other names remain).
    /// Not upper files the kernel merely still knows: a handle would pin their inode number
    /// (so the upper filesystem could not reuse it before the kernel's FORGET, which makes
    /// the kernel mark its inode bad: docs/reliability.md, "create shared" EIO), but it also
    /// pins their blocks until the FORGET arrives, asynchronously: an `rm` on a full disk
    /// would not free the space in time for the next write (tests/robust_enospc.rs).
    /// The handle is taken through the name being removed (`merged_path`): the node's own
    /// name may already be gone.
    pub(crate) fn detach_if_open(
        &self,
        node: &Node,
        f: &Found,
        merged_path: &[u8],
    ) -> SysResult<()> {
        if f.is_dir() {
            return self.detach_dir(node, f, merged_path);
        }
        let open = node.open_count.load(std::sync::atomic::Ordering::Relaxed) > 0;
        // FIFOs, sockets and devices are opened without a word to the daemon (the kernel
        // serves them itself), so any of them may be open: a process holding one still
        // gets fstat after the removal, as on the kernel.
        let opened_unseen = !matches!(f.kind(), libc::S_IFREG | libc::S_IFLNK);
        if !(open || opened_unseen || f.st.st_nlink > 1) {
            return Ok(());
        }
        // The kept handle is all that will be left of it: a metacopy file gets its data
        // first (its lower file may be whited out in a moment).
        if f.upper && !f.lowers.is_empty() {
            self.copy_up(node)?;
        }
        let top = f.top(merged_path).ok_or(Errno::ENOENT)?;
        let fd = self.layer(top.layer).open(&top.path, libc::O_PATH)?;
        node.state.write().detached = Some(Arc::new(fd));
        Ok(())
    }

    /// Keeps a handle on a directory whose name is about to go (rmdir, or a rename over it),
    /// so that a process holding it open still gets fstat (st_nlink 0 for an upper one, as on
    /// the kernel: fstests generic/035), fchmod and an empty listing. The kernel does not say
    /// whether a directory is open (OPENDIR is answered ENOSYS), so every directory node gets
    /// one: its cached upper handle where it has one (no syscall), else an O_PATH open. An
    /// empty directory pins one block until the kernel's FORGET, which follows the removal.
    fn detach_dir(&self, node: &Node, f: &Found, merged_path: &[u8]) -> SysResult<()> {
        let kept = node.upper_fd.lock().as_ref().map(|h| h.fd.clone());
        let fd = match kept {
            Some(fd) if f.upper => fd,
            _ => {
                let top = f.top(merged_path).ok_or(Errno::ENOENT)?;
                Arc::new(self.layer(top.layer).open(&top.path, libc::O_PATH)?)
            }
        };
        node.state.write().detached = Some(fd);
        Ok(())
    }

    /// After a name is removed, the node answers through its kept handle (if any).
    /// A name of `node` was removed: another known name takes over, else it is unlinked.
    pub(crate) fn forget_name(&self, node: &Node, dir: &Arc<Node>, name: &[u8]) {
        let next = {
            let mut s = node.state.write();
            s.others.retain(|(d, n)| !(d.ino == dir.ino && n == name));
            let primary = s.name == name && s.parent.as_ref().map(|p| p.ino) == Some(dir.ino);
            if !primary {
                return;
            }
            match s.others.pop() {
                Some(next) => next,
                None => {
                    s.unlinked = true;
                    return;
                }
            }
        };
        // Where the surviving name's object lives (it may still be lower-only).
        let (d, n) = next;
        match self.resolve(&d, &n) {
            Ok(Some(f)) => {
                let mut s = node.state.write();
                s.parent = Some(d);
                s.name = n;
                s.upper = f.upper;
                s.lowers = f.lowers;
                s.unlinked = false;
            }
            _ => node.state.write().unlinked = true,
        }
    }

    /// A merged directory is empty when no layer shows an entry through the whiteouts.
    pub(crate) fn merged_dir_is_empty(&self, dir_path: &[u8], f: &Found) -> SysResult<bool> {
        let layers = f.dir_layers(dir_path);
        // The lower copies as the directory's node read them already (rm -rf listed it just
        // before), when the kernel knows it.
        let ino = self.ino_of(f);
        let cache = self
            .nodes
            .get(ino)
            .and_then(|n| self.lower_dirs(&n))
            .filter(|c| c.locs == f.lowers);
        Ok(self.list_merged(&layers, cache.as_deref())?.is_empty())
    }

    /// Empties an upper directory that holds only whiteouts (and opaque markers).
    pub(crate) fn clear_upper_dir(&self, dir_path: &[u8]) -> SysResult<()> {
        let d = self.upper().dir(dir_path)?;
        let listing = fs::open_dir_for_listing(d.as_fd())?;
        for e in fs::read_dir(listing.as_fd())? {
            let st = fs::stat_at(d.as_fd(), &e.name)?;
            if whiteout::is_whiteout(d.as_fd(), &e.name, &st) || whiteout::is_hidden_name(&e.name) {
                fs::unlink_at(d.as_fd(), &e.name, false)?;
            } else {
                return Err(Errno::ENOTEMPTY);
            }
        }
        let _ = xattr::remove(d.as_fd(), b"", self.markers.opaque_xattr());
        Ok(())
    }
}
