//! Shared harness for the mount tests: layer builders, whiteout forms, mounts that always unmount.
#![allow(dead_code)]

pub mod diffrun;
pub mod snapshot;
pub mod sys;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The two implementations under test; the kernel is the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fs {
    KernelOverlay,
    Unionrs,
}

/// False when `UNIONRS_TEST_ONLY=kernel` asks to validate the tests against the kernel only
/// (or `=unionrs` leaves the kernel side out). CI never sets it; scripts/test-only.sh does and
/// ends with the count of what `skipped` reported.
pub fn enabled(fs: Fs) -> bool {
    match std::env::var("UNIONRS_TEST_ONLY").as_deref() {
        Ok("kernel") => fs == Fs::KernelOverlay,
        Ok("unionrs") => fs == Fs::Unionrs,
        Ok(other) => panic!("UNIONRS_TEST_ONLY={other}: use kernel or unionrs"),
        Err(_) => true,
    }
}

/// Where `skipped` lists what did not run as written (scripts/test-only.sh counts it).
pub const SKIPPED_LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/unionrs-test-only.skipped");

/// Says loudly that `what` did not run as written because of UNIONRS_TEST_ONLY: a line on
/// stderr (written directly: the harness keeps eprintln! of a passing test to itself) and
/// one in `SKIPPED_LOG`.
pub fn skipped(what: &str) {
    use std::io::Write;
    let only = std::env::var("UNIONRS_TEST_ONLY").unwrap_or_default();
    let line = format!("SKIPPED (UNIONRS_TEST_ONLY={only}): {what}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(SKIPPED_LOG);
    log.and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("{SKIPPED_LOG}: {e}"));
}

/// `enabled(fs)`, reporting `what` as skipped when it is not.
pub fn enabled_or_skip(fs: Fs, what: &str) -> bool {
    let on = enabled(fs);
    if !on {
        skipped(what);
    }
    on
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Serializes the mount tests of one test binary (umask is process-wide, and 2 cores are few).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temp dir holding lowers l1..ln (l1 on top), optionally upper + work, and mnt.
pub struct Layers {
    pub dir: TempDir,
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: PathBuf,
    pub mnt: PathBuf,
}

impl Layers {
    /// `n` lowers plus upper and work: a writable union.
    pub fn new(n: usize) -> Layers {
        Self::build(n, true)
    }

    /// `n` lowers and no upper: a read-only union.
    pub fn read_only(n: usize) -> Layers {
        Self::build(n, false)
    }

    fn build(n: usize, upper: bool) -> Layers {
        let dir = tempfile::Builder::new()
            .prefix("unionrs-test-")
            .tempdir()
            .unwrap();
        let lowers: Vec<PathBuf> = (1..=n).map(|i| dir.path().join(format!("l{i}"))).collect();
        for l in &lowers {
            fs::create_dir(l).unwrap();
        }
        let upper = upper.then(|| dir.path().join("upper"));
        if let Some(u) = &upper {
            fs::create_dir(u).unwrap();
        }
        let (work, mnt) = (dir.path().join("work"), dir.path().join("mnt"));
        fs::create_dir(&work).unwrap();
        fs::create_dir(&mnt).unwrap();
        Layers {
            dir,
            lowers,
            upper,
            work,
            mnt,
        }
    }

    /// Lower layer `i`, 1-based: `l(1)` is the top lower.
    pub fn l(&self, i: usize) -> &Path {
        &self.lowers[i - 1]
    }

    pub fn upper(&self) -> &Path {
        self.upper.as_deref().expect("layers without upper")
    }

    /// A path inside the mount point.
    pub fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// An identical copy (`cp -a`) of this stack in a fresh temp dir, with an empty work dir.
    pub fn copy(&self) -> Layers {
        let n = Self::build(self.lowers.len(), self.upper.is_some());
        for (a, b) in self.lowers.iter().zip(&n.lowers) {
            cp_a(a, b);
        }
        if let (Some(a), Some(b)) = (&self.upper, &n.upper) {
            cp_a(a, b);
        }
        n
    }
}

/// Copies the contents of `from` into the existing dir `to`, keeping everything (`cp -a`).
pub fn cp_a(from: &Path, to: &Path) {
    run(
        "cp",
        &[
            "-a",
            "--",
            &format!("{}/.", from.display()),
            &to.display().to_string(),
        ],
    );
}

/// Runs a command that must succeed.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn parent(p: &Path) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
}

