//! The image workflow end to end through the real binary: load (docker-archive, OCI
//! layout), images, inspect, history, tag, rmi, save, layer sharing, and skopeo / umoci
//! reading the store as an OCI layout.

mod image_util;
use image_util::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const LONG_UTF8: &str = "ünïcødé-名前-";

fn base_layer() -> Layer {
    layer(
        &[
            dir("etc"),
            file("etc/hello", b"hello\n"),
            file("etc/gone", b"bye\n"),
            dir("bin"),
            E {
                mode: 0o755,
                ..file("bin/sh", b"#!shell\n")
            },
            hardlink("bin/sh2", "bin/sh"),
            symlink("bin/abs", "/etc/hello"),
            dir("var"),
            file("var/old", b"old"),
        ],
        Comp::Gzip,
    )
}

fn top_layer(marker: &str) -> Layer {
    let long = format!("var/{}{}", LONG_UTF8, "x".repeat(180));
    layer(
        &[
            dir("etc"),
            file("etc/.wh.gone", b""),
            dir("var"),
            file("var/.wh..wh..opq", b""),
            file(&long, marker.as_bytes()),
            file("marker", marker.as_bytes()),
        ],
        Comp::Zstd,
    )
}

fn layer_dirs(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn image_id(store: &Path, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(store, &["inspect", name])).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn load_query_tag_rmi() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = base_layer();
    let top = top_layer("one");
    let cfg = config(&[&base, &top], "2024-01-02T03:04:05Z");
    let arch = docker_archive(&[ArchImage {
        tags: vec!["example/app:1.0"],
        config: cfg.clone(),
        layers: vec![&base, &top],
    }]);
    let f = write(tmp.path(), "app.tar", &arch);
    let out = ok(&store, &["load", "-i", f.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: example/app:1.0");

    // The unpacked layers, whiteouts and opaque markers kept as files.
    let b = store.join("layers").join(&base.diff_id[7..]);
    let t = store.join("layers").join(&top.diff_id[7..]);
    assert_eq!(fs::read(b.join("etc/hello")).unwrap(), b"hello\n");
    assert_eq!(
        fs::read_link(b.join("bin/abs")).unwrap(),
        Path::new("/etc/hello")
    );
    let (m1, m2) = (
        fs::metadata(b.join("bin/sh")).unwrap(),
        fs::metadata(b.join("bin/sh2")).unwrap(),
    );
    assert_eq!(m1.ino(), m2.ino(), "hardlink kept");
    assert_eq!(m1.mode() & 0o7777, 0o755);
    assert_eq!(m1.mtime(), 1_700_000_000);
    assert_eq!(fs::metadata(t.join("etc/.wh.gone")).unwrap().len(), 0);
    assert!(t.join("var/.wh..wh..opq").is_file());
    let long = format!("var/{}{}", LONG_UTF8, "x".repeat(180));
    assert_eq!(fs::read(t.join(&long)).unwrap(), b"one");
    assert_eq!(layer_dirs(&store).len(), 2);
    assert!(
        fs::read_dir(store.join("tmp")).unwrap().next().is_none(),
        "tmp left empty"
    );

    // images, table and JSON.
    let id = format!("sha256:{}", sha(&cfg));
    let table = ok(&store, &["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{table}");
    assert!(
        lines[0].contains("IMAGE ID") && lines[0].contains("CREATED") && lines[0].ends_with("SIZE")
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], &["example/app", "1.0", &id[7..19]], "{table}");
    let j: serde_json::Value = serde_json::from_str(
        ok(&store, &["images", "--format", "json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(j["ID"], id);
    assert_eq!(j["Repository"], "example/app");
    assert_eq!(j["Tag"], "1.0");

    // inspect.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "example/app:1.0"])).unwrap();
    let v = &v[0];
    assert_eq!(v["Id"], id);
    assert_eq!(v["RepoTags"], serde_json::json!(["example/app:1.0"]));
    assert_eq!(
        v["RootFS"]["Layers"],
        serde_json::json!([base.diff_id, top.diff_id])
    );
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(v["History"].as_array().unwrap().len(), 3);
    assert!(v["Size"].as_u64().unwrap() > 0);
    // By ID prefix too.
    assert_eq!(image_id(&store, &id[7..19]), id);

    // history: newest first, the empty-layer entry sized 0B.
    let h = ok(&store, &["history", "example/app:1.0"]);
    let hl: Vec<&str> = h.lines().collect();
    assert!(
        hl[0].starts_with("IMAGE") && hl[0].contains("CREATED BY"),
        "{h}"
    );
    assert_eq!(hl.len(), 4, "{h}");
    assert!(
        hl[1].starts_with(&id[7..19]) && hl[1].contains("CMD [\"sh\"]") && hl[1].contains("0B"),
        "{h}"
    );
    assert!(
        hl[2].starts_with("<missing>") && hl[2].contains("RUN step 1"),
        "{h}"
    );

    // tag, then rmi of one tag only untags.
    ok(&store, &["tag", "example/app:1.0", "other:latest"]);
    assert_eq!(image_id(&store, "other"), id);
    let out = ok(&store, &["rmi", "example/app:1.0"]);
    assert_eq!(out.trim(), "Untagged: example/app:1.0");
    assert_eq!(layer_dirs(&store).len(), 2);
    assert!(
        !unionrs(&store, &["inspect", "example/app:1.0"])
            .status
            .success()
    );

    // rmi of the last tag deletes the image, its blobs and its layer dirs.
    let out = ok(&store, &["rmi", "other"]);
    assert!(
        out.contains("Untagged: other:latest") && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert!(layer_dirs(&store).is_empty());
    assert_eq!(fs::read_dir(store.join("blobs/sha256")).unwrap().count(), 0);
    assert_eq!(ok(&store, &["images"]).lines().count(), 1);
    let err = fails(&store, &["rmi", "nothere"]);
    assert!(err.contains("no such image"), "{err}");
}

#[test]
fn shared_base_layer_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = base_layer();
    let (t1, t2) = (top_layer("one"), top_layer("two"));
    let c1 = config(&[&base, &t1], "2024-01-02T03:04:05Z");
    let c2 = config(&[&base, &t2], "2024-02-02T03:04:05Z");
    // Two archives, loaded one after the other: the second reuses the base dir.
    let a1 = write(
        tmp.path(),
        "a1.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["a:1"],
            config: c1,
            layers: vec![&base, &t1],
        }]),
    );
    let a2 = write(
        tmp.path(),
        "a2.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["b:1"],
            config: c2,
            layers: vec![&base, &t2],
        }]),
    );
    ok(&store, &["load", "-i", a1.to_str().unwrap()]);
    let base_dir = store.join("layers").join(&base.diff_id[7..]);
    let ino = fs::metadata(base_dir.join("etc/hello")).unwrap().ino();
    ok(&store, &["load", "-i", a2.to_str().unwrap()]);
    assert_eq!(layer_dirs(&store).len(), 3, "base + two tops");
    assert_eq!(
        fs::metadata(base_dir.join("etc/hello")).unwrap().ino(),
        ino,
        "base not unpacked again"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "a:1", "b:1"])).unwrap();
    assert_eq!(v[0]["RootFS"]["Layers"][0], v[1]["RootFS"]["Layers"][0]);
    // Removing one image keeps the shared base.
    ok(&store, &["rmi", "a:1"]);
    assert!(base_dir.is_dir());
    assert!(!store.join("layers").join(&t1.diff_id[7..]).exists());
    assert_eq!(layer_dirs(&store).len(), 2);
    ok(&store, &["rmi", "b:1"]);
    assert!(layer_dirs(&store).is_empty());
}

