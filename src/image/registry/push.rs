//! `push`: every blob of the image the registry lacks, then the manifest.
//!
//! For each blob (layers and config, up to [`super::PARALLEL`] at once): HEAD tells
//! whether the repository has it already; if the store remembers another repository of
//! the same registry holding it (it was pulled from or pushed to there), a cross-repo
//! mount (`POST uploads/?mount=D&from=REPO`) is asked first; otherwise an upload session
//! (`POST uploads/`) gets the blob either in one `PUT ?digest=D` (monolithic) or in
//! `PATCH` chunks closed by an empty `PUT ?digest=D`. The manifest goes last, byte for byte
//! as the store holds it, so its digest (the image's repo digest) is the same on both
//! sides and a pull gives back the same image.
//!
//! Which repositories hold a blob is kept in STORE/distribution/<hex> (lines
//! `REGISTRY REPOSITORY`), outside the OCI layout.

use super::client::{Body, Client, ClientOptions, header, status_error};
use super::reference::RemoteRef;
use super::{PARALLEL, parallel};
use crate::image::digest::Digest;
use crate::image::layout::{Descriptor, MT_OCI_MANIFEST, Manifest};
use crate::image::store::{Image, Store, write_atomic};
use std::fs;
use ureq::http::Method;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub client: ClientOptions,
    /// Upload blobs larger than this in PATCH chunks of this size; None: one PUT each.
    pub chunk_size: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub manifest_digest: Option<Digest>,
    pub uploaded: usize,
    pub bytes: u64,
    /// Blobs the repository had already.
    pub existed: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Existed,
    Mounted,
    Uploaded(u64),
}

/// Pushes `image` as `r`. `log` gets one line per blob.
pub fn push(
    store: &Store,
    image: &Image,
    r: &RemoteRef,
    opts: &PushOptions,
    log: &(dyn Fn(String) + Sync),
) -> Result<PushReport, String> {
    let c = Client::new(r, &opts.client, true)?;
    let manifest_bytes = store.read_blob(&image.manifest_digest)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("manifest {}: {e}", image.manifest_digest))?;
    let mt = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| MT_OCI_MANIFEST.to_string());
    let mut blobs: Vec<Descriptor> = Vec::new();
    for d in manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
    {
        if !blobs.iter().any(|b| b.digest == d.digest) {
            blobs.push(d.clone());
        }
    }
    for b in &blobs {
        let d = Digest::parse(&b.digest)?;
        if !store.has_blob(&d) {
            return Err(format!("blob {d} of the image is missing from the store"));
        }
    }
    let outcomes = parallel(&blobs, PARALLEL, |_, b| {
        let d = Digest::parse(&b.digest)?;
        let o = push_blob(store, &c, &d, b.size, opts)?;
        let short = &d.hex()[..12];
        log(match o {
            Outcome::Existed => format!("{short}: already in {}", r.repository),
            Outcome::Mounted => format!("{short}: mounted from another repository"),
            Outcome::Uploaded(n) => format!("{short}: pushed {n} bytes"),
        });
        Ok(o)
    })
    .map_err(|e| format!("push {r}: {e}"))?;

    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => {
            if *d != image.manifest_digest {
                return Err(format!(
                    "push {r}: the image's manifest is {}, not {d}",
                    image.manifest_digest
                ));
            }
            d.to_string()
        }
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    };
    let mut resp = c.send(
        Method::PUT,
        &c.url(&format!("manifests/{reference}")),
        &[("Content-Type", mt.as_str())],
        &Body::Bytes(&manifest_bytes),
    )?;
    if resp.status() != 201 && resp.status() != 200 {
        return Err(status_error(&mut resp, &format!("push manifest {r}")));
    }
    if let Some(h) = header(&resp, "docker-content-digest")
        && h != image.manifest_digest.as_str()
    {
        return Err(format!(
            "push manifest {r}: the registry stored it as {h}, expected {}",
            image.manifest_digest
        ));
    }
    let digests: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
    record_sources(store, &digests, c.registry(), &c.repo);
    let mut rep = PushReport {
        manifest_digest: Some(image.manifest_digest.clone()),
        ..Default::default()
    };
    for o in outcomes {
        match o {
            Outcome::Existed => rep.existed += 1,
            Outcome::Mounted => rep.mounted += 1,
            Outcome::Uploaded(n) => {
                rep.uploaded += 1;
                rep.bytes += n;
            }
        }
    }
    Ok(rep)
}

