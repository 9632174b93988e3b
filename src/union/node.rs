//! The inode table: one node per object the kernel knows, keyed by the inode number we report.
//!
//! A node remembers where it lives in the merged tree (parent + name, so a directory rename
//! moves its whole subtree at once) and in which layers it exists. Lock order: a node's
//! `state` lock is never held while taking another node's, except parent-after-child during
//! path building, which only ever reads.

use super::layer::LayerId;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::{Mutex, RwLock};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const ROOT: u64 = 1;

/// Where one object is found: its layer and its path below that layer's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub layer: LayerId,
    pub path: Vec<u8>,
}

pub struct NodeState {
    /// Parent directory in the merged tree (None for the root).
    pub parent: Option<Arc<Node>>,
    pub name: Vec<u8>,
    /// Exists in the upper layer at the merged path.
    pub upper: bool,
    /// Directories: every lower directory merged into this one, top first.
    /// Other objects: the lower object whose data and metadata are shown (at most one); for
    /// an upper regular file, the lower file holding its data when the upper one is a
    /// metadata-only copy (metacopy), else none.
    pub lowers: Vec<Loc>,
    /// All names gone while the kernel still holds it (deleted but maybe open).
    pub unlinked: bool,
    /// A handle on the object kept when its last name was removed while open.
    pub detached: Option<Arc<OwnedFd>>,
    /// Other names (hard links) the kernel looked this object up by: when the name above
    /// goes, one of these takes its place.
    pub others: Vec<(Arc<Node>, Vec<u8>)>,
    /// Directories: the upper copy was made by this mount (copy-up or mkdir) with the
    /// kernel's markers, which never writes a `.wh.NAME` file, and no name of that form can be
    /// created through the mount: a lookup that misses in it need not probe for one.
    pub wh_free: bool,
}

impl NodeState {
    /// A live object named `name` under `parent` (None: the root), in the upper layer or not,
    /// over the lower locations `lowers`.
    pub fn new(parent: Option<Arc<Node>>, name: &[u8], upper: bool, lowers: Vec<Loc>) -> Self {
        NodeState {
            parent,
            name: name.to_vec(),
            upper,
            lowers,
            unlinked: false,
            detached: None,
            others: Vec::new(),
            wh_free: false,
        }
    }

    /// See `Node::metacopy_data` (for callers already holding the state; `kind` is the node's).
    pub fn metacopy_data(&self, kind: u32) -> Option<&Loc> {
        let upper_file = kind == libc::S_IFREG && self.upper && !self.unlinked;
        upper_file.then(|| self.lowers.first()).flatten()
    }

    fn is_alias(&self, dir: &Node, name: &[u8]) -> bool {
        self.name == name && self.parent.as_ref().is_some_and(|p| p.ino == dir.ino)
    }

    /// Whether remembering `new` (a fresh lookup result) would leave this state as it is:
    /// same live name under the same parent node, same layers, and that name not also
    /// listed among the other names (`remember` keeps `detached` and `others` anyway).
    fn unchanged_by(&self, new: &NodeState) -> bool {
        let same_parent = match (&self.parent, &new.parent) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        !self.unlinked
            && same_parent
            && self.name == new.name
            && self.upper == new.upper
            && self.lowers == new.lowers
            && !new.unlinked
            && !self
                .others
                .iter()
                .any(|(d, n)| new.parent.as_ref().is_some_and(|p| p.ino == d.ino) && *n == new.name)
    }

    /// Whether this state, found by a lookup of a name, is older than `cur`, the node's state
    /// under the same name: a copy-up of the name finished between the lookup's look at the
    /// layers and now. A copy-up only ever moves a live name's object up (lower to upper) and
    /// drops the lowers a complete file no longer reads (a metacopy file's data copy-up, an
    /// index link): the other way round, at the same name, nothing goes while the node lives.
    /// Lookups are not ordered with copy-ups (readdirplus of the directory while a file in it
    /// is opened for write, or a name the kernel looks up again), and storing such a state
    /// would send reads to the lower file and the next copy-up into a taken upper name.
    fn predates_copy_up(&self, cur: &NodeState) -> bool {
        let same_name = match (&self.parent, &cur.parent) {
            (Some(a), Some(b)) => a.ino == b.ino && self.name == cur.name,
            _ => false,
        };
        same_name
            && !cur.unlinked
            && cur.upper
            && (!self.upper || self.lowers.len() > cur.lowers.len())
    }
}

