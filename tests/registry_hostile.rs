//! Registry answers a real registry never gives (served by a tiny HTTP server on
//! 127.0.0.1 in the test): a wrong digest, a truncated blob, a huge or malformed manifest,
//! error statuses. Each is refused with one clear line and the store left as it was.
//! Also the bearer-token flow (401 -> token -> retry) and an interrupted pull.

mod image_util;
mod registry_util;

use image_util::{Comp, config, fails, file, layer, ok, snapshot, unionrs};
use registry_util::{Canned, TinyServer, sha};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const MT_M: &str = "application/vnd.oci.image.manifest.v1+json";

struct Img {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn image(seed: &str) -> Img {
    let mut data = Vec::new();
    let mut x: u32 = 12345 + seed.len() as u32;
    for _ in 0..400_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push((x >> 16) as u8);
    }
    let l = layer(
        &[file("data", &data), file("seed", seed.as_bytes())],
        Comp::Gzip,
    );
    let cfg = config(&[&l], "2024-05-05T00:00:00Z");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MT_M,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha(&cfg)), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{}", sha(&l.blob)), "size": l.blob.len()}],
    }))
    .unwrap();
    Img {
        manifest,
        config: cfg,
        layer: l.blob,
    }
}

fn routes(img: &Img) -> HashMap<String, Canned> {
    let mut r = HashMap::new();
    r.insert(
        "/v2/h/manifests/t".to_string(),
        Canned::ok(img.manifest.clone(), MT_M),
    );
    r.insert(
        format!("/v2/h/blobs/sha256:{}", sha(&img.config)),
        Canned::ok(img.config.clone(), "application/octet-stream"),
    );
    r.insert(
        format!("/v2/h/blobs/sha256:{}", sha(&img.layer)),
        Canned::ok(img.layer.clone(), "application/octet-stream"),
    );
    r
}

/// The store as it is now, minus its lock and its staging dir.
fn state(store: &Path) -> Vec<(String, String)> {
    snapshot(store)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("tmp/"))
        .collect()
}