pub fn write(p: impl AsRef<Path>, content: &str) {
    let p = p.as_ref();
    parent(p);
    fs::write(p, content).unwrap();
}

pub fn mkdir(p: impl AsRef<Path>) {
    fs::create_dir_all(p.as_ref()).unwrap();
}

pub fn symlink_at(target: &str, p: impl AsRef<Path>) {
    parent(p.as_ref());
    symlink(target, p.as_ref()).unwrap();
}

pub fn fifo(p: impl AsRef<Path>) {
    parent(p.as_ref());
    sys::mkfifo(p.as_ref(), 0o644).unwrap();
}

pub fn setxattr(p: impl AsRef<Path>, name: &str, value: &str) {
    sys::lsetxattr(p.as_ref(), name, value.as_bytes()).unwrap();
}

pub fn getxattr(p: impl AsRef<Path>, name: &str) -> Option<String> {
    sys::lgetxattr(p.as_ref(), name)
        .ok()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

pub fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("read {}: {e}", p.as_ref().display()))
}

/// Sorted names of a directory (what readdir shows, minus . and ..).
pub fn names(p: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p.as_ref())
        .unwrap_or_else(|e| panic!("readdir {}: {e}", p.as_ref().display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whiteout forms that can be written into a lower layer.
#[derive(Clone, Copy, Debug)]
pub enum Whiteout {
    /// Character device 0/0: the kernel's own form.
    CharDev,
    /// A `.wh.NAME` file beside NAME: the AUFS / OCI tar form (unionrs only).
    Oci,
    /// Zero-size file with `trusted.overlay.whiteout`; the parent dir carries
    /// `trusted.overlay.opaque=x` (what kernel >= 6.8 requires for this form).
    XattrTrusted,
    /// As `XattrTrusted` in the `user.overlay.` namespace (kernel: `userxattr` mounts only).
    XattrUser,
}

/// Makes `p` (inside a lower layer) a whiteout in the given form.
pub fn whiteout(p: impl AsRef<Path>, form: Whiteout) {
    let p = p.as_ref();
    parent(p);
    let dir = p.parent().unwrap();
    match form {
        Whiteout::CharDev => sys::mknod(p, libc::S_IFCHR | 0o600, 0, 0).unwrap(),
        Whiteout::Oci => {
            let name = p.file_name().unwrap().to_string_lossy();
            fs::write(dir.join(format!(".wh.{name}")), "").unwrap();
        }
        Whiteout::XattrTrusted | Whiteout::XattrUser => {
            let ns = if matches!(form, Whiteout::XattrUser) {
                "user"
            } else {
                "trusted"
            };
            fs::write(p, "").unwrap();
            setxattr(p, &format!("{ns}.overlay.whiteout"), "y");
            setxattr(dir, &format!("{ns}.overlay.opaque"), "x");
        }
    }
}

/// Opaque-directory forms that can be written into a lower layer.
#[derive(Clone, Copy, Debug)]
pub enum Opaque {
    XattrTrusted,
    /// `user.overlay.opaque=y` (kernel: `userxattr` mounts only).
    XattrUser,
    /// A `.wh..wh..opq` entry inside the dir (unionrs only).
    Oci,
}

/// Creates dir `p` (inside a lower layer) and makes it opaque in the given form.
pub fn opaque(p: impl AsRef<Path>, form: Opaque) {
    let p = p.as_ref();
    mkdir(p);
    match form {
        Opaque::XattrTrusted => setxattr(p, "trusted.overlay.opaque", "y"),
        Opaque::XattrUser => setxattr(p, "user.overlay.opaque", "y"),
        Opaque::Oci => fs::write(p.join(".wh..wh..opq"), "").unwrap(),
    }
}

/// The fstype of the topmost mount at `mnt` in /proc/self/mountinfo, if any.
pub fn mounted_fstype(mnt: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|x| *x == "-")?;
        (f.get(4) == Some(&want.as_str())).then(|| f[dash + 1].to_string())
    })
}

