//! Copy-up: build the copy in the work directory, then rename it into the upper, so a crash
//! never leaves a half-copied object visible. Parents are copied up first.
//!
//! Data goes by FICLONE where the filesystem shares blocks, else copy_file_range over the
//! data extents only (SEEK_DATA/SEEK_HOLE), so holes stay holes. Then owner, mode, xattrs
//! (minus overlay-private ones) and times, and the origin inode number.

use super::layer::{INDEX, LayerId};
use super::node::Node;
use super::override_stat::{self, Owner};
use super::{Errno, SysResult, Union, path};
use crate::sys::{fs, io, xattr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// How much of a regular file a copy-up takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    /// Data and metadata: the upper file is complete.
    Full,
    /// Metadata only (metacopy=on): an upper file of the same size with no data blocks,
    /// marked with the metacopy xattr; reads keep going to the lower file.
    MetaOnly,
}

impl Union {
    /// Makes sure `node` exists in the upper layer, data included (a metacopy file gets its
    /// data now).
    pub(crate) fn copy_up(&self, node: &Node) -> SysResult<()> {
        self.copy_up_as(node, Data::Full)?;
        self.copy_up_metacopy_data(node, false)
    }

    /// `copy_up` for a hard link. The kernel (index=on) links a metacopy file as it is, data
    /// still below; unionrs copies the data first (every name must reach one data file), so
    /// the file keeps its times, as the kernel's metadata-only link does.
    pub(crate) fn copy_up_to_link(&self, node: &Node) -> SysResult<()> {
        self.copy_up_as(node, Data::Full)?;
        self.copy_up_metacopy_data(node, true)
    }

    /// Makes sure `node` exists in the upper layer for a metadata change (chmod, chown,
    /// utimes, xattrs): with metacopy=on a lower regular file is copied without its data.
    pub(crate) fn copy_up_meta(&self, node: &Node) -> SysResult<()> {
        if self.metacopy && node.kind == libc::S_IFREG {
            self.copy_up_as(node, Data::MetaOnly)
        } else {
            self.copy_up(node)
        }
    }

    /// Gets a regular file into the upper for a rename. With metacopy=on its data stays in
    /// the lower, as on the kernel: a metadata-only copy, which after the rename finds its
    /// data through an absolute redirect to the lower path (kernel format). Where that path
    /// would not lead back to the same lower file (a directory above it was renamed), the
    /// data is copied instead.
    pub(crate) fn copy_up_for_rename(&self, node: &Node) -> SysResult<()> {
        if !self.metacopy || node.kind != libc::S_IFREG {
            return self.copy_up(node);
        }
        self.copy_up_meta(node)?;
        {
            let _gate = node.copyup.lock();
            let Some(data) = node.metacopy_data() else {
                return Ok(()); // a complete file
            };
            let at = self.top_at(node)?;
            let attr = self.markers.redirect_xattr();
            if xattr::has(at.dir.fd(), &at.name, attr) {
                return Ok(()); // renamed before: it points at its data already
            }
            let found = self.resolve_from_lower_roots(&data.path)?;
            if found.and_then(|f| f.lowers.into_iter().next()).as_ref() == Some(&data) {
                let value = [b"/", data.path.as_slice()].concat();
                return xattr::set(at.dir.fd(), &at.name, attr, &value, 0);
            }
        }
        self.copy_up(node)
    }

