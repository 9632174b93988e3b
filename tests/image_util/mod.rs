//! Helpers for the image tests: raw tar writing (so hostile names are possible), layer and
//! docker-archive / OCI-layout builders, the CLI runner and a store snapshot.
#![allow(dead_code)]

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

pub fn sha(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// One raw tar entry: bytes as given, nothing validated.
#[derive(Clone)]
pub struct E {
    pub name: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
}

pub fn file(name: &str, data: &[u8]) -> E {
    E {
        name: name.as_bytes().to_vec(),
        kind: b'0',
        mode: 0o644,
        link: Vec::new(),
        data: data.to_vec(),
    }
}
pub fn dir(name: &str) -> E {
    E {
        kind: b'5',
        mode: 0o755,
        ..file(name, b"")
    }
}
pub fn symlink(name: &str, target: &str) -> E {
    E {
        kind: b'2',
        mode: 0o777,
        link: target.as_bytes().to_vec(),
        ..file(name, b"")
    }
}
pub fn hardlink(name: &str, target: &str) -> E {
    E {
        kind: b'1',
        link: target.as_bytes().to_vec(),
        ..file(name, b"")
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0w$o}\0", v, w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn header(name: &[u8], kind: u8, mode: u32, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut v = format!("{len} {key}=").into_bytes();
    v.extend_from_slice(value);
    v.push(b'\n');
    v
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
}

/// A tar of `entries`, names longer than 100 bytes carried by pax records.
pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if e.name.len() > 100 || e.link.len() > 100 {
            let mut recs = Vec::new();
            if e.name.len() > 100 {
                recs.extend(pax_record("path", &e.name));
            }
            if e.link.len() > 100 {
                recs.extend(pax_record("linkpath", &e.link));
            }
            out.extend_from_slice(&header(
                b"././@PaxHeader",
                b'x',
                0o644,
                recs.len() as u64,
                b"",
            ));
            out.extend(recs);
            pad(&mut out);
        }
        out.extend_from_slice(&header(
            &e.name,
            e.kind,
            e.mode,
            e.data.len() as u64,
            &e.link,
        ));
        out.extend_from_slice(&e.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[derive(Clone, Copy)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub diff_id: String,
}

pub fn layer(entries: &[E], comp: Comp) -> Layer {
    let t = tar(entries);
    let diff_id = format!("sha256:{}", sha(&t));
    let blob = match comp {
        Comp::None => t,
        Comp::Gzip => {
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            g.write_all(&t).unwrap();
            g.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(&t[..], 1).unwrap(),
    };
    Layer { blob, diff_id }
}

/// An image config listing `layers` (one history entry each, plus an empty one).
pub fn config(layers: &[&Layer], created: &str) -> Vec<u8> {
    let mut history: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(
            |(i, _)| serde_json::json!({"created": created, "created_by": format!("RUN step {i}")}),
        )
        .collect();
    history.push(
        serde_json::json!({"created": created, "created_by": "CMD [\"sh\"]", "empty_layer": true}),
    );
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "history": history,
    }))
    .unwrap()
}

pub struct ArchImage<'a> {
    pub tags: Vec<&'a str>,
    pub config: Vec<u8>,
    pub layers: Vec<&'a Layer>,
}

/// A legacy docker-archive: `<hex>.json` configs, `<n>/layer.tar` layers, manifest.json.
pub fn docker_archive(images: &[ArchImage<'_>]) -> Vec<u8> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifest = Vec::new();
    for img in images {
        let cname = format!("{}.json", sha(&img.config));
        files.insert(cname.clone(), img.config.clone());
        let mut lnames = Vec::new();
        for l in &img.layers {
            let n = format!("{}/layer.tar", sha(&l.blob));
            files.insert(n.clone(), l.blob.clone());
            lnames.push(n);
        }
        manifest.push(serde_json::json!({"Config": cname, "RepoTags": img.tags, "Layers": lnames}));
    }
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    );
    tar(&files.iter().map(|(n, d)| file(n, d)).collect::<Vec<_>>())
}

/// An OCI layout tar of one image tagged `name` (ref.name = the full name), with `blobs`
/// replacing any blob by path (to plant bad content).
pub fn oci_archive(
    name: &str,
    img: &ArchImage<'_>,
    drop_blob: Option<&str>,
    bad: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let cdig = sha(&img.config);
    files.insert(format!("blobs/sha256/{cdig}"), img.config.clone());
    let mut layers = Vec::new();
    for l in &img.layers {
        let d = sha(&l.blob);
        files.insert(format!("blobs/sha256/{d}"), l.blob.clone());
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{d}"), "size": l.blob.len()}));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{cdig}"), "size": img.config.len()},
        "layers": layers,
    }))
    .unwrap();
    let mdig = sha(&manifest);
    files.insert(format!("blobs/sha256/{mdig}"), manifest.clone());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{mdig}"),
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": name}}]});
    files.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
    files.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    );
    if let Some(d) = drop_blob {
        files.remove(d);
    }
    if let Some((p, data)) = bad {
        files.insert(p.to_string(), data.to_vec());
    }
    tar(&files.iter().map(|(n, d)| file(n, d)).collect::<Vec<_>>())
}

pub fn unionrs(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run unionrs")
}

/// Runs and insists on success; returns stdout.
pub fn ok(store: &Path, args: &[&str]) -> String {
    let o = unionrs(store, args);
    assert!(
        o.status.success(),
        "unionrs {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs and insists on failure; returns stderr.
pub fn fails(store: &Path, args: &[&str]) -> String {
    let o = unionrs(store, args);
    assert!(
        !o.status.success(),
        "unionrs {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

/// Every path under `root` (but the lock file) with its type, mode and content hash.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "lock" {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            let v = if m.is_dir() {
                walk(root, &path, out);
                format!("dir {:o}", m.mode())
            } else if m.is_symlink() {
                format!("link {:?}", std::fs::read_link(&path).unwrap())
            } else {
                format!(
                    "file {:o} {}",
                    m.mode(),
                    sha(&std::fs::read(&path).unwrap())
                )
            };
            out.insert(rel, v);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}
