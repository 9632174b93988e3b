//! Union semantics, FUSE-free: layers, lookup, whiteouts/opaque dirs, copy-up, merged readdir,
//! rename, inode identity. Every operation returns `Result<_, Errno>` and is unit-testable on
//! temp-dir layers without mounting.

mod at;
pub mod attr;
pub mod check;
mod copyup;
mod create;
mod dircache;
mod file;
mod hardlink;
pub mod idmap;
pub mod index_format;
pub mod ino;
mod inohash;
pub mod layer;
mod lookup;
pub mod node;
pub mod override_stat;
pub mod path;
pub mod protect;
mod readahead;
mod readdir;
mod remove;
mod rename;
mod shared_whiteout;
pub mod upper_mount;
pub mod whiteout;

pub use crate::sys::fs::{Stat, TimeSpec};
pub use crate::sys::{Errno, SysResult};
pub use dircache::HandleBudget;
pub use file::FileHandle;
pub use lookup::DirScope;
pub use readdir::DirEntryOut;

use ino::InoMap;
use layer::{Layer, LayerId, UPPER};
use node::{Loc, Node, NodeState, NodeTable, ROOT};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use whiteout::MarkerFormat;

/// Who is asking: the caller's credentials and umask, as the kernel reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub umask: u32,
}

/// How the union is put together.
#[derive(Clone, Debug, Default)]
pub struct UnionConfig {
    /// Lower layer directories, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    /// fsync copied-up data before it becomes visible (fsync=0 turns this off).
    pub fsync: bool,
    /// `metacopy=on`: metadata changes of a lower regular file copy up its metadata only.
    pub metacopy: bool,
    /// Force the user.* marker format (rootless); otherwise probed.
    pub user_markers: bool,
    /// Owner translation (uidmapping=, gidmapping=, squash_to_*).
    pub ids: idmap::IdMap,
    /// fuse-overlayfs' `xattr_permissions=`: 0 off, 1 or 2 keep owner and mode of upper
    /// files in an xattr (see `override_stat`).
    pub xattr_permissions: u8,
    /// POSIX ACLs served (`noacl` turns this off: ACL xattrs are refused).
    pub acl: bool,
    /// `context=`: the SELinux label every object shows, as a context= mount shows it.
    pub selinux_context: Option<Vec<u8>>,
    /// When reads through the mount update upper atimes (lower ones: never).
    pub atime: upper_mount::AtimeRule,
    /// `volatile`: mark the workdir as the kernel does, so that no later mount trusts an
    /// upper that may have lost unsynced writes.
    pub volatile: bool,
    /// How many directory handles the caches may keep open (see dircache::HandleBudget);
    /// None: no bound.
    pub dir_handles: Option<usize>,
}

/// See `Union::listing_hook`.
pub type ListingHook = Arc<std::sync::OnceLock<Box<dyn Fn(u64) + Send + Sync>>>;

/// What `unionrs stats` reads from a live mount, shared with the thread that answers it.
#[derive(Clone)]
pub struct StatsSource {
    nodes: Arc<NodeTable>,
    handles: Arc<file::HandleTable>,
    pub stats: Arc<Stats>,
}

impl StatsSource {
    /// Inodes the kernel currently holds references on.
    pub fn cached_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// File handles open (the kernel's RELEASE of a closed file comes asynchronously).
    pub fn open_files(&self) -> usize {
        self.handles.len()
    }
}

/// Counters a live mount reports.
#[derive(Default)]
pub struct Stats {
    pub copy_ups: AtomicU64,
    pub bytes_copied: AtomicU64,
    /// Metadata-only copy-ups (metacopy=on): no data copied.
    pub metacopy_ups: AtomicU64,
    /// fsync/fdatasync calls made on the layers (none with fsync=0 or volatile).
    pub disk_fsyncs: AtomicU64,
    /// Objects moved to a new node id because a reader held the lower file as the inode's
    /// passthrough backing when an open needed the upper copy (see `move_to_new_id`).
    pub inode_moves: AtomicU64,
    /// Directories listed and looked into ahead of a cold walk (readahead.rs).
    pub dirs_read_ahead: AtomicU64,
}