fn refused(store: &Path, routes: HashMap<String, Canned>, want: &[&str]) {
    let before = state(store);
    let srv = TinyServer::start(routes, None);
    let e = fails(store, &["pull", &format!("{}/h:t", srv.addr)]);
    for w in want {
        assert!(e.contains(w), "expected {w:?} in: {e}");
    }
    eprintln!("refused: {}", e.trim());
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert_eq!(state(store), before, "store changed after: {e}");
    assert!(
        std::fs::read_dir(store.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp left behind after: {e}"
    );
}

#[test]
fn hostile_answers_are_refused_and_the_store_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(&store, &["images"]);
    let img = image("a");
    let layer_path = format!("/v2/h/blobs/sha256:{}", sha(&img.layer));
    let cfg_path = format!("/v2/h/blobs/sha256:{}", sha(&img.config));

    // A layer blob whose content is not the digest asked for (same size).
    let mut r = routes(&img);
    let mut other = image("b").layer;
    other.resize(img.layer.len(), 0);
    r.get_mut(&layer_path).unwrap().body = other;
    refused(&store, r, &["digest mismatch", &sha(&img.layer)]);

    // A truncated layer: the connection closes half way.
    let mut r = routes(&img);
    r.get_mut(&layer_path).unwrap().cut_at = Some(img.layer.len() / 2);
    refused(&store, r, &["truncated"]);

    // A layer longer than its descriptor says.
    let mut r = routes(&img);
    let mut longer = img.layer.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    r.get_mut(&layer_path).unwrap().body = longer;
    refused(&store, r, &["bytes"]);

    // A config with another digest.
    let mut r = routes(&img);
    r.get_mut(&cfg_path).unwrap().body = image("c").config;
    refused(&store, r, &["digest mismatch"]);

    // A huge manifest (5 MiB).
    let mut r = routes(&img);
    let mut huge = b"{\"schemaVersion\":2,\"x\":\"".to_vec();
    huge.resize(5 << 20, b'a');
    huge.extend_from_slice(b"\"}");
    r.get_mut("/v2/h/manifests/t").unwrap().body = huge;
    refused(&store, r, &["4194304"]);

    // A malformed manifest.
    let mut r = routes(&img);
    r.get_mut("/v2/h/manifests/t").unwrap().body = b"{\"schemaVersion\": 2, \"layers\": [".to_vec();
    refused(&store, r, &["malformed"]);

    // A manifest whose Docker-Content-Digest is not its content's.
    let mut r = routes(&img);
    r.get_mut("/v2/h/manifests/t").unwrap().headers.push((
        "Docker-Content-Digest".into(),
        format!("sha256:{}", "0".repeat(64)),
    ));
    refused(&store, r, &["digest mismatch"]);

    // A config whose diff ID does not match the layer.
    let mut r = routes(&img);
    let mut v: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    v["rootfs"]["diff_ids"][0] = serde_json::json!(format!("sha256:{}", "1".repeat(64)));
    let bad_cfg = serde_json::to_vec(&v).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    m["config"]["digest"] = serde_json::json!(format!("sha256:{}", sha(&bad_cfg)));
    m["config"]["size"] = serde_json::json!(bad_cfg.len());
    r.get_mut("/v2/h/manifests/t").unwrap().body = serde_json::to_vec(&m).unwrap();
    r.insert(
        format!("/v2/h/blobs/sha256:{}", sha(&bad_cfg)),
        Canned::ok(bad_cfg, "application/octet-stream"),
    );
    refused(&store, r, &["diff ID mismatch"]);

    // Error statuses.
    let mut r = routes(&img);
    r.get_mut("/v2/h/manifests/t").unwrap().status = 500;
    refused(&store, r, &["500"]);
    let mut r = routes(&img);
    r.get_mut(&layer_path).unwrap().status = 503;
    refused(&store, r, &["503"]);
    refused(&store, HashMap::new(), &["404", "NOT_FOUND"]);

    // Then a good answer works on the same store.
    let srv = TinyServer::start(routes(&img), None);
    let out = ok(&store, &["pull", &format!("{}/h:t", srv.addr)]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&img.config)));
}

#[test]
fn bearer_token_challenge_then_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let img = image("tok");
    let srv = TinyServer::start(routes(&img), Some("s3cret"));
    let out = ok(&store, &["pull", &format!("{}/h:t", srv.addr)]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&img.config)));
    let reqs = srv.requests.lock().unwrap().clone();
    assert!(
        reqs.iter().any(|r| r.starts_with("GET /token?")
            && r.contains("service=tiny")
            && r.contains("scope=repository")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /v2/h/manifests/t") && r.ends_with("auth=false")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /v2/h/manifests/t") && r.ends_with("auth=true")),
        "{reqs:?}"
    );
}

#[test]
fn interrupted_pull_leaves_nothing_visible_and_a_retry_works() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(&store, &["images"]);
    let before = state(&store);
    let img = image("int");
    let layer_path = format!("/v2/h/blobs/sha256:{}", sha(&img.layer));
    let mut r = routes(&img);
    r.get_mut(&layer_path).unwrap().stall_at = Some(img.layer.len() / 2);
    let srv = TinyServer::start(r, None);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(&store)
        .args(["pull", &format!("{}/h:t", srv.addr)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !srv.sent.lock().unwrap().contains_key(&layer_path) {
        assert!(t0.elapsed() < Duration::from_secs(20), "pull never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // Half a layer is in STORE/tmp at most; nothing is visible.
    assert_eq!(state(&store), before);
    drop(srv);
    let good = TinyServer::start(routes(&img), None);
    let out = ok(&store, &["pull", &format!("{}/h:t", good.addr)]);
    assert_eq!(out.trim(), format!("sha256:{}", sha(&img.config)));
    assert!(
        std::fs::read_dir(store.join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    let o = unionrs(&store, &["images"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("/h"));
}
