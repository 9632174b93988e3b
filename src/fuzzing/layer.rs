//! Target `unpack_layer`: arbitrary bytes as a layer blob (plain, gzip or zstd tar), unpacked
//! into a fresh layer dir next to a decoy tree. Whatever the archive says, nothing outside
//! the layer dir may change (the decoy tree, which holds a file, a dir and symlinks pointing
//! out, is compared before and after), the layer dir stays a directory, and a refusal is a
//! one-line error.

use super::{LIMITS, Scratch, assert_one_line, snapshot};
use crate::image::store::is_root;
use crate::image::unpack::{self, Options};
use std::fs;
use std::os::unix::fs::symlink;

pub fn unpack_layer(data: &[u8]) {
    let scratch = Scratch::new();
    let top = scratch.path();
    let layer = top.join("layer");
    fs::create_dir(&layer).expect("create the layer dir");
    let decoy = top.join("outside");
    fs::create_dir_all(decoy.join("dir")).expect("create the decoy tree");
    fs::write(decoy.join("file"), b"outside").expect("create the decoy file");
    // Names an archive is likely to try: `../outside/...` and links through them.
    symlink("/", decoy.join("root")).expect("symlink");
    symlink("..", decoy.join("up")).expect("symlink");
    let before = snapshot(top, Some(&layer));
    let opts = Options {
        limits: LIMITS,
        // As root (the store's usual case) owners and device nodes are applied too.
        as_root: is_root(),
    };
    let res = unpack::unpack_layer(data, &layer, &opts);
    let after = snapshot(top, Some(&layer));
    assert_eq!(
        before, after,
        "unpacking changed something outside the layer dir (result {res:?})"
    );
    if let Err(e) = res {
        assert_one_line("unpack_layer", &e);
    }
}