pub struct Union {
    /// layers[0] is the upper (if `has_upper`), then the lowers top first.
    layers: Vec<Layer>,
    has_upper: bool,
    /// O_PATH handle of W/work, where copy-ups are staged.
    work: Option<OwnedFd>,
    /// The workdir, holding W/index and W/unionrs.index: one link per copied-up lower file
    /// that has several names, so every name keeps sharing one inode after copy-up (the
    /// kernel's `index` feature; see hardlink.rs).
    index: Option<Layer>,
    /// Set once the index holds anything (at mount, or on the first index copy).
    index_used: std::sync::atomic::AtomicBool,
    /// W/unionrs.lock, held (flock) for the life of the mount.
    _lock: Option<OwnedFd>,
    nodes: Arc<NodeTable>,
    /// Called with a directory's node id when its entries change after the kernel was given
    /// a listing of it (the FUSE side drops the kernel's cached listing).
    listing_hook: ListingHook,
    /// How many directory handles the caches may keep (see dircache::HandleBudget).
    handle_budget: Arc<dircache::HandleBudget>,
    inos: InoMap,
    handles: Arc<file::HandleTable>,
    pub markers: MarkerFormat,
    ids: idmap::IdMap,
    fsync: bool,
    /// Metadata-only copy-up for metadata changes (see copyup::copy_up_meta).
    metacopy: bool,
    /// Per layer id: the override xattr its owners and modes are kept in, if any.
    overrides: Vec<Option<&'static [u8]>>,
    acl: bool,
    selinux_context: Option<Vec<u8>>,
    noatime: bool,
    pub stats: Arc<Stats>,
    tmp_seq: AtomicU64,
    /// The inode whiteouts are links to (shared_whiteout.rs).
    shared_whiteout: Arc<parking_lot::Mutex<shared_whiteout::SharedWhiteout>>,
    /// Upper files are opened read-write (passthrough backs them; see file::backing_fd).
    backing_rdwr: std::sync::atomic::AtomicBool,
    /// The daemon's effective ids: what a new upper inode gets without a chown.
    own_ids: (u32, u32),
    /// Directories waiting to be read ahead of a cold walk (readahead.rs).
    read_ahead: readahead::ReadAhead,
}

/// The result of a lookup or create: attributes with `st_ino` set to the node's number.
pub type Entry = Stat;

