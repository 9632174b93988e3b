//! Containers: an image's layers as lowerdirs plus a private upper/work dir, mounted by
//! running this same binary as the union mount (`unionrs -o lowerdir=..,upperdir=..,
//! workdir=.. MERGED`), and `commit` turning the upper into a new image.
//!
//! ```text
//! STORE/containers/<name>/container.json   name, image ID and name, diff IDs, created
//! STORE/containers/<name>/{upper,work,merged}
//! ```

use super::digest::Digest;
use super::layer_export;
use super::layout::{Descriptor, MT_OCI_CONFIG, MT_OCI_LAYER_GZIP, MT_OCI_MANIFEST, Manifest};
use super::reference::Reference;
use super::store::{LayerInfo, Store, remove_tree, write_atomic};
use super::unpack;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fs::{self, File};
use std::io::BufWriter;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    /// Docker-style: 64 hex digits, shown as 12. Containers made before IDs existed get one
    /// the first time they are loaded.
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub image_name: String,
    /// Bottom layer first.
    pub diff_ids: Vec<String>,
    pub created: String,
}

fn check_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container name {n:?}: [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        ))
    }
}

pub fn dir(st: &Store, name: &str) -> PathBuf {
    st.root().join("containers").join(name)
}

pub fn load(st: &Store, name: &str) -> Result<Container, String> {
    check_name(name)?;
    let p = dir(st, name).join("container.json");
    let data = fs::read(&p).map_err(|_| format!("no such container: {name}"))?;
    let mut c: Container =
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))?;
    if c.id.is_empty() {
        // Made before containers had IDs: give it one now (the store lock is held).
        c.id = new_id()?;
        write_atomic(
            &p,
            &serde_json::to_vec_pretty(&c).map_err(|e| e.to_string())?,
        )?;
    }
    Ok(c)
}

