//! Layers: a root fd per layer directory; every access to a layer goes beneath it.

use crate::sys::SysResult;
use crate::sys::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Layer id 0 is the upper layer (when there is one); lowers follow top first.
pub type LayerId = usize;
pub const UPPER: LayerId = 0;
/// The hard-link index in the workdir, addressed like a layer.
pub const INDEX: LayerId = usize::MAX;

pub struct Layer {
    pub path: PathBuf,
    root: OwnedFd,
    pub dev: u64,
    /// The UUID of the layer's filesystem, read once (see `fs_uuid`).
    uuid: std::sync::OnceLock<Option<[u8; 16]>>,
    /// A reflink (FICLONE) from this layer to the upper failed as unsupported: copy-ups
    /// from it copy the data without trying again (one failing ioctl per copy-up saved).
    pub reflink_refused: std::sync::atomic::AtomicBool,
    /// The root is on a private bind mount of the daemon's (read-only and noatime for a
    /// lower, the union's atime rule for the upper side): the mount, not the open flags,
    /// decides what reads do to atimes, the kernel's passthrough reads included.
    pub private_mount: bool,
}

impl Layer {
    pub fn at(path: &Path) -> Result<Layer, String> {
        let c = crate::sys::cstr(path.as_os_str().as_bytes())
            .map_err(|_| format!("bad path {}", path.display()))?;
        let root = fs::open_path(&c, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| format!("cannot open layer {}: {e}", path.display()))?;
        let st = fs::fstat(root.as_fd())
            .map_err(|e| format!("cannot stat layer {}: {e}", path.display()))?;
        Ok(Layer {
            path: path.to_path_buf(),
            root,
            dev: st.st_dev,
            uuid: std::sync::OnceLock::new(),
            reflink_refused: std::sync::atomic::AtomicBool::new(false),
            private_mount: false,
        })
    }

    /// The layer with its root reopened as `rel` beneath `tree`, a private bind mount that
    /// holds it; kept as it is when that does not open the same directory (a path changed
    /// meanwhile) or cannot be opened.
    pub fn beneath(mut self, tree: BorrowedFd<'_>, rel: &[u8]) -> Layer {
        let same = |a: &fs::Stat, b: &fs::Stat| (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino);
        let opened = fs::open_dir_path(tree, rel).and_then(|fd| {
            let (new, old) = (fs::fstat(fd.as_fd())?, fs::fstat(self.root())?);
            Ok(same(&new, &old).then_some(fd))
        });
        match opened {
            Ok(Some(fd)) => {
                self.root = fd;
                self.private_mount = true;
            }
            Ok(None) => log::warn!(
                "{}: moved while mounting; opened as it is",
                self.path.display()
            ),
            Err(e) => log::debug!(
                "{}: not beneath the private mount ({e})",
                self.path.display()
            ),
        }
        self
    }

    /// A lower layer of a mount: its root on a private read-only, noatime bind mount where
    /// the daemon may make one, so neither the daemon's opens nor the kernel's reopens of
    /// passthrough backing files (made with the user's open flags) change the layer, atimes
    /// included, as on kernel overlayfs. Else the directory as it is.
    pub fn lower_at(path: &Path) -> Result<Layer, String> {
        let mut layer = Layer::at(path)?;
        let c = crate::sys::cstr(path.as_os_str().as_bytes())
            .map_err(|_| format!("bad path {}", path.display()))?;
        match fs::open_read_only_tree(&c) {
            Ok(tree) => {
                layer.root = tree;
                layer.private_mount = true;
            }
            Err(e) => log::debug!("layer {}: no read-only bind mount ({e})", path.display()),
        }
        Ok(layer)
    }

    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The UUID of the layer's filesystem (all zeros when it has none), as origin file
    /// handles carry it; None where the kernel cannot tell it.
    pub fn fs_uuid(&self) -> Option<[u8; 16]> {
        *self
            .uuid
            .get_or_init(|| fs::fs_uuid(self.opened_root().ok()?.as_fd()).ok())
    }

    /// The root opened for reading (the root handle is O_PATH, which ioctls and
    /// open_by_handle_at do not take).
    pub fn opened_root(&self) -> SysResult<OwnedFd> {
        fs::reopen(self.root(), libc::O_RDONLY | libc::O_DIRECTORY)
    }

    /// O_PATH handle of a directory below the root.
    pub fn dir(&self, path: &[u8]) -> SysResult<OwnedFd> {
        fs::open_dir_path(self.root(), path)
    }

    /// Opens any object below the root without following symlinks anywhere.
    pub fn open(&self, path: &[u8], flags: i32) -> SysResult<OwnedFd> {
        fs::open_beneath(self.root(), path, flags | libc::O_NOFOLLOW, 0)
    }

    /// Stats `path` below the root (its parent resolved beneath, the name not followed).
    pub fn stat(&self, path: &[u8]) -> SysResult<fs::Stat> {
        if path.is_empty() {
            return fs::fstat(self.root());
        }
        let (parent, name) = super::path::split(path);
        let d = self.dir(parent)?;
        fs::stat_at(d.as_fd(), name)
    }
}
