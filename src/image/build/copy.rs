//! What COPY and ADD write into a step's root filesystem (the container's union mount):
//! files, directory contents, symlinks as symlinks, heredoc files, and the local archives
//! ADD unpacks. Every destination path is resolved inside the rootfs ([`Root::resolve`]),
//! so an image's symlink can never send a write to the host.
//!
//! Docker's rules: a directory source copies its contents; with several sources or a
//! destination ending in `/` (or an existing directory) files land in it under their names,
//! otherwise the destination is the file's new name; missing parents are made (0755, root).
//! Owners are 0:0 (`--chown` overrides; `--from` keeps the source's), modes are the source's
//! (`--chmod` overrides), modification times are kept.

use super::context::{Root, Source};
use crate::image::store::{Store, remove_tree};
use crate::image::unpack;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Ownership and mode rules of one COPY/ADD.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<u32>,
    /// Keep the source's owner when there is no --chown (COPY --from).
    pub keep_owner: bool,
}

impl Attrs {
    fn owner(&self, m: &fs::Metadata) -> (u32, u32) {
        match self.chown {
            Some(o) => o,
            None if self.keep_owner => (m.uid(), m.gid()),
            None => (0, 0),
        }
    }
}

fn err(p: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", p.display())
}

/// The rootfs path `comps`, made a directory if missing (parents too, 0755 root).
fn mkdir_p(rootfs: &Root, path: &str) -> Result<Vec<String>, String> {
    let comps = rootfs.resolve(path, true)?;
    for n in 1..=comps.len() {
        let p = rootfs.host(&comps[..n]);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("/{} is not a directory", comps[..n].join("/"))),
            Err(_) => {
                fs::create_dir(&p).map_err(|e| err(&p, e))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                    .map_err(|e| err(&p, e))?;
            }
        }
    }
    Ok(comps)
}

/// Where the entry `name` below the (rootfs) directory `dir_path` lives on the host,
/// the directory resolved inside the rootfs and created when missing.
fn target(rootfs: &Root, dir_path: &str, name: &str) -> Result<PathBuf, String> {
    let dir = mkdir_p(rootfs, dir_path)?;
    let mut p = rootfs.host(&dir);
    p.push(name);
    Ok(p)
}

/// Clears the way for a new non-directory at `p` (an old file or symlink goes; a
/// directory is an error).
fn make_room(p: &Path) -> Result<(), String> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err(format!(
            "cannot overwrite directory {} with a non-directory",
            p.display()
        )),
        Ok(_) => fs::remove_file(p).map_err(|e| err(p, e)),
        Err(_) => Ok(()),
    }
}

fn apply(p: &Path, m: &fs::Metadata, a: &Attrs, is_link: bool) -> Result<(), String> {
    let (uid, gid) = a.owner(m);
    lchown(p, Some(uid), Some(gid)).map_err(|e| err(p, e))?;
    if !is_link {
        let mode = a.chmod.unwrap_or(m.permissions().mode() & 0o7777);
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| err(p, e))?;
    }
    Ok(())
}

fn set_mtime(p: &Path, m: &fs::Metadata) {
    if let (Ok(f), Ok(t)) = (File::open(p), m.modified()) {
        let _ = f.set_modified(t);
    }
}

/// One non-directory entry from `src` to the host path `dst`.
fn copy_entry(src: &Path, dst: &Path, a: &Attrs) -> Result<(), String> {
    let m = fs::symlink_metadata(src).map_err(|e| err(src, e))?;
    make_room(dst)?;
    let ft = m.file_type();
    if ft.is_symlink() {
        let t = fs::read_link(src).map_err(|e| err(src, e))?;
        symlink(&t, dst).map_err(|e| err(dst, e))?;
        return apply(dst, &m, a, true);
    }
    if !ft.is_file() {
        return Err(format!(
            "{}: only files, directories and symlinks can be copied",
            src.display()
        ));
    }
    let mut from = File::open(src).map_err(|e| err(src, e))?;
    let mut to = File::create_new(dst).map_err(|e| err(dst, e))?;
    std::io::copy(&mut from, &mut to).map_err(|e| err(dst, e))?;
    drop(to);
    apply(dst, &m, a, false)?;
    set_mtime(dst, &m);
    Ok(())
}