#[test]
fn save_then_load_gives_the_same_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (s1, s2) = (tmp.path().join("s1"), tmp.path().join("s2"));
    let base = layer(&[dir("etc"), file("etc/os", b"x")], Comp::None);
    let top = top_layer("z");
    let cfg = config(&[&base, &top], "2024-01-02T03:04:05Z");
    let a = write(
        tmp.path(),
        "a.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["img:v1", "img:v2"],
            config: cfg,
            layers: vec![&base, &top],
        }]),
    );
    ok(&s1, &["load", "-i", a.to_str().unwrap()]);
    let id = image_id(&s1, "img:v1");
    let out = tmp.path().join("out.tar");
    ok(
        &s1,
        &["save", "-o", out.to_str().unwrap(), "img:v1", "img:v2"],
    );
    // Deterministic: saving again gives the same bytes.
    let out2 = tmp.path().join("out2.tar");
    ok(
        &s1,
        &["save", "-o", out2.to_str().unwrap(), "img:v1", "img:v2"],
    );
    assert_eq!(fs::read(&out).unwrap(), fs::read(&out2).unwrap());
    let loaded = ok(&s2, &["load", "-i", out.to_str().unwrap()]);
    assert!(
        loaded.contains("Loaded image: img:v1") && loaded.contains("Loaded image: img:v2"),
        "{loaded}"
    );
    assert_eq!(image_id(&s2, "img:v1"), id);
    assert_eq!(image_id(&s2, "img:v2"), id);
    let m = |s: &Path| {
        let v: serde_json::Value = serde_json::from_str(&ok(s, &["inspect", "img:v1"])).unwrap();
        v[0]["Manifest"]["Digest"].clone()
    };
    assert_eq!(m(&s1), m(&s2), "same manifest digest too");
    assert_eq!(snapshot(&s1.join("layers")), snapshot(&s2.join("layers")));
    // The saved archive is also an OCI layout: load it as one (no manifest.json).
    let oci = {
        let img = ArchImage {
            tags: vec![],
            config: config(&[&base], "2024-01-01T00:00:00Z"),
            layers: vec![&base],
        };
        oci_archive("oci/img:1", &img, None, None)
    };
    let f = write(tmp.path(), "oci.tar", &oci);
    let o = ok(&s2, &["load", "-i", f.to_str().unwrap()]);
    assert_eq!(o.trim(), "Loaded image: oci/img:1");
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    assert!(
        have("skopeo") && have("umoci"),
        "skopeo and umoci are not installed (scripts/setup.sh installs them)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = base_layer();
    let cfg = config(&[&base], "2024-01-02T03:04:05Z");
    let a = write(
        tmp.path(),
        "a.tar",
        &docker_archive(&[ArchImage {
            tags: vec!["library/thing:7"],
            config: cfg.clone(),
            layers: vec![&base],
        }]),
    );
    ok(&store, &["load", "-i", a.to_str().unwrap()]);
    ok(&store, &["tag", "library/thing:7", "thing:latest"]);
    let o = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:library/thing:7", store.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Layers"][0], format!("sha256:{}", sha(&base.blob)));
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci:{}:thing:latest", store.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo --config: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        sha(&o.stdout),
        sha(&cfg),
        "skopeo sees the config bytes as loaded"
    );
    let o = std::process::Command::new("umoci")
        .arg("ls")
        .arg("--layout")
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut tags: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    assert_eq!(tags, ["library/thing:7", "thing:latest"]);
    // And skopeo can copy out of it into a docker-archive that unionrs loads back.
    let out = tmp.path().join("copy.tar");
    let o = std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:thing:latest", store.display()))
        .arg(format!("docker-archive:{}:copied:1", out.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s2 = tmp.path().join("s2");
    ok(&s2, &["load", "-i", out.to_str().unwrap()]);
    assert_eq!(image_id(&s2, "copied:1"), format!("sha256:{}", sha(&cfg)));
}

// docker's --format Go templates on images, inspect, history and ps, beside --format json.
#[test]
fn format_templates_as_docker_writes_them() {
    assert!(can_mount(), "needs root, /dev/fuse and fusermount3");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _unmount = UnmountUnder(store.clone());
    let v: serde_json::Value = serde_json::from_str(&ok(&store, &["inspect", "bb:1"])).unwrap();
    let id = v[0]["Id"].as_str().unwrap().to_string();

    let line = ok(
        &store,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    assert_eq!(line, format!("bb:1 {}\n", &id[7..19]));
    let line = ok(
        &store,
        &["images", "--no-trunc", "--format", "{{.ID}}|{{json .Tag}}"],
    );
    assert_eq!(line, format!("{id}|\"1\"\n"));
    let table = ok(
        &store,
        &[
            "images",
            "--format",
            "table {{.Repository}}\\t{{.ID}}\\t{{.Size}}",
        ],
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("REPOSITORY   IMAGE ID       SIZE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&format!("bb           {}   ", &id[7..19])),
        "{table}"
    );

    assert_eq!(
        ok(&store, &["inspect", "--format", "{{.Id}}", "bb:1"]),
        format!("{id}\n")
    );
    assert_eq!(
        ok(
            &store,
            &[
                "inspect",
                "-f",
                "{{json .Config.Env}} {{.Config.Env}}",
                "bb:1"
            ]
        ),
        "[\"PATH=/bin\"] [PATH=/bin]\n"
    );
    let whole: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "--format", "{{json .}}", "bb:1"])).unwrap();
    assert_eq!(whole, v[0]);

    let h = ok(
        &store,
        &["history", "--format", "{{.ID}} {{.SizeBytes}}", "bb:1"],
    );
    assert!(h.starts_with(&format!("{} ", &id[7..19])), "{h}");
    assert_eq!(
        ok(&store, &["history", "--format", "table {{.ID}}", "bb:1"])
            .lines()
            .next(),
        Some("IMAGE")
    );

    ok(&store, &["create", "--name", "fmt1", "bb:1"]);
    // ps lists running containers; -a all (a created one is docker's "created").
    assert_eq!(ok(&store, &["ps", "--format", "{{.Names}}"]), "");
    let line = ok(
        &store,
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Image}} {{.State}} {{.Mounted}}",
        ],
    );
    assert_eq!(line, "fmt1 bb:1 created true\n");
    let table = ok(
        &store,
        &["ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}"],
    );
    assert_eq!(table.lines().next(), Some("CONTAINER ID   NAMES"));
    let j: serde_json::Value =
        serde_json::from_str(&ok(&store, &["ps", "-a", "--format", "json"])).unwrap();
    assert_eq!(j["Name"], "fmt1");
    assert_eq!(j["ID"].as_str().map(str::len), Some(12));
    ok(&store, &["rm", "fmt1"]);

    // A field that is not there fails (exit 1); a template that does not parse is a usage
    // error (exit 2, two lines).
    let o = unionrs(&store, &["images", "--format", "{{.Nope}}"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("can't evaluate field Nope"));
    let o = unionrs(&store, &["images", "--format", "{{.ID"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 2);
}

/// A command that finds the store in use for more than a second waits for it and says so on
/// stderr (one line), then runs once the holder lets go.
#[test]
fn a_command_waiting_for_the_store_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    assert!(unionrs(&store, &["images"]).status.success());
    let holder = fs::OpenOptions::new()
        .write(true)
        .open(store.join("lock"))
        .unwrap();
    holder.lock().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(&store)
        .arg("images")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1600));
    holder.unlock().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("unionrs: waiting for the store ") && e.contains("another unionrs command"),
        "{e}"
    );
}
