//! Privilege: as root with allow_other (and so default_permissions), a real second user
//! (`tests`) cannot read, write or chmod what the modes forbid; symlinks planted in layers
//! are never followed by the daemon itself (only by the caller, as for any symlink); setuid
//! files do not raise privileges under nosuid. Each case runs on kernel overlayfs too, which
//! settles what is expected.

mod common;

use common::{Fs, Layers, mount};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Output};

const USER: &str = "tests";

/// The second user, created when missing; its uid.
fn test_user() -> u32 {
    let known = |u: &str| {
        Command::new("id")
            .args(["-u", u])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            })
    };
    if let Some(uid) = known(USER) {
        return uid;
    }
    common::run(
        "useradd",
        &["--system", "--no-create-home", "--shell", "/bin/sh", USER],
    );
    known(USER).expect("useradd made no user")
}

/// Runs `argv` as the test user (no supplementary groups).
fn as_user(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--clear-groups", "--"])
        .args(argv)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> bool {
    o.status.success()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Layers whose temp dir the test user may traverse (tempfile makes it 0700).
fn layers(n: usize) -> Layers {
    let l = Layers::new(n);
    fs::set_permissions(l.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    l
}

fn chmod(p: impl AsRef<Path>, mode: u32) {
    fs::set_permissions(p.as_ref(), fs::Permissions::from_mode(mode)).unwrap();
}

fn m(l: &Layers, rel: &str) -> String {
    l.m(rel).to_str().unwrap().to_string()
}

both!(modes_bind_the_second_user, |fs: Fs| {
    let uid = test_user();
    let l = layers(1);
    common::write(l.l(1).join("lsecret"), "lower secret\n");
    chmod(l.l(1).join("lsecret"), 0o600);
    common::write(l.l(1).join("lpublic"), "lower public\n");
    chmod(l.l(1).join("lpublic"), 0o644);
    let _g = mount(fs, &l, &[]);
    chmod(&l.mnt, 0o755);
    common::write(l.m("secret"), "upper secret\n");
    chmod(l.m("secret"), 0o600);
    common::write(l.m("public"), "upper public\n");
    chmod(l.m("public"), 0o644);
    common::mkdir(l.m("drop"));
    chmod(l.m("drop"), 0o1777);

    for name in ["secret", "lsecret"] {
        let o = as_user(&["cat", &m(&l, name)]);
        assert!(
            !ok(&o) && stderr(&o).contains("Permission denied"),
            "{fs:?} read {name}: {o:?}"
        );
    }
    for name in ["public", "lpublic"] {
        let o = as_user(&["cat", &m(&l, name)]);
        assert!(ok(&o), "{fs:?} read {name}: {o:?}");
        let o = as_user(&["sh", "-c", &format!("echo x >> '{}'", m(&l, name))]);
        assert!(
            !ok(&o) && stderr(&o).contains("Permission denied"),
            "{fs:?} write {name}: {o:?}"
        );
        let o = as_user(&["chmod", "0666", &m(&l, name)]);
        assert!(
            !ok(&o) && stderr(&o).contains("not permitted"),
            "{fs:?} chmod {name}: {o:?}"
        );
        let o = as_user(&["chown", USER, &m(&l, name)]);
        assert!(!ok(&o), "{fs:?} chown {name}: {o:?}");
        let o = as_user(&["rm", "-f", &m(&l, name)]);
        assert!(!ok(&o), "{fs:?} unlink {name} from a root 0755 dir: {o:?}");
        let o = as_user(&["truncate", "-s", "0", &m(&l, name)]);
        assert!(!ok(&o), "{fs:?} truncate {name}: {o:?}");
    }
    let o = as_user(&["touch", &m(&l, "new-in-root")]);
    assert!(!ok(&o), "{fs:?} create in a root 0755 dir: {o:?}");
    // Nothing changed, and the lower files were not even copied up.
    assert_eq!(common::read(l.m("public")), "upper public\n");
    assert_eq!(common::read(l.m("lpublic")), "lower public\n");
    assert_eq!(fs::metadata(l.m("public")).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(fs::metadata(l.m("secret")).unwrap().mode() & 0o7777, 0o600);
    assert!(!l.upper().join("lpublic").exists() && !l.upper().join("lsecret").exists());

    // What the modes allow works, with the caller's identity on the new file.
    let o = as_user(&["sh", "-c", &format!("echo mine > '{}'", m(&l, "drop/mine"))]);
    assert!(ok(&o), "{fs:?} create in a 1777 dir: {o:?}");
    assert_eq!(fs::metadata(l.m("drop/mine")).unwrap().uid(), uid);
    assert_eq!(
        fs::metadata(l.upper().join("drop/mine")).unwrap().uid(),
        uid
    );
    let o = as_user(&["chmod", "0600", &m(&l, "drop/mine")]);
    assert!(ok(&o), "{fs:?} chmod own file: {o:?}");
    // Sticky dir: the user cannot remove root's file there.
    common::write(l.m("drop/roots"), "r\n");
    let o = as_user(&["rm", "-f", &m(&l, "drop/roots")]);
    assert!(!ok(&o), "{fs:?} unlink root's file in a sticky dir: {o:?}");
});

/// Runs a copy of `id` that is setuid root, from a lower layer, as the test user: the euid it
/// reports.
fn setuid_euid(fs: Fs, opts: &[&str]) -> String {
    test_user();
    let l = layers(1);
    let id = l.l(1).join("id");
    fs::copy("/usr/bin/id", &id).unwrap();
    std::os::unix::fs::chown(&id, Some(0), Some(0)).unwrap();
    chmod(&id, 0o4755);
    let g = mount(fs, &l, opts);
    chmod(&l.mnt, 0o755);
    assert_eq!(fs::metadata(l.m("id")).unwrap().mode() & 0o7777, 0o4755);
    let o = as_user(&[&m(&l, "id"), "-u"]);
    assert!(ok(&o), "{fs:?} {opts:?}: {o:?}");
    drop(g);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

both!(setuid_is_honoured_only_without_nosuid, |fs: Fs| {
    let uid = test_user().to_string();
    assert_eq!(setuid_euid(fs, &["nosuid"]), uid, "{fs:?} with nosuid");
    assert_eq!(setuid_euid(fs, &[]), "0", "{fs:?} without nosuid");
});

both!(symlinks_in_layers_are_not_followed_by_lookup, |fs: Fs| {
    let l = layers(2);
    let outside = l.dir.path().join("outside");
    common::write(outside.join("outside-file"), "outside\n");
    let o = outside.to_str().unwrap();
    // A directory above a symlink of the same name: the merge stops at the symlink.
    common::write(l.l(1).join("merged/inner"), "inner\n");
    symlink(o, l.l(2).join("merged")).unwrap();
    // The same one level down.
    common::write(l.l(1).join("deep/a/f"), "f\n");
    common::mkdir(l.l(2).join("deep"));
    symlink(o, l.l(2).join("deep/a")).unwrap();
    // A symlink above a directory: the symlink is what shows.
    symlink(o, l.l(1).join("link")).unwrap();
    common::write(l.l(2).join("link/x"), "x\n");
    // A symlink to / and a relative one that climbs out of the mount.
    symlink("/", l.l(1).join("root")).unwrap();
    symlink("../../../../../../../../etc", l.l(1).join("climb")).unwrap();
    symlink(o, l.l(1).join("w")).unwrap();
    let _g = mount(fs, &l, &[]);

    assert_eq!(common::names(l.m("merged")), ["inner"], "{fs:?}");
    assert_eq!(common::names(l.m("deep/a")), ["f"], "{fs:?}");
    for name in ["link", "root", "climb", "w"] {
        let md = fs::symlink_metadata(l.m(name)).unwrap();
        assert!(
            md.file_type().is_symlink(),
            "{fs:?} {name} is shown as a symlink"
        );
    }
    assert_eq!(fs::read_link(l.m("link")).unwrap(), outside);
    assert_eq!(fs::read_link(l.m("root")).unwrap(), Path::new("/"));
    // Following them is the caller's doing, in the caller's namespace, as for any symlink.
    assert_eq!(common::names(l.m("link")), ["outside-file"], "{fs:?}");
    assert_eq!(
        fs::read(l.m("root/etc/hostname")).ok(),
        fs::read("/etc/hostname").ok(),
        "{fs:?}"
    );
    assert_eq!(
        fs::read(l.m("climb/hostname")).ok(),
        fs::read("/etc/hostname").ok(),
        "{fs:?}"
    );
    // A write through a layer's symlink lands where the caller's resolution leads: outside,
    // not in the upper, and the symlink itself is not copied up.
    common::write(l.m("w/created"), "via symlink\n");
    assert_eq!(common::read(outside.join("created")), "via symlink\n");
    assert!(!l.upper().join("w").exists(), "{fs:?}: upper has w");
    assert_eq!(
        common::names(l.upper()),
        Vec::<String>::new(),
        "{fs:?}: upper"
    );
});

// Hostile markers: redirects that climb out of a layer, or lead through a symlink in one,
// must not make the daemon list or read anything outside the layers.
unionrs_only!(hostile_redirects_stay_inside_the_layers, |fs: Fs| {
    let l = layers(1);
    symlink("/etc", l.l(1).join("etclink")).unwrap();
    symlink("/", l.l(1).join("rootlink")).unwrap();
    common::mkdir(l.l(1).join("real"));
    common::write(l.l(1).join("real/in-layer"), "ok\n");
    for (dir, target) in [
        ("climb", "/../../../../../../../../etc"),
        ("rel", "../../../../etc"),
        ("vialink", "/etclink"),
        ("through", "/rootlink/etc"),
        ("good", "/real"),
    ] {
        common::mkdir(l.upper().join(dir));
        common::setxattr(l.upper().join(dir), "trusted.overlay.redirect", target);
    }
    let _g = mount(fs, &l, &[]);
    for dir in ["climb", "rel", "vialink", "through"] {
        let listed = fs::read_dir(l.m(dir)).map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        });
        match listed {
            Ok(names) => assert!(names.is_empty(), "{dir}: lists {names:?}"),
            Err(e) => assert_ne!(e.raw_os_error(), Some(libc::EIO), "{dir}: {e}"),
        }
        assert!(
            fs::metadata(l.m(&format!("{dir}/passwd"))).is_err(),
            "{dir}/passwd"
        );
        assert!(
            fs::metadata(l.m(&format!("{dir}/etc"))).is_err(),
            "{dir}/etc"
        );
    }
    assert_eq!(common::names(l.m("good")), ["in-layer"]);
});
