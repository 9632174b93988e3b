//! `unionrs check`: an fsck for an upper dir (and its workdir), with a `--repair` mode.
//!
//! What it looks for: entries left in `W/work` (staged copies a crash never renamed into the
//! upper: never visible, safe to delete), hard-link index entries nothing uses any more (no
//! upper name, and no lower file of that inode left: needs the lowers),
//! malformed overlay xattrs (opaque not `y`/`x`, redirects that are empty, relative with a `/`,
//! on a non-directory or, with lowers, pointing at no lower directory; origin / nlink values
//! that are not 8 bytes), and whiteouts that hide nothing: inside an opaque directory (known
//! from the upper alone) or, when the lowers are given, over a name no lower has; metacopy
//! files (metadata-only copy-ups) whose data no lower file holds, when the lowers are given
//! (the mount answers EIO for those; repair cannot bring the data back).
//!
//! Repair only does what leaves the merged view as it is: it deletes work and orphaned index
//! entries and whiteouts that hide nothing, and drops malformed xattrs (a redirect that points
//! nowhere becomes `opaque=y`, which shows the same: the directory's own entries only; a
//! malformed metacopy value becomes the kernel's empty one, still read as metacopy).
//! All layer access goes through the layers' root fds (no symlink inside a layer is followed).

use super::layer::Layer;
use super::whiteout::{self, OPAQUE_MARKER, WH_PREFIX};
use super::{index_format, path};
use crate::sys::fs::{self, Stat};
use crate::sys::{Errno, xattr};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub upper: PathBuf,
    /// The workdir (the one given as `workdir=` at mount time).
    pub work: Option<PathBuf>,
    /// Lower layers, top first; empty: only structural problems are reported.
    pub lowers: Vec<PathBuf>,
    pub repair: bool,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// An entry in `W/work`: a staged copy that was never renamed into the upper.
    StrayWork(PathBuf),
    /// An index entry whose file no upper name links to any more.
    OrphanedIndex(PathBuf),
    /// Something in the index that the mount never puts there.
    StrayIndex(PathBuf),
    /// A whiteout over a name that no layer below has (`why` says how that is known).
    UselessWhiteout { path: PathBuf, why: &'static str },
    /// A metacopy file (metadata-only copy-up) whose data no lower layer holds.
    MetacopyWithoutData(PathBuf),
    /// An xattr the mount cannot use as it is.
    BadXattr {
        path: PathBuf,
        attr: String,
        value: Vec<u8>,
        why: &'static str,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::StrayWork(p) => write!(f, "stray work entry: {}", p.display()),
            Finding::OrphanedIndex(p) => {
                write!(f, "orphaned index entry (nlink 1): {}", p.display())
            }
            Finding::StrayIndex(p) => {
                write!(f, "stray index entry (not a regular file): {}", p.display())
            }
            Finding::MetacopyWithoutData(p) => write!(
                f,
                "metacopy file whose data no lower layer holds (reads fail with EIO): {}",
                p.display()
            ),
            Finding::UselessWhiteout { path, why } => {
                write!(f, "whiteout hides nothing ({why}): {}", path.display())
            }
            Finding::BadXattr {
                path,
                attr,
                value,
                why,
            } => write!(
                f,
                "bad xattr {attr}={:?} ({why}): {}",
                String::from_utf8_lossy(value),
                path.display()
            ),
        }
    }
}

/// The outcome: what was found, and (with repair) what was done about it.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// One line per repair done.
    pub repaired: Vec<String>,
    /// Findings repair could not fix (one line each, with the reason).
    pub unrepaired: Vec<String>,
    /// Things worth saying that are not problems (e.g. a live mount holds the workdir).
    pub notes: Vec<String>,
}

impl Report {
    /// Clean: nothing found, or (with repair) everything found was fixed.
    pub fn clean(&self, repair: bool) -> bool {
        if repair {
            self.unrepaired.is_empty()
        } else {
            self.findings.is_empty()
        }
    }
}

/// Where the lower content of an upper directory comes from.
#[derive(Clone, Debug)]
enum Below {
    /// Lowers not given, and nothing in the upper says there is nothing below.
    Unknown,
    /// Nothing below: the directory (or an ancestor) is opaque.
    Opaque,
    /// These lower directories (layer index into the lowers, path), top first; may be empty.
    Dirs(Vec<(usize, Vec<u8>)>),
}

struct Checker<'a> {
    opts: &'a CheckOptions,
    upper: Layer,
    lowers: Vec<Layer>,
    report: Report,
}

/// Checks (and with `opts.repair`, repairs) an upper dir. Errors are operational (a
/// directory that cannot be opened, a workdir held by a live mount when repairing).
pub fn check(opts: &CheckOptions) -> Result<Report, String> {
    let upper = Layer::at(&opts.upper)?;
    let lowers = opts
        .lowers
        .iter()
        .map(|l| Layer::at(l))
        .collect::<Result<Vec<_>, _>>()?;
    let mut c = Checker {
        opts,
        upper,
        lowers,
        report: Report::default(),
    };
    // Held for the whole check: a mount started meanwhile must not clean or use W under us.
    let _lock = match &opts.work {
        Some(w) => c.check_work(w)?,
        None => None,
    };
    let below = if c.lowers.is_empty() {
        Below::Unknown
    } else {
        Below::Dirs((0..c.lowers.len()).map(|i| (i, Vec::new())).collect())
    };
    c.walk(b"", &below)?;
    Ok(c.report)
}

