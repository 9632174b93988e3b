//! Open files: a handle holds an fd on the object in its layer. Opening for writing copies
//! the file up first; a reader opened before a copy-up keeps reading what it opened.

use super::layer::{LayerId, UPPER};
use super::node::Node;
use super::{Errno, SysResult, Union};
use crate::sys::{fs, io};
use dashmap::DashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct FileHandle {
    pub fd: Arc<OwnedFd>,
    pub node: Arc<Node>,
    pub writable: bool,
    pub layer: LayerId,
    /// An upper fd opened read-write with no status flags (O_APPEND, O_SYNC): it can back
    /// every open of the inode as it is (see `backing_fd`).
    pub backing_ready: bool,
    /// Opened by execve (see `Node::exec_opens`).
    pub exec: bool,
}

impl FileHandle {
    pub fn new(node: &Arc<Node>, fd: OwnedFd, layer: LayerId, writable: bool, exec: bool) -> Self {
        FileHandle {
            fd: Arc::new(fd),
            node: node.clone(),
            writable,
            layer,
            backing_ready: false,
            exec,
        }
    }
}

#[derive(Default)]
pub struct HandleTable {
    map: DashMap<u64, Arc<FileHandle>, super::inohash::InoHash>,
    next: AtomicU64,
}

impl HandleTable {
    /// Keeps an open handle; returns its number (the FUSE fh).
    pub fn insert(&self, h: FileHandle) -> u64 {
        h.node.open_count.fetch_add(1, Ordering::Relaxed);
        if h.exec {
            h.node.exec_opens.fetch_add(1, Ordering::Relaxed);
        }
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.insert(fh, Arc::new(h));
        fh
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, fh: u64) -> Option<Arc<FileHandle>> {
        self.map.get(&fh).map(|h| h.clone())
    }

    /// Forgets handle `fh`; returns it (its fd closes with the last reference).
    pub fn remove(&self, fh: u64) -> Option<Arc<FileHandle>> {
        let (_, h) = self.map.remove(&fh)?;
        h.node.open_count.fetch_sub(1, Ordering::Relaxed);
        if h.exec {
            h.node.exec_opens.fetch_sub(1, Ordering::Relaxed);
        }
        Some(h)
    }
}

/// Flags that carry over to the fd we open on the layer object.
const PASS_FLAGS: i32 = libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME;

/// The kernel's `__FMODE_EXEC` open flag: the open is execve's (or uselib's) own.
const FMODE_EXEC: i32 = 0x20;

impl Union {
    /// Opens a file; returns its handle.
    pub fn open(&self, ino: u64, flags: i32) -> SysResult<u64> {
        let node = self.node(ino)?;
        if node.is_dir() {
            return Err(Errno::EISDIR);
        }
        let acc = flags & libc::O_ACCMODE;
        let write = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let pass = flags & PASS_FLAGS;
        let exec = flags & FMODE_EXEC != 0;
        // O_TRUNC is done here (FUSE_ATOMIC_O_TRUNC), before the kernel's ETXTBSY check: a
        // write-mode open passed that check already (the kernel refuses it while the file runs,
        // and holds off execve while the open is in progress), but O_RDONLY|O_TRUNC is only
        // checked after this reply. Truncating a running program kills it with SIGBUS, and its
        // death lifts the check the kernel then makes, so the open would succeed on an emptied
        // file. Refused here while an execve's handle is open, as the kernel would; only
        // O_RDONLY|O_TRUNC in the moment between a program's exit and its RELEASE gets an
        // ETXTBSY the kernel would not give.
        if acc == libc::O_RDONLY
            && flags & libc::O_TRUNC != 0
            && node.exec_opens.load(Ordering::Relaxed) > 0
        {
            return Err(Errno::ETXTBSY);
        }
        if write {
            self.refuse_protected_open(&node, flags)?;
        }
        if node.state.read().unlinked {
            let fd = node.state.read().detached.clone().ok_or(Errno::ENOENT)?;
            // A deleted object kept from a lower layer is never written: layers are read-only.
            if write && !node.is_upper() {
                return Err(Errno::EROFS);
            }
            let f = fs::reopen(fd.as_fd(), acc | pass)?;
            if flags & libc::O_TRUNC != 0 {
                io::ftruncate(f.as_fd(), 0)?;
            }
            let layer = if node.is_upper() { UPPER } else { 1 };
            return Ok(self
                .handles
                .insert(FileHandle::new(&node, f, layer, write, exec)));
        }
        if write {
            self.writable()?;
            self.copy_up(&node)?;
        }
        // A metacopy file is read from the lower file that holds its data (a later write-open
        // copies the data up and gets the upper: see `move_to_new_id`).
        let at = match node.metacopy_data() {
            Some(data) => self.data_at(&node, &data)?,
            None => self.top_at(&node)?,
        };
        let trunc = if write && flags & libc::O_TRUNC != 0 {
            libc::O_TRUNC
        } else {
            0
        };
        // An upper file opened read-write from the start can back passthrough as it is: no
        // second open (through /proc) to get a read-write fd for the kernel.
        if at.layer == UPPER && pass == 0 && self.backing_upper_rdwr() {
            let rdwr = fs::open_at(at.dir.fd(), &at.name, libc::O_RDWR | trunc, 0);
            if let Ok(fd) = rdwr {
                return Ok(self.handles.insert(FileHandle {
                    backing_ready: true,
                    ..FileHandle::new(&node, fd, UPPER, write, exec)
                }));
            }
        }
        let fd = self.open_layer_file(at.layer, at.dir.fd(), &at.name, acc | pass | trunc)?;
        Ok(self
            .handles
            .insert(FileHandle::new(&node, fd, at.layer, write, exec)))
    }

