//! Mount validation: checks the directories a parsed mount command names, before anything is
//! mounted, and makes their paths absolute and canonical.
//!
//! Canonical paths matter because the daemon later chdirs to `/`, and containers/storage passes
//! lowerdirs relative to its cwd, often as symlinks (`l/ID -> ../LAYER/diff`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::options::{MountArgs, OptionError};

/// What a workdir may already hold: kernel overlayfs' own entries, and ours from an earlier
/// mount of the same upper. Anything else means the directory belongs to someone else.
const WORKDIR_MAY_HOLD: &[&str] = &["work", "index", "incompat", "unionrs.lock", "unionrs.index"];

/// A mount whose directories exist and fit together; every path in it is canonical.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidMount {
    pub args: MountArgs,
}

/// Checks every directory of `args` and returns it with canonical paths. Each failure is one
/// line naming the path and what to fix.
pub fn validate(mut args: MountArgs) -> Result<ValidMount, OptionError> {
    let o = &mut args.opts;
    for lower in &mut o.lowerdirs {
        *lower = directory("lowerdir", lower)?;
    }
    if let Some(upper) = &mut o.upperdir {
        *upper = directory("upperdir", upper)?;
    }
    if let Some(work) = &mut o.workdir {
        *work = directory("workdir", work)?;
    }
    args.mountpoint = directory("mountpoint", &args.mountpoint)?;

    match (&o.upperdir, &o.workdir) {
        (Some(upper), Some(work)) => {
            // Writes to a lower through the upper (or the reverse) would change layers that
            // are meant to be immutable while mounted.
            for lower in &o.lowerdirs {
                if upper.starts_with(lower) {
                    return Err(err(format!(
                        "upperdir {} is inside lowerdir {}: put the upper layer outside every lower layer",
                        show(upper),
                        show(lower)
                    )));
                }
                if lower.starts_with(upper) {
                    return Err(err(format!(
                        "lowerdir {} is inside upperdir {}: put the upper layer outside every lower layer",
                        show(lower),
                        show(upper)
                    )));
                }
            }
            check_workdir(upper, work)?;
        }
        (None, None) => o.read_only = true,
        _ => return Err(err("upperdir= and workdir= must be given together")),
    }
    Ok(ValidMount { args })
}

/// The workdir is where copy-ups are built before being renamed into the upper, so it must be
/// apart from the upper, on its filesystem (rename(2) cannot cross one), ours and writable.
fn check_workdir(upper: &Path, work: &Path) -> Result<(), OptionError> {
    let (w, u) = (show(work), show(upper));
    if work == upper {
        return Err(err(format!(
            "workdir {w} is the same directory as upperdir: use an empty directory next to it"
        )));
    }
    if work.starts_with(upper) {
        return Err(err(format!(
            "workdir {w} is inside upperdir {u}: use an empty directory next to it"
        )));
    }
    if upper.starts_with(work) {
        return Err(err(format!(
            "upperdir {u} is inside workdir {w}: use an empty directory next to it"
        )));
    }
    if dev(upper)? != dev(work)? {
        return Err(err(format!(
            "workdir {w} is not on the same filesystem as upperdir {u}"
        )));
    }
    let entries = fs::read_dir(work).map_err(|e| err(format!("workdir {w}: {e}")))?;
    for entry in entries {
        let name = entry
            .map_err(|e| err(format!("workdir {w}: {e}")))?
            .file_name();
        if !WORKDIR_MAY_HOLD.iter().any(|ok| name == *ok) {
            return Err(err(format!(
                "workdir {w} is not empty (contains {}): use an empty directory",
                show(Path::new(&name))
            )));
        }
    }
    // Mode bits do not tell (root, ACLs, read-only mounts): try it.
    let probe = work.join(format!(".unionrs-probe-{}", std::process::id()));
    fs::create_dir(&probe)
        .and_then(|()| fs::remove_dir(&probe))
        .map_err(|e| err(format!("workdir {w} is not writable: {e}")))
}

