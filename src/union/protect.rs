//! Inode flags (`lsattr`, `chattr`), as kernel overlayfs keeps them: the shown layer file's
//! own flags, except immutable and append-only, which live in `overlay.protattr` on the
//! upper copy ("a", "i" or "ai"). An upper inode marked immutable could not be renamed into
//! place or given xattrs by the mount itself, so the mark is an xattr, and the mount enforces
//! it: a FUSE inode carries no S_IMMUTABLE or S_APPEND for the kernel's VFS to check, so
//! every change of a protected object is refused here with EPERM (`refuse_*`).

use super::node::Node;
use super::{Errno, SysResult, Union};
use crate::sys::{fs, xattr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub const FS_IMMUTABLE_FL: u32 = 0x10;
pub const FS_APPEND_FL: u32 = 0x20;
const FS_XFLAG_IMMUTABLE: u32 = 0x8;
const FS_XFLAG_APPEND: u32 = 0x10;

/// The protection flags of one object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prot {
    pub immutable: bool,
    pub append: bool,
}

impl Prot {
    fn parse(v: &[u8]) -> Prot {
        Prot {
            immutable: v.contains(&b'i'),
            append: v.contains(&b'a'),
        }
    }

    pub(crate) fn any(self) -> bool {
        self.immutable || self.append
    }

    fn from_flags(flags: u32) -> Prot {
        Prot {
            immutable: flags & FS_IMMUTABLE_FL != 0,
            append: flags & FS_APPEND_FL != 0,
        }
    }

    fn flags(self) -> u32 {
        (if self.immutable { FS_IMMUTABLE_FL } else { 0 })
            | (if self.append { FS_APPEND_FL } else { 0 })
    }

    /// The xattr value, in the kernel's order.
    fn value(self) -> Vec<u8> {
        let mut v = Vec::new();
        if self.append {
            v.push(b'a');
        }
        if self.immutable {
            v.push(b'i');
        }
        v
    }
}

/// What a change of inode flags changes (FS_IOC_SETFLAGS or FS_IOC_FSSETXATTR).
enum Change<'a> {
    Flags(u32),
    Xattr(&'a [u32; 7]),
}

impl Union {
    /// The protection of a node: from its upper copy's `overlay.protattr`.
    /// A lower-only object shows its layer file's own flags, as on the kernel (one statx).
    pub(crate) fn protection(&self, node: &Node) -> Prot {
        if !node.is_upper() {
            let attrs = self.at_top(node, fs::attributes_at).unwrap_or(0);
            return Prot {
                immutable: attrs & libc::STATX_ATTR_IMMUTABLE as u64 != 0,
                append: attrs & libc::STATX_ATTR_APPEND as u64 != 0,
            };
        }
        // From the node's xattr names, listed once and remembered (most objects have no
        // protattr: no syscall after the first; an unlink of each name of a directory checks
        // the directory's). A listing that fails falls back to one getxattr.
        let attr = self.markers.protattr_xattr();
        match self.xattr_names(node) {
            Ok(names) if !names.iter().any(|n| n == attr) => return Prot::default(),
            _ => {}
        }
        self.at_top(node, |d, n| xattr::get(d, n, attr))
            .map(|v| Prot::parse(&v))
            .unwrap_or_default()
    }

