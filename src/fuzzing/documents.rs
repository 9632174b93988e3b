//! Target `json_documents`: the input as each JSON document unionrs reads from archives,
//! registries and its own store: image manifest, image index, docker-archive manifest.json,
//! image config (its diff IDs), layer info, registry token answer, docker auth file, and a
//! store whose index.json is the input. What deserializes must serialize back to the same
//! document; what is refused is refused with a one-line error.

use super::{Scratch, assert_one_line};
use crate::image::digest::Digest;
use crate::image::layout::{DockerArchiveEntry, Index, Manifest, config_diff_ids};
use crate::image::registry::auth::{lookup_in, token_from_json};
use crate::image::registry::pull::{Platform, choose_platform};
use crate::image::store::{LayerInfo, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fs;

pub fn json_documents(data: &[u8]) {
    if let Some(index) = round_trip::<Index>(data) {
        for want in [
            Platform::this_machine(),
            Platform::parse("linux/arm/v7").unwrap(),
        ] {
            if let Err(e) = choose_platform(&index, &want) {
                assert_one_line("choose_platform", &e);
            }
        }
        for d in &index.manifests {
            let _ = Digest::parse(&d.digest);
        }
    }
    if let Some(m) = round_trip::<Manifest>(data) {
        for d in m.layers.iter().chain([&m.config]) {
            if let Err(e) = Digest::parse(&d.digest) {
                assert_one_line("Digest::parse", &e);
            }
        }
    }
    round_trip::<Vec<DockerArchiveEntry>>(data);
    round_trip::<LayerInfo>(data);
    if let Ok(config) = serde_json::from_slice::<Value>(data) {
        match config_diff_ids(&config) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = Digest::parse(&id) {
                        assert_one_line("Digest::parse", &e);
                    }
                }
            }
            Err(e) => assert_one_line("config_diff_ids", &e),
        }
    }
    if let Err(e) = token_from_json(data) {
        assert_one_line("token_from_json", &e);
    }
    for registry in ["docker.io", "127.0.0.1:5000"] {
        let _ = lookup_in(data, registry);
    }
    store_with_index(data);
}

/// Parses `data` as `T`; when it parses, `T` written out must parse to the same `T` (compared
/// as JSON values, since the types do not all implement `PartialEq`).
fn round_trip<T: DeserializeOwned + Serialize>(data: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let out = serde_json::to_vec(&v).expect("a parsed document serializes");
    let again: T = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "{} written by unionrs does not parse back: {e}: {}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&out)
        )
    });
    let (a, b) = (serde_json::to_value(&v), serde_json::to_value(&again));
    assert_eq!(
        a.ok(),
        b.ok(),
        "{} does not round-trip",
        std::any::type_name::<T>()
    );
    Some(v)
}

/// A store whose index.json is `data`: listing and resolving images either works or fails
/// with one line.
fn store_with_index(data: &[u8]) {
    let scratch = Scratch::new();
    let root = scratch.path().join("store");
    let store = Store::open(&root).expect("open a fresh store");
    fs::write(root.join("index.json"), data).expect("write index.json");
    if let Err(e) = store.images() {
        assert_one_line("Store::images", &e);
    }
    for what in ["a", "sha256:0123", "0123456789abcdef"] {
        if let Err(e) = store.resolve(what) {
            assert_one_line("Store::resolve", &e);
        }
    }
}
