//! The build's layer cache: the state after each step (image config and layer
//! descriptors), found by a key chained as docker chains it: the previous step's key (the
//! base image ID at the start of a stage), the instruction after substitution with the
//! build args it sees, and for COPY/ADD a checksum of what it copies.
//!
//! ```text
//! STORE/buildcache/<key-hex>.json   {"config": {...}, "layers": [descriptor...]}
//! ```
//!
//! An entry holds no blobs of its own: its layers live in the store like any layer, and
//! `prune` (which frees blobs and layer dirs no image in the index names) frees them; an
//! entry whose layers are gone is a miss, and `prune` removes such entries.

use crate::image::digest::Digest;
use crate::image::layout::Descriptor;
use crate::image::store::{Store, write_atomic};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;

/// The state of a stage between two steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub config: Value,
    pub layers: Vec<Descriptor>,
}

impl State {
    pub fn diff_ids(&self) -> Vec<String> {
        crate::image::layout::config_diff_ids(&self.config).unwrap_or_default()
    }

    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).unwrap_or_default()
    }

    /// The image ID this state has once written (its config's digest).
    pub fn id(&self) -> Digest {
        Digest::of(&self.config_bytes())
    }
}

/// The key of the step after `prev` described by `parts`.
pub fn key(prev: &str, parts: &[&str]) -> String {
    let mut s = String::from(prev);
    for p in parts {
        s.push('\n');
        s.push_str(&p.len().to_string());
        s.push(':');
        s.push_str(p);
    }
    Digest::of(s.as_bytes()).hex().to_string()
}

fn dir(st: &Store) -> PathBuf {
    st.root().join("buildcache")
}

/// Whether every layer of `s` is in the store (blob and unpacked dir).
fn complete(st: &Store, s: &State) -> bool {
    let diffs = s.diff_ids();
    diffs.len() == s.layers.len()
        && s.layers
            .iter()
            .all(|l| Digest::parse(&l.digest).is_ok_and(|d| st.has_blob(&d)))
        && diffs
            .iter()
            .all(|d| Digest::parse(d).is_ok_and(|d| st.has_layer(&d)))
}

pub fn get(st: &Store, key: &str) -> Option<State> {
    let data = fs::read(dir(st).join(format!("{key}.json"))).ok()?;
    let s: State = serde_json::from_slice(&data).ok()?;
    complete(st, &s).then_some(s)
}

pub fn put(st: &Store, key: &str, s: &State) -> Result<(), String> {
    let d = dir(st);
    fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    let data = serde_json::to_vec(s).map_err(|e| e.to_string())?;
    write_atomic(&d.join(format!("{key}.json")), &data)
}

/// Removes the entries whose layers the store no longer has; returns how many.
pub fn prune(st: &Store) -> usize {
    let mut n = 0;
    let Ok(rd) = fs::read_dir(dir(st)) else {
        return 0;
    };
    for e in rd.flatten() {
        let ok = fs::read(e.path())
            .ok()
            .and_then(|d| serde_json::from_slice::<State>(&d).ok())
            .is_some_and(|s| complete(st, &s));
        if !ok && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_and_parts_do_not_run_together() {
        let a = key("p", &["RUN x", "y"]);
        assert_eq!(a, key("p", &["RUN x", "y"]));
        assert_ne!(a, key("p", &["RUN xy", ""]));
        assert_ne!(a, key("q", &["RUN x", "y"]));
    }

    #[test]
    fn an_entry_without_its_layers_is_a_miss_and_pruned() {
        let t = tempfile::tempdir().unwrap();
        let st = Store::open(t.path()).unwrap();
        let empty = State {
            config: serde_json::json!({"rootfs": {"diff_ids": []}}),
            layers: vec![],
        };
        put(&st, "k1", &empty).unwrap();
        assert!(get(&st, "k1").is_some());
        let missing = State {
            config: serde_json::json!({"rootfs": {"diff_ids": [format!("sha256:{}", "a".repeat(64))]}}),
            layers: vec![Descriptor::new(
                "x",
                &format!("sha256:{}", "b".repeat(64)),
                1,
            )],
        };
        put(&st, "k2", &missing).unwrap();
        assert!(get(&st, "k2").is_none());
        assert_eq!(prune(&st), 1);
        assert!(get(&st, "k1").is_some());
    }
}
