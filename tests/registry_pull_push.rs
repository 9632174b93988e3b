//! Pull and push against a real registry (Debian's `docker-registry`, started per test on
//! 127.0.0.1), with skopeo on the other side: we pull what skopeo pushed, skopeo reads
//! what we pushed, and what we push comes back identical.

mod common;
mod image_util;
mod registry_util;

use common::noise;
use image_util::{
    ArchImage, Comp, config, dir, docker_archive, fails, file, layer, ok, unionrs, write,
};
use registry_util::{LayoutImage, Registry, sha, skopeo_inspect, skopeo_push, write_layout};
use std::path::Path;

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn stderr_of(store: &Path, args: &[&str]) -> (String, String) {
    let o = unionrs(store, args);
    assert!(
        o.status.success(),
        "unionrs {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

#[test]
fn pull_what_skopeo_pushed_with_whiteouts_and_repull_downloads_nothing() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let base = layer(
        &[
            dir("etc/"),
            file("etc/a", b"A"),
            file("etc/b", b"B"),
            dir("opt/"),
            file("opt/x", b"x"),
        ],
        Comp::Gzip,
    );
    let mid = layer(
        &[
            dir("etc/"),
            file("etc/.wh.a", b""),
            dir("opt/"),
            file("opt/.wh..wh..opq", b""),
            file("opt/y", b"y"),
        ],
        Comp::Gzip,
    );
    let top = layer(&[file("new", &noise(200_000, 7))], Comp::Gzip);
    let cfg = config(&[&base, &mid, &top], "2024-01-01T00:00:00Z");
    let lay = tmp.path().join("layout");
    let mdig = write_layout(
        &lay,
        "v1",
        &[LayoutImage {
            config: cfg.clone(),
            layers: vec![
                (base.blob.clone(), GZ),
                (mid.blob.clone(), GZ),
                (top.blob.clone(), GZ),
            ],
            platform: None,
        }],
    );
    let name = format!("{}/multi:v1", reg.addr);
    skopeo_push(&lay, "v1", &name, false);

    let store = tmp.path().join("store");
    let (out, err) = stderr_of(&store, &["pull", &name]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&cfg)));
    assert!(err.contains("3 layers, 3 downloaded"), "{err}");
    assert!(err.contains(&mdig), "{err}");
    let ldir = |l: &image_util::Layer| store.join("layers").join(&l.diff_id[7..]);
    assert_eq!(std::fs::read(ldir(&base).join("etc/a")).unwrap(), b"A");
    // Whiteouts are kept in their tar form, which the union reads natively.
    assert!(ldir(&mid).join("etc/.wh.a").exists());
    assert!(ldir(&mid).join("opt/.wh..wh..opq").exists());
    assert_eq!(
        std::fs::read(ldir(&top).join("new")).unwrap(),
        noise(200_000, 7)
    );
    assert!(ok(&store, &["images"]).contains(&format!("{}/multi", reg.addr)));
    // The blobs are in the store's OCI layout, byte for byte.
    for b in [&base.blob, &mid.blob, &top.blob, &cfg] {
        let p = store.join("blobs/sha256").join(sha(b));
        assert_eq!(&std::fs::read(p).unwrap(), b);
    }

    // Again: nothing is downloaded; by digest: the same image, nothing downloaded.
    let (_, err) = stderr_of(&store, &["pull", &name]);
    assert!(err.contains("3 layers, 0 downloaded"), "{err}");
    let by_digest = format!("{}/multi@{mdig}", reg.addr);
    let (out, err) = stderr_of(&store, &["pull", &by_digest]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&cfg)));
    assert!(err.contains("0 downloaded"), "{err}");

    // A layer dir that went missing comes back from the store's blob, not the network.
    let t = store.join("layers").join(&top.diff_id[7..]);
    std::fs::rename(&t, tmp.path().join("gone")).unwrap();
    let (_, err) = stderr_of(&store, &["pull", &name]);
    assert!(err.contains("0 downloaded"), "{err}");
    assert!(t.join("new").exists());

    // Errors of a real registry: an unknown tag is one clear line.
    let e = fails(&store, &["pull", &format!("{}/multi:nope", reg.addr)]);
    assert!(e.contains("404") && e.contains("MANIFEST_UNKNOWN"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn push_then_skopeo_reads_it_and_pull_gives_back_the_same_image() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let l1 = layer(
        &[dir("bin/"), file("bin/tool", &noise(300_000, 3))],
        Comp::Zstd,
    );
    let l2 = layer(&[dir("etc/"), file("etc/conf", b"k=v\n")], Comp::None);
    let l3 = layer(&[dir("etc/"), file("etc/.wh.conf", b"")], Comp::Gzip);
    let cfg = config(&[&l1, &l2, &l3], "2024-02-02T00:00:00Z");
    let arch = docker_archive(&[ArchImage {
        tags: vec!["mine:1"],
        config: cfg.clone(),
        layers: vec![&l1, &l2, &l3],
    }]);
    let a = tmp.path().join("a");
    let f = write(tmp.path(), "a.tar", &arch);
    ok(&a, &["load", "-q", "-i", f.to_str().unwrap()]);

    let dest = format!("{}/team/mine:1", reg.addr);
    let (out, err) = stderr_of(&a, &["push", "mine:1", &dest]);
    let mdig = out.trim().to_string();
    assert!(err.contains("4 blobs pushed"), "{err}");
    // skopeo reads what we pushed: the same manifest bytes, the same layers.
    let raw = skopeo_inspect(&dest, true);
    assert_eq!(format!("sha256:{}", sha(&raw)), mdig);
    let info: serde_json::Value = serde_json::from_slice(&skopeo_inspect(&dest, false)).unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(info["Digest"].as_str().unwrap(), mdig);

    // Pulled back into another store: the same image ID, manifest and layer contents.
    let b = tmp.path().join("b");
    let (out, _) = stderr_of(&b, &["pull", &dest]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&cfg)));
    let ia: serde_json::Value = serde_json::from_str(&ok(&a, &["inspect", "mine:1"])).unwrap();
    let ib: serde_json::Value = serde_json::from_str(&ok(&b, &["inspect", &dest])).unwrap();
    assert_eq!(ia[0]["Id"], ib[0]["Id"]);
    let snap = |s: &Path| image_util::snapshot(&s.join("layers"));
    assert_eq!(snap(&a), snap(&b));
    assert!(
        ok(&b, &["inspect", &dest]).contains(&mdig),
        "repo digest kept"
    );

    // Pushing again uploads nothing; to another repository it mounts.
    let (_, err) = stderr_of(&a, &["push", "mine:1", &dest]);
    assert!(
        err.contains("0 blobs pushed") && err.contains("4 already there"),
        "{err}"
    );
    let other = format!("{}/other/copy:2", reg.addr);
    let (out, err) = stderr_of(&a, &["push", "mine:1", &other]);
    assert_eq!(out.trim(), mdig);
    assert!(err.contains("4 mounted"), "{err}");
    assert_eq!(
        format!("sha256:{}", sha(&skopeo_inspect(&other, true))),
        mdig
    );

    // Chunked upload to a second registry, then skopeo reads it there too.
    let reg2 = Registry::start();
    let dest2 = format!("{}/chunked:1", reg2.addr);
    let (_, err) = stderr_of(&a, &["push", "--chunk-size", "65536", "mine:1", &dest2]);
    assert!(err.contains("4 blobs pushed"), "{err}");
    assert_eq!(
        format!("sha256:{}", sha(&skopeo_inspect(&dest2, true))),
        mdig
    );
    let c = tmp.path().join("c");
    let (out, _) = stderr_of(&c, &["pull", &dest2]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&cfg)));

    // A push of an image the store lacks, or to a bad reference, is one clear line.
    let e = fails(&a, &["push", "nosuch:1", &dest]);
    assert!(e.contains("no such image"), "{e}");
    let e = fails(&a, &["push", "mine:1", "Bad/Name"]);
    assert!(e.contains("lower-case"), "{e}");
}

