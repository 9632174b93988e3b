//! Merged directory listings: names from every merged layer, top first, minus whiteouts
//! (which hide names in lower layers only) and `.wh.` markers. d_ino equals st_ino.

use super::dircache::LowerDirs;
use super::layer::UPPER;
use super::node::{Loc, Node};
use super::{Errno, SysResult, Union, whiteout};
use crate::sys::fs;
use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One entry of a listing: inode number, S_IFMT type bits, name, and its cookie (the
/// directory offset just past it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntryOut {
    /// d_ino: the object's number (as its st_ino), not a node id; for an upper entry whose
    /// origin is unread, its upper file's number (see `dirent_ino`).
    pub ino: u64,
    pub kind: u32,
    pub name: Vec<u8>,
    pub cookie: u64,
    /// An upper entry: a copied-up object shows its origin's number, which is read only when a
    /// plain READDIR gives this entry out. READDIRPLUS gives each entry the number its lookup
    /// found, so listing an upper directory costs no getxattr per name.
    pub origin_unread: bool,
}

/// The cookie of a name: a hash, so an offset means the same position in every snapshot of
/// the directory. The kernel keeps listings across handles (cached directories) and resumes
/// one handle's listing at an offset another handle gave; index-based offsets would then skip
/// or repeat names when the directory changed in between. `.` and `..` take 1 and 2.
fn name_cookie(name: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write(name);
    3 + (h.finish() >> 2)
}

/// Sorts a listing by cookie and makes cookies strictly increasing (a hash collision moves
/// the second name one up).
fn order_by_cookie(entries: &mut [DirEntryOut]) {
    entries.sort_by(|a, b| (a.cookie, &a.name).cmp(&(b.cookie, &b.name)));
    for i in 1..entries.len() {
        if entries[i].cookie <= entries[i - 1].cookie {
            entries[i].cookie = entries[i - 1].cookie + 1;
        }
    }
}

fn dtype_to_kind(t: u8) -> Option<u32> {
    Some(match t {
        libc::DT_REG => libc::S_IFREG,
        libc::DT_DIR => libc::S_IFDIR,
        libc::DT_LNK => libc::S_IFLNK,
        libc::DT_CHR => libc::S_IFCHR,
        libc::DT_BLK => libc::S_IFBLK,
        libc::DT_FIFO => libc::S_IFIFO,
        libc::DT_SOCK => libc::S_IFSOCK,
        _ => return None,
    })
}

impl Union {
    /// The listing of directory `ino`, `.` and `..` first, in cookie order (an offset is the
    /// cookie of the entry before). No directory handles: the kernel reads listings without
    /// OPENDIR (see fuse::adapter), so one snapshot per directory serves every reader, and is
    /// taken again when the directory changed since (cookies are name hashes, valid in every
    /// snapshot).
    ///
    /// Never serving an older snapshot matters because the kernel caches listings
    /// (FOPEN_CACHE_DIR): it records the directory's version when it starts a cache at offset
    /// 0 and then appends what a reader going on from the cache's end is given. A reader that
    /// read its first batch before an unlink and its rest after a new cache was started
    /// would otherwise complete that new cache with the removed name.
    pub fn readdir(&self, ino: u64) -> SysResult<Arc<Vec<DirEntryOut>>> {
        self.readdir_node(&self.node(ino)?)
    }

    fn readdir_node(&self, node: &Arc<Node>) -> SysResult<Arc<Vec<DirEntryOut>>> {
        self.listing_of(node, true)
    }

    /// The current listing snapshot of directory `node`, taken if there is none. `for_kernel`:
    /// it is given to the kernel, which may cache it (see `Node::listed`); read-ahead's is not.
    pub(crate) fn listing_of(
        &self,
        node: &Arc<Node>,
        for_kernel: bool,
    ) -> SysResult<Arc<Vec<DirEntryOut>>> {
        if !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if node.state.read().unlinked {
            return Err(Errno::ENOENT);
        }
        if for_kernel {
            node.listed.store(true, Ordering::Release);
        }
        // Read before listing: a change while listing makes the next readdir list again.
        let version = node.listing_version.load(Ordering::Acquire);
        let parent_ino = self.shown_ino(
            node.state
                .read()
                .parent
                .as_ref()
                .map_or(node.ino, |p| p.ino),
        );
        // `..` is checked: the layers do not make it, and a rename of the directory itself
        // changes it without changing the directory's entries.
        if let Some((v, e)) = &*node.listing.lock()
            && *v == version
            && e.get(1).is_some_and(|dotdot| dotdot.ino == parent_ino)
        {
            return Ok(e.clone());
        }
        let entries = self.list_dir(node, parent_ino)?;
        *node.listing.lock() = Some((version, entries.clone()));
        Ok(entries)
    }

    /// The listing of directory `ino` and the index of the first entry after `offset` (a
    /// cookie). A reader that reached the end lets the snapshot of a directory with an upper
    /// copy go: it need not stay in memory (a reader still going on gets a new one, at the
    /// same cookies). A lower-only directory's listing stays (see `Node::listing`).
    pub fn readdir_from(&self, ino: u64, offset: u64) -> SysResult<(Arc<Vec<DirEntryOut>>, usize)> {
        let node = self.node(ino)?;
        let entries = self.readdir_node(&node)?;
        let start = entries.partition_point(|e| e.cookie <= offset);
        if start == entries.len() && node.is_upper() {
            *node.listing.lock() = None;
        }
        Ok((entries, start))
    }

