//! `load` and `save`: image archives in and out of the store.
//!
//! Input: a docker-archive tar (`manifest.json` + config + layer tars, as `docker save`
//! writes it, legacy `<id>/layer.tar` or `blobs/sha256/` paths) or an OCI image layout tar
//! (`oci-layout`, `index.json`, `blobs/sha256/`). `manifest.json` wins when both are present.
//! Every file of the archive is staged under STORE/tmp with its sha256 computed on the way
//! (and checked against its name when it is `blobs/sha256/<hex>`); layers are unpacked into
//! temp dirs and their diff IDs checked against the config. Only when every image checks
//! out are blobs and layer dirs renamed into place and index.json rewritten: a bad archive
//! leaves the store as it was.
//!
//! Output (`save`): a tar that is both a docker-archive and an OCI layout (as Docker 25+
//! writes): `blobs/sha256/<hex>` for manifests, configs and layers, `index.json`,
//! `manifest.json`, `oci-layout`; entries sorted, mtime 0, owner 0:0, so the same images
//! give the same bytes.

use super::digest::Digest;
use super::layout::{
    ANN_IMAGE_NAME, ANN_REF_NAME, Descriptor, DockerArchiveEntry, Index, MT_DOCKER_LIST,
    MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_MANIFEST, Manifest, config_diff_ids, layer_media_type,
};
use super::progress::{Bars, Counting};
use super::reference::Reference;
use super::store::{LayerInfo, MAX_JSON, Staged, Store, remove_tree, sync_dir};
use super::unpack::{self, Ext, Options, normalize, one_line, read_ext, trim_nul};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::PathBuf;
use tar::EntryType;

/// Most files one archive may hold.
const MAX_ARCHIVE_FILES: usize = 1_000_000;

/// One image found in an archive, its blobs staged.
struct Candidate {
    config: String,
    layers: Vec<String>,
    /// The manifest as the archive has it (OCI input), else generated.
    manifest: Option<String>,
    tags: Vec<Reference>,
}

/// What the staging pass saw.
#[derive(Default)]
struct Staging {
    files: HashMap<String, Staged>,
    links: HashMap<String, String>,
}

impl Staging {
    /// The staged file at archive path `p`, following archive-internal symlinks/hardlinks.
    fn get(&self, p: &str) -> Result<&Staged, String> {
        let mut cur = norm(p)?;
        for _ in 0..16 {
            if let Some(s) = self.files.get(&cur) {
                return Ok(s);
            }
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => return Err(format!("archive has no file {p:?}")),
            }
        }
        Err(format!("archive path {p:?}: too many levels of links"))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, p: &str) -> Result<(T, Vec<u8>), String> {
        let s = self.get(p)?;
        if s.size > MAX_JSON {
            return Err(format!("{p}: larger than {MAX_JSON} bytes"));
        }
        let data = fs::read(&s.path).map_err(|e| format!("{p}: {e}"))?;
        let v = serde_json::from_slice(&data).map_err(|e| format!("{p}: {e}"))?;
        Ok((v, data))
    }

    fn cleanup(&self) {
        for s in self.files.values() {
            let _ = fs::remove_file(&s.path);
        }
    }
}

fn norm(p: &str) -> Result<String, String> {
    let c = normalize(p.as_bytes(), 4096).map_err(|m| format!("archive path {p:?}: {m}"))?;
    Ok(String::from_utf8_lossy(&c.join(&b'/')).into_owned())
}

/// `blobs/sha256/<hex>` -> the digest it names.
fn blob_name_digest(p: &str) -> Option<Digest> {
    p.strip_prefix("blobs/sha256/")
        .and_then(|h| Digest::from_hex(h).ok())
}

/// Loads every image of the archive read from `input`. Returns (image ID, tags) per image.
pub fn load(
    store: &Store,
    input: impl Read,
    opts: &Options,
) -> Result<Vec<(Digest, Vec<String>)>, String> {
    load_with(store, input, opts, &Bars::new(false))
}

