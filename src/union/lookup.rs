//! Lookup: the topmost layer holding a name wins unless a whiteout above hides it;
//! directories merge downwards until an opaque one; renamed dirs follow their redirect.

use super::dircache::{LayerDir, LowerDirs};
use super::layer::{INDEX, LayerId, UPPER};
use super::node::{Loc, Node, NodeState};
use super::{Entry, Errno, Stat, SysResult, Union, index_format, path, whiteout};
use crate::sys::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a name resolves to, before it becomes a node.
pub(crate) struct Found {
    /// Metadata of the topmost object.
    pub st: Stat,
    pub upper: bool,
    pub lowers: Vec<Loc>,
    /// The number to report when it is not the top object's own (an indexed hard link).
    pub ino: Option<u64>,
}

impl Found {
    pub fn kind(&self) -> u32 {
        self.st.st_mode & libc::S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    /// Where the shown object lives, given the merged path.
    pub fn top(&self, upper_path: &[u8]) -> Option<Loc> {
        if self.upper {
            return Some(Loc {
                layer: UPPER,
                path: upper_path.to_vec(),
            });
        }
        self.lowers.first().cloned()
    }
    /// A found directory's copies, upper first, given its merged path (what
    /// `Node::dir_layers` gives for a node).
    pub fn dir_layers(&self, upper_path: &[u8]) -> Vec<Loc> {
        let mut v = Vec::with_capacity(self.lowers.len() + 1);
        if self.upper {
            v.push(Loc {
                layer: UPPER,
                path: upper_path.to_vec(),
            });
        }
        v.extend(self.lowers.iter().cloned());
        v
    }
}

/// What every lookup in one directory needs, gathered once: its upper copy (location and
/// handle) and its cached lower copies, whose locations are the lower layers (nothing is
/// cloned or searched per layer). Readdirplus resolves a whole listing through one scope, so
/// each entry costs only its own stat.
pub struct DirScope {
    pub(crate) dir: Arc<Node>,
    upper: Option<Loc>,
    upper_fd: Option<Arc<OwnedFd>>,
    cache: Option<Arc<LowerDirs>>,
    /// The lower copies when they are not cached (the handle budget is spent).
    uncached: Vec<Loc>,
    /// The upper copy holds no `.wh.NAME` marker (NodeState::wh_free).
    upper_wh_free: bool,
    /// `dir.copy_ups_in` before the scope was gathered (see `Union::lookup_in`).
    copy_ups_seen: u64,
}

impl DirScope {
    fn lowers(&self) -> &[Loc] {
        self.cache.as_deref().map_or(&self.uncached, |c| &c.locs)
    }
}

impl Union {
    /// Gathers the lookup context of directory `dir` (see DirScope).
    pub(crate) fn dir_scope(&self, dir: &Arc<Node>) -> DirScope {
        // Read first: a copy-up that finishes after it is seen by `lookup_in`.
        let copy_ups_seen = dir.copy_ups_in.load(Ordering::Acquire);
        if !dir.is_dir() {
            return DirScope {
                dir: dir.clone(),
                upper: None,
                upper_fd: None,
                cache: None,
                uncached: Vec::new(),
                upper_wh_free: false,
                copy_ups_seen,
            };
        }
        // The cached copies match the node's lower list (lower_dirs checks): they are it.
        let cache = self.lower_dirs(dir);
        // One read of the state for all of it (this runs for every lookup).
        let (is_upper, upper_wh_free, uncached) = {
            let s = dir.state.read();
            let uncached = match cache {
                Some(_) => Vec::new(),
                None => s.lowers.clone(),
            };
            (s.upper, s.upper && s.wh_free, uncached)
        };
        let (upper, upper_fd) = if is_upper {
            let loc = Loc {
                layer: UPPER,
                path: dir.path(),
            };
            (Some(loc), self.upper_dir(dir).ok())
        } else {
            (None, None)
        };
        DirScope {
            dir: dir.clone(),
            upper,
            upper_fd,
            cache,
            uncached,
            upper_wh_free,
            copy_ups_seen,
        }
    }