/// Canonical form of `path`, which must be an existing directory.
fn directory(what: &str, path: &Path) -> Result<PathBuf, OptionError> {
    let fail = |why: String| {
        // A relative path is relative to the caller's cwd: say which, to spare a guess.
        let cwd = match std::env::current_dir() {
            Ok(cwd) if path.is_relative() => format!(" (relative to {})", show(&cwd)),
            _ => String::new(),
        };
        err(format!("{what} {}{cwd} {why}", show(path)))
    };
    let canonical = fs::canonicalize(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("does not exist".into()),
        _ => fail(format!("cannot be resolved: {e}")),
    })?;
    let meta = fs::metadata(&canonical).map_err(|e| fail(format!("cannot be read: {e}")))?;
    if !meta.is_dir() {
        return Err(fail("is not a directory".into()));
    }
    Ok(canonical)
}

fn dev(path: &Path) -> Result<u64, OptionError> {
    fs::metadata(path)
        .map(|m| m.dev())
        .map_err(|e| err(format!("{}: {e}", show(path))))
}

/// A path as text that stays on one line: plain if printable, else quoted and escaped.
fn show(path: &Path) -> String {
    let text = path.display().to_string();
    if text.chars().any(char::is_control) {
        format!("{path:?}")
    } else {
        text
    }
}