/// [`load`], with a progress bar per layer it unpacks.
pub fn load_with(
    store: &Store,
    input: impl Read,
    opts: &Options,
    bars: &Bars,
) -> Result<Vec<(Digest, Vec<String>)>, String> {
    let mut st = Staging::default();
    let mut pending_layers: Vec<PathBuf> = Vec::new();
    let res = (|| {
        stage_archive(store, input, &mut st)?;
        let cands = if st.get("manifest.json").is_ok() {
            docker_candidates(&st)?
        } else if st.get("index.json").is_ok() {
            oci_candidates(&st)?
        } else {
            return Err("not a docker-archive or OCI layout tar: it has neither \
                        manifest.json nor index.json"
                .into());
        };
        ingest(store, &st, &cands, opts, bars, &mut pending_layers)
    })();
    bars.clear();
    st.cleanup();
    for p in &pending_layers {
        let _ = remove_tree(p);
    }
    // Archive paths and the tar crate's messages may hold any byte.
    res.map_err(one_line)
}

fn stage_archive(store: &Store, input: impl Read, st: &mut Staging) -> Result<(), String> {
    let mut ar = tar::Archive::new(input);
    let entries = ar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?
        .raw(true);
    let mut ext = Ext::default();
    for e in entries {
        let mut e = e.map_err(|e| format!("bad archive: {e}"))?;
        let kind = e.header().entry_type();
        let hdr = e.header().path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&hdr).into_owned();
        match kind {
            EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
            | EntryType::XGlobalHeader => {
                let data = read_ext(&mut e, 1 << 20)
                    .map_err(|m| format!("archive entry {shown:?}: {m}"))?;
                match kind {
                    EntryType::XHeader => ext.pax(&data).map_err(|m| format!("archive: {m}"))?,
                    EntryType::GNULongName => ext.path = Some(trim_nul(data)),
                    EntryType::GNULongLink => ext.link = Some(trim_nul(data)),
                    _ => {}
                }
                continue;
            }
            _ => {}
        }
        let ext_now = std::mem::take(&mut ext);
        let raw = ext_now.path.unwrap_or(hdr);
        let path = norm(&String::from_utf8_lossy(&raw))?;
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                if st.files.len() >= MAX_ARCHIVE_FILES {
                    return Err(format!("archive holds more than {MAX_ARCHIVE_FILES} files"));
                }
                let expected = blob_name_digest(&path);
                let s = store
                    .stage_blob(&mut e, expected.as_ref())
                    .map_err(|m| format!("archive entry {path:?}: {m}"))?;
                if let Some(old) = st.files.insert(path, s) {
                    let _ = fs::remove_file(old.path);
                }
            }
            EntryType::Symlink | EntryType::Link => {
                let target = ext_now
                    .link
                    .or_else(|| e.header().link_name_bytes().map(|c| c.into_owned()))
                    .unwrap_or_default();
                let target = String::from_utf8_lossy(&target).into_owned();
                // Symlinks are relative to their dir; hardlinks name an archive path.
                let resolved = if kind == EntryType::Symlink && !target.starts_with('/') {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    norm(&format!("{dir}/{target}"))?
                } else {
                    norm(&target)?
                };
                st.links.insert(path, resolved);
            }
            _ => {} // directories and anything else: nothing to keep
        }
    }
    Ok(())
}

fn docker_candidates(st: &Staging) -> Result<Vec<Candidate>, String> {
    let (entries, _): (Vec<DockerArchiveEntry>, _) = st.json("manifest.json")?;
    let mut out = Vec::new();
    for (i, ent) in entries.iter().enumerate() {
        let cfg = st
            .get(&ent.config)
            .map_err(|m| format!("manifest.json image {i}: {m}"))?;
        // `<hex>.json` (legacy) names the config's digest too.
        let base = ent.config.rsplit('/').next().unwrap_or("");
        if let Some(h) = base.strip_suffix(".json")
            && let Ok(d) = Digest::from_hex(h)
            && d != cfg.digest
        {
            return Err(format!(
                "config {}: digest mismatch: its name says {d}, content is {}",
                ent.config, cfg.digest
            ));
        }
        let mut tags = Vec::new();
        for t in ent.repo_tags.iter().flatten() {
            tags.push(Reference::parse(t)?);
        }
        for l in &ent.layers {
            st.get(l)
                .map_err(|m| format!("manifest.json image {i}: layer {m}"))?;
        }
        out.push(Candidate {
            config: ent.config.clone(),
            layers: ent.layers.clone(),
            manifest: None,
            tags,
        });
    }
    Ok(out)
}

