//! FUSE passthrough (kernel >= 6.9, CAP_SYS_ADMIN): reads, writes and mmap of a regular file go
//! straight from the kernel to the layer file, never through the daemon.
//!
//! The kernel puts each inode in one I/O mode at a time and fails the user's open with EIO
//! when an open reply does not fit it (fs/fuse/iomode.c, `fuse_file_io_open`): while an inode
//! has a backing file every open must be a passthrough open of that same backing (direct I/O
//! included), and while it has cached opens a passthrough open is refused. So this table
//! keeps, per inode, what the daemon told the kernel about the files still open: a backing
//! file, or a count of cached (and direct I/O) opens. The kernel drops a file's mode before it
//! sends RELEASE, so the daemon's view always covers the kernel's, and answering from it is
//! always accepted.
//!
//! Which files get a backing: upper files (opened read-write, so one backing serves every
//! later open) and lower files. A lower file can be copied up while it is open; a writer (or
//! any later open) then needs the upper file, and no answer the kernel accepts exists while
//! readers hold the lower file as backing (the only mode it allows is passthrough to that
//! read-only lower file). Such an open is answered ESTALE (`Decision::Stale`) after the object
//! moved to a new node id: the kernel then walks the path again with LOOKUP_REVAL, gets the
//! new id, and opens a new inode, which takes the upper file as backing. The readers keep the
//! old inode and its lower backing. An upper open of an inode with cached opens is cached.
//!
//! Ownership, as in fuser's example: each open handle holds a strong reference on its
//! backing id (`B`: whatever the transport registered, closing it on drop); the per-inode table holds only a weak one, so the kernel's backing file goes
//! away with the last handle.

use crate::union::layer::UPPER;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// What a backing file can serve.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BackingKind {
    /// Layer the backing file lives in (the upper is 0).
    pub layer: usize,
    /// Opened read-write, so it can serve writers too.
    pub writable: bool,
}

/// What the kernel's inode was told, as far as the open files go.
enum Mode<B> {
    Passthrough {
        backing: Weak<B>,
        kind: BackingKind,
    },
    /// Cached or direct I/O opens still open (a shared mmap of a direct I/O file puts the
    /// inode in cached mode, so both count).
    Cached {
        opens: u64,
    },
}

/// What one open handle was answered.
enum HandleMode<B> {
    Passthrough(Arc<B>),
    Cached,
}

/// How an open is to be answered.
pub enum Decision<B> {
    /// Use this backing (already registered or freshly made).
    Passthrough(Arc<B>),
    /// No backing could be made: direct I/O through the daemon.
    DirectIo,
    /// Ordinary cached I/O through the daemon (page cache kept across opens).
    Cached,
    /// The inode's lower backing cannot serve this open (it needs the upper copy) and the
    /// kernel accepts no other answer: the object must move to a new inode (ESTALE).
    Stale,
    /// The inode's backing file cannot serve this open and the kernel accepts no other
    /// answer (should not happen: upper backings serve every open).
    Busy,
}

/// Where a decision stands under the lock.
enum Settled<B> {
    Done(Decision<B>),
    /// Only a new backing file can serve this open: register it, then decide again.
    NeedsBacking,
}

/// The outcome of registering a backing file outside the lock.
enum Made<B> {
    Tried(std::io::Result<B>),
    /// Passthrough is off or this open must not get a backing.
    NotWanted,
}

/// A backing file this open could use.
pub struct Candidate<F> {
    pub kind: BackingKind,
    /// Registers the backing file with the kernel; `None` when this open must not get one.
    pub make: Option<F>,
}

pub struct Passthrough<B> {
    enabled: Arc<AtomicBool>,
    by_inode: DashMap<u64, Mode<B>>,
    by_handle: DashMap<u64, (u64, HandleMode<B>)>,
    /// Passthrough handles open for writing (handle -> inode), and their count per inode.
    writer_handles: DashMap<u64, u64>,
    writers: DashMap<u64, u64>,
    /// Serialises decisions and releases, so an inode's mode changes in one place at a time.
    lock: Mutex<()>,
}

impl<B> Passthrough<B> {
    pub fn new(enabled: bool) -> Passthrough<B> {
        Passthrough {
            enabled: Arc::new(AtomicBool::new(enabled)),
            by_inode: DashMap::new(),
            by_handle: DashMap::new(),
            writer_handles: DashMap::new(),
            writers: DashMap::new(),
            lock: Mutex::new(()),
        }
    }