impl Checker<'_> {
    /// W/work, W/index and W/unionrs.index. Returns the workdir lock when it could be taken.
    fn check_work(&mut self, w: &Path) -> Result<Option<OwnedFd>, String> {
        let lock = match take_lock(w) {
            Ok(l) => l,
            Err(e) if e == Errno(libc::EWOULDBLOCK) => {
                if self.opts.repair {
                    return Err(format!(
                        "workdir {} is in use by a live mount: unmount it before --repair",
                        w.display()
                    ));
                }
                self.report.notes.push(format!(
                    "workdir {} is in use by a live mount: its work and index entries are in \
                     flight and were not checked",
                    w.display()
                ));
                return Ok(None);
            }
            Err(e) => return Err(format!("cannot lock {}/unionrs.lock: {e}", w.display())),
        };
        let work = w.join("work");
        if let Some(dir) = open_dir_if_exists(&work)? {
            for e in list(dir.as_fd(), &work)? {
                let p = work.join(os(&e.name));
                // The kernel's (and our) volatile marker: deliberate, removed by its owner.
                if e.name == b"incompat" {
                    self.report.notes.push(format!(
                        "{} marks a volatile mount; left alone",
                        p.display()
                    ));
                    continue;
                }
                self.report.findings.push(Finding::StrayWork(p.clone()));
                if self.opts.repair {
                    match remove_tree(dir.as_fd(), &e.name) {
                        Ok(()) => self
                            .report
                            .repaired
                            .push(format!("removed stray work entry {}", p.display())),
                        Err(e) => self
                            .report
                            .unrepaired
                            .push(format!("cannot remove {}: {e}", p.display())),
                    }
                }
            }
        }
        self.check_index_dir(&w.join(os(index_format::INDEX_DIR)), true)?;
        self.check_index_dir(&w.join(os(index_format::OWN_INDEX_DIR)), false)?;
        Ok(Some(lock))
    }

    /// One index directory: entries that are not regular files, and entries no upper name
    /// links to (see `check_lone_index`).
    /// In the kernel's index directory, whiteouts and directories are the kernel's own
    /// (index entries of deleted files and of directories, kept for NFS export).
    fn check_index_dir(&mut self, index: &Path, kernels: bool) -> Result<(), String> {
        if let Some(dir) = open_dir_if_exists(index)? {
            let mut lone = Vec::new();
            for e in list(dir.as_fd(), index)? {
                let p = index.join(os(&e.name));
                let Ok(st) = fs::stat_at(dir.as_fd(), &e.name) else {
                    continue;
                };
                let kernels_own =
                    kernels && (kind(&st) == libc::S_IFDIR || whiteout::is_device_whiteout(&st));
                if kernels_own {
                    continue;
                }
                if kind(&st) != libc::S_IFREG {
                    self.report.findings.push(Finding::StrayIndex(p.clone()));
                    if self.opts.repair {
                        // The mount never makes one: left for a human.
                        self.report
                            .unrepaired
                            .push(format!("left alone (not made by unionrs): {}", p.display()));
                    }
                } else if st.st_nlink <= 1 {
                    lone.push(e.name);
                }
            }
            self.check_lone_index(dir.as_fd(), index, lone);
        }
        Ok(())
    }

    /// Index entries no upper name links to. Such an entry is still in use while a lower
    /// file with that device and inode number has names: those names show the index copy
    /// (which holds the data written through a name since deleted). Only an entry whose lower
    /// file is gone is orphaned; without the lowers that cannot be told, so it is only noted.
    fn check_lone_index(&mut self, dir: BorrowedFd<'_>, index: &Path, lone: Vec<Vec<u8>>) {
        if lone.is_empty() {
            return;
        }
        if self.lowers.is_empty() {
            for name in lone {
                self.report.notes.push(format!(
                    "index entry {} has no upper name: orphaned unless a lower file still has \
                     it (give --lower to tell)",
                    index.join(os(&name)).display()
                ));
            }
            return;
        }
        let mut keys = std::collections::HashSet::new();
        for l in &self.lowers {
            linked_files(l.root(), l.fs_uuid().as_ref(), &mut keys, 0);
        }
        for name in lone.into_iter().filter(|n| !keys.contains(n)) {
            let p = index.join(os(&name));
            self.report.findings.push(Finding::OrphanedIndex(p.clone()));
            if self.opts.repair {
                match fs::unlink_at(dir, &name, false) {
                    Ok(()) => self
                        .report
                        .repaired
                        .push(format!("removed orphaned index entry {}", p.display())),
                    Err(e) => self
                        .report
                        .unrepaired
                        .push(format!("cannot remove {}: {e}", p.display())),
                }
            }
        }
    }

    fn upper_path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.opts.upper.clone()
        } else {
            self.opts.upper.join(os(rel))
        }
    }

    /// Checks upper directory `rel` whose lower content is `below`, then its subdirectories.
    fn walk(&mut self, rel: &[u8], below: &Below) -> Result<(), String> {
        let dir = self
            .upper
            .dir(rel)
            .map_err(|e| format!("cannot open {}: {e}", self.upper_path(rel).display()))?;
        let entries = list(dir.as_fd(), &self.upper_path(rel))?;
        // The user-format opaque marker makes this directory opaque as the xattr does.
        let below = if entries.iter().any(|e| e.name == OPAQUE_MARKER) && !rel.is_empty() {
            &Below::Opaque
        } else {
            below
        };
        for e in &entries {
            let name = &e.name;
            let child = path::join(rel, name);
            let Ok(st) = fs::stat_at(dir.as_fd(), name) else {
                continue; // gone meanwhile
            };
            self.check_xattrs(dir.as_fd(), name, &child, &st);
            if name.as_slice() == OPAQUE_MARKER {
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WH_PREFIX) {
                self.check_whiteout(dir.as_fd(), name, hidden, &child, below);
                continue;
            }
            if whiteout::is_whiteout(dir.as_fd(), name, &st) {
                self.check_whiteout(dir.as_fd(), name, name, &child, below);
                continue;
            }
            if kind(&st) == libc::S_IFDIR {
                let sub = self.below_child(dir.as_fd(), rel, name, below);
                self.walk(&child, &sub)?;
            }
            if kind(&st) == libc::S_IFREG && is_metacopy(dir.as_fd(), name) {
                self.check_metacopy_data(dir.as_fd(), name, rel, below);
            }
        }
        Ok(())
    }

    /// Opaque, redirect, origin and nlink xattrs of one upper entry.
    fn check_xattrs(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: &[u8], st: &Stat) {
        let Ok(attrs) = xattr::list(dir, name) else {
            return;
        };
        let is_dir = kind(st) == libc::S_IFDIR;
        for attr in attrs {
            let Ok(value) = xattr::get(dir, name, &attr) else {
                continue;
            };
            let a = String::from_utf8_lossy(&attr).into_owned();
            let why = match a.as_str() {
                "trusted.overlay.opaque" | "user.overlay.opaque" => {
                    (value != b"y" && value != b"x").then_some("opaque must be y or x")
                }
                "trusted.overlay.metacopy" | "user.overlay.metacopy" => {
                    if kind(st) != libc::S_IFREG {
                        Some("metacopy on a non-regular file")
                    } else {
                        (!whiteout::is_valid_metacopy(&value)).then_some(BAD_METACOPY_VALUE)
                    }
                }
                "trusted.overlay.redirect" | "user.overlay.redirect" => {
                    // A renamed metacopy file points at its data by an absolute redirect.
                    let metacopy_file = kind(st) == libc::S_IFREG && is_metacopy(dir, name);
                    if metacopy_file && value.starts_with(b"/") && value.len() > 1 {
                        None
                    } else if !is_dir {
                        Some("redirect on a non-directory")
                    } else if value.is_empty() || value == b"/" {
                        Some("empty redirect")
                    } else if !value.starts_with(b"/") && value.contains(&b'/') {
                        Some("relative redirect with a /")
                    } else if value.split(|b| *b == b'/').any(|c| c == b"..") {
                        Some("redirect with ..")
                    } else if !self.lowers.is_empty() {
                        let (parent, _) = path::split(rel);
                        let target = resolve_redirect(&value, parent);
                        (!self.lowers.iter().any(|l| is_dir_at(l, &target)))
                            .then_some("redirect to no lower directory")
                    } else {
                        None
                    }
                }
                "trusted.unionrs.origin" | "user.unionrs.origin" => {
                    (value.len() != 8).then_some("origin must be 8 bytes")
                }
                "trusted.unionrs.nlink" | "user.unionrs.nlink" => {
                    (value.len() != 8).then_some("nlink must be 8 bytes")
                }
                "trusted.overlay.nlink" => index_format::parse_nlink(&value)
                    .is_none()
                    .then_some("nlink must be U+N, U-N, L+N or L-N"),
                "trusted.overlay.origin" => (!index_format::is_origin_fh(&value))
                    .then_some("origin is not a file handle of the kernel's format"),
                _ => None,
            };
            let Some(why) = why else { continue };
            let path = self.upper_path(rel);
            self.report.findings.push(Finding::BadXattr {
                path: path.clone(),
                attr: a.clone(),
                value: value.clone(),
                why,
            });
            if self.opts.repair {
                self.drop_xattr(dir, name, &attr, &path, why);
            }
        }
    }

    fn drop_xattr(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        attr: &[u8],
        path: &Path,
        why: &str,
    ) {
        let a = String::from_utf8_lossy(attr);
        if why == BAD_METACOPY_VALUE {
            // The mount reads the data from the lower whatever the value: the kernel's empty
            // form keeps that, where removing the xattr would show the empty upper file.
            match xattr::set(dir, name, attr, b"", 0) {
                Ok(()) => self
                    .report
                    .repaired
                    .push(format!("emptied {a} of {}", path.display())),
                Err(e) => self
                    .report
                    .unrepaired
                    .push(format!("cannot rewrite {a} of {}: {e}", path.display())),
            }
            return;
        }
        if let Err(e) = xattr::remove(dir, name, attr) {
            self.report
                .unrepaired
                .push(format!("cannot remove {a} from {}: {e}", path.display()));
            return;
        }
        let mut done = format!("removed {a} from {}", path.display());
        if why == "redirect to no lower directory" {
            // The directory showed only its own entries; opaque keeps it so (without the
            // redirect it would start merging same-named lower directories).
            let opaque = if attr.starts_with(b"user.") {
                &b"user.overlay.opaque"[..]
            } else {
                b"trusted.overlay.opaque"
            };
            match xattr::set(dir, name, opaque, b"y", 0) {
                Ok(()) => done += &format!(" and set {}=y", String::from_utf8_lossy(opaque)),
                Err(e) => {
                    self.report.unrepaired.push(format!(
                        "removed {a} from {} but could not make it opaque: {e}",
                        path.display()
                    ));
                    return;
                }
            }
        }
        self.report.repaired.push(done);
    }

    /// A whiteout `marker` in upper dir `dir` hiding `hidden`; flags it when it hides nothing.
    fn check_whiteout(
        &mut self,
        dir: BorrowedFd<'_>,
        marker: &[u8],
        hidden: &[u8],
        rel: &[u8],
        below: &Below,
    ) {
        let why = match below {
            Below::Unknown => return,
            Below::Opaque => "inside an opaque directory",
            Below::Dirs(dirs) => match self.lower_entry(dirs, hidden) {
                LowerEntry::Visible => return,
                LowerEntry::WhitedOut => "already whited out below",
                LowerEntry::Absent => "no lower layer has the name",
            },
        };
        let path = self.upper_path(rel);
        self.report.findings.push(Finding::UselessWhiteout {
            path: path.clone(),
            why,
        });
        if self.opts.repair {
            match fs::unlink_at(dir, marker, false) {
                Ok(()) => self
                    .report
                    .repaired
                    .push(format!("removed whiteout {}", path.display())),
                Err(e) => self
                    .report
                    .unrepaired
                    .push(format!("cannot remove whiteout {}: {e}", path.display())),
            }
        }
    }

    /// A metacopy file `name` in upper directory `dir` (`parent` its path) must find its
    /// data in a lower layer: at its redirect, else under its own name in the directories
    /// below. Not judged without the lowers.
    fn check_metacopy_data(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        parent: &[u8],
        below: &Below,
    ) {
        if self.lowers.is_empty() {
            return;
        }
        let found = match whiteout::redirect(dir, name, parent) {
            Some(target) => {
                self.lowers.iter().find_map(|l| {
                    let st = l.stat(&target).ok()?;
                    let (p, n) = path::split(&target);
                    let d = l.dir(p).ok()?;
                    Some(kind(&st) == libc::S_IFREG && !whiteout::is_whiteout(d.as_fd(), n, &st))
                }) == Some(true)
            }
            None => match below {
                Below::Unknown => return,
                Below::Opaque => false,
                Below::Dirs(dirs) => self.lower_regular_file(dirs, name),
            },
        };
        if found {
            return;
        }
        let path = self.upper_path(&path::join(parent, name));
        self.report
            .findings
            .push(Finding::MetacopyWithoutData(path.clone()));
        if self.opts.repair {
            self.report.unrepaired.push(format!(
                "metacopy file {}: its data is not in any lower layer and cannot be recovered; \
                 restore the lower layer, or remove the file",
                path.display()
            ));
        }
    }

    /// Whether the lower directories `dirs` (top first) show a regular file under `name`.
    fn lower_regular_file(&self, dirs: &[(usize, Vec<u8>)], name: &[u8]) -> bool {
        for (layer, p) in dirs {
            let Ok(d) = self.lowers[*layer].dir(p) else {
                continue;
            };
            if let Ok(st) = fs::stat_at(d.as_fd(), name) {
                return kind(&st) == libc::S_IFREG && !whiteout::is_whiteout(d.as_fd(), name, &st);
            }
            if fs::stat_at(d.as_fd(), &whiteout::wh_name(name)).is_ok() {
                return false;
            }
        }
        false
    }

    /// What the lower directories `dirs` (top first) show under `name`.
    fn lower_entry(&self, dirs: &[(usize, Vec<u8>)], name: &[u8]) -> LowerEntry {
        for (layer, p) in dirs {
            let l = &self.lowers[*layer];
            let Ok(d) = l.dir(p) else { continue };
            if let Ok(st) = fs::stat_at(d.as_fd(), name) {
                return if whiteout::is_whiteout(d.as_fd(), name, &st) {
                    LowerEntry::WhitedOut
                } else {
                    LowerEntry::Visible
                };
            }
            if fs::stat_at(d.as_fd(), &whiteout::wh_name(name)).is_ok() {
                return LowerEntry::WhitedOut;
            }
        }
        LowerEntry::Absent
    }

    /// Where the lower content of upper subdirectory `name` of `parent` comes from.
    fn below_child(&self, dir: BorrowedFd<'_>, parent: &[u8], name: &[u8], below: &Below) -> Below {
        if whiteout::is_opaque(dir, name) {
            return Below::Opaque;
        }
        if let Some(target) = whiteout::redirect(dir, name, parent) {
            if self.lowers.is_empty() {
                return Below::Unknown;
            }
            return Below::Dirs(self.follow(0, target));
        }
        let Below::Dirs(dirs) = below else {
            return below.clone();
        };
        let mut out = Vec::new();
        for (layer, p) in dirs {
            let l = &self.lowers[*layer];
            let Ok(d) = l.dir(p) else { continue };
            match fs::stat_at(d.as_fd(), name) {
                Ok(st) if kind(&st) == libc::S_IFDIR => {
                    out.push((*layer, path::join(p, name)));
                    if whiteout::is_opaque(d.as_fd(), name) {
                        break;
                    }
                    if let Some(t) = whiteout::redirect(d.as_fd(), name, p) {
                        out.extend(self.follow(layer + 1, t));
                        break;
                    }
                }
                Ok(_) => break, // a file or a whiteout ends the merge
                Err(_) => {
                    if fs::stat_at(d.as_fd(), &whiteout::wh_name(name)).is_ok() {
                        break;
                    }
                }
            }
        }
        Below::Dirs(out)
    }

    /// Lower directories at `target` from layer `from` down, as the mount follows a redirect.
    fn follow(&self, from: usize, mut target: Vec<u8>) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        for layer in from..self.lowers.len() {
            let l = &self.lowers[layer];
            let Ok(st) = l.stat(&target) else { continue };
            if kind(&st) != libc::S_IFDIR {
                break;
            }
            out.push((layer, target.clone()));
            let (parent, name) = path::split(&target);
            let Ok(pd) = l.dir(parent) else { break };
            if whiteout::is_opaque(pd.as_fd(), name) {
                break;
            }
            if let Some(next) = whiteout::redirect(pd.as_fd(), name, parent) {
                target = next;
            }
        }
        out
    }
}