/// The control socket of the unionrs mount at `mnt`, where its daemon binds it.
fn control_socket(mnt: &Path) -> Option<PathBuf> {
    use unionrs::fuse::control::{mount_dev, socket_path};
    mount_dev(mnt).map(|(major, minor)| socket_path(major, minor))
}

/// The unionrs binary: `$UNIONRS_BIN`, else the one cargo built.
pub fn unionrs_bin() -> PathBuf {
    std::env::var_os("UNIONRS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_unionrs")))
}

/// What `unionrs stats MNT` prints for a live unionrs mount.
pub fn stats_text(mnt: &Path) -> String {
    let out = std::process::Command::new(unionrs_bin())
        .arg("stats")
        .arg(mnt)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// One counter of `unionrs stats MNT` (a live unionrs mount).
pub fn stats_value(mnt: &Path, key: &str) -> u64 {
    let text = stats_text(mnt);
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in `unionrs stats`:\n{text}"))
}

/// With `UNIONRS_NO_PASSTHROUGH` set (scripts/test.sh's passthrough-off pass, which the
/// daemons inherit), checks that the live unionrs mount at `mnt` really serves data itself
/// (`unionrs stats` says `passthrough off`), so that pass cannot quietly test passthrough again.
pub fn check_passthrough_as_asked(mnt: &Path) {
    if std::env::var_os("UNIONRS_NO_PASSTHROUGH").is_none() {
        return;
    }
    let text = stats_text(mnt);
    assert!(
        text.lines().any(|l| l == "passthrough off"),
        "UNIONRS_NO_PASSTHROUGH is set but the mount at {} does not say `passthrough off`:\n{text}",
        mnt.display()
    );
}

/// The `-o` option string for a stack: lowerdir, upperdir and workdir.
pub fn layer_opts(l: &Layers) -> String {
    let lowers: Vec<String> = l.lowers.iter().map(|p| p.display().to_string()).collect();
    let mut o = format!("lowerdir={}", lowers.join(":"));
    if let Some(u) = &l.upper {
        o += &format!(",upperdir={},workdir={}", u.display(), l.work.display());
    }
    o
}

/// A live mount; unmounts (falling back to a lazy unmount) and reaps the daemon on drop.
pub struct MountGuard {
    pub fs: Fs,
    pub mnt: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    mounted: bool,
}

/// Mounts `l` at `l.mnt`. `opts` are extra options; a `kernel:` or `unionrs:` prefix limits
/// one to that filesystem. The kernel gets `redirect_dir=on,index=on` unless `kernel:userxattr`
/// is given (which excludes redirect_dir=on). Panics with the reason if the mount fails.
pub fn mount(fs: Fs, l: &Layers, opts: &[&str]) -> MountGuard {
    mount_at(fs, l, &l.mnt, opts)
}

pub fn mount_at(fs: Fs, l: &Layers, mnt: &Path, opts: &[&str]) -> MountGuard {
    mount_via(fs, l, mnt, opts, &[])
}

/// Same, the unionrs daemon started through `launcher` (a command and its arguments that run
/// the rest of the command line, e.g. `prlimit --nofile=256:`).
pub fn mount_via(fs: Fs, l: &Layers, mnt: &Path, opts: &[&str], launcher: &[&str]) -> MountGuard {
    let mut o = layer_opts(l);
    let (own, other) = match fs {
        Fs::KernelOverlay => ("kernel:", "unionrs:"),
        Fs::Unionrs => ("unionrs:", "kernel:"),
    };
    let extra: Vec<&str> = opts
        .iter()
        .filter(|x| !x.starts_with(other))
        .map(|x| x.strip_prefix(own).unwrap_or(x))
        .collect();
    if fs == Fs::KernelOverlay && l.upper.is_some() && !extra.contains(&"userxattr") {
        o += ",redirect_dir=on,index=on";
    }
    for x in extra {
        o += ",";
        o += x;
    }
    // CI runs the suite once per transport: e.g. UNIONRS_TEST_MOUNT_OPTS=io_uring=on.
    if fs == Fs::Unionrs
        && let Ok(more) = std::env::var("UNIONRS_TEST_MOUNT_OPTS")
        && !more.is_empty()
    {
        o += ",";
        o += &more;
    }
    let log = l
        .dir
        .path()
        .join(format!("daemon-{}.log", std::process::id()));
    let mut g = MountGuard {
        fs,
        mnt: mnt.to_path_buf(),
        child: None,
        log,
        mounted: false,
    };
    match fs {
        Fs::KernelOverlay => {
            let out = Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &o])
                .arg(mnt)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "kernel overlay mount -o {o} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            g.mounted = true;
        }
        Fs::Unionrs => {
            let logf = fs::File::create(&g.log).unwrap();
            let mut cmd = match launcher.split_first() {
                Some((program, args)) => {
                    let mut c = Command::new(program);
                    c.args(args).arg(unionrs_bin());
                    c
                }
                None => Command::new(unionrs_bin()),
            };
            let child = cmd
                .args(["-f", "-o", &o])
                .arg(mnt)
                .stdin(Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", unionrs_bin().display()));
            g.child = Some(child);
            g.wait_live();
        }
    }
    g
}

