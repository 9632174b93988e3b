//! Whiteouts as hard links to one 0/0 character device in the work directory, as kernel
//! overlayfs makes them (fs/overlayfs/dir.c, ovl_whiteout): a new name for an existing
//! inode instead of a new inode per whiteout. On ext4 allocating an inode is the expensive
//! part of a whiteout (measured here: mknodat 120 us against linkat 14 us on an upper that
//! has seen many deletions, where the allocator scans for inodes not recently deleted), and
//! `rm -rf` of a lower tree makes one whiteout per name.
//!
//! The shared inode lives under a temporary name in W/work, removed when the mount ends
//! (`whiteout_cleanup`; after a crash the next mount empties W/work). When
//! it has as many links as the upper filesystem allows (EMLINK), a new one is made; when the
//! upper refuses links to it for another reason, whiteouts fall back to one mknod each.

use super::{Errno, SysResult, Union};
use crate::sys::fs;
use std::os::fd::{AsFd, BorrowedFd};

/// The shared whiteout's name in W/work, once made; `disabled` after an unexpected refusal.
#[derive(Default)]
pub(crate) struct SharedWhiteout {
    name: Option<Vec<u8>>,
    disabled: bool,
}

impl Union {
    /// What removes the shared whiteout's name from W/work once the mount has ended (the
    /// names linked to it keep the inode), so that an unmounted work dir holds nothing
    /// (`unionrs check` reports leftovers there).
    pub fn whiteout_cleanup(&self) -> impl FnOnce() + Send + use<> {
        let shared = self.shared_whiteout.clone();
        let work = self.work().ok().and_then(|w| w.try_clone_to_owned().ok());
        move || {
            let mut s = shared.lock();
            if let (Some(name), Some(work)) = (s.name.take(), work)
                && let Err(e) = fs::unlink_at(work.as_fd(), &name, false)
            {
                log::warn!("cannot remove the shared whiteout from the work dir: {e}");
            }
            // No whiteout links to a name that is gone: later whiteouts get their own inode.
            s.disabled = true;
        }
    }

    /// Puts a whiteout (a 0/0 character device) at `name` in the upper directory `dir`.
    /// EEXIST when the name is taken, as mknod would say.
    pub(crate) fn put_device_whiteout(&self, dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<()> {
        let Ok(work) = self.work() else {
            return fs::mknod_at(dir, name, libc::S_IFCHR, 0);
        };
        // Two tries: the first may find the shared inode full (EMLINK) and replace it.
        for _ in 0..2 {
            let shared = {
                let mut s = self.shared_whiteout.lock();
                if s.disabled {
                    break;
                }
                match &s.name {
                    Some(n) => n.clone(),
                    None => {
                        let n = self.temp_name();
                        fs::mknod_at(work, &n, libc::S_IFCHR, 0)?;
                        s.name = Some(n.clone());
                        n
                    }
                }
            };
            match fs::link_at(work, &shared, dir, name) {
                Ok(()) => return Ok(()),
                // The name is taken, or the upper is full or failing: mknod would fail
                // the same way.
                Err(e)
                    if [
                        Errno::EEXIST,
                        Errno::ENOSPC,
                        Errno::EDQUOT,
                        Errno::EROFS,
                        Errno::EIO,
                    ]
                    .contains(&e) =>
                {
                    return Err(e);
                }
                Err(e) => {
                    let mut s = self.shared_whiteout.lock();
                    if s.name.as_ref() == Some(&shared) {
                        s.name = None;
                        // Full (EMLINK; the names linked so far keep it) or gone: a new one
                        // takes over. Anything else (an upper that refuses hard links to
                        // devices): stop trying, as the kernel does.
                        if e != Errno::EMLINK && e != Errno::ENOENT {
                            log::info!(
                                "whiteouts: cannot link a shared whiteout ({e}); one inode each from now on"
                            );
                            s.disabled = true;
                        }
                        let _ = fs::unlink_at(work, &shared, false);
                    }
                }
            }
        }
        fs::mknod_at(dir, name, libc::S_IFCHR, 0)
    }

    /// Replaces the upper object at `name` in `dir` with a whiteout in one step (the
    /// object is moved to `work_tmp` in W/work, for the caller to remove). Like
    /// renameat2(RENAME_WHITEOUT), but the whiteout is a link to the shared inode: it is
    /// linked into W/work first and exchanged with the object.
    pub(crate) fn swap_for_whiteout(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        work_tmp: &[u8],
    ) -> SysResult<()> {
        let work = self.work()?;
        match self.put_device_whiteout(work, work_tmp) {
            Ok(()) => match fs::rename_at(work, work_tmp, dir, name, libc::RENAME_EXCHANGE) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = fs::unlink_at(work, work_tmp, false);
                    // An upper without RENAME_EXCHANGE may still make whiteouts itself.
                    if e == Errno::EINVAL || e == Errno::ENOTSUP {
                        return fs::rename_at(dir, name, work, work_tmp, libc::RENAME_WHITEOUT);
                    }
                    Err(e)
                }
            },
            Err(_) => fs::rename_at(dir, name, work, work_tmp, libc::RENAME_WHITEOUT),
        }
    }
}