/// A fresh container ID: 32 random bytes from the kernel, as 64 hex digits.
pub fn new_id() -> Result<String, String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The container called `what`, else the one whose ID starts with `what` (docker's rule:
/// a name wins; an ID prefix must match exactly one container).
pub fn find(st: &Store, what: &str) -> Result<Container, String> {
    if check_name(what).is_ok() && dir(st, what).join("container.json").exists() {
        return load(st, what);
    }
    let hex = !what.is_empty() && what.bytes().all(|b| b.is_ascii_hexdigit());
    let mut hits: Vec<Container> = if hex {
        list(st)?
            .into_iter()
            .filter(|c| c.id.starts_with(&what.to_ascii_lowercase()))
            .collect()
    } else {
        Vec::new()
    };
    match hits.len() {
        0 => Err(format!("no such container: {what}")),
        1 => Ok(hits.remove(0)),
        n => Err(format!(
            "{what} is the start of {n} container IDs: give more digits"
        )),
    }
}

pub fn list(st: &Store) -> Result<Vec<Container>, String> {
    let mut out = Vec::new();
    let d = st.root().join("containers");
    for e in fs::read_dir(&d)
        .map_err(|e| format!("{}: {e}", d.display()))?
        .flatten()
    {
        if let Ok(c) = load(st, &e.file_name().to_string_lossy()) {
            out.push(c);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// True if `path` is a mount point (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    match (fs::metadata(path), path.parent().map(fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

pub fn now_rfc3339() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc3339(s)
}

/// `s` seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(s: i64) -> String {
    let (days, rem) = (s.div_euclid(86400), s.rem_euclid(86400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Creates the container's dirs and record; does not mount.
pub fn create(st: &Store, image: &str, name: Option<&str>) -> Result<Container, String> {
    let img = st.resolve(image)?;
    create_over(
        st,
        img.id().as_str(),
        &img.tags
            .first()
            .cloned()
            .unwrap_or_else(|| img.id().to_string()),
        img.diff_ids()?.iter().map(Digest::to_string).collect(),
        name,
    )
}

/// Creates a container over the layers `diff_ids` (bottom first), which need not make an
/// image of the store (a build step's state); `image_id`/`image_name` are recorded as given.
pub fn create_over(
    st: &Store,
    image_id: &str,
    image_name: &str,
    diff_ids: Vec<String>,
    name: Option<&str>,
) -> Result<Container, String> {
    let id = new_id()?;
    let name = match name {
        Some(n) => n.to_string(),
        None => super::lifecycle::names::unused(st, &id),
    };
    check_name(&name)?;
    let d = dir(st, &name);
    if d.exists() {
        return Err(format!("container {name} already exists"));
    }
    let c = Container {
        id,
        name: name.clone(),
        image_id: image_id.to_string(),
        image_name: image_name.to_string(),
        diff_ids,
        created: now_rfc3339(),
    };
    let tmp = st.tmp_path("container");
    let res = (|| {
        for sub in ["upper", "work", "merged"] {
            fs::create_dir_all(tmp.join(sub)).map_err(|e| format!("{}: {e}", tmp.display()))?;
        }
        write_atomic(
            &tmp.join("container.json"),
            &serde_json::to_vec_pretty(&c).map_err(|e| e.to_string())?,
        )?;
        fs::rename(&tmp, &d).map_err(|e| format!("cannot create {}: {e}", d.display()))
    })();
    if res.is_err() {
        let _ = remove_tree(&tmp);
    }
    res.map(|_| c)
}

/// Mounts the container by running this binary as the union mount.
pub fn mount(st: &Store, c: &Container) -> Result<PathBuf, String> {
    let d = dir(st, &c.name);
    let merged = d.join("merged");
    if is_mounted(&merged) {
        return Ok(merged);
    }
    let mut lowers = Vec::new();
    for id in c.diff_ids.iter().rev() {
        let l = st.layer_dir(&Digest::parse(id)?);
        if !l.is_dir() {
            return Err(format!(
                "layer {id} of container {} is missing from the store",
                c.name
            ));
        }
        lowers.push(l.display().to_string());
    }
    if lowers.is_empty() {
        // An image without layers: an empty dir stands for the lower.
        let empty = d.join("empty");
        fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
        lowers.push(empty.display().to_string());
    }
    let mut opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        d.join("upper").display(),
        d.join("work").display()
    );
    // A container's processes run as the image's users, not only as the mounter (FUSE
    // lets no other user in without allow_other); the kernel then checks permissions
    // (default_permissions follows allow_other). Only root may set it without fuse.conf.
    if super::store::is_root() {
        opts.push_str(",allow_other");
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the unionrs binary: {e}"))?;
    let out = Command::new(exe)
        .arg("-o")
        .arg(&opts)
        .arg(&merged)
        .output()
        .map_err(|e| format!("cannot run the mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mounting {} failed: {}",
            merged.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(merged)
}

/// True if `path` is a FUSE mount whose daemon is gone (ENOTCONN): still mounted, and in
/// the way of everything until unmounted.
pub fn is_dead_mount(path: &Path) -> bool {
    fs::metadata(path).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))
}

pub fn umount(st: &Store, c: &Container) -> Result<(), String> {
    let merged = dir(st, &c.name).join("merged");
    if is_dead_mount(&merged) {
        // Its daemon died: nothing to flush, only the kernel's mount to drop.
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&merged)
            .output();
        return if is_dead_mount(&merged) {
            Err(format!(
                "cannot unmount {} (its daemon died)",
                merged.display()
            ))
        } else {
            Ok(())
        };
    }
    if !is_mounted(&merged) {
        return Ok(());
    }
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&merged)
        .output()
        .map_err(|e| format!("cannot run fusermount3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unmounting {} failed: {}",
            merged.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    wait_for_workdir(&dir(st, &c.name).join("work"));
    Ok(())
}

/// fusermount3 returns once the kernel has detached the mount; the daemon exits a moment
/// later, and only then frees the workdir lock (W/unionrs.lock). Waits for that (at most
/// 10 s), so that a `mount` right after an `umount` finds the workdir free.
fn wait_for_workdir(work: &Path) {
    let Ok(lock) = File::open(work.join("unionrs.lock")) else {
        return;
    };
    let start = std::time::Instant::now();
    while lock.try_lock().is_err() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub fn remove(st: &Store, c: &Container) -> Result<(), String> {
    umount(st, c)?;
    let d = dir(st, &c.name);
    let doomed = st.tmp_path("rm-container");
    fs::rename(&d, &doomed).map_err(|e| format!("cannot remove {}: {e}", d.display()))?;
    remove_tree(&doomed)
}

/// `A`/`C`/`D` lines for the upper: whiteouts are deletions, entries that exist in a lower
/// layer are changes, the rest additions. Sorted by path.
pub fn diff(st: &Store, c: &Container) -> Result<Vec<(char, String)>, String> {
    let lowers: Vec<PathBuf> = c
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d).map(|d| st.layer_dir(&d)))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    fn walk(
        upper: &Path,
        rel: &Path,
        lowers: &[PathBuf],
        out: &mut Vec<(char, String)>,
    ) -> Result<(), String> {
        let here = upper.join(rel);
        let mut names: Vec<_> = fs::read_dir(&here)
            .map_err(|e| format!("{}: {e}", here.display()))?
            .flatten()
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name();
            let m = fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
            let n = name.to_string_lossy();
            if n == ".wh..wh..opq" {
                continue;
            }
            let (path, is_whiteout) = match n.strip_prefix(".wh.") {
                Some(orig) => (rel.join(orig), true),
                None => (
                    rel.join(&name),
                    m.file_type().is_char_device() && m.rdev() == 0,
                ),
            };
            let shown = format!("/{}", path.display());
            let in_lower = lowers
                .iter()
                .any(|l| fs::symlink_metadata(l.join(&path)).is_ok());
            if is_whiteout {
                out.push(('D', shown));
                continue;
            }
            out.push((if in_lower { 'C' } else { 'A' }, shown));
            if m.is_dir() {
                walk(upper, &path, lowers, out)?;
            }
        }
        Ok(())
    }
    walk(
        &dir(st, &c.name).join("upper"),
        Path::new(""),
        &lowers,
        &mut out,
    )?;
    Ok(out)
}

/// Options of `commit`.
pub struct CommitOpts<'a> {
    pub author: Option<&'a str>,
    pub message: Option<&'a str>,
    pub changes: &'a [String],
}

/// Applies one Dockerfile-style `-c` change to an image config's `config` object.
fn apply_change(cfg: &mut Value, change: &str) -> Result<(), String> {
    let (instr, arg) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("change {change:?}: expected INSTRUCTION ARGS"))?;
    let arg = arg.trim();
    let list = |a: &str| -> Value {
        serde_json::from_str::<Vec<String>>(a)
            .map_or_else(|_| json!(["/bin/sh", "-c", a]), |v| json!(v))
    };
    let obj = cfg.as_object_mut().ok_or("image config is not an object")?;
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            obj.insert("Cmd".into(), list(arg));
        }
        "ENTRYPOINT" => {
            obj.insert("Entrypoint".into(), list(arg));
        }
        "WORKDIR" => {
            obj.insert("WorkingDir".into(), json!(arg));
        }
        "USER" => {
            obj.insert("User".into(), json!(arg));
        }
        "ENV" => {
            let (k, v) = arg
                .split_once('=')
                .or_else(|| arg.split_once(' '))
                .ok_or_else(|| format!("change {change:?}: ENV KEY=VALUE"))?;
            let env = obj
                .entry("Env")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .ok_or("Env is not a list")?;
            env.retain(|e| e.as_str().is_none_or(|s| !s.starts_with(&format!("{k}="))));
            env.push(json!(format!("{k}={}", v.trim())));
        }
        "LABEL" => {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| format!("change {change:?}: LABEL KEY=VALUE"))?;
            let labels = obj.entry("Labels").or_insert_with(|| json!({}));
            if labels.is_null() {
                *labels = json!({});
            }
            labels
                .as_object_mut()
                .ok_or("Labels is not an object")?
                .insert(k.into(), json!(v.trim_matches('"')));
        }
        "EXPOSE" => {
            let p = if arg.contains('/') {
                arg.to_string()
            } else {
                format!("{arg}/tcp")
            };
            let ports = obj.entry("ExposedPorts").or_insert_with(|| json!({}));
            if ports.is_null() {
                *ports = json!({});
            }
            ports
                .as_object_mut()
                .ok_or("ExposedPorts is not an object")?
                .insert(p, json!({}));
        }
        other => {
            return Err(format!(
                "change {change:?}: {other} is not supported (CMD ENTRYPOINT ENV LABEL EXPOSE USER WORKDIR)"
            ));
        }
    }
    Ok(())
}

