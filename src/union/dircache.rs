//! Lower directories read once. Lower layers never change while mounted, so the first lookup
//! in a directory reads each of its lower copies (names, types, `.wh.` markers) and keeps a
//! handle on it; later lookups answer "not in this layer" from memory, and a merged index
//! sends each name straight to the first copy that mentions it, which keeps lookup cost flat
//! in the number of layers. Dropped with the directory's node.

use super::node::{Loc, Node};
use super::whiteout::{self, DirMarkers};
use super::{SysResult, Union};
use crate::sys::fs;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The directory handles the caches keep open (cached lower copies, upper directories of
/// directory nodes), counted against a share of the open-file limit. The kernel keeps the
/// nodes of every directory it has cached, so a walk over more directories than the limit
/// allows would otherwise end in EMFILE for the caller; past the budget a directory is
/// opened per use instead (slower, never failing for lack of descriptors).
pub struct HandleBudget {
    held: AtomicUsize,
    max: usize,
}

/// Handles counted against the budget until dropped.
pub struct Held {
    budget: Arc<HandleBudget>,
    n: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.n, Ordering::Relaxed);
    }
}

impl HandleBudget {
    /// Half the open-file limit: the rest is for open files, passthrough backing files,
    /// the layers' own handles.
    pub fn share_of(open_file_limit: u64) -> usize {
        usize::try_from(open_file_limit / 2).unwrap_or(usize::MAX)
    }

    pub fn new(max: usize) -> Arc<HandleBudget> {
        Arc::new(HandleBudget {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// Room for `n` more handles, if the budget has it.
    pub fn take(self: &Arc<Self>, n: usize) -> Option<Held> {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                now.checked_add(n).filter(|&total| total <= self.max)
            })
            .ok()?;
        Some(Held {
            budget: self.clone(),
            n,
        })
    }
}

/// A directory node's kept handle on its upper copy, counted in the budget.
pub struct UpperDirHandle {
    pub fd: Arc<OwnedFd>,
    _held: Held,
}

impl UpperDirHandle {
    pub fn new(fd: Arc<OwnedFd>, held: Held) -> UpperDirHandle {
        UpperDirHandle { fd, _held: held }
    }
}

/// One lower layer's copy of a directory.
pub struct LayerDir {
    /// Handle of the directory in that layer (opened for reading: it was listed through it).
    pub fd: OwnedFd,
    /// Entries (without `.wh.` markers): d_type and d_ino.
    pub names: HashMap<Vec<u8>, (u8, u64)>,
    /// Names hidden in lower layers by a `.wh.NAME` marker in this one.
    pub whiteouts: HashSet<Vec<u8>>,
    /// The directory may hold xattr whiteouts (zero-size files must be checked).
    pub xattr_whiteouts: bool,
    /// Opaque flag and redirect of subdirectories, read on first use (they cannot change).
    pub markers: Mutex<HashMap<Vec<u8>, DirMarkers>>,
}

impl LayerDir {
    /// The markers of subdirectory `name` (at `dir_path` in this layer).
    pub fn markers(&self, name: &[u8], dir_path: &[u8]) -> DirMarkers {
        if let Some(m) = self.markers.lock().get(name) {
            return m.clone();
        }
        let m = whiteout::dir_markers(self.fd.as_fd(), name, dir_path);
        self.markers.lock().insert(name.to_vec(), m.clone());
        m
    }
}

/// From how many lower copies on a directory keeps a merged index of their names.
const INDEXED_COPIES: usize = 3;

/// The lower copies of one merged directory, aligned with the node's lower locations.
pub struct LowerDirs {
    pub locs: Vec<Loc>,
    pub layers: Vec<Option<LayerDir>>,
    /// For a directory merged from `INDEXED_COPIES` or more lower copies: per name, the first
    /// copy whose listing mentions it (as an entry or a `.wh.` marker). The copies above it
    /// can neither show nor hide that name, so a lookup starts there instead of asking each
    /// copy in turn.
    first_mention: Option<HashMap<Vec<u8>, usize>>,
    /// The first copy that could not be read: it must be visited whatever the name.
    first_unread: usize,
    /// The handles' place in the budget.
    _held: Held,
}

impl LowerDirs {
    fn new(locs: Vec<Loc>, layers: Vec<Option<LayerDir>>, held: Held) -> LowerDirs {
        let first_unread = layers
            .iter()
            .position(Option::is_none)
            .unwrap_or(layers.len());
        // Building the index costs about what probing three copies per lookup does (a name
        // is mostly looked up once per mount): below that, the copies are probed in turn.
        let first_mention = (layers.len() >= INDEXED_COPIES).then(|| {
            let total = layers.iter().flatten().map(|l| l.names.len()).sum();
            let mut first = HashMap::with_capacity(total);
            // Bottom up, so the topmost mention is the one left.
            for (i, l) in layers.iter().enumerate().rev() {
                let Some(l) = l else { continue };
                for name in l.names.keys().chain(&l.whiteouts) {
                    match first.get_mut(name.as_slice()) {
                        Some(at) => *at = i,
                        None => {
                            first.insert(name.clone(), i);
                        }
                    }
                }
            }
            first
        });
        LowerDirs {
            locs,
            layers,
            first_mention,
            first_unread,
            _held: held,
        }
    }

