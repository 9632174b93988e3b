//! rename(2) across the union, with RENAME_NOREPLACE and RENAME_EXCHANGE.
//!
//! Files are copied up and renamed in the upper. A directory that lower layers hold is
//! renamed without copying its subtree: its upper copy carries a redirect
//! (`trusted.overlay.redirect`, the kernel's format) to its lower path, and a whiteout is
//! left at the old name. Never EXDEV.

use super::lookup::Found;
use super::node::Node;
use super::{Errno, SysResult, Union, path, whiteout};
use crate::sys::{fs, xattr};
use std::os::fd::AsFd;
use std::sync::Arc;

const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
const EXCHANGE: u32 = libc::RENAME_EXCHANGE;

impl Union {
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
    ) -> SysResult<()> {
        self.writable()?;
        if flags & !(NOREPLACE | EXCHANGE) != 0 || flags == NOREPLACE | EXCHANGE {
            return Err(Errno::EINVAL);
        }
        if new_name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        if !path::is_valid_name(new_name) || super::whiteout::is_hidden_name(new_name) {
            return Err(Errno::EINVAL);
        }
        let dir = self.node(parent)?;
        let new_dir = self.node(new_parent)?;
        self.entries_change(&dir);
        self.entries_change(&new_dir);
        let src = self.resolve(&dir, name)?.ok_or(Errno::ENOENT)?;
        let dst = self.resolve(&new_dir, new_name)?;
        if flags & NOREPLACE != 0 && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if flags & EXCHANGE != 0 && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        let src_path = path::join(&dir.path(), name);
        let dst_path = path::join(&new_dir.path(), new_name);
        if src_path == dst_path {
            return Ok(());
        }
        let src_node = self.node_for(&dir, name, &src)?;
        // Protected objects stay where they are; an append-only directory loses no name, an
        // immutable one gains none.
        self.refuse_protected(&src_node)?;
        if let Some(d) = &dst {
            self.refuse_protected_name(&new_dir, new_name, d, None)?;
        }
        let (from, to) = (self.protection(&dir), self.protection(&new_dir));
        if from.any() || to.immutable || (to.append && dst.is_some()) {
            return Err(Errno(libc::EPERM));
        }
        if let Some(d) = &dst {
            if self.number_of(d) == src_node.number && flags & EXCHANGE == 0 {
                // Two names of one file: rename(2) does nothing.
                return Ok(());
            }
            if flags & EXCHANGE == 0 {
                match (src.is_dir(), d.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if !self.merged_dir_is_empty(&dst_path, d)? => {
                        // The kernel leaves the emptiness of a directory only the upper
                        // holds to the upper's own rename, after copying up the source and
                        // the target's parent (ovl_rename_start): those copies stay when it
                        // fails, and the upper is to look the same here.
                        if d.upper && d.lowers.is_empty() {
                            self.copy_up(&src_node)?;
                            self.copy_up(&new_dir)?;
                        }
                        return Err(Errno::ENOTEMPTY);
                    }
                    _ => {}
                }
            }
        }
        let dst_node = match &dst {
            Some(d) => Some(self.node_for(&new_dir, new_name, d)?),
            None => None,
        };
        self.prepare_source(&src_node)?;
        if let (Some(n), Some(d)) = (&dst_node, &dst)
            && flags & EXCHANGE == 0
        {
            self.detach_if_open(n, d, &dst_path)?;
            if !d.is_dir() {
                self.count_name_going(d, &dst_path)?;
            }
        }
        if flags & EXCHANGE != 0 {
            self.prepare_source(dst_node.as_ref().expect("checked"))?;
        }
        self.copy_up(&new_dir)?;
        let od = self.upper_dir(&dir)?;
        let nd = self.upper_dir(&new_dir)?;
        // An emptied upper dir at the target is cleared; it is replaced by the rename below.
        if flags & EXCHANGE == 0
            && let Some(d) = &dst
            && d.is_dir()
            && d.upper
        {
            self.clear_upper_dir(&dst_path)?;
        }
        let source_covers_lower = self.lower_has(&dir, name)?;
        let leave_whiteout = flags & EXCHANGE == 0 && source_covers_lower;
        let target_covers_lower = self.lower_has(&new_dir, new_name)?;
        // Opaque before the move, so no moment shows lower entries through a plain directory
        // that lands on a name lower layers hold (at its old name it hides nothing).
        if src.is_dir() && target_covers_lower && src_node.state.read().lowers.is_empty() {
            xattr::set(od.as_fd(), name, self.markers.opaque_xattr(), b"y", 0)?;
        }
        if let (Some(d), Some(dn)) = (&dst, &dst_node)
            && flags & EXCHANGE != 0
            && d.is_dir()
            && source_covers_lower
            && dn.state.read().lowers.is_empty()
        {
            xattr::set(nd.as_fd(), new_name, self.markers.opaque_xattr(), b"y", 0)?;
        }
        let device_whiteout_at_target = flags & EXCHANGE == 0
            && dst.is_none()
            && fs::stat_at(nd.as_fd(), new_name)
                .is_ok_and(|st| whiteout::is_whiteout(nd.as_fd(), new_name, &st));
        if device_whiteout_at_target {
            // Swap with the whiteout in one step (a directory cannot replace a device, and
            // RENAME_NOREPLACE must see the name as free): the whiteout lands at the old name,
            // where it stays if lower layers hold that name. A crash leaves one name or the
            // other, never both.
            fs::rename_at(od.as_fd(), name, nd.as_fd(), new_name, EXCHANGE)?;
            if !leave_whiteout {
                fs::unlink_at(od.as_fd(), name, false)?;
            }
        } else {
            let mut rflags = flags;
            if leave_whiteout && self.markers == whiteout::MarkerFormat::Kernel {
                rflags |= libc::RENAME_WHITEOUT;
            }
            fs::rename_at(od.as_fd(), name, nd.as_fd(), new_name, rflags)?;
            if leave_whiteout && rflags & libc::RENAME_WHITEOUT == 0 {
                self.make_whiteout(od.as_fd(), name)?;
            }
        }
        // A `.wh.NAME` marker (user format) for the new name goes once the name is taken.
        if dst.is_none() && flags & EXCHANGE == 0 {
            let wh = whiteout::wh_name(new_name);
            if fs::stat_at(nd.as_fd(), &wh).is_ok() {
                fs::unlink_at(nd.as_fd(), &wh, false)?;
            }
        }
        self.move_node(&src_node, (&dir, name), &new_dir, new_name);
        match dst_node {
            Some(d) if flags & EXCHANGE != 0 => {
                self.move_node(&d, (&new_dir, new_name), &dir, name)
            }
            Some(d) => self.forget_name(&d, &new_dir, new_name),
            None => {}
        }
        Ok(())
    }

    /// The node of a found child, with this name as its own: registered if the kernel has
    /// not looked it up, and renamed to it when the kernel knows it by another name of a
    /// hard-linked file (copy-up works on the node's own name, and the rename moves this
    /// one), as a lookup of this name would do.
    fn node_for(&self, dir: &Arc<Node>, name: &[u8], f: &Found) -> SysResult<Arc<Node>> {
        let ino = self.ino_of(f);
        if let Some(n) = self.nodes.get(ino)
            && (n.is_dir() || n.is_named(dir, name))
        {
            return Ok(n);
        }
        let f = self.resolve(dir, name)?.ok_or(Errno::ENOENT)?;
        let (node, _) = self.remember(dir, name, f);
        // Not a kernel reference: let it go when the kernel never asks for it.
        self.nodes.forget(node.ino, 1);
        Ok(node)
    }

    /// Gets a rename source into the upper: files by copy-up (metadata only and a redirect to
    /// the data, with metacopy=on), directories by a copy of the directory alone plus a
    /// redirect to where its lower content lives.
    fn prepare_source(&self, node: &Arc<Node>) -> SysResult<()> {
        if !node.is_dir() {
            return self.copy_up_for_rename(node);
        }
        let had_upper = node.is_upper();
        let lower_path = node.state.read().lowers.first().map(|l| l.path.clone());
        self.copy_up(node)?;
        if let Some(lp) = lower_path {
            let p = node.path();
            let (parent, name) = path::split(&p);
            let d = self.upper().dir(parent)?;
            let attr = self.markers.redirect_xattr();
            if !had_upper || xattr::get(d.as_fd(), name, attr).is_err() {
                let mut value = b"/".to_vec();
                value.extend_from_slice(&lp);
                xattr::set(d.as_fd(), name, attr, &value, 0)?;
            }
        }
        Ok(())
    }

    /// Points a node at its new parent and name; its subtree follows.
    /// The name (old_dir, old_name) of `node` became (new_dir, new_name).
    fn move_node(
        &self,
        node: &Arc<Node>,
        (old_dir, old_name): (&Arc<Node>, &[u8]),
        new_dir: &Arc<Node>,
        new_name: &[u8],
    ) {
        let mut s = node.state.write();
        if let Some(alias) = s
            .others
            .iter_mut()
            .find(|(d, n)| d.ino == old_dir.ino && n == old_name)
        {
            *alias = (new_dir.clone(), new_name.to_vec());
            return;
        }
        s.parent = Some(new_dir.clone());
        s.name = new_name.to_vec();
    }
}
