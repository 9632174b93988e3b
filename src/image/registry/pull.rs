//! `pull`: manifest (or index -> the platform's manifest) -> config -> layers.
//!
//! Each layer is streamed from the socket through a tee that writes the compressed bytes
//! to a staged blob file under STORE/tmp while hashing them (sha256 of the blob, bounded
//! by the manifest's size), and on through decompression and the hostile-safe untar into
//! a temp layer dir: one pass, nothing read back, the socket side on its own thread
//! ([`super::read_ahead`]). Up to [`super::PARALLEL`] layers at once.
//! A layer becomes visible only once the blob digest, its size and the diff ID named by
//! the config all check out: the blob and the dir are then renamed into place. Layers
//! the store has (by diff ID, with the blob) are not downloaded; a blob the store has
//! whose layer dir is missing is unpacked from the store. An interrupted pull leaves only
//! STORE/tmp entries, removed by the next store open; the layers it finished are kept,
//! so a retry goes on from there. The manifest and config are written, and the tag moved,
//! last.

use super::client::{Body, Client, ClientOptions, RespBody, header, read_limited, status_error};
use super::read_ahead::read_ahead;
use super::reference::RemoteRef;
use super::{ACCEPT_MANIFESTS, MAX_MANIFEST, PARALLEL, parallel};
use crate::image::digest::Digest;
use crate::image::layout::{
    Descriptor, Index, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, MT_OCI_MANIFEST, Manifest, config_diff_ids,
};
use crate::image::progress::Bars;
use crate::image::store::{LayerInfo, MAX_JSON, Store, remove_tree, sync_dir};
use crate::image::unpack::{self, Options};
use indicatif::ProgressBar;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use ureq::http::{Method, Response};

pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(format!("--platform {s:?}: expected OS/ARCH[/VARIANT]"));
        }
        Ok(Platform {
            os: parts[0].into(),
            arch: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// This machine's platform, in Go's (hence the registries') names.
    pub fn this_machine() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "arm" => "arm",
            a => a,
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: None,
        }
    }

    fn matches(&self, p: &Value) -> bool {
        let get = |k: &str| p.get(k).and_then(Value::as_str);
        get("os") == Some(&self.os)
            && get("architecture") == Some(&self.arch)
            && self
                .variant
                .as_deref()
                .is_none_or(|v| get("variant") == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub client: ClientOptions,
    pub platform: Option<Platform>,
    pub unpack: Options,
    /// Progress bars on stderr.
    pub progress: bool,
}

#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image ID (config digest).
    pub id: Digest,
    pub manifest_digest: Digest,
    /// The local `NAME:TAG`, None for a digest-only pull.
    pub tag: Option<String>,
    pub layers: usize,
    /// Layers whose blob came over the network.
    pub downloaded: usize,
    /// Compressed bytes received for layers.
    pub bytes: u64,
}

/// A fetched manifest: its bytes, digest, and media type.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

/// GETs manifest `reference` (a tag or a digest); checks the size bound, the JSON, and the
/// digest (against `expect`, else against the registry's Docker-Content-Digest).
pub fn fetch_manifest(
    c: &Client,
    reference: &str,
    expect: Option<&Digest>,
) -> Result<Fetched, String> {
    let what = format!("manifest {}/{}:{reference}", c.registry(), c.repo);
    let mut resp = c.send(
        Method::GET,
        &c.url(&format!("manifests/{reference}")),
        &[("Accept", ACCEPT_MANIFESTS)],
        &Body::Empty,
    )?;
    if resp.status() != 200 {
        return Err(status_error(&mut resp, &what));
    }
    let bytes = read_limited(&mut resp, MAX_MANIFEST)
        .map_err(|m| format!("{what}: {m} (a manifest may have at most {MAX_MANIFEST} bytes)"))?;
    let digest = Digest::of(&bytes);
    let claimed = match expect {
        Some(d) => Some(d.clone()),
        None => header(&resp, "docker-content-digest")
            .filter(|h| h.starts_with("sha256:"))
            .map(Digest::parse)
            .transpose()
            .map_err(|m| format!("{what}: bad Docker-Content-Digest: {m}"))?,
    };
    if let Some(want) = claimed
        && want != digest
    {
        return Err(format!(
            "{what}: digest mismatch: expected {want}, the registry sent content with \
             digest {digest}"
        ));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{what}: malformed manifest: {e}"))?;
    let ct = header(&resp, "content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let media_type = match v.get("mediaType").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None if v.get("manifests").is_some() => MT_OCI_INDEX.to_string(),
        None if v.get("layers").is_some() => MT_OCI_MANIFEST.to_string(),
        None => ct,
    };
    if v.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
        return Err(format!(
            "{what}: Docker schema 1 manifests are not supported"
        ));
    }
    Ok(Fetched {
        bytes,
        digest,
        media_type,
    })
}

