//! Reaching a node's shown object without a path walk: through its parent's cached upper
//! handle or cached lower directory handles, falling back to a confined openat2 of the path.

use super::dircache::LowerDirs;
use super::layer::{INDEX, LayerId, UPPER};
use super::node::{Loc, Node};
use super::{Errno, SysResult, Union, path};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// A directory handle from wherever it was cheapest to get.
pub(crate) enum DirRef {
    Owned(OwnedFd),
    Shared(Arc<OwnedFd>),
    Lower(Arc<LowerDirs>, usize),
}

impl DirRef {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            DirRef::Owned(fd) => fd.as_fd(),
            DirRef::Shared(fd) => fd.as_fd(),
            DirRef::Lower(c, i) => c.layers[*i].as_ref().expect("checked when made").fd.as_fd(),
        }
    }
}

/// The parent directory handle and name of a node's shown object, and its layer.
pub(crate) struct At {
    pub dir: DirRef,
    pub name: Vec<u8>,
    pub layer: LayerId,
}

impl Union {
    /// Where `node`'s shown object is: (parent dir handle, name). The root is reached as
    /// its layer root with an empty name.
    pub(crate) fn top_at(&self, node: &Node) -> SysResult<At> {
        let at = self.top_at_as_known(node)?;
        if at.layer == UPPER || at.layer == INDEX || node.kind != libc::S_IFREG {
            return Ok(at);
        }
        // A lower file with several names may have been indexed through another name since
        // this node was looked up: then the index copy is the file.
        if !self.index_in_use() {
            return Ok(at);
        }
        let st = crate::sys::fs::stat_at(at.dir.fd(), &at.name)?;
        let Some(key) = self.index_key(at.layer, at.dir.fd(), &at.name, &st) else {
            return Ok(at);
        };
        let Some((path, _)) = self.existing_index(&key) else {
            return Ok(at);
        };
        let loc = Loc { layer: INDEX, path };
        let index_at = self.lower_at(None, &loc)?;
        node.state.write().lowers.insert(0, loc);
        Ok(index_at)
    }

    /// Where the lower file holding a metacopy node's data is (see `metacopy_data`).
    pub(crate) fn data_at(&self, node: &Node, data: &Loc) -> SysResult<At> {
        let parent = node.state.read().parent.clone();
        self.lower_at(parent.as_deref(), data)
    }

    fn top_at_as_known(&self, node: &Node) -> SysResult<At> {
        // The common case for upper objects: the parent's cached upper handle and the node's
        // own name, with no path built.
        let (upper, parent, name) = {
            let s = node.state.read();
            (s.upper, s.parent.clone(), s.name.clone())
        };
        if upper
            && let Some(p) = parent.filter(|p| {
                let ps = p.state.read();
                ps.upper && !ps.unlinked
            })
        {
            return Ok(At {
                dir: DirRef::Shared(self.upper_dir(&p)?),
                name,
                layer: UPPER,
            });
        }
        let loc = node.top().ok_or(Errno::ENOENT)?;
        let name = path::split(&loc.path).1.to_vec();
        if loc.path.is_empty() {
            let root = self.layer(loc.layer).dir(b"")?;
            return Ok(At {
                dir: DirRef::Owned(root),
                name,
                layer: loc.layer,
            });
        }
        let parent = node.state.read().parent.clone();
        if loc.layer == UPPER
            && let Some(p) = parent.as_ref().filter(|p| !p.state.read().unlinked)
            && p.is_upper()
        {
            let fd = self.upper_dir(p)?;
            return Ok(At {
                dir: DirRef::Shared(fd),
                name,
                layer: loc.layer,
            });
        }
        self.lower_at(parent.as_deref(), &loc)
    }

    /// Where lower object `loc` is, for a child of directory `parent`: through the parent's
    /// cached lower directory handles when one of them holds it (no path walk), else by a
    /// confined open of its parent path.
    pub(crate) fn lower_at(&self, parent: Option<&Node>, loc: &Loc) -> SysResult<At> {
        let (parent_path, name) = path::split(&loc.path);
        let name = name.to_vec();
        if let Some(p) =
            parent.filter(|p| loc.layer != INDEX && loc.layer != UPPER && !p.state.read().unlinked)
            && let Some(c) = self.lower_dirs(p)
            && let Some(i) = c
                .locs
                .iter()
                .position(|l| l.layer == loc.layer && l.path == parent_path)
            && c.layers[i].is_some()
        {
            return Ok(At {
                dir: DirRef::Lower(c, i),
                name,
                layer: loc.layer,
            });
        }
        let d = self.layer(loc.layer).dir(parent_path)?;
        Ok(At {
            dir: DirRef::Owned(d),
            name,
            layer: loc.layer,
        })
    }
}
