//! The image store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) at
//! its root, so skopeo and umoci read it as it is, plus what unionrs adds beside it:
//!
//! ```text
//! STORE/oci-layout, index.json, blobs/sha256/<hex>   the OCI layout (tags = ref.name)
//! STORE/layers/<diffid-hex>/                          one unpacked dir per distinct layer
//! STORE/layerinfo/<diffid-hex>.json                   its uncompressed tar size and entries
//! STORE/containers/<name>/                            containers (upper, work, merged)
//! STORE/tmp/                                          staging; emptied on every open
//! STORE/lock                                          flock: one writer at a time
//! ```
//!
//! Everything becomes visible by rename only: a blob after its sha256 was checked on the
//! stream and the file synced, a layer dir after it was unpacked completely, index.json
//! after the new one was synced. An interrupted command leaves only STORE/tmp entries,
//! which the next open removes (it holds the lock, so no live writer owns them).

use super::digest::{Digest, HashingReader};
use super::layout::{
    ANN_REF_NAME, Descriptor, Index, Manifest, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE,
};
use super::reference::Reference;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest manifest, index or config read into memory.
pub const MAX_JSON: u64 = 16 << 20;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

pub struct Store {
    root: PathBuf,
    _lock: File,
}

/// A blob written and synced under STORE/tmp, its digest known, not yet in blobs/.
#[derive(Debug)]
pub struct Staged {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// An image of the store: a manifest, its config, and the tags pointing at it.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: Value,
    /// `NAME:TAG` strings, in index order.
    pub tags: Vec<String>,
}

impl Image {
    /// The image ID (Docker's): the config digest.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Diff IDs, bottom layer first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>, String> {
        super::layout::config_diff_ids(&self.config)?
            .iter()
            .map(|s| Digest::parse(s))
            .collect()
    }
}

/// What the store records about an unpacked layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerInfo {
    pub diff_id: String,
    /// Bytes of the uncompressed layer tar.
    pub size: u64,
    pub entries: u64,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Default)]
pub struct Freed {
    /// Diff IDs of the unpacked layer dirs removed.
    pub layers: Vec<String>,
    /// Digests of the blobs removed.
    pub blobs: Vec<String>,
    /// Disk space they took (allocated blocks, a hard-linked file counted once).
    pub bytes: u64,
}

/// Disk space taken by `path` and, for a directory, everything below it (allocated
/// blocks, as `du` counts; symlinks not followed, hard links counted once). 0 if missing.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fn walk(p: &Path, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
        let Ok(m) = fs::symlink_metadata(p) else {
            return 0;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            return 0;
        }
        let mut n = m.blocks() * 512;
        if m.is_dir()
            && let Ok(rd) = fs::read_dir(p)
        {
            for e in rd.flatten() {
                n += walk(&e.path(), seen);
            }
        }
        n
    }
    walk(path, &mut BTreeSet::new())
}

/// The store directory from `--store`, else $UNIONRS_STORE, else /var/lib/unionrs for root
/// and $XDG_DATA_HOME/unionrs (or ~/.local/share/unionrs) otherwise.
pub fn default_root(flag: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("UNIONRS_STORE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if is_root() {
        return Ok(PathBuf::from("/var/lib/unionrs"));
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p).join("unionrs"));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/unionrs")),
        None => Err("no store: pass --store DIR or set UNIONRS_STORE".into()),
    }
}

/// True when running with effective uid 0 (read off /proc/self, which the euid owns).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// fsync of a directory, so the renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    ctx(File::open(dir).and_then(|d| d.sync_all()), || {
        format!("cannot sync {}", dir.display())
    })
}

/// Writes `data` to `path` atomically: temp file beside it, fsync, rename, fsync the dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    ctx(res, || format!("cannot write {}", path.display()))?;
    sync_dir(dir)
}