enum LowerEntry {
    Visible,
    WhitedOut,
    Absent,
}

/// A redirect value as a path below the layer roots (relative: a sibling in `parent`).
fn resolve_redirect(value: &[u8], parent: &[u8]) -> Vec<u8> {
    match value.strip_prefix(b"/") {
        Some(abs) => abs.to_vec(),
        None => path::join(parent, value),
    }
}

const BAD_METACOPY_VALUE: &str = "metacopy value is not empty nor an ovl_metacopy";

/// Whether upper file `name` in `dir` is a metacopy file (either xattr namespace).
fn is_metacopy(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    super::whiteout::Marker::Metacopy
        .read(|attr| xattr::has(dir, name, attr).then_some(()))
        .is_some()
}

fn is_dir_at(l: &Layer, p: &[u8]) -> bool {
    l.stat(p)
        .map(|st| kind(&st) == libc::S_IFDIR)
        .unwrap_or(false)
}

/// Index names (`DEV-INO` in hex, as the mount makes them) of the hard-linked regular files
/// below `dir`, never following symlinks.
/// The index entry names (both formats) of the files with several names below `dir`, on a
/// filesystem with UUID `uuid`.
fn linked_files(
    dir: BorrowedFd<'_>,
    uuid: Option<&[u8; 16]>,
    keys: &mut std::collections::HashSet<Vec<u8>>,
    depth: usize,
) {
    if depth > 4096 {
        return;
    }
    let Ok(entries) = fs::open_dir_for_listing(dir).and_then(|d| fs::read_dir(d.as_fd())) else {
        return;
    };
    for e in entries {
        let Ok(st) = fs::stat_at(dir, &e.name) else {
            continue;
        };
        match kind(&st) {
            libc::S_IFREG if st.st_nlink > 1 => {
                keys.insert(index_format::own_index_name(st.st_dev, st.st_ino));
                if let Some(uuid) = uuid
                    && let Ok((t, h)) = fs::file_handle_at(dir, &e.name)
                    && let Some(fh) = index_format::origin_fh(uuid, t, &h)
                {
                    keys.insert(index_format::index_name(&fh));
                }
            }
            libc::S_IFDIR => {
                if let Ok(sub) = fs::open_at(dir, &e.name, libc::O_PATH | libc::O_DIRECTORY, 0) {
                    linked_files(sub.as_fd(), uuid, keys, depth + 1);
                }
            }
            _ => {}
        }
    }
}