/// A container's upper exported as a gzip layer: its blob staged and (when the store lacks
/// that layer) its unpacked dir made, both under STORE/tmp until [`StagedLayer::publish`].
pub struct StagedLayer {
    pub blob: super::store::Staged,
    pub diff_id: Digest,
    pub info: LayerInfo,
    fresh: Option<PathBuf>,
}

impl StagedLayer {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(MT_OCI_LAYER_GZIP, self.blob.digest.as_str(), self.blob.size)
    }

    /// Makes the blob and the layer dir visible in the store.
    pub fn publish(&mut self, st: &Store) -> Result<(), String> {
        st.commit_blob(&self.blob)?;
        if let Some(d) = self.fresh.take() {
            st.publish_layer(&d, &self.info)?;
        }
        Ok(())
    }
}

/// Exports the container's upper as a layer (from the union mount, mounted for the export if
/// it is not: a renamed lower dir or a metacopy file needs it) and stages it.
pub fn stage_layer(st: &Store, c: &Container) -> Result<StagedLayer, String> {
    let upper = dir(st, &c.name).join("upper");
    let was_mounted = is_mounted(&dir(st, &c.name).join("merged"));
    let merged = mount(st, c)?;
    let gz_path = st.tmp_path("commit.tar.gz");
    let res = (|| {
        let file = File::create_new(&gz_path).map_err(|e| format!("{}: {e}", gz_path.display()))?;
        let mut gz =
            flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::default());
        let info = layer_export::export_upper_merged(&upper, &merged, &mut gz)
            .map_err(|e| e.to_string())?;
        let w = gz.finish().map_err(|e| format!("gzip: {e}"))?;
        w.into_inner()
            .map_err(|e| format!("write: {}", e.error()))?;
        let staged = st.stage_blob(File::open(&gz_path).map_err(|e| e.to_string())?, None)?;
        let diff_id = info.diff_id;
        // Unpack the new layer so containers of the new image can use it.
        let mut fresh = None;
        if !st.has_layer(&diff_id) {
            let d = st.tmp_path("layer");
            fs::create_dir(&d).map_err(|e| e.to_string())?;
            fresh = Some(d.clone());
            let opts = unpack::Options {
                limits: unpack::Limits::default(),
                as_root: super::store::is_root(),
            };
            let u = unpack::unpack_layer(
                File::open(&staged.path).map_err(|e| e.to_string())?,
                &d,
                &opts,
            )?;
            if u.diff_id != diff_id {
                return Err(format!(
                    "committed layer re-reads as {} not {diff_id}",
                    u.diff_id
                ));
            }
        }
        Ok(StagedLayer {
            blob: staged,
            info: LayerInfo {
                diff_id: diff_id.to_string(),
                size: info.size,
                entries: info.entries,
            },
            diff_id,
            fresh,
        })
    })();
    let _ = fs::remove_file(&gz_path);
    if !was_mounted && let Err(m) = umount(st, c) {
        log::warn!("commit: {m}");
    }
    res
}

