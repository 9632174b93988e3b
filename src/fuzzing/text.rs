//! Targets on one-line text: `image_reference` (local and remote image references, digests,
//! platforms, registry auth challenges) and `mount_options` (the mount argv, then the
//! directory checks of the mount inside a sandbox).

use super::{Scratch, assert_one_line};
use crate::cli::options::{MAX_LOWERDIRS, parse_mount_argv};
use crate::cli::validate::validate;
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::registry::auth::{base64_decode, base64_encode, parse_challenge};
use crate::image::registry::pull::Platform;
use crate::image::registry::reference::RemoteRef;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

/// Parses the input as every kind of reference unionrs reads; what parses must print back
/// to something that parses to the same value.
pub fn image_reference(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    match Reference::parse(s) {
        Ok(r) => {
            let again = Reference::parse(&r.to_string())
                .unwrap_or_else(|e| panic!("{r} (from {s:?}) does not parse back: {e}"));
            assert_eq!(r, again, "reference {s:?} does not round-trip");
            assert!(!r.name.is_empty() && r.name.len() <= 255, "{r:?}");
        }
        Err(e) => assert_one_line("Reference::parse", &e),
    }
    match RemoteRef::parse(s) {
        Ok(r) => {
            let again = RemoteRef::parse(&r.to_string())
                .unwrap_or_else(|e| panic!("{r} (from {s:?}) does not parse back: {e}"));
            assert_eq!(r, again, "remote reference {s:?} does not round-trip");
            if r.tag.is_some() {
                assert!(
                    r.local().is_some(),
                    "{s:?}: a tagged remote ref has a local name"
                );
            }
            let _ = (r.api_host(), r.is_loopback(), r.manifest_ref());
        }
        Err(e) => assert_one_line("RemoteRef::parse", &e),
    }
    match Digest::parse(s) {
        Ok(d) => assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()), "{s:?}"),
        Err(e) => assert_one_line("Digest::parse", &e),
    }
    match Platform::parse(s) {
        Ok(p) => assert_eq!(Platform::parse(&p.to_string()), Ok(p.clone()), "{s:?}"),
        Err(e) => assert_one_line("Platform::parse", &e),
    }
    let _ = parse_challenge(s);
    if let Some(bytes) = base64_decode(s) {
        assert_eq!(
            base64_decode(&base64_encode(&bytes)).as_deref(),
            Some(&bytes[..]),
            "base64 of {s:?} does not round-trip"
        );
    }
}

/// NUL-separated argv for the mount command. What parses is then validated against a
/// sandbox of real directories (relative paths are taken inside it; a mount naming paths
/// elsewhere is not validated, so the fuzzer never probes the machine's own directories).
pub fn mount_options(data: &[u8]) {
    let argv: Vec<OsString> = data
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let mut args = match parse_mount_argv(&argv) {
        Ok(a) => a,
        Err(e) => return assert_one_line("parse_mount_argv", &e.to_string()),
    };
    assert!(args.opts.lowerdirs.len() <= MAX_LOWERDIRS);
    let sandbox = Scratch::new();
    let root = sandbox.path();
    for d in ["l1", "l2", "u", "w", "m", "u/in"] {
        fs::create_dir(root.join(d)).expect("sandbox dir");
    }
    fs::write(root.join("f"), b"").expect("sandbox file");
    symlink("l1", root.join("s")).expect("sandbox symlink");
    let o = &mut args.opts;
    let mut paths: Vec<&mut PathBuf> = o.lowerdirs.iter_mut().collect();
    paths.extend(o.upperdir.as_mut());
    paths.extend(o.workdir.as_mut());
    paths.push(&mut args.mountpoint);
    for p in paths {
        match inside(root, p) {
            Some(q) => *p = q,
            None => return,
        }
    }
    match validate(args) {
        Ok(v) => {
            let o = &v.args.opts;
            let all = o.lowerdirs.iter().chain(&o.upperdir).chain(&o.workdir);
            for p in all.chain([&v.args.mountpoint]) {
                assert!(p.starts_with(root), "validated path {p:?} left the sandbox");
                assert!(p.is_dir(), "validated path {p:?} is not a directory");
            }
        }
        Err(e) => assert_one_line("validate", &e.to_string()),
    }
}

/// `p` taken inside `root`, if it is a plain relative path (no `..`, no symlink out).
fn inside(root: &Path, p: &Path) -> Option<PathBuf> {
    let plain = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    plain.then(|| root.join(p))
}