#[test]
fn manifest_list_platform_selection() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let amd = layer(&[file("arch", b"amd64")], Comp::Gzip);
    let arm = layer(&[file("arch", b"arm64")], Comp::Gzip);
    let camd = config(&[&amd], "2024-03-03T00:00:00Z");
    let carm = config(&[&arm], "2024-04-04T00:00:00Z");
    let lay = tmp.path().join("layout");
    write_layout(
        &lay,
        "multi",
        &[
            LayoutImage {
                config: camd.clone(),
                layers: vec![(amd.blob.clone(), GZ)],
                platform: Some(("linux", "amd64")),
            },
            LayoutImage {
                config: carm.clone(),
                layers: vec![(arm.blob.clone(), GZ)],
                platform: Some(("linux", "arm64")),
            },
        ],
    );
    let name = format!("{}/plat:multi", reg.addr);
    skopeo_push(&lay, "multi", &name, true);
    let raw: serde_json::Value = serde_json::from_slice(&skopeo_inspect(&name, true)).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);

    let s1 = tmp.path().join("s1");
    let (out, _) = stderr_of(&s1, &["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&camd)));
    if std::env::consts::ARCH == "x86_64" {
        // This machine's platform is the default.
        let (out, _) = stderr_of(&tmp.path().join("s0"), &["pull", &name]);
        assert_eq!(out.trim(), format!("sha256:{}", sha(&camd)));
    }
    let s2 = tmp.path().join("s2");
    let (out, _) = stderr_of(&s2, &["pull", "--platform=linux/arm64", &name]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&carm)));
    let arch = s2.join("layers").join(&arm.diff_id[7..]).join("arch");
    assert_eq!(std::fs::read(arch).unwrap(), b"arm64");
    let e = fails(&s2, &["pull", "--platform", "linux/s390x", &name]);
    assert!(e.contains("linux/amd64, linux/arm64"), "{e}");
    let e = fails(&s2, &["pull", "--platform", "linux", &name]);
    assert!(e.contains("OS/ARCH"), "{e}");
}