    /// Resolves `name` in directory `dir`; Ok(None) when it does not exist (or is whited out).
    pub(crate) fn resolve(&self, dir: &Arc<Node>, name: &[u8]) -> SysResult<Option<Found>> {
        self.resolve_scoped(&self.dir_scope(dir), name)
    }

    /// Same, in a directory whose context is already gathered.
    pub(crate) fn resolve_scoped(&self, scope: &DirScope, name: &[u8]) -> SysResult<Option<Found>> {
        self.resolve_cached(
            scope.upper.as_ref(),
            scope.lowers(),
            name,
            scope.cache.as_deref(),
            (scope.upper_fd.as_deref(), scope.upper_wh_free),
        )
    }

    /// Same, over an explicit list of directory locations (top first).
    pub(crate) fn resolve_in(&self, layers: &[Loc], name: &[u8]) -> SysResult<Option<Found>> {
        self.resolve_cached(None, layers, name, None, (None, false))
    }

    /// Resolves `name` over `upper` (if any) then `lowers`; `cache`, when given, holds the
    /// cached copies of exactly `lowers`; `upper_fd` is the upper copy's handle, and
    /// `upper_wh_free` says it holds no `.wh.` marker.
    fn resolve_cached(
        &self,
        upper: Option<&Loc>,
        lowers: &[Loc],
        name: &[u8],
        cache: Option<&LowerDirs>,
        (upper_fd, upper_wh_free): (Option<&OwnedFd>, bool),
    ) -> SysResult<Option<Found>> {
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        if whiteout::is_hidden_name(name) {
            return Ok(None);
        }
        let mut found: Option<Found> = None;
        let top = usize::from(upper.is_some());
        let count = top + lowers.len();
        // The lower layers before `start` neither hold `name` nor hide it (their cached
        // listings say so): one lookup in the merged index instead of two per layer, so a
        // name that lives only in the bottom layer costs a single stat there.
        let start = cache.map_or(0, |c| c.first_to_visit(name));
        let visited = lowers.iter().enumerate().skip(start);
        let layers = upper
            .map(|u| (0, u))
            .into_iter()
            .chain(visited.map(|(j, loc)| (top + j, loc)));
        for (i, loc) in layers {
            let below = i + 1 < count;
            // The upper object's xattr names, listed once for its copy-up markers and then
            // used again for a directory's own markers.
            let mut upper_marks = None;
            let cached: Option<&LayerDir> = match (i.checked_sub(top), cache) {
                (Some(l), Some(c)) => c.layers[l].as_ref(),
                _ => None,
            };
            if let Some(c) = cached
                && !c.names.contains_key(name)
            {
                // Not in this layer: only a `.wh.` marker here can matter.
                if below && c.whiteouts.contains(name) {
                    break;
                }
                continue;
            }
            // A directory below the one found: the cached listing's d_type says enough (a
            // whiteout is never a directory), so no stat per layer of a deep merge.
            if let (Some(c), Some(f)) = (cached, found.as_mut())
                && c.names
                    .get(name)
                    .is_some_and(|&(kind, _)| kind == libc::DT_DIR)
            {
                f.lowers.push(Loc {
                    layer: loc.layer,
                    path: path::join(&loc.path, name),
                });
                if self.merging_stops(f, loc.layer, c.markers(name, &loc.path)) {
                    break;
                }
                continue;
            }
            let opened;
            let d = match (cached, upper_fd) {
                (Some(c), _) => c.fd.as_fd(),
                (None, Some(u)) if loc.layer == UPPER => u.as_fd(),
                _ => {
                    opened = match self.layer(loc.layer).dir(&loc.path) {
                        Ok(d) => d,
                        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => continue,
                        Err(e) => return Err(e),
                    };
                    opened.as_fd()
                }
            };
            match fs::stat_at(d, name) {
                Ok(st) => {
                    let marked = || match cached {
                        Some(c) => c.xattr_whiteouts,
                        None => whiteout::dir_has_xattr_whiteouts(d),
                    };
                    if whiteout::is_whiteout_marked(d, name, &st, marked) {
                        break;
                    }
                    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    let child = path::join(&loc.path, name);
                    match &mut found {
                        None => {
                            let mut f = Found {
                                st,
                                upper: false,
                                lowers: Vec::new(),
                                ino: None,
                            };
                            if loc.layer == UPPER {
                                f.upper = true;
                                // Which copy-up markers the upper object carries, from one
                                // listing through the directory handle at hand (most carry
                                // none: one call instead of a probe per marker).
                                let marks = whiteout::Listed::of(d, name);
                                if marks.may_have(self.markers.origin_xattr()) {
                                    f.ino = self.origin_at(d, name);
                                }
                                if f.ino.is_none()
                                    && super::hardlink::is_hard_linked_file(&st)
                                    && self.markers == whiteout::MarkerFormat::Kernel
                                    && marks.may_have(index_format::ORIGIN_XATTR)
                                {
                                    f.ino = self.kernel_origin_number(d, name);
                                }
                                if st.st_mode & libc::S_IFMT == libc::S_IFREG
                                    && marks.has(d, name, self.markers.metacopy_xattr())
                                {
                                    f.lowers
                                        .push(self.metacopy_data(d, name, &loc.path, lowers)?);
                                }
                                upper_marks = Some(marks);
                            } else {
                                f.lowers.push(Loc {
                                    layer: loc.layer,
                                    path: child,
                                });
                            }
                            if !is_dir {
                                if !f.upper {
                                    self.use_index(&mut f, loc.layer, d, name);
                                }
                                return Ok(Some(f));
                            }
                            found = Some(f);
                        }
                        Some(f) => {
                            if !is_dir {
                                break;
                            }
                            f.lowers.push(Loc {
                                layer: loc.layer,
                                path: child,
                            });
                        }
                    }
                    let markers = match (cached, &upper_marks) {
                        (Some(c), _) => c.markers(name, &loc.path),
                        (None, Some(listed)) => {
                            whiteout::dir_markers_listed(d, name, &loc.path, listed, below)
                        }
                        (None, None) => whiteout::dir_markers(d, name, &loc.path),
                    };
                    let f = found.as_mut().expect("set above");
                    if self.merging_stops(f, loc.layer, markers) {
                        break;
                    }
                }
                Err(Errno::ENOENT) => {}
                Err(Errno::ENOTDIR) => {}
                Err(e) => return Err(e),
            }
            // `.wh.NAME` hides NAME in the layers below this one (not in this one): with no
            // layer below, there is nothing to look for.
            let marked = below
                && match cached {
                    Some(c) => c.whiteouts.contains(name),
                    None if loc.layer == UPPER && upper_wh_free => false,
                    None => fs::stat_at(d, &whiteout::wh_name(name)).is_ok(),
                };
            if marked {
                break;
            }
        }
        Ok(found)
    }