fn blob_for<'a>(st: &'a Staging, d: &Descriptor) -> Result<(String, &'a Staged), String> {
    let dg = Digest::parse(&d.digest)?;
    let p = format!("blobs/sha256/{}", dg.hex());
    let s = st
        .get(&p)
        .map_err(|_| format!("blob {dg} ({}) is missing from the archive", d.media_type))?;
    if s.size != d.size {
        return Err(format!(
            "blob {dg}: descriptor says {} bytes, archive has {}",
            d.size, s.size
        ));
    }
    Ok((p, s))
}

fn oci_candidates(st: &Staging) -> Result<Vec<Candidate>, String> {
    let (index, _): (Index, _) = st.json("index.json")?;
    let mut by_manifest: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut order = Vec::new();
    for desc in &index.manifests {
        let mut desc = desc.clone();
        let tag = desc
            .annotation(ANN_IMAGE_NAME)
            .or(desc
                .annotation(ANN_REF_NAME)
                .filter(|r| r.contains(':') || r.contains('/')))
            .map(Reference::parse)
            .transpose()?;
        if desc.media_type == MT_OCI_INDEX || desc.media_type == MT_DOCKER_LIST {
            let (p, _) = blob_for(st, &desc)?;
            let (sub, _): (Index, _) = st.json(&p)?;
            desc = pick_platform(&sub)?.clone();
        }
        let (mpath, _) = blob_for(st, &desc)?;
        if !by_manifest.contains_key(&mpath) {
            let (m, _): (Manifest, _) = st.json(&mpath)?;
            let (cpath, _) = blob_for(st, &m.config)?;
            let mut layers = Vec::new();
            for l in &m.layers {
                layers.push(blob_for(st, l)?.0);
            }
            order.push(mpath.clone());
            by_manifest.insert(
                mpath.clone(),
                Candidate {
                    config: cpath,
                    layers,
                    manifest: Some(mpath.clone()),
                    tags: Vec::new(),
                },
            );
        }
        if let Some(t) = tag {
            by_manifest.get_mut(&mpath).expect("inserted").tags.push(t);
        }
    }
    Ok(order.iter().filter_map(|m| by_manifest.remove(m)).collect())
}

/// The manifest of an index for this machine (linux and the running architecture), else
/// the first one.
fn pick_platform(index: &Index) -> Result<&Descriptor, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.get("os").and_then(Value::as_str) == Some("linux")
                    && p.get("architecture").and_then(Value::as_str) == Some(arch)
            })
        })
        .or(index.manifests.first())
        .ok_or_else(|| "image index lists no manifests".to_string())
}

/// An archive's own manifest: its path in the archive and its media type.
type StagedManifest = (String, String);