    /// Held while a metadata change is applied to a metacopy file: its data copy-up (which
    /// holds the same gate) puts back the mode and `security.capability` it found (a write
    /// may drop them), and must not undo a change made meanwhile. None for other files
    /// (nothing to wait for).
    pub(crate) fn metacopy_gate<'n>(
        &self,
        node: &'n Node,
    ) -> Option<parking_lot::MutexGuard<'n, ()>> {
        node.metacopy_data().map(|_| node.copyup.lock())
    }

    fn copy_up_as(&self, node: &Node, data: Data) -> SysResult<()> {
        self.writable()?;
        if node.is_upper() {
            return Ok(());
        }
        let parent = node.state.read().parent.clone();
        if let Some(p) = &parent {
            self.copy_up(p)?;
        }
        let _gate = node.copyup.lock();
        if node.is_upper() {
            return Ok(());
        }
        let src = node
            .state
            .read()
            .lowers
            .first()
            .cloned()
            .ok_or(Errno::ENOENT)?;
        let upper_path = node.path();
        let (parent_path, name) = path::split(&upper_path);
        let dst_dir = match &parent {
            Some(p) => self.upper_dir(p)?,
            None => std::sync::Arc::new(self.upper().dir(parent_path)?),
        };
        // Through the parent's cached lower directory handles: no path walk.
        let src_at = self.lower_at(parent.as_deref(), &src)?;
        let (src_dir, src_name) = (src_at.dir.fd(), src_at.name.as_slice());
        let st = fs::stat_at(src_dir, src_name)?;
        // Another name of this file was copied up already: link to that copy. Also when the
        // node was looked up before that copy was made (its lower location is the lower file):
        // a second copy would part this name's data from the other names'.
        let key = self.index_key(src.layer, src_dir, src_name, &st);
        if src.layer == INDEX {
            return self.link_index_copy(node, (src_dir, src_name), (dst_dir.as_fd(), name));
        }
        if let Some((index_path, _)) = key.as_ref().and_then(|k| self.existing_index(k)) {
            let (d, n) = self.index_entry(&index_path)?;
            return self.link_index_copy(node, (d.as_fd(), n), (dst_dir.as_fd(), name));
        }
        // A hard-linked file is copied whole: its index copy is what its other names show.
        let data = if key.is_some() { Data::Full } else { data };
        let work = self.work()?;
        let tmp = self.temp_name();
        let staged = self.stage_copy(
            (src.layer, src_dir, src_name),
            &st,
            (work, &tmp),
            node.number,
            data,
        );
        if let Err(e) = staged {
            remove_staged(work, &tmp, &st);
            return Err(e);
        }
        if let Some(key) = &key {
            // Linked into the index and under its name: two links, one shown per name.
            if let Err(e) = self.mark_index_copy((work, &tmp), key, st.st_nlink, 2) {
                remove_staged(work, &tmp, &st);
                return Err(e);
            }
            self.index_used.store(true, Ordering::Relaxed);
            match fs::link_at(work, &tmp, self.layer(INDEX).root(), &key.path) {
                Ok(()) => {}
                // Another name's copy-up got there first: share its copy, drop ours.
                Err(Errno::EEXIST) => {
                    remove_staged(work, &tmp, &st);
                    let (d, n) = self.index_entry(&key.path)?;
                    return self.link_index_copy(node, (d.as_fd(), n), (dst_dir.as_fd(), name));
                }
                Err(e) => {
                    remove_staged(work, &tmp, &st);
                    return Err(e);
                }
            }
        }
        if let Err(e) = fs::rename_at(work, &tmp, dst_dir.as_fd(), name, libc::RENAME_NOREPLACE) {
            remove_staged(work, &tmp, &st);
            return Err(e);
        }
        {
            let mut s = node.state.write();
            s.upper = true;
            s.wh_free = node.is_dir() && self.markers == super::whiteout::MarkerFormat::Kernel;
            // A complete file needs no lower any more; a metacopy file reads its data there.
            if data == Data::Full && !node.is_dir() {
                s.lowers.clear();
            }
        }
        copy_up_done(node);
        node.forget_xattr_names();
        match data {
            Data::Full => self.stats.copy_ups.fetch_add(1, Ordering::Relaxed),
            Data::MetaOnly => self.stats.metacopy_ups.fetch_add(1, Ordering::Relaxed),
        };
        Ok(())
    }

    /// The directory handle and name of an index entry (a path below the workdir).
    fn index_entry<'p>(&self, path: &'p [u8]) -> SysResult<(std::os::fd::OwnedFd, &'p [u8])> {
        let (dir, name) = path::split(path);
        Ok((self.layer(INDEX).dir(dir)?, name))
    }

    /// Copy-up of a hard-linked lower file whose index copy exists: its upper name becomes
    /// one more link of that copy (the shown link count does not change: no name was added).
    fn link_index_copy(
        &self,
        node: &Node,
        (index_dir, index_name): (BorrowedFd<'_>, &[u8]),
        (dst_dir, name): (BorrowedFd<'_>, &[u8]),
    ) -> SysResult<()> {
        let before = fs::stat_at(index_dir, index_name)?;
        fs::link_at(index_dir, index_name, dst_dir, name)?;
        self.keep_count_after_link_up((index_dir, index_name), &before);
        let mut s = node.state.write();
        s.upper = true;
        // The index copy is complete: nothing is read from a lower any more.
        s.lowers.clear();
        drop(s);
        copy_up_done(node);
        node.forget_xattr_names();
        Ok(())
    }

    /// Gives a metacopy file its data, in place as the kernel does: the data is copied into
    /// the upper file (whose size, owner, mode and xattrs stay; its mtime becomes the copy's,
    /// as on the kernel), synced, and only then is the metacopy xattr removed. Until that moment the file reads from the lower, so a crash at
    /// any point leaves the data the file showed (the next completion first drops what an
    /// interrupted one wrote).
    /// In place, not by a new file renamed over it: hard links and open handles on the
    /// upper inode stay valid.
    fn copy_up_metacopy_data(&self, node: &Node, keep_times: bool) -> SysResult<()> {
        if node.metacopy_data().is_none() {
            return Ok(());
        }
        let _gate = node.copyup.lock();
        let Some(data) = node.metacopy_data() else {
            return Ok(());
        };
        let at = self.top_at(node)?;
        let (dir, name) = (at.dir.fd(), at.name.as_slice());
        let data_at = self.data_at(node, &data)?;
        let src = fs::open_at(data_at.dir.fd(), &data_at.name, libc::O_RDONLY, 0)?;
        let dst = open_for_data(dir, name)?;
        let before = fs::fstat(dst.as_fd())?;
        // Writing drops security.capability (and set-id bits without CAP_FSETID): both are
        // the file's metadata, kept from before.
        let capability = xattr::get(dir, name, CAPABILITY_XATTR).ok();
        clear_data(dst.as_fd(), before.st_size)?;
        // The data file's allocation is not known here: walk its extents.
        let refused = &self.layer(data.layer).reflink_refused;
        let copied = copy_data(
            src.as_fd(),
            dst.as_fd(),
            before.st_size as u64,
            true,
            refused,
        )?;
        self.stats.bytes_copied.fetch_add(copied, Ordering::Relaxed);
        if let Some(value) = capability
            && xattr::get(dir, name, CAPABILITY_XATTR).as_deref() != Ok(value.as_slice())
        {
            xattr::set(dir, name, CAPABILITY_XATTR, &value, 0)?;
        }
        if fs::fstat(dst.as_fd())?.st_mode != before.st_mode {
            fs::chmod_at(dst.as_fd(), b"", before.st_mode & 0o7777)?;
        }
        // The times are left as the copy made them (mtime: now), as the kernel's data copy-up
        // leaves them, except where the kernel copies no data at all (see `copy_up_to_link`).
        if keep_times {
            let at = fs::TimeSpec::At(before.st_atime, before.st_atime_nsec);
            let mt = fs::TimeSpec::At(before.st_mtime, before.st_mtime_nsec);
            fs::utimes_at(dir, name, at, mt)?;
        }
        if self.fsync {
            self.disk_fsync(dst.as_fd(), false)?;
        }
        xattr::remove(dir, name, self.markers.metacopy_xattr())?;
        // A kernel-renamed metacopy file points at its data by a redirect: no longer needed.
        match xattr::remove(dir, name, self.markers.redirect_xattr()) {
            Ok(()) | Err(Errno::ENODATA) => {}
            Err(e) => return Err(e),
        }
        node.state.write().lowers.clear();
        copy_up_done(node);
        node.forget_xattr_names();
        self.stats.copy_ups.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Puts a copy of the hard-linked lower file at `src` into the index (not into the upper),
    /// with its shown link count moved by `delta`; other names then show the index copy.
    pub(crate) fn index_lower_file(
        &self,
        src: &super::node::Loc,
        ino: u64,
        delta: i64,
    ) -> SysResult<()> {
        let (src_parent, src_name) = path::split(&src.path);
        let src_dir = self.layer(src.layer).dir(src_parent)?;
        let st = fs::stat_at(src_dir.as_fd(), src_name)?;
        let Some(key) = self.index_key(src.layer, src_dir.as_fd(), src_name, &st) else {
            return Ok(());
        };
        let work = self.work()?;
        let tmp = self.temp_name();
        let result = self
            .stage_copy(
                (src.layer, src_dir.as_fd(), src_name),
                &st,
                (work, &tmp),
                ino,
                Data::Full,
            )
            .and_then(|_| {
                let count = (st.st_nlink as i64 + delta).max(0) as u64;
                // Only the index link is left once the staged name goes.
                self.mark_index_copy((work, &tmp), &key, count, 1)?;
                self.index_used.store(true, Ordering::Relaxed);
                match fs::link_at(work, &tmp, self.layer(INDEX).root(), &key.path) {
                    Ok(()) | Err(Errno::EEXIST) => Ok(()),
                    Err(e) => Err(e),
                }
            });
        remove_staged(work, &tmp, &st);
        result
    }

    /// Builds the staged copy `work/tmp` of `name` in `src_dir` of layer `src_layer`.
    fn stage_copy(
        &self,
        (src_layer, src_dir, name): (LayerId, BorrowedFd<'_>, &[u8]),
        st: &fs::Stat,
        (work, tmp): (BorrowedFd<'_>, &[u8]),
        ino: u64,
        data: Data,
    ) -> SysResult<()> {
        let perm = st.st_mode & 0o7777;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => fs::mkdir_at(work, tmp, 0o700)?,
            libc::S_IFREG if data == Data::MetaOnly => {
                // The size the kernel shows for a metacopy file is the upper's: the same,
                // as a hole. Nothing to sync: no data, and the metadata is journaled with
                // the rename below (the kernel does not sync a metacopy either).
                let dst = new_work_file(work, tmp)?;
                io::ftruncate(dst.as_fd(), st.st_size as u64)?;
                xattr::set(work, tmp, self.markers.metacopy_xattr(), b"", 0)?;
            }
            libc::S_IFREG => {
                let src = fs::open_at(src_dir, name, libc::O_RDONLY, 0)?;
                let dst = new_work_file(work, tmp)?;
                let size = st.st_size as u64;
                let refused = &self.layer(src_layer).reflink_refused;
                let holes = may_have_holes(st);
                let copied = copy_data(src.as_fd(), dst.as_fd(), size, holes, refused)?;
                self.stats.bytes_copied.fetch_add(copied, Ordering::Relaxed);
                if self.fsync {
                    self.disk_fsync(dst.as_fd(), false)?;
                }
            }
            libc::S_IFLNK => {
                let target = fs::readlink_at(src_dir, name)?;
                fs::symlink_at(&target, work, tmp)?;
            }
            kind => fs::mknod_at(work, tmp, kind | 0o600, st.st_rdev)?,
        }
        // The owner and mode the source shows: its layer's override, if it keeps one.
        let mut shown = *st;
        self.apply_override(src_layer, src_dir, name, &mut shown);
        let upper_override = self
            .upper_override()
            .filter(|_| override_stat::applies_to(st.st_mode));
        // Without an upper override the shown values go on the inode; with one, the inode
        // keeps the source's own and the override carries the shown ones.
        let (uid, gid, perm) = match upper_override {
            Some(_) => (st.st_uid, st.st_gid, perm),
            None => (shown.st_uid, shown.st_gid, shown.st_mode & 0o7777),
        };
        match fs::chown_at(work, tmp, uid, gid) {
            // Rootless (or in a user namespace where the owner is unmapped): we may not give
            // files away; the copy stays the mounting user's.
            Err(Errno::EPERM) | Err(Errno::EINVAL) => {}
            r => r?,
        }
        copy_xattrs(src_dir, name, work, tmp)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            // After chown, which clears set-id bits.
            fs::chmod_at(work, tmp, perm)?;
        }
        if let Some(attr) = upper_override {
            // Also when chown failed above: the copy then still shows the source's owner.
            override_stat::write(work, tmp, attr, Owner::of(&shown))?;
        }
        // Keeps st_ino across remounts. Some objects (symlinks in the user.* format) cannot
        // carry it; they fall back to the upper inode number after a remount.
        match xattr::set(
            work,
            tmp,
            self.markers.origin_xattr(),
            &ino.to_le_bytes(),
            0,
        ) {
            Err(e) if e != Errno::EPERM && e != Errno::ENOTSUP => return Err(e),
            _ => {}
        }
        self.copy_protection(src_layer, src_dir, name, (work, tmp))?;
        let at = fs::TimeSpec::At(st.st_atime, st.st_atime_nsec);
        let mt = fs::TimeSpec::At(st.st_mtime, st.st_mtime_nsec);
        fs::utimes_at(work, tmp, at, mt)
    }
}

/// Linux's file capabilities, which a write to the file drops.
const CAPABILITY_XATTR: &[u8] = b"security.capability";

/// Tells lookups in `node`'s directory that a copy-up of it finished, after its state says
/// so: one that found the object before may hold its old state (`Node::copy_ups_in`).
fn copy_up_done(node: &Node) {
    if let Some(p) = node.state.read().parent.as_ref() {
        p.copy_ups_in.fetch_add(1, Ordering::Release);
    }
}

/// Opens a metacopy upper file to write its data. Its mode may deny even its owner writing
/// (chmod 0444 before the first write-open): a daemon without CAP_DAC_OVERRIDE then lends
/// itself owner write permission for the open, as the kernel copies up with the mounter's
/// capabilities.
fn open_for_data(dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<std::os::fd::OwnedFd> {
    match fs::open_at(dir, name, libc::O_WRONLY, 0) {
        Err(Errno::EACCES) => {
            let mode = fs::stat_at(dir, name)?.st_mode & 0o7777;
            fs::chmod_at(dir, name, mode | 0o200)?;
            let opened = fs::open_at(dir, name, libc::O_WRONLY, 0);
            fs::chmod_at(dir, name, mode)?;
            opened
        }
        r => r,
    }
}

/// Drops whatever data an interrupted earlier copy left in metacopy file `dst`, keeping its
/// size: the size is the metadata the file shows while it still reads from the lower, so it
/// must never change under a reader (or a crash) during the copy.
fn clear_data(dst: BorrowedFd<'_>, size: i64) -> SysResult<()> {
    match io::lseek(dst, 0, libc::SEEK_DATA) {
        Err(e) if e.0 == libc::ENXIO => return Ok(()), // no data: the usual case
        _ => {}
    }
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    match io::fallocate(dst, punch, 0, size) {
        Err(e) if e.0 == libc::EOPNOTSUPP => {
            // No hole punching: emptied and sized again at once (a crash in between
            // would show size 0 until the data copy-up is retried).
            io::ftruncate(dst, 0)?;
            io::ftruncate(dst, size as u64)
        }
        r => r,
    }
}

/// A new file `tmp` in the work directory, private until renamed into place.
fn new_work_file(work: BorrowedFd<'_>, tmp: &[u8]) -> SysResult<OwnedFd> {
    fs::open_at(
        work,
        tmp,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o600,
    )
}

/// Whether a file may have holes: its allocated blocks do not cover its size. (Blocks that
/// cover it may still include a hole and extent-tree blocks; the copy is then merely less
/// sparse than its source, never wrong.)
fn may_have_holes(st: &fs::Stat) -> bool {
    (st.st_blocks as u64).saturating_mul(512) < st.st_size as u64
}

/// Copies the data of `src` into `dst` and sets its size to `size`; returns bytes copied.
/// A reflink is tried unless `reflink_refused` says the source's layer cannot (set here on
/// the first refusal); only a source that `may_have_holes` is walked extent by extent.
fn copy_data(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    size: u64,
    holes: bool,
    reflink_refused: &AtomicBool,
) -> SysResult<u64> {
    if size == 0 {
        return Ok(0);
    }
    if !reflink_refused.load(Ordering::Relaxed) {
        match io::ficlone(dst, src) {
            Ok(()) => return Ok(size),
            // Not per file: this layer and the upper cannot share blocks at all.
            Err(e) if [libc::EOPNOTSUPP, libc::EXDEV, libc::ENOTTY].contains(&e.0) => {
                reflink_refused.store(true, Ordering::Relaxed)
            }
            Err(_) => {}
        }
    }
    let mut copied = 0;
    let mut end = 0u64;
    let mut off = 0u64;
    while off < size {
        let (data, hole) = if holes {
            let data = match io::lseek(src, off as i64, libc::SEEK_DATA) {
                Ok(d) => d as u64,
                Err(e) if e.0 == libc::ENXIO => break,
                Err(_) => off, // no SEEK_DATA support: copy everything
            };
            let hole = io::lseek(src, data as i64, libc::SEEK_HOLE)
                .map(|h| h as u64)
                .unwrap_or(size);
            (data, hole)
        } else {
            (off, size)
        };
        let mut pos = data;
        while pos < hole {
            let n =
                match io::copy_file_range(src, pos, dst, pos, (hole - pos).min(1 << 30) as usize) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e)
                        if e.0 == libc::EXDEV || e.0 == libc::ENOSYS || e.0 == libc::EOPNOTSUPP =>
                    {
                        copy_by_buffer(src, dst, pos, hole)?
                    }
                    Err(e) => return Err(e),
                };
            pos += n as u64;
            copied += n as u64;
        }
        end = end.max(pos);
        if pos < hole {
            break; // the source ended early (it shrank): the size below still holds
        }
        off = hole.max(data + 1);
    }
    // The data written ends at `size` unless the source ends in a hole (or shrank).
    if end != size {
        io::ftruncate(dst, size)?;
    }
    Ok(copied)
}

fn copy_by_buffer(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    from: u64,
    to: u64,
) -> SysResult<usize> {
    let mut buf = vec![0u8; 1 << 20];
    let want = ((to - from) as usize).min(buf.len());
    let n = io::pread(src, &mut buf[..want], from)?;
    let mut done = 0;
    while done < n {
        done += io::pwrite(dst, &buf[done..n], from + done as u64)?;
    }
    Ok(n)
}

/// Copies user-visible xattrs (and ACLs, which are xattrs); overlay-private ones stay behind.
pub(crate) fn copy_xattrs(
    src_dir: BorrowedFd<'_>,
    name: &[u8],
    dst_dir: BorrowedFd<'_>,
    dst: &[u8],
) -> SysResult<()> {
    let names = match xattr::list(src_dir, name) {
        Ok(n) => n,
        Err(e) if e == Errno::ENOTSUP => return Ok(()),
        Err(e) => return Err(e),
    };
    // Overrides are not copied: copy-up writes the upper's own form of them.
    for attr in names.iter().filter(|a| !super::attr::is_hidden_xattr(a)) {
        let value = match xattr::get(src_dir, name, attr) {
            Ok(v) => v,
            Err(Errno::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        match xattr::set(dst_dir, dst, attr, &value, 0) {
            Ok(()) => {}
            // security.* set by an LSM or a namespace we may not write: not the user's data.
            Err(e)
                if (e == Errno::EPERM || e == Errno::ENOTSUP) && attr.starts_with(b"security.") => {
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Best-effort removal of a staged object after a failure.
fn remove_staged(work: BorrowedFd<'_>, tmp: &[u8], st: &fs::Stat) {
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let _ = fs::unlink_at(work, tmp, is_dir);
}
