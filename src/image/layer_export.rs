//! An overlay upper directory -> an OCI/Docker layer tar, deterministically (the heart of
//! `commit`).
//!
//! Conversion (kernel overlayfs upper format -> OCI layer format):
//! - character device 0/0, or a zero-size regular file with `trusted.overlay.whiteout` /
//!   `user.overlay.whiteout`: a whiteout, written as an empty regular file `DIR/.wh.NAME`
//!   (mode 0, owner 0:0, the whiteout's mtime). An existing `.wh.NAME` file passes through.
//! - directory with `trusted.overlay.opaque=y` / `user.overlay.opaque=y` (or holding a
//!   `.wh..wh..opq` file): the directory, then an empty `DIR/.wh..wh..opq` (mode 0, owner
//!   0:0, the directory's mtime) right after it, before its children. `opaque=x` (a
//!   directory that merely holds xattr whiteouts) is not opaque.
//! - `redirect` (a renamed lower directory) and `metacopy` (data still in a lower) cannot
//!   be exported from the upper alone: an error, unless the caller gives the live union
//!   mount of this upper ([`export_upper_merged`], what `commit` does). Then a redirect dir
//!   is written from the mount as an opaque directory with its whole merged content (the
//!   lowers' entries under its old name included), and a metacopy file with the data the
//!   mount shows.
//! - regular files with data, directories, symlinks, fifos, character and block devices.
//!   Names sharing an inode: the first in archive order is written in full, later ones are
//!   hardlink entries to it. Sockets are skipped: tar has no socket entry type.
//! - a lower file with several names, copied up through one of them, is shared by all of
//!   them (through the workdir's index) though the upper holds only that one: with the live
//!   mount given, the other names (found by the link count the mount shows, then by inode
//!   number in one walk of the mount) follow at the end of the archive as hardlink entries
//!   to it, with the lower directories on their way, so the image shows what the container
//!   showed.
//! - kept: permission bits (with setuid/setgid/sticky), uid, gid, mtime in seconds, size,
//!   device numbers, exported xattrs (see [`crate::image::xattr::is_exported`]); never
//!   atime, ctime, uname, gname. Tar format: see [`crate::image::pax`].
//!
//! Order: children sorted by their byte name in the archive (so a whiteout sorts as
//! `.wh.NAME`), depth first, each directory before what it holds. The upper root itself is
//! not an entry (layers hold no `./`), and its own xattrs are ignored.
//!
//! The upper must not change while it is exported (unmounted, or the container stopped):
//! a file whose size or identity changes under us is an error rather than a silent
//! mis-archive. Without `src/sys` (openat2) the walk uses paths with lstat and
//! O_NOFOLLOW opens, which is enough for a quiescent directory but not for a hostile one.

use super::digest::Digest;
use super::hash_writer::HashingWriter;
use super::pax::{EntrySpec, append_entry};
use super::xattr::{SysXattrs, XattrSource, Xattrs};
use crate::sys::fs as sfs;
use crate::union::whiteout::{
    Marker, OPAQUE_MARKER, WH_PREFIX, is_xattr_whiteout, marks_opaque, marks_xattr_whiteouts,
};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tar::{Builder, EntryType};

/// What an exported layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The digest of the uncompressed tar (the OCI diff ID).
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    /// Archive entries written (whiteouts and opaque markers included, pax headers not).
    pub entries: u64,
}

