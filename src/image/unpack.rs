//! Unpacking one layer (gzip, zstd or plain tar, told by magic bytes) into an empty
//! directory, safely against a hostile archive:
//!
//! - every entry path is normalized below the layer dir: a leading `/` is dropped (absolute
//!   names are taken relative), `.` and empty components are dropped, `..` pops a
//!   component and is refused if it would leave the layer dir;
//! - every path is created component by component with *at calls on directory fds, each
//!   opened with O_NOFOLLOW and checked to be a directory: a symlink (or anything but a
//!   directory) where a parent should be is refused, so nothing is written through one;
//! - hardlink targets are resolved the same way and must be entries of this layer;
//! - device nodes only when running as root; `trusted.overlay.*` / `user.overlay.*`
//!   xattrs (which would change how the union reads the dir) are dropped;
//! - bounds: uncompressed bytes, entries, path length, extension header size;
//! - `.wh.NAME` and `.wh..wh..opq` entries are kept as the plain files they are: the union
//!   reads that form natively.
//!
//! Extension headers (pax `x`, GNU long name/link) are read by this module, bounded, rather
//! than by the tar crate, which would read them into memory whatever their size. Every error
//! names the entry. The diff ID (sha256 of the uncompressed tar stream, through its end
//! including padding) is computed on the same pass.

use super::digest::{Digest, HashingReader};
use super::dir_stack::DirStack;
use super::layout::Compression;
use crate::sys::fs as sfs;
use crate::sys::{Errno, xattr as sxattr};
use crate::union::whiteout::is_private_xattr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use tar::EntryType;

/// Size bounds for one layer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Uncompressed tar bytes.
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Bytes of a normalized entry path or link target.
    pub max_path: usize,
    /// Bytes of one pax / GNU long-name header.
    pub max_ext_header: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
            max_path: 4096,
            max_ext_header: 1 << 20,
        }
    }
}

/// The result of unpacking a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub diff_id: Digest,
    /// Uncompressed tar bytes.
    pub size: u64,
    /// Entries created (extension headers not counted).
    pub entries: u64,
}

/// Options for [`unpack_layer`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub limits: Limits,
    /// Chown entries and create device nodes (root only).
    pub as_root: bool,
}

/// Hashes the uncompressed stream of a layer blob without unpacking it: its diff ID.
pub fn diff_id_of(blob: impl Read, limits: &Limits) -> Result<(Digest, u64), String> {
    let r = decompressor(blob)?;
    HashingReader::with_limit(r, limits.max_bytes)
        .finish()
        .map_err(|e| one_line(format!("cannot read the layer: {e}")))
}

fn decompressor<'a>(blob: impl Read + 'a) -> Result<Box<dyn Read + 'a>, String> {
    let mut br = BufReader::with_capacity(256 * 1024, blob);
    let head = br
        .fill_buf()
        .map_err(|e| format!("cannot read the layer: {e}"))?;
    Ok(match Compression::sniff(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(br)
                .map_err(|e| format!("cannot start zstd: {e}"))?,
        ),
        Compression::None => Box::new(br),
    })
}

/// Unpacks the layer blob `blob` into `dest`, an existing empty directory.
pub fn unpack_layer(blob: impl Read, dest: &Path, opts: &Options) -> Result<Unpacked, String> {
    unpack(blob, dest, opts).map_err(one_line)
}

