//! Containers over loaded images, through the real union mount (root and /dev/fuse needed):
//! create, ps, diff, commit, and the committed image's layer and history.

mod image_util;
use image_util::*;
use std::fs;

#[test]
fn create_diff_commit_rm() {
    // This project's machines always mount: a test that cannot, fails.
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = layer(
        &[
            dir("etc"),
            file("etc/a", b"a"),
            file("etc/b", b"b"),
            dir("d"),
            file("d/x", b"x"),
        ],
        Comp::Gzip,
    );
    let cfg = config(&[&base], "2024-01-01T00:00:00Z");
    let f = write(
        tmp.path(),
        "a.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["base:1"],
            config: cfg,
            layers: vec![&base],
        }]),
    );
    ok(&store, &["load", "-i", f.to_str().unwrap()]);
    assert_eq!(
        ok(&store, &["create", "--name", "c1", "base:1"]).trim(),
        "c1"
    );
    let merged = store.join("containers/c1/merged");
    let guard = Unmount(merged.clone());
    assert_eq!(fs::read(merged.join("etc/a")).unwrap(), b"a");
    fs::write(merged.join("etc/a"), b"changed").unwrap();
    fs::remove_file(merged.join("etc/b")).unwrap();
    fs::write(merged.join("new"), b"new").unwrap();
    let ps = ok(&store, &["ps"]);
    assert!(
        ps.contains("c1") && ps.contains("base:1") && ps.contains("mounted"),
        "{ps}"
    );
    let diff = ok(&store, &["diff", "c1"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(
        lines,
        ["C /etc", "C /etc/a", "D /etc/b", "A /new"],
        "{diff}"
    );
    // rmi refuses while a container uses the image.
    assert!(fails(&store, &["rmi", "base:1"]).contains("used by container c1"));
    let id = ok(
        &store,
        &[
            "commit",
            "-a",
            "tester",
            "-m",
            "my change",
            "-c",
            "ENV K=v",
            "c1",
            "derived:2",
        ],
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "derived:2"])).unwrap();
    assert_eq!(v[0]["Id"], id.trim());
    let layers = v[0]["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0], base.diff_id);
    assert!(
        v[0]["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("K=v"))
    );
    let h = v[0]["History"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (h["author"].as_str(), h["comment"].as_str()),
        (Some("tester"), Some("my change"))
    );
    // The new layer is unpacked, whiteout kept in the OCI form.
    let top = store.join("layers").join(&layers[1].as_str().unwrap()[7..]);
    assert_eq!(fs::read(top.join("etc/a")).unwrap(), b"changed");
    assert!(top.join("etc/.wh.b").is_file());
    assert_eq!(fs::read(top.join("new")).unwrap(), b"new");
    // A container of the committed image sees the change.
    ok(&store, &["create", "--name", "c2", "derived:2"]);
    let m2 = store.join("containers/c2/merged");
    let guard2 = Unmount(m2.clone());
    assert_eq!(fs::read(m2.join("etc/a")).unwrap(), b"changed");
    assert!(!m2.join("etc/b").exists());
    ok(&store, &["rm", "c2"]);
    ok(&store, &["rm", "c1"]);
    drop((guard, guard2));
    assert!(ok(&store, &["ps"]).lines().count() == 1);
    ok(&store, &["rmi", "derived:2"]);
    ok(&store, &["rmi", "base:1"]);
    assert_eq!(fs::read_dir(store.join("layers")).unwrap().count(), 0);
}
