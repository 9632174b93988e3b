//! The closing half of a RELEASE, done off the request path. A released handle leaves the
//! tables at once (what the kernel and `unionrs stats` see does not wait), but dropping what
//! it held — the layer file's fd and, with passthrough, the backing registration
//! (FUSE_DEV_IOC_BACKING_CLOSE) — is queued and done in batches by one thread. The kernel
//! sends RELEASE without waiting for it, yet over io_uring the request is served on the
//! caller's CPU, where those two system calls per file stood before the caller's next request
//! (`grep -r`: OPEN and RELEASE per file; leaving the closes out took 7% off it).
//!
//! A layer file kept open keeps an unlinked file's blocks allocated: a handle of an unlinked
//! node is closed at once, and everything queued is closed before a request that may unlink
//! (unlink, rename over a name) and before statfs, so space freed by a removal shows as on
//! the kernel.
//!
//! The queue holds descriptors, so it is bounded by a share of the open-file limit: when the
//! closing thread falls behind (it waits for a CPU under load), the request that would go over
//! closes the queue itself, rather than a later open failing with EMFILE (seen under a limit
//! of 200, with 400 directories walked).
//!
//! `UNIONRS_CLOSE_LINGER_MS` sets how long a queued item may wait (tests make it long, to see
//! that a removal does not wait for it).

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Items queued before the thread is woken to close them.
const BATCH: usize = 64;
/// Longest time a queued item waits when fewer than `BATCH` come.
const LINGER: Duration = Duration::from_millis(20);

fn linger() -> Duration {
    std::env::var("UNIONRS_CLOSE_LINGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(LINGER, Duration::from_millis)
}

/// Something whose drop closes a file (a handle, a backing registration).
pub type Held = Box<dyn Send>;

pub struct Closer {
    queue: Mutex<Vec<Held>>,
    /// `queue.len()`, readable without the lock (`flush` with nothing queued takes none).
    queued: AtomicUsize,
    wake: Condvar,
    stop: AtomicBool,
    linger: Duration,
    /// Most items queued at once (see the module's comment).
    cap: usize,
}

impl Default for Closer {
    fn default() -> Closer {
        Closer::with_cap(cap_for(crate::sys::proc::open_file_limit()))
    }
}

/// An eighth of the open-file limit, between 8 and four batches.
fn cap_for(open_file_limit: u64) -> usize {
    usize::try_from(open_file_limit / 8)
        .unwrap_or(usize::MAX)
        .clamp(8, 4 * BATCH)
}

impl Closer {
    fn with_cap(cap: usize) -> Closer {
        Closer {
            queue: Mutex::default(),
            queued: AtomicUsize::new(0),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            linger: linger(),
            cap,
        }
    }

    /// Queues `held` to be dropped by the closing thread; drops the queue now when it is full.
    pub fn defer(&self, held: Held) {
        let mut q = self.queue.lock();
        if q.len() >= self.cap {
            let full = std::mem::replace(&mut *q, vec![held]);
            self.queued.store(1, Ordering::Release);
            self.wake.notify_one();
            drop(q);
            drop(full);
            return;
        }
        q.push(held);
        self.queued.store(q.len(), Ordering::Release);
        // The first item starts the thread's linger; a full batch ends it.
        if q.len() == 1 || q.len() >= BATCH {
            self.wake.notify_one();
        }
    }

    /// Drops everything queued now, in the caller.
    pub fn flush(&self) {
        if self.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        let items = self.take();
        drop(items);
    }

    fn take(&self) -> Vec<Held> {
        let mut q = self.queue.lock();
        self.queued.store(0, Ordering::Release);
        std::mem::take(&mut *q)
    }

    /// The closing thread: drops queued items in batches until `stop`.
    pub fn serve(&self) {
        loop {
            {
                let mut q = self.queue.lock();
                while q.is_empty() && !self.stop.load(Ordering::Acquire) {
                    self.wake.wait(&mut q);
                }
                // Until a batch is full or the first item waited its linger (a `flush` may
                // empty the queue meanwhile).
                let deadline = Instant::now() + self.linger;
                while !q.is_empty() && q.len() < BATCH && !self.stop.load(Ordering::Acquire) {
                    if self.wake.wait_until(&mut q, deadline).timed_out() {
                        break;
                    }
                }
            }
            drop(self.take());
            if self.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Ends `serve` after it closed what is queued.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _q = self.queue.lock();
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn flush_drops_at_once_and_the_thread_drops_the_rest() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let closer = Arc::new(Closer::default());
        closer.defer(Box::new(Counted(dropped.clone())));
        closer.defer(Box::new(Counted(dropped.clone())));
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        closer.flush();
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
        let c = closer.clone();
        let t = std::thread::spawn(move || c.serve());
        for _ in 0..BATCH + 3 {
            closer.defer(Box::new(Counted(dropped.clone())));
        }
        // A full batch goes at once, the rest after the linger.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while dropped.load(Ordering::SeqCst) < BATCH + 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(dropped.load(Ordering::SeqCst), BATCH + 5);
        closer.defer(Box::new(Counted(dropped.clone())));
        closer.stop();
        t.join().unwrap();
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            BATCH + 6,
            "stop closes what is queued"
        );
    }

    #[test]
    fn a_full_queue_is_dropped_by_the_next_defer() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let closer = Closer::with_cap(8);
        for _ in 0..8 {
            closer.defer(Box::new(Counted(dropped.clone())));
        }
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "no thread, below the cap"
        );
        closer.defer(Box::new(Counted(dropped.clone())));
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            8,
            "the ninth closes the eight"
        );
        closer.flush();
        assert_eq!(dropped.load(Ordering::SeqCst), 9);
    }

    #[test]
    fn the_cap_is_a_share_of_the_open_file_limit() {
        assert_eq!(cap_for(200), 25);
        assert_eq!(cap_for(16), 8);
        assert_eq!(cap_for(1 << 20), 4 * BATCH);
    }
}