/// An error message on one line: entry names, and the tar crate's messages, which quote
/// header fields raw, may hold any byte; control characters are escaped.
pub(crate) fn one_line(msg: String) -> String {
    if !msg.contains(char::is_control) {
        return msg;
    }
    msg.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn unpack(blob: impl Read, dest: &Path, opts: &Options) -> Result<Unpacked, String> {
    let root = sfs::open_path(
        &crate::sys::cstr(dest.as_os_str().as_encoded_bytes())
            .map_err(|e| format!("{}: {e}", dest.display()))?,
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .map_err(|e| format!("cannot open {}: {e}", dest.display()))?;
    let mut hr = HashingReader::with_limit(decompressor(blob)?, opts.limits.max_bytes);
    let stack_root = root
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", dest.display()))?;
    let mut u = Unpacker {
        root,
        parents: DirStack::new(stack_root),
        opts: *opts,
        dirs: Vec::new(),
        entries: 0,
        buf: vec![0; COPY_BUF],
    };
    {
        let mut ar = tar::Archive::new(&mut hr);
        let entries = ar
            .entries()
            .map_err(|e| format!("not a tar: {e}"))?
            .raw(true);
        let mut ext = Ext::default();
        for e in entries {
            let mut e =
                e.map_err(|e| format!("bad tar stream after {} entries: {e}", u.entries))?;
            let hdr_path = e.header().path_bytes().into_owned();
            let show = || String::from_utf8_lossy(&hdr_path).into_owned();
            let kind = e.header().entry_type();
            match kind {
                EntryType::XHeader
                | EntryType::XGlobalHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink => {
                    let data = read_ext(&mut e, opts.limits.max_ext_header)
                        .map_err(|m| format!("entry {:?}: {m}", show()))?;
                    match kind {
                        EntryType::XHeader => ext
                            .pax(&data)
                            .map_err(|m| format!("pax header before entry {:?}: {m}", show()))?,
                        EntryType::GNULongName => ext.path = Some(trim_nul(data)),
                        EntryType::GNULongLink => ext.link = Some(trim_nul(data)),
                        _ => {} // global pax headers carry nothing unionrs applies
                    }
                    continue;
                }
                _ => {}
            }
            let ext = std::mem::take(&mut ext);
            let raw_path = ext.path.clone().unwrap_or(hdr_path.clone());
            u.entries += 1;
            if u.entries > opts.limits.max_entries {
                return Err(format!(
                    "layer has more than {} entries",
                    opts.limits.max_entries
                ));
            }
            u.entry(&mut e, &raw_path, ext).map_err(|m| {
                format!("layer entry {:?}: {m}", String::from_utf8_lossy(&raw_path))
            })?;
        }
    }
    u.finish_dirs()?;
    let (diff_id, size) = hr
        .finish()
        .map_err(|e| format!("cannot read the layer: {e}"))?;
    Ok(Unpacked {
        diff_id,
        size,
        entries: u.entries,
    })
}

pub(crate) fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

pub(crate) fn read_ext(e: &mut impl Read, max: u64) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    e.take(max + 1)
        .read_to_end(&mut v)
        .map_err(|e| e.to_string())?;
    if v.len() as u64 > max {
        return Err(format!("extension header larger than {max} bytes"));
    }
    Ok(v)
}

/// What extension headers said about the next entry.
#[derive(Default, Clone)]
pub(crate) struct Ext {
    pub(crate) path: Option<Vec<u8>>,
    pub(crate) link: Option<Vec<u8>>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    size: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Ext {
    /// Parses pax records `LEN KEY=VALUE\n`.
    pub(crate) fn pax(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            let sp = data
                .iter()
                .position(|&b| b == b' ')
                .ok_or("malformed pax record")?;
            let len: usize = std::str::from_utf8(&data[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("malformed pax record length")?;
            if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err("malformed pax record".into());
            }
            let rec = &data[sp + 1..len - 1];
            data = &data[len..];
            let eq = rec
                .iter()
                .position(|&b| b == b'=')
                .ok_or("pax record without '='")?;
            let (key, val) = (&rec[..eq], &rec[eq + 1..]);
            let num = || -> Result<u64, String> {
                std::str::from_utf8(val)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad pax {} value", String::from_utf8_lossy(key)))
            };
            match key {
                b"path" => self.path = Some(val.to_vec()),
                b"linkpath" => self.link = Some(val.to_vec()),
                b"uid" => self.uid = Some(num()?),
                b"gid" => self.gid = Some(num()?),
                b"size" => self.size = Some(num()?),
                b"mtime" => {
                    let s = std::str::from_utf8(val).map_err(|_| "bad pax mtime")?;
                    let secs = s.split('.').next().unwrap_or("");
                    self.mtime = Some(secs.parse().map_err(|_| "bad pax mtime")?);
                }
                _ if key.starts_with(b"SCHILY.xattr.") => {
                    self.xattrs.push((key[13..].to_vec(), val.to_vec()));
                }
                _ if key.starts_with(b"GNU.sparse.") => {
                    return Err("sparse files are not supported".into());
                }
                _ => {} // atime, ctime, uname, gname, hdrcharset, comment, ...
            }
        }
        Ok(())
    }
}

/// Normalizes an entry path to its components below the layer root.
pub fn normalize(path: &[u8], max: usize) -> Result<Vec<Vec<u8>>, String> {
    if path.len() > max {
        return Err(format!("path longer than {max} bytes"));
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path escapes the layer with '..'".into());
                }
            }
            _ => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// File data is copied in chunks of this size: one write per file for nearly all files,
/// where io::copy's 8 KiB buffer made ~25,000 writes for a Debian rootfs.
const COPY_BUF: usize = 1 << 20;

struct Unpacker {
    /// The layer dir, for hardlink targets (resolved apart from `parents`).
    root: OwnedFd,
    /// The parent directories of the entry last unpacked.
    parents: DirStack,
    opts: Options,
    /// Directories created, with (mode, mtime), to finish once their children exist.
    dirs: Vec<(Vec<Vec<u8>>, u32, i64)>,
    entries: u64,
    buf: Vec<u8>,
}

fn errno(what: &str, e: Errno) -> String {
    format!("{what}: {e}")
}

impl Unpacker {
    fn entry<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        raw: &[u8],
        ext: Ext,
    ) -> Result<(), String> {
        let h = e.header();
        let kind = h.entry_type();
        let comps = normalize(raw, self.opts.limits.max_path)?;
        let hsize = h.size().map_err(|e| format!("bad size: {e}"))?;
        if let Some(s) = ext.size
            && s != hsize
        {
            return Err("pax size records (files of 8 GiB and more) are not supported".into());
        }
        let mode = h.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777;
        let uid = ext
            .uid
            .map_or_else(|| h.uid(), Ok)
            .map_err(|e| format!("bad uid: {e}"))?;
        let gid = ext
            .gid
            .map_or_else(|| h.gid(), Ok)
            .map_err(|e| format!("bad gid: {e}"))?;
        let mtime = match ext.mtime {
            Some(m) => m,
            None => h.mtime().map_err(|e| format!("bad mtime: {e}"))? as i64,
        };
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| "uid out of range")?,
            u32::try_from(gid).map_err(|_| "gid out of range")?,
        );
        let Some((name, parent_comps)) = comps.split_last() else {
            // The layer root itself (`./`): nothing to create.
            return if kind == EntryType::Directory {
                Ok(())
            } else {
                Err("names the layer root but is not a directory".into())
            };
        };
        let link = match ext.link.clone() {
            Some(l) => Some(l),
            None => h.link_name_bytes().map(|c| c.into_owned()),
        };
        let opts = &self.opts;
        let p = self.parents.walk(parent_comps, true)?;
        // An earlier entry of the same name is replaced (a directory only by a non-dir).
        // The common kinds find out by creating (EEXIST), which saves a stat per entry;
        // the rare ones look first.
        let creates_first = matches!(
            kind,
            EntryType::Directory | EntryType::Regular | EntryType::Continuous | EntryType::Symlink
        );
        if !creates_first && sfs::stat_at(p, name).is_ok() {
            remove_at(p, name)?;
        }
        match kind {
            EntryType::Directory => {
                match sfs::mkdir_at(p, name, 0o700) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        let st = sfs::stat_at(p, name).map_err(|e| errno("stat", e))?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                            remove_at(p, name)?;
                            sfs::mkdir_at(p, name, 0o700).map_err(|e| errno("mkdir", e))?;
                        }
                    }
                    Err(e) => return Err(errno("mkdir", e)),
                }
                owner(opts, p, name, uid, gid)?;
                xattrs(opts, p, name, &ext.xattrs)?;
                self.dirs.push((comps.clone(), mode, mtime));
                Ok(())
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = replacing(p, name, "create", || {
                    sfs::open_at(
                        p,
                        name,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                        0o600,
                    )
                })?;
                let mut f = File::from(fd);
                let n = copy_data(e, &mut f, &mut self.buf).map_err(|e| format!("write: {e}"))?;
                if n != hsize {
                    return Err("archive ends inside the file's data".into());
                }
                drop(f);
                // By name in the held parent fd: sys's utimes_at(fd, "") hands glibc a NULL
                // path, which it refuses with EINVAL.
                owner(opts, p, name, uid, gid)?;
                xattrs(opts, p, name, &ext.xattrs)?;
                sfs::chmod_at(p, name, mode).map_err(|e| errno("chmod", e))?;
                utimes(p, name, mtime)
            }
            EntryType::Symlink => {
                let target = link.ok_or("symlink without a target")?;
                if target.len() > opts.limits.max_path {
                    return Err("symlink target too long".into());
                }
                replacing(p, name, "symlink", || sfs::symlink_at(&target, p, name))?;
                owner(opts, p, name, uid, gid)?;
                utimes(p, name, mtime)
            }
            EntryType::Link => {
                let target = link.ok_or("hardlink without a target")?;
                let tc = normalize(&target, opts.limits.max_path)
                    .map_err(|m| format!("hardlink target {}: {m}", show(&target)))?;
                let Some((tname, tparent)) = tc.split_last() else {
                    return Err("hardlink to the layer root".into());
                };
                let tdir = DirStack::open_below(self.root.as_fd(), tparent).map_err(|m| {
                    format!(
                        "hardlink target {} is not in this layer: {m}",
                        show(&target)
                    )
                })?;
                let st = sfs::stat_at(tdir.as_fd(), tname).map_err(|_| {
                    format!(
                        "hardlink target {} is not an earlier entry of this layer",
                        show(&target)
                    )
                })?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    return Err(format!("hardlink target {} is a directory", show(&target)));
                }
                sfs::link_at(tdir.as_fd(), tname, p, name).map_err(|e| errno("link", e))
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let mut rdev = 0;
                if kind != EntryType::Fifo {
                    if !opts.as_root {
                        return Err("device nodes are only created when running as root".into());
                    }
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    rdev = sfs::makedev(major, minor);
                }
                sfs::mknod_at(p, name, ft | 0o600, rdev).map_err(|e| errno("mknod", e))?;
                owner(opts, p, name, uid, gid)?;
                xattrs(opts, p, name, &ext.xattrs)?;
                sfs::chmod_at(p, name, mode).map_err(|e| errno("chmod", e))?;
                utimes(p, name, mtime)
            }
            other => Err(format!(
                "unsupported tar entry type {:?}",
                other.as_byte() as char
            )),
        }
    }

    /// Gives directories their modes and mtimes, deepest first (children change mtimes,
    /// and a read-only mode would have blocked creating them).
    fn finish_dirs(&mut self) -> Result<(), String> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        for (comps, mode, mtime) in dirs {
            let shown = show(&comps.join(&b'/'));
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let Ok(fd) = self.parents.walk(parent, false) else {
                continue; // replaced by a later entry
            };
            match sfs::stat_at(fd, name) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                _ => continue, // replaced by a later entry
            }
            sfs::chmod_at(fd, name, mode)
                .map_err(|e| errno(&format!("layer entry {shown:?}: chmod"), e))?;
            utimes(fd, name, mtime).map_err(|m| format!("layer entry {shown:?}: {m}"))?;
        }
        Ok(())
    }
}

