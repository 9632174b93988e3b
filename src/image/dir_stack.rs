//! The directory fds along the path of the layer entry last unpacked, so that the next
//! entry's parent is reached without walking from the layer root again.
//!
//! Tar streams list a directory's entries together (and `tar --sort=name`, docker, skopeo
//! and our own export write them depth first), so the next parent is nearly always the same
//! directory or shares a long prefix with it: a Debian rootfs took ~44,500 openat calls
//! when every entry walked from the root, and takes about one per directory this way.
//!
//! Safety is the same as a walk from the root: every level was opened with O_NOFOLLOW and
//! checked to be a directory when it entered the stack. An open fd stays bound to its
//! directory inode, so a cached level can only go stale if that directory is removed or
//! replaced, and the unpacker removes only children of the parent it holds (an entry
//! replacing an earlier one); the stack then holds exactly that parent and its ancestors,
//! none of which are touched.

use crate::sys::Errno;
use crate::sys::fs as sfs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Levels kept open at most: paths deeper than this (only hostile layers have them) walk
/// their remaining components from the deepest kept level each time, so a layer cannot
/// make the unpacker hold more fds than this (RLIMIT_NOFILE is often 1024).
const MAX_LEVELS: usize = 64;

pub struct DirStack {
    root: OwnedFd,
    /// (component, fd of the directory root/c1/.../component), outermost first.
    levels: Vec<(Vec<u8>, OwnedFd)>,
    /// The directory a path deeper than [`MAX_LEVELS`] resolved to, until the next walk.
    deep: Option<OwnedFd>,
}

impl DirStack {
    /// `root`: the layer directory, opened O_PATH | O_DIRECTORY.
    pub fn new(root: OwnedFd) -> DirStack {
        DirStack {
            root,
            levels: Vec::new(),
            deep: None,
        }
    }

    /// The directory `comps` below the root, opened one component at a time without
    /// following symlinks; missing ones are created (0755) when `create`. Reuses the
    /// levels it shares with the previous call.
    pub fn walk(&mut self, comps: &[Vec<u8>], create: bool) -> Result<BorrowedFd<'_>, String> {
        self.deep = None;
        let shared = self
            .levels
            .iter()
            .zip(comps)
            .take_while(|((have, _), want)| have == *want)
            .count();
        self.levels.truncate(shared);
        for c in &comps[shared..comps.len().min(MAX_LEVELS)] {
            let fd = open_child(self.top(), c, create)?;
            self.levels.push((c.clone(), fd));
        }
        if comps.len() > MAX_LEVELS {
            let mut cur = open_child(self.top(), &comps[MAX_LEVELS], create)?;
            for c in &comps[MAX_LEVELS + 1..] {
                cur = open_child(cur.as_fd(), c, create)?;
            }
            let deep: &OwnedFd = self.deep.insert(cur);
            return Ok(deep.as_fd());
        }
        Ok(self.top())
    }

    /// The existing directory `comps` below `root`, walked from `root` with the same checks,
    /// without touching any stack (hardlink targets, while the entry's parent is held).
    pub fn open_below(root: BorrowedFd<'_>, comps: &[Vec<u8>]) -> Result<OwnedFd, String> {
        let mut cur = root
            .try_clone_to_owned()
            .map_err(|e| format!("cannot open the layer dir: {e}"))?;
        for c in comps {
            cur = open_child(cur.as_fd(), c, false)?;
        }
        Ok(cur)
    }

    fn top(&self) -> BorrowedFd<'_> {
        self.levels
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }
}

/// Opens directory `c` in `dir` (O_PATH, never through a symlink), creating it when missing
/// and `create`.
fn open_child(dir: BorrowedFd<'_>, c: &[u8], create: bool) -> Result<OwnedFd, String> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    let next = match sfs::open_at(dir, c, flags, 0) {
        Err(Errno::ENOENT) if create => {
            sfs::mkdir_at(dir, c, 0o755)
                .map_err(|e| format!("cannot create parent {}: {e}", show(c)))?;
            sfs::open_at(dir, c, flags, 0)
        }
        r => r,
    };
    let refuse = || {
        format!(
            "parent {} is a symlink or not a directory; refusing to write through it",
            show(c)
        )
    };
    let fd = match next {
        Ok(fd) => fd,
        Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => return Err(refuse()),
        Err(e) => return Err(format!("cannot open parent {}: {e}", show(c))),
    };
    // O_PATH|O_NOFOLLOW opens a symlink itself: check it really is a directory.
    let st = sfs::fstat(fd.as_fd()).map_err(|e| format!("fstat: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(refuse());
    }
    Ok(fd)
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn stack(dir: &std::path::Path) -> DirStack {
        let c = crate::sys::cstr(dir.as_os_str().as_encoded_bytes()).unwrap();
        DirStack::new(sfs::open_path(&c, libc::O_PATH | libc::O_DIRECTORY).unwrap())
    }

    fn comps(p: &str) -> Vec<Vec<u8>> {
        p.split('/').map(|c| c.as_bytes().to_vec()).collect()
    }

    fn ino(fd: BorrowedFd<'_>) -> u64 {
        sfs::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn reuses_shared_levels_and_creates_missing_ones() {
        let t = tempfile::tempdir().unwrap();
        let mut s = stack(t.path());
        let ab = ino(s.walk(&comps("a/b"), true).unwrap());
        assert_eq!(ab, std::fs::metadata(t.path().join("a/b")).unwrap().ino());
        let ac = ino(s.walk(&comps("a/c"), true).unwrap());
        assert_eq!(ac, std::fs::metadata(t.path().join("a/c")).unwrap().ino());
        assert_eq!(s.levels.len(), 2);
        let root = ino(s.walk(&[], true).unwrap());
        assert_eq!(root, std::fs::metadata(t.path()).unwrap().ino());
        assert!(s.levels.is_empty());
        assert!(s.walk(&comps("x/y"), false).is_err());
        assert!(!t.path().join("x").exists());
    }

    #[test]
    fn refuses_symlinks_and_files_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink("/etc", t.path().join("d/l")).unwrap();
        std::fs::write(t.path().join("d/f"), b"").unwrap();
        let mut s = stack(t.path());
        s.walk(&comps("d"), true).unwrap();
        let e = s.walk(&comps("d/l/x"), true).unwrap_err();
        assert!(e.contains("parent l is a symlink"), "{e}");
        assert!(!std::path::Path::new("/etc/x").exists());
        let e = s.walk(&comps("d/f"), true).unwrap_err();
        assert!(
            e.contains("parent f is a symlink or not a directory"),
            "{e}"
        );
    }

    #[test]
    fn deep_paths_hold_a_bounded_number_of_fds() {
        let t = tempfile::tempdir().unwrap();
        let deep: Vec<Vec<u8>> = (0..MAX_LEVELS + 10).map(|_| b"d".to_vec()).collect();
        let mut s = stack(t.path());
        let got = ino(s.walk(&deep, true).unwrap());
        let path: std::path::PathBuf = std::iter::once(t.path().to_path_buf())
            .chain(deep.iter().map(|_| "d".into()))
            .collect();
        assert_eq!(got, std::fs::metadata(&path).unwrap().ino());
        assert_eq!(s.levels.len(), MAX_LEVELS);
    }
}