    /// The kernel's inode `ino` reads a lower file as its passthrough backing (an open reader)
    /// and cannot switch to the upper copy a new open needs: the kernel allows one backing per
    /// inode. The object goes on under a new node id, so the name's next lookup gives the
    /// kernel a new inode that can have the upper backing; `ino` answers from then on through a
    /// handle on the object, as a deleted file held open does, until its FORGET. Earlier
    /// readers keep reading the lower file, as on kernel overlayfs.
    pub fn move_to_new_id(&self, ino: u64) -> SysResult<()> {
        let node = self.node(ino)?;
        let (parent, path) = {
            let s = node.state.read();
            if s.unlinked {
                // Moved already (or deleted): the kernel's next lookup finds the new id.
                return Ok(());
            }
            (s.parent.clone(), node.path())
        };
        let fd = self.upper().open(&path, libc::O_PATH)?;
        {
            let mut s = node.state.write();
            s.detached = Some(Arc::new(fd));
            s.unlinked = true;
        }
        if self.nodes.move_away(&node, || self.inos.fresh()) {
            self.stats.inode_moves.fetch_add(1, Ordering::Relaxed);
        }
        // Listings show the new number (d_ino = st_ino).
        if let Some(p) = parent {
            self.entries_change(&p);
        }
        Ok(())
    }

    /// Whether upper files are opened read-write so their fds can back passthrough.
    pub(crate) fn backing_upper_rdwr(&self) -> bool {
        self.backing_rdwr.load(Ordering::Relaxed) && !self.read_only() && !self.keeps_atime(UPPER)
    }

    /// Passthrough is on: open upper files read-write (see `backing_fd`).
    pub fn open_upper_read_write(&self, on: bool) {
        self.backing_rdwr.store(on, Ordering::Relaxed);
    }

    /// Opens a layer file for a handle. Reads through the fd (ours, or the kernel's in
    /// passthrough) update the layer file's atime by the rules of the mount it was opened on,
    /// which the union mount's VFS flags do not reach. So, as kernel overlayfs does: lower
    /// files are never touched (layers are read-only), and upper files follow the union's
    /// atime options (upper_mount.rs; O_NOATIME under `noatime` where that has no mount).
    /// O_NOATIME is only granted to the file's owner or a privileged daemon; without it the
    /// open goes ahead plainly.
    fn open_layer_file(
        &self,
        layer: LayerId,
        dir: std::os::fd::BorrowedFd<'_>,
        name: &[u8],
        flags: i32,
    ) -> SysResult<OwnedFd> {
        if self.keeps_atime(layer) && flags & libc::O_NOATIME == 0 {
            match fs::open_at(dir, name, flags | libc::O_NOATIME, 0) {
                Err(Errno::EPERM) => {}
                r => return r,
            }
        }
        fs::open_at(dir, name, flags, 0)
    }