    /// The on/off switch, shared with the stats reporter.
    pub fn state(&self) -> Arc<AtomicBool> {
        self.enabled.clone()
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    /// Decides how to answer open `fh` of `ino` and records the answer until its release.
    ///
    /// Registering a backing file (`candidate.make`: a reopen and an ioctl) happens outside
    /// the table's lock, so opens and releases of other files on the other queues do not wait
    /// for it; the decision is then taken again under the lock with the registered backing
    /// in hand, and it is dropped (unregistered) when another open installed one meanwhile.
    pub fn decide(
        &self,
        ino: u64,
        fh: u64,
        access: i32,
        candidate: Candidate<impl FnOnce() -> std::io::Result<B>>,
    ) -> Decision<B> {
        let kind = candidate.kind;
        let make = match self.settle(ino, fh, access, kind, None) {
            Settled::Done(d) => return d,
            Settled::NeedsBacking if self.enabled() => candidate.make,
            Settled::NeedsBacking => None,
        };
        let made = match make {
            Some(make) => Made::Tried(make()),
            None => Made::NotWanted,
        };
        match self.settle(ino, fh, access, kind, Some(made)) {
            Settled::Done(d) => d,
            // A decision with a made (or unwanted) backing in hand always settles.
            Settled::NeedsBacking => unreachable!("passthrough decision without an outcome"),
        }
    }

    /// The decision under the lock. Without `made`, an open that would register a new
    /// backing returns `NeedsBacking`; with it, that backing (or its failure) is used, unless
    /// the inode's mode changed meanwhile.
    fn settle(
        &self,
        ino: u64,
        fh: u64,
        access: i32,
        kind: BackingKind,
        made: Option<Made<B>>,
    ) -> Settled<B> {
        let wants_write = access != libc::O_RDONLY;
        // Only a read-write open can map the file shared and writable (mmap(2): EACCES
        // otherwise), so only those make its attributes uncachable: `cp` and `tar` write
        // through O_WRONLY opens and keep the attribute cache.
        let may_map_writable = access == libc::O_RDWR;
        let _g = self.lock.lock();
        // An inode already in passthrough mode must stay so (the kernel refuses every other
        // open of it), even after passthrough was turned off for new inodes.
        let live = self.by_inode.get(&ino).and_then(|m| match &*m {
            Mode::Passthrough { backing, kind } => backing.upgrade().map(|b| (b, *kind)),
            Mode::Cached { .. } => None,
        });
        if let Some((b, live_kind)) = live {
            // The backing serves this open if it holds the inode's content as this open sees
            // it: the same layer, or the upper copy, which is the newest (an open that
            // reached a lower copy while the upper one is the backing: a hard link's other
            // name, or a daemon view that still holds a handle the kernel already released),
            // and it must allow the access asked for.
            let serves = (live_kind.layer == kind.layer || live_kind.layer == UPPER)
                && (live_kind.writable || !wants_write);
            if !serves {
                if live_kind.layer != UPPER {
                    return Settled::Done(Decision::Stale);
                }
                log::warn!(
                    "open of inode {ino} cannot share its backing file ({live_kind:?}, wants \
                     {kind:?}, write {wants_write})"
                );
                return Settled::Done(Decision::Busy);
            }
            self.by_handle
                .insert(fh, (ino, HandleMode::Passthrough(b.clone())));
            self.note_writer(ino, fh, may_map_writable);
            return Settled::Done(Decision::Passthrough(b));
        }
        // Cached opens are still there: a passthrough open would be refused.
        if self.cached_opens(ino) > 0 {
            return Settled::Done(self.cached(ino, fh));
        }
        match made {
            None => Settled::NeedsBacking,
            Some(Made::NotWanted) => Settled::Done(self.cached(ino, fh)),
            Some(Made::Tried(Ok(b))) => {
                let b = Arc::new(b);
                self.by_inode.insert(
                    ino,
                    Mode::Passthrough {
                        backing: Arc::downgrade(&b),
                        kind,
                    },
                );
                self.by_handle
                    .insert(fh, (ino, HandleMode::Passthrough(b.clone())));
                self.note_writer(ino, fh, may_map_writable);
                Settled::Done(Decision::Passthrough(b))
            }
            // The kernel refused this backing file: serve this open through the daemon with
            // direct I/O (the inode has no backing, or we would not be here).
            Some(Made::Tried(Err(e))) => {
                log::info!("passthrough refused for inode {ino} ({e}); direct I/O instead");
                self.count_cached(ino, fh);
                Settled::Done(Decision::DirectIo)
            }
        }
    }

    /// Whether inode `ino` has a passthrough open read-write (the only kind a shared writable
    /// mapping can be made from): then writes through such a mapping reach the layer file
    /// without a word to the kernel's FUSE inode or to the daemon, so its attributes must not
    /// be cached (see `UnionFs::attr_ttl`).
    pub fn has_writer(&self, ino: u64) -> bool {
        self.writers.contains_key(&ino)
    }

    /// Counts passthrough handle `fh` of `ino` as one that may map it writable, until its
    /// release.
    fn note_writer(&self, ino: u64, fh: u64, wants_write: bool) {
        if wants_write {
            self.writer_handles.insert(fh, ino);
            *self.writers.entry(ino).or_insert(0) += 1;
        }
    }

    fn cached_opens(&self, ino: u64) -> u64 {
        match self.by_inode.get(&ino).as_deref() {
            Some(Mode::Cached { opens }) => *opens,
            _ => 0,
        }
    }

    fn cached(&self, ino: u64, fh: u64) -> Decision<B> {
        self.count_cached(ino, fh);
        Decision::Cached
    }

    fn count_cached(&self, ino: u64, fh: u64) {
        let mut m = self
            .by_inode
            .entry(ino)
            .or_insert(Mode::Cached { opens: 0 });
        match &mut *m {
            Mode::Cached { opens } => *opens += 1,
            // A passthrough entry whose backing is gone: the inode has no mode any more.
            other => *other = Mode::Cached { opens: 1 },
        }
        self.by_handle.insert(fh, (ino, HandleMode::Cached));
    }

    /// A handle closed: it leaves the tables (and the inode's entry goes when it was the
    /// last); returns the backing it held, whose last reference unregisters it (an ioctl)
    /// when dropped, outside the lock.
    pub fn release(&self, fh: u64) -> Option<Arc<B>> {
        let _g = self.lock.lock();
        if let Some((_, ino)) = self.writer_handles.remove(&fh) {
            self.writers.remove_if_mut(&ino, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
        let (ino, held) = self.by_handle.remove(&fh)?.1;
        match held {
            HandleMode::Passthrough(b) => {
                // Other references are only taken under the lock: if this is the last one,
                // the inode's entry (which names this backing) goes now, and the caller gets
                // it to drop (which unregisters it). Another handle's reference keeps it
                // registered: ours is dropped here, so that a reference the caller puts off
                // dropping never counts as an open handle of the inode.
                if Arc::strong_count(&b) > 1 {
                    return None;
                }
                self.by_inode.remove_if(&ino, |_, m| match m {
                    Mode::Passthrough { backing, .. } => {
                        std::ptr::eq(backing.as_ptr(), Arc::as_ptr(&b))
                    }
                    Mode::Cached { .. } => false,
                });
                Some(b)
            }
            HandleMode::Cached => {
                self.by_inode.remove_if_mut(&ino, |_, m| match m {
                    Mode::Cached { opens } => {
                        *opens = opens.saturating_sub(1);
                        *opens == 0
                    }
                    Mode::Passthrough { .. } => false,
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands for a registered backing file.
    struct Registered;

    type Make = fn() -> std::io::Result<Registered>;

    fn candidate(layer: usize, writable: bool) -> Candidate<Make> {
        Candidate {
            kind: BackingKind { layer, writable },
            make: Some(|| Ok(Registered)),
        }
    }

    /// Two opens of a lower file share its backing and are released in the other order,
    /// the caller keeping what each release hands over (as the closing thread does): the
    /// inode has no open handle left, so an open of its upper copy (copied up meanwhile)
    /// gets a backing of its own, not ESTALE. Random differential seed 41035.
    #[test]
    fn a_backing_kept_after_release_is_no_open_handle() {
        let p = Passthrough::<Registered>::new(true);
        for fh in [1, 2] {
            let d = p.decide(7, fh, libc::O_RDONLY, candidate(1, false));
            assert!(matches!(d, Decision::Passthrough(_)));
        }
        let kept = [p.release(2), p.release(1)];
        assert!(kept[0].is_none(), "handle 1 still held the backing");
        assert!(kept[1].is_some(), "the last reference goes to the caller");
        let d = p.decide(7, 3, libc::O_RDWR, candidate(UPPER, true));
        assert!(
            matches!(d, Decision::Passthrough(_)),
            "the upper open must not be stale"
        );
    }
}