/// Why an export failed. Every message is one line and names the path concerned.
#[derive(Debug)]
pub enum ExportError {
    /// The upper path is not a directory.
    NotADirectory(PathBuf),
    /// Reading the upper failed.
    Read { path: PathBuf, source: io::Error },
    /// Reading an entry's extended attributes failed.
    Xattr { path: PathBuf, source: io::Error },
    /// An xattr name a pax record cannot hold (it contains `=`).
    XattrName { path: PathBuf, name: Vec<u8> },
    /// A renamed lower directory (`trusted.overlay.redirect`): needs the lowers.
    Redirect(PathBuf),
    /// A metadata-only copy-up (`trusted.overlay.metacopy`): its data is in a lower.
    Metacopy(PathBuf),
    /// A file changed size or identity while being exported.
    Changed(PathBuf),
    /// Writing the tar failed.
    Write(io::Error),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::NotADirectory(p) => {
                write!(f, "upper {} is not a directory", p.display())
            }
            ExportError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ExportError::Xattr { path, source } => {
                write!(f, "cannot read xattrs of {}: {source}", path.display())
            }
            ExportError::XattrName { path, name } => write!(
                f,
                "xattr {:?} of {} has '=' in its name, which a tar pax record cannot hold",
                String::from_utf8_lossy(name),
                path.display()
            ),
            ExportError::Redirect(p) => write!(
                f,
                "upper dir {} is a renamed lower directory (trusted.overlay.redirect); \
                 exporting it needs the lower layers",
                p.display()
            ),
            ExportError::Metacopy(p) => write!(
                f,
                "upper entry {} is a metadata-only copy-up (trusted.overlay.metacopy); \
                 its data lives in a lower layer, exporting it needs the lower layers",
                p.display()
            ),
            ExportError::Changed(p) => write!(
                f,
                "{} changed while being exported; stop the container or unmount first",
                p.display()
            ),
            ExportError::Write(e) => write!(f, "cannot write the layer tar: {e}"),
        }
    }
}

impl std::error::Error for ExportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExportError::Read { source, .. } | ExportError::Xattr { source, .. } => Some(source),
            ExportError::Write(e) => Some(e),
            _ => None,
        }
    }
}

/// Writes the layer tar of `upper` to `out`, `upper` itself
/// may be a symlink to the directory; nothing below it is followed.
pub fn export_upper(upper: &Path, out: impl Write) -> Result<LayerInfo, ExportError> {
    export_upper_with(upper, out, &SysXattrs)
}

/// [`export_upper`], with `merged` the live union mount of `upper` (over the layers it was
/// written on): entries that need the lowers (redirect dirs, metacopy files) are read from
/// there instead of failing.
pub fn export_upper_merged(
    upper: &Path,
    merged: &Path,
    out: impl Write,
) -> Result<LayerInfo, ExportError> {
    export(upper, Some(merged), out, &SysXattrs)
}

/// [`export_upper`] with the xattr reader chosen by the caller.
pub fn export_upper_with(
    upper: &Path,
    out: impl Write,
    xattrs: &dyn XattrSource,
) -> Result<LayerInfo, ExportError> {
    export(upper, None, out, xattrs)
}

fn export(
    upper: &Path,
    merged: Option<&Path>,
    out: impl Write,
    xattrs: &dyn XattrSource,
) -> Result<LayerInfo, ExportError> {
    let root = fs::metadata(upper).map_err(|source| ExportError::Read {
        path: upper.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(ExportError::NotADirectory(upper.to_path_buf()));
    }
    let mut ex = Exporter {
        builder: Builder::new(HashingWriter::new(out)),
        xattrs,
        merged,
        links: HashMap::new(),
        names: HashMap::new(),
        written: HashSet::new(),
        entries: 0,
    };
    // The root's own attributes go nowhere, but it may hold xattr whiteouts.
    let root_xattrs = xattrs.read(upper).map_err(|source| ExportError::Xattr {
        path: upper.to_path_buf(),
        source,
    })?;
    let root_xwhiteouts = marks_xattr_whiteouts(root_xattrs.reader());
    ex.dir(upper, Path::new(""), false, root_xwhiteouts, 0)?;
    if let Some(merged) = merged {
        ex.lower_names_of_links(merged)?;
    }
    let mut w = ex.builder.into_inner().map_err(ExportError::Write)?;
    w.flush().map_err(ExportError::Write)?;
    let (_, diff_id, size) = w.finish();
    Ok(LayerInfo {
        diff_id,
        size,
        entries: ex.entries,
    })
}

/// The `unionrs export-layer UPPER OUT` command: writes the tar to `OUT.tmp-<pid>`, syncs
/// it and renames it to OUT, then prints the diff ID on stdout. On error the temporary file
/// is removed, so OUT is either the complete layer or untouched.
pub fn run_export_layer(upper: &Path, out: &Path) -> Result<(), String> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // create_new: never write through, or later remove, a file someone else made.
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    match write_then_rename(upper, file, &tmp, out) {
        Ok(info) => {
            println!("{}", info.diff_id);
            Ok(())
        }
        Err(msg) => {
            let _ = fs::remove_file(&tmp);
            Err(msg)
        }
    }
}

