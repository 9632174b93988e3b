//! Hostile archives: every one is refused with an error naming the problem, writes nothing
//! outside the store, and leaves the store exactly as it was (an image loaded earlier
//! stays, nothing new appears, STORE/tmp is empty).

mod image_util;
use image_util::*;
use std::path::Path;

/// A store holding one good image, its snapshot, and a scratch dir.
fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let l = layer(&[dir("etc"), file("etc/ok", b"ok")], Comp::Gzip);
    let c = config(&[&l], "2024-01-01T00:00:00Z");
    let a = write(
        tmp.path(),
        "good.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["good:1"],
            config: c,
            layers: vec![&l],
        }]),
    );
    ok(&store, &["load", "-i", a.to_str().unwrap()]);
    (tmp, store)
}

/// Loads an image made of `layers` and expects failure mentioning every `needles`.
fn refused(entries_per_layer: &[Vec<E>], needles: &[&str]) -> String {
    let layers: Vec<Layer> = entries_per_layer
        .iter()
        .map(|e| layer(e, Comp::None))
        .collect();
    let refs: Vec<&Layer> = layers.iter().collect();
    let c = config(&refs, "2024-01-01T00:00:00Z");
    refused_archive(
        &docker_archive(&[ArchImage {
            tags: vec!["bad:1"],
            config: c,
            layers: refs,
        }]),
        needles,
    )
}

fn refused_archive(archive: &[u8], needles: &[&str]) -> String {
    let (tmp, store) = setup();
    let before = snapshot(&store);
    let f = write(tmp.path(), "bad.tar", archive);
    let err = fails(&store, &["load", "-i", f.to_str().unwrap()]);
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
    assert_eq!(
        before,
        snapshot(&store),
        "store changed by a refused load: {err}"
    );
    assert!(ok(&store, &["images"]).contains("good"));
    err
}

#[test]
fn dotdot_escape_is_refused() {
    let victim = tempfile::tempdir().unwrap();
    let name = format!("../../../../../../../..{}/escaped", victim.path().display());
    refused(
        &[vec![file(&name, b"x")]],
        &["escaped", "escapes the layer"],
    );
    refused(
        &[vec![dir("a"), file("a/../../x", b"x")]],
        &["a/../../x", "'..'"],
    );
    assert!(!victim.path().join("escaped").exists());
}

#[test]
fn absolute_names_are_taken_relative() {
    let victim = tempfile::tempdir().unwrap();
    let abs = format!("{}/abs-file", victim.path().display());
    let (tmp, store) = setup();
    let l = layer(&[file(&abs, b"inside")], Comp::None);
    let c = config(&[&l], "2024-01-01T00:00:00Z");
    let f = write(
        tmp.path(),
        "abs.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["abs:1"],
            config: c,
            layers: vec![&l],
        }]),
    );
    ok(&store, &["load", "-i", f.to_str().unwrap()]);
    assert!(
        !victim.path().join("abs-file").exists(),
        "wrote outside the layer"
    );
    let inside = store
        .join("layers")
        .join(&l.diff_id[7..])
        .join(abs.trim_start_matches('/'));
    assert_eq!(std::fs::read(inside).unwrap(), b"inside");
}

#[test]
fn symlinked_parent_is_refused() {
    let victim = tempfile::tempdir().unwrap();
    // evil -> / , then evil/<victim>/pwned
    let target = format!("evil{}/pwned", victim.path().display());
    refused(
        &[vec![symlink("evil", "/"), file(&target, b"x")]],
        &["pwned", "symlink"],
    );
    // A relative symlink to a sibling dir is refused as a parent too.
    refused(
        &[vec![dir("d"), symlink("s", "d"), file("s/f", b"x")]],
        &["s/f", "symlink"],
    );
    assert!(!victim.path().join("pwned").exists());
    // Across layers: a lower layer's symlink is not a parent in the next layer's dir.
    let (tmp, store) = setup();
    let l1 = layer(
        &[symlink("evil", victim.path().to_str().unwrap())],
        Comp::None,
    );
    let l2 = layer(&[dir("evil"), file("evil/pwned", b"x")], Comp::None);
    let c = config(&[&l1, &l2], "2024-01-01T00:00:00Z");
    let f = write(
        tmp.path(),
        "x.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["x:1"],
            config: c,
            layers: vec![&l1, &l2],
        }]),
    );
    ok(&store, &["load", "-i", f.to_str().unwrap()]);
    assert!(!victim.path().join("pwned").exists());
    assert!(
        store
            .join("layers")
            .join(&l2.diff_id[7..])
            .join("evil/pwned")
            .is_file()
    );
}

#[test]
fn hardlink_outside_the_layer_is_refused() {
    refused(
        &[vec![hardlink("passwd", "/etc/passwd")]],
        &["passwd", "not"],
    );
    refused(
        &[vec![hardlink("passwd", "../../../../etc/passwd")]],
        &["passwd", "'..'"],
    );
    // Through a symlinked dir inside the layer.
    refused(
        &[vec![symlink("etc", "/etc"), hardlink("p", "etc/passwd")]],
        &["\"p\"", "hardlink target"],
    );
}

