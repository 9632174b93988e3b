//! Read-ahead of a cold tree walk. Listing a directory through the daemon is a chain of
//! waits: the kernel asks for a listing, the daemon reads the directory from disk, stats its
//! entries (more disk reads), answers, and only then does the walker ask for the next
//! directory. Kernel overlayfs pays the same disk reads but not the daemon's CPU between
//! them, and on a cold `find` that CPU doubled the time.
//!
//! So when listing a directory had to read the disk, its subdirectories are listed and their
//! entries looked up ahead, on worker threads, several at once: the disk reads overlap each
//! other and the daemon's answers, and the walker's own requests then find everything
//! cached. A directory read ahead that a request then lists reads its own subdirectories
//! ahead in turn, so the read-ahead keeps one level in front of the walk as far as the walk
//! goes, and no further. A warm walk never reads the disk and never starts it.
//!
//! Read-ahead only lists and resolves: it remembers no node, gives the kernel nothing and
//! changes nothing on disk; what it leaves is the page cache, the daemon's directory handle
//! caches and listing snapshots a request would have made the same way.

use super::node::Node;
use super::{Union, lookup::DirScope};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// Directories waiting to be read ahead, at most this many: a cold listing of one directory
/// with thousands of subdirectories must not queue a read of each (the oldest are dropped).
const MAX_WAITING: usize = 256;

/// The directories waiting, next first, and the workers taking them.
#[derive(Default)]
pub(crate) struct ReadAhead {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Weak<Node>>,
    /// The directory whose subdirectories were queued last, and how many of them are still
    /// at the front: the next batch of the same listing goes behind them, not before.
    last_parent: u64,
    last_left: usize,
    workers: usize,
    stopping: bool,
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

    /// A batch of directory `dir`'s listing was served, its subdirectories `subdirs` (node
    /// ids, in listing order) among it. Queues them for read-ahead when serving it read the
    /// disk or `dir` itself had been read ahead: the walk is cold here.
    pub fn listed_batch(&self, dir: u64, subdirs: &[u64], watch: ReadWatch) {
        let Ok(node) = self.node(dir) else { return };
        let ahead = node.read_ahead.swap(false, Ordering::AcqRel);
        if subdirs.is_empty() || !(ahead || watch.read_disk()) {
            return;
        }
        let mut q = self.read_ahead.queue.lock();
        if q.workers == 0 || q.stopping {
            return;
        }
        // Depth first, as walkers go: a new directory's subdirectories before everything
        // queued earlier, a later batch of the same listing right behind its first ones.
        let at = if q.last_parent == dir { q.last_left } else { 0 };
        let at = at.min(q.jobs.len());
        let nodes: Vec<_> = subdirs
            .iter()
            .filter_map(|&id| self.node(id).ok())
            .filter(|n| !n.read_ahead.swap(true, Ordering::AcqRel))
            .map(|n| Arc::downgrade(&n))
            .collect();
        let added = nodes.len();
        for (i, n) in nodes.into_iter().enumerate() {
            q.jobs.insert(at + i, n);
        }
        q.last_parent = dir;
        q.last_left = at + added;
        q.jobs.truncate(MAX_WAITING);
        q.last_left = q.last_left.min(q.jobs.len());
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
            if let Some(node) = job.upgrade() {
                self.read_dir_ahead(&node);
            }
        }
    }

    /// Ends every read-ahead worker (after the one it is on has finished its directory).
    pub fn stop_read_ahead(&self) {
        let mut q = self.read_ahead.queue.lock();
        q.stopping = true;
        q.jobs.clear();
        drop(q);
        self.read_ahead.wake.notify_all();
    }

    /// Lists `dir` and resolves each of its entries as a READDIRPLUS of it would, unless a
    /// request got there first.
    fn read_dir_ahead(&self, dir: &Arc<Node>) {
        // A request listed it since it was queued (and took the mark): nothing to do ahead.
        if dir.listed.load(Ordering::Acquire) || !dir.read_ahead.load(Ordering::Acquire) {
            return;
        }
        let Ok(entries) = self.listing_of(dir, false) else {
            return;
        };
        let scope: DirScope = self.dir_scope(dir);
        for e in entries.iter().filter(|e| e.name != b"." && e.name != b"..") {
            // What it finds is dropped: the point is what reading it leaves in the caches.
            let _ = self.resolve_scoped(&scope, &e.name);
        }
        self.stats.dirs_read_ahead.fetch_add(1, Ordering::Relaxed);
    }
}
