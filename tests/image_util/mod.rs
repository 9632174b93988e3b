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
    pub uid: u32,
    pub gid: u32,
    /// Written as pax `SCHILY.xattr.NAME` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

pub fn file(name: &str, data: &[u8]) -> E {
    E {
        name: name.as_bytes().to_vec(),
        kind: b'0',
        mode: 0o644,
        link: Vec::new(),
        data: data.to_vec(),
        uid: 0,
        gid: 0,
        xattrs: Vec::new(),
    }
}
pub fn fifo(name: &str) -> E {
    E {
        kind: b'6',
        ..file(name, b"")
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
    owned_header(name, kind, mode, size, link, 0, 0)
}

fn owned_header(
    name: &[u8],
    kind: u8,
    mode: u32,
    size: u64,
    link: &[u8],
    uid: u32,
    gid: u32,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], uid as u64);
    octal(&mut h[116..124], gid as u64);
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
        if e.name.len() > 100 || e.link.len() > 100 || !e.xattrs.is_empty() {
            let mut recs = Vec::new();
            if e.name.len() > 100 {
                recs.extend(pax_record("path", &e.name));
            }
            if e.link.len() > 100 {
                recs.extend(pax_record("linkpath", &e.link));
            }
            for (k, v) in &e.xattrs {
                recs.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
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
        out.extend_from_slice(&owned_header(
            &e.name,
            e.kind,
            e.mode,
            e.data.len() as u64,
            &e.link,
            e.uid,
            e.gid,
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

/// Unmounts (lazily) on drop, so a failed assertion does not leave a mount behind.
pub struct Unmount(pub std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.0)
            .output();
    }
}

/// True when this test process may mount (root, /dev/fuse, fusermount3).
pub fn can_mount() -> bool {
    Path::new("/dev/fuse").exists()
        && std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        && have("fusermount3")
}

/// A layer holding Debian's static busybox as /bin/busybox with the applets the tests use
/// as symlinks, /etc/passwd and /etc/group with a user `app` (1000:1000, also in group
/// `staff` 50), /tmp (1777) and /home/app owned by app. Needs busybox-static
/// (scripts/setup.sh installs it).
pub fn busybox_layer() -> Layer {
    let bin = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: apt-get install busybox-static (scripts/setup.sh)");
    let mut entries = vec![
        dir("bin"),
        E {
            mode: 0o755,
            ..file("bin/busybox", &bin)
        },
    ];
    for applet in [
        "sh", "cat", "echo", "ls", "id", "pwd", "env", "test", "rm", "mkdir", "sleep", "touch",
        "stat", "wc", "true",
    ] {
        entries.push(symlink(&format!("bin/{applet}"), "busybox"));
    }
    entries.extend([
        dir("etc"),
        file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        ),
        file("etc/group", b"root:x:0:\nstaff:x:50:app\napp:x:1000:\n"),
        E {
            mode: 0o1777,
            ..dir("tmp")
        },
        dir("home"),
        E {
            uid: 1000,
            gid: 1000,
            ..dir("home/app")
        },
        dir("root"),
    ]);
    layer(&entries, Comp::Gzip)
}

/// Loads a docker-archive of one image `tag` over `layers` with `config` JSON.
pub fn load_image(store: &Path, tmp: &Path, tag: &str, layers: &[&Layer], config: Vec<u8>) {
    let f = write(
        tmp,
        &format!("{}.tar", sha(tag.as_bytes())),
        &docker_archive(&[ArchImage {
            tags: vec![tag],
            config,
            layers: layers.to_vec(),
        }]),
    );
    ok(store, &["load", "-i", f.to_str().unwrap()]);
}

/// An image config over `layers` with the given `config` object (Cmd, Env, ...).
pub fn config_with(layers: &[&Layer], inner: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Every entry under `root` (root itself as "."), with what two trees holding the same
/// files must agree on: type, mode, owner, size and content hash, symlink target, device
/// number, `user.*` xattrs, and which other paths are hard links of it.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    fn xattrs(p: &Path) -> Vec<String> {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return Vec::new();
        };
        let c = std::ffi::CString::new(parent.as_os_str().as_bytes()).unwrap();
        let dir = unionrs::sys::fs::open_path(&c, libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let name = name.as_bytes();
        let mut out: Vec<String> = unionrs::sys::xattr::list(std::os::fd::AsFd::as_fd(&dir), name)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.starts_with(b"user."))
            .map(|a| {
                let v = unionrs::sys::xattr::get(std::os::fd::AsFd::as_fd(&dir), name, &a)
                    .unwrap_or_default();
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect();
        out.sort();
        out
    }
    fn walk(
        root: &Path,
        p: &Path,
        out: &mut BTreeMap<String, String>,
        inodes: &mut BTreeMap<u64, Vec<String>>,
    ) {
        let rel = match p.strip_prefix(root).unwrap().to_string_lossy() {
            r if r.is_empty() => ".".to_string(),
            r => r.into_owned(),
        };
        let m = std::fs::symlink_metadata(p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link -> {}", std::fs::read_link(p).unwrap().display())
        } else if ft.is_file() {
            inodes.entry(m.ino()).or_default().push(rel.clone());
            format!("file {} {}", m.size(), sha(&std::fs::read(p).unwrap()))
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {:x}", m.rdev())
        } else {
            "other".to_string()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            rel,
            format!(
                "{what} mode {mode:o} owner {}:{} xattrs {:?}",
                m.uid(),
                m.gid(),
                xattrs(p)
            ),
        );
        if ft.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for n in names {
                walk(root, &n, out, inodes);
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    for group in inodes.values().filter(|g| g.len() > 1) {
        for p in group {
            out.get_mut(p)
                .unwrap()
                .push_str(&format!(" links {group:?}"));
        }
    }
    out
}

/// The differences between two trees, one line each, for an assertion message.
pub fn tree_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only in first: {k}: {v}")),
            Some(w) if w != v => out.push(format!("{k}:\n   first  {v}\n   second {w}")),
            _ => {}
        }
    }
    for (k, w) in b {
        if !a.contains_key(k) {
            out.push(format!("only in second: {k}: {w}"));
        }
    }
    out
}

/// Lazily unmounts, on drop, every mount below a directory (the containers of a store,
/// whatever their names), so a failed test leaves no mount behind.
pub struct UnmountUnder(pub std::path::PathBuf);
impl Drop for UnmountUnder {
    fn drop(&mut self) {
        let prefix = format!("{}/", self.0.display());
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for l in mounts.lines() {
            if let Some(mp) = l.split(' ').nth(1)
                && mp.starts_with(&prefix)
            {
                let _ = Command::new("fusermount3").args(["-u", "-z", mp]).output();
                let _ = Command::new("umount").args(["-l", mp]).output();
            }
        }
    }
}

/// Fails loudly unless containers can run here: root, /dev/fuse, fusermount3 and runc.
pub fn preflight() {
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    assert!(
        Path::new("/usr/sbin/runc").exists() || have("runc"),
        "runc is missing: scripts/setup.sh installs it"
    );
}

/// A store holding `bb:1`: busybox with PATH=/bin and Cmd `sh`.
pub fn store_with_busybox(tmp: &Path) -> std::path::PathBuf {
    let store = tmp.join("store");
    let bb = busybox_layer();
    load_image(
        &store,
        tmp,
        "bb:1",
        &[&bb],
        config_with(
            &[&bb],
            serde_json::json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]}),
        ),
    );
    store
}

/// A command's stdout, lossily.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr, lossily.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
