//! Rootless mounts, as a real unprivileged user (`tests`, created if missing): through
//! fusermount3, and inside a user namespace (`unshare -Ur`). Lowers are owned by root; the
//! upper gets the marker forms an unprivileged user may create (`.wh.NAME` files,
//! `user.overlay.opaque`).

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const USER: &str = "tests";

fn ensure_user() {
    let known = Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    if !known {
        let st = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", USER])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {USER} failed");
    }
}

/// Runs `script` as the unprivileged user with `sh -ec`; panics with its output on failure.
fn as_user(script: &str) -> String {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            USER,
            "--regid",
            USER,
            "--clear-groups",
            "--reset-env",
        ])
        .args(["sh", "-ec", script])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "as {USER}: {script}\n{text}");
    text
}

/// A layer stack in a directory the user can write: upper/work/mnt owned by the user, the
/// lower by root or, with `user_lower`, by the user too.
fn stack(user_lower: bool) -> (tempfile::TempDir, String) {
    let d = tempfile::Builder::new()
        .prefix("unionrs-rootless-")
        .tempdir()
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let p = d.path();
    for sub in ["l", "u", "w", "m"] {
        fs::create_dir(p.join(sub)).unwrap();
    }
    fs::write(p.join("l/f"), "lower\n").unwrap();
    fs::set_permissions(p.join("l/f"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::write(p.join("l/gone"), "x").unwrap();
    fs::create_dir(p.join("l/d")).unwrap();
    fs::set_permissions(p.join("l/d"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(p.join("l/d/inner"), "x").unwrap();
    let mut mine = vec!["u", "w", "m"];
    if user_lower {
        mine.push("l");
    }
    let status = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .args(&mine)
        .current_dir(p)
        .status()
        .unwrap();
    assert!(status.success());
    let dir = p.to_str().unwrap().to_string();
    (d, dir)
}

fn check_upper(dir: &str) {
    let p = Path::new(dir);
    let f = fs::metadata(p.join("u/f")).expect("f copied up");
    assert_eq!(fs::read_to_string(p.join("u/f")).unwrap(), "lower\nmore\n");
    assert_ne!(f.uid(), 0, "the copy belongs to the mounting user");
    assert_eq!(
        fs::read_to_string(p.join("l/f")).unwrap(),
        "lower\n",
        "lower untouched"
    );
    // The whiteout is a form an unprivileged user can create and unionrs reads back.
    let wh = p.join("u/.wh.gone");
    let dev = p.join("u/gone");
    assert!(wh.exists() || dev.exists(), "a whiteout for gone");
    let opaque = Command::new("getfattr")
        .args(["--only-values", "-n", "user.overlay.opaque"])
        .arg(p.join("u/d"))
        .output()
        .unwrap();
    assert_eq!(
        opaque.stdout, b"y",
        "recreated dir is opaque (user.overlay.opaque)"
    );
}

const WORKLOAD: &str = "echo more >> m/f; rm m/gone; rm m/d/inner; rmdir m/d; mkdir m/d; \
     test \"$(cat m/f)\" = \"$(printf 'lower\\nmore')\"; test ! -e m/gone; test -z \"$(ls m/d)\"";

/// Grants the unprivileged user /dev/fuse (0600 on this machine kind: fusermount3 opens it
/// with the caller's rights) until dropped, then restores the mode.
struct FuseAccess(u32);

impl FuseAccess {
    fn grant() -> FuseAccess {
        let before = fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o777;
        fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
        FuseAccess(before)
    }
}

impl Drop for FuseAccess {
    fn drop(&mut self) {
        let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(self.0));
    }
}

#[test]
fn rootless_through_fusermount3() {
    let _s = serial();
    ensure_user();
    let _fuse = FuseAccess::grant();
    let (_keep, dir) = stack(false);
    let bin = unionrs_bin();
    let script = format!(
        "cd {dir}; {bin} -o lowerdir=l,upperdir=u,workdir=w m; \
         grep -q \" $PWD/m fuse.unionrs \" /proc/mounts; {WORKLOAD}; fusermount3 -u m",
        bin = bin.display()
    );
    let out = as_user(&script);
    check_upper(&dir);
    // Remount: the user-format markers are read back.
    let again = format!(
        "cd {dir}; {bin} -o lowerdir=l,upperdir=u,workdir=w m; \
         test ! -e m/gone; test -z \"$(ls m/d)\"; test \"$(tail -1 m/f)\" = more; fusermount3 -u m",
        bin = bin.display()
    );
    as_user(&again);
    let _ = out;
}

#[test]
fn rootless_in_a_user_namespace() {
    let _s = serial();
    ensure_user();
    let (_keep, dir) = stack(true);
    // Inside `unshare -Ur` the user is root of its namespace and opens /dev/fuse itself. The
    // lower belongs to the user: files of ids unmapped in the namespace (host root) cannot be
    // written there at all (the VFS refuses, with kernel overlayfs too), as in rootless
    // podman, whose layers are owned by the user's mapped range.
    let _fuse = FuseAccess::grant();
    let script = format!(
        "cd {dir}; unshare -Urm sh -ec '{bin} -o lowerdir=l,upperdir=u,workdir=w m; \
         grep -q fuse.unionrs /proc/mounts; {work}; umount m'",
        bin = unionrs_bin().display(),
        work = WORKLOAD.replace('\'', "'\\''")
    );
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            USER,
            "--regid",
            USER,
            "--clear-groups",
            "--reset-env",
        ])
        .args(["sh", "-ec", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    check_upper(&dir);
}

fn user_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, USER]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

// xattr_permissions=2, as containers/storage passes it with force_mask, through fusermount3:
// modes set through the mount, and the original owners and modes of copied-up files, are
// kept in user.fuseoverlayfs.override_stat (the inodes stay the user's, with their own
// modes) and shown by stat. Lower layers marked with containers/storage's
// user.containers.override_stat show theirs. (fusermount3 always mounts with
// default_permissions, so the kernel refuses a chown to another id before the daemon sees
// it: chown is tested in a user namespace below, as podman runs its mount program.)
#[test]
fn rootless_xattr_permissions_keep_modes_and_owners() {
    let _s = serial();
    ensure_user();
    let _fuse = FuseAccess::grant();
    let bin = unionrs_bin();
    let bin = bin.display();
    let (uid, gid) = user_ids();
    let (_keep, dir) = stack(false);
    let p = Path::new(&dir);
    // A force_mask layer: real mode 0700, the image's owner and mode in the xattr.
    fs::write(p.join("l/fm"), "fm").unwrap();
    fs::set_permissions(p.join("l/fm"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(p.join("l/fm"), Some(uid), Some(gid)).unwrap();
    setxattr(
        p.join("l/fm"),
        "user.containers.override_stat",
        "123:456:0666",
    );
    setxattr(p.join("l"), "user.containers.override_stat", "0:0:0755");
    let shows = |path: &str, want: &str| {
        format!(
            "test \"$(stat -c %u:%g:%a {path})\" = {want} || {{ stat -c %u:%g:%a {path}; exit 1; }}; "
        )
    };
    let me = |mode: &str| format!("{uid}:{gid}:{mode}");
    let script = format!(
        "cd {dir}; trap 'fusermount3 -uz m 2>/dev/null || true' EXIT; \
         {bin} -o lowerdir=l,upperdir=u,workdir=w,xattr_permissions=2 m; {} \
         echo more >> m/f; {} echo more >> m/fm; {} \
         touch m/d/new; chmod 4751 m/d/new; {} mkdir m/d/nd; chmod 700 m/d/nd; {} \
         fusermount3 -u m",
        shows("m/fm", "123:456:666"),
        shows("m/f", "0:0:666"),
        shows("m/fm", "123:456:666"),
        shows("m/d/new", &me("4751")),
        shows("m/d/nd", &me("700")),
    );
    as_user(&script);
    // On disk: the user's inodes with their own modes, the shown values in the xattr.
    for (name, value, disk_mode) in [
        ("f", "0:0:666".to_string(), 0o666),
        ("fm", "123:456:666".to_string(), 0o700),
        ("d/new", me("4751"), 0o644),
        ("d/nd", me("700"), 0o755),
    ] {
        let path = p.join("u").join(name);
        let md = fs::metadata(&path).unwrap();
        assert_eq!(md.uid(), uid, "{name}: inode given away");
        assert_eq!(md.mode() & 0o7777, disk_mode, "{name}: inode mode changed");
        assert_eq!(
            getxattr(&path, "user.fuseoverlayfs.override_stat").as_deref(),
            Some(value.as_str()),
            "{name}"
        );
    }
    // The upper root is marked: a later mount reads the overrides without the option.
    as_user(&format!(
        "cd {dir}; trap 'fusermount3 -uz m 2>/dev/null || true' EXIT; \
         {bin} -o lowerdir=l,upperdir=u,workdir=w m; {} fusermount3 -u m",
        shows("m/d/new", &me("4751"))
    ));
}

// xattr_permissions=2 where podman runs its mount program: in a user namespace whose root is
// the user, with the user's subordinate ids mapped. chown through the mount is kept in the
// xattr and the inode stays the user's; without the option the inode is given away.
#[test]
fn rootless_xattr_permissions_chown_in_a_user_namespace() {
    let _s = serial();
    ensure_user();
    let _fuse = FuseAccess::grant();
    let (uid, _) = user_ids();
    let run = |opts: &str| {
        let (keep, dir) = stack(true);
        let script = format!(
            "cd {dir}; unshare --map-root-user --map-auto -m sh -ec 'trap \"umount -l m 2>/dev/null || true\" EXIT; \
             {bin} -o lowerdir=l,upperdir=u,workdir=w{opts} m; \
             touch m/d/new; chown 123:456 m/d/new; test \"$(stat -c %u:%g m/d/new)\" = 123:456; umount m'",
            bin = unionrs_bin().display()
        );
        as_user(&script);
        let path = keep.path().join("u/d/new");
        let owner = fs::metadata(&path).unwrap().uid();
        (owner, getxattr(&path, "user.fuseoverlayfs.override_stat"))
    };
    // --map-auto maps namespace uid 1.. to the user's first /etc/subuid range.
    let subuid = fs::read_to_string("/etc/subuid").unwrap();
    let start: u32 = subuid
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{USER}:"))?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .expect("no /etc/subuid range for the test user (useradd makes one)");
    assert_eq!(run(""), (start + 122, None), "plain chown");
    assert_eq!(
        run(",xattr_permissions=2"),
        (uid, Some("123:456:644".to_string()))
    );
}

/// metacopy=on without trusted.* xattrs: the metadata-only copy carries
/// `user.overlay.metacopy`, reads come from the lower, and a write copies the data.
#[test]
fn rootless_metacopy_uses_the_user_namespace_xattr() {
    let _s = serial();
    ensure_user();
    let _fuse = FuseAccess::grant();
    let (_keep, dir) = stack(true);
    let big = Path::new(&dir).join("l/big");
    // 100,000 bytes ending in a newline, so the appended line stands alone.
    let mut content = "0123456789".repeat(10_000).into_bytes();
    *content.last_mut().unwrap() = b'\n';
    fs::write(&big, content).unwrap();
    let status = Command::new("chown")
        .args([&format!("{USER}:{USER}")])
        .arg(&big)
        .status()
        .unwrap();
    assert!(status.success());
    let script = format!(
        "cd {dir}; {bin} -o lowerdir=l,upperdir=u,workdir=w,metacopy=on m; \
         trap 'fusermount3 -u m 2>/dev/null || true' EXIT; chmod 600 m/big; test \"$(stat -c %a m/big)\" = 600; \
         test \"$(stat -c %s u/big)\" = 100000; test \"$(stat -c %b u/big)\" = 0; \
         getfattr -n user.overlay.metacopy u/big > /dev/null; cmp m/big l/big; \
         echo more >> m/big; fusermount3 -u m; trap - EXIT; \
         test \"$(tail -1 u/big)\" = more; ! getfattr -n user.overlay.metacopy u/big 2>/dev/null",
        bin = unionrs_bin().display()
    );
    as_user(&script);
}