    /// Whether opens in `layer` must ask for O_NOATIME: lower files always (their private
    /// mounts are noatime too, where the daemon could make them), upper files under
    /// `noatime` unless the upper's private mount carries it.
    fn keeps_atime(&self, layer: LayerId) -> bool {
        layer != UPPER || (self.noatime && !self.layers[UPPER].private_mount)
    }

    /// Every layer is on a private mount of the daemon's that carries the union's atime
    /// rule (upper_mount.rs), so FUSE passthrough reads keep it too.
    pub fn atime_rule_in_mounts(&self) -> bool {
        self.layers.iter().all(|l| l.private_mount)
    }

    /// An fd to hand to the kernel for passthrough, with the layer it lives in and whether it
    /// can serve writers: upper files are reopened read-write so that later writers can share
    /// the inode's one backing file; lower files are read-only.
    pub fn backing_fd(&self, fh: u64) -> SysResult<(Arc<OwnedFd>, LayerId, bool)> {
        let h = self.handle(fh)?;
        if h.backing_ready {
            return Ok((h.fd.clone(), UPPER, true));
        }
        if h.layer == UPPER && !self.read_only() {
            let reopened = if self.keeps_atime(UPPER) {
                fs::reopen(h.fd.as_fd(), libc::O_RDWR | libc::O_NOATIME)
                    .or_else(|_| fs::reopen(h.fd.as_fd(), libc::O_RDWR))
            } else {
                fs::reopen(h.fd.as_fd(), libc::O_RDWR)
            };
            if let Ok(fd) = reopened {
                return Ok((Arc::new(fd), UPPER, true));
            }
            if h.writable {
                // Write-only (or a busy executable): it cannot serve readers.
                return Err(Errno::EBADF);
            }
        }
        Ok((h.fd.clone(), h.layer, false))
    }

    pub fn handle(&self, fh: u64) -> SysResult<Arc<FileHandle>> {
        self.handles.get(fh).ok_or(Errno::EBADF)
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> SysResult<Vec<u8>> {
        let h = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = io::pread(h.fd.as_fd(), &mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> SysResult<u32> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(Errno::EBADF);
        }
        // With O_APPEND the kernel puts pwrite data at the end, whatever the offset.
        let n = io::pwrite(h.fd.as_fd(), data, offset)?;
        Ok(n as u32)
    }

    /// Forgets handle `fh`; returns it (its fd closes with the last reference).
    pub fn release(&self, fh: u64) -> Option<Arc<FileHandle>> {
        self.handles.remove(fh)
    }

    pub fn fsync(&self, fh: u64, data_only: bool) -> SysResult<()> {
        let h = self.handle(fh)?;
        // fsync=0 / volatile: durability is traded for speed, as fuse-overlayfs does.
        if !h.writable || !self.fsync {
            return Ok(());
        }
        self.disk_fsync(h.fd.as_fd(), data_only)
    }

    /// fsync(2)/fdatasync(2) on a layer fd, counted for `unionrs stats`.
    pub(crate) fn disk_fsync(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        data_only: bool,
    ) -> SysResult<()> {
        self.stats.disk_fsyncs.fetch_add(1, Ordering::Relaxed);
        io::fsync(fd, data_only)
    }

    pub fn fsyncdir(&self, ino: u64) -> SysResult<()> {
        let node = self.node(ino)?;
        if !node.is_upper() || !self.fsync {
            return Ok(());
        }
        let d = self.upper().dir(&node.path())?;
        let f = fs::open_dir_for_listing(d.as_fd())?;
        self.disk_fsync(f.as_fd(), false)
    }

    pub fn fallocate(&self, fh: u64, mode: i32, offset: u64, len: u64) -> SysResult<()> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(Errno::EBADF);
        }
        io::fallocate(h.fd.as_fd(), mode, offset as i64, len as i64)
    }

    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> SysResult<i64> {
        let h = self.handle(fh)?;
        io::lseek(h.fd.as_fd(), offset, whence)
    }
}