fn ingest(
    store: &Store,
    st: &Staging,
    cands: &[Candidate],
    opts: &Options,
    bars: &Bars,
    pending: &mut Vec<PathBuf>,
) -> Result<Vec<(Digest, Vec<String>)>, String> {
    // diff ID -> (temp dir, info) of layers unpacked by this load.
    let mut fresh: BTreeMap<Digest, (PathBuf, LayerInfo)> = BTreeMap::new();
    let mut blobs: BTreeSet<String> = BTreeSet::new();
    // (generated manifest bytes, or the archive's manifest path and media type)
    let mut manifests: Vec<(Vec<u8>, Option<StagedManifest>)> = Vec::new();
    for c in cands {
        let cfg = st.get(&c.config)?;
        let (config, _): (Value, _) = st.json(&c.config)?;
        let diff_ids = config_diff_ids(&config).map_err(|m| format!("{}: {m}", c.config))?;
        if diff_ids.len() != c.layers.len() {
            return Err(format!(
                "{}: config lists {} diff IDs but the image has {} layers",
                c.config,
                diff_ids.len(),
                c.layers.len()
            ));
        }
        let mut descs = Vec::new();
        for (i, (lpath, want)) in c.layers.iter().zip(&diff_ids).enumerate() {
            let want = Digest::parse(want).map_err(|m| format!("{}: {m}", c.config))?;
            let blob = st.get(lpath)?;
            let open = || File::open(&blob.path).map_err(|e| format!("layer {lpath}: {e}"));
            let mismatch = |got: &Digest| {
                format!(
                    "layer {i} ({lpath}): diff ID mismatch: the config says {want}, \
                     the content is {got}"
                )
            };
            if fresh.contains_key(&want) || (store.has_layer(&want) && store.has_blob(&blob.digest))
            {
                // Unpacked (and verified) already.
            } else if store.has_layer(&want) {
                let (got, _) = unpack::diff_id_of(open()?, &opts.limits)
                    .map_err(|m| format!("layer {lpath}: {m}"))?;
                if got != want {
                    return Err(mismatch(&got));
                }
            } else {
                let dir = store.tmp_path("layer");
                fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                pending.push(dir.clone());
                let bar = bars.add(blob.digest.as_str(), blob.size);
                let counted = Counting {
                    inner: open()?,
                    bar: &bar,
                };
                let u = unpack::unpack_layer(counted, &dir, opts)
                    .map_err(|m| format!("layer {i} ({lpath}): {m}"))?;
                bar.finish_with_message("loaded");
                if u.diff_id != want {
                    return Err(mismatch(&u.diff_id));
                }
                let info = LayerInfo {
                    diff_id: want.to_string(),
                    size: u.size,
                    entries: u.entries,
                };
                fresh.insert(want, (dir, info));
            }
            let mut head = [0u8; 4];
            let n = open()?.read(&mut head).unwrap_or(0);
            descs.push(Descriptor::new(
                layer_media_type(&head[..n]),
                blob.digest.as_str(),
                blob.size,
            ));
            blobs.insert(lpath.clone());
        }
        blobs.insert(c.config.clone());
        let manifest = match &c.manifest {
            Some(p) => {
                blobs.insert(p.clone());
                let (m, _): (Manifest, _) = st.json(p)?;
                let mt = m.media_type.unwrap_or_else(|| MT_OCI_MANIFEST.into());
                (Vec::new(), Some((p.clone(), mt)))
            }
            None => {
                let m = Manifest {
                    schema_version: 2,
                    media_type: Some(MT_OCI_MANIFEST.into()),
                    config: Descriptor::new(MT_OCI_CONFIG, cfg.digest.as_str(), cfg.size),
                    layers: descs,
                    annotations: None,
                };
                (serde_json::to_vec(&m).map_err(|e| e.to_string())?, None)
            }
        };
        manifests.push(manifest);
    }
    // Everything checked: make it visible.
    for p in &blobs {
        store.commit_blob(st.get(p)?)?;
    }
    let mut mdescs = Vec::new();
    for (bytes, staged) in &manifests {
        let (digest, size, mt) = match staged {
            Some((p, mt)) => {
                let s = st.get(p)?;
                (s.digest.clone(), s.size, mt.clone())
            }
            None => (
                store.put_blob_bytes(bytes)?,
                bytes.len() as u64,
                MT_OCI_MANIFEST.to_string(),
            ),
        };
        mdescs.push(Descriptor::new(&mt, digest.as_str(), size));
    }
    sync_dir(&store.root().join("blobs/sha256"))?;
    for (dir, info) in fresh.values() {
        store.publish_layer(dir, info)?;
    }
    let mut index = store.read_index()?;
    let mut out = Vec::new();
    for (c, md) in cands.iter().zip(&mdescs) {
        for t in &c.tags {
            Store::set_tag(&mut index, t, md);
        }
        if c.tags.is_empty() && !index.manifests.iter().any(|d| d.digest == md.digest) {
            index.manifests.push(md.clone());
        }
        let id = st.get(&c.config)?.digest.clone();
        out.push((id, c.tags.iter().map(Reference::to_string).collect()));
    }
    store.write_index(&index)?;
    Ok(out)
}