impl Union {
    pub fn new(cfg: &UnionConfig) -> Result<Union, String> {
        let mut layers = Vec::new();
        let has_upper = cfg.upper.is_some();
        // The upper layer and the workdir, beneath one private mount (upper_mount.rs).
        let upper_side = match (&cfg.upper, &cfg.work) {
            (Some(u), Some(w)) => Some(upper_mount::UpperMount::new(u, w, cfg.atime)),
            (Some(_), None) => return Err("upperdir needs a workdir".into()),
            _ => None,
        };
        if let (Some(u), Some(m)) = (&cfg.upper, &upper_side) {
            layers.push(m.layer(u)?);
        }
        for l in &cfg.lowers {
            layers.push(Layer::lower_at(l)?);
        }
        if layers.is_empty() {
            return Err("no layers given".into());
        }
        let mut index = None;
        let mut lock = None;
        let work = match (&upper_side, &cfg.work) {
            (Some(m), Some(w)) => {
                // Before touching anything: a second mount must not clean the first's work dir.
                lock = Some(lock_workdir(w)?);
                refuse_after_volatile(w)?;
                index = Some(prepare_index(w, m)?);
                let work = prepare_workdir(w, m)?;
                if cfg.volatile {
                    mark_volatile(w)?;
                }
                Some(work)
            }
            _ => None,
        };
        let markers = if cfg.user_markers {
            MarkerFormat::User
        } else if let Some(w) = &work {
            probe_markers(w)
        } else {
            MarkerFormat::Kernel
        };
        let overrides = layer_overrides(&layers, has_upper, cfg.xattr_permissions)?;
        let inos = InoMap::new(layers.iter().map(|l| l.dev));
        let lower_start = if has_upper { 1 } else { 0 };
        let root_lowers = (lower_start..layers.len())
            .map(|layer| Loc {
                layer,
                path: Vec::new(),
            })
            .collect();
        let root_state = NodeState::new(None, b"", has_upper, root_lowers);
        let mut u = Union {
            layers,
            has_upper,
            work,
            index_used: std::sync::atomic::AtomicBool::new(index_nonempty(&index)),
            index,
            _lock: lock,
            nodes: Arc::new(NodeTable::new(Node::new(ROOT, libc::S_IFDIR, root_state))),
            listing_hook: ListingHook::default(),
            handle_budget: dircache::HandleBudget::new(cfg.dir_handles.unwrap_or(usize::MAX)),
            inos,
            handles: Arc::default(),
            markers,
            ids: cfg.ids.clone(),
            fsync: cfg.fsync,
            metacopy: cfg.metacopy,
            overrides,
            acl: cfg.acl,
            selinux_context: cfg.selinux_context.clone(),
            noatime: cfg.atime.mode == upper_mount::AtimeMode::Never,
            stats: Arc::new(Stats::default()),
            tmp_seq: AtomicU64::new(0),
            shared_whiteout: Default::default(),
            backing_rdwr: std::sync::atomic::AtomicBool::new(false),
            own_ids: (crate::sys::proc::geteuid(), crate::sys::proc::getegid()),
            read_ahead: Default::default(),
        };
        u.trim_root_lowers();
        Ok(u)
    }

    /// An opaque upper root hides every lower layer.
    fn trim_root_lowers(&mut self) {
        if self.has_upper
            && whiteout::is_opaque(self.layers[UPPER].root(), b"")
            && let Some(root) = self.nodes.get(ROOT)
        {
            root.state.write().lowers.clear();
        }
    }

    pub fn read_only(&self) -> bool {
        !self.has_upper
    }

    pub fn layer(&self, id: LayerId) -> &Layer {
        match (id, &self.index) {
            (layer::INDEX, Some(index)) => index,
            _ => &self.layers[id],
        }
    }

    /// Where to set the listing hook once the FUSE session exists (see `listing_hook`).
    pub fn listing_hook(&self) -> ListingHook {
        self.listing_hook.clone()
    }

    /// Directory `dir` is about to gain, lose or move an entry.
    pub(crate) fn entries_change(&self, dir: &Node) {
        if dir.entries_change()
            && let Some(hook) = self.listing_hook.get()
        {
            hook(dir.ino);
        }
    }

    pub fn stats_source(&self) -> StatsSource {
        StatsSource {
            nodes: self.nodes.clone(),
            handles: self.handles.clone(),
            stats: self.stats.clone(),
        }
    }

    /// The FUSE generation of node `ino` (to go with an entry reply).
    pub fn generation(&self, ino: u64) -> u64 {
        self.nodes.generation(ino)
    }

    fn node(&self, ino: u64) -> SysResult<Arc<Node>> {
        self.nodes.get(ino).ok_or(Errno::ENOENT)
    }

    /// The inode number shown for node `ino` (st_ino, d_ino): its object's number. A node id
    /// differs from it only once the number moved on (`NodeTable::remember`,
    /// `move_to_new_id`): the object keeps its st_ino under either id, as on the kernel.
    pub fn shown_ino(&self, ino: u64) -> u64 {
        if ino == 0 || ino == node::ROOT {
            return ino;
        }
        self.nodes.number_of_id(ino)
    }

