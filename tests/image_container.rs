//! Containers over loaded images, through the real union mount (root and /dev/fuse needed):
//! create, ps, diff, commit, and the committed image's layer and history.

mod image_util;
use image_util::*;
use std::fs;
use std::io::Write;
use std::path::Path;

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
    let ps = ok(&store, &["ps", "-a"]);
    assert!(
        ps.contains(" c1\n") && ps.contains("base:1") && ps.contains("Created (mounted)"),
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
    assert!(ok(&store, &["ps", "-a"]).lines().count() == 1);
    ok(&store, &["rmi", "derived:2"]);
    ok(&store, &["rmi", "base:1"]);
    assert_eq!(fs::read_dir(store.join("layers")).unwrap().count(), 0);
}

/// `umoci unpack` of an image we committed gives the same tree as our union mount of it:
/// names, types, modes, owners, sizes, contents, symlink targets, device numbers, user.*
/// xattrs and hard-link groups (times are not compared: umoci sets its own on dirs).
/// The committed changes cover copy-ups, deletions of lower files and dirs (whiteouts),
/// an opaque dir, a renamed lower dir (a redirect in the upper, exported from the mount),
/// chmod/chown, xattrs, fifos, hard links, symlinks and long UTF-8 names; the base has a
/// whiteout and an opaque dir of its own.
#[test]
fn umoci_unpack_of_a_commit_matches_the_union_mount() {
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    assert!(
        have("umoci"),
        "umoci is missing (scripts/setup.sh installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let _guard = UnmountUnder(store.join("containers"));
    let long = format!("ünïcødé-名前-{}", "y".repeat(150));
    let bottom = layer(
        &[
            dir("etc"),
            file("etc/a", b"a"),
            file("etc/hidden-later", b"h"),
            file("etc/doomed", b"d"),
            E {
                uid: 1234,
                gid: 5678,
                mode: 0o640,
                xattrs: vec![("user.color".into(), b"blue".to_vec())],
                ..file("etc/owned", b"owned")
            },
            dir("olddir"),
            file("olddir/x", b"x"),
            dir("tree"),
            dir("tree/sub"),
            file("tree/sub/deep", b"deep"),
            dir("opq"),
            file("opq/below", b"below"),
            E {
                mode: 0o4755,
                ..file("suid", b"#!x")
            },
            hardlink("suid-link", "suid"),
            symlink("abs", "/etc/a"),
            symlink("rel", "etc/a"),
            fifo("pipe"),
            E {
                xattrs: vec![("user.d".into(), b"dirattr".to_vec())],
                ..dir("xdir")
            },
            file(&long, b"long"),
        ],
        Comp::Gzip,
    );
    let upper = layer(
        &[
            dir("etc"),
            file("etc/.wh.hidden-later", b""),
            dir("opq"),
            file("opq/.wh..wh..opq", b""),
            file("opq/above", b"above"),
        ],
        Comp::None,
    );
    load_image(
        &store,
        tmp.path(),
        "src:1",
        &[&bottom, &upper],
        config(&[&bottom, &upper], "2024-01-01T00:00:00Z"),
    );
    ok(&store, &["create", "--name", "c", "src:1"]);
    let m = store.join("containers/c/merged");
    let sh = |script: &str| {
        let o = std::process::Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(&m)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh("echo changed > etc/a
        rm etc/doomed
        rm -r tree
        mv olddir newdir
        echo new > newdir/y
        mkdir -p tree2/sub && mv tree2 renamed-new
        chmod 0700 suid
        chown 42:43 suid-link
        setfattr -n user.added -v v1 newdir/x
        setfattr -x user.d xdir
        mkfifo -m 0620 newfifo
        ln etc/a etc/a-link
        ln -s ../etc/a newdir/to-a
        mkdir -p fresh/dir && echo f > fresh/dir/file && chown -R 7:8 fresh
        rm -r opq && mkdir opq && echo again > opq/again");
    let before = tree(&m);
    // Committed unmounted: commit mounts it to read the renamed dir, and unmounts again.
    ok(&store, &["umount", "c"]);
    ok(&store, &["commit", "c", "committed:1"]);
    let ps = ok(&store, &["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.ends_with(" c") && !l.contains("(mounted)")),
        "{ps}"
    );
    ok(&store, &["create", "--name", "c2", "committed:1"]);
    let ours = tree(&store.join("containers/c2/merged"));
    let bundle = tmp.path().join("bundle");
    let o = std::process::Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:committed:1", store.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let theirs = tree(&bundle.join("rootfs"));
    let d = tree_diff(&ours, &theirs);
    assert!(
        d.is_empty(),
        "our mount (first) vs umoci unpack (second):\n{}",
        d.join("\n")
    );
    // And the container of the committed image shows what the first container showed.
    let d = tree_diff(&before, &ours);
    assert!(
        d.is_empty(),
        "before commit (first) vs after (second):\n{}",
        d.join("\n")
    );
    // Spot checks that the tree really holds the changes compared above.
    assert!(
        ours["etc/a"].contains("links [\"etc/a\", \"etc/a-link\"]"),
        "{}",
        ours["etc/a"]
    );
    assert!(ours["suid"].contains("mode 700") && ours["suid"].contains("owner 42:43"));
    assert!(
        ours["newdir/x"].contains("user.added=v1"),
        "{}",
        ours["newdir/x"]
    );
    // The renamed lower dir keeps its lower content under the new name, and only there.
    assert!(!ours.contains_key("olddir") && ours.contains_key("newdir/y"));
    assert!(ours.contains_key("renamed-new/sub"));
    assert!(!ours.contains_key("etc/doomed") && !ours.contains_key("etc/hidden-later"));
    assert_eq!(
        ours["etc/owned"],
        format!(
            "file 5 {} mode 640 owner 1234:5678 xattrs [\"user.color=blue\"]",
            sha(b"owned")
        )
    );
    assert!(!ours.contains_key("tree") && !ours.contains_key("tree/sub/deep"));
    assert!(!ours.contains_key("opq/above") && !ours.contains_key("opq/below"));
    assert!(
        ours["newfifo"].starts_with("fifo mode 620"),
        "{}",
        ours["newfifo"]
    );
    assert!(ours["fresh/dir/file"].contains("owner 7:8"));
    assert!(ours.contains_key(&long));
    ok(&store, &["rm", "c2"]);
    ok(&store, &["rm", "c"]);
}

/// `umount` returns only once the mount's daemon has let go of the workdir, so a `mount`
/// right after it works (it used to fail now and then: "workdir ... is in use").
#[test]
fn umount_then_mount_at_once() {
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let _guard = UnmountUnder(store.join("containers"));
    let l = layer(&[file("f", b"f")], Comp::Gzip);
    load_image(
        &store,
        tmp.path(),
        "x:1",
        &[&l],
        config(&[&l], "2024-01-01T00:00:00Z"),
    );
    ok(&store, &["create", "--name", "u", "x:1"]);
    for _ in 0..10 {
        ok(&store, &["umount", "u"]);
        let m = ok(&store, &["mount", "u"]);
        assert_eq!(fs::read(Path::new(m.trim()).join("f")).unwrap(), b"f");
    }
    ok(&store, &["rm", "u"]);
}

/// A container whose upper was written by a metacopy=on mount (files chmod'ed and renamed
/// without their data) commits with the data, read from the lower layer.
#[test]
fn commit_of_metacopy_files_takes_the_data_from_the_lower() {
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let _guard = UnmountUnder(store.join("containers"));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let base = layer(
        &[dir("etc"), file("etc/a", &big), file("etc/b", b"bee")],
        Comp::Gzip,
    );
    load_image(
        &store,
        tmp.path(),
        "base:1",
        &[&base],
        config(&[&base], "2024-01-01T00:00:00Z"),
    );
    ok(&store, &["create", "--name", "c", "base:1"]);
    ok(&store, &["umount", "c"]);
    // The same upper, mounted by hand with metacopy=on.
    let c = store.join("containers/c");
    let lower = store.join("layers").join(&base.diff_id[7..]);
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},metacopy=on",
        lower.display(),
        c.join("upper").display(),
        c.join("work").display()
    );
    let m = c.join("merged");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .args(["-o", &opts])
        .arg(&m)
        .status()
        .unwrap();
    assert!(st.success(), "metacopy mount of the container's upper");
    let hand = Unmount(m.clone());
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(m.join("etc/a"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(m.join("etc/b"), m.join("b-moved")).unwrap();
    drop(hand);
    let has = |p: &str| {
        std::process::Command::new("getfattr")
            .args(["-n", "trusted.overlay.metacopy"])
            .arg(c.join("upper").join(p))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        has("etc/a") && has("b-moved"),
        "the upper holds metacopy files"
    );
    ok(&store, &["commit", "c", "committed:1"]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "committed:1"])).unwrap();
    let top = v[0]["RootFS"]["Layers"][1].as_str().unwrap()[7..].to_string();
    let top = store.join("layers").join(top);
    assert_eq!(fs::read(top.join("etc/a")).unwrap(), big);
    let mode = fs::metadata(top.join("etc/a"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    assert_eq!(fs::read(top.join("b-moved")).unwrap(), b"bee");
    assert!(top.join("etc/.wh.b").is_file());
}

/// A lower file with two names (a hard link in the image), written through one of them: the
/// container shows the change under both names (they are one file), and so must the image
/// committed from it. The upper holds only the name written (and the workdir's index the
/// shared copy); the other name is a lower one, so the layer needs a hard link entry for it.
#[test]
fn commit_keeps_a_write_through_one_name_of_a_lower_hard_link() {
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let _guard = UnmountUnder(store.join("containers"));
    let base = layer(
        &[
            dir("bin"),
            file("bin/tool", b"v1\n"),
            hardlink("bin/tool-alias", "bin/tool"),
            dir("lib"),
            hardlink("lib/tool-deep", "bin/tool"),
        ],
        Comp::None,
    );
    load_image(
        &store,
        tmp.path(),
        "src:1",
        &[&base],
        config(&[&base], "2024-01-01T00:00:00Z"),
    );
    ok(&store, &["create", "--name", "c", "src:1"]);
    let m = store.join("containers/c/merged");
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("bin/tool"))
        .unwrap()
        .write_all(b"v2\n")
        .unwrap();
    let before = tree(&m);
    for name in ["bin/tool-alias", "lib/tool-deep"] {
        assert_eq!(fs::read(m.join(name)).unwrap(), b"v1\nv2\n", "live {name}");
    }
    ok(&store, &["commit", "c", "committed:1"]);
    ok(&store, &["create", "--name", "c2", "committed:1"]);
    let m2 = store.join("containers/c2/merged");
    for name in ["bin/tool", "bin/tool-alias", "lib/tool-deep"] {
        assert_eq!(
            fs::read(m2.join(name)).unwrap(),
            b"v1\nv2\n",
            "committed {name}"
        );
    }
    let d = tree_diff(&before, &tree(&m2));
    assert!(d.is_empty(), "before commit vs after:\n{}", d.join("\n"));
}