    /// d_ino of entry `e` of directory `dir`'s listing, as a plain READDIR gives it out: a
    /// copied-up upper entry shows its origin's number, as its lookup does. `upper` holds the
    /// directory's upper handle across the entries of one reply (opened at the first need).
    pub fn dirent_ino(
        &self,
        dir: u64,
        e: &DirEntryOut,
        upper: &mut Option<Option<Arc<std::os::fd::OwnedFd>>>,
    ) -> u64 {
        if !e.origin_unread {
            return e.ino;
        }
        let fd = upper.get_or_insert_with(|| {
            let node = self.node(dir).ok()?;
            self.upper_dir(&node).ok()
        });
        fd.as_ref()
            .and_then(|d| self.origin_at(d.as_fd(), &e.name))
            .unwrap_or(e.ino)
    }

    /// The merged listing of directory `node`, `.` and `..` first, in cookie order.
    fn list_dir(&self, node: &Arc<Node>, parent_ino: u64) -> SysResult<Arc<Vec<DirEntryOut>>> {
        let mut entries = vec![
            DirEntryOut {
                ino: self.shown_ino(node.ino),
                kind: libc::S_IFDIR,
                name: b".".to_vec(),
                cookie: 1,
                origin_unread: false,
            },
            DirEntryOut {
                ino: parent_ino,
                kind: libc::S_IFDIR,
                name: b"..".to_vec(),
                cookie: 2,
                origin_unread: false,
            },
        ];
        let cache = self.lower_dirs(node);
        let mut listed = self.list_merged(&node.dir_layers(), cache.as_deref())?;
        order_by_cookie(&mut listed);
        entries.extend(listed);
        Ok(Arc::new(entries))
    }

    /// The visible entries of the merged directory made of `layers` (top first).
    pub(crate) fn list_merged(
        &self,
        layers: &[Loc],
        cache: Option<&LowerDirs>,
    ) -> SysResult<Vec<DirEntryOut>> {
        let mut out = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut hidden: HashSet<Vec<u8>> = HashSet::new();
        for loc in layers {
            let layer = self.layer(loc.layer);
            let cached = cache
                .filter(|_| loc.layer != UPPER)
                .and_then(|c| c.get(loc));
            let opened;
            let (d, entries, layer_whiteouts, xattr_whiteouts) = match cached {
                Some(c) => {
                    let entries: Vec<fs::DirEntry> = c
                        .names
                        .iter()
                        .map(|(n, &(kind, ino))| fs::DirEntry {
                            ino,
                            kind,
                            name: n.clone(),
                        })
                        .collect();
                    let wh: Vec<Vec<u8>> = c.whiteouts.iter().cloned().collect();
                    (c.fd.as_fd(), entries, wh, c.xattr_whiteouts)
                }
                None => {
                    opened = match layer.dir(&loc.path) {
                        Ok(d) => d,
                        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => continue,
                        Err(e) => return Err(e),
                    };
                    let d = opened.as_fd();
                    let listing = fs::open_dir_for_listing(d)?;
                    let mut entries = Vec::new();
                    let mut wh = Vec::new();
                    for e in fs::read_dir(listing.as_fd())? {
                        match e.name.strip_prefix(whiteout::WH_PREFIX) {
                            Some(t) if e.name != whiteout::OPAQUE_MARKER => wh.push(t.to_vec()),
                            Some(_) => {}
                            None => entries.push(e),
                        }
                    }
                    let xattr_whiteouts = whiteout::open_dir_has_xattr_whiteouts(listing.as_fd());
                    (d, entries, wh, xattr_whiteouts)
                }
            };
            for e in entries {
                if seen.contains(&e.name) || hidden.contains(&e.name) {
                    continue;
                }
                let mut kind = dtype_to_kind(e.kind);
                let needs_stat = kind.is_none()
                    || kind == Some(libc::S_IFCHR)
                    || (xattr_whiteouts && kind == Some(libc::S_IFREG));
                if needs_stat {
                    let st = match fs::stat_at(d, &e.name) {
                        Ok(st) => st,
                        Err(Errno::ENOENT) => continue,
                        Err(err) => return Err(err),
                    };
                    if whiteout::is_whiteout_marked(d, &e.name, &st, || xattr_whiteouts) {
                        hidden.insert(e.name);
                        continue;
                    }
                    kind = Some(st.st_mode & libc::S_IFMT);
                }
                // d_ino == st_ino: the object's number, whatever node id it answers under; a
                // copied-up entry's origin is read when served (`dirent_ino`).
                let ino = self.inos.map(layer.dev, e.ino);
                seen.insert(e.name.clone());
                out.push(DirEntryOut {
                    ino,
                    kind: kind.unwrap_or(libc::S_IFREG),
                    cookie: name_cookie(&e.name),
                    name: e.name,
                    origin_unread: loc.layer == UPPER && self.has_upper,
                });
            }
            hidden.extend(layer_whiteouts);
        }
        Ok(out)
    }
}