    /// Whether node `ino` has a full upper copy (upper, not metacopy): a change to it copies
    /// no file data. False for an unknown node.
    pub fn has_full_upper_copy(&self, ino: u64) -> bool {
        self.nodes
            .get(ino)
            .is_some_and(|n| n.is_upper() && n.metacopy_data().is_none())
    }

    fn writable(&self) -> SysResult<()> {
        if self.has_upper {
            Ok(())
        } else {
            Err(Errno::EROFS)
        }
    }

    fn upper(&self) -> &Layer {
        &self.layers[UPPER]
    }

    /// O_PATH handle of directory `dir`'s upper copy (which must exist), cached on the node.
    fn upper_dir(&self, dir: &Node) -> SysResult<Arc<OwnedFd>> {
        if let Some(h) = dir.upper_fd.lock().as_ref() {
            return Ok(h.fd.clone());
        }
        let fd = Arc::new(self.upper().dir(&dir.path())?);
        if dir.is_dir()
            && let Some(held) = self.handle_budget.take(1)
        {
            *dir.upper_fd.lock() = Some(dircache::UpperDirHandle::new(fd.clone(), held));
        }
        Ok(fd)
    }

    fn work(&self) -> SysResult<std::os::fd::BorrowedFd<'_>> {
        self.work.as_ref().map(|w| w.as_fd()).ok_or(Errno::EROFS)
    }

    /// A fresh name for staging an object in the work directory.
    fn temp_name(&self) -> Vec<u8> {
        // The pid is read once (after daemonizing): getpid is a syscall each time.
        static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let pid = PID.get_or_init(std::process::id);
        format!("#unionrs-{pid}-{n}").into_bytes()
    }

    /// Kernel lookup references go away.
    pub fn forget(&self, ino: u64, n: u64) {
        self.nodes.forget(ino, n);
    }

    /// The root's attributes.
    pub fn root_ino(&self) -> u64 {
        ROOT
    }
}

/// Which override xattr each layer keeps owners and modes in: lowers as their roots are
/// marked; the upper as `xattr_permissions=` asks (marking its root), else as it is marked.
fn layer_overrides(
    layers: &[Layer],
    has_upper: bool,
    xattr_permissions: u8,
) -> Result<Vec<Option<&'static [u8]>>, String> {
    let mut found: Vec<Option<&'static [u8]>> = layers
        .iter()
        .map(|l| override_stat::detect(l.root()))
        .collect();
    match override_stat::name_for_option(xattr_permissions) {
        Some(attr) if has_upper => {
            let lowers: Vec<_> = layers[1..]
                .iter()
                .zip(&found[1..])
                .map(|(l, name)| (l.root(), *name))
                .collect();
            override_stat::mark_upper(layers[UPPER].root(), attr, &lowers)?;
            found[UPPER] = Some(attr);
        }
        _ => {}
    }
    Ok(found)
}

/// W/work/incompat/volatile: where kernel overlayfs records that a volatile mount used this
/// workdir. Unsynced writes may have been lost in a crash since, so the kernel refuses to
/// mount the pair again until someone removes it (containers/storage does, before each mount).
fn volatile_marker(w: &std::path::Path) -> PathBuf {
    w.join("work").join("incompat").join("volatile")
}

fn refuse_after_volatile(w: &std::path::Path) -> Result<(), String> {
    let marker = volatile_marker(w);
    if marker.symlink_metadata().is_ok() {
        return Err(format!(
            "workdir {} was used by a volatile mount, whose unsynced writes a crash may have lost: remove {} to mount it anyway",
            w.display(),
            marker.display()
        ));
    }
    Ok(())
}

/// The kernel's marker, in the kernel's form (a `dirty` file inside), so kernel overlayfs
/// refuses this upper too.
fn mark_volatile(w: &std::path::Path) -> Result<(), String> {
    let marker = volatile_marker(w);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&marker)
        .and_then(|()| std::fs::write(marker.join("dirty"), b""))
        .map_err(|e| format!("cannot create {}: {e}", marker.display()))
}

