//! The upper layer and the workdir beneath one private bind mount that carries the union's
//! atime rule, as kernel overlayfs clones the upper mount and applies its own atime flags.
//!
//! A read through the mount updates an upper file's atime in the upper filesystem, by the
//! rules of the mount the file was opened on: the daemon's own reads, and the kernel's reads
//! of FUSE passthrough backing files, which it reopens from the daemon's fd with the user's
//! open flags (so O_NOATIME on our side does not reach them). Opening the upper layer and the
//! workdir beneath a clone whose atime attributes are the union's makes `strictatime`,
//! `noatime` and `nodiratime` hold for both, with passthrough on. Upper and work share the
//! one clone: the renames and links between them must stay on one mount.

use super::layer::Layer;
use crate::sys::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// When a read through the mount updates an upper file's atime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AtimeMode {
    /// When the atime is not newer than the mtime or ctime, or a day old (the default).
    #[default]
    Relatime,
    /// On every read (`strictatime`).
    Strict,
    /// Never (`noatime`, and every read-only mount).
    Never,
}

/// The union's atime mount options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtimeRule {
    pub mode: AtimeMode,
    /// `nodiratime`: listing a directory leaves its atime alone.
    pub nodiratime: bool,
}

impl AtimeRule {
    /// The mount_setattr(2) attributes to set and to clear for this rule.
    fn mount_attrs(self) -> (u64, u64) {
        let mode = match self.mode {
            AtimeMode::Relatime => libc::MOUNT_ATTR_RELATIME,
            AtimeMode::Strict => libc::MOUNT_ATTR_STRICTATIME,
            AtimeMode::Never => libc::MOUNT_ATTR_NOATIME,
        };
        let dir = if self.nodiratime {
            libc::MOUNT_ATTR_NODIRATIME
        } else {
            0
        };
        (
            mode | dir,
            libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODIRATIME,
        )
    }
}

/// A private clone of the mount that holds the upper layer and the workdir, or none where the
/// daemon may not make one (no CAP_SYS_ADMIN): then layers are opened as they are and keep
/// the upper filesystem's own atime rule.
pub struct UpperMount {
    /// The clone's root (an O_PATH fd) and the directory it was cloned at.
    tree: Option<(OwnedFd, PathBuf)>,
}

impl UpperMount {
    pub fn new(upper: &Path, work: &Path, rule: AtimeRule) -> UpperMount {
        let (Ok(u), Ok(w)) = (std::fs::canonicalize(upper), std::fs::canonicalize(work)) else {
            return UpperMount { tree: None };
        };
        let base = deepest_common_dir(&u, &w);
        let (set, clear) = rule.mount_attrs();
        let tree = crate::sys::cstr(base.as_os_str().as_bytes())
            .and_then(|c| fs::open_private_tree(&c, set, clear));
        match tree {
            Ok(t) => UpperMount {
                tree: Some((t, base)),
            },
            Err(e) => {
                log::info!(
                    "{}: no private mount for the upper layer ({e}): it keeps its own atime rule",
                    base.display()
                );
                UpperMount { tree: None }
            }
        }
    }

    /// A directory of the upper side (the upper layer, the workdir) as a layer: beneath the
    /// clone when there is one.
    pub fn layer(&self, path: &Path) -> Result<Layer, String> {
        let layer = Layer::at(path)?;
        let Some((tree, base)) = &self.tree else {
            return Ok(layer);
        };
        let canonical =
            std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        match canonical.strip_prefix(base) {
            Ok(rel) => Ok(layer.beneath(tree.as_fd(), rel.as_os_str().as_bytes())),
            Err(_) => Ok(layer),
        }
    }
}

/// The deepest directory both paths (absolute, canonical) lie in.
fn deepest_common_dir(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_dir_of_siblings_is_their_parent() {
        let d = |a: &str, b: &str| deepest_common_dir(Path::new(a), Path::new(b));
        assert_eq!(d("/x/y/upper", "/x/y/work"), Path::new("/x/y"));
        assert_eq!(d("/x/upper", "/x/y/work"), Path::new("/x"));
        assert_eq!(d("/a/upper", "/b/work"), Path::new("/"));
        assert_eq!(d("/x/up", "/x/upper"), Path::new("/x"));
    }

    #[test]
    fn each_rule_sets_one_atime_mode() {
        let attrs = |mode, nodiratime| AtimeRule { mode, nodiratime }.mount_attrs();
        let clear = libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODIRATIME;
        assert_eq!(attrs(AtimeMode::Relatime, false), (0, clear));
        assert_eq!(
            attrs(AtimeMode::Strict, true),
            (
                libc::MOUNT_ATTR_STRICTATIME | libc::MOUNT_ATTR_NODIRATIME,
                clear
            )
        );
        assert_eq!(
            attrs(AtimeMode::Never, false),
            (libc::MOUNT_ATTR_NOATIME, clear)
        );
    }
}
