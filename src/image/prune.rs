//! `unionrs prune`: Docker's `image prune` for this store. There is no running state to
//! stop, so a container (mounted or not) keeps what it uses:
//!
//! - untagged (dangling) images no container was made from are removed; with `all`, also
//!   tagged images no container was made from;
//! - then the collection `rmi` runs: blobs no remaining manifest names, and layer dirs no
//!   remaining image and no container uses.
//!
//! Containers themselves are never removed (`rm` does that).

use super::container;
use super::digest::Digest;
use super::store::{Freed, Store};
use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct Pruned {
    /// Tags removed (with `all`).
    pub untagged: Vec<String>,
    /// Image IDs removed.
    pub images: Vec<Digest>,
    pub freed: Freed,
}

pub fn prune(st: &Store, all: bool) -> Result<Pruned, String> {
    let in_use: BTreeSet<String> = container::list(st)?
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let mut out = Pruned::default();
    let mut doomed_manifests = BTreeSet::new();
    for img in st.images()? {
        if in_use.contains(img.id().as_str()) || (!all && !img.tags.is_empty()) {
            continue;
        }
        doomed_manifests.insert(img.manifest_digest.to_string());
        out.untagged.extend(img.tags.iter().cloned());
        if !out.images.contains(img.id()) {
            out.images.push(img.id().clone());
        }
    }
    if !doomed_manifests.is_empty() {
        let mut index = st.read_index()?;
        index
            .manifests
            .retain(|d| !doomed_manifests.contains(&d.digest));
        st.write_index(&index)?;
    }
    // An image ID still named by another manifest (same config, other layer blobs) stays.
    let remaining: BTreeSet<String> = st.images()?.iter().map(|i| i.id().to_string()).collect();
    out.images.retain(|id| !remaining.contains(id.as_str()));
    out.freed = st.gc(&container::used_diff_ids(st)?)?;
    // Build cache entries whose layers went with the collection.
    super::build::cache::prune(st);
    Ok(out)
}