/// Creates W/work (where copy-ups are staged) and empties what a crash left in it.
fn prepare_workdir(
    w: &std::path::Path,
    mount: &upper_mount::UpperMount,
) -> Result<OwnedFd, String> {
    let work = w.join("work");
    match std::fs::DirBuilder::new().mode(0o700).create(&work) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for entry in std::fs::read_dir(&work)
                .map_err(|e| format!("cannot read {}: {e}", work.display()))?
            {
                let p = entry.map_err(|e| e.to_string())?.path();
                let _ = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        Err(e) => return Err(format!("cannot create {}: {e}", work.display())),
    }
    mount
        .layer(&work)?
        .dir(b"")
        .map_err(|e| format!("cannot open {}: {e}", work.display()))
}

/// Takes W/unionrs.lock: one mount per upper/work pair at a time, as kernel overlayfs insists.
fn lock_workdir(w: &std::path::Path) -> Result<OwnedFd, String> {
    let path = w.join("unionrs.lock");
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let fd = OwnedFd::from(file);
    match lock_unless_held(fd.as_fd()) {
        Ok(()) => Ok(fd),
        Err(e) if e.0 == libc::EWOULDBLOCK => Err(format!(
            "workdir {} is in use by another mount: unmount it first, or use another workdir",
            w.display()
        )),
        Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// flock(LOCK_EX) of a workdir lock, EWOULDBLOCK only when it stays held. A live mount holds
/// it for its whole life; another process can hold it for a moment without meaning it: a
/// `unionrs check` in progress, or a child forked by a thread of the process that took it,
/// between fork and exec (flock belongs to the open file, which the child shares until its
/// exec closes it; seen as a unit-test flake). So a held lock is tried again for 200 ms.
pub(crate) fn lock_unless_held(fd: std::os::fd::BorrowedFd<'_>) -> SysResult<()> {
    let mut tries = 20;
    loop {
        match crate::sys::fs::try_lock_exclusive(fd) {
            Err(e) if e.0 == libc::EWOULDBLOCK && tries > 0 => {
                tries -= 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Whether the index directories already hold entries from earlier mounts.
fn index_nonempty(index: &Option<Layer>) -> bool {
    index.as_ref().is_some_and(|l| {
        [index_format::INDEX_DIR, index_format::OWN_INDEX_DIR]
            .iter()
            .any(|d| {
                std::fs::read_dir(l.path.join(std::ffi::OsStr::from_bytes(d)))
                    .is_ok_and(|mut e| e.next().is_some())
            })
    })
}

/// The hard-link index: the workdir addressed as a layer, with W/index (the kernel's format)
/// and W/unionrs.index (unionrs's own, see index_format) made when missing. Kept across
/// mounts: it ties hard-linked copies together.
fn prepare_index(w: &std::path::Path, mount: &upper_mount::UpperMount) -> Result<Layer, String> {
    for d in [index_format::INDEX_DIR, index_format::OWN_INDEX_DIR] {
        let index = w.join(std::ffi::OsStr::from_bytes(d));
        match std::fs::DirBuilder::new().mode(0o700).create(&index) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", index.display())),
        }
    }
    mount.layer(w)
}

/// Kernel format when this process may mknod whiteouts and set trusted.* xattrs, else user.*.
fn probe_markers(work: &OwnedFd) -> MarkerFormat {
    let probe = b"#unionrs-probe";
    let can_mknod = crate::sys::proc::can_mknod_whiteout(work.as_fd(), probe);
    let can_trusted =
        crate::sys::xattr::set(work.as_fd(), b"", b"trusted.unionrs.probe", b"1", 0).is_ok();
    if can_trusted {
        let _ = crate::sys::xattr::remove(work.as_fd(), b"", b"trusted.unionrs.probe");
    }
    if can_mknod && can_trusted {
        MarkerFormat::Kernel
    } else {
        MarkerFormat::User
    }
}