    /// Whether the merge of directory `f` ends at its copy in `layer`, which carries
    /// `markers`: at an opaque copy, or at a redirect, whose target's copies are merged
    /// instead of the layers below.
    fn merging_stops(&self, f: &mut Found, layer: LayerId, markers: whiteout::DirMarkers) -> bool {
        if markers.opaque {
            return true;
        }
        if let Some(target) = markers.redirect {
            self.follow_redirect(f, layer, target);
            return true;
        }
        false
    }

    /// A renamed directory keeps merging the lower directories at its original path.
    /// The layers below `from` are searched at the redirect path from their roots, one
    /// component at a time with the same rules as any lookup (whiteouts, opaque directories,
    /// further redirects), as the kernel does.
    fn follow_redirect(&self, f: &mut Found, from: LayerId, target: Vec<u8>) {
        if let Ok(Some(dirs)) = self.lower_dirs_at(from + 1, components(&target)) {
            f.lowers.extend(dirs);
        }
    }

    /// The directory copies at path `components`, searched from the roots of layer `first`
    /// and those below it, one component at a time with the rules of any lookup (None when
    /// a component is not a directory there).
    fn lower_dirs_at<'p>(
        &self,
        first: LayerId,
        components: impl Iterator<Item = &'p [u8]>,
    ) -> SysResult<Option<Vec<Loc>>> {
        let mut stack: Vec<Loc> = (first..self.layers.len())
            .map(|layer| Loc {
                layer,
                path: Vec::new(),
            })
            .collect();
        for component in components {
            match self.resolve_in(&stack, component)? {
                Some(found) if found.is_dir() => stack = found.lowers,
                _ => return Ok(None),
            }
        }
        Ok(Some(stack))
    }