impl MountGuard {
    fn wait_live(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Live as the mount command (without -f) reports it: mounted, and its control
            // socket answering, which the daemon opens once its transport is settled. Until
            // then `unionrs stats` fails or names the transport of the moment.
            if mounted_fstype(&self.mnt).as_deref() == Some("fuse.unionrs") {
                self.mounted = true;
                let answers = control_socket(&self.mnt)
                    .is_some_and(|s| std::os::unix::net::UnixStream::connect(s).is_ok());
                if answers {
                    return;
                }
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let why = match exited {
                    Some(s) => format!("daemon exited with {s}"),
                    None if self.mounted => {
                        "mounted, but its control socket did not answer within 10 s".to_string()
                    }
                    None => "no fuse.unionrs mount after 10 s".to_string(),
                };
                self.mounted = mounted_fstype(&self.mnt).is_some();
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                panic!(
                    "unionrs mount at {} failed: {why}; daemon output:\n{log}",
                    self.mnt.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id (unionrs only).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Unmounts now, waits for the daemon and returns its exit status (if any).
    pub fn unmount(mut self) -> Option<std::process::ExitStatus> {
        self.teardown()
    }

    fn teardown(&mut self) -> Option<std::process::ExitStatus> {
        if self.mounted && mounted_fstype(&self.mnt).is_some() {
            let ok = Command::new("umount")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
            if !ok.map(|s| s.success()).unwrap_or(false) {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
        self.mounted = false;
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// What the daemon has printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Declares a test run once per filesystem: `both!(name, |fs, l_unused| { ... })` makes
/// `name::kernel` and `name::unionrs`; each takes the serial lock.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn kernel() {
                if common::enabled_or_skip(Fs::KernelOverlay, concat!(module_path!(), "::kernel")) {
                    let _s = common::serial();
                    ($body)(Fs::KernelOverlay);
                }
            }
            #[test]
            fn unionrs() {
                if common::enabled_or_skip(Fs::Unionrs, concat!(module_path!(), "::unionrs")) {
                    let _s = common::serial();
                    ($body)(Fs::Unionrs);
                }
            }
        }
    };
}

/// Declares a test of unionrs alone (the kernel lacks the feature or it is about the binary).
#[macro_export]
macro_rules! unionrs_only {
    ($name:ident, $body:expr) => {
        #[test]
        fn $name() {
            if common::enabled_or_skip(
                Fs::Unionrs,
                concat!(module_path!(), "::", stringify!($name)),
            ) {
                let _s = common::serial();
                ($body)(Fs::Unionrs);
            }
        }
    };
}

/// `n` incompressible-looking bytes, the same for the same `seed` (xorshift).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