pub struct Node {
    /// The FUSE node id: the object's number, unless the number was moved (see
    /// `NodeTable::remember`).
    pub ino: u64,
    /// The object's inode number (see `InoMap`), which the node id stands for: the st_ino
    /// and d_ino shown under either id (`Union::shown_ino`).
    pub number: u64,
    /// File type bits (S_IFMT) — fixed for the node's life.
    pub kind: u32,
    lookups: AtomicU64,
    pub state: RwLock<NodeState>,
    /// Serialises copy-up of this node; held across the copy, never by readers.
    pub copyup: Mutex<()>,
    /// Open file handles on this node (for deleted-but-open handling).
    pub open_count: AtomicU64,
    /// Of those, the handles execve opened: the kernel refuses writes to a running program
    /// (ETXTBSY), and a truncating open must not empty it first (see `Union::open`).
    pub exec_opens: AtomicU64,
    /// FUSE generation: distinguishes objects that reuse one inode number.
    pub generation: AtomicU64,
    /// Directories: their lower copies, read once (see dircache).
    pub lower_dirs: Mutex<Option<Arc<super::dircache::LowerDirs>>>,
    /// Directories: the listing being read (see readdir), with the `listing_version` it was
    /// taken at. Kept after a reader reaches its end only while the directory has no upper
    /// copy: then only lower layers make it, and they never change while mounted.
    pub listing: Mutex<Option<(u64, Arc<Vec<super::readdir::DirEntryOut>>)>>,
    /// The xattr names of the shown object, once listed (see attr::xattr_names).
    xattr_names: Mutex<XattrNames>,
    /// Directories: bumped by every create, removal and rename in them. A listing snapshot
    /// taken at another count is not served (see readdir: the kernel caches listings).
    pub listing_version: AtomicU64,
    /// Directories: listed to the kernel since the last change (it may cache the listing).
    pub listed: AtomicBool,
    /// Directories: copy-ups of the objects named in it finished so far. A lookup that saw
    /// it move while it looked at the layers may have found an object's pre-copy-up state
    /// (`NodeTable::remember_found`).
    pub copy_ups_in: AtomicU64,
    /// Directories: the walk is cold here (its last listing read the disk, or its parent's
    /// walk was cold when it was listed): its subdirectories are read ahead (readahead.rs).
    pub cold_walk: AtomicBool,
    /// Directories: O_PATH handle of the upper copy, once opened. It follows the directory
    /// through renames; a removed directory's node is unlinked and never used again.
    pub upper_fd: Mutex<Option<super::dircache::UpperDirHandle>>,
}

impl Node {
    pub fn new(ino: u64, kind: u32, state: NodeState) -> Node {
        Node {
            ino,
            number: ino,
            kind,
            lookups: AtomicU64::new(0),
            state: RwLock::new(state),
            copyup: Mutex::new(()),
            open_count: AtomicU64::new(0),
            exec_opens: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            lower_dirs: Mutex::new(None),
            listing: Mutex::new(None),
            xattr_names: Mutex::new(XattrNames::default()),
            listing_version: AtomicU64::new(0),
            listed: AtomicBool::new(false),
            copy_ups_in: AtomicU64::new(0),
            cold_walk: AtomicBool::new(false),
            upper_fd: Mutex::new(None),
        }
    }

