//! The inode table: one node per object the kernel knows, keyed by the inode number we report.
//!
//! A node remembers where it lives in the merged tree (parent + name, so a directory rename
//! moves its whole subtree at once) and in which layers it exists. Lock order: a node's
//! `state` lock is never held while taking another node's, except parent-after-child during
//! path building, which only ever reads.

use super::layer::LayerId;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Other objects: the lower object whose data and metadata are shown (at most one).
    pub lowers: Vec<Loc>,
    /// All names gone while the kernel still holds it (deleted but maybe open).
    pub unlinked: bool,
    /// A handle on the object kept when its last name was removed while open.
    pub detached: Option<Arc<OwnedFd>>,
    /// Other names (hard links) the kernel looked this object up by: when the name above
    /// goes, one of these takes its place.
    pub others: Vec<(Arc<Node>, Vec<u8>)>,
}

impl NodeState {
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
}

pub struct Node {
    pub ino: u64,
    /// File type bits (S_IFMT) — fixed for the node's life.
    pub kind: u32,
    lookups: AtomicU64,
    pub state: RwLock<NodeState>,
    /// Serialises copy-up of this node; held across the copy, never by readers.
    pub copyup: Mutex<()>,
    /// Open file handles on this node (for deleted-but-open handling).
    pub open_count: AtomicU64,
    /// FUSE generation: distinguishes objects that reuse one inode number.
    pub generation: AtomicU64,
    /// Directories: their lower copies, read once (see dircache).
    pub lower_dirs: Mutex<Option<Arc<super::dircache::LowerDirs>>>,
    /// Directories without an upper copy: their merged listing, `.` and `..` included (see
    /// readdir). Only lower layers make it, and they never change while mounted.
    pub listing: Mutex<Option<Arc<Vec<super::readdir::DirEntryOut>>>>,
    /// The xattr names of the shown object, once listed (see attr::xattr_names).
    pub xattr_names: Mutex<Option<Arc<Vec<Vec<u8>>>>>,
    /// Directories: O_PATH handle of the upper copy, once opened. It follows the directory
    /// through renames; a removed directory's node is unlinked and never used again.
    pub upper_fd: Mutex<Option<Arc<OwnedFd>>>,
}

impl Node {
    pub fn new(ino: u64, kind: u32, state: NodeState) -> Node {
        Node {
            ino,
            kind,
            lookups: AtomicU64::new(0),
            state: RwLock::new(state),
            copyup: Mutex::new(()),
            open_count: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            lower_dirs: Mutex::new(None),
            listing: Mutex::new(None),
            xattr_names: Mutex::new(None),
            upper_fd: Mutex::new(None),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
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

    pub fn forget_xattr_names(&self) {
        *self.xattr_names.lock() = None;
    }

    /// One more kernel reference (a link or create reply counts as a lookup).
    pub fn lookup_more(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn is_upper(&self) -> bool {
        self.state.read().upper
    }
}

/// Sharded map from inode number to node; no global lock on the hot path.
pub struct NodeTable {
    map: DashMap<u64, Arc<Node>, super::inohash::InoHash>,
    next_generation: AtomicU64,
}

impl NodeTable {
    pub fn new(root: Node) -> NodeTable {
        let map = DashMap::default();
        root.lookups.store(1, Ordering::Relaxed);
        map.insert(ROOT, Arc::new(root));
        NodeTable {
            map,
            next_generation: AtomicU64::new(1),
        }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.map.get(&ino).map(|n| n.clone())
    }

    /// Inserts or refreshes the node for `ino` and counts one kernel lookup.
    /// An existing node of another type (the number was reused) is replaced.
    pub fn remember(&self, ino: u64, kind: u32, state: NodeState) -> Arc<Node> {
        let blank = || NodeState {
            parent: None,
            name: Vec::new(),
            upper: false,
            lowers: Vec::new(),
            unlinked: true,
            detached: None,
            others: Vec::new(),
        };
        let fresh = |lookups: u64| {
            let n = Node::new(ino, kind, blank());
            n.generation.store(
                self.next_generation.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            n.lookups.store(lookups, Ordering::Relaxed);
            Arc::new(n)
        };
        let mut entry = self.map.entry(ino).or_insert_with(|| fresh(0));
        // The number now names another object (the filesystem reused a freed inode number
        // while the kernel still held the old one): a new generation tells the kernel so.
        // The kernel's references on the old one are carried over: its FORGETs still come.
        let dead = {
            let s = entry.state.read();
            s.unlinked && s.detached.is_none() && entry.open_count.load(Ordering::Relaxed) == 0
        };
        if entry.kind != kind || dead {
            let lookups = entry.lookups.load(Ordering::Relaxed);
            *entry = fresh(lookups);
        }
        let node = entry.clone();
        // Counted while the shard is locked: a concurrent forget (which removes the node under
        // the same lock) cannot drop a node this lookup is about to hand to the kernel.
        node.lookups.fetch_add(1, Ordering::Relaxed);
        drop(entry);
        // The common case (a name looked up again, readdirplus): nothing moved, so the update
        // below would write back what is there. Checked under the read lock only.
        if node.state.read().unchanged_by(&state) {
            return node;
        }
        {
            let mut s = node.state.write();
            let mut state = state;
            state.detached = s.detached.take();
            state.others = std::mem::take(&mut s.others);
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
        node
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
        self.map.remove_if(&ino, |_, node| {
            let prev = node.lookups.fetch_sub(
                n.min(node.lookups.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            prev <= n
        });
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