#[test]
fn digest_mismatches_are_refused() {
    // The config's diff ID does not match the layer content.
    let l = layer(&[file("a", b"a")], Comp::Gzip);
    let other = layer(&[file("b", b"b")], Comp::None);
    let c = config(&[&other], "2024-01-01T00:00:00Z");
    let arch = docker_archive(&[ArchImage {
        tags: vec!["bad:1"],
        config: c,
        layers: vec![&l],
    }]);
    refused_archive(&arch, &["diff ID mismatch", &other.diff_id, &l.diff_id]);
    // A legacy config file named by a digest it does not have.
    let good_cfg = config(&[&l], "2024-01-01T00:00:00Z");
    let wrong = format!("{}.json", sha(b"something else"));
    let manifest =
        serde_json::json!([{"Config": wrong, "RepoTags": ["bad:1"], "Layers": ["l.tar"]}]);
    let arch = tar(&[
        file(&wrong, &good_cfg),
        file("l.tar", &l.blob),
        file("manifest.json", &serde_json::to_vec(&manifest).unwrap()),
    ]);
    refused_archive(&arch, &["digest mismatch"]);
    // An OCI layout blob whose content is not its name.
    let img = ArchImage {
        tags: vec![],
        config: good_cfg.clone(),
        layers: vec![&l],
    };
    let path = format!("blobs/sha256/{}", sha(&l.blob));
    let arch = oci_archive("bad:1", &img, None, Some((&path, b"tampered")));
    refused_archive(&arch, &["digest mismatch", &path]);
}

#[test]
fn missing_blobs_are_refused() {
    let l = layer(&[file("a", b"a")], Comp::None);
    let c = config(&[&l], "2024-01-01T00:00:00Z");
    let manifest = serde_json::json!([{"Config": format!("{}.json", sha(&c)), "RepoTags": ["bad:1"], "Layers": ["nothere/layer.tar"]}]);
    let arch = tar(&[
        file(&format!("{}.json", sha(&c)), &c),
        file("manifest.json", &serde_json::to_vec(&manifest).unwrap()),
    ]);
    refused_archive(&arch, &["nothere/layer.tar"]);
    let img = ArchImage {
        tags: vec![],
        config: c.clone(),
        layers: vec![&l],
    };
    let arch = oci_archive(
        "bad:1",
        &img,
        Some(&format!("blobs/sha256/{}", sha(&l.blob))),
        None,
    );
    refused_archive(&arch, &["missing", &sha(&l.blob)]);
    refused_archive(
        &tar(&[file("readme", b"hi")]),
        &["neither manifest.json nor index.json"],
    );
    refused_archive(
        b"not a tar at all, just some bytes that are not 512 long",
        &["load"],
    );
}

#[test]
fn bad_entries_fail_and_name_the_entry() {
    // A truncated layer (tar cut inside a file's data).
    let mut t = tar(&[file("big", &[7u8; 4000])]);
    t.truncate(1024);
    let diff = format!("sha256:{}", sha(&t));
    let l = Layer {
        blob: t,
        diff_id: diff,
    };
    let c = config(&[&l], "2024-01-01T00:00:00Z");
    refused_archive(
        &docker_archive(&[ArchImage {
            tags: vec!["bad:1"],
            config: c,
            layers: vec![&l],
        }]),
        &["big"],
    );
    // An overlong pax header is bounded, not read into memory whole.
    let mut recs = Vec::new();
    while recs.len() < (1 << 20) + 10 {
        recs.extend_from_slice(b"30 comment=aaaaaaaaaaaaaaaaaa\n");
    }
    let mut e = file("x", b"");
    e.kind = b'x';
    e.data = recs;
    refused(&[vec![e, file("y", b"y")]], &["extension header larger"]);
}

#[test]
fn failed_load_leaves_no_layer_of_a_good_image_in_the_same_archive() {
    // Image 1 is fine, image 2 is bad: nothing of image 1 may appear either.
    let good = layer(&[file("fine", b"1")], Comp::None);
    let bad = layer(&[file("../x", b"1")], Comp::None);
    let c1 = config(&[&good], "2024-01-01T00:00:00Z");
    let c2 = config(&[&bad], "2024-01-01T00:00:00Z");
    let arch = docker_archive(&[
        ArchImage {
            tags: vec!["one:1"],
            config: c1,
            layers: vec![&good],
        },
        ArchImage {
            tags: vec!["two:1"],
            config: c2,
            layers: vec![&bad],
        },
    ]);
    let err = refused_archive(&arch, &["../x"]);
    assert!(!Path::new("/x").exists() || err.contains("escapes"));
}

/// The unpacker keeps the last entry's parent directories open between entries: an entry
/// that replaces one of them must not leave a later entry writing through the old one.
#[test]
fn replaced_parents_are_not_written_through() {
    let victim = tempfile::tempdir().unwrap();
    // a/b is a directory for a/b/f1, then a symlink out of the layer: a/b/f2 is refused.
    refused(
        &[vec![
            dir("a"),
            dir("a/b"),
            file("a/b/f1", b"1"),
            symlink("a/b", victim.path().to_str().unwrap()),
            file("a/b/f2", b"2"),
        ]],
        &["a/b/f2", "symlink"],
    );
    assert!(!victim.path().join("f2").exists());
    // d is a directory, then a file, then a directory again: d/y lands in the new d.
    let (tmp, store) = setup();
    let l = layer(
        &[
            dir("d"),
            file("d/x", b"x"),
            file("d", b"file"),
            dir("d"),
            file("d/y", b"y"),
        ],
        Comp::None,
    );
    let c = config(&[&l], "2024-01-01T00:00:00Z");
    let f = write(
        tmp.path(),
        "r.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["r:1"],
            config: c,
            layers: vec![&l],
        }]),
    );
    ok(&store, &["load", "-i", f.to_str().unwrap()]);
    let d = store.join("layers").join(&l.diff_id[7..]).join("d");
    assert_eq!(std::fs::read(d.join("y")).unwrap(), b"y");
    assert!(!d.join("x").exists(), "d/x survived d's replacement");
}
