//! Target `whiteout_markers`: the input describes an upper and two lower layers full of
//! overlay markers (`.wh.` files, 0/0 character devices, opaque, redirect and xattr-whiteout
//! attributes with arbitrary values, symlinks); they are built in a sandbox and read through
//! the union core (lookup, which uses the lower-dir cache, and readdir, which merges on its
//! own). Both must agree: every name readdir lists is found by lookup with the same type, a
//! name lookup finds is listed, no `.wh.` name is ever shown, and nothing answers EIO.
//!
//! Input: one record per line, `LK PATH[=VALUE]` with L the layer (`u`, `1`, `2`) and K:
//! `d` dir, `f` file (VALUE its data), `c` 0/0 char device, `l` symlink (VALUE its target),
//! `o`/`O` trusted./user.overlay.opaque=VALUE, `r` trusted.overlay.redirect=VALUE,
//! `x` trusted.overlay.whiteout, `X` trusted.overlay.whiteouts (on a dir). PATH is taken
//! below the layer root; parents are created as directories.

use super::Scratch;
use crate::image::store::is_root;
use crate::image::unpack::normalize;
use crate::sys::{Errno, fs as sfs, xattr};
use crate::union::layer::Layer;
use crate::union::whiteout::is_hidden_name;
use crate::union::{Union, UnionConfig};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::fd::AsFd;

/// Records read from one input, at most.
const MAX_RECORDS: usize = 64;
/// Directory depth the check walks to.
const MAX_DEPTH: usize = 6;

pub fn whiteout_markers(data: &[u8]) {
    let sandbox = Scratch::new();
    let dir = |n: &str| {
        let p = sandbox.path().join(n);
        fs::create_dir(&p).expect("sandbox dir");
        p
    };
    let (upper, l1, l2, work) = (dir("upper"), dir("lower1"), dir("lower2"), dir("work"));
    let layers = [
        Layer::at(&upper).expect("upper"),
        Layer::at(&l1).expect("lower1"),
        Layer::at(&l2).expect("lower2"),
    ];
    let mut paths: Vec<Vec<Vec<u8>>> = Vec::new();
    for line in data.split(|&b| b == b'\n').take(MAX_RECORDS) {
        let [l, kind, rest @ ..] = line else { continue };
        let layer = match l {
            b'u' => &layers[0],
            b'1' => &layers[1],
            b'2' => &layers[2],
            _ => continue,
        };
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        let (path, value) = match rest.iter().position(|&b| b == b'=') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        let Ok(comps) = normalize(path, 1024) else {
            continue;
        };
        if comps.is_empty() && !matches!(kind, b'o' | b'O' | b'X') {
            continue;
        }
        // Any failure (a name with NUL, a parent that is a file) just leaves the record out.
        let _ = build(layer, &comps, *kind, value);
        paths.push(comps);
    }
    let union = match Union::new(&UnionConfig {
        lowers: vec![l1.clone(), l2.clone()],
        upper: Some(upper.clone()),
        work: Some(work.clone()),
        fsync: false,
        user_markers: false,
        acl: true,
        ..Default::default()
    }) {
        Ok(u) => u,
        Err(e) => return super::assert_one_line("Union::new", &e),
    };
    let mut check = Check {
        union: &union,
        listings: HashMap::new(),
    };
    check.tree(union.root_ino(), 0);
    for comps in &paths {
        check.path(comps);
    }
}

/// Creates one record's object in `layer`, beneath its root, never following a symlink.
fn build(layer: &Layer, comps: &[Vec<u8>], kind: u8, value: &[u8]) -> Result<(), Errno> {
    let (parent, name): (&[Vec<u8>], &[u8]) = match comps.split_last() {
        Some((n, p)) => (p, n),
        None => (&[], b""),
    };
    let mut at = Vec::new();
    for c in parent {
        let d = layer.dir(&at)?;
        match sfs::mkdir_at(d.as_fd(), c, 0o755) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        if !at.is_empty() {
            at.push(b'/');
        }
        at.extend_from_slice(c);
    }
    let d = layer.dir(&at)?;
    let d = d.as_fd();
    match kind {
        b'd' => sfs::mkdir_at(d, name, 0o755),
        b'f' => {
            let f = sfs::open_at(
                d,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o644,
            )?;
            std::io::Write::write_all(&mut fs::File::from(f), value).map_err(|_| Errno::EIO)
        }
        b'c' if is_root() => sfs::mknod_at(d, name, libc::S_IFCHR | 0o600, 0),
        b'l' => sfs::symlink_at(value, d, name),
        b'o' => xattr::set(d, name, b"trusted.overlay.opaque", value, 0),
        b'O' => xattr::set(d, name, b"user.overlay.opaque", value, 0),
        b'r' => xattr::set(d, name, b"trusted.overlay.redirect", value, 0),
        b'x' => xattr::set(d, name, b"trusted.overlay.whiteout", b"", 0),
        b'X' => xattr::set(d, name, b"trusted.overlay.whiteouts", b"", 0),
        _ => Err(Errno::EINVAL),
    }
}

struct Check<'a> {
    union: &'a Union,
    /// Directory ino -> its merged listing (name -> file type).
    listings: HashMap<u64, BTreeMap<Vec<u8>, u32>>,
}

impl Check<'_> {
    /// The merged listing of directory `ino`, read once.
    fn listing(&mut self, ino: u64) -> &BTreeMap<Vec<u8>, u32> {
        let u = self.union;
        self.listings.entry(ino).or_insert_with(|| {
            let entries = u.readdir(ino);
            let entries = entries.unwrap_or_else(|e| panic!("readdir of ino {ino}: {e}"));
            let mut out = BTreeMap::new();
            for e in entries.iter() {
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                assert!(
                    !is_hidden_name(&e.name),
                    "readdir shows the marker {:?}",
                    String::from_utf8_lossy(&e.name)
                );
                let dup = out.insert(e.name.clone(), e.kind);
                assert!(dup.is_none(), "readdir lists {:?} twice", e.name);
            }
            out
        })
    }

    /// Everything readdir lists below `ino` must be found by lookup, with the same type.
    fn tree(&mut self, ino: u64, depth: usize) {
        let names = self.listing(ino).clone();
        for (name, kind) in names {
            let st = self.union.lookup(ino, &name).unwrap_or_else(|e| {
                panic!(
                    "readdir lists {:?} but lookup answers {e}",
                    String::from_utf8_lossy(&name)
                )
            });
            assert_eq!(
                st.st_mode & libc::S_IFMT,
                kind,
                "readdir and lookup disagree on the type of {:?}",
                String::from_utf8_lossy(&name)
            );
            if kind == libc::S_IFDIR && depth < MAX_DEPTH {
                self.tree(st.st_ino, depth + 1);
            }
        }
    }

    /// Looks up `comps` from the root: each name lookup finds must be listed, each it does
    /// not find must not be.
    fn path(&mut self, comps: &[Vec<u8>]) {
        let mut ino = self.union.root_ino();
        for c in comps.iter().take(MAX_DEPTH) {
            let found = self.union.lookup(ino, c);
            let listed = self.listing(ino).contains_key(c.as_slice());
            let shown = String::from_utf8_lossy(c);
            match found {
                Ok(st) => {
                    assert!(
                        listed,
                        "lookup finds {shown:?} but readdir does not list it"
                    );
                    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                        return;
                    }
                    ino = st.st_ino;
                }
                Err(e) => {
                    assert_ne!(e, Errno::EIO, "lookup of {shown:?} answers EIO");
                    assert!(!listed, "readdir lists {shown:?} but lookup answers {e}");
                    return;
                }
            }
        }
    }
}