/// Removes a tree that may hold read-only directories (an unpacked layer), never following
/// a symlink. A missing path is not an error.
pub fn remove_tree(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fn make_writable(p: &Path) {
        if let Ok(m) = fs::symlink_metadata(p)
            && m.is_dir()
        {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Ok(m) if !m.is_dir() => {
            return ctx(fs::remove_file(path), || {
                format!("cannot remove {}", path.display())
            });
        }
        _ => {}
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path);
    ctx(fs::remove_dir_all(path), || {
        format!("cannot remove {}", path.display())
    })
}

/// Mode of the store root and of every directory the store makes in it: only the store's
/// owner may walk in. Layers keep their setuid-root programs and containers their data;
/// reachable by path, a setuid file of any pulled image would hand root to every local
/// user (docker's CVE-2021-41091). Containers reach their files through their own mount.
const PRIVATE_DIR: u32 = 0o700;

/// The directories of the store; each is made (or, from an older version, fixed) private.
const STORE_DIRS: [&str; 6] = [
    "blobs",
    "blobs/sha256",
    "layers",
    "layerinfo",
    "containers",
    "tmp",
];

/// Creates `dir` (and missing parents) with [`PRIVATE_DIR`], or narrows an existing one to
/// it. A directory others may write to (such as /tmp) is refused: it is not the store's own.
fn make_private(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    ctx(
        fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(dir),
        || format!("cannot create {}", dir.display()),
    )?;
    let m = ctx(fs::metadata(dir), || {
        format!("cannot stat {}", dir.display())
    })?;
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(format!(
            "{} is writable by every user (mode {mode:04o}): give the store a directory of its own",
            dir.display()
        ));
    }
    if mode != PRIVATE_DIR {
        ctx(
            fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR)),
            || format!("cannot make {} private (mode 0700)", dir.display()),
        )?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store at `root` and takes its lock. The root and the
    /// store's directories are (made) private on every open, so a store from a version that
    /// left them open to everyone is closed as soon as it is used.
    pub fn open(root: &Path) -> Result<Store, String> {
        make_private(root)?;
        for d in STORE_DIRS {
            make_private(&root.join(d))?;
        }
        let lock_path = root.join("lock");
        let lock = ctx(
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path),
            || format!("cannot open {}", lock_path.display()),
        )?;
        // One writer at a time: a command that has to wait (a build or a pull holds the lock
        // for its whole run) says so instead of hanging without a word.
        if let Err(fs::TryLockError::WouldBlock) = lock.try_lock() {
            eprintln!(
                "unionrs: waiting for the store {} (another unionrs command is using it)",
                root.display()
            );
        }
        ctx(lock.lock(), || {
            format!("cannot lock {}", lock_path.display())
        })?;
        let store = Store {
            root: root.to_path_buf(),
            _lock: lock,
        };
        if !root.join(OCI_LAYOUT_FILE).exists() {
            write_atomic(&root.join(OCI_LAYOUT_FILE), OCI_LAYOUT_CONTENT)?;
        }
        if !root.join("index.json").exists() {
            store.write_index(&Index::default())?;
        }
        // Holding the lock: whatever is in tmp/ was left by a writer that died.
        if let Ok(rd) = fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                remove_tree(&e.path())?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh, unused path under STORE/tmp.
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{n}-{what}", std::process::id()))
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    /// Streams `r` into a synced temp file, hashing on the way; with `expected`, a
    /// different digest is an error and the temp file is removed.
    pub fn stage_blob(&self, r: impl Read, expected: Option<&Digest>) -> Result<Staged, String> {
        let path = self.tmp_path("blob");
        let res = (|| {
            let mut f = ctx(File::create_new(&path), || {
                format!("cannot create {}", path.display())
            })?;
            let mut hr = HashingReader::new(r);
            ctx(io::copy(&mut hr, &mut f), || {
                "cannot read the blob".to_string()
            })?;
            let (digest, size) = ctx(hr.finish(), || "cannot read the blob".to_string())?;
            if let Some(want) = expected
                && *want != digest
            {
                return Err(format!(
                    "digest mismatch: expected {want}, content is {digest} ({size} bytes)"
                ));
            }
            ctx(f.sync_all(), || format!("cannot sync {}", path.display()))?;
            Ok(Staged {
                path: path.clone(),
                digest,
                size,
            })
        })();
        if res.is_err() {
            let _ = fs::remove_file(&path);
        }
        res
    }

    /// Moves a staged blob into blobs/sha256 (dropping it if that blob is already there).
    pub fn commit_blob(&self, s: &Staged) -> Result<(), String> {
        let dst = self.blob_path(&s.digest);
        if dst.is_file() {
            let _ = fs::remove_file(&s.path);
            return Ok(());
        }
        ctx(fs::rename(&s.path, &dst), || {
            format!("cannot move blob into {}", dst.display())
        })
    }

    /// Stores `data` as a blob (temp file, fsync, rename) and returns its digest.
    pub fn put_blob_bytes(&self, data: &[u8]) -> Result<Digest, String> {
        let s = self.stage_blob(data, None)?;
        self.commit_blob(&s)?;
        sync_dir(&self.root.join("blobs/sha256"))?;
        Ok(s.digest)
    }

    /// Reads a (JSON-sized) blob and checks its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, String> {
        let p = self.blob_path(d);
        let f = File::open(&p).map_err(|e| format!("blob {d}: {e}"))?;
        let mut buf = Vec::new();
        ctx(f.take(MAX_JSON + 1).read_to_end(&mut buf), || {
            format!("cannot read blob {d}")
        })?;
        if buf.len() as u64 > MAX_JSON {
            return Err(format!("blob {d} is larger than {MAX_JSON} bytes"));
        }
        if Digest::of(&buf) != *d {
            return Err(format!(
                "blob {d} is corrupt: its content has another digest"
            ));
        }
        Ok(buf)
    }

    pub fn read_index(&self) -> Result<Index, String> {
        let p = self.root.join("index.json");
        let data = ctx(fs::read(&p), || format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))
    }

    pub fn write_index(&self, index: &Index) -> Result<(), String> {
        let data = serde_json::to_vec(index).map_err(|e| e.to_string())?;
        write_atomic(&self.root.join("index.json"), &data)
    }

    pub fn layer_info(&self, diff_id: &Digest) -> Option<LayerInfo> {
        let p = self
            .root
            .join("layerinfo")
            .join(format!("{}.json", diff_id.hex()));
        serde_json::from_slice(&fs::read(p).ok()?).ok()
    }

    /// Makes an unpacked layer directory visible as the layer `info.diff_id`: its content is
    /// flushed to disk first (syncfs: one call for the whole tree), so a crash can never leave
    /// a visible layer whose files were not written; then the rename, then the rename is
    /// synced. If the store already has the layer (a concurrent pull), `dir` is removed.
    pub fn publish_layer(&self, dir: &Path, info: &LayerInfo) -> Result<(), String> {
        let diff = Digest::parse(&info.diff_id)?;
        let dst = self.layer_dir(&diff);
        if dst.is_dir() {
            return remove_tree(dir);
        }
        let d = ctx(File::open(dir), || format!("cannot open {}", dir.display()))?;
        crate::sys::io::syncfs(d.as_fd())
            .map_err(|e| format!("cannot flush layer {diff} to disk: {e}"))?;
        self.write_layer_info(info)?;
        ctx(fs::rename(dir, &dst), || {
            format!("cannot move layer {diff} into place")
        })?;
        sync_dir(&self.root.join("layers"))
    }

    pub fn write_layer_info(&self, info: &LayerInfo) -> Result<(), String> {
        let d = Digest::parse(&info.diff_id)?;
        let p = self
            .root
            .join("layerinfo")
            .join(format!("{}.json", d.hex()));
        write_atomic(&p, &serde_json::to_vec(info).map_err(|e| e.to_string())?)
    }

    /// Loads the manifest and config an index entry points at, verifying both.
    pub fn load_image(&self, desc: &Descriptor) -> Result<Image, String> {
        let md = Digest::parse(&desc.digest)?;
        let manifest: Manifest = serde_json::from_slice(&self.read_blob(&md)?)
            .map_err(|e| format!("manifest {md}: {e}"))?;
        let cd = Digest::parse(&manifest.config.digest)?;
        let config: Value = serde_json::from_slice(&self.read_blob(&cd)?)
            .map_err(|e| format!("config {cd}: {e}"))?;
        Ok(Image {
            manifest_digest: md,
            manifest_size: desc.size,
            manifest,
            config_digest: cd,
            config,
            tags: Vec::new(),
        })
    }

    /// All images, one per manifest digest, in index order, with their tags.
    pub fn images(&self) -> Result<Vec<Image>, String> {
        let index = self.read_index()?;
        let mut out: Vec<Image> = Vec::new();
        for desc in &index.manifests {
            let md = Digest::parse(&desc.digest)?;
            let pos = match out.iter().position(|i| i.manifest_digest == md) {
                Some(p) => p,
                None => {
                    out.push(self.load_image(desc)?);
                    out.len() - 1
                }
            };
            if let Some(r) = desc.annotation(ANN_REF_NAME) {
                out[pos].tags.push(r.to_string());
            }
        }
        Ok(out)
    }

    /// Finds an image by `NAME[:TAG]`, by ID (`sha256:HEX` or a unique hex prefix of at
    /// least 4 digits), or by manifest digest.
    pub fn resolve(&self, what: &str) -> Result<Image, String> {
        let images = self.images()?;
        if let Ok(r) = Reference::parse(what) {
            let want = r.to_string();
            if let Some(i) = images.iter().find(|i| i.tags.contains(&want)) {
                return Ok(i.clone());
            }
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<&Image> = images
                .iter()
                .filter(|i| i.id().hex().starts_with(hex) || i.manifest_digest.hex() == hex)
                .collect();
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                0 => {}
                _ => return Err(format!("image ID prefix {what:?} is ambiguous")),
            }
        }
        Err(format!("no such image: {what}"))
    }

    /// Points tag `r` at the manifest `desc` (moving it off any other image) and drops
    /// an untagged entry of that manifest.
    pub fn set_tag(index: &mut Index, r: &Reference, desc: &Descriptor) {
        let name = r.to_string();
        index.manifests.retain(|d| {
            let same_tag = d.annotation(ANN_REF_NAME) == Some(name.as_str());
            let untagged_same = d.digest == desc.digest && d.annotation(ANN_REF_NAME).is_none();
            !(same_tag || untagged_same)
        });
        let mut d = Descriptor::new(&desc.media_type, &desc.digest, desc.size);
        d.annotations = Some(BTreeMap::from([(ANN_REF_NAME.to_string(), name)]));
        index.manifests.push(d);
    }

    /// Deletes blobs no manifest in the index uses, and layer dirs (with their info) that
    /// no image and no container (`extra_diff_ids`) uses. Says what went and its disk size.
    pub fn gc(&self, extra_diff_ids: &BTreeSet<String>) -> Result<Freed, String> {
        let mut keep_blobs = BTreeSet::new();
        let mut keep_layers: BTreeSet<String> = extra_diff_ids.clone();
        for img in self.images()? {
            keep_blobs.insert(img.manifest_digest.hex().to_string());
            keep_blobs.insert(img.config_digest.hex().to_string());
            for l in &img.manifest.layers {
                keep_blobs.insert(Digest::parse(&l.digest)?.hex().to_string());
            }
            for d in img.diff_ids()? {
                keep_layers.insert(d.hex().to_string());
            }
        }
        let mut freed = Freed::default();
        let blobs = self.root.join("blobs/sha256");
        for e in ctx(fs::read_dir(&blobs), || {
            format!("cannot list {}", blobs.display())
        })?
        .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                let bytes = disk_usage(&e.path());
                ctx(fs::remove_file(e.path()), || {
                    format!("cannot remove {}", e.path().display())
                })?;
                freed.bytes += bytes;
                freed.blobs.push(format!("sha256:{name}"));
            }
        }
        // Push's records of which repositories hold a blob (STORE/distribution/<hex>):
        // those of blobs the store no longer has go with them.
        if let Ok(rd) = fs::read_dir(self.root.join("distribution")) {
            for e in rd.flatten() {
                if !keep_blobs.contains(&*e.file_name().to_string_lossy()) {
                    let bytes = disk_usage(&e.path());
                    if fs::remove_file(e.path()).is_ok() {
                        freed.bytes += bytes;
                    }
                }
            }
        }
        let layers = self.root.join("layers");
        for e in ctx(fs::read_dir(&layers), || {
            format!("cannot list {}", layers.display())
        })?
        .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_layers.contains(&name) {
                // Rename first, so the layer disappears at once even if removal is slow.
                let doomed = self.tmp_path("rm-layer");
                ctx(fs::rename(e.path(), &doomed), || {
                    format!("cannot remove layer {name}")
                })?;
                let info = self.root.join("layerinfo").join(format!("{name}.json"));
                freed.bytes += disk_usage(&doomed) + disk_usage(&info);
                remove_tree(&doomed)?;
                let _ = fs::remove_file(info);
                freed.layers.push(format!("sha256:{name}"));
            }
        }
        Ok(freed)
    }
}
