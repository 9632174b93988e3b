//! FUSE passthrough (kernel >= 6.9, CAP_SYS_ADMIN): reads, writes and mmap of a regular file go
//! straight from the kernel to the layer file, never through the daemon.
//!
//! Ownership, as in fuser's example: each open handle holds a strong reference on its
//! `BackingId`; the per-inode table holds only a weak one, so the kernel's backing file goes
//! away with the last handle. The kernel requires every passthrough open of one inode to use
//! the same backing file, and refuses cached opens while an inode is in passthrough mode, so an
//! open that cannot share the inode's backing (a writer while readers use the lower file) is
//! served without the page cache (direct I/O) through the daemon instead.

use dashmap::DashMap;
use fuser::BackingId;
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

struct Slot {
    backing: Weak<BackingId>,
    kind: BackingKind,
}

/// How an open is to be answered.
pub enum Decision {
    /// Use this backing (already registered or freshly made).
    Passthrough(Arc<BackingId>),
    /// The inode's backing cannot serve this open: direct I/O through the daemon.
    DirectIo,
    /// Passthrough is off: ordinary cached I/O through the daemon.
    Cached,
}

pub struct Passthrough {
    enabled: Arc<AtomicBool>,
    by_inode: DashMap<u64, Slot>,
    by_handle: DashMap<u64, Arc<BackingId>>,
    /// Serialises backing creation so two opens of one inode never register two backings.
    create: Mutex<()>,
}

impl Passthrough {
    pub fn new(enabled: bool) -> Passthrough {
        Passthrough {
            enabled: Arc::new(AtomicBool::new(enabled)),
            by_inode: DashMap::new(),
            by_handle: DashMap::new(),
            create: Mutex::new(()),
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

    /// Decides how to answer an open of `ino`; `make` registers a new backing file of `kind`.
    pub fn decide(
        &self,
        ino: u64,
        fh: u64,
        kind: BackingKind,
        wants_write: bool,
        make: impl FnOnce() -> std::io::Result<BackingId>,
    ) -> Decision {
        let _g = self.create.lock();
        // An inode already in passthrough mode must stay so (the kernel refuses cached opens
        // of it), even after passthrough was turned off for new inodes.
        if let Some(slot) = self.by_inode.get(&ino)
            && let Some(b) = slot.backing.upgrade()
        {
            let fits = slot.kind.layer == kind.layer && (slot.kind.writable || !wants_write);
            if !fits {
                return Decision::DirectIo;
            }
            self.by_handle.insert(fh, b.clone());
            return Decision::Passthrough(b);
        }
        if !self.enabled() {
            return Decision::Cached;
        }
        match make() {
            Ok(b) => {
                let b = Arc::new(b);
                self.by_inode.insert(
                    ino,
                    Slot {
                        backing: Arc::downgrade(&b),
                        kind,
                    },
                );
                self.by_handle.insert(fh, b.clone());
                Decision::Passthrough(b)
            }
            // The kernel refused this backing file: serve this open through the daemon with
            // direct I/O, which is compatible with whatever mode the inode is in (a cached
            // open of an inode in passthrough mode fails the user's open with EIO).
            Err(e) => {
                log::info!("passthrough refused for inode {ino} ({e}); direct I/O instead");
                Decision::DirectIo
            }
        }
    }

    /// A handle closed: drop its reference (and the inode's slot when it was the last).
    pub fn release(&self, ino: u64, fh: u64) {
        if self.by_handle.remove(&fh).is_some() {
            self.by_inode
                .remove_if(&ino, |_, slot| slot.backing.strong_count() == 0);
        }
    }
}