fn push_blob(
    store: &Store,
    c: &Client,
    d: &Digest,
    size: u64,
    opts: &PushOptions,
) -> Result<Outcome, String> {
    let what = format!("blob {d}");
    let mut resp = c.send(
        Method::HEAD,
        &c.url(&format!("blobs/{d}")),
        &[],
        &Body::Empty,
    )?;
    match resp.status().as_u16() {
        200 => return Ok(Outcome::Existed),
        404 => {}
        _ => return Err(status_error(&mut resp, &what)),
    }
    // A cross-repo mount from a repository of this registry known to hold the blob.
    let mut location = None;
    for repo in sources(store, d, c.registry()) {
        if repo == c.repo {
            continue;
        }
        c.add_pull_scope(&repo);
        let url = c.url(&format!(
            "blobs/uploads/?mount={d}&from={}",
            super::client::query_escape(&repo)
        ));
        let mut resp = c.send(Method::POST, &url, &[], &Body::Empty)?;
        match resp.status().as_u16() {
            201 => return Ok(Outcome::Mounted),
            202 => {
                // Not mounted, but an upload session was opened: use it.
                location = header(&resp, "location").map(str::to_string);
                break;
            }
            _ => {
                let _ = status_error(&mut resp, &what);
            }
        }
    }
    let mut location = match location {
        Some(l) => l,
        None => {
            let mut resp = c.send(Method::POST, &c.url("blobs/uploads/"), &[], &Body::Empty)?;
            if resp.status() != 202 {
                return Err(status_error(
                    &mut resp,
                    &format!("{what}: starting the upload"),
                ));
            }
            header(&resp, "location")
                .ok_or_else(|| format!("{what}: the upload answer has no Location"))?
                .to_string()
        }
    };
    let path = store.blob_path(d);
    let with_digest = |loc: &str| {
        let loc = c.absolute(loc);
        let sep = if loc.contains('?') { '&' } else { '?' };
        format!("{loc}{sep}digest={d}")
    };
    let final_body = match opts.chunk_size {
        Some(cs) if cs > 0 && size > cs => {
            let mut off = 0;
            while off < size {
                let len = cs.min(size - off);
                let range = format!("{off}-{}", off + len - 1);
                let mut resp = c.send(
                    Method::PATCH,
                    &c.absolute(&location),
                    &[
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", range.as_str()),
                    ],
                    &Body::File {
                        path: &path,
                        offset: off,
                        len,
                    },
                )?;
                if resp.status() != 202 {
                    return Err(status_error(
                        &mut resp,
                        &format!("{what}: uploading bytes {range}"),
                    ));
                }
                location = header(&resp, "location")
                    .ok_or_else(|| format!("{what}: the chunk answer has no Location"))?
                    .to_string();
                off += len;
            }
            Body::Empty
        }
        _ => Body::File {
            path: &path,
            offset: 0,
            len: size,
        },
    };
    let mut resp = c.send(
        Method::PUT,
        &with_digest(&location),
        &[("Content-Type", "application/octet-stream")],
        &final_body,
    )?;
    if resp.status() != 201 {
        return Err(status_error(
            &mut resp,
            &format!("{what}: finishing the upload"),
        ));
    }
    if let Some(h) = header(&resp, "docker-content-digest")
        && h != d.as_str()
    {
        return Err(format!("{what}: the registry stored it as {h}"));
    }
    Ok(Outcome::Uploaded(size))
}

fn sources_path(store: &Store, d: &Digest) -> std::path::PathBuf {
    store.root().join("distribution").join(d.hex())
}

/// Repositories of `registry` known to hold blob `d`.
fn sources(store: &Store, d: &Digest, registry: &str) -> Vec<String> {
    fs::read_to_string(sources_path(store, d))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(reg, _)| *reg == registry)
        .map(|(_, repo)| repo.to_string())
        .collect()
}

/// Remembers that `registry`/`repo` holds the blobs `digests` (best effort: this only
/// saves uploads later).
pub fn record_sources(store: &Store, digests: &[&str], registry: &str, repo: &str) {
    let dir = store.root().join("distribution");
    if fs::create_dir_all(&dir).is_err() {
        return;
    }
    let line = format!("{registry} {repo}");
    for d in digests {
        let Ok(d) = Digest::parse(d) else { continue };
        let p = sources_path(store, &d);
        let mut text = fs::read_to_string(&p).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            continue;
        }
        text.push_str(&line);
        text.push('\n');
        let _ = write_atomic(&p, text.as_bytes());
    }
}
