//! Randomized differential machinery, shared by tests/differential_random.rs (the generator and
//! shrinker) and tests/union_regressions.rs (fixed cases it found).
//!
//! A `Case` is a lower-layer spec (`Lw` entries for l1..l3, kernel on-disk format) plus a list
//! of `Op`s. `run_case` builds two identical stacks, mounts kernel overlayfs
//! (redirect_dir=on,index=on) on one and unionrs on the other, applies every op to both and
//! compares errno + observation per step, the merged views (every step or at the end), the
//! normalized upper dirs, and finally the unionrs upper mounted under kernel overlayfs.
//! Everything in a case is `&'static str`/numbers so a shrunk case prints (Debug) as
//! ready-to-paste Rust.

use super::snapshot::{self, EntryInfo, Kind, diff_trees, tree_snapshot, upper_snapshot};
use super::{Fs, Layers, enabled, mount, sys};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file mode; Debug prints it in octal so printed cases read naturally.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct M(pub u32);
impl std::fmt::Debug for M {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "M(0o{:o})", self.0)
    }
}

/// One lower-layer entry: (layer 1..=3, l1 on top, path, ...). Applied in order; a builder
/// step that cannot apply (missing parent after shrinking, ...) is skipped.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::enum_variant_names)] // L = "in a lower layer", as the test scripts read
pub enum Lw {
    LFile(u8, &'static str, &'static str, M),
    LDir(u8, &'static str, M),
    /// `trusted.overlay.opaque=y` on an existing dir.
    LOpaque(u8, &'static str),
    LSymlink(u8, &'static str, &'static str),
    /// Character device 0/0.
    LWhiteout(u8, &'static str),
    /// Empty file with `trusted.overlay.whiteout`, parent dir `trusted.overlay.opaque=x`.
    LXWhiteout(u8, &'static str),
    /// Hard link (existing, new) inside one layer.
    LLink(u8, &'static str, &'static str),
    LXattr(u8, &'static str, &'static str, &'static str),
    LChown(u8, &'static str, u32, u32),
}
pub use Lw::*;

/// One operation, paths relative to the mount point.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// open(O_WRONLY|O_CREAT, mode).
    Create(&'static str, M),
    /// open(O_WRONLY|O_CREAT|O_EXCL, mode).
    CreateExcl(&'static str, M),
    /// open(O_WRONLY|O_CREAT|O_TRUNC, mode) and write, as a shell's `>` does.
    CreateTrunc(&'static str, M, &'static str),
    /// mkfifo(mode).
    Mkfifo(&'static str, M),
    /// mknod of a character device (major, minor); 0/0 is what a whiteout is made of.
    MknodChar(&'static str, u32, u32),
    /// truncate(2) by path (no open file: a SETATTR without a handle).
    TruncatePath(&'static str, u64),
    /// open(O_WRONLY) and pwrite at an offset.
    Write(&'static str, u64, &'static str),
    Append(&'static str, &'static str),
    /// open(O_WRONLY) + ftruncate.
    Truncate(&'static str, u64),
    Chmod(&'static str, M),
    Chown(&'static str, u32, u32),
    /// utimensat(AT_SYMLINK_NOFOLLOW), atime = mtime = (s, ns); observes the resulting mtime.
    Utimes(&'static str, i64, i64),
    Rename(&'static str, &'static str),
    RenameNoReplace(&'static str, &'static str),
    Exchange(&'static str, &'static str),
    Link(&'static str, &'static str),
    Unlink(&'static str),
    Rmdir(&'static str),
    Mkdir(&'static str, M),
    Symlink(&'static str, &'static str),
    SetXattr(&'static str, &'static str, &'static str),
    RemoveXattr(&'static str, &'static str),
    /// open(O_RDWR), unlink, then through the fd: fstat (nlink), pwrite at 0, ftruncate,
    /// fstat (size), read back; observes all of it.
    OpenUnlinkUse(&'static str, &'static str, u64),
    /// Walks the tree as the per-step view check does (readdir, lstat, read every file,
    /// list/get xattrs); never fails. The generator does not emit it.
    Scan,
    /// Unmounts both sides and mounts them again on the same upper and workdir: the rest of
    /// the run works on what each read back from disk (redirects, origins, the index,
    /// opaque marks) instead of what it kept in memory.
    Remount,
}
pub use Op::*;

#[derive(Clone, Debug)]
pub struct Case {
    pub every_step: bool,
    pub lowers: Vec<Lw>,
    pub ops: Vec<Op>,
}

/// Why a run failed: `sig` is a coarse class (kept while shrinking), `msg` the details.
#[derive(Clone, Debug)]
pub struct Failure {
    pub sig: String,
    pub msg: String,
}

/// Content as written: `"C*N+TAIL"` is C repeated N times then TAIL (keeps printed cases short).
pub fn expand(s: &str) -> String {
    let mut it = s.chars();
    if let (Some(c), Some('*')) = (it.next(), it.next()) {
        let rest: String = it.collect();
        if let Some((n, tail)) = rest.split_once('+')
            && let Ok(n) = n.parse::<usize>()
        {
            return std::iter::repeat_n(c, n).collect::<String>() + tail;
        }
    }
    s.to_string()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Lower-layer file and symlink times are all set to this, so the two copies are identical
/// and times that come from a lower (copy-up must keep them) can be compared exactly.
pub const LOWER_TIME: i64 = 1_500_000_000;
/// Non-directory mtimes below this (lower times, explicit utimes) must match between the two
/// sides; larger ones are "now" at the time of a write and differ legitimately.
const PAST: i128 = 1_600_000_000 * 1_000_000_000;

// ---------------------------------------------------------------------------------------
// Building the lowers

pub fn build_lowers(l: &Layers, spec: &[Lw]) {
    for e in spec {
        let _ = build_one(l, e);
    }
    for lw in &l.lowers {
        set_times(lw);
    }
}

fn build_one(l: &Layers, e: &Lw) -> io::Result<()> {
    let at = |n: u8, p: &str| l.l(n as usize).join(p);
    let mkparent = |p: &Path| fs::create_dir_all(p.parent().unwrap());
    let xattr = |p: &Path, k: &str| sys::lgetxattr(p, k).ok();
    match *e {
        LFile(n, p, c, m) => {
            let q = at(n, p);
            mkparent(&q)?;
            fs::write(&q, expand(c))?;
            fs::set_permissions(&q, fs::Permissions::from_mode(m.0))
        }
        LDir(n, p, m) => {
            let q = at(n, p);
            mkparent(&q)?;
            fs::create_dir(&q)?;
            fs::set_permissions(&q, fs::Permissions::from_mode(m.0))
        }
        LOpaque(n, p) => {
            let q = at(n, p);
            // Never turn an `x` (has xattr whiteouts) dir into `y`: which of the two wins for
            // the whiteouts inside is not something this test wants to probe.
            if q.is_dir() && xattr(&q, "trusted.overlay.opaque").is_none() && !p.is_empty() {
                sys::lsetxattr(&q, "trusted.overlay.opaque", b"y")?;
            }
            Ok(())
        }
        LSymlink(n, p, t) => {
            let q = at(n, p);
            mkparent(&q)?;
            std::os::unix::fs::symlink(t, &q)
        }
        LWhiteout(n, p) => {
            let q = at(n, p);
            mkparent(&q)?;
            sys::mknod(&q, libc::S_IFCHR | 0o600, 0, 0)
        }
        LXWhiteout(n, p) => {
            let q = at(n, p);
            let dir = q.parent().unwrap().to_path_buf();
            if !p.contains('/') || xattr(&dir, "trusted.overlay.opaque").as_deref() == Some(b"y") {
                return Ok(());
            }
            fs::create_dir_all(&dir)?;
            fs::write(&q, "")?;
            sys::lsetxattr(&q, "trusted.overlay.whiteout", b"y")?;
            sys::lsetxattr(&dir, "trusted.overlay.opaque", b"x")
        }
        LLink(n, a, b) => {
            let (qa, qb) = (at(n, a), at(n, b));
            if !fs::symlink_metadata(&qa)?.is_file()
                || xattr(&qa, "trusted.overlay.whiteout").is_some()
            {
                return Ok(());
            }
            mkparent(&qb)?;
            fs::hard_link(&qa, &qb)
        }
        LXattr(n, p, k, v) => sys::lsetxattr(&at(n, p), k, v.as_bytes()),
        LChown(n, p, u, g) => std::os::unix::fs::lchown(at(n, p), Some(u), Some(g)),
    }
}

fn set_times(p: &Path) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let q = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                set_times(&q);
            }
            let _ = sys::lutimens(&q, (LOWER_TIME, 0), (LOWER_TIME, 0));
        }
    }
    let _ = sys::lutimens(p, (LOWER_TIME, 0), (LOWER_TIME, 0));
}

// ---------------------------------------------------------------------------------------
// Applying ops

fn mtime_of(p: &Path) -> String {
    match fs::symlink_metadata(p) {
        Ok(m) => format!("mtime={}.{:09}", m.mtime(), m.mtime_nsec()),
        Err(e) => format!("lstat errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// Applies `op` under `root`: (errno or 0, observation).
/// Opens never wait: a FIFO opened for writing with no reader fails (ENXIO) on both sides
/// instead of blocking the run.
fn opener() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(libc::O_NONBLOCK);
    o
}

pub fn apply(root: &Path, op: &Op) -> (i32, String) {
    let p = |s: &str| root.join(s);
    let mut obs = String::new();
    let r: io::Result<()> = match *op {
        Create(f, m) => opener()
            .write(true)
            .create(true)
            .mode(m.0)
            .open(p(f))
            .map(drop),
        CreateExcl(f, m) => opener()
            .write(true)
            .create_new(true)
            .mode(m.0)
            .open(p(f))
            .map(drop),
        CreateTrunc(f, m, d) => opener()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(m.0)
            .open(p(f))
            .and_then(|mut h| h.write_all(expand(d).as_bytes())),
        Mkfifo(f, m) => sys::mkfifo(&p(f), m.0),
        MknodChar(f, major, minor) => sys::mknod(&p(f), libc::S_IFCHR | 0o644, major, minor),
        TruncatePath(f, n) => sys::truncate(&p(f), n),
        Write(f, off, d) => opener()
            .write(true)
            .open(p(f))
            .and_then(|h| h.write_all_at(expand(d).as_bytes(), off)),
        Append(f, d) => opener()
            .append(true)
            .open(p(f))
            .and_then(|mut h| h.write_all(expand(d).as_bytes())),
        Truncate(f, n) => opener().write(true).open(p(f)).and_then(|h| h.set_len(n)),
        Chmod(f, m) => fs::set_permissions(p(f), fs::Permissions::from_mode(m.0)),
        Chown(f, u, g) => std::os::unix::fs::lchown(p(f), Some(u), Some(g)),
        Utimes(f, s, ns) => {
            let r = sys::lutimens(&p(f), (s, ns), (s, ns));
            if r.is_ok() {
                obs = mtime_of(&p(f));
            }
            r
        }
        Rename(a, b) => fs::rename(p(a), p(b)),
        RenameNoReplace(a, b) => sys::renameat2(&p(a), &p(b), libc::RENAME_NOREPLACE),
        Exchange(a, b) => sys::renameat2(&p(a), &p(b), libc::RENAME_EXCHANGE),
        Link(a, b) => fs::hard_link(p(a), p(b)),
        Unlink(f) => fs::remove_file(p(f)),
        Rmdir(d) => fs::remove_dir(p(d)),
        Mkdir(d, m) => fs::create_dir(p(d))
            .and_then(|_| fs::set_permissions(p(d), fs::Permissions::from_mode(m.0))),
        Symlink(t, l) => std::os::unix::fs::symlink(t, p(l)),
        SetXattr(f, n, v) => sys::lsetxattr(&p(f), n, v.as_bytes()),
        RemoveXattr(f, n) => sys::lremovexattr(&p(f), n),
        Scan => {
            let _ = snap(root);
            Ok(())
        }
        Remount => unreachable!("run_with remounts"),
        OpenUnlinkUse(f, d, len) => (|| {
            let mut h = opener().read(true).write(true).open(p(f))?;
            fs::remove_file(p(f)).inspect_err(|_| obs = "unlink failed".into())?;
            let m1 = h.metadata()?;
            h.write_all_at(expand(d).as_bytes(), 0)?;
            h.set_len(len)?;
            let m2 = h.metadata()?;
            let mut back = Vec::new();
            h.seek(SeekFrom::Start(0))?;
            h.read_to_end(&mut back)?;
            obs = format!(
                "after unlink nlink={}; after write+ftruncate nlink={} size={} content={:?}",
                m1.nlink(),
                m2.nlink(),
                m2.size(),
                String::from_utf8_lossy(&back)
            );
            Ok(())
        })(),
    };
    (sys::errno(&r), obs)
}

// ---------------------------------------------------------------------------------------
// Comparing

/// Merged-view differences: `diff_trees` (which already ignores inode numbers, all times,
/// directory sizes and directory link counts: the kernel reports 1 for merged dirs and the
/// size of a merged dir is whatever the upper dir's is) plus
/// - mtimes of non-directories that come from a lower or from an explicit utimes (before
///   `PAST`): copy-up must keep them; later ones are "now" of a write and differ by wall time;
/// - which names share an inode (hard links), by st_ino grouping; the numbers themselves are
///   implementation-defined.
///
/// `a` is the kernel's view. `kernel_lower_links`: st_ino of the files with several links in
/// the kernel's lowers or linked through the mount (the kernel shows a copied-up file under
/// its lower number). Under metacopy=on, docs/architecture.md §9 (deliberate): unionrs copies
/// a hard-linked lower file in full on a metadata change or a link (every name must reach one
/// data file, src/union/copyup.rs `copy_up_to_link`), keeping its times, where the kernel
/// (index=on) makes a metacopy file whose later data copy-up sets the mtime to now. For those
/// files only, a kernel mtime of now against a unionrs mtime from the past (the kept one) is
/// that difference; any other mtime still counts.
fn diff_views(
    a: &BTreeMap<PathBuf, EntryInfo>,
    b: &BTreeMap<PathBuf, EntryInfo>,
    kernel_lower_links: &BTreeSet<u64>,
) -> Vec<String> {
    let mut d = diff_trees(a, b);
    for (k, x) in a {
        if let Some(y) = b.get(k)
            && x.kind != Kind::Dir
            && y.kind != Kind::Dir
            && (x.mtime_ns < PAST || y.mtime_ns < PAST)
            && x.mtime_ns != y.mtime_ns
            && !(metacopy_mode()
                && x.kind == Kind::File
                && kernel_lower_links.contains(&x.ino)
                && x.mtime_ns >= PAST
                && y.mtime_ns < PAST)
        {
            d.push(format!(
                "{}: mtime {} != {}",
                k.display(),
                x.mtime_ns,
                y.mtime_ns
            ));
        }
    }
    let groups = |t: &BTreeMap<PathBuf, EntryInfo>| {
        let mut by: BTreeMap<u64, BTreeSet<PathBuf>> = BTreeMap::new();
        for (k, e) in t {
            if e.kind != Kind::Dir {
                by.entry(e.ino).or_default().insert(k.clone());
            }
        }
        by.into_values()
            .filter(|s| s.len() > 1)
            .collect::<BTreeSet<_>>()
    };
    let (ga, gb) = (groups(a), groups(b));
    for g in ga.symmetric_difference(&gb) {
        let side = if ga.contains(g) { "first" } else { "second" };
        d.push(format!("{:?}: hardlinks share an inode only in {side}", g));
    }
    d
}

/// `tree_snapshot` that reports its panic (e.g. readdir lists a name lstat cannot find) as text.
fn snap(root: &Path) -> Result<BTreeMap<PathBuf, EntryInfo>, String> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| tree_snapshot(root));
    std::panic::set_hook(prev);
    r.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
            .replace(&root.display().to_string(), "MNT")
    })
}

/// unionrs-only invariant (DESIGN §2): d_ino from readdir equals st_ino.
fn dino_mismatches(t: &BTreeMap<PathBuf, EntryInfo>) -> Vec<String> {
    t.iter()
        .filter(|(_, e)| e.d_ino.is_some_and(|d| d != e.ino))
        .map(|(k, e)| {
            format!(
                "{}: d_ino {} != st_ino {}",
                k.display(),
                e.d_ino.unwrap(),
                e.ino
            )
        })
        .collect()
}

fn sig_of(d: &[String]) -> String {
    let first = &d[0];
    let what = first.rsplit_once(": ").map(|(_, w)| w).unwrap_or(first);
    let word = if what.starts_with("only in") || what.starts_with("hardlinks") {
        what.split(" (").next().unwrap_or(what)
    } else {
        what.split(' ').next().unwrap_or(what)
    };
    word.to_string()
}

/// The upper-dir entry as the layer format defines it (same rules as tests/differential.rs).
#[derive(Debug, PartialEq)]
pub enum Layered {
    Whiteout,
    Dir {
        opaque: bool,
        mode: u32,
        owner: (u32, u32),
        xattrs: BTreeMap<String, Vec<u8>>,
    },
    Other {
        kind: Kind,
        mode: u32,
        owner: (u32, u32),
        size: u64,
        hash: Option<String>,
        target: Option<PathBuf>,
        xattrs: BTreeMap<String, Vec<u8>>,
    },
}

/// Normalizes an upper dir (shared with tests/differential.rs): whiteouts only where the name is in
/// some lower (elsewhere redundant), the opaque flag only of dirs that exist as dirs in a lower,
/// no inode numbers / link counts / times / overlay-private xattrs (origin, index, impure,
/// nlink, redirect values), content skipped for metacopy files, and nothing below a dir that
/// carries `trusted.overlay.redirect` on either side (a renamed lower dir may be a
/// kernel-style redirect or a full copy of the subtree).
pub fn normalize(
    up: &BTreeMap<PathBuf, EntryInfo>,
    lowers: &[PathBuf],
    skip: &[PathBuf],
) -> BTreeMap<PathBuf, Layered> {
    let in_lower = |p: &Path| {
        lowers
            .iter()
            .any(|l| fs::symlink_metadata(l.join(p)).is_ok())
    };
    let dir_in_lower = |p: &Path| lowers.iter().any(|l| l.join(p).is_dir());
    let public = |x: &BTreeMap<String, Vec<u8>>| {
        x.iter()
            .filter(|(k, _)| !snapshot::is_private_xattr(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut out = BTreeMap::new();
    for (p, e) in up {
        if p.as_os_str().is_empty() || skip.iter().any(|s| p.starts_with(s) && p != s) {
            continue;
        }
        let v = match e.kind {
            Kind::Whiteout if !in_lower(p) => continue,
            Kind::Whiteout => Layered::Whiteout,
            Kind::Dir => Layered::Dir {
                opaque: dir_in_lower(p)
                    && !skip.contains(p)
                    && e.xattrs.get("trusted.overlay.opaque").map(|v| &v[..]) == Some(b"y"),
                mode: e.mode,
                owner: (e.uid, e.gid),
                xattrs: public(&e.xattrs),
            },
            _ => Layered::Other {
                kind: e.kind.clone(),
                mode: e.mode,
                owner: (e.uid, e.gid),
                size: e.size,
                hash: if metacopy_mode() || e.xattrs.contains_key("trusted.overlay.metacopy") {
                    None
                } else {
                    e.hash.clone()
                },
                target: e.target.clone(),
                xattrs: public(&e.xattrs),
            },
        };
        out.insert(p.clone(), v);
    }
    out
}

fn keys_first(a: &BTreeMap<PathBuf, Layered>, b: &BTreeMap<PathBuf, Layered>) -> PathBuf {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .min()
        .cloned()
        .unwrap_or_default()
}

pub fn redirected(up: &BTreeMap<PathBuf, EntryInfo>) -> Vec<PathBuf> {
    up.iter()
        .filter(|(_, e)| e.xattrs.contains_key("trusted.overlay.redirect"))
        .map(|(p, _)| p.clone())
        .collect()
}

/// A read-only kernel overlay of a stack's lowers only, unmounted on drop.
struct LowerView(PathBuf);

impl LowerView {
    fn mount(l: &Layers) -> LowerView {
        let at = l.dir.path().join("lowerview");
        fs::create_dir_all(&at).unwrap();
        let lowers: Vec<String> = l.lowers.iter().map(|p| p.display().to_string()).collect();
        let ok = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lowers.join(":")))
            .arg(&at)
            .status()
            .unwrap();
        assert!(ok.success(), "read-only kernel overlay of the lowers");
        LowerView(at)
    }
}

impl Drop for LowerView {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The filesystem compared against the kernel (the kernel itself with UNIONRS_TEST_ONLY=kernel).
pub fn other_fs() -> Fs {
    if enabled(Fs::Unionrs) {
        Fs::Unionrs
    } else {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            super::skipped(concat!(
                module_path!(),
                ": unionrs not run, the kernel is compared with itself"
            ))
        });
        Fs::KernelOverlay
    }
}

/// Paths (relative) that exist in a merged view, for the generator.
pub fn existing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(root.join(rel)) else {
            return;
        };
        let mut v: Vec<_> = rd.flatten().collect();
        v.sort_by_key(|e| e.file_name());
        for e in v {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            out.push(p.clone());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

/// `UNIONRS_DIFF_METACOPY=1`: both sides mounted with metacopy=on (metadata changes of lower
/// files copy no data; the kernel's remount of the other upper too). The upper dirs' file
/// contents are then not compared (either side may hold a file as metacopy or with its data:
/// unionrs copies the data on rename, the kernel writes a redirect); the merged views, which
/// read the data, still are.
pub fn metacopy_mode() -> bool {
    std::env::var("UNIONRS_DIFF_METACOPY").as_deref() == Ok("1")
}

/// Runs `lowers` + the ops that `next` yields (it sees the kernel mount, for generation).
/// Returns the ops run (up to and including the first failing one) and the verdict.
pub fn run_with(
    lowers: &[Lw],
    every_step: bool,
    next: &mut dyn FnMut(&Path) -> Option<Op>,
) -> (Vec<Op>, Result<(), Failure>) {
    let lowers = &drop_unmerged_whiteouts(lowers.to_vec());
    let (a, b) = (Layers::new(3), Layers::new(3));
    build_lowers(&a, lowers);
    build_lowers(&b, lowers);
    for i in 0..3 {
        let (x, y) = (
            normalize(&upper_snapshot(&a.lowers[i]), &[], &[]),
            normalize(&upper_snapshot(&b.lowers[i]), &[], &[]),
        );
        assert_eq!(x, y, "the two builds of l{} differ", i + 1);
    }
    let other = other_fs();
    let fail = |sig: String, msg: String| Failure { sig, msg };
    let mut ops = Vec::new();
    let opts: &[&str] = if metacopy_mode() {
        &["metacopy=on"]
    } else {
        &[]
    };
    // Lower files with several links, by the st_ino the kernel shows them under: those with
    // several links in the kernel's lowers, and those linked through the mount (see
    // diff_views).
    let kernel_lower_links: std::cell::RefCell<BTreeSet<u64>> = std::cell::RefCell::new(
        a.lowers
            .iter()
            .flat_map(|l| upper_snapshot(l).into_values())
            .filter(|e| e.kind == Kind::File && e.nlink > 1)
            .map(|e| e.ino)
            .collect(),
    );
    let mut ma = mount(Fs::KernelOverlay, &a, opts);
    let mut mb = mount(other, &b, opts);
    if other == Fs::Unionrs {
        super::check_passthrough_as_asked(&b.mnt);
    }
    let view_check = |step: &str, relaxed: bool| -> Result<BTreeMap<PathBuf, EntryInfo>, Failure> {
        let mut ta = snap(&a.mnt).map_err(|e| {
            fail(
                "kernel-snapshot".into(),
                format!("kernel view after {step}: {e}"),
            )
        })?;
        let mut tb = snap(&b.mnt).map_err(|e| {
            fail(
                "snapshot".into(),
                format!("{other:?} view after {step}: {e}"),
            )
        })?;
        if relaxed {
            for e in ta.values_mut().chain(tb.values_mut()) {
                e.nlink = 0;
            }
        }
        let d = diff_views(&ta, &tb, &kernel_lower_links.borrow());
        if !d.is_empty() {
            return Err(fail(
                format!("view:{}", sig_of(&d)),
                format!(
                    "merged view after {step}, kernel vs {other:?}:\n  {}",
                    d.join("\n  ")
                ),
            ));
        }
        if other == Fs::Unionrs {
            let d = dino_mismatches(&tb);
            if !d.is_empty() {
                return Err(fail(
                    "dino".into(),
                    format!("after {step}:\n  {}", d.join("\n  ")),
                ));
            }
        }
        Ok(ta)
    };
    // docs/architecture.md §9 (deliberate): after a rename over one name of a file with
    // several links, unionrs's link count of that file is not moved. From then on, link
    // counts of files are not compared (which names share an inode still is).
    let mut nlink_relaxed = false;
    while let Some(op) = next(&a.mnt) {
        let i = ops.len();
        ops.push(op.clone());
        if let Rename(x, y) = op
            && fs::symlink_metadata(a.mnt.join(x)).is_ok()
            && fs::symlink_metadata(a.mnt.join(y)).is_ok_and(|m| !m.is_dir() && m.nlink() > 1)
        {
            nlink_relaxed = true;
        }
        if op == Remount {
            drop(ma);
            if let Err(f) = unmount_checked(mb, &format!(" at step {i}")) {
                return (ops, Err(f));
            }
            ma = mount(Fs::KernelOverlay, &a, opts);
            mb = mount(other, &b, opts);
            if every_step && let Err(f) = view_check(&format!("step {i} {op:?}"), nlink_relaxed) {
                return (ops, Err(f));
            }
            continue;
        }
        let (mut ra, mut rb) = (apply(&a.mnt, &op), apply(&b.mnt, &op));
        if let Link(x, _) = op
            && ra.0 == 0
            && let Ok(m) = fs::symlink_metadata(a.mnt.join(x))
        {
            kernel_lower_links.borrow_mut().insert(m.ino());
        }
        if nlink_relaxed && matches!(op, OpenUnlinkUse(..)) {
            let strip = |s: &str| {
                s.split(' ')
                    .filter(|w| !w.starts_with("nlink="))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            ra.1 = strip(&ra.1);
            rb.1 = strip(&rb.1);
        }
        // Kernel quirk (6.18): rmdir of a merged dir whose lower part holds xattr whiteouts
        // (`trusted.overlay.whiteout`) fails with ENOTEMPTY although readdir shows it empty,
        // even when the whiteouts hide real lower names; char-dev whiteouts do not do this.
        // A rename over such a dir goes through the same emptiness check (seed 396 with
        // UNIONRS_DIFF_NO_LOWER_LINKS=1: rename of an empty dir over one).
        // Not a reference behaviour to copy; the two sides now differ, so the run ends here.
        if matches!(op, Rmdir(_) | Rename(..))
            && ra.0 == libc::ENOTEMPTY
            && rb.0 == 0
            && lowers.iter().any(|l| matches!(l, LXWhiteout(..)))
        {
            return (ops, Ok(()));
        }
        if ra != rb {
            let kind = format!("{op:?}");
            let kind = kind.split('(').next().unwrap();
            return (
                ops,
                Err(fail(
                    format!("errno:{kind}:{}:{}", ra.0, rb.0),
                    format!(
                        "step {i} {op:?}: kernel errno {} {:?}, {other:?} errno {} {:?}",
                        ra.0, ra.1, rb.0, rb.1
                    ),
                )),
            );
        }
        if every_step && let Err(f) = view_check(&format!("step {i} {op:?}"), nlink_relaxed) {
            return (ops, Err(f));
        }
    }
    let ta = match view_check("the last step", nlink_relaxed) {
        Ok(t) => t,
        Err(f) => return (ops, Err(f)),
    };
    drop(ma);
    if let Err(f) = unmount_checked(mb, "") {
        return (ops, Err(f));
    }

    let (ua, ub) = (upper_snapshot(a.upper()), upper_snapshot(b.upper()));
    let mut skip = redirected(&ua);
    skip.extend(redirected(&ub));
    // Whether a name "exists below" is what a read-only kernel overlay of the lowers alone
    // shows (whiteouts and opaque dirs in the lowers applied): a whiteout in the upper over
    // a name that is itself whited out below is redundant, whoever writes it.
    let lo = LowerView::mount(&a);
    let vis = [lo.0.clone()];
    let (na, nb) = (normalize(&ua, &vis, &skip), normalize(&ub, &vis, &skip));
    drop(lo);
    // docs/architecture.md §9 (deliberate, hard-link index format): a name of a
    // multiply-linked lower file may be materialized in the upper on one side only (the
    // kernel links every name it opens for write to the index copy; unionrs may reach the
    // copy through WORK/unionrs.index without a name in the upper). The merged views were
    // compared above; here such a one-sided hard-linked copy is not a difference.
    let linked = |u: &BTreeMap<PathBuf, EntryInfo>, k: &Path| {
        u.get(k).is_some_and(|e| {
            e.kind == Kind::File
                && (e.xattrs.contains_key("trusted.overlay.nlink")
                    || e.xattrs.contains_key("trusted.unionrs.nlink")
                    || e.nlink > 1)
        })
    };
    let na: BTreeMap<_, _> = na
        .into_iter()
        .filter(|(k, _)| nb.contains_key(k) || !linked(&ua, k))
        .collect();
    let nb: BTreeMap<_, _> = nb
        .into_iter()
        .filter(|(k, _)| na.contains_key(k) || !linked(&ub, k))
        .collect();
    let keys: BTreeSet<_> = na.keys().chain(nb.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| na.get(*k) != nb.get(*k))
        .map(|k| {
            format!(
                "{}: kernel {:?} / {other:?} {:?}",
                k.display(),
                na.get(k),
                nb.get(k)
            )
        })
        .collect();
    if !diffs.is_empty() {
        let k = keys_first(&na, &nb);
        let sig = match (na.get(&k), nb.get(&k)) {
            (Some(_), None) => "upper:only-kernel",
            (None, Some(_)) => "upper:only-other",
            (Some(Layered::Dir { opaque: x, .. }), Some(Layered::Dir { opaque: y, .. }))
                if x != y =>
            {
                "upper:opaque"
            }
            _ => "upper:differs",
        };
        return (
            ops,
            Err(fail(
                sig.into(),
                format!("upper dirs differ:\n  {}", diffs.join("\n  ")),
            )),
        );
    }

    // The unionrs upper, mounted by the kernel over the same lowers, shows the same view.
    // The workdir is kept: with index=on the hard-link index (workdir/index) is part of the
    // on-disk state (a lower hard link copied up through one name is found through the other
    // names only via the index), for the kernel and for unionrs alike.
    let out = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "{},redirect_dir=on,index=on{}",
            super::layer_opts(&b),
            if metacopy_mode() { ",metacopy=on" } else { "" }
        ))
        .arg(&b.mnt)
        .output()
        .unwrap();
    if !out.status.success() {
        return (
            ops,
            Err(fail(
                "remount-refused".into(),
                format!(
                    "kernel refuses the {other:?} upper: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            )),
        );
    }
    let tk = snap(&b.mnt);
    let _ = std::process::Command::new("umount").arg(&b.mnt).status();
    let tk = match tk {
        Ok(t) => t,
        Err(e) => return (ops, Err(fail("remount-snapshot".into(), e))),
    };
    // docs/architecture.md §9 (deliberate): the kernel does not read WORK/unionrs.index, so
    // under the kernel a lower hard link that unionrs copied up through one name no longer
    // shares an inode with its other names, and those names (not in the unionrs upper) show
    // the lower file. Leave out names of lower files with several links that are absent from
    // the unionrs upper, and the link count / sharing of lower hard-linked files.
    // (tests/union_regressions.rs keeps one case: §9 says "data is still correct", it is not.)
    // Kernel overlayfs on one filesystem reports a lower file's own st_ino, so the names the
    // kernel still resolves to a multiply-linked lower file (also below renamed dirs) are
    // those whose st_ino is one of these.
    let mut multi = BTreeSet::new();
    for l in &b.lowers {
        for (_, e) in upper_snapshot(l) {
            if e.kind == Kind::File && e.nlink > 1 {
                multi.insert(e.ino);
            }
        }
    }
    let skip: BTreeSet<PathBuf> = tk
        .iter()
        .filter(|(_, e)| e.kind == Kind::File && multi.contains(&e.ino))
        .map(|(p, _)| p.clone())
        .collect();
    let relevant = |t: &BTreeMap<PathBuf, EntryInfo>| -> BTreeMap<PathBuf, EntryInfo> {
        t.iter()
            .filter(|(p, _)| !skip.contains(*p))
            .map(|(p, e)| {
                let mut e = e.clone();
                let other = ta.get(p).into_iter().chain(tk.get(p));
                if nlink_relaxed || (e.kind == Kind::File && other.clone().any(|x| x.nlink > 1)) {
                    e.nlink = 0;
                }
                (p.clone(), e)
            })
            .collect()
    };
    let d: Vec<String> = diff_views(&relevant(&ta), &relevant(&tk), &kernel_lower_links.borrow())
        .into_iter()
        .filter(|l| !l.contains("hardlinks share an inode"))
        .collect();
    if !d.is_empty() {
        return (
            ops,
            Err(fail(
                format!("remount:{}", sig_of(&d)),
                format!(
                    "kernel view vs {other:?} upper under kernel:\n  {}",
                    d.join("\n  ")
                ),
            )),
        );
    }
    (ops, Ok(()))
}

/// Unmounts; a daemon that exits other than cleanly is a failure (`when` ends its message).
fn unmount_checked(g: super::MountGuard, when: &str) -> Result<(), Failure> {
    match g.unmount() {
        Some(st) if !st.success() => Err(Failure {
            sig: "daemon-exit".into(),
            msg: format!("daemon exited with {st}{when}"),
        }),
        _ => Ok(()),
    }
}

pub fn run_case(c: &Case) -> Result<(), Failure> {
    let mut it = c.ops.iter().cloned();
    run_with(&c.lowers, c.every_step, &mut |_| it.next()).1
}

/// Panics with the failure (for the fixed regression tests).
pub fn check(c: &Case) {
    if let Err(f) = run_case(c) {
        panic!("[{}] {}", f.sig, f.msg);
    }
}

/// Greedy shrinking: drop ops, then lower entries, one at a time while the failure keeps
/// its signature; repeat until nothing more can go or the budget is spent.
pub fn shrink(mut c: Case, sig: &str, budget: Duration) -> (Case, usize) {
    let deadline = Instant::now() + budget;
    let mut runs = 0;
    let mut fails = |t: &Case| {
        runs += 1;
        matches!(run_case(t), Err(f) if f.sig == sig)
    };
    if c.every_step {
        let t = Case {
            every_step: false,
            ..c.clone()
        };
        if fails(&t) {
            c = t;
        }
    }
    loop {
        let mut changed = false;
        for i in (0..c.ops.len()).rev() {
            if Instant::now() > deadline {
                break;
            }
            let mut t = c.clone();
            t.ops.remove(i);
            if fails(&t) {
                c = t;
                changed = true;
            }
        }
        for i in (0..c.lowers.len()).rev() {
            if Instant::now() > deadline {
                break;
            }
            let mut t = c.clone();
            t.lowers.remove(i);
            if fails(&t) {
                c = t;
                changed = true;
            }
        }
        if !changed || Instant::now() > deadline {
            break;
        }
    }
    (c, runs)
}

/// The case as Rust to paste into tests/union_regressions.rs.
pub fn to_rust(c: &Case) -> String {
    let mut s = format!(
        "Case {{\n    every_step: {},\n    lowers: vec![\n",
        c.every_step
    );
    for l in &c.lowers {
        s += &format!("        {l:?},\n");
    }
    s += "    ],\n    ops: vec![\n";
    for o in &c.ops {
        s += &format!("        {o:?},\n");
    }
    s += "    ],\n}";
    s
}

// ---------------------------------------------------------------------------------------
// Generation

/// xorshift64* PRNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        if r.0 == 0 {
            r.0 = 1;
        }
        for _ in 0..4 {
            r.next();
        }
        r
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

const LOWER_NAMES: &[&str] = &["a", "b", "c", "d"];
const OP_NAMES: &[&str] = &["a", "b", "c", "d", "e"];
const MODES: &[u32] = &[0o644, 0o600, 0o755, 0o444, 0o640, 0o4755, 0o2755];
const DIR_MODES: &[u32] = &[0o755, 0o700, 0o775, 0o555, 0o2775, 0o1777];
const IDS: &[(u32, u32)] = &[(0, 0), (1000, 1000), (1234, 5678), (0, 100)];
const XNAMES: &[&str] = &["user.x", "user.y", "user.z", "trusted.t"];

fn data(r: &mut Rng) -> &'static str {
    let c = r.pick(&['p', 'q', 'r', 's', 't', 'u']);
    if r.chance(10) {
        return leak(format!("{c}*{}+{}", 5000 + r.below(3000), r.below(10)));
    }
    leak(std::iter::repeat_n(c, r.below(24)).collect::<String>() + &format!("{}", r.below(10)))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A random 3-layer stack in kernel format.
pub fn gen_lowers(r: &mut Rng) -> Vec<Lw> {
    let mut out = Vec::new();
    for layer in [3u8, 2, 1] {
        let mut files = Vec::new();
        gen_dir(r, layer, "", 0, &mut out, &mut files);
    }
    out
}

/// Fills `dir` of `layer`; returns whether an xattr whiteout went directly into it.
fn gen_dir(
    r: &mut Rng,
    layer: u8,
    dir: &str,
    depth: usize,
    out: &mut Vec<Lw>,
    files: &mut Vec<&'static str>,
) -> bool {
    let mut xwh = false;
    for name in LOWER_NAMES {
        let p = leak(join(dir, name));
        let x = r.below(100);
        if x < 35 + depth * 15 {
            continue;
        } else if x < 62 {
            out.push(LFile(layer, p, data(r), M(r.pick(MODES))));
            files.push(p);
            if r.chance(20) {
                out.push(LXattr(
                    layer,
                    p,
                    r.pick(XNAMES),
                    leak(format!("l{}", r.below(100))),
                ));
            }
            if r.chance(10) {
                let (u, g) = r.pick(IDS);
                out.push(LChown(layer, p, u, g));
            }
        } else if x < 80 && depth < 2 {
            out.push(LDir(layer, p, M(r.pick(DIR_MODES))));
            if r.chance(20) {
                out.push(LXattr(
                    layer,
                    p,
                    r.pick(XNAMES),
                    leak(format!("l{}", r.below(100))),
                ));
            }
            let has_x = gen_dir(r, layer, p, depth + 1, out, files);
            if layer < 3 && !has_x && r.chance(25) {
                out.push(LOpaque(layer, p));
            }
        } else if x < 86 {
            out.push(LSymlink(layer, p, symlink_target(r, depth + 1)));
        } else if x < 95 && layer < 3 {
            if depth > 0 && r.chance(25) {
                out.push(LXWhiteout(layer, p));
                xwh = true;
            } else {
                out.push(LWhiteout(layer, p));
            }
        } else if !files.is_empty() && std::env::var_os("UNIONRS_DIFF_NO_LOWER_LINKS").is_none() {
            let src = r.pick(files);
            out.push(LLink(layer, src, p));
        }
    }
    xwh
}

/// A relative symlink target that never leaves the mount (`depth` = components of the link).
fn symlink_target(r: &mut Rng, depth: usize) -> &'static str {
    let mut t = String::new();
    if depth > 1 && r.chance(40) {
        t += "../";
    }
    t += r.pick(OP_NAMES);
    if r.chance(25) {
        t += "/";
        t += r.pick(OP_NAMES);
    }
    leak(t)
}

fn gen_path(r: &mut Rng, existing: &[String]) -> &'static str {
    if !existing.is_empty() && r.chance(60) {
        return leak(existing[r.below(existing.len())].clone());
    }
    let depth = match r.below(100) {
        0..50 => 1,
        50..85 => 2,
        _ => 3,
    };
    let v: Vec<&str> = (0..depth).map(|_| r.pick(OP_NAMES)).collect();
    leak(v.join("/"))
}

/// A random op; `existing` is the kernel's current merged view (paths).
pub fn gen_op(r: &mut Rng, existing: &[String]) -> Op {
    let p = gen_path(r, existing);
    let q = gen_path(r, existing);
    let m = M(r.pick(MODES));
    match r.below(119) {
        0..8 => Create(p, m),
        8..11 => CreateExcl(p, m),
        11..19 => Write(p, r.below(40) as u64, data(r)),
        19..25 => Append(p, data(r)),
        25..31 => Truncate(p, r.pick(&[0u64, 3, 10, 100, 6000])),
        31..36 => Chmod(
            p,
            if r.chance(30) {
                M(r.pick(DIR_MODES))
            } else {
                m
            },
        ),
        36..40 => {
            let (u, g) = r.pick(IDS);
            Chown(p, u, g)
        }
        40..44 => Utimes(
            p,
            1_200_000_000 + r.below(1000) as i64,
            r.below(1_000_000_000) as i64,
        ),
        44..54 => Rename(p, q),
        54..58 => RenameNoReplace(p, q),
        58..63 => Exchange(p, q),
        63..68 => Link(p, q),
        68..76 => Unlink(p),
        76..81 => Rmdir(p),
        81..88 => Mkdir(p, M(r.pick(DIR_MODES))),
        88..91 => Symlink(symlink_target(r, p.matches('/').count() + 1), p),
        91..96 => SetXattr(p, r.pick(XNAMES), leak(format!("v{}", r.below(100)))),
        96..100 => RemoveXattr(p, r.pick(XNAMES)),
        100..105 => OpenUnlinkUse(p, data(r), r.pick(&[0u64, 2, 7, 50])),
        105..107 => Remount,
        107..111 => CreateTrunc(p, m, data(r)),
        111..113 => Mkfifo(p, m),
        113..115 => MknodChar(p, r.pick(&[0, 1]), r.pick(&[0, 3])),
        _ => TruncatePath(p, r.pick(&[0u64, 5, 200])),
    }
}

/// Drops whiteouts that kernel overlayfs would list in readdir yet fail to look up: a whiteout
/// in a directory that does not merge with anything below (the kernel iterates such a "real"
/// directory directly). That is a degenerate input on which the kernel itself is inconsistent,
/// so it cannot serve as the reference there.
/// Also drops whiteouts (both forms) in a directory that does not merge with the layer right
/// below (every ancestor dir present in the next layer, none opaque in this one): in such a
/// non-merged dir the kernel reports ENOTEMPTY on rmdir although readdir shows it empty.
pub fn sanitize(lowers: Vec<Lw>) -> Vec<Lw> {
    let mut lowers = drop_unmerged_whiteouts(lowers);
    for _ in 0..20 {
        let l = Layers::new(3);
        build_lowers(&l, &lowers);
        let bad = {
            let _m = mount(Fs::KernelOverlay, &l, &[]);
            snap(&l.mnt).err()
        };
        let Some(e) = bad else { return lowers };
        let Some(path) = e
            .strip_prefix("lstat MNT/")
            .and_then(|r| r.split(": ").next())
        else {
            return lowers;
        };
        let n = lowers.len();
        lowers.retain(|x| !matches!(x, LWhiteout(_, p) | LXWhiteout(_, p) if *p == path));
        if lowers.len() == n {
            return lowers;
        }
    }
    lowers
}

/// The structural half of `sanitize`; also applied to every case run (shrinking may remove
/// the dir below a whiteout).
pub fn drop_unmerged_whiteouts(mut lowers: Vec<Lw>) -> Vec<Lw> {
    let snapshot = lowers.clone();
    let merges = |n: u8, path: &str| {
        let mut anc = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            anc = join(&anc, part);
            let below = snapshot
                .iter()
                .any(|x| matches!(x, LDir(m, p, _) if *m == n + 1 && *p == anc));
            let opaque = snapshot
                .iter()
                .any(|x| matches!(x, LOpaque(m, p) if *m == n && *p == anc));
            if !below || opaque {
                return false;
            }
        }
        true
    };
    lowers.retain(|x| match x {
        LWhiteout(n, p) | LXWhiteout(n, p) => merges(*n, p),
        _ => true,
    });
    lowers
}

/// Generates and runs one seed: `steps` ops on a random stack.
pub fn run_seed(seed: u64, steps: usize) -> (Case, Result<(), Failure>) {
    let mut r = Rng::new(seed);
    let lowers = sanitize(gen_lowers(&mut r));
    let every_step = seed % 2 == 1;
    let mut n = 0;
    let (ops, res) = run_with(&lowers, every_step, &mut |kmnt| {
        if n == steps {
            return None;
        }
        n += 1;
        Some(gen_op(&mut r, &existing(kmnt)))
    });
    (
        Case {
            every_step,
            lowers,
            ops,
        },
        res,
    )
}
