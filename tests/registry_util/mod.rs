//! Helpers for the registry tests: a real `docker-registry` on 127.0.0.1 (a free port,
//! storage in a temp dir, no auth; killed on drop), OCI layout directories for skopeo to
//! push, and a tiny HTTP server for answers a real registry never gives.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` child on 127.0.0.1.
pub struct Registry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with_htpasswd(None)
    }

    /// With `htpasswd` (lines `USER:BCRYPT-HASH`): Basic auth for every request.
    pub fn start_with_htpasswd(htpasswd: Option<&str>) -> Registry {
        assert!(
            super::image_util::have("docker-registry"),
            "docker-registry is not installed (scripts/setup.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        let auth = match htpasswd {
            Some(lines) => {
                let f = dir.path().join("htpasswd");
                std::fs::write(&f, lines).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: unionrs-test\n    path: {}\n",
                    f.display()
                )
            }
            None => String::new(),
        };
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let r = Registry {
            child,
            addr,
            _dir: dir,
        };
        let t0 = Instant::now();
        let up = if htpasswd.is_some() { 401 } else { 200 };
        while http_get_status(&r.addr, "/v2/") != Some(up) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "docker-registry did not answer /v2/ on {}",
                r.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a plain GET, None when nothing answers.
pub fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One image for a layout: config, layers (blob, media type), and platform.
pub struct LayoutImage {
    pub config: Vec<u8>,
    pub layers: Vec<(Vec<u8>, &'static str)>,
    pub platform: Option<(&'static str, &'static str)>,
}

pub fn sha(d: &[u8]) -> String {
    super::image_util::sha(d)
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let d = sha(data);
    std::fs::write(dir.join("blobs/sha256").join(&d), data).unwrap();
    format!("sha256:{d}")
}

/// The manifest bytes of `img` (its blobs written into the layout at `dir`).
pub fn write_manifest(dir: &Path, img: &LayoutImage) -> Vec<u8> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let cd = put_blob(dir, &img.config);
    let layers: Vec<serde_json::Value> = img
        .layers
        .iter()
        .map(|(b, mt)| serde_json::json!({"mediaType": mt, "digest": put_blob(dir, b), "size": b.len()}))
        .collect();
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": img.config.len()},
        "layers": layers,
    }))
    .unwrap();
    put_blob(dir, &m);
    m
}

/// An OCI layout directory at `dir` with `tag` pointing at one image, or at an image
/// index of several (each with its platform).
pub fn write_layout(dir: &Path, tag: &str, images: &[LayoutImage]) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let descs: Vec<serde_json::Value> = images
        .iter()
        .map(|img| {
            let m = write_manifest(dir, img);
            let mut d = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", sha(&m)), "size": m.len()});
            if let Some((os, arch)) = img.platform {
                d["platform"] = serde_json::json!({"os": os, "architecture": arch});
            }
            d
        })
        .collect();
    let top = if descs.len() == 1 {
        descs[0].clone()
    } else {
        let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs}))
        .unwrap();
        let d = put_blob(dir, &idx);
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": idx.len()})
    };
    let mut top = top;
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
    top["digest"].as_str().unwrap().to_string()
}

/// `skopeo copy [--all] oci:DIR:TAG docker://DEST`.
pub fn skopeo_push(dir: &Path, tag: &str, dest: &str, all: bool) {
    let mut c = Command::new("skopeo");
    c.arg("copy").arg("--dest-tls-verify=false");
    if all {
        c.arg("--all");
    }
    let o = c
        .arg(format!("oci:{}:{tag}", dir.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        o.status.success(),
        "skopeo copy to {dest} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `skopeo inspect [--raw]` of a registry image.
pub fn skopeo_inspect(dest: &str, raw: bool) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.arg("inspect").arg("--tls-verify=false");
    if raw {
        c.arg("--raw");
    }
    let o = c
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        o.status.success(),
        "skopeo inspect {dest} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// What the tiny server answers for a path.
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes (with the full Content-Length), then close.
    pub cut_at: Option<usize>,
    /// Send this many body bytes, then hang until the server is dropped.
    pub stall_at: Option<usize>,
}

impl Canned {
    pub fn ok(body: Vec<u8>, content_type: &str) -> Canned {
        Canned {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            cut_at: None,
            stall_at: None,
        }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering GETs from a path -> answer table; one
/// connection at a time per thread, `Connection: close`. With `bearer`, every path but
/// /token needs `Authorization: Bearer TOKEN` and /token hands out TOKEN.
pub struct TinyServer {
    pub addr: String,
    stop: Arc<AtomicBool>,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub sent: Arc<Mutex<HashMap<String, usize>>>,
}

impl TinyServer {
    pub fn start(routes: HashMap<String, Canned>, bearer: Option<&str>) -> TinyServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(HashMap::new()));
        let routes = Arc::new(routes);
        let token = bearer.map(str::to_string);
        let (st, rq, se, a) = (stop.clone(), requests.clone(), sent.clone(), addr.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !st.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (routes, token, st, rq, se, a) = (
                            routes.clone(),
                            token.clone(),
                            st.clone(),
                            rq.clone(),
                            se.clone(),
                            a.clone(),
                        );
                        std::thread::spawn(move || {
                            serve(s, &routes, token.as_deref(), &st, &rq, &se, &a)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TinyServer {
            addr,
            stop,
            requests,
            sent,
        }
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    s: TcpStream,
    routes: &HashMap<String, Canned>,
    token: Option<&str>,
    stop: &AtomicBool,
    requests: &Mutex<Vec<String>>,
    sent: &Mutex<HashMap<String, usize>>,
    addr: &str,
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut auth = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    requests
        .lock()
        .unwrap()
        .push(format!("{method} {target} auth={}", auth.is_some()));
    let answer = |w: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8]| {
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = w.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = w.write_all(body);
        }
    };
    if let Some(tok) = token {
        if path == "/token" {
            let body = format!("{{\"token\":\"{tok}\"}}");
            answer(&mut w, 200, &[], body.as_bytes());
            return;
        }
        if auth.as_deref() != Some(&format!("Bearer {tok}")) {
            let ch = format!(
                "Bearer realm=\"http://{addr}/token\",service=\"tiny\",scope=\"repository:x:pull\""
            );
            answer(&mut w, 401, &[("WWW-Authenticate".into(), ch)], b"{}");
            return;
        }
    }
    let Some(c) = routes.get(&path) else {
        answer(
            &mut w,
            404,
            &[],
            br#"{"errors":[{"code":"NOT_FOUND","message":"no such thing"}]}"#,
        );
        return;
    };
    let limit = c.cut_at.or(c.stall_at).unwrap_or(c.body.len());
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        c.status,
        c.body.len()
    );
    for (k, v) in &c.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = w.write_all(head.as_bytes());
    if method == "HEAD" {
        return;
    }
    let _ = w.write_all(&c.body[..limit]);
    let _ = w.flush();
    sent.lock().unwrap().insert(path.clone(), limit);
    if c.stall_at.is_some() {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