fn owner(
    opts: &Options,
    dir: BorrowedFd<'_>,
    name: &[u8],
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    if opts.as_root {
        sfs::chown_at(dir, name, uid, gid).map_err(|e| errno("chown", e))?;
    }
    Ok(())
}

fn xattrs(
    opts: &Options,
    dir: BorrowedFd<'_>,
    name: &[u8],
    xs: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), String> {
    for (k, v) in xs {
        if is_private_xattr(k) {
            log::debug!("dropping overlay xattr {} from a layer", show(k));
            continue;
        }
        match sxattr::set(dir, name, k, v, 0) {
            Ok(()) => {}
            Err(e) if !opts.as_root => {
                log::debug!("cannot set xattr {} (not root): {e}", show(k));
            }
            Err(e) => return Err(errno(&format!("cannot set xattr {}", show(k)), e)),
        }
    }
    Ok(())
}

/// Runs `create`; if an earlier entry holds the name (EEXIST), removes it and runs it again.
fn replacing<T>(
    dir: BorrowedFd<'_>,
    name: &[u8],
    what: &str,
    mut create: impl FnMut() -> Result<T, Errno>,
) -> Result<T, String> {
    match create() {
        Err(Errno::EEXIST) => {
            remove_at(dir, name)?;
            create().map_err(|e| errno(what, e))
        }
        r => r.map_err(|e| errno(what, e)),
    }
}

