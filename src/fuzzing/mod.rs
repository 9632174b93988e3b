//! Entry points for the coverage-guided fuzz targets (`fuzz/`) and their replay in
//! `tests/fuzz_regressions.rs`: each takes the raw input bytes, drives one parser of hostile
//! input through its public API, and panics when an invariant breaks (a parser that panics
//! by itself is a finding too). Errors the code returns for bad input are fine, as long as
//! they are one line.
//!
//! Kept in the library so the fuzzer and `cargo test` run exactly the same checks; nothing
//! else calls it.

mod archive;
mod documents;
mod layer;
mod markers;
mod text;

pub use archive::archive_load;
pub use documents::json_documents;
pub use layer::unpack_layer;
pub use markers::whiteout_markers;
pub use text::{image_reference, mount_options};

use crate::image::store::remove_tree;
use crate::image::unpack::Limits;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The fuzz target names, as `fuzz/fuzz_targets/NAME.rs` and `fuzz/corpus/NAME/` spell them.
pub const TARGETS: &[&str] = &[
    "unpack_layer",
    "whiteout_markers",
    "image_reference",
    "json_documents",
    "archive_load",
    "mount_options",
];

/// Layer bounds for the targets that unpack: small, so one input stays fast; the code paths
/// are the ones the defaults take.
const LIMITS: Limits = Limits {
    max_bytes: 8 << 20,
    max_entries: 2_000,
    max_path: 4096,
    max_ext_header: 64 << 10,
};

/// Runs target `name` on `data`. Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "unpack_layer" => unpack_layer(data),
        "whiteout_markers" => whiteout_markers(data),
        "image_reference" => image_reference(data),
        "json_documents" => json_documents(data),
        "archive_load" => archive_load(data),
        "mount_options" => mount_options(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// A fresh directory under the system temp dir, removed (whatever it holds) on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("unionrs-fuzz-{}-{n}", std::process::id()));
        let _ = remove_tree(&p);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        Scratch(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.0) {
            // Not a panic inside drop during a panic: leave a trace instead.
            eprintln!("fuzzing: cannot clean {}: {e}", self.0.display());
        }
    }
}

/// What a tree looks like without following symlinks: every entry's type, mode, owner, size,
/// mtime, link count and (for symlinks) target, by path relative to `root`. `skip` names a
/// subtree left out (the dir the code under test may write to).
fn snapshot(root: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

fn walk(root: &Path, p: &Path, skip: Option<&Path>, out: &mut BTreeMap<PathBuf, String>) {
    let rel = p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => {
            out.insert(rel, format!("error {e}"));
            return;
        }
    };
    let target = fs::read_link(p).ok();
    out.insert(
        rel,
        format!(
            "mode {:o} owner {}:{} size {} mtime {}.{} nlink {} link {target:?}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.nlink()
        ),
    );
    if m.is_dir() && Some(p) != skip {
        let mut names: Vec<_> = fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for n in names {
            if Some(n.as_path()) == skip {
                // Its contents and times are the code's to change; it must stay a directory.
                let kind = match fs::symlink_metadata(&n) {
                    Ok(m) if m.is_dir() => "directory",
                    _ => "not a directory",
                };
                out.insert(
                    n.strip_prefix(root).unwrap_or(&n).to_path_buf(),
                    kind.into(),
                );
                continue;
            }
            walk(root, &n, skip, out);
        }
    }
}

/// A refusal must be one line that says what is wrong.
fn assert_one_line(what: &str, msg: &str) {
    assert!(!msg.is_empty(), "{what}: empty error message");
    assert!(
        !msg.contains(['\n', '\r']),
        "{what}: error message is not one line: {msg:?}"
    );
}