/// Copies `sources` (of `from`) to `dest` (absolute, in `rootfs`).
pub fn copy_sources(
    from: &Root,
    sources: &[Source],
    rootfs: &Root,
    dest: &str,
    a: &Attrs,
) -> Result<(), String> {
    let dest_is_dir = dest.ends_with('/')
        || sources.len() > 1
        || rootfs
            .resolve(dest, true)
            .is_ok_and(|c| rootfs.host(&c).is_dir());
    for s in sources {
        let m = fs::metadata(&s.host).map_err(|e| err(&s.host, e))?;
        if m.is_dir() {
            let existed = rootfs
                .resolve(dest, true)
                .is_ok_and(|c| rootfs.host(&c).is_dir());
            let top = mkdir_p(rootfs, dest)?;
            let top_host = rootfs.host(&top);
            // A directory made here takes the source's; an existing one keeps its own.
            if !existed {
                apply(&top_host, &m, a, false)?;
            }
            let entries = from.walk(&s.rel)?;
            let mut dirs = vec![(top_host, m.clone())];
            for sub in entries {
                let (name, parent) = sub.split_last().expect("walk yields non-empty paths");
                let parent_path = format!("{}/{}", dest.trim_end_matches('/'), parent.join("/"));
                let mut src = s.host.clone();
                src.extend(sub.iter());
                let sm = fs::symlink_metadata(&src).map_err(|e| err(&src, e))?;
                let dst = target(rootfs, &parent_path, name)?;
                if sm.is_dir() {
                    match fs::symlink_metadata(&dst) {
                        Ok(d) if d.is_dir() => {}
                        Ok(_) => {
                            fs::remove_file(&dst).map_err(|e| err(&dst, e))?;
                            fs::create_dir(&dst).map_err(|e| err(&dst, e))?;
                        }
                        Err(_) => fs::create_dir(&dst).map_err(|e| err(&dst, e))?,
                    }
                    apply(&dst, &sm, a, false)?;
                    dirs.push((dst, sm));
                } else {
                    copy_entry(&src, &dst, a)?;
                }
            }
            // Directory times last: writing into a directory changes its mtime.
            for (d, dm) in dirs.iter().rev() {
                set_mtime(d, dm);
            }
        } else {
            let name = s.rel.last().cloned().unwrap_or_default();
            let dst = if dest_is_dir {
                target(rootfs, dest, &name)?
            } else {
                let (parent, leaf) = split_dest(dest);
                target(rootfs, parent, leaf)?
            };
            // A source symlink was resolved: copy what it points at.
            let real = fs::canonicalize(&s.host).map_err(|e| err(&s.host, e))?;
            copy_entry(&real, &dst, a)?;
        }
    }
    Ok(())
}

fn split_dest(dest: &str) -> (&str, &str) {
    let d = dest.trim_end_matches('/');
    match d.rsplit_once('/') {
        Some((p, l)) => (if p.is_empty() { "/" } else { p }, l),
        None => ("/", d),
    }
}

/// A heredoc of COPY/ADD: the file `name` in `dest` (a directory when it ends in `/`).
pub fn write_inline(
    rootfs: &Root,
    dest: &str,
    name: &str,
    body: &str,
    a: &Attrs,
) -> Result<(), String> {
    let dst = if dest.ends_with('/') {
        target(rootfs, dest, name)?
    } else {
        let (parent, leaf) = split_dest(dest);
        target(rootfs, parent, leaf)?
    };
    make_room(&dst)?;
    let mut f = File::create_new(&dst).map_err(|e| err(&dst, e))?;
    f.write_all(body.as_bytes()).map_err(|e| err(&dst, e))?;
    let (uid, gid) = a.chown.unwrap_or((0, 0));
    lchown(&dst, Some(uid), Some(gid)).map_err(|e| err(&dst, e))?;
    fs::set_permissions(&dst, fs::Permissions::from_mode(a.chmod.unwrap_or(0o644)))
        .map_err(|e| err(&dst, e))
}

/// Compression of a local archive ADD unpacks, by magic bytes; None: not an archive.
pub fn archive_kind(p: &Path) -> Option<&'static str> {
    let mut head = [0u8; 512];
    let mut f = File::open(p).ok()?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let h = &head[..n];
    if h.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if h.starts_with(b"BZh") {
        Some("bzip2")
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if n == 512 && &h[257..262] == b"ustar" {
        Some("tar")
    } else {
        None
    }
}

/// ADD of a local archive: unpacked by the hostile-input-safe unpacker into STORE/tmp
/// (bzip2 and xz decompressed by the system's tools on the way), then merged into `dest`.
pub fn add_archive(
    st: &Store,
    archive: &Path,
    kind: &str,
    rootfs: &Root,
    dest: &str,
) -> Result<(), String> {
    let tmp = st.tmp_path("add");
    fs::create_dir(&tmp).map_err(|e| err(&tmp, e))?;
    let res = (|| {
        let opts = unpack::Options {
            limits: unpack::Limits::default(),
            as_root: crate::image::store::is_root(),
        };
        let file = File::open(archive).map_err(|e| err(archive, e))?;
        match kind {
            "bzip2" | "xz" => {
                let mut child = Command::new(kind)
                    .arg("-dc")
                    .stdin(file)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| {
                        format!("cannot run {kind} to unpack {}: {e}", archive.display())
                    })?;
                let out = child.stdout.take().expect("piped");
                let r = unpack::unpack_layer(out, &tmp, &opts);
                let o = child.wait_with_output().map_err(|e| e.to_string())?;
                r?;
                if !o.status.success() {
                    return Err(format!(
                        "{kind} -dc {}: {}",
                        archive.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
            }
            _ => {
                unpack::unpack_layer(file, &tmp, &opts)?;
            }
        }
        let unpacked = Root::rootfs(&tmp);
        let src = Source {
            rel: Vec::new(),
            host: tmp.clone(),
        };
        let dir_dest = format!("{}/", dest.trim_end_matches('/'));
        copy_sources(
            &unpacked,
            &[src],
            rootfs,
            &dir_dest,
            &Attrs {
                keep_owner: true,
                ..Attrs::default()
            },
        )
    })();
    let _ = remove_tree(&tmp);
    res
}