    /// The protection of `name` in upper directory `dir` (an object no node stands for).
    pub(crate) fn protection_at(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Prot {
        xattr::get(dir, name, self.markers.protattr_xattr())
            .map(|v| Prot::parse(&v))
            .unwrap_or_default()
    }

    /// A copy-up of a lower object carries its own immutable and append-only flags into
    /// protattr on the staged copy (`work/tmp`), as the kernel does: a lower directory marked
    /// immutable stays so when a change inside it copies it up.
    pub(crate) fn copy_protection(
        &self,
        src_layer: super::layer::LayerId,
        src_dir: BorrowedFd<'_>,
        name: &[u8],
        (work, tmp): (BorrowedFd<'_>, &[u8]),
    ) -> SysResult<()> {
        if src_layer == super::layer::UPPER || src_layer == super::layer::INDEX {
            return Ok(());
        }
        let attrs = fs::attributes_at(src_dir, name).unwrap_or(0);
        let p = Prot {
            immutable: attrs & libc::STATX_ATTR_IMMUTABLE as u64 != 0,
            append: attrs & libc::STATX_ATTR_APPEND as u64 != 0,
        };
        if p.any() {
            xattr::set(work, tmp, self.markers.protattr_xattr(), &p.value(), 0)?;
        }
        Ok(())
    }

    /// EPERM for an immutable or append-only object: no setattr, xattr change, link,
    /// unlink or rename of it.
    pub(crate) fn refuse_protected(&self, node: &Node) -> SysResult<()> {
        if self.protection(node).any() {
            return Err(Errno(libc::EPERM));
        }
        Ok(())
    }

    /// EPERM for an open that may change a protected file: any write to an immutable one,
    /// a write without O_APPEND or a truncation of an append-only one.
    pub(crate) fn refuse_protected_open(&self, node: &Node, flags: i32) -> SysResult<()> {
        let p = self.protection(node);
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0;
        let refused = (p.immutable && (writes || trunc))
            || (p.append && (trunc || (writes && flags & libc::O_APPEND == 0)));
        if refused {
            return Err(Errno(libc::EPERM));
        }
        Ok(())
    }

    /// EPERM for a name made in an immutable directory.
    pub(crate) fn refuse_create_in(&self, dir: &Node) -> SysResult<()> {
        if self.protection(dir).immutable {
            return Err(Errno(libc::EPERM));
        }
        Ok(())
    }

    /// A real open of the shown layer object, for the flag ioctls (an O_PATH handle takes no
    /// ioctl).
    fn open_for_flags(&self, node: &Node) -> SysResult<OwnedFd> {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        self.at_top(node, |d, n| {
            if n.is_empty() {
                fs::reopen(d, flags)
            } else {
                fs::open_at(d, n, flags, 0)
            }
        })
    }

    fn flags_node(&self, ino: u64) -> SysResult<std::sync::Arc<Node>> {
        let node = self.node(ino)?;
        // As the kernel: only regular files and directories have flags to ask for.
        if node.kind != libc::S_IFREG && node.kind != libc::S_IFDIR {
            return Err(Errno::ENOTTY);
        }
        Ok(node)
    }

    /// FS_IOC_GETFLAGS: the layer file's flags, immutable and append-only from protattr.
    pub fn inode_flags(&self, ino: u64) -> SysResult<u32> {
        let node = self.flags_node(ino)?;
        let real = fs::inode_flags(self.open_for_flags(&node)?.as_fd())?;
        if !node.is_upper() {
            return Ok(real);
        }
        let prot = FS_IMMUTABLE_FL | FS_APPEND_FL;
        Ok(real & !prot | self.protection(&node).flags())
    }

    /// FS_IOC_FSGETXATTR: the layer file's struct fsxattr, protection as above.
    pub fn fsxattr(&self, ino: u64) -> SysResult<[u32; 7]> {
        let node = self.flags_node(ino)?;
        let mut v = fs::fsxattr(self.open_for_flags(&node)?.as_fd())?;
        if !node.is_upper() {
            return Ok(v);
        }
        let p = self.protection(&node);
        v[0] &= !(FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND);
        if p.immutable {
            v[0] |= FS_XFLAG_IMMUTABLE;
        }
        if p.append {
            v[0] |= FS_XFLAG_APPEND;
        }
        Ok(v)
    }

    /// FS_IOC_SETFLAGS. (The kernel checked CAP_LINUX_IMMUTABLE for a change of `i` or `a`.)
    pub fn set_inode_flags(&self, ino: u64, flags: u32) -> SysResult<()> {
        self.change_flags(ino, Change::Flags(flags))
    }

    /// FS_IOC_FSSETXATTR.
    pub fn set_fsxattr(&self, ino: u64, v: &[u32; 7]) -> SysResult<()> {
        self.change_flags(ino, Change::Xattr(v))
    }

    /// Copies the object up (metadata only where metacopy=on), writes its protection to
    /// protattr and the other flags to the upper inode, as the kernel does.
    fn change_flags(&self, ino: u64, change: Change<'_>) -> SysResult<()> {
        self.writable()?;
        let node = self.flags_node(ino)?;
        if !node.state.read().unlinked {
            self.copy_up_meta(&node)?;
        }
        let _gate = self.metacopy_gate(&node);
        let prot = match &change {
            Change::Flags(f) => Prot::from_flags(*f),
            Change::Xattr(v) => Prot {
                immutable: v[0] & FS_XFLAG_IMMUTABLE != 0,
                append: v[0] & FS_XFLAG_APPEND != 0,
            },
        };
        let attr = self.markers.protattr_xattr();
        let _change = node.xattr_change();
        if prot.any() {
            self.at_top(&node, |d, n| xattr::set(d, n, attr, &prot.value(), 0))?;
        } else {
            match self.at_top(&node, |d, n| xattr::remove(d, n, attr)) {
                Err(e) if e != Errno::ENODATA => return Err(e),
                _ => {}
            }
        }
        let fd = self.open_for_flags(&node)?;
        match change {
            Change::Flags(f) => fs::set_inode_flags(fd.as_fd(), f & !prot.flags()),
            Change::Xattr(v) => {
                let mut v = *v;
                v[0] &= !(FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND);
                fs::set_fsxattr(fd.as_fd(), &v)
            }
        }
    }
}