fn write_then_rename(
    upper: &Path,
    file: File,
    tmp: &Path,
    out: &Path,
) -> Result<LayerInfo, String> {
    let mut w = io::BufWriter::new(file);
    let info = export_upper(upper, &mut w).map_err(|e| e.to_string())?;
    let file = w
        .into_inner()
        .map_err(|e| format!("cannot write {}: {}", tmp.display(), e.error()))?;
    file.sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", tmp.display()))?;
    drop(file);
    fs::rename(tmp, out)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), out.display()))?;
    // Make the rename itself durable.
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(info)
}

/// What one directory entry of the upper becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Written as itself.
    Entry,
    /// A whiteout: written as `.wh.NAME`.
    Whiteout,
    /// A `.wh..wh..opq` file: makes its directory opaque (marker written right after it).
    OpaqueMarker,
    /// Not representable in tar (sockets).
    Skip,
}

/// The kind of an upper entry, from lstat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

impl Kind {
    fn of(m: &Metadata) -> Kind {
        let t = m.file_type();
        if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else if t.is_symlink() {
            Kind::Symlink
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_char_device() {
            Kind::Char
        } else if t.is_block_device() {
            Kind::Block
        } else {
            Kind::Socket
        }
    }
}

/// Why an entry cannot be exported from the upper alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedsLowers {
    Redirect,
    Metacopy,
}

/// Decides what an upper entry becomes, from its name, kind, size, rdev and xattrs, and
/// whether its directory may hold xattr whiteouts (the union's rules, `union::whiteout`).
pub fn classify(
    name: &[u8],
    kind: Kind,
    size: u64,
    rdev: u64,
    xattrs: &Xattrs,
    in_xwhiteout_dir: bool,
) -> Result<Action, NeedsLowers> {
    match kind {
        Kind::Socket => return Ok(Action::Skip),
        Kind::Char if rdev == 0 => return Ok(Action::Whiteout),
        Kind::File if size == 0 && is_xattr_whiteout(in_xwhiteout_dir, xattrs.reader()) => {
            return Ok(Action::Whiteout);
        }
        _ => {}
    }
    if xattrs.marker(Marker::Metacopy).is_some() {
        return Err(NeedsLowers::Metacopy);
    }
    if xattrs.marker(Marker::Redirect).is_some() {
        // The kernel only puts redirect on directories and on metacopy files.
        return Err(if kind == Kind::Dir {
            NeedsLowers::Redirect
        } else {
            NeedsLowers::Metacopy
        });
    }
    if kind == Kind::File && name == OPAQUE_MARKER {
        return Ok(Action::OpaqueMarker);
    }
    Ok(Action::Entry)
}

/// True if a directory's xattrs make it opaque (`opaque=y`; `x` is not opaque).
pub fn is_opaque(xattrs: &Xattrs) -> bool {
    marks_opaque(xattrs.reader())
}

/// An entry at `path` with the permission bits, owner and mtime of `m`; no data, link,
/// device or xattrs.
fn spec_of<'a>(path: &'a Path, kind: EntryType, m: &Metadata) -> EntrySpec<'a> {
    EntrySpec {
        path,
        kind,
        mode: m.mode() & 0o7777,
        uid: u64::from(m.uid()),
        gid: u64::from(m.gid()),
        mtime: m.mtime(),
        size: 0,
        link: None,
        device: None,
        xattrs: vec![],
    }
}