    /// The first lower copy a lookup of `name` must visit (`layers.len()` when none: the
    /// name is in no lower copy).
    pub fn first_to_visit(&self, name: &[u8]) -> usize {
        let Some(first) = &self.first_mention else {
            return 0;
        };
        let mentioned = first.get(name).copied().unwrap_or(self.layers.len());
        mentioned.min(self.first_unread)
    }

    /// The cached copy for a lower location, if it is one of ours.
    pub fn get(&self, loc: &Loc) -> Option<&LayerDir> {
        let i = self.locs.iter().position(|l| l == loc)?;
        self.layers[i].as_ref()
    }
}

impl Union {
    /// The cached lower copies of directory `dir` (read on first use). None when it has no
    /// lower copies, or when the handle budget is spent (callers then probe the layers).
    pub(crate) fn lower_dirs(&self, dir: &Node) -> Option<Arc<LowerDirs>> {
        let mut slot = dir.lower_dirs.lock();
        // The common case, on every lookup: the cached copy still matches, nothing is cloned.
        let locs = {
            let s = dir.state.read();
            if s.lowers.is_empty() {
                return None;
            }
            if let Some(c) = slot.as_ref()
                && c.locs == s.lowers
            {
                return Some(c.clone());
            }
            s.lowers.clone()
        };
        let held = self.handle_budget.take(locs.len())?;
        let layers = locs.iter().map(|l| self.read_layer_dir(l).ok()).collect();
        let c = Arc::new(LowerDirs::new(locs, layers, held));
        *slot = Some(c.clone());
        Some(c)
    }

    fn read_layer_dir(&self, loc: &Loc) -> SysResult<LayerDir> {
        // One open serves the listing and then stays as the copy's handle (an O_PATH handle
        // and a second open to list it cost two more syscalls per copy).
        let fd = self
            .layer(loc.layer)
            .open(&loc.path, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let entries = fs::read_dir(fd.as_fd())?;
        let mut names = HashMap::with_capacity(entries.len());
        let mut whiteouts = HashSet::new();
        for e in entries {
            if let Some(target) = e.name.strip_prefix(whiteout::WH_PREFIX) {
                if e.name != whiteout::OPAQUE_MARKER {
                    whiteouts.insert(target.to_vec());
                }
                continue;
            }
            names.insert(e.name, (e.kind, e.ino));
        }
        let xattr_whiteouts = whiteout::open_dir_has_xattr_whiteouts(fd.as_fd());
        Ok(LayerDir {
            fd,
            names,
            whiteouts,
            xattr_whiteouts,
            markers: Mutex::new(HashMap::new()),
        })
    }
}
