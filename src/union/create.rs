//! Creating names: create, mknod, mkdir, symlink, link. New objects go to the upper layer,
//! owned by the caller; a whiteout in the way is replaced, and a directory made over a
//! whiteout is opaque so the deleted lower directory stays deleted (as the kernel, so is any
//! directory made in a merged one).

use super::lookup::Found;
use super::node::Node;
use super::{Ctx, Entry, Errno, SysResult, Union, path, whiteout};
use crate::sys::{fs, xattr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// What stood at a name in the upper before we create there.
pub(crate) struct Slot {
    pub dir: Arc<Node>,
    /// O_PATH handle of the parent directory in the upper.
    pub upper_dir: Arc<OwnedFd>,
    /// The lower layers hold something at this name (now whited out).
    pub covers_lower: bool,
    /// The parent has a default POSIX ACL: it, not the umask, shapes the new mode.
    pub default_acl: bool,
    /// The parent merges lower copies (it is not upper-only).
    in_merged_dir: bool,
    /// The name was not looked at first (an upper-only parent, `prepare_unchecked_slot`):
    /// a creation failing with EEXIST may have met a whiteout (`clear_unchecked`).
    unchecked: bool,
}

impl Slot {
    /// The permission bits of a new object: the umask applies unless a default ACL does.
    pub fn perm(&self, ctx: &Ctx, mode: u32) -> u32 {
        if self.default_acl {
            mode & 0o7777
        } else {
            mode & 0o7777 & !ctx.umask
        }
    }
}

impl Union {
    /// Checks that `name` is free in `parent`, copies the parent up and clears a whiteout.
    pub(crate) fn prepare_slot(&self, parent: u64, name: &[u8]) -> SysResult<Slot> {
        self.prepare_slot_as(parent, name, true)
    }

    /// `prepare_slot` for a creation that fails with EEXIST on any object in its way
    /// (O_EXCL, mkdir): in an upper-only parent the name is not looked at first, saving a
    /// system call per create; the caller retries once after `clear_unchecked`.
    fn prepare_unchecked_slot(&self, parent: u64, name: &[u8]) -> SysResult<Slot> {
        self.prepare_slot_as(parent, name, false)
    }

    /// After a creation in `slot` failed with EEXIST: whether the name held a whiteout of
    /// an unchecked slot, now removed (the creation is then made again, as over a checked
    /// one); anything else stays in the way.
    fn clear_unchecked(&self, slot: &mut Slot, name: &[u8]) -> SysResult<bool> {
        if !slot.unchecked {
            return Ok(false);
        }
        slot.unchecked = false;
        let d = slot.upper_dir.as_fd();
        match fs::stat_at(d, name) {
            Ok(st) if whiteout::is_whiteout(d, name, &st) => {
                fs::unlink_at(d, name, false)?;
                slot.covers_lower = true;
                Ok(true)
            }
            Ok(_) | Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn prepare_slot_as(&self, parent: u64, name: &[u8], check_name: bool) -> SysResult<Slot> {
        self.writable()?;
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        if !path::is_valid_name(name) {
            return Err(Errno::EINVAL);
        }
        if whiteout::is_hidden_name(name) {
            return Err(Errno::EPERM);
        }
        let dir = self.node(parent)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if dir.state.read().unlinked {
            return Err(Errno::ENOENT);
        }
        self.refuse_create_in(&dir)?;
        self.entries_change(&dir);
        let upper_only = {
            let s = dir.state.read();
            s.upper && s.lowers.is_empty()
        };
        let unchecked = upper_only && !check_name;
        let (upper_dir, covers_lower) = if unchecked {
            (self.upper_dir(&dir)?, false)
        } else if upper_only {
            // Only the upper copy can hold the name: one stat tells a free name, a whiteout
            // to clear, or an object in the way (a `.wh.` marker hides nothing here).
            let upper_dir = self.upper_dir(&dir)?;
            let d = upper_dir.as_fd();
            let cleared = match fs::stat_at(d, name) {
                Ok(st) if whiteout::is_whiteout(d, name, &st) => {
                    fs::unlink_at(d, name, false)?;
                    true
                }
                Ok(_) => return Err(Errno::EEXIST),
                Err(Errno::ENOENT) => false,
                Err(e) => return Err(e),
            };
            (upper_dir, cleared)
        } else {
            if self.resolve(&dir, name)?.is_some() {
                return Err(Errno::EEXIST);
            }
            self.copy_up(&dir)?;
            let upper_dir = self.upper_dir(&dir)?;
            let cleared = self.clear_whiteout(upper_dir.as_fd(), name)?;
            (upper_dir, cleared || self.lower_whiteout(&dir, name))
        };
        let default_acl = self.has_default_acl(&dir, upper_dir.as_fd());
        Ok(Slot {
            dir,
            upper_dir,
            covers_lower,
            default_acl,
            unchecked,
            in_merged_dir: !upper_only,
        })
    }

    /// Whether upper directory `dir` has a default POSIX ACL, from its remembered xattr
    /// names (listed once per directory, not probed per create).
    fn has_default_acl(&self, dir: &Node, upper_dir: BorrowedFd<'_>) -> bool {
        const DEFAULT_ACL: &[u8] = b"system.posix_acl_default";
        match self.xattr_names(dir) {
            Ok(names) => names.iter().any(|n| n == DEFAULT_ACL),
            Err(_) => xattr::has(upper_dir, b"", DEFAULT_ACL),
        }
    }

    /// The permission bits a new object made in place must keep after its chown (which drops
    /// set-id bits): `perm`, or under a default ACL the mode the upper filesystem gave it (the
    /// requested mode masked by the ACL, which a chmod to `perm` would undo).
    fn created_perm(
        &self,
        slot: &Slot,
        dir: BorrowedFd<'_>,
        name: &[u8],
        perm: u32,
    ) -> SysResult<u32> {
        if slot.default_acl {
            Ok(fs::stat_at(dir, name)?.st_mode & 0o7777)
        } else {
            Ok(perm)
        }
    }

    /// Whether a new object made by the daemon in the upper already has the owner and mode
    /// the caller's object must have, so no chown/chmod is needed: the caller's ids are the
    /// daemon's (the kernel then gives a set-gid parent's group, and the set-gid bit to a new
    /// directory, as we would), no override keeps owners, and no default ACL shaped the mode
    /// (the daemon's umask is 0, so the mode asked for is the mode made).
    fn made_as_caller(&self, ctx: &Ctx, slot: &Slot) -> bool {
        !slot.default_acl
            && self.upper_override().is_none()
            && (self.ids.store_uid(ctx.uid), self.ids.store_gid(ctx.gid)) == self.own_ids
    }

    /// Removes a whiteout at `name` in an upper dir; true when there was one.
    pub(crate) fn clear_whiteout(&self, upper_dir: BorrowedFd<'_>, name: &[u8]) -> SysResult<bool> {
        let mut had = false;
        if let Ok(st) = fs::stat_at(upper_dir, name)
            && whiteout::is_whiteout(upper_dir, name, &st)
        {
            fs::unlink_at(upper_dir, name, false)?;
            had = true;
        }
        let wh = whiteout::wh_name(name);
        if fs::stat_at(upper_dir, &wh).is_ok() {
            fs::unlink_at(upper_dir, &wh, false)?;
            had = true;
        }
        Ok(had)
    }

    /// Whether a lower layer of `dir` holds a whiteout for `name` (a deleted name: a new
    /// directory there is made opaque, as the kernel does).
    fn lower_whiteout(&self, dir: &Node, name: &[u8]) -> bool {
        // From the cached lower listings: a `.wh.` marker, or an entry that lookup did not
        // show (the name does not resolve, so an entry there is a whiteout object).
        if let Some(c) = self.lower_dirs(dir) {
            return c
                .layers
                .iter()
                .flatten()
                .any(|l| l.whiteouts.contains(name) || l.names.contains_key(name));
        }
        let lowers = dir.state.read().lowers.clone();
        lowers.iter().any(|loc| {
            let Ok(d) = self.layer(loc.layer).dir(&loc.path) else {
                return false;
            };
            let marked = fs::stat_at(d.as_fd(), &whiteout::wh_name(name)).is_ok();
            marked
                || fs::stat_at(d.as_fd(), name)
                    .is_ok_and(|st| whiteout::is_whiteout(d.as_fd(), name, &st))
        })
    }

    /// Gives a new object to the caller (group from a set-gid parent, as the kernel does),
    /// then sets its exact mode (chown clears set-id bits; `None` leaves it, for symlinks).
    /// Where the upper keeps owners in an override xattr, they go there and the inode stays
    /// the daemon's: a rootless daemon cannot chown to the ids a container uses.
    fn set_owner(
        &self,
        ctx: &Ctx,
        dir: BorrowedFd<'_>,
        name: &[u8],
        kind: u32,
        perm: Option<u32>,
    ) -> SysResult<()> {
        self.set_owner_under(ctx, dir, dir, name, kind, perm)
    }

    /// `set_owner` of `dir/name` whose parent directory is `parent` (an unnamed file is
    /// `fd` + "" under the directory it was made in).
    fn set_owner_under(
        &self,
        ctx: &Ctx,
        parent: BorrowedFd<'_>,
        dir: BorrowedFd<'_>,
        name: &[u8],
        kind: u32,
        perm: Option<u32>,
    ) -> SysResult<()> {
        let parent_fd = parent;
        let parent = fs::fstat(parent_fd)?;
        let mut parent_owner = super::override_stat::Owner::of(&parent);
        if let Some(attr) = self.upper_override()
            && let Some(o) = super::override_stat::read(parent_fd, b"", attr)
        {
            parent_owner = o;
        }
        let gid = if parent_owner.perm & libc::S_ISGID != 0 {
            parent_owner.gid
        } else {
            self.ids.store_gid(ctx.gid)
        };
        let uid = self.ids.store_uid(ctx.uid);
        if let (Some(attr), Some(perm)) = (self.upper_override(), perm)
            && super::override_stat::applies_to(kind)
        {
            fs::chmod_at(dir, name, perm)?;
            let owner = super::override_stat::Owner { uid, gid, perm };
            return super::override_stat::write(dir, name, attr, owner);
        }
        fs::chown_at(dir, name, uid, gid)?;
        match perm {
            Some(perm) => fs::chmod_at(dir, name, perm),
            None => Ok(()),
        }
    }

    /// An upper directory's attributes as shown (its override applied).
    fn shown_upper_dir_stat(&self, d: BorrowedFd<'_>) -> SysResult<fs::Stat> {
        let mut st = fs::fstat(d)?;
        self.apply_override(super::layer::UPPER, d, b"", &mut st);
        Ok(st)
    }

    /// Looks the new object up again and registers it as a node.
    /// A new object is upper-only and has no origin: one stat, no second lookup.
    fn finish_create(&self, slot: &Slot, name: &[u8]) -> SysResult<(Arc<Node>, Entry)> {
        let st = fs::stat_at(slot.upper_dir.as_fd(), name)?;
        let ino = Some(self.inos.map(st.st_dev, st.st_ino));
        let f = Found {
            st,
            upper: true,
            lowers: Vec::new(),
            ino,
        };
        Ok(self.remember(&slot.dir, name, f))
    }

    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
    ) -> SysResult<Entry> {
        let kind = mode & libc::S_IFMT;
        if kind == libc::S_IFCHR && rdev == 0 {
            // 0/0 is the whiteout marker: kernel overlayfs refuses it too.
            return Err(Errno::EPERM);
        }
        let slot = self.prepare_slot(parent, name)?;
        let perm = slot.perm(ctx, mode);
        let d = slot.upper_dir.as_fd();
        if kind == libc::S_IFREG || kind == 0 {
            drop(fs::open_at(
                d,
                name,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                perm,
            )?);
        } else {
            fs::mknod_at(d, name, kind | perm, rdev)?;
        }
        let kind = if kind == 0 { libc::S_IFREG } else { kind };
        let perm = self.created_perm(&slot, d, name, perm)?;
        self.own_and_finish(ctx, &slot, name, kind, Some(perm))
    }

    /// Owner, then the exact mode again (chown clears set-id bits), then the node.
    fn own_and_finish(
        &self,
        ctx: &Ctx,
        slot: &Slot,
        name: &[u8],
        kind: u32,
        perm: Option<u32>,
    ) -> SysResult<Entry> {
        let d = slot.upper_dir.as_fd();
        if !self.made_as_caller(ctx, slot) {
            let r = self.set_owner(ctx, d, name, kind, perm);
            if let Err(e) = r {
                let _ = fs::unlink_at(d, name, false);
                return Err(e);
            }
        }
        Ok(self.finish_create(slot, name)?.1)
    }

    pub fn mkdir(&self, ctx: &Ctx, parent: u64, name: &[u8], mode: u32) -> SysResult<Entry> {
        let mut slot = self.prepare_unchecked_slot(parent, name)?;
        match self.mkdir_in(ctx, &slot, name, mode) {
            Err(Errno::EEXIST) if self.clear_unchecked(&mut slot, name)? => {
                self.mkdir_in(ctx, &slot, name, mode)
            }
            r => r,
        }
    }

    fn mkdir_in(&self, ctx: &Ctx, slot: &Slot, name: &[u8], mode: u32) -> SysResult<Entry> {
        let perm = slot.perm(ctx, mode);
        let d = slot.upper_dir.as_fd();
        if slot.covers_lower {
            // Build it opaque in the work dir, then move it in: no moment shows lower entries.
            let work = self.work()?;
            let tmp = self.temp_name();
            fs::mkdir_at(work, &tmp, perm)?;
            let staged = xattr::set(work, &tmp, self.markers.opaque_xattr(), b"y", 0)
                .and_then(|_| fs::rename_at(work, &tmp, d, name, libc::RENAME_NOREPLACE));
            if let Err(e) = staged {
                let _ = fs::unlink_at(work, &tmp, true);
                return Err(e);
            }
        } else {
            fs::mkdir_at(d, name, perm)?;
            if slot.in_merged_dir {
                // As the kernel does (and may fail to, harmlessly): a directory made in a
                // merged one is marked opaque, so no later lookup below it searches the
                // lower layers, whichever lowers the upper is mounted over.
                let _ = xattr::set(d, name, self.markers.opaque_xattr(), b"y", 0);
            }
            // Made in place (a staged one got the work dir's group and no set-gid bit).
            if self.made_as_caller(ctx, slot) {
                return self.finish_mkdir(slot, name);
            }
        }
        let perm = self.created_perm(slot, d, name, perm)?;
        let parent_st = self.shown_upper_dir_stat(d)?;
        let keep_sgid = parent_st.st_mode & libc::S_ISGID != 0;
        let perm = if keep_sgid {
            perm | libc::S_ISGID
        } else {
            perm
        };
        let r = self.set_owner(ctx, d, name, libc::S_IFDIR, Some(perm));
        if let Err(e) = r {
            let _ = fs::unlink_at(d, name, true);
            return Err(e);
        }
        self.finish_mkdir(slot, name)
    }

    /// `finish_create` for a new directory, which holds no `.wh.` marker (see `wh_free`).
    fn finish_mkdir(&self, slot: &Slot, name: &[u8]) -> SysResult<Entry> {
        let (node, entry) = self.finish_create(slot, name)?;
        if self.markers == whiteout::MarkerFormat::Kernel {
            node.state.write().wh_free = true;
        }
        Ok(entry)
    }

    pub fn symlink(&self, ctx: &Ctx, parent: u64, name: &[u8], target: &[u8]) -> SysResult<Entry> {
        let slot = self.prepare_slot(parent, name)?;
        fs::symlink_at(target, slot.upper_dir.as_fd(), name)?;
        self.own_and_finish(ctx, &slot, name, libc::S_IFLNK, None)
    }

    /// Creates and opens a regular file; returns the entry and an open handle.
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> SysResult<(Entry, u64)> {
        let mut slot = self.prepare_unchecked_slot(parent, name)?;
        match self.create_in(ctx, &slot, name, mode, flags) {
            Err(Errno::EEXIST) if self.clear_unchecked(&mut slot, name)? => {
                self.create_in(ctx, &slot, name, mode, flags)
            }
            r => r,
        }
    }

    fn create_in(
        &self,
        ctx: &Ctx,
        slot: &Slot,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> SysResult<(Entry, u64)> {
        let perm = slot.perm(ctx, mode);
        let d = slot.upper_dir.as_fd();
        let acc = flags & libc::O_ACCMODE;
        let status = flags & (libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC);
        // Read-write with no status flags, when passthrough wants it: the fd can then back
        // the file as it is (a new file may be opened read-write whatever its mode).
        let backing_ready = status == 0 && self.backing_upper_rdwr();
        let open_flags = if backing_ready || acc == libc::O_RDONLY {
            libc::O_RDWR | status
        } else {
            acc | status
        };
        let fd = fs::open_at(d, name, open_flags | libc::O_CREAT | libc::O_EXCL, perm)?;
        if !self.made_as_caller(ctx, slot) {
            let r = self
                .created_perm(slot, d, name, perm)
                .and_then(|perm| self.set_owner(ctx, d, name, libc::S_IFREG, Some(perm)));
            if let Err(e) = r {
                let _ = fs::unlink_at(d, name, false);
                return Err(e);
            }
        }
        let (node, entry) = self.finish_create(slot, name)?;
        let fh = self.handles.insert(super::file::FileHandle {
            backing_ready,
            ..super::file::FileHandle::new(&node, fd, super::layer::UPPER, true, false)
        });
        Ok((entry, fh))
    }

    /// O_TMPFILE: an unnamed regular file in the upper copy of directory `parent` (copied up
    /// first), created as `create` makes a file (owner, umask or default ACL) and opened;
    /// returns its entry and handle. As kernel overlayfs does, it is made where a link(2)
    /// gives it its name: in the upper directory, never in the work dir. Its node has no
    /// name (unlinked) and keeps the fd, until a link names it (`link_unnamed`).
    pub fn tmpfile(
        &self,
        ctx: &Ctx,
        parent: u64,
        mode: u32,
        flags: i32,
    ) -> SysResult<(Entry, u64)> {
        self.writable()?;
        let dir = self.node(parent)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if dir.state.read().unlinked {
            return Err(Errno::ENOENT);
        }
        self.refuse_create_in(&dir)?;
        self.copy_up(&dir)?;
        let upper_dir = self.upper_dir(&dir)?;
        let default_acl = self.has_default_acl(&dir, upper_dir.as_fd());
        let slot = Slot {
            dir: dir.clone(),
            upper_dir,
            covers_lower: false,
            default_acl,
            unchecked: false,
            in_merged_dir: false,
        };
        let perm = slot.perm(ctx, mode);
        let d = slot.upper_dir.as_fd();
        let status = flags & (libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC);
        let backing_ready = status == 0 && self.backing_upper_rdwr();
        // Read-write whatever was asked, as `create` does when passthrough wants a backing
        // (an O_TMPFILE open must ask for write access anyway). Without O_EXCL: the kernel
        // keeps O_EXCL's "never linked" promise itself, on its own inode.
        let fd = fs::open_at(d, b".", libc::O_TMPFILE | libc::O_RDWR | status, perm)?;
        if !self.made_as_caller(ctx, &slot) {
            self.set_owner_under(ctx, d, fd.as_fd(), b"", libc::S_IFREG, Some(perm))?;
        }
        let st = fs::fstat(fd.as_fd())?;
        let fd = Arc::new(fd);
        let mut state = super::node::NodeState::new(Some(dir), b"", true, Vec::new());
        state.unlinked = true;
        let node = self.nodes.remember(
            self.inos.map(st.st_dev, st.st_ino),
            libc::S_IFREG,
            state,
            || self.inos.fresh(),
        );
        node.state.write().detached = Some(fd.clone());
        let fh = self.handles.insert(super::file::FileHandle {
            fd,
            node: node.clone(),
            writable: true,
            layer: super::layer::UPPER,
            backing_ready,
            exec: false,
        });
        Ok((self.stat_node(&node, Some(fh))?, fh))
    }

    /// link(2) of an unnamed upper file (O_TMPFILE; the kernel refuses to link any other
    /// object without names): the kept fd gets the name, and the node lives there from now on.
    fn link_unnamed(&self, node: &Arc<Node>, new_parent: u64, new_name: &[u8]) -> SysResult<Entry> {
        let fd = {
            let s = node.state.read();
            match (&s.detached, s.upper) {
                (Some(fd), true) => fd.clone(),
                _ => return Err(Errno::ENOENT),
            }
        };
        let slot = self.prepare_slot(new_parent, new_name)?;
        fs::link_fd(fd.as_fd(), slot.upper_dir.as_fd(), new_name)?;
        {
            let mut s = node.state.write();
            s.parent = Some(slot.dir.clone());
            s.name = new_name.to_vec();
            s.unlinked = false;
            s.detached = None;
        }
        node.lookup_more();
        self.stat_node(node, None)
    }

    /// A hard link: the source is copied up and linked in the upper.
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> SysResult<Entry> {
        let node = self.node(ino)?;
        if node.is_dir() {
            return Err(Errno::EPERM);
        }
        if node.state.read().unlinked {
            return self.link_unnamed(&node, new_parent, new_name);
        }
        self.refuse_protected(&node)?;
        let slot = self.prepare_slot(new_parent, new_name)?;
        self.copy_up_to_link(&node)?;
        let src = node.path();
        let (sp, sn) = path::split(&src);
        let sd = self.upper().dir(sp)?;
        fs::link_at(sd.as_fd(), sn, slot.upper_dir.as_fd(), new_name)?;
        let f: Found = self.resolve(&slot.dir, new_name)?.ok_or(Errno::EIO)?;
        let new_path = path::join(&slot.dir.path(), new_name);
        let top = super::node::Loc {
            layer: super::layer::UPPER,
            path: new_path,
        };
        self.bump_indexed_nlink(&top, &f.st, 1, true);
        // Same object, so the same number even if the upper inode differs from the origin.
        let mut st = f.st;
        self.fix_nlink(&top, &mut st);
        self.apply_override(
            super::layer::UPPER,
            slot.upper_dir.as_fd(),
            new_name,
            &mut st,
        );
        self.ids.show(&mut st);
        st.st_ino = node.ino;
        node.lookup_more();
        // The kernel now knows the object by this name too.
        let mut s = node.state.write();
        if !s
            .others
            .iter()
            .any(|(d, n)| d.ino == slot.dir.ino && n == new_name)
        {
            s.others.push((slot.dir.clone(), new_name.to_vec()));
        }
        Ok(st)
    }
}
