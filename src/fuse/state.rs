//! `UnionFs`: the state of a mount that every FUSE operation and transport shares (the
//! union, request counters, the passthrough table, which transport serves), and the report
//! of `unionrs stats`.

use super::control::Requests;
use super::passthrough::Passthrough;
use crate::union::Union;
use std::sync::Arc;

/// The state every transport shares. `B` is the transport's registered backing file (closed
/// when the last handle holding it goes).
pub struct UnionFs<B> {
    pub union: Union,
    /// Requests by kind, for `unionrs stats`.
    pub requests: Arc<Requests>,
    /// Let the kernel enforce POSIX ACLs (off with `noacl`).
    pub acl: bool,
    pub passthrough: Passthrough<B>,
    /// Which transport carries requests, for `unionrs stats` (`dev` or `uring`).
    pub transport: Arc<parking_lot::Mutex<&'static str>>,
    /// Closes what released handles held, off the request path.
    pub closer: super::closer::Closer,
}

impl<B> UnionFs<B> {
    pub fn new(union: Union, acl: bool, passthrough: bool) -> UnionFs<B> {
        UnionFs {
            union,
            requests: Arc::new(Requests::default()),
            acl,
            passthrough: Passthrough::new(passthrough),
            transport: Arc::new(parking_lot::Mutex::new("dev")),
            closer: Default::default(),
        }
    }

    /// The `key value` report of `unionrs stats` (everything it reads is shared and atomic).
    pub fn reporter(&self) -> Box<dyn Fn() -> String + Send> {
        let (requests, source) = (self.requests.clone(), self.union.stats_source());
        let passthrough = self.passthrough.state();
        let transport = self.transport.clone();
        Box::new(move || {
            use std::sync::atomic::Ordering::Relaxed;
            let mut out = format!(
                "transport {}\npassthrough {}\ncached_inodes {}\nopen_files {}\ncopy_ups {}\nmetacopy_ups {}\ncopy_up_bytes {}\ndisk_fsyncs {}\ninode_moves {}\ndirs_read_ahead {}\nrss_bytes {}\n",
                *transport.lock(),
                if passthrough.load(Relaxed) {
                    "on"
                } else {
                    "off"
                },
                source.cached_nodes(),
                source.open_files(),
                source.stats.copy_ups.load(Relaxed),
                source.stats.metacopy_ups.load(Relaxed),
                source.stats.bytes_copied.load(Relaxed),
                source.stats.disk_fsyncs.load(Relaxed),
                source.stats.inode_moves.load(Relaxed),
                source.stats.dirs_read_ahead.load(Relaxed),
                crate::sys::proc::rss_bytes(),
            );
            requests.report(&mut out);
            out
        })
    }
}