    /// Directories: an entry is about to come, go or move (see `listing_version`). Returns
    /// whether the kernel was given a listing since the last change.
    pub fn entries_change(&self) -> bool {
        self.listing_version.fetch_add(1, Ordering::Release);
        self.listed.swap(false, Ordering::AcqRel)
    }

    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }

    /// Whether `name` in `dir` is the node's own name (not one of its other names).
    pub fn is_named(&self, dir: &Node, name: &[u8]) -> bool {
        self.state.read().is_alias(dir, name)
    }

    /// The path in the merged tree (and so in the upper layer), "" for the root.
    /// Built backwards in one buffer (each name reversed, then the whole turned around): one
    /// allocation however deep the node is; this runs on most requests for upper objects.
    pub fn path(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let mut cur = {
            let s = self.state.read();
            let Some(p) = s.parent.clone() else {
                return Vec::new();
            };
            out.extend(s.name.iter().rev());
            p
        };
        loop {
            let s = cur.state.read();
            let Some(p) = s.parent.clone() else {
                break;
            };
            out.push(b'/');
            out.extend(s.name.iter().rev());
            drop(s);
            cur = p;
        }
        out.reverse();
        out
    }

    /// The directories this node merges, top first: the upper one (if any) then lowers.
    pub fn dir_layers(&self) -> Vec<Loc> {
        let s = self.state.read();
        let mut v = Vec::with_capacity(s.lowers.len() + 1);
        if s.upper {
            drop(s);
            let path = self.path();
            let s = self.state.read();
            v.push(Loc {
                layer: super::layer::UPPER,
                path,
            });
            v.extend(s.lowers.iter().cloned());
            return v;
        }
        v.extend(s.lowers.iter().cloned());
        v
    }

    /// The location whose metadata and data are shown: upper if copied up, else the top lower.
    pub fn top(&self) -> Option<Loc> {
        let s = self.state.read();
        if s.upper {
            drop(s);
            return Some(Loc {
                layer: super::layer::UPPER,
                path: self.path(),
            });
        }
        s.lowers.first().cloned()
    }

    /// A metacopy file (upper metadata, lower data): the lower file that holds its data.
    pub fn metacopy_data(&self) -> Option<Loc> {
        self.state.read().metacopy_data(self.kind).cloned()
    }

    /// Drops the remembered names and counts a change: a listing that began before it is not
    /// remembered (`remember_xattr_names`). A change of the object's xattrs runs under
    /// `xattr_change`, which calls this at its start and its end; a copy-up calls it once the
    /// shown object is the upper copy.
    pub fn forget_xattr_names(&self) {
        let mut x = self.xattr_names.lock();
        x.names = None;
        x.changes += 1;
    }

    /// Marks a change of the object's xattrs (or of what decides them: a copy-up, chmod)
    /// from now until the guard drops: names listed meanwhile are not remembered.
    pub fn xattr_change(&self) -> XattrChange<'_> {
        self.forget_xattr_names();
        XattrChange(self)
    }

    /// The remembered xattr names, if listed since the last change.
    pub fn known_xattr_names(&self) -> Option<Arc<Vec<Vec<u8>>>> {
        self.xattr_names.lock().names.clone()
    }

    /// The change count to pass to `remember_xattr_names`, read before listing.
    pub fn xattr_changes(&self) -> u64 {
        self.xattr_names.lock().changes
    }

    /// Remembers a listing taken after `xattr_changes` returned `changes`, unless a change
    /// began or ended since (the listing may then miss it).
    pub fn remember_xattr_names(&self, names: Arc<Vec<Vec<u8>>>, changes: u64) {
        let mut x = self.xattr_names.lock();
        if x.changes == changes {
            x.names = Some(names);
        }
    }

    /// One more kernel reference (a link or create reply counts as a lookup).
    pub fn lookup_more(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn is_upper(&self) -> bool {
        self.state.read().upper
    }
}

/// Sharded map from node id to node; no global lock on the hot path.
///
/// A node id is the object's inode number, except when the upper filesystem gives the number
/// of a deleted object to a new one while the kernel still holds the deleted one (ext4 reuses
/// a freed number at once, and the kernel's FORGET comes later). The kernel keys its inodes
/// by node id: answering the new object with the same id and a new generation makes the
/// kernel mark its inode of the old object bad, and an open racing the unlink through it gets
/// EIO. So the new object gets an id of its own, kept in `moved` for its number.
pub struct NodeTable {
    map: DashMap<u64, Arc<Node>, super::inohash::InoHash>,
    /// Numbers whose object answers under another node id.
    moved: DashMap<u64, u64, super::inohash::InoHash>,
    /// Set once a number has moved: until then no lookup pays for a look into `moved`.
    any_moved: AtomicBool,
    next_generation: AtomicU64,
}

impl NodeTable {
    pub fn new(root: Node) -> NodeTable {
        let map = DashMap::default();
        root.lookups.store(1, Ordering::Relaxed);
        map.insert(ROOT, Arc::new(root));
        NodeTable {
            map,
            moved: DashMap::default(),
            any_moved: AtomicBool::new(false),
            next_generation: AtomicU64::new(1),
        }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.map.get(&ino).map(|n| n.clone())
    }