    /// Where the data of metadata-only upper file `name` in upper directory `d` (merged path
    /// `parent`, lower copies `lowers`) is: the lower file found by the same name, or by its
    /// redirect (the kernel writes an absolute one when it renames a metacopy file), through
    /// the same whiteout and opaque rules as any lookup. EIO when no lower layer has it, as
    /// the kernel answers.
    fn metacopy_data(
        &self,
        d: std::os::fd::BorrowedFd<'_>,
        name: &[u8],
        parent: &[u8],
        lowers: &[Loc],
    ) -> SysResult<Loc> {
        let found = match whiteout::redirect(d, name, parent) {
            Some(target) => self.resolve_from_lower_roots(&target)?,
            None => self.resolve_in(lowers, name)?,
        };
        let data = found
            .filter(|f| f.kind() == libc::S_IFREG)
            .and_then(|f| f.lowers.into_iter().next());
        data.ok_or_else(|| {
            log::warn!(
                "metacopy file {:?} has no lower data file",
                String::from_utf8_lossy(&path::join(parent, name))
            );
            Errno::EIO
        })
    }

    /// Resolves `target` (a path below the layer roots) through the lower layers, one
    /// component at a time as a lookup from the root would.
    pub(crate) fn resolve_from_lower_roots(&self, target: &[u8]) -> SysResult<Option<Found>> {
        let mut parts = components(target);
        let Some(last) = parts.next_back() else {
            return Ok(None);
        };
        match self.lower_dirs_at(usize::from(self.has_upper), parts)? {
            Some(dirs) => self.resolve_in(&dirs, last),
            None => Ok(None),
        }
    }

    /// A lower file with several names whose data was already copied up through another name
    /// is shown from the index copy, so all its names stay one file.
    fn use_index(&self, f: &mut Found, layer: LayerId, dir: BorrowedFd<'_>, name: &[u8]) {
        if !self.index_in_use() {
            return;
        }
        let Some(key) = self.index_key(layer, dir, name, &f.st) else {
            return;
        };
        if let Some((path, st)) = self.existing_index(&key) {
            f.ino = Some(self.inos.map(f.st.st_dev, f.st.st_ino));
            f.st = st;
            f.lowers.insert(0, Loc { layer: INDEX, path });
        }
    }