/// lstat(2) of `path`, failing as a read of it.
fn lstat(path: &Path) -> Result<Metadata, ExportError> {
    fs::symlink_metadata(path).map_err(|source| ExportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A directory's archive path: with a trailing `/`.
fn dir_entry_path(path: &Path) -> PathBuf {
    let mut with_slash = path.as_os_str().to_owned();
    with_slash.push("/");
    PathBuf::from(with_slash)
}

/// The regular files under `dir` (archive path `rel`) of the mount whose inode number is a
/// key of `wanted`, with the archive path of the name already written for it. Symlinks are
/// not followed, nor mounts on top of the union (device `dev`).
fn find_by_ino(
    dir: &Path,
    rel: &Path,
    dev: u64,
    wanted: &HashMap<u64, PathBuf>,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), ExportError> {
    let read_err = |source| ExportError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for de in fs::read_dir(dir).map_err(read_err)? {
        let de = de.map_err(read_err)?;
        let t = de.file_type().map_err(read_err)?;
        let child = rel.join(de.file_name());
        if t.is_dir() {
            let m = de.metadata().map_err(read_err)?;
            if m.dev() == dev {
                find_by_ino(&de.path(), &child, dev, wanted, out)?;
            }
        } else if t.is_file()
            && let Some(first) = wanted.get(&de.ino())
        {
            out.push((child, first.clone()));
        }
    }
    Ok(())
}

/// `.wh.` + name.
fn whiteout_name(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    OsString::from_vec(v)
}

/// One child of a directory, ready to be written.
struct Child {
    fs_path: PathBuf,
    src_name: OsString,
    out_name: OsString,
    meta: Metadata,
    xattrs: Xattrs,
    action: Action,
    /// Read from the union mount: a directory is written opaque, with everything it shows.
    whole: bool,
}

struct Exporter<'a, W: Write> {
    builder: Builder<HashingWriter<W>>,
    xattrs: &'a dyn XattrSource,
    /// The live union mount of the upper, for what the upper alone cannot give.
    merged: Option<&'a Path>,
    /// (dev, ino) of multiply-linked non-directories -> archive path of the first name.
    links: HashMap<(u64, u64), PathBuf>,
    /// Archive path of a first name (see `links`) -> how many names the archive gives it.
    names: HashMap<PathBuf, u64>,
    /// Every archive path written (no trailing slash).
    written: HashSet<PathBuf>,
    entries: u64,
}

impl<W: Write> Exporter<'_, W> {
    /// Writes the children of `fs_dir` (archive path `tar_dir`, "" for the root).
    /// `xwhiteouts`: the directory is marked as holding xattr whiteouts.
    fn dir(
        &mut self,
        fs_dir: &Path,
        tar_dir: &Path,
        opaque: bool,
        xwhiteouts: bool,
        dir_mtime: i64,
    ) -> Result<(), ExportError> {
        let read_err = |source| ExportError::Read {
            path: fs_dir.to_path_buf(),
            source,
        };
        let mut children = Vec::new();
        let mut has_marker = false;
        for de in fs::read_dir(fs_dir).map_err(read_err)? {
            let de = de.map_err(read_err)?;
            let fs_path = de.path();
            let meta = lstat(&fs_path)?;
            let kind = Kind::of(&meta);
            if kind == Kind::Socket {
                log::warn!(
                    "skipping socket {}: tar cannot hold sockets",
                    fs_path.display()
                );
                continue;
            }
            let xattrs = self
                .xattrs
                .read(&fs_path)
                .map_err(|source| ExportError::Xattr {
                    path: fs_path.clone(),
                    source,
                })?;
            let src_name = de.file_name();
            let (fs_path, meta, xattrs, action, whole) = match classify(
                src_name.as_bytes(),
                kind,
                meta.size(),
                meta.rdev(),
                &xattrs,
                xwhiteouts,
            ) {
                Ok(action) => (fs_path, meta, xattrs, action, false),
                Err(need) => {
                    let Some(merged) = self.merged else {
                        return Err(match need {
                            NeedsLowers::Redirect => ExportError::Redirect(fs_path),
                            NeedsLowers::Metacopy => ExportError::Metacopy(fs_path),
                        });
                    };
                    // The entry as the union shows it; a dir with all its content.
                    let m_path = merged.join(tar_dir).join(&src_name);
                    let m_meta = lstat(&m_path)?;
                    let m_xattrs =
                        self.xattrs
                            .read(&m_path)
                            .map_err(|source| ExportError::Xattr {
                                path: m_path.clone(),
                                source,
                            })?;
                    (m_path, m_meta, m_xattrs, Action::Entry, true)
                }
            };
            let out_name = match action {
                Action::Skip => continue,
                Action::OpaqueMarker => {
                    has_marker = true;
                    continue;
                }
                Action::Whiteout => whiteout_name(&src_name),
                Action::Entry => src_name.clone(),
            };
            children.push(Child {
                fs_path,
                src_name,
                out_name,
                meta,
                xattrs,
                action,
                whole,
            });
        }
        children.sort_by(|a, b| {
            (a.out_name.as_bytes(), a.src_name.as_bytes())
                .cmp(&(b.out_name.as_bytes(), b.src_name.as_bytes()))
        });
        // A 0/0 whiteout `x` next to a `.wh.x` file: both say the same; keep one.
        children.dedup_by(|later, first| {
            let dup = later.out_name == first.out_name;
            if dup {
                log::warn!(
                    "{} and {} both become {:?}; keeping the first",
                    first.fs_path.display(),
                    later.fs_path.display(),
                    later.out_name
                );
            }
            dup
        });

        if opaque || has_marker {
            let path = tar_dir.join(OsStr::from_bytes(OPAQUE_MARKER));
            self.empty_marker(&path, dir_mtime)?;
        }
        for c in &children {
            self.child(c, tar_dir)?;
        }
        Ok(())
    }

    /// Writes one entry whose data is `data` and counts it.
    fn put(&mut self, spec: &EntrySpec<'_>, data: &mut dyn Read) -> io::Result<()> {
        append_entry(&mut self.builder, spec, data)?;
        self.entries += 1;
        let path = spec.path.as_os_str().as_bytes();
        let path = path.strip_suffix(b"/").unwrap_or(path);
        self.written.insert(PathBuf::from(OsStr::from_bytes(path)));
        Ok(())
    }

    /// A file copied up through one of its names while the others stayed in a lower layer
    /// (the union shares the copy among all of them through the workdir's index): the
    /// mount shows every name with the new data, so the layer gets a hard link entry for
    /// each name the upper does not hold (and the lower directories on the way to it).
    /// Found by the link count the mount shows; only then is the mount walked, once.
    fn lower_names_of_links(&mut self, merged: &Path) -> Result<(), ExportError> {
        let mut wanted: HashMap<u64, PathBuf> = HashMap::new();
        for (first, &in_archive) in &self.names {
            let m = lstat(&merged.join(first))?;
            if m.is_file() && m.nlink() > in_archive {
                wanted.insert(m.ino(), first.clone());
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut found = Vec::new();
        let dev = lstat(merged)?.dev();
        find_by_ino(merged, Path::new(""), dev, &wanted, &mut found)?;
        found.sort();
        for (rel, first) in found {
            if self.written.contains(&rel) {
                continue;
            }
            // Its directories first, those the archive does not have yet (lower ones).
            let mut dirs: Vec<&Path> = rel.ancestors().skip(1).collect();
            dirs.retain(|d| !d.as_os_str().is_empty() && !self.written.contains(*d));
            for dir in dirs.into_iter().rev() {
                let xattrs =
                    self.xattrs
                        .read(&merged.join(dir))
                        .map_err(|source| ExportError::Xattr {
                            path: merged.join(dir),
                            source,
                        })?;
                let dir_path = dir_entry_path(dir);
                self.put_empty(&EntrySpec {
                    xattrs: xattrs.exported().collect(),
                    ..spec_of(&dir_path, EntryType::Directory, &lstat(&merged.join(dir))?)
                })?;
            }
            let m = lstat(&merged.join(&rel))?;
            self.put_empty(&EntrySpec {
                link: Some(&first),
                ..spec_of(&rel, EntryType::Link, &m)
            })?;
        }
        Ok(())
    }

    /// Writes one entry without data.
    fn put_empty(&mut self, spec: &EntrySpec<'_>) -> Result<(), ExportError> {
        self.put(spec, &mut io::empty()).map_err(ExportError::Write)
    }

    /// An empty regular file, mode 0, owner 0:0 (whiteouts and opaque markers).
    fn empty_marker(&mut self, path: &Path, mtime: i64) -> Result<(), ExportError> {
        let spec = EntrySpec {
            path,
            kind: EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            link: None,
            device: None,
            xattrs: vec![],
        };
        self.put_empty(&spec)
    }

    fn child(&mut self, c: &Child, tar_dir: &Path) -> Result<(), ExportError> {
        let tar_path = tar_dir.join(&c.out_name);
        if c.action == Action::Whiteout {
            return self.empty_marker(&tar_path, c.meta.mtime());
        }
        let m = &c.meta;
        let kind = Kind::of(m);
        for (name, _) in c.xattrs.exported() {
            if name.contains(&b'=') {
                return Err(ExportError::XattrName {
                    path: c.fs_path.clone(),
                    name: name.to_vec(),
                });
            }
        }
        let mut spec = EntrySpec {
            xattrs: c.xattrs.exported().collect(),
            ..spec_of(&tar_path, EntryType::Regular, m)
        };

        if kind != Kind::Dir && m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                let first = first.clone();
                *self.names.entry(first.clone()).or_default() += 1;
                spec.kind = EntryType::Link;
                spec.link = Some(&first);
                // The data and xattrs travel with the first name.
                spec.xattrs.clear();
                return self.put_empty(&spec);
            }
            self.links.insert((m.dev(), m.ino()), tar_path.clone());
            self.names.insert(tar_path.clone(), 1);
        }

        match kind {
            Kind::Dir => {
                let dir_path = dir_entry_path(&tar_path);
                spec.path = &dir_path;
                spec.kind = EntryType::Directory;
                self.put_empty(&spec)?;
                self.dir(
                    &c.fs_path,
                    &tar_path,
                    c.whole || is_opaque(&c.xattrs),
                    !c.whole && marks_xattr_whiteouts(c.xattrs.reader()),
                    m.mtime(),
                )
            }
            Kind::File => {
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&c.fs_path)
                    .map_err(|source| ExportError::Read {
                        path: c.fs_path.clone(),
                        source,
                    })?;
                let now = file.metadata().map_err(|source| ExportError::Read {
                    path: c.fs_path.clone(),
                    source,
                })?;
                if (now.dev(), now.ino(), now.size()) != (m.dev(), m.ino(), m.size()) {
                    return Err(ExportError::Changed(c.fs_path.clone()));
                }
                spec.size = m.size();
                let mut data = ExactReader::new(file, m.size());
                // Tell a failing read of the file from a failing write of the tar.
                self.put(&spec, &mut data).map_err(|e| {
                    if data.short {
                        ExportError::Changed(c.fs_path.clone())
                    } else if data.failed {
                        ExportError::Read {
                            path: c.fs_path.clone(),
                            source: e,
                        }
                    } else {
                        ExportError::Write(e)
                    }
                })
            }
            Kind::Symlink => {
                let target = fs::read_link(&c.fs_path).map_err(|source| ExportError::Read {
                    path: c.fs_path.clone(),
                    source,
                })?;
                spec.kind = EntryType::Symlink;
                spec.link = Some(&target);
                self.put_empty(&spec)
            }
            Kind::Fifo | Kind::Char | Kind::Block => {
                spec.kind = match kind {
                    Kind::Fifo => EntryType::Fifo,
                    Kind::Char => EntryType::Char,
                    _ => EntryType::Block,
                };
                if kind != Kind::Fifo {
                    spec.device = Some((sfs::major(m.rdev()), sfs::minor(m.rdev())));
                }
                self.put_empty(&spec)
            }
            Kind::Socket => Ok(()),
        }
    }
}

