//! Tree snapshots: what a directory tree looks like, for comparing views and upper dirs.

use super::sys;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Char,
    Block,
    /// A whiteout: character device 0/0 (upper snapshots only name it so).
    Whiteout,
}

#[derive(Clone, Debug)]
pub struct EntryInfo {
    pub kind: Kind,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    /// sha256 of the content, regular files only.
    pub hash: Option<String>,
    pub target: Option<PathBuf>,
    pub nlink: u64,
    pub rdev: u64,
    pub ino: u64,
    /// d_ino as readdir reported it (None for the root).
    pub d_ino: Option<u64>,
    pub mtime_ns: i128,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Overlay-private xattrs: never shown through a union mount.
pub fn is_private_xattr(name: &str) -> bool {
    [
        "trusted.overlay.",
        "user.overlay.",
        "trusted.unionrs.",
        "user.unionrs.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The merged-view snapshot: user.* and trusted.* xattrs, minus overlay-private ones.
pub fn tree_snapshot(root: &Path) -> BTreeMap<PathBuf, EntryInfo> {
    snapshot(root, false)
}

/// The layer-format snapshot: all user.* / trusted.* xattrs including overlay ones, and
/// char 0/0 devices reported as `Kind::Whiteout`.
pub fn upper_snapshot(root: &Path) -> BTreeMap<PathBuf, EntryInfo> {
    snapshot(root, true)
}

fn snapshot(root: &Path, raw: bool) -> BTreeMap<PathBuf, EntryInfo> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), None, raw, &mut out);
    out
}

fn walk(
    root: &Path,
    rel: &Path,
    d_ino: Option<u64>,
    raw: bool,
    out: &mut BTreeMap<PathBuf, EntryInfo>,
) {
    let p = root.join(rel);
    let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    let ft = md.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() && md.rdev() == 0 && raw {
        Kind::Whiteout
    } else if ft.is_char_device() {
        Kind::Char
    } else {
        Kind::Block
    };
    let hash = (kind == Kind::File).then(|| {
        let data = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        format!("{:x}", Sha256::digest(&data))
    });
    let target = (kind == Kind::Symlink).then(|| fs::read_link(&p).unwrap());
    let mut xattrs = BTreeMap::new();
    for name in sys::llistxattr(&p).unwrap_or_default() {
        let shown = name.starts_with("user.") || name.starts_with("trusted.");
        if shown
            && (raw || !is_private_xattr(&name))
            && let Ok(v) = sys::lgetxattr(&p, &name)
        {
            xattrs.insert(name, v);
        }
    }
    out.insert(
        rel.to_path_buf(),
        EntryInfo {
            kind: kind.clone(),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            blocks: md.blocks(),
            hash,
            target,
            nlink: md.nlink(),
            rdev: md.rdev(),
            ino: md.ino(),
            d_ino,
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            xattrs,
        },
    );
    if kind == Kind::Dir {
        // Read to its end before anything in it is looked at, as find and du do: the kernel
        // then asks for the batches after the first without attributes (plain READDIR).
        let rd = fs::read_dir(&p).unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()));
        let entries: Vec<_> = rd
            .map(|e| {
                use std::os::unix::fs::DirEntryExt;
                let e = e.unwrap();
                (e.file_name(), e.ino())
            })
            .collect();
        for (name, ino) in entries {
            walk(root, &rel.join(name), Some(ino), raw, out);
        }
    }
}

/// Differences between two merged views, ignoring what legitimately differs between two
/// mounts of identical stacks: inode numbers, times, directory sizes and directory link
/// counts (the kernel reports 1 for merged dirs). Empty when they match.
pub fn diff_trees(
    a: &BTreeMap<PathBuf, EntryInfo>,
    b: &BTreeMap<PathBuf, EntryInfo>,
) -> Vec<String> {
    let mut d = Vec::new();
    for (k, x) in a {
        let Some(y) = b.get(k) else {
            d.push(format!("{}: only in first ({:?})", k.display(), x.kind));
            continue;
        };
        let mut f = |what: &str, l: String, r: String| {
            if l != r {
                d.push(format!("{}: {what} {l} != {r}", k.display()));
            }
        };
        f("kind", format!("{:?}", x.kind), format!("{:?}", y.kind));
        f("mode", format!("{:o}", x.mode), format!("{:o}", y.mode));
        f(
            "owner",
            format!("{}:{}", x.uid, x.gid),
            format!("{}:{}", y.uid, y.gid),
        );
        f("content", format!("{:?}", x.hash), format!("{:?}", y.hash));
        f(
            "target",
            format!("{:?}", x.target),
            format!("{:?}", y.target),
        );
        f("rdev", x.rdev.to_string(), y.rdev.to_string());
        f(
            "xattrs",
            format!("{:?}", x.xattrs),
            format!("{:?}", y.xattrs),
        );
        if x.kind != Kind::Dir {
            f("size", x.size.to_string(), y.size.to_string());
            f("nlink", x.nlink.to_string(), y.nlink.to_string());
        }
    }
    for (k, y) in b {
        if !a.contains_key(k) {
            d.push(format!("{}: only in second ({:?})", k.display(), y.kind));
        }
    }
    d
}

/// Panics with a readable list when two merged views differ.
pub fn assert_same_tree(
    a: &BTreeMap<PathBuf, EntryInfo>,
    b: &BTreeMap<PathBuf, EntryInfo>,
    what: &str,
) {
    let d = diff_trees(a, b);
    assert!(d.is_empty(), "{what}: trees differ:\n  {}", d.join("\n  "));
}