/// Copies an entry's data, filling `buf` before each write.
fn copy_data(src: &mut impl Read, dst: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        dst.write_all(&buf[..filled])?;
        total += filled as u64;
        if filled < buf.len() {
            return Ok(total);
        }
    }
}

fn utimes(dir: BorrowedFd<'_>, name: &[u8], mtime: i64) -> Result<(), String> {
    let t = sfs::TimeSpec::At(mtime, 0);
    sfs::utimes_at(dir, name, t, t).map_err(|e| errno("utimes", e))
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Removes `name` in `dir`, recursively if it is a directory, never following symlinks.
fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), String> {
    let st = sfs::stat_at(dir, name).map_err(|e| errno("stat", e))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let sub = sfs::open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| errno("open", e))?;
        let _ = sfs::chmod_at(sub.as_fd(), b"", 0o700);
        for ent in sfs::read_dir(sub.as_fd()).map_err(|e| errno("readdir", e))? {
            remove_at(sub.as_fd(), &ent.name)?;
        }
        sfs::unlink_at(dir, name, true).map_err(|e| errno("rmdir", e))
    } else {
        sfs::unlink_at(dir, name, false).map_err(|e| errno("unlink", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        let n = |p: &[u8]| normalize(p, 4096).map(|v| v.join(&b'/'));
        assert_eq!(n(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(n(b"./a/./b/../c/").unwrap(), b"a/c");
        assert!(n(b"../x").is_err());
        assert!(n(b"a/../../x").is_err());
        assert_eq!(n(b"./").unwrap(), b"");
    }

    #[test]
    fn pax_records() {
        let mut e = Ext::default();
        e.pax(b"16 path=a/b/cde\n27 SCHILY.xattr.user.k=val\n")
            .unwrap();
        assert_eq!(e.path.as_deref(), Some(&b"a/b/cde"[..]));
        assert_eq!(e.xattrs, vec![(b"user.k".to_vec(), b"val".to_vec())]);
        assert!(Ext::default().pax(b"99 path=x\n").is_err());
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(one_line("plain".into()), "plain");
        assert_eq!(one_line("a\nb\r\u{1f}c".into()), "a\\nb\\r\\u{1f}c");
    }
}