/// Yields exactly `len` bytes of `inner`: stops there if the file grew, fails if it ends
/// early (the tar header already promised `len` bytes). Remembers which side failed.
struct ExactReader<R> {
    inner: R,
    left: u64,
    short: bool,
    failed: bool,
}

impl<R: Read> ExactReader<R> {
    fn new(inner: R, len: u64) -> Self {
        ExactReader {
            inner,
            left: len,
            short: false,
            failed: false,
        }
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        if n == 0 {
            self.short = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xa(pairs: &[(&str, &str)]) -> Xattrs {
        Xattrs::from_pairs(
            pairs
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())),
        )
    }

    #[test]
    fn classify_table() {
        use Action::*;
        let none = xa(&[]);
        let wh = xa(&[("user.overlay.whiteout", "")]);
        let twh = xa(&[("trusted.overlay.whiteout", "")]);
        let meta = xa(&[("trusted.overlay.metacopy", "")]);
        let redir = xa(&[("trusted.overlay.redirect", "/a")]);
        let uredir = xa(&[("user.overlay.redirect", "/a")]);
        type Case<'a> = (
            &'a str,
            Kind,
            u64,
            u64,
            &'a Xattrs,
            bool,
            Result<Action, NeedsLowers>,
        );
        let cases: &[Case] = &[
            ("x", Kind::Char, 0, 0, &none, false, Ok(Whiteout)),
            ("x", Kind::Char, 0, 0x0103, &none, false, Ok(Entry)),
            ("x", Kind::File, 0, 0, &wh, true, Ok(Whiteout)),
            ("x", Kind::File, 0, 0, &twh, true, Ok(Whiteout)),
            // Outside a directory marked opaque=x, the kernel reads no xattr whiteout.
            ("x", Kind::File, 0, 0, &wh, false, Ok(Entry)),
            ("x", Kind::File, 0, 0, &twh, false, Ok(Entry)),
            ("x", Kind::File, 5, 0, &wh, true, Ok(Entry)),
            ("x", Kind::Dir, 0, 0, &wh, true, Ok(Entry)),
            (".wh.x", Kind::File, 0, 0, &none, false, Ok(Entry)),
            (
                ".wh..wh..opq",
                Kind::File,
                0,
                0,
                &none,
                false,
                Ok(OpaqueMarker),
            ),
            (".wh..wh..opq", Kind::Dir, 0, 0, &none, false, Ok(Entry)),
            ("s", Kind::Socket, 0, 0, &none, false, Ok(Skip)),
            (
                "f",
                Kind::File,
                9,
                0,
                &meta,
                false,
                Err(NeedsLowers::Metacopy),
            ),
            (
                "f",
                Kind::File,
                9,
                0,
                &redir,
                false,
                Err(NeedsLowers::Metacopy),
            ),
            (
                "d",
                Kind::Dir,
                0,
                0,
                &redir,
                false,
                Err(NeedsLowers::Redirect),
            ),
            (
                "d",
                Kind::Dir,
                0,
                0,
                &uredir,
                false,
                Err(NeedsLowers::Redirect),
            ),
            ("l", Kind::Symlink, 3, 0, &none, false, Ok(Entry)),
        ];
        for (name, kind, size, rdev, x, marked, want) in cases {
            assert_eq!(
                classify(name.as_bytes(), *kind, *size, *rdev, x, *marked),
                *want,
                "{name} {kind:?} in a marked dir: {marked}"
            );
        }
    }

    #[test]
    fn opaque_only_for_y() {
        assert!(is_opaque(&xa(&[("trusted.overlay.opaque", "y")])));
        assert!(is_opaque(&xa(&[("user.overlay.opaque", "y")])));
        assert!(!is_opaque(&xa(&[("trusted.overlay.opaque", "x")])));
        assert!(!is_opaque(&xa(&[("user.opaque", "y")])));
        assert!(!is_opaque(&xa(&[])));
    }

    #[test]
    fn exact_reader_stops_and_detects_short() {
        let mut r = ExactReader::new(&b"abcdef"[..], 4);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
        let mut r = ExactReader::new(&b"ab"[..], 4);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(r.short);
    }

    #[test]
    fn whiteout_names_are_bytes() {
        let n = OsStr::from_bytes(b"\xff\xfe");
        assert_eq!(whiteout_name(n).as_bytes(), b".wh.\xff\xfe");
    }

    #[test]
    fn error_messages_are_one_line_and_name_the_path() {
        let p = PathBuf::from("/u/d");
        let errs = [
            ExportError::Redirect(p.clone()),
            ExportError::Metacopy(p.clone()),
            ExportError::Changed(p.clone()),
            ExportError::NotADirectory(p.clone()),
            ExportError::Read {
                path: p.clone(),
                source: io::Error::other("boom"),
            },
        ];
        for e in errs {
            let s = e.to_string();
            assert!(s.contains("/u/d"), "{s}");
            assert!(!s.contains('\n'), "{s}");
        }
        assert_eq!(
            ExportError::Redirect(p).to_string(),
            "upper dir /u/d is a renamed lower directory (trusted.overlay.redirect); \
             exporting it needs the lower layers"
        );
    }
}