/// Turns the container's upper into a gzip layer on top of its image, and tags the result.
pub fn commit(
    st: &Store,
    c: &Container,
    target: Option<&Reference>,
    o: &CommitOpts<'_>,
) -> Result<Digest, String> {
    let base_img = st.resolve(&c.image_id)?;
    let mut layer = stage_layer(st, c)?;
    let diff_id = layer.diff_id.clone();
    let mut cfg = base_img.config.clone();
    let now = now_rfc3339();
    let obj = cfg.as_object_mut().ok_or("image config is not an object")?;
    obj.insert("created".into(), json!(now));
    if let Some(a) = o.author {
        obj.insert("author".into(), json!(a));
    }
    let inner = obj.entry("config").or_insert_with(|| json!({}));
    if inner.is_null() {
        *inner = json!({});
    }
    for ch in o.changes {
        apply_change(inner, ch)?;
    }
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    rootfs["diff_ids"]
        .as_array_mut()
        .ok_or("rootfs.diff_ids is not a list")?
        .push(json!(diff_id.to_string()));
    let mut h = json!({"created": now, "created_by": format!("unionrs commit {}", c.name)});
    if let Some(a) = o.author {
        h["author"] = json!(a);
    }
    if let Some(m) = o.message {
        h["comment"] = json!(m);
    }
    obj.entry("history")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("history is not a list")?
        .push(h);
    let cfg_bytes = serde_json::to_vec(&cfg).map_err(|e| e.to_string())?;
    let mut layers = base_img.manifest.layers.clone();
    layers.push(layer.descriptor());
    // Visible from here on: blobs, layer dir, index.
    layer.publish(st)?;
    let cfg_digest = st.put_blob_bytes(&cfg_bytes)?;
    let m = Manifest {
        schema_version: 2,
        media_type: Some(MT_OCI_MANIFEST.into()),
        config: Descriptor::new(MT_OCI_CONFIG, cfg_digest.as_str(), cfg_bytes.len() as u64),
        layers,
        annotations: None,
    };
    let m_bytes = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
    let m_digest = st.put_blob_bytes(&m_bytes)?;
    let desc = Descriptor::new(MT_OCI_MANIFEST, m_digest.as_str(), m_bytes.len() as u64);
    let mut index = st.read_index()?;
    match target {
        Some(r) => Store::set_tag(&mut index, r, &desc),
        None => index.manifests.push(desc),
    }
    st.write_index(&index)?;
    Ok(cfg_digest)
}

/// Diff IDs used by containers (kept by `rmi`'s garbage collection).
pub fn used_diff_ids(st: &Store) -> Result<std::collections::BTreeSet<String>, String> {
    let mut s = std::collections::BTreeSet::new();
    for c in list(st)? {
        for d in c.diff_ids {
            s.insert(Digest::parse(&d)?.hex().to_string());
        }
    }
    Ok(s)
}
