//! Read-ahead of a cold tree walk. Listing a directory through the daemon is a chain of
//! waits: the kernel asks for a listing, the daemon reads the directory from disk, stats its
//! entries (more disk reads), answers, and only then does the walker ask for the next
//! directory. Kernel overlayfs pays the same disk reads but not the daemon's CPU between
//! them, and on a cold `find` that CPU doubled the time.
//!
//! So once listing a directory had to read the disk, the walk is cold there: its
//! subdirectories are listed and their entries looked up ahead, on worker threads, several at
//! once, so the disk reads overlap each other and the daemon's answers, and the walker's own
//! requests then find everything cached. A directory a request lists inside a cold walk
//! (its parent's listing was cold) is cold too, so the read-ahead stays one level in front of
//! the walk as far as the walk goes, and no further: listing one directory reads its
//! subdirectories ahead, not their subdirectories; and only its first few until the walk
//! enters one of them, so a cold `ls -l` of a wide directory does not read all of them. A
//! warm walk never reads the disk and never starts it.
//!
//! Read-ahead only lists and resolves: it remembers no node, gives the kernel nothing and
//! changes nothing on disk; what it leaves is the page cache, the daemon's directory handle
//! caches and listing snapshots a request would have made the same way.

use super::node::Node;
use super::readdir::DirEntryOut;
use super::{DirScope, Union, path};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// Directories waiting to be read ahead, at most this many (the oldest are dropped).
const MAX_WAITING: usize = 4096;

/// Subdirectories of one listing read ahead at once; the rest wait until the walk enters one
/// of them. A walker that descends (find, du, cp -r) then gets them all, while a cold
/// `ls -l` of a directory with thousands of subdirectories reads only these few ahead.
const EAGER: usize = 4;

/// Listings whose remaining subdirectories wait for the walk to enter one of them, at most
/// this many (the oldest forgotten).
const MAX_DEFERRED: usize = 64;

/// The directories waiting, next first, and the workers taking them.
#[derive(Default)]
pub(crate) struct ReadAhead {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The directory whose subdirectories were queued last, and how many of them are still
    /// at the front: the next batch of the same listing goes behind them, not before.
    last_parent: u64,
    last_left: usize,
    /// Per listing (directory id): how many of its subdirectories went eagerly, and those
    /// that wait for the walk to enter one of them.
    deferred: VecDeque<(u64, usize, Vec<Job>)>,
    workers: usize,
    stopping: bool,
}

/// A subdirectory to read ahead.
enum Job {
    /// Given with its attributes (READDIRPLUS): its node exists, and keeps what is read.
    Node(Weak<Node>),
    /// Given by name only (a plain READDIR batch): no node, only the kernel's caches warmed.
    Named(Weak<Node>, Vec<u8>),
}

/// Disk reads of this thread when a listing started (see `Union::watch_reads`).
pub struct ReadWatch(u64);

impl ReadWatch {
    fn read_disk(&self) -> bool {
        crate::sys::proc::thread_disk_reads() != self.0
    }
}

impl Union {
    /// Starts watching whether the listing this thread is about to serve reads the disk.
    pub fn watch_reads(&self) -> ReadWatch {
        ReadWatch(crate::sys::proc::thread_disk_reads())
    }

    /// A READDIRPLUS batch from `offset` of the directory `scope` was gathered for was
    /// served, with subdirectories `subdirs` (node ids, in listing order). When the walk is
    /// cold there (serving it read the disk, or the directory lies in a cold walk), they are
    /// queued for read-ahead.
    pub fn listed_batch(&self, scope: &DirScope, offset: u64, subdirs: &[u64], watch: ReadWatch) {
        let dir = scope.dir.ino;
        if !self.walk_is_cold(&scope.dir, offset, watch) || subdirs.is_empty() {
            return;
        }
        let jobs = subdirs
            .iter()
            .filter_map(|&id| self.node(id).ok())
            .map(|n| Job::Node(Arc::downgrade(&n)));
        self.queue_read_ahead(dir, jobs.collect());
    }

    /// A plain READDIR batch `given` of directory `dir` was served: in a cold walk its
    /// subdirectories are queued by name (the kernel asked for no attributes, so there are no
    /// nodes for them).
    pub fn listed_names_batch(&self, dir: u64, given: &[DirEntryOut]) {
        let Ok(node) = self.node(dir) else { return };
        if !node.cold_walk.load(Ordering::Acquire) {
            return;
        }
        let parent = Arc::downgrade(&node);
        let jobs: Vec<Job> = given
            .iter()
            .filter(|e| e.kind == libc::S_IFDIR && e.name != b"." && e.name != b"..")
            .map(|e| Job::Named(parent.clone(), e.name.clone()))
            .collect();
        if !jobs.is_empty() {
            self.queue_read_ahead(dir, jobs);
        }
    }