    /// Whether any hard-linked lower file has an index copy (then lower files with several
    /// names must be checked against the index).
    pub(crate) fn index_in_use(&self) -> bool {
        self.index_used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The number of a hard-linked file copied up by kernel overlayfs (which records its
    /// origin as a file handle, not as unionrs's number): its lower file's, as the names
    /// not copied up show.
    fn kernel_origin_number(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Option<u64> {
        let fh = crate::sys::xattr::get(dir, name, index_format::ORIGIN_XATTR).ok()?;
        let fd = self.open_origin(&fh).ok()?;
        let st = fs::fstat(fd.as_fd()).ok()?;
        Some(self.inos.map(st.st_dev, st.st_ino))
    }

    /// The number reported for a found object: its origin's for a copied-up object (read
    /// during the lookup), else its own.
    pub(crate) fn ino_of(&self, f: &Found) -> u64 {
        self.nodes.id_of(self.number_of(f))
    }

    /// The inode number of a found object (`ino_of` is the node id it answers under).
    pub(crate) fn number_of(&self, f: &Found) -> u64 {
        f.ino
            .unwrap_or_else(|| self.inos.map(f.st.st_dev, f.st.st_ino))
    }

    /// The inode number recorded on copied-up object `name` in upper directory `dir`.
    pub(crate) fn origin_at(&self, dir: std::os::fd::BorrowedFd<'_>, name: &[u8]) -> Option<u64> {
        if !self.has_upper {
            return None;
        }
        let v = crate::sys::xattr::get(dir, name, self.markers.origin_xattr()).ok()?;
        Some(u64::from_le_bytes(v.as_slice().try_into().ok()?))
    }

    /// Kernel lookup: resolve and remember the node.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> SysResult<Entry> {
        let dir = self.node(parent)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.lookup_in(&self.dir_scope(&dir), name)
    }

    /// The lookup context of directory `parent`, for many lookups in it (readdirplus).
    pub fn lookup_scope(&self, parent: u64) -> SysResult<DirScope> {
        let dir = self.node(parent)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(self.dir_scope(&dir))
    }

    /// Kernel lookup in a directory whose context is already gathered.
    /// A copy-up of an object in the directory may finish while the layers are looked at:
    /// then what was found may be the object before its copy-up (lower, or not yet complete),
    /// or the scope the directory before its own copy-up. Where the object's node exists it
    /// keeps the newer state (`NodeState::predates_copy_up`); where it would be made anew
    /// from what was found, the lookup looks again in a fresh scope.
    pub fn lookup_in(&self, scope: &DirScope, name: &[u8]) -> SysResult<Entry> {
        let mut fresh = None;
        loop {
            let scope = fresh.as_ref().unwrap_or(scope);
            let f = self.resolve_scoped(scope, name)?.ok_or(Errno::ENOENT)?;
            if let Some((_, entry)) =
                self.remember_since(&scope.dir, name, f, Some(scope.copy_ups_seen))
            {
                return Ok(entry);
            }
            fresh = Some(self.dir_scope(&scope.dir));
        }
    }

    /// Applies the stat override of the found object's layer, if that layer keeps one.
    fn override_found(&self, dir: &Node, name: &[u8], f: &Found, st: &mut Stat) {
        let layer = if f.upper {
            UPPER
        } else {
            match f.lowers.first() {
                Some(l) => l.layer,
                None => return,
            }
        };
        if self.layer_override(layer).is_none() || !super::override_stat::applies_to(st.st_mode) {
            return;
        }
        if f.upper {
            if let Ok(d) = self.upper_dir(dir) {
                self.apply_override(UPPER, d.as_fd(), name, st);
            }
        } else if let Some(loc) = f.lowers.first() {
            // Through the parent's cached copy in that layer (a lookup has just used it), not
            // a walk of the path from the layer root per lookup.
            if let Ok(at) = self.lower_at(Some(dir), loc) {
                self.apply_override(at.layer, at.dir.fd(), &at.name, st);
            }
        }
    }

    /// Turns a found object into a node (counting one kernel reference) and its attributes.
    /// For objects this request made or moved itself: no copy-up can have raced the look.
    pub(crate) fn remember(&self, dir: &Arc<Node>, name: &[u8], f: Found) -> (Arc<Node>, Entry) {
        self.remember_since(dir, name, f, None)
            .expect("made without a check")
    }

    /// `remember` for an object found in `dir` after its copy-up count read `seen` (None:
    /// no check): None when the object has no node and a copy-up in `dir` finished since
    /// (look again).
    fn remember_since(
        &self,
        dir: &Arc<Node>,
        name: &[u8],
        f: Found,
        seen: Option<u64>,
    ) -> Option<(Arc<Node>, Entry)> {
        let number = self.number_of(&f);
        let mut st = f.st;
        if f.is_dir() && f.lowers.len() + usize::from(f.upper) > 1 {
            st.st_nlink = 1;
        }
        // Only a file with several links, or one found through the index (whose copy has a
        // single link while all its names are lower ones), can be an indexed copy: the path
        // walk is paid there.
        let via_index = f.lowers.first().is_some_and(|l| l.layer == INDEX);
        if (st.st_nlink > 1 || via_index)
            && !f.is_dir()
            && let Some(top) = f.top(&path::join(&dir.path(), name))
        {
            self.fix_nlink(&top, &mut st);
        }
        self.override_found(dir, name, &f, &mut st);
        if f.upper
            && f.kind() == libc::S_IFREG
            && let Some(data) = f.lowers.first()
        {
            self.show_data_blocks(Some(dir), data, &mut st);
        }
        self.ids.show(&mut st);
        let node = self.nodes.remember_found(
            number,
            f.kind(),
            NodeState::new(Some(dir.clone()), name, f.upper, f.lowers),
            || self.inos.fresh(),
            || seen.is_none_or(|n| dir.copy_ups_in.load(Ordering::Acquire) == n),
        )?;
        st.st_ino = node.ino;
        Some((node, st))
    }
}

/// The components of a path below a layer root (empty ones, from `/` or `//`, skipped).
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}
