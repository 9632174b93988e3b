//! The OCI distribution protocol: `pull` and `push` against any distribution-spec registry.
//!
//! - [`reference`]: remote references as docker parses them (`ubuntu` =
//!   docker.io/library/ubuntu:latest, `host:port/name:tag`, `name@sha256:...`).
//! - [`auth`]: credentials (`--creds`, ~/.docker/config.json) and `WWW-Authenticate`
//!   challenges (Bearer token, Basic).
//! - [`client`]: a blocking HTTP client (ureq) bound to one registry and repository, which
//!   answers auth challenges and retries.
//! - [`pull`]: manifest (list) -> platform -> config -> layers streamed from the socket
//!   through sha256 and decompression into the layer directory, several at a time.
//! - [`read_ahead`]: the blob's socket side on its own thread, ahead of the unpacking.
//! - [`push`]: blobs the registry lacks (HEAD, cross-repo mount, monolithic or chunked
//!   upload), then the manifest.

pub mod auth;
pub mod client;
pub mod pull;
pub mod push;
pub mod read_ahead;
pub mod reference;

/// Largest manifest or index accepted from a registry.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// How many layers are transferred at once.
pub const PARALLEL: usize = 3;

/// Every manifest and index media type unionrs reads, for the Accept header (a registry
/// answers 404 for an OCI manifest unless its type is listed).
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Runs `work` on every item with at most `n` threads; returns the results in item order.
/// Stops handing out items after the first error.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    n: usize,
    work: impl Fn(usize, &T) -> Result<R, String> + Sync,
) -> Result<Vec<R>, String> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, String>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..n.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = work(i, item);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    // The first error in item order, so the message does not depend on timing more than
    // it must.
    let mut out = Vec::with_capacity(items.len());
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if out.len() != items.len() {
        return Err("transfer stopped after an error".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parallel_keeps_order_and_stops_on_error() {
        let v: Vec<u32> = (0..20).collect();
        let r = super::parallel(&v, 3, |_, x| Ok(x * 2)).unwrap();
        assert_eq!(r, (0..20).map(|x| x * 2).collect::<Vec<_>>());
        let e = super::parallel(&v, 3, |_, x| {
            if *x == 5 {
                Err("five".to_string())
            } else {
                Ok(*x)
            }
        });
        assert_eq!(e.unwrap_err(), "five");
    }
}