    /// Whether the walk is cold at `dir` for a listing batch from `offset`, recording it on
    /// the node for the batches after it.
    fn walk_is_cold(&self, dir: &Node, offset: u64, watch: ReadWatch) -> bool {
        let parent = (offset == 0)
            .then(|| dir.state.read().parent.clone())
            .flatten();
        if let Some(p) = &parent {
            // The walk entered a subdirectory of `p`: the rest of them come next.
            self.release_deferred(p.ino);
        }
        let cold = watch.read_disk()
            || match &parent {
                Some(p) => p.cold_walk.load(Ordering::Acquire),
                None => offset != 0 && dir.cold_walk.load(Ordering::Acquire),
            };
        if offset == 0 || cold {
            dir.cold_walk.store(cold, Ordering::Release);
        }
        cold
    }

    /// Queues the first `EAGER` subdirectories of `dir`'s listing and defers the rest.
    fn queue_read_ahead(&self, dir: u64, mut jobs: Vec<Job>) {
        let mut q = self.read_ahead.queue.lock();
        if q.workers == 0 || q.stopping {
            return;
        }
        let i = match q.deferred.iter().position(|(d, _, _)| *d == dir) {
            Some(i) => i,
            None => {
                if q.deferred.len() == MAX_DEFERRED {
                    q.deferred.pop_front();
                }
                q.deferred.push_back((dir, 0, Vec::new()));
                q.deferred.len() - 1
            }
        };
        let (_, eager, later) = &mut q.deferred[i];
        let now = jobs.len().min(EAGER - *eager);
        *eager += now;
        later.extend(jobs.drain(now..));
        if jobs.is_empty() {
            return;
        }
        self.enqueue(q, dir, jobs);
    }

    /// Queues the deferred subdirectories of `dir`'s listing, if any wait.
    fn release_deferred(&self, dir: u64) {
        let mut q = self.read_ahead.queue.lock();
        let Some(i) = q.deferred.iter().position(|(d, _, _)| *d == dir) else {
            return;
        };
        let (_, _, later) = q.deferred.remove(i).expect("found above");
        if !later.is_empty() {
            self.enqueue(q, dir, later);
        }
    }

    fn enqueue(&self, mut q: parking_lot::MutexGuard<'_, Queue>, dir: u64, jobs: Vec<Job>) {
        // Depth first, as walkers go: a new directory's subdirectories before everything
        // queued earlier, a later batch of the same listing right behind its first ones.
        let at = if q.last_parent == dir { q.last_left } else { 0 };
        let at = at.min(q.jobs.len());
        let added = jobs.len();
        for (i, j) in jobs.into_iter().enumerate() {
            q.jobs.insert(at + i, j);
        }
        q.jobs.truncate(MAX_WAITING);
        q.last_parent = dir;
        q.last_left = (at + added).min(q.jobs.len());
        drop(q);
        self.read_ahead.wake.notify_all();
    }

    /// Runs one read-ahead worker until `stop_read_ahead`.
    pub fn serve_read_ahead(&self) {
        self.read_ahead.queue.lock().workers += 1;
        loop {
            let job = {
                let mut q = self.read_ahead.queue.lock();
                loop {
                    if q.stopping {
                        return;
                    }
                    if let Some(j) = q.jobs.pop_front() {
                        q.last_left = q.last_left.saturating_sub(1);
                        break j;
                    }
                    self.read_ahead.wake.wait(&mut q);
                }
            };
            let done = match job {
                Job::Node(dir) => dir.upgrade().is_some_and(|d| self.read_dir_ahead(&d)),
                Job::Named(parent, name) => parent
                    .upgrade()
                    .is_some_and(|p| self.read_named_dir_ahead(&p, &name)),
            };
            if done {
                self.stats.dirs_read_ahead.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends every read-ahead worker (after the one it is on has finished its directory).
    pub fn stop_read_ahead(&self) {
        let mut q = self.read_ahead.queue.lock();
        q.stopping = true;
        q.jobs.clear();
        q.deferred.clear();
        drop(q);
        self.read_ahead.wake.notify_all();
    }

    /// Lists `dir` and resolves each of its entries as a READDIRPLUS of it would, unless a
    /// request listed it first.
    fn read_dir_ahead(&self, dir: &Arc<Node>) -> bool {
        if dir.listed.load(Ordering::Acquire) {
            return false;
        }
        let Ok(entries) = self.listing_of(dir, false) else {
            return false;
        };
        let scope = self.dir_scope(dir);
        for e in entries.iter().filter(|e| e.name != b"." && e.name != b"..") {
            // What it finds is dropped: the point is what reading it leaves in the caches.
            let _ = self.resolve_scoped(&scope, &e.name);
        }
        true
    }

    /// Finds subdirectory `name` of `parent`, lists its copies and resolves each entry.
    fn read_named_dir_ahead(&self, parent: &Arc<Node>, name: &[u8]) -> bool {
        let scope = self.dir_scope(parent);
        let Ok(Some(found)) = self.resolve_scoped(&scope, name) else {
            return false;
        };
        if !found.is_dir() {
            return false;
        }
        let layers = found.dir_layers(&path::join(&parent.path(), name));
        let Ok(entries) = self.list_merged(&layers, None) else {
            return false;
        };
        for e in entries {
            let _ = self.resolve_in(&layers, &e.name);
        }
        true
    }
}