/// Picks the manifest for `want` from an index.
pub fn choose_platform<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor, String> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .ok_or_else(|| {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| {
                    let g = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
                    let v = g("variant");
                    if v.is_empty() {
                        format!("{}/{}", g("os"), g("architecture"))
                    } else {
                        format!("{}/{}/{v}", g("os"), g("architecture"))
                    }
                })
                .collect();
            format!(
                "no manifest for platform {want} in the image index (it has: {})",
                if have.is_empty() {
                    "none with a platform".to_string()
                } else {
                    have.join(", ")
                }
            )
        })
}

fn check_layer_type(mt: &str) -> Result<(), String> {
    match mt {
        MT_OCI_LAYER | MT_OCI_LAYER_GZIP | MT_OCI_LAYER_ZSTD | MT_DOCKER_LAYER_GZIP => Ok(()),
        "application/vnd.docker.image.rootfs.diff.tar" => Ok(()),
        m if m.contains("foreign") || m.contains("nondistributable") => Err(format!(
            "layer media type {m}: foreign (non-distributable) layers are not supported"
        )),
        m => Err(format!("layer media type {m:?} is not a layer tar")),
    }
}

/// Pulls `r` into the store and tags it.
pub fn pull(store: &Store, r: &RemoteRef, opts: &PullOptions) -> Result<PullReport, String> {
    let c = Client::new(r, &opts.client, false)?;
    let mut m = fetch_manifest(&c, &r.manifest_ref(), r.digest.as_ref())?;
    if m.media_type == MT_OCI_INDEX || m.media_type == MT_DOCKER_LIST {
        let index: Index = serde_json::from_slice(&m.bytes)
            .map_err(|e| format!("image index of {r}: malformed: {e}"))?;
        let want = opts.platform.clone().unwrap_or_else(Platform::this_machine);
        let d = choose_platform(&index, &want).map_err(|e| format!("{r}: {e}"))?;
        let dd = Digest::parse(&d.digest).map_err(|e| format!("image index of {r}: {e}"))?;
        m = fetch_manifest(&c, dd.as_str(), Some(&dd))?;
        if m.bytes.len() as u64 != d.size {
            return Err(format!(
                "manifest {dd}: the index says {} bytes, the registry sent {}",
                d.size,
                m.bytes.len()
            ));
        }
    }
    if m.media_type != MT_OCI_MANIFEST && m.media_type != MT_DOCKER_MANIFEST {
        return Err(format!(
            "{r}: unsupported manifest media type {:?}",
            m.media_type
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&m.bytes)
        .map_err(|e| format!("manifest {} of {r}: malformed: {e}", m.digest))?;
    for l in &manifest.layers {
        check_layer_type(&l.media_type).map_err(|e| format!("{r}: {e}"))?;
        Digest::parse(&l.digest).map_err(|e| format!("{r}: layer {e}"))?;
    }
    // The config: small, fetched whole and verified.
    let cd = Digest::parse(&manifest.config.digest).map_err(|e| format!("{r}: config {e}"))?;
    if manifest.config.size > MAX_JSON {
        return Err(format!(
            "{r}: config {cd} of {} bytes exceeds the bound of {MAX_JSON} bytes",
            manifest.config.size
        ));
    }
    let config_bytes = if store.has_blob(&cd) {
        store.read_blob(&cd)?
    } else {
        fetch_small_blob(&c, &cd, manifest.config.size)?
    };
    let config: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| format!("config {cd} of {r}: malformed: {e}"))?;
    let diff_ids: Vec<Digest> = config_diff_ids(&config)
        .map_err(|e| format!("config {cd} of {r}: {e}"))?
        .iter()
        .map(|s| Digest::parse(s))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("config {cd} of {r}: {e}"))?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(format!(
            "{r}: the config lists {} diff IDs but the manifest has {} layers",
            diff_ids.len(),
            manifest.layers.len()
        ));
    }

    // The work: each distinct layer the store does not have complete.
    let mut jobs: Vec<(Descriptor, Digest)> = Vec::new();
    for (l, diff) in manifest.layers.iter().zip(&diff_ids) {
        let bd = Digest::parse(&l.digest)?;
        let complete = store.has_layer(diff) && store.has_blob(&bd);
        if !complete && !jobs.iter().any(|(j, _)| j.digest == l.digest) {
            jobs.push((l.clone(), diff.clone()));
        }
    }
    let bars = Bars::new(opts.progress);
    let bar_of: Vec<ProgressBar> = jobs
        .iter()
        .map(|(l, _)| bars.add(&l.digest, l.size))
        .collect();
    let results = parallel(&jobs, PARALLEL, |i, (l, diff)| {
        let r = layer_job(store, &c, l, diff, opts, &bar_of[i]);
        match &r {
            Ok(n) if *n > 0 => bar_of[i].finish_with_message("done"),
            Ok(_) => bar_of[i].finish_with_message("from the store"),
            Err(_) => bar_of[i].abandon_with_message("failed"),
        }
        r
    })
    .map_err(|e| format!("pull {r}: {e}"))?;
    bars.clear();
    let bytes: u64 = results.iter().sum();
    let downloaded = results.iter().filter(|n| **n > 0).count();

    // Config, manifest, then the tag.
    store.put_blob_bytes(&config_bytes)?;
    let md = store.put_blob_bytes(&m.bytes)?;
    debug_assert_eq!(md, m.digest);
    let desc = Descriptor::new(&m.media_type, m.digest.as_str(), m.bytes.len() as u64);
    let mut index = store.read_index()?;
    let tag = r.local();
    match &tag {
        Some(t) => Store::set_tag(&mut index, t, &desc),
        None => {
            if !index.manifests.iter().any(|d| d.digest == desc.digest) {
                index.manifests.push(desc.clone());
            }
        }
    }
    store.write_index(&index)?;
    let mut blobs: Vec<&str> = manifest.layers.iter().map(|l| l.digest.as_str()).collect();
    blobs.push(manifest.config.digest.as_str());
    super::push::record_sources(store, &blobs, c.registry(), &c.repo);
    Ok(PullReport {
        id: cd,
        manifest_digest: m.digest,
        tag: tag.map(|t| t.to_string()),
        layers: manifest.layers.len(),
        downloaded,
        bytes,
    })
}