fn kind(st: &Stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

fn os(name: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name)
}

/// W/unionrs.lock, taken without blocking (EWOULDBLOCK: a live mount holds it).
fn take_lock(w: &Path) -> Result<OwnedFd, Errno> {
    let wl = Layer::at(w).map_err(|_| Errno::ENOENT)?;
    let fd = fs::open_at(
        wl.root(),
        b"unionrs.lock",
        libc::O_RDWR | libc::O_CREAT,
        0o600,
    )?;
    super::lock_unless_held(fd.as_fd())?;
    Ok(fd)
}

fn open_dir_if_exists(p: &Path) -> Result<Option<OwnedFd>, String> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot stat {}: {e}", p.display())),
        Ok(m) if !m.is_dir() => return Err(format!("{} is not a directory", p.display())),
        Ok(_) => {}
    }
    Layer::at(p)
        .and_then(|l| {
            l.dir(b"")
                .map_err(|e| format!("cannot open {}: {e}", p.display()))
        })
        .map(Some)
}

fn list(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<fs::DirEntry>, String> {
    fs::open_dir_for_listing(dir)
        .and_then(|d| fs::read_dir(d.as_fd()))
        .map_err(|e| format!("cannot read {}: {e}", shown.display()))
}

/// Removes `name` in `dir` and everything below it, never following symlinks.
fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let st = fs::stat_at(dir, name)?;
    if kind(&st) == libc::S_IFDIR {
        let sub = fs::open_at(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let listing = fs::open_dir_for_listing(sub.as_fd())?;
        for e in fs::read_dir(listing.as_fd())? {
            remove_tree(sub.as_fd(), &e.name)?;
        }
        fs::unlink_at(dir, name, true)
    } else {
        fs::unlink_at(dir, name, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn can_trusted(p: &Path) -> bool {
        let l = Layer::at(p).unwrap();
        let ok = xattr::set(l.root(), b"", b"trusted.unionrs.probe", b"1", 0).is_ok();
        let _ = xattr::remove(l.root(), b"", b"trusted.unionrs.probe");
        ok
    }

    fn set(p: &Path, attr: &str, value: &[u8]) {
        let parent = Layer::at(p.parent().unwrap()).unwrap();
        let name = p.file_name().unwrap();
        use std::os::unix::ffi::OsStrExt;
        xattr::set(parent.root(), name.as_bytes(), attr.as_bytes(), value, 0).unwrap();
    }

    fn get(p: &Path, attr: &str) -> Option<Vec<u8>> {
        let parent = Layer::at(p.parent().unwrap()).unwrap();
        use std::os::unix::ffi::OsStrExt;
        xattr::get(
            parent.root(),
            p.file_name().unwrap().as_bytes(),
            attr.as_bytes(),
        )
        .ok()
    }

    fn whiteout_dev(p: &Path) {
        let parent = Layer::at(p.parent().unwrap()).unwrap();
        use std::os::unix::ffi::OsStrExt;
        fs::mknod_at(
            parent.root(),
            p.file_name().unwrap().as_bytes(),
            libc::S_IFCHR | 0o600,
            0,
        )
        .unwrap();
    }

    struct Dirs {
        _t: tempfile::TempDir,
        upper: PathBuf,
        work: PathBuf,
        lower: PathBuf,
    }

    fn dirs() -> Dirs {
        let t = tempfile::tempdir().unwrap();
        let (upper, work, lower) = (t.path().join("u"), t.path().join("w"), t.path().join("l"));
        for d in [&upper, &work, &lower, &work.join("work")] {
            std::fs::create_dir_all(d).unwrap();
        }
        Dirs {
            _t: t,
            upper,
            work,
            lower,
        }
    }

    fn opts(d: &Dirs, lowers: bool, repair: bool) -> CheckOptions {
        CheckOptions {
            upper: d.upper.clone(),
            work: Some(d.work.clone()),
            lowers: if lowers {
                vec![d.lower.clone()]
            } else {
                vec![]
            },
            repair,
        }
    }

    fn lines(r: &Report) -> Vec<String> {
        r.findings.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn metacopy_files_need_their_lower_data() {
        let d = dirs();
        if !can_trusted(&d.upper) {
            panic!("this test needs trusted.* xattrs (run as root)");
        }
        std::fs::create_dir_all(d.lower.join("a")).unwrap();
        std::fs::write(d.lower.join("a/good"), "data").unwrap();
        std::fs::write(d.lower.join("a/moved"), "data").unwrap();
        std::fs::create_dir_all(d.upper.join("a")).unwrap();
        for f in ["a/good", "a/lost", "renamed", "dangling"] {
            std::fs::File::create(d.upper.join(f))
                .unwrap()
                .set_len(4)
                .unwrap();
            set(&d.upper.join(f), "trusted.overlay.metacopy", b"");
        }
        set(
            &d.upper.join("renamed"),
            "trusted.overlay.redirect",
            b"/a/moved",
        );
        set(
            &d.upper.join("dangling"),
            "trusted.overlay.redirect",
            b"/a/nothing",
        );
        std::fs::create_dir(d.upper.join("dir")).unwrap();
        set(&d.upper.join("dir"), "trusted.overlay.metacopy", b"");
        std::fs::write(d.upper.join("bad"), "x").unwrap();
        set(&d.upper.join("bad"), "trusted.overlay.metacopy", b"junk");
        std::fs::write(d.lower.join("bad"), "x").unwrap();
        // Without the lowers only the malformed xattrs can be told.
        let r = check(&opts(&d, false, false)).unwrap();
        let l = lines(&r);
        assert_eq!(l.len(), 2, "{l:?}");
        let has = |what: &str, at: &str| l.iter().any(|x| x.contains(what) && x.ends_with(at));
        assert!(
            has("metacopy value is not empty nor an ovl_metacopy", "/bad"),
            "{l:?}"
        );
        assert!(has("metacopy on a non-regular file", "/dir"), "{l:?}");
        let r = check(&opts(&d, true, false)).unwrap();
        let l = lines(&r);
        let without: Vec<_> = l
            .iter()
            .filter(|x| x.contains("no lower layer holds"))
            .collect();
        assert_eq!(without.len(), 2, "{l:?}");
        assert!(without.iter().any(|x| x.ends_with("a/lost")), "{l:?}");
        assert!(without.iter().any(|x| x.ends_with("dangling")), "{l:?}");
        assert_eq!(l.len(), 4, "{l:?}");
        // Repair cannot bring data back: said so, nothing removed.
        let r = check(&opts(&d, true, true)).unwrap();
        assert!(!r.clean(true));
        assert!(
            r.unrepaired
                .iter()
                .any(|x| x.contains("a/lost") && x.contains("cannot be recovered")),
            "{:?}",
            r.unrepaired
        );
        assert!(d.upper.join("a/lost").exists());
        // The malformed value is emptied (still metacopy: the view stays), the xattr on a
        // directory dropped.
        assert_eq!(
            get(&d.upper.join("bad"), "trusted.overlay.metacopy"),
            Some(vec![])
        );
        assert_eq!(get(&d.upper.join("dir"), "trusted.overlay.metacopy"), None);
    }

    #[test]
    fn clean_upper_is_clean() {
        let d = dirs();
        std::fs::create_dir_all(d.upper.join("a/b")).unwrap();
        std::fs::write(d.upper.join("a/b/f"), "x").unwrap();
        symlink("/etc", d.upper.join("a/link")).unwrap();
        let r = check(&opts(&d, true, false)).unwrap();
        assert!(r.clean(false), "{:?}", lines(&r));
    }

    #[test]
    fn stray_work_entries_found_and_removed() {
        let d = dirs();
        let w = d.work.join("work");
        std::fs::write(w.join("#unionrs-1-0"), "half").unwrap();
        std::fs::create_dir_all(w.join("#unionrs-1-1/sub")).unwrap();
        std::fs::write(w.join("#unionrs-1-1/sub/f"), "x").unwrap();
        symlink("/etc/passwd", w.join("#unionrs-1-2")).unwrap();
        let r = check(&opts(&d, false, false)).unwrap();
        assert_eq!(r.findings.len(), 3, "{:?}", lines(&r));
        assert!(
            r.findings
                .iter()
                .all(|f| matches!(f, Finding::StrayWork(_)))
        );
        assert_eq!(
            std::fs::read_dir(&w).unwrap().count(),
            3,
            "check alone changes nothing"
        );
        let r = check(&opts(&d, false, true)).unwrap();
        assert_eq!(r.repaired.len(), 3, "{:?}", r.repaired);
        assert!(r.clean(true));
        assert_eq!(std::fs::read_dir(&w).unwrap().count(), 0);
        assert!(std::path::Path::new("/etc/passwd").exists());
        assert!(check(&opts(&d, false, false)).unwrap().clean(false));
    }

    #[test]
    fn orphaned_index_entries() {
        let d = dirs();
        let idx = d.work.join("unionrs.index");
        std::fs::create_dir_all(&idx).unwrap();
        // A lower file with two names; its index copy has no upper name left but the
        // lower names still show it: in use, not orphaned.
        std::fs::write(d.lower.join("h1"), "old").unwrap();
        std::fs::hard_link(d.lower.join("h1"), d.lower.join("h2")).unwrap();
        let st = Layer::at(&d.lower).unwrap().stat(b"h1").unwrap();
        let live = format!("{:x}-{:x}", st.st_dev, st.st_ino);
        std::fs::write(idx.join(&live), "old+written").unwrap();
        // An index copy of a lower file that is gone: orphaned.
        std::fs::write(idx.join("801-10"), "alone").unwrap();
        // An index copy an upper name shares: fine.
        std::fs::write(d.upper.join("kept"), "shared").unwrap();
        std::fs::hard_link(d.upper.join("kept"), idx.join("801-11")).unwrap();
        let r = check(&opts(&d, false, false)).unwrap();
        assert!(r.findings.is_empty(), "{:?}", lines(&r));
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        let r = check(&opts(&d, false, true)).unwrap();
        assert!(r.repaired.is_empty() && idx.join("801-10").exists());
        let r = check(&opts(&d, true, false)).unwrap();
        assert_eq!(
            r.findings,
            vec![Finding::OrphanedIndex(idx.join("801-10"))],
            "{:?}",
            lines(&r)
        );
        let r = check(&opts(&d, true, true)).unwrap();
        assert!(r.clean(true));
        assert!(!idx.join("801-10").exists());
        assert!(idx.join("801-11").exists());
        assert!(
            idx.join(&live).exists(),
            "an index copy lower names show was removed"
        );
    }

    #[test]
    fn bad_xattrs_found_and_dropped() {
        let d = dirs();
        if !can_trusted(&d.upper) {
            // Unprivileged unit-test run: the user.* namespace carries the same checks.
            return;
        }
        std::fs::create_dir_all(d.upper.join("op")).unwrap();
        std::fs::create_dir_all(d.upper.join("okop")).unwrap();
        std::fs::create_dir_all(d.upper.join("rd")).unwrap();
        std::fs::create_dir_all(d.upper.join("rdgood")).unwrap();
        std::fs::create_dir_all(d.lower.join("was")).unwrap();
        std::fs::write(d.upper.join("f"), "x").unwrap();
        std::fs::write(d.upper.join("g"), "x").unwrap();
        set(&d.upper.join("op"), "trusted.overlay.opaque", b"yes");
        set(&d.upper.join("okop"), "trusted.overlay.opaque", b"y");
        set(&d.upper.join("rd"), "trusted.overlay.redirect", b"/missing");
        set(&d.upper.join("rdgood"), "trusted.overlay.redirect", b"/was");
        set(&d.upper.join("f"), "trusted.unionrs.origin", b"abc");
        set(
            &d.upper.join("g"),
            "trusted.unionrs.origin",
            &7u64.to_le_bytes(),
        );
        // Without lowers the dangling redirect cannot be judged.
        let r = check(&opts(&d, false, false)).unwrap();
        let l = lines(&r);
        assert_eq!(r.findings.len(), 2, "{l:?}");
        assert!(
            l.iter().any(|x| x.contains("opaque must be y or x")),
            "{l:?}"
        );
        assert!(
            l.iter().any(|x| x.contains("origin must be 8 bytes")),
            "{l:?}"
        );
        let r = check(&opts(&d, true, false)).unwrap();
        let l = lines(&r);
        assert_eq!(r.findings.len(), 3, "{l:?}");
        assert!(
            l.iter().any(|x| x.contains("redirect to no lower")),
            "{l:?}"
        );
        let r = check(&opts(&d, true, true)).unwrap();
        assert!(r.clean(true), "{:?}", r.unrepaired);
        assert_eq!(r.repaired.len(), 3, "{:?}", r.repaired);
        assert_eq!(get(&d.upper.join("op"), "trusted.overlay.opaque"), None);
        assert_eq!(get(&d.upper.join("rd"), "trusted.overlay.redirect"), None);
        assert_eq!(
            get(&d.upper.join("rd"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(get(&d.upper.join("f"), "trusted.unionrs.origin"), None);
        assert!(get(&d.upper.join("g"), "trusted.unionrs.origin").is_some());
        assert!(get(&d.upper.join("rdgood"), "trusted.overlay.redirect").is_some());
        assert!(check(&opts(&d, true, false)).unwrap().clean(false));
    }

    #[test]
    fn whiteouts_hiding_nothing() {
        let d = dirs();
        std::fs::create_dir_all(d.lower.join("dir")).unwrap();
        std::fs::write(d.lower.join("there"), "x").unwrap();
        std::fs::write(d.lower.join("dir/inner"), "x").unwrap();
        std::fs::create_dir_all(d.upper.join("dir")).unwrap();
        std::fs::create_dir_all(d.upper.join("opq")).unwrap();
        if fs::mknod_at(
            Layer::at(&d.upper).unwrap().root(),
            b"probe",
            libc::S_IFCHR,
            0,
        )
        .is_err()
        {
            return; // no mknod (unprivileged run): covered by the integration test
        }
        std::fs::remove_file(d.upper.join("probe")).unwrap();
        whiteout_dev(&d.upper.join("there")); // hides a lower file: fine
        whiteout_dev(&d.upper.join("dir/inner")); // hides a merged-dir entry: fine
        whiteout_dev(&d.upper.join("ghost")); // no lower has it
        whiteout_dev(&d.upper.join("dir/ghost2"));
        std::fs::write(d.upper.join(".wh.ghost3"), "").unwrap(); // user format
        std::fs::write(d.upper.join("opq/.wh..wh..opq"), "").unwrap();
        whiteout_dev(&d.upper.join("opq/any")); // inside an opaque dir: structural
        let r = check(&opts(&d, false, false)).unwrap();
        let l = lines(&r);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].contains("opaque") && l[0].ends_with("opq/any"),
            "{l:?}"
        );
        let r = check(&opts(&d, true, false)).unwrap();
        let l = lines(&r);
        assert_eq!(l.len(), 4, "{l:?}");
        for name in ["/ghost", "dir/ghost2", ".wh.ghost3", "opq/any"] {
            assert!(l.iter().any(|x| x.ends_with(name)), "{name}: {l:?}");
        }
        let r = check(&opts(&d, true, true)).unwrap();
        assert!(r.clean(true), "{:?}", r.unrepaired);
        assert!(d.upper.join("there").symlink_metadata().is_ok());
        assert!(d.upper.join("dir/inner").symlink_metadata().is_ok());
        assert!(d.upper.join("ghost").symlink_metadata().is_err());
        assert!(check(&opts(&d, true, false)).unwrap().clean(false));
    }

    #[test]
    fn live_mount_lock_is_respected() {
        let d = dirs();
        std::fs::write(d.work.join("work/#unionrs-9-9"), "in flight").unwrap();
        let held = take_lock(&d.work).unwrap();
        let r = check(&opts(&d, false, false)).unwrap();
        assert!(r.findings.is_empty() && r.notes.len() == 1, "{r:?}");
        let e = check(&opts(&d, false, true)).unwrap_err();
        assert!(e.contains("in use by a live mount"), "{e}");
        drop(held);
        assert_eq!(check(&opts(&d, false, false)).unwrap().findings.len(), 1);
    }

    #[test]
    fn symlinked_upper_subdir_is_not_followed() {
        let d = dirs();
        let outside = d._t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join(".wh.x"), "").unwrap();
        symlink(&outside, d.upper.join("escape")).unwrap();
        let r = check(&opts(&d, true, true)).unwrap();
        assert!(r.findings.is_empty(), "{:?}", lines(&r));
        assert!(outside.join(".wh.x").exists());
    }
}