    /// The inode number of the object node `id` stands for: `id` itself unless a number
    /// moved (then one map lookup; none on the common path).
    pub fn number_of_id(&self, id: u64) -> u64 {
        if !self.any_moved.load(Ordering::Acquire) {
            return id;
        }
        self.map.get(&id).map_or(id, |n| n.number)
    }

    /// The node id an object with inode number `number` answers under.
    pub fn id_of(&self, number: u64) -> u64 {
        if !self.any_moved.load(Ordering::Acquire) {
            return number;
        }
        self.moved.get(&number).map_or(number, |id| *id)
    }

    /// Inserts or refreshes the node of the object numbered `number` and counts one kernel
    /// lookup. When the node under that number is a deleted object the kernel still holds,
    /// or of another type (the number was reused), the object gets a new node id from
    /// `fresh_id` (an id no inode number maps to) and the old node lives on until its FORGET.
    pub fn remember(
        &self,
        number: u64,
        kind: u32,
        state: NodeState,
        fresh_id: impl Fn() -> u64,
    ) -> Arc<Node> {
        self.remember_found(number, kind, state, fresh_id, || true)
            .expect("always current")
    }

    /// `remember` for a state a lookup found, which a copy-up that finished meanwhile may
    /// have made old. A node that exists keeps what its copy-up made of it
    /// (`NodeState::predates_copy_up`); a new node would start from the old state (the
    /// copied-up node was forgotten since), so it is made only while `current` (checked
    /// under the map's lock) says no copy-up could have finished since the lookup began:
    /// else None, and the caller looks again.
    pub fn remember_found(
        &self,
        number: u64,
        kind: u32,
        state: NodeState,
        fresh_id: impl Fn() -> u64,
        current: impl Fn() -> bool,
    ) -> Option<Arc<Node>> {
        // A new node is made with the found state: a node another lookup could see before
        // its state was written would look deleted to it (`dead` below), and that lookup
        // would move the number and make a second node for the same object.
        let mut state = Some(state);
        let node = loop {
            let id = self.id_of(number);
            let slot = self.map.entry(id);
            // Moved by another lookup while this one waited for the shard: follow it.
            if self.id_of(number) != id {
                continue;
            }
            let entry = match slot {
                Entry::Vacant(v) => {
                    if !current() {
                        return None;
                    }
                    let mut n = Node::new(id, kind, state.take().expect("used once"));
                    n.number = number;
                    n.generation.store(
                        self.next_generation.fetch_add(1, Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    n.lookups.store(1, Ordering::Relaxed);
                    // Counted while the shard is locked, as below.
                    return Some(v.insert(Arc::new(n)).clone());
                }
                Entry::Occupied(o) => o.into_ref(),
            };
            let dead = {
                let s = entry.state.read();
                s.unlinked && s.detached.is_none() && entry.open_count.load(Ordering::Relaxed) == 0
            };
            if entry.kind != kind || dead {
                // Recorded while the old id's shard is locked: a concurrent lookup of the
                // number waits for the lock, then sees the move above.
                self.record_move(number, &fresh_id);
                continue;
            }
            let node = entry.clone();
            // Counted while the shard is locked: a concurrent forget (which removes the node
            // under the same lock) cannot drop a node this lookup is about to hand to the kernel.
            node.lookups.fetch_add(1, Ordering::Relaxed);
            break node;
        };
        let state = state.expect("a new node returns above");
        // The common case (a name looked up again, readdirplus): nothing moved, so the update
        // below would write back what is there. Checked under the read lock only.
        if node.state.read().unchanged_by(&state) {
            return Some(node);
        }
        {
            let mut s = node.state.write();
            // Found before a copy-up of this very name finished: what it found is older than
            // what the node knows (see `NodeState::predates_copy_up`).
            if state.predates_copy_up(&s) {
                drop(s);
                return Some(node);
            }
            let mut state = state;
            state.detached = s.detached.take();
            state.others = std::mem::take(&mut s.others);
            // The same directory object: what its upper copy can hold has not changed.
            state.wh_free = s.wh_free && state.upper;
            // Another name of the same object: remember the one it had.
            if !s.unlinked
                && let Some(p) = s.parent.clone()
                && !state.is_alias(&p, &s.name)
                && !state
                    .others
                    .iter()
                    .any(|(d, n)| d.ino == p.ino && *n == s.name)
            {
                state.others.push((p, std::mem::take(&mut s.name)));
            }
            let (parent, name) = (state.parent.clone(), state.name.clone());
            state
                .others
                .retain(|(d, n)| !(Some(d.ino) == parent.as_ref().map(|p| p.ino) && *n == name));
            *s = state;
        }
        Some(node)
    }

    /// From now on the object numbered `node.number` answers under a new id from `fresh_id`
    /// (the next lookup makes its node), as a reused number does; `node` stays for the
    /// kernel's inode until its FORGET. No-op (false) when the number has moved on already.
    pub fn move_away(&self, node: &Node, fresh_id: impl Fn() -> u64) -> bool {
        // Under the old id's shard lock, as in `remember`: a lookup of the number waits, then
        // sees the move.
        let _slot = self.map.get(&node.ino);
        if self.id_of(node.number) != node.ino {
            return false;
        }
        self.record_move(node.number, &fresh_id);
        true
    }

    /// Number `number` answers under a new id from now on (callers hold its old id's shard).
    fn record_move(&self, number: u64, fresh_id: &impl Fn() -> u64) {
        self.moved.insert(number, fresh_id());
        self.any_moved.store(true, Ordering::Release);
    }

    /// The generation of the node the kernel knows as `ino` (0 when unknown).
    pub fn generation(&self, ino: u64) -> u64 {
        self.map
            .get(&ino)
            .map(|n| n.generation.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Drops `n` kernel references; the node goes when none are left.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let gone = self.map.remove_if(&ino, |_, node| {
            let prev = node.lookups.fetch_sub(
                n.min(node.lookups.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            prev <= n
        });
        // A moved number keeps its id while its object lives (st_ino stays the same); once
        // the object is deleted too, the number may go back to being its own id.
        if let Some((_, node)) = gone
            && node.number != node.ino
            && node.state.read().unlinked
        {
            self.moved.remove_if(&node.number, |_, id| *id == node.ino);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(parent: Option<&Arc<Node>>, name: &str) -> NodeState {
        NodeState::new(parent.cloned(), name.as_bytes(), true, Vec::new())
    }

    #[test]
    fn a_reused_number_moves_to_its_own_id_until_the_new_object_goes() {
        let t = NodeTable::new(Node::new(ROOT, libc::S_IFDIR, named(None, "")));
        let root = t.get(ROOT).unwrap();
        let fresh = || 1 << 60;
        let old = t.remember(7, libc::S_IFREG, named(Some(&root), "old"), fresh);
        assert_eq!(old.ino, 7);
        // Deleted while the kernel still holds it; the number goes to a new file.
        old.state.write().unlinked = true;
        let new = t.remember(7, libc::S_IFREG, named(Some(&root), "new"), fresh);
        assert_eq!((new.ino, new.number), (1 << 60, 7));
        assert_eq!(t.id_of(7), 1 << 60);
        assert!(t.get(7).is_some_and(|n| Arc::ptr_eq(&n, &old)));
        // The old node goes at its FORGET; the number stays with the new object...
        t.forget(7, 1);
        assert!(t.get(7).is_none());
        t.forget(1 << 60, 1);
        assert_eq!(t.id_of(7), 1 << 60, "st_ino changed while the object lives");
        // ...until that object is deleted and forgotten too.
        let again = t.remember(7, libc::S_IFREG, named(Some(&root), "new"), fresh);
        assert_eq!(again.ino, 1 << 60);
        again.state.write().unlinked = true;
        t.forget(1 << 60, 1);
        assert_eq!(t.id_of(7), 7);
    }
}

/// A node's xattr names as last listed, and a count of the changes made to them through the
/// mount (a listing is remembered only if no change came between its start and its end).
#[derive(Default)]
struct XattrNames {
    names: Option<Arc<Vec<Vec<u8>>>>,
    changes: u64,
}

/// A change of a node's xattrs in progress (`Node::xattr_change`); its end forgets the names
/// once more.
pub struct XattrChange<'n>(&'n Node);

impl Drop for XattrChange<'_> {
    fn drop(&mut self) {
        self.0.forget_xattr_names();
    }
}