/// GETs a JSON-sized blob whole and verifies it.
fn fetch_small_blob(c: &Client, d: &Digest, size: u64) -> Result<Vec<u8>, String> {
    let what = format!("blob {d}");
    let mut resp = c.send(
        Method::GET,
        &c.url(&format!("blobs/{d}")),
        &[],
        &Body::Empty,
    )?;
    if resp.status() != 200 {
        return Err(status_error(&mut resp, &what));
    }
    let bytes = read_limited(&mut resp, size)
        .map_err(|m| format!("{what}: {m} (the manifest says {size} bytes)"))?;
    if (bytes.len() as u64) < size {
        return Err(format!(
            "{what}: truncated: received {} of {size} bytes",
            bytes.len()
        ));
    }
    let got = Digest::of(&bytes);
    if got != *d {
        return Err(format!(
            "{what}: digest mismatch: the registry sent content with digest {got}"
        ));
    }
    Ok(bytes)
}

/// Copies what it reads into `out`, hashing and counting it; refuses to read past `limit`.
struct Tee<'a, R> {
    inner: R,
    out: BufWriter<File>,
    hasher: Sha256,
    n: u64,
    limit: u64,
    bar: &'a ProgressBar,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.inner.read(buf)?;
        self.n += got as u64;
        if self.n > self.limit {
            return Err(io::Error::other(format!(
                "the registry sent more than the {} bytes the manifest says",
                self.limit
            )));
        }
        self.out.write_all(&buf[..got])?;
        self.hasher.update(&buf[..got]);
        self.bar.inc(got as u64);
        Ok(got)
    }
}

/// Brings one layer into the store; returns the bytes downloaded (0 when its blob was
/// already in the store).
fn layer_job(
    store: &Store,
    c: &Client,
    l: &Descriptor,
    want_diff: &Digest,
    opts: &PullOptions,
    bar: &ProgressBar,
) -> Result<u64, String> {
    let bd = Digest::parse(&l.digest)?;
    let what = format!("layer {bd}");
    let need_unpack = !store.has_layer(want_diff);
    let dir = store.tmp_path("layer");
    if store.has_blob(&bd) {
        // The blob is here (verified when it came in); only the dir is missing.
        let res = (|| {
            fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let f = File::open(store.blob_path(&bd)).map_err(|e| format!("{what}: {e}"))?;
            let u = unpack::unpack_layer(io::BufReader::new(f), &dir, &opts.unpack)
                .map_err(|m| format!("{what}: {m}"))?;
            check_diff(&what, want_diff, &u.diff_id)?;
            commit_layer(store, &dir, want_diff, u.size, u.entries)
        })();
        if res.is_err() {
            let _ = remove_tree(&dir);
        }
        return res.map(|_| 0);
    }
    let mut resp = c.send(
        Method::GET,
        &c.url(&format!("blobs/{bd}")),
        &[],
        &Body::Empty,
    )?;
    if resp.status() != 200 {
        return Err(status_error(&mut resp, &what));
    }
    let blob_tmp: PathBuf = store.tmp_path("blob");
    let res = receive(
        store,
        &mut resp,
        l,
        &bd,
        want_diff,
        need_unpack,
        &dir,
        &blob_tmp,
        opts,
        bar,
    );
    if res.is_err() {
        let _ = fs::remove_file(&blob_tmp);
        let _ = remove_tree(&dir);
    }
    res
}

