//! `unionrs prune [-a]`, checked on disk: dangling images go, then the layers and blobs
//! nothing uses any more; a layer a container or a remaining image uses always stays, and
//! the reclaimed bytes are what disappeared. Containers mount for real (root, /dev/fuse).

mod image_util;
use image_util::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn hex(diff_id: &str) -> String {
    diff_id.trim().trim_start_matches("sha256:").to_string()
}

/// Disk usage (allocated blocks) of a path and everything below it.
fn du(p: &Path) -> u64 {
    let m = fs::symlink_metadata(p).unwrap();
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            n += du(&e.unwrap().path());
        }
    }
    n
}

/// Disk usage of the store's entries (blobs, layer dirs, layer infos) by relative path.
fn entries(store: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for d in ["blobs/sha256", "layers", "layerinfo", "distribution"] {
        if !store.join(d).is_dir() {
            continue;
        }
        for n in names(&store.join(d)) {
            let p = store.join(d).join(&n);
            m.insert(format!("{d}/{n}"), du(&p));
        }
    }
    m
}

/// Runs prune, checks that the reported bytes are the disk usage of what disappeared.
fn prune(store: &Path, args: &[&str]) -> String {
    let before = entries(store);
    let mut a = vec!["prune"];
    a.extend(args);
    let out = ok(store, &a);
    let after = entries(store);
    let gone: u64 = before
        .iter()
        .filter(|(k, _)| !after.contains_key(*k))
        .map(|(_, v)| v)
        .sum();
    assert!(
        out.contains("Total reclaimed space: ") && out.contains(&format!("({gone} bytes;")),
        "expected {gone} bytes reclaimed:\n{out}"
    );
    assert!(
        after.keys().all(|k| before.contains_key(k)),
        "prune added files"
    );
    out
}

/// The top layer's diff ID (hex) of an image.
fn top_layer(store: &Path, image: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(store, &["inspect", image])).unwrap();
    hex(v[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap())
}

#[test]
fn prune_keeps_what_containers_and_remaining_images_use() {
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let _guard = UnmountUnder(store.join("containers"));
    let l0 = layer(&[dir("etc"), file("etc/base", b"base")], Comp::Gzip);
    let l1 = layer(&[file("app", &vec![7u8; 200_000])], Comp::Gzip);
    load_image(
        &store,
        tmp.path(),
        "base:1",
        &[&l0],
        config(&[&l0], "2024-01-01T00:00:00Z"),
    );
    load_image(
        &store,
        tmp.path(),
        "app:1",
        &[&l0, &l1],
        config(&[&l0, &l1], "2024-01-02T00:00:00Z"),
    );
    // Two untagged images, committed without a name: one dangling, one a container uses.
    ok(&store, &["create", "--name", "w", "base:1"]);
    fs::write(
        store.join("containers/w/merged/dangling"),
        vec![1u8; 300_000],
    )
    .unwrap();
    let dangling = ok(&store, &["commit", "w"]).trim().to_string();
    fs::write(store.join("containers/w/merged/used"), b"used").unwrap();
    let used = ok(&store, &["commit", "w"]).trim().to_string();
    ok(&store, &["rm", "w"]);
    let l_dangling = top_layer(&store, &dangling);
    let l_used = top_layer(&store, &used);
    ok(&store, &["create", "--name", "keeper", &used]);
    let all_layers: BTreeSet<String> = [
        hex(&l0.diff_id),
        hex(&l1.diff_id),
        l_dangling.clone(),
        l_used.clone(),
    ]
    .into_iter()
    .collect();
    assert_eq!(names(&store.join("layers")), all_layers);
    let dangling_cfg_blob = store.join("blobs/sha256").join(hex(&dangling));
    // Push's "which repositories hold this blob" records: one for a blob that goes, one for
    // a blob that stays.
    fs::create_dir_all(store.join("distribution")).unwrap();
    fs::write(
        store.join("distribution").join(hex(&dangling)),
        b"127.0.0.1:5000 a\n",
    )
    .unwrap();
    fs::write(
        store.join("distribution").join(hex(&used)),
        b"127.0.0.1:5000 b\n",
    )
    .unwrap();

    // prune: only the dangling image, its layer and its blobs go.
    let out = prune(&store, &[]);
    assert!(out.contains(&format!("deleted: {dangling}")), "{out}");
    assert!(
        out.contains(&format!("deleted layer: sha256:{l_dangling}")),
        "{out}"
    );
    assert!(!out.contains("untagged:"), "{out}");
    let mut expect = all_layers.clone();
    expect.remove(&l_dangling);
    assert_eq!(names(&store.join("layers")), expect);
    assert!(!dangling_cfg_blob.exists());
    assert!(!store.join("distribution").join(hex(&dangling)).exists());
    assert!(store.join("distribution").join(hex(&used)).exists());
    assert!(!store.join(format!("layerinfo/{l_dangling}.json")).exists());
    assert!(store.join("blobs/sha256").join(hex(&used)).is_file());
    let images = ok(&store, &["images"]);
    assert_eq!(images.lines().count(), 4, "{images}");
    // Nothing more to do: 0 bytes.
    let out = prune(&store, &[]);
    assert!(out.contains("Total reclaimed space: 0B (0 bytes;"), "{out}");

    // prune -a: tagged images no container uses go too, but base:1's layer stays (the
    // container's image has it), and so does everything of the container's image.
    let out = prune(&store, &["-a"]);
    assert!(
        out.contains("untagged: base:1") && out.contains("untagged: app:1"),
        "{out}"
    );
    assert!(
        out.contains(&format!("deleted layer: sha256:{}", hex(&l1.diff_id))),
        "{out}"
    );
    let expect: BTreeSet<String> = [hex(&l0.diff_id), l_used.clone()].into_iter().collect();
    assert_eq!(names(&store.join("layers")), expect);
    // The container still reads all its layers, and its image still runs through commit.
    let merged = store.join("containers/keeper/merged");
    assert_eq!(fs::read(merged.join("etc/base")).unwrap(), b"base");
    assert_eq!(fs::read(merged.join("used")).unwrap(), b"used");
    fs::write(merged.join("more"), b"more").unwrap();
    ok(&store, &["commit", "keeper", "kept:1"]);
    ok(&store, &["rm", "keeper"]);

    // With no container left, prune -a empties the store.
    prune(&store, &["-a", "-f"]);
    assert!(names(&store.join("layers")).is_empty());
    assert!(names(&store.join("blobs/sha256")).is_empty());
    assert!(names(&store.join("layerinfo")).is_empty());
    assert_eq!(ok(&store, &["images"]).lines().count(), 1);
    let e = fails(&store, &["prune", "extra"]);
    assert_eq!(
        e.trim_end(),
        "unionrs prune: unexpected argument 'extra' found\nSee 'unionrs prune --help'."
    );
}