/// Writes the images named by `names` (references or IDs) as one archive to `out`.
pub fn save(store: &Store, names: &[String], out: impl Write) -> Result<(), String> {
    // manifest digest -> (image, tags to record)
    let mut chosen: Vec<(super::store::Image, Vec<String>)> = Vec::new();
    for n in names {
        let img = store.resolve(n)?;
        let tag = Reference::parse(n)
            .ok()
            .map(|r| r.to_string())
            .filter(|t| img.tags.contains(t));
        let slot = match chosen
            .iter()
            .position(|(i, _)| i.manifest_digest == img.manifest_digest)
        {
            Some(p) => p,
            None => {
                chosen.push((img, Vec::new()));
                chosen.len() - 1
            }
        };
        if let Some(t) = tag
            && !chosen[slot].1.contains(&t)
        {
            chosen[slot].1.push(t);
        }
    }
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut docker = Vec::new();
    let mut index = Index::default();
    for (img, tags) in &chosen {
        blobs.insert(img.manifest_digest.clone());
        blobs.insert(img.config_digest.clone());
        let mut layers = Vec::new();
        for l in &img.manifest.layers {
            let d = Digest::parse(&l.digest)?;
            layers.push(format!("blobs/sha256/{}", d.hex()));
            blobs.insert(d);
        }
        docker.push(DockerArchiveEntry {
            config: format!("blobs/sha256/{}", img.config_digest.hex()),
            repo_tags: Some(tags.clone()),
            layers,
        });
        let base = Descriptor::new(
            img.manifest
                .media_type
                .as_deref()
                .unwrap_or(MT_OCI_MANIFEST),
            img.manifest_digest.as_str(),
            img.manifest_size,
        );
        if tags.is_empty() {
            index.manifests.push(base.clone());
        }
        for t in tags {
            let r = Reference::parse(t)?;
            let mut d = base.clone();
            d.annotations = Some(BTreeMap::from([
                (ANN_IMAGE_NAME.to_string(), t.clone()),
                (ANN_REF_NAME.to_string(), r.tag.clone()),
            ]));
            index.manifests.push(d);
        }
    }
    let mut b = tar::Builder::new(out);
    let dir = |b: &mut tar::Builder<_>, p: &str| {
        let mut h = header(EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, p, std::io::empty())
    };
    let io = |e: std::io::Error| format!("cannot write the archive: {e}");
    dir(&mut b, "blobs/").map_err(io)?;
    dir(&mut b, "blobs/sha256/").map_err(io)?;
    for d in &blobs {
        let p = store.blob_path(d);
        let f = File::open(&p).map_err(|e| format!("blob {d} is missing from the store: {e}"))?;
        let len = f.metadata().map_err(io)?.len();
        let mut h = header(EntryType::Regular, 0o644, len);
        // Verify on the way out: a corrupt store blob must not travel.
        let mut hr = super::digest::HashingReader::new(f);
        b.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), &mut hr)
            .map_err(io)?;
        let (got, _) = hr.finish().map_err(io)?;
        if got != *d {
            return Err(format!(
                "blob {d} in the store is corrupt (content is {got})"
            ));
        }
    }
    let files = [
        (
            "index.json",
            serde_json::to_vec(&index).map_err(|e| e.to_string())?,
        ),
        (
            "manifest.json",
            serde_json::to_vec(&docker).map_err(|e| e.to_string())?,
        ),
        ("oci-layout", super::layout::OCI_LAYOUT_CONTENT.to_vec()),
    ];
    for (name, data) in files {
        let mut h = header(EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, name, &data[..]).map_err(io)?;
    }
    let mut w = b.into_inner().map_err(io)?;
    w.flush().map_err(io)
}

fn header(kind: EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}