fn err(message: impl Into<String>) -> OptionError {
    OptionError::new(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::options::MountOptions;
    use tempfile::TempDir;

    /// A temp dir with directories `l1 l2 u w m` (lowers, upper, work, mountpoint).
    fn layout() -> (TempDir, PathBuf) {
        let tmp = TempDir::new().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        for d in ["l1", "l2", "u", "w", "m"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        (tmp, root)
    }

    fn mount(
        lowers: &[PathBuf],
        upper: Option<PathBuf>,
        work: Option<PathBuf>,
        mnt: PathBuf,
    ) -> MountArgs {
        MountArgs {
            foreground: false,
            debug: false,
            single_thread: false,
            source: None,
            mountpoint: mnt,
            opts: MountOptions {
                lowerdirs: lowers.to_vec(),
                upperdir: upper,
                workdir: work,
                ..MountOptions::default()
            },
        }
    }

    /// `l1:l2`, `u`, `w` on `m` under `root`.
    fn standard(root: &Path) -> MountArgs {
        let lowers = [root.join("l1"), root.join("l2")];
        mount(
            &lowers,
            Some(root.join("u")),
            Some(root.join("w")),
            root.join("m"),
        )
    }

    fn fails(args: MountArgs, want: &str) {
        let e = validate(args).expect_err(want).to_string();
        assert!(e.contains(want), "got {e:?}, want {want:?}");
        assert!(!e.contains('\n'), "not one line: {e:?}");
    }

    #[test]
    fn good_mount_is_canonical() {
        let (_tmp, root) = layout();
        // Kernel overlayfs' leftovers and our lock are allowed in the workdir.
        fs::create_dir(root.join("w/work")).unwrap();
        fs::write(root.join("w/unionrs.lock"), b"").unwrap();
        let mut messy = standard(&root);
        messy.opts.lowerdirs[0] = root.join("l2/../l1/.");
        let got = validate(messy).unwrap().args;
        assert_eq!(got, standard(&root));
        assert!(!got.opts.read_only);
        // The writability probe leaves nothing behind.
        assert_eq!(fs::read_dir(root.join("w")).unwrap().count(), 2);
    }

    #[test]
    fn lower_only_is_read_only() {
        let (_tmp, root) = layout();
        let got = validate(mount(&[root.join("l1")], None, None, root.join("m"))).unwrap();
        assert!(got.args.opts.read_only);
    }

    #[test]
    fn relative_lowerdir_is_resolved_against_cwd() {
        let (_tmp, root) = layout();
        // Spell l1 relative to the test's cwd without changing it (tests share one cwd).
        let cwd = fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
        let mut relative: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
        relative.push(root.join("l1").strip_prefix("/").unwrap());
        assert!(relative.is_relative());
        let mut args = standard(&root);
        args.opts.lowerdirs[0] = relative;
        assert_eq!(
            validate(args).unwrap().args.opts.lowerdirs[0],
            root.join("l1")
        );
    }

    #[test]
    fn symlinked_lowerdir_is_resolved() {
        // containers/storage's layout: l/ID -> ../LAYER/diff
        let (_tmp, root) = layout();
        fs::create_dir_all(root.join("layer/diff")).unwrap();
        fs::create_dir(root.join("l")).unwrap();
        std::os::unix::fs::symlink("../layer/diff", root.join("l/ID")).unwrap();
        let mut args = standard(&root);
        args.opts.lowerdirs[1] = root.join("l/ID");
        let got = validate(args).unwrap().args;
        assert_eq!(got.opts.lowerdirs[1], root.join("layer/diff"));
    }

    #[test]
    fn missing_or_not_a_directory() {
        let (_tmp, root) = layout();
        fs::write(root.join("file"), b"x").unwrap();
        type Edit = fn(&mut MountArgs, &Path);
        let cases: [(Edit, &str); 6] = [
            (|a, r| a.opts.lowerdirs[1] = r.join("nope"), "lowerdir"),
            (|a, r| a.opts.upperdir = Some(r.join("nope")), "upperdir"),
            (|a, r| a.opts.workdir = Some(r.join("nope")), "workdir"),
            (|a, r| a.mountpoint = r.join("nope"), "mountpoint"),
            (|a, r| a.opts.lowerdirs[0] = r.join("file"), "lowerdir"),
            (
                |a, _| a.opts.lowerdirs[0] = PathBuf::from("no/such/layer"),
                "lowerdir",
            ),
        ];
        for (edit, what) in cases {
            let mut args = standard(&root);
            edit(&mut args, &root);
            let e = validate(args).expect_err(what).to_string();
            assert!(e.starts_with(what), "{e}");
            assert!(
                e.ends_with("does not exist") || e.ends_with("is not a directory"),
                "{e}"
            );
        }
        let mut args = standard(&root);
        args.opts.lowerdirs[0] = PathBuf::from("no/such/layer");
        fails(args, "lowerdir no/such/layer (relative to /");
    }

    #[test]
    fn layers_must_not_nest() {
        let (_tmp, root) = layout();
        fs::create_dir(root.join("l1/u")).unwrap();
        fs::create_dir(root.join("u/l")).unwrap();
        fs::create_dir(root.join("u/w")).unwrap();
        let r = &root;
        let show = |p: &str| r.join(p).display().to_string();

        let mut inside = standard(r);
        inside.opts.upperdir = Some(r.join("l1/u"));
        fails(
            inside,
            &format!(
                "upperdir {} is inside lowerdir {}",
                show("l1/u"),
                show("l1")
            ),
        );

        let mut same = standard(r);
        same.opts.upperdir = Some(r.join("l2"));
        fails(
            same,
            &format!("upperdir {} is inside lowerdir {}", show("l2"), show("l2")),
        );

        let mut lower_in_upper = standard(r);
        lower_in_upper.opts.lowerdirs[1] = r.join("u/l");
        fails(
            lower_in_upper,
            &format!("lowerdir {} is inside upperdir {}", show("u/l"), show("u")),
        );

        let mut work_in_upper = standard(r);
        work_in_upper.opts.workdir = Some(r.join("u/w"));
        fails(
            work_in_upper,
            &format!("workdir {} is inside upperdir {}", show("u/w"), show("u")),
        );

        let mut work_is_upper = standard(r);
        work_is_upper.opts.workdir = Some(r.join("u"));
        fails(work_is_upper, "is the same directory as upperdir");

        let mut upper_in_work = standard(r);
        upper_in_work.opts.upperdir = Some(r.join("u/w"));
        upper_in_work.opts.workdir = Some(r.join("u"));
        fails(
            upper_in_work,
            &format!("upperdir {} is inside workdir {}", show("u/w"), show("u")),
        );
    }

    #[test]
    fn workdir_must_be_empty() {
        let (_tmp, root) = layout();
        fs::write(root.join("w/junk"), b"").unwrap();
        let want = format!(
            "workdir {} is not empty (contains junk): use an empty directory",
            root.join("w").display()
        );
        fails(standard(&root), &want);
    }

    #[test]
    fn workdir_on_another_filesystem() {
        // /proc is never on the temp dir's filesystem; the device check comes before emptiness.
        let (_tmp, root) = layout();
        let mut args = standard(&root);
        args.opts.workdir = Some(PathBuf::from("/proc"));
        let want = format!(
            "workdir /proc is not on the same filesystem as upperdir {}",
            root.join("u").display()
        );
        fails(args, &want);
    }

    #[test]
    fn control_characters_stay_on_one_line() {
        let (_tmp, root) = layout();
        let mut args = standard(&root);
        args.opts.lowerdirs[0] = root.join("new\nline");
        fails(args, r#"new\nline"#);
    }
}
