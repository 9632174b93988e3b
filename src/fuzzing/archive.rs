//! Target `archive_load`: the input as an image archive (docker-archive or OCI layout tar)
//! loaded into a fresh store. A refused archive must leave the store exactly as it was
//! (STORE/tmp empty) with a one-line error; an accepted one must leave a store that lists its
//! images; nothing outside the store may change either way.

use super::{LIMITS, Scratch, assert_one_line, snapshot};
use crate::image::archive::load;
use crate::image::store::{Store, is_root};
use crate::image::unpack::Options;
use std::fs;

pub fn archive_load(data: &[u8]) {
    let scratch = Scratch::new();
    let top = scratch.path();
    let root = top.join("store");
    fs::create_dir_all(top.join("outside/dir")).expect("decoy dir");
    fs::write(top.join("outside/file"), b"outside").expect("decoy file");
    let store = Store::open(&root).expect("open a fresh store");
    let opts = Options {
        limits: LIMITS,
        as_root: is_root(),
    };
    let tmp = root.join("tmp");
    let before_outside = snapshot(top, Some(&root));
    let before_store = snapshot(&root, Some(&tmp));
    let res = load(&store, data, &opts);
    assert_eq!(
        before_outside,
        snapshot(top, Some(&root)),
        "loading an archive changed something outside the store (result {res:?})"
    );
    let tmp_left: Vec<_> = fs::read_dir(&tmp)
        .expect("STORE/tmp")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        tmp_left.is_empty(),
        "load left {tmp_left:?} in STORE/tmp ({res:?})"
    );
    match res {
        Ok(images) => {
            for (id, _) in images {
                assert!(store.has_blob(&id), "loaded image {id} has no config blob");
            }
            store
                .images()
                .expect("the store lists its images after a load");
        }
        Err(e) => {
            assert_one_line("archive::load", &e);
            assert_eq!(
                before_store,
                snapshot(&root, Some(&tmp)),
                "a refused load changed the store: {e}"
            );
        }
    }
}