#[allow(clippy::too_many_arguments)]
fn receive(
    store: &Store,
    resp: &mut Response<RespBody>,
    l: &Descriptor,
    bd: &Digest,
    want_diff: &Digest,
    need_unpack: bool,
    dir: &std::path::Path,
    blob_tmp: &std::path::Path,
    opts: &PullOptions,
    bar: &ProgressBar,
) -> Result<u64, String> {
    let what = format!("layer {bd}");
    if let Some(n) = resp.body().content_length()
        && n > l.size
    {
        return Err(format!(
            "{what}: the registry announces {n} bytes, the manifest says {}",
            l.size
        ));
    }
    let file = File::create_new(blob_tmp).map_err(|e| format!("{}: {e}", blob_tmp.display()))?;
    let tee = Tee {
        inner: resp.body_mut().as_reader(),
        out: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        n: 0,
        limit: l.size,
        bar,
    };
    if need_unpack {
        fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // The socket side (blob file, blob sha256) runs on its own thread, and reads the blob
    // to its end even when unpacking stops early: whatever the decompressor left unread
    // still belongs to the blob.
    let (unpacked, tee, drained) = read_ahead(tee, |r| {
        if need_unpack {
            unpack::unpack_layer(r, dir, &opts.unpack).map(|u| (u.diff_id, u.size, u.entries))
        } else {
            unpack::diff_id_of(r, &opts.unpack.limits).map(|(d, s)| (d, s, 0))
        }
    });
    let n = tee.n;
    let digest = Digest::from_hasher(tee.hasher);
    if n < l.size {
        let why = match (&unpacked, &drained) {
            (Err(m), _) => format!(" ({m})"),
            (_, Err(e)) => format!(" ({e})"),
            _ => String::new(),
        };
        return Err(format!(
            "{what}: truncated: received {n} of {} bytes{why}",
            l.size
        ));
    }
    drained.map_err(|e| format!("{what}: {e}"))?;
    let (diff, size, entries) = unpacked.map_err(|m| {
        if digest != *bd {
            format!("{what}: digest mismatch: the registry sent content with digest {digest}")
        } else {
            format!("{what}: {m}")
        }
    })?;
    if digest != *bd {
        return Err(format!(
            "{what}: digest mismatch: the registry sent content with digest {digest}"
        ));
    }
    check_diff(&what, want_diff, &diff)?;
    let file = tee
        .out
        .into_inner()
        .map_err(|e| format!("{}: {}", blob_tmp.display(), e.error()))?;
    file.sync_all()
        .map_err(|e| format!("{}: {e}", blob_tmp.display()))?;
    store.commit_blob(&crate::image::store::Staged {
        path: blob_tmp.to_path_buf(),
        digest: bd.clone(),
        size: n,
    })?;
    sync_dir(&store.root().join("blobs/sha256"))?;
    if need_unpack {
        commit_layer(store, dir, want_diff, size, entries)?;
    }
    Ok(n)
}

fn check_diff(what: &str, want: &Digest, got: &Digest) -> Result<(), String> {
    if want != got {
        return Err(format!(
            "{what}: diff ID mismatch: the config says {want}, the content is {got}"
        ));
    }
    Ok(())
}

fn commit_layer(
    store: &Store,
    dir: &std::path::Path,
    diff: &Digest,
    size: u64,
    entries: u64,
) -> Result<(), String> {
    store.publish_layer(
        dir,
        &LayerInfo {
            diff_id: diff.to_string(),
            size,
            entries,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//x").is_err());
        let idx: Index = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"m","digest":"sha256:1","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}},
            {"mediaType":"m","digest":"sha256:2","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            choose_platform(&idx, &Platform::parse("linux/amd64").unwrap())
                .unwrap()
                .digest,
            "sha256:2"
        );
        assert_eq!(choose_platform(&idx, &p).unwrap().digest, "sha256:1");
        let e = choose_platform(&idx, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert!(e.contains("linux/arm/v7, linux/amd64"), "{e}");
    }
}
