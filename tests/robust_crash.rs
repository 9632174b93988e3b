//! Crash safety: kill -9 the daemon at random points while it copies up a large file, renames
//! merged directories and writes many small files; lazy-unmount, remount the same upper and
//! workdir, and check that every object shows the state before or after the interrupted
//! operation (never a half copy), that W/work is empty again, and that `unionrs check` agrees.
//! Also: what processes see when the daemon dies (ENOTCONN), and a clean remount after it.
//!
//! Bounded by default (20 kills, 256 MiB file); UNIONRS_LONG=1 runs 200 kills on a 384 MiB
//! file; UNIONRS_CRASH_ITERS=N and UNIONRS_SEED=S override.

mod common;

use common::{Fs, Layers, mount, mounted_fstype, sys, unionrs_bin};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// splitmix64: a seeded, dependency-free source of kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn long() -> bool {
    std::env::var_os("UNIONRS_LONG").is_some()
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

const TAIL: &[u8] = b"<appended tail>\n";
const SMALL: usize = 50;
const CHUNK: usize = 8 << 20;
/// Lower directories r0..r{DIRS-1}, each renamed once to rK.moved while the kills come.
const DIRS: usize = 400;
/// Hard-linked lower files hl/hKa = hl/hKb, appended to through the first name (copy-up
/// through the index): both names must always show the same content.
const LINKED: usize = 40;

/// One 8 MiB pattern block (non-zero, so a hole or a short copy cannot pass for data),
/// stamped with its index so that misplaced blocks differ too.
fn block(i: u64) -> Vec<u8> {
    let mut rng = Rng(0xb10c ^ i);
    let mut b = Vec::with_capacity(CHUNK);
    while b.len() < CHUNK {
        b.extend_from_slice(&(rng.next() | 1).to_le_bytes());
    }
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

/// The directory tree renamed back and forth: relative path -> content.
fn tree() -> BTreeMap<PathBuf, String> {
    let mut t = BTreeMap::new();
    for i in 0..10 {
        t.insert(PathBuf::from(format!("a{i}")), format!("a{i}\n"));
        t.insert(PathBuf::from(format!("sub/b{i}")), format!("b{i}\n"));
    }
    t.insert(PathBuf::from("sub/deeper/c"), "c\n".to_string());
    t
}

fn dir_tree(k: usize) -> BTreeMap<PathBuf, String> {
    [("f", "top"), ("sub/g", "sub"), ("sub/deeper/h", "deep")]
        .into_iter()
        .map(|(p, c)| (PathBuf::from(p), format!("{c} {k}\n")))
        .collect()
}

fn read_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, out);
            } else {
                out.insert(r.clone(), common::read(root.join(&r)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn linked_old(k: usize) -> String {
    format!("linked {k}\n").repeat(1000)
}

fn small_old(k: usize) -> String {
    format!("old-{k}\n")
}
fn new_content(k: usize) -> String {
    format!("new file {k}\n")
}

struct Setup {
    l: Layers,
    big_len: u64,
}

fn setup(big_mib: u64) -> Setup {
    let l = Layers::new(1);
    let lower = l.l(1).to_path_buf();
    let mut f = fs::File::create(lower.join("big.bin")).unwrap();
    let blocks = big_mib * (1 << 20) / CHUNK as u64;
    for i in 0..blocks {
        f.write_all(&block(i)).unwrap();
    }
    drop(f);
    for (rel, content) in tree() {
        common::write(lower.join("d0").join(&rel), &content);
    }
    for k in 0..DIRS {
        for (rel, content) in dir_tree(k) {
            common::write(lower.join(format!("r{k}")).join(rel), &content);
        }
    }
    for k in 0..SMALL {
        common::write(lower.join(format!("small/s{k}")), &small_old(k));
    }
    common::mkdir(lower.join("new"));
    for k in 0..LINKED {
        let a = lower.join(format!("hl/h{k}a"));
        common::write(&a, &linked_old(k));
        fs::hard_link(&a, lower.join(format!("hl/h{k}b"))).unwrap();
    }
    Setup {
        l,
        big_len: blocks * CHUNK as u64,
    }
}

/// Empties the upper and work dirs (while unmounted): each kill starts from the lower alone.
fn reset(l: &Layers) {
    for d in [l.upper(), &l.work] {
        fs::remove_dir_all(d).unwrap();
        fs::create_dir(d).unwrap();
    }
}

/// Progress of the three workloads at the moment of the kill.
#[derive(Default)]
struct Progress {
    /// 0 not started, 1 open(O_APPEND) returned (copy-up done), 2 tail written.
    big: AtomicUsize,
    /// Directory renames rK -> rK.moved that returned.
    renames: AtomicUsize,
    /// Small operations that returned: first SMALL appends to small/sK, then creates new/fK.
    small_done: AtomicUsize,
    /// Appends to hl/hKa that returned.
    linked_done: AtomicUsize,
}

fn workloads(mnt: &Path, p: &Arc<Progress>, stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<()>> {
    let mut hs = Vec::new();
    let (m, pr) = (mnt.to_path_buf(), p.clone());
    hs.push(thread::spawn(move || {
        let f = fs::OpenOptions::new().append(true).open(m.join("big.bin"));
        let Ok(mut f) = f else { return };
        pr.big.store(1, Ordering::SeqCst);
        if f.write_all(TAIL).is_ok() {
            pr.big.store(2, Ordering::SeqCst);
        }
    }));
    let (m, pr, st) = (mnt.to_path_buf(), p.clone(), stop.clone());
    hs.push(thread::spawn(move || {
        for k in 0..DIRS {
            if st.load(Ordering::SeqCst)
                || fs::rename(m.join(format!("r{k}")), m.join(format!("r{k}.moved"))).is_err()
            {
                return;
            }
            pr.renames.store(k + 1, Ordering::SeqCst);
        }
    }));
    let (m, pr, st) = (mnt.to_path_buf(), p.clone(), stop.clone());
    hs.push(thread::spawn(move || {
        for k in 0..LINKED {
            let ok = fs::OpenOptions::new()
                .append(true)
                .open(m.join(format!("hl/h{k}a")))
                .and_then(|mut f| f.write_all(b"+new\n"));
            if st.load(Ordering::SeqCst) || ok.is_err() {
                return;
            }
            pr.linked_done.store(k + 1, Ordering::SeqCst);
        }
    }));
    let (m, pr, st) = (mnt.to_path_buf(), p.clone(), stop.clone());
    hs.push(thread::spawn(move || {
        let mut k = 0;
        while !st.load(Ordering::SeqCst) {
            let ok = if k < SMALL {
                fs::OpenOptions::new()
                    .append(true)
                    .open(m.join(format!("small/s{k}")))
                    .and_then(|mut f| f.write_all(b"+new\n"))
            } else {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(m.join(format!("new/f{}", k - SMALL)))
                    .and_then(|mut f| f.write_all(new_content(k - SMALL).as_bytes()))
            };
            if ok.is_err() {
                return;
            }
            k += 1;
            pr.small_done.store(k, Ordering::SeqCst);
        }
    }));
    hs
}

/// Lazy unmount of a dead mount: `umount -l` or `fusermount3 -uz`.
fn lazy_unmount(mnt: &Path, fusermount: bool) {
    let m = mnt.to_str().unwrap();
    if fusermount {
        common::run("fusermount3", &["-uz", m]);
    } else {
        common::run("umount", &["-l", m]);
    }
    assert_eq!(
        mounted_fstype(mnt),
        None,
        "still mounted after lazy unmount"
    );
}

/// `unionrs check` of the stack: (exit code, output lines).
fn unionrs_check(l: &Layers, repair: bool) -> (i32, Vec<String>) {
    let mut c = Command::new(unionrs_bin());
    c.arg("check")
        .arg(l.upper())
        .arg("--work")
        .arg(&l.work)
        .arg("--lower")
        .arg(l.l(1));
    if repair {
        c.arg("--repair");
    }
    let out = c.output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

/// Compares the merged big file with the lower one (plus the tail when it has it).
fn big_state(s: &Setup) -> &'static str {
    let m = s.l.m("big.bin");
    let len = fs::metadata(&m).unwrap().len();
    let with_tail = s.big_len + TAIL.len() as u64;
    assert!(
        len == s.big_len || len == with_tail,
        "big.bin has {len} bytes: neither {} (before) nor {with_tail} (after)",
        s.big_len
    );
    let upper_copy = s.l.upper().join("big.bin").exists();
    if !upper_copy {
        assert_eq!(len, s.big_len);
        return "not copied up";
    }
    let mut f = fs::File::open(&m).unwrap();
    let mut buf = vec![0u8; CHUNK];
    for i in 0..s.big_len / CHUNK as u64 {
        f.read_exact(&mut buf).unwrap();
        assert!(
            buf == block(i),
            "big.bin block {i} differs from the lower file: a half copy is visible"
        );
    }
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    if rest.is_empty() {
        "copied up, no tail"
    } else {
        assert_eq!(rest, TAIL, "big.bin tail");
        "copied up with tail"
    }
}

/// Every small object is before or after its operation; returns how many show "after".
fn small_state(l: &Layers, done: usize) -> usize {
    let mut after = 0;
    for k in 0..SMALL {
        let got = common::read(l.m(&format!("small/s{k}")));
        let (old, new) = (small_old(k), small_old(k) + "+new\n");
        let ok = match k.cmp(&done) {
            std::cmp::Ordering::Less => got == new,
            std::cmp::Ordering::Equal => got == old || got == new,
            std::cmp::Ordering::Greater => got == old,
        };
        assert!(ok, "small/s{k} = {got:?} with {done} ops done");
        after += usize::from(got == new);
    }
    let mut k = 0;
    loop {
        let p = l.m(&format!("new/f{k}"));
        let op = SMALL + k;
        match fs::read_to_string(&p) {
            Ok(got) => {
                let full = got == new_content(k);
                // The interrupted create may have made the file without its data yet.
                assert!(
                    full || (got.is_empty() && op == done),
                    "new/f{k} = {got:?} with {done} ops done"
                );
                assert!(
                    op <= done,
                    "new/f{k} exists but only {done} ops were started"
                );
                after += usize::from(full);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(op >= done, "new/f{k} lost: {done} ops had returned");
                break;
            }
            Err(e) => panic!("read {}: {e}", p.display()),
        }
        k += 1;
    }
    assert!(
        fs::metadata(l.m(&format!("new/f{}", k + 1))).is_err(),
        "a gap in new/"
    );
    after
}

/// Both names of each hard-linked file show one content, before or after its append.
fn linked_state(l: &Layers, done: usize) -> usize {
    let mut after = 0;
    for k in 0..LINKED {
        let a = common::read(l.m(&format!("hl/h{k}a")));
        let b = common::read(l.m(&format!("hl/h{k}b")));
        assert!(
            a == b,
            "hl/h{k}a and hl/h{k}b differ ({} / {} bytes)",
            a.len(),
            b.len()
        );
        let (old, new) = (linked_old(k), linked_old(k) + "+new\n");
        let ok = match k.cmp(&done) {
            std::cmp::Ordering::Less => a == new,
            std::cmp::Ordering::Equal => a == old || a == new,
            std::cmp::Ordering::Greater => a == old,
        };
        assert!(
            ok,
            "hl/h{k}a has {} bytes with {done} appends done",
            a.len()
        );
        after += usize::from(a == new);
    }
    after
}

/// Exactly one of d0/d1 shows, with the whole tree (the back-and-forth rename test).
fn swap_state(l: &Layers) -> &'static str {
    let (a, b) = (l.m("d0").exists(), l.m("d1").exists());
    let upper = common::snapshot::upper_snapshot(l.upper());
    assert!(
        a != b,
        "d0 exists: {a}, d1 exists: {b}: exactly one must; upper: {:#?}",
        upper
            .iter()
            .map(|(p, e)| (p, &e.kind, &e.xattrs))
            .collect::<Vec<_>>()
    );
    let name = if a { "d0" } else { "d1" };
    assert_eq!(read_tree(&l.m(name)), tree(), "contents of {name}");
    name
}

/// Each rK shows under exactly one name with its whole tree: renamed if its rename returned,
/// either name for the interrupted one, the old name for the rest.
fn rename_state(l: &Layers, done: usize) -> usize {
    let mut moved = 0;
    for k in 0..DIRS {
        let (a, b) = (
            l.m(&format!("r{k}")).exists(),
            l.m(&format!("r{k}.moved")).exists(),
        );
        assert!(
            a != b,
            "r{k} exists: {a}, r{k}.moved exists: {b}; {done} renames returned"
        );
        assert!(
            b == (k < done) || k == done,
            "r{k}.moved exists: {b} with {done} renames returned"
        );
        let name = if a {
            format!("r{k}")
        } else {
            format!("r{k}.moved")
        };
        assert_eq!(read_tree(&l.m(&name)), dir_tree(k), "contents of {name}");
        moved += usize::from(b);
    }
    moved
}

fn work_is_empty(l: &Layers) {
    let left: Vec<_> = fs::read_dir(l.work.join("work"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "W/work after remount: {left:?}");
}

#[test]
fn kill_during_copyup_rename_and_small_writes() {
    let _s = common::serial();
    let iters = env_num("UNIONRS_CRASH_ITERS").unwrap_or(if long() { 200 } else { 20 });
    let seed = env_num("UNIONRS_SEED").unwrap_or(0x5eed_2026);
    let s = setup(if long() { 384 } else { 256 });
    let mut rng = Rng(seed);

    // How long the big copy-up takes with the other workloads running (a busy machine
    // slows it down, so this is measured, not assumed): kills land in 0..1.3x that.
    reset(&s.l);
    let g = mount(Fs::Unionrs, &s.l, &[]);
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let hs = workloads(&s.l.mnt, &progress, &stop);
    while progress.big.load(Ordering::SeqCst) < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "big copy-up takes > 2 min"
        );
        thread::sleep(Duration::from_millis(2));
    }
    let copy_ms = t.elapsed().as_millis() as u64;
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().unwrap();
    }
    drop(g);
    let window = (copy_ms * 13 / 10).max(50);

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut stray_work = 0;
    let (mut renames, mut small_ops, mut linked_ops, mut mid_copy) = (0, 0, 0, 0);
    for it in 0..iters {
        reset(&s.l);
        let g = mount(Fs::Unionrs, &s.l, &[]);
        let pid = g.pid().unwrap();
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let hs = workloads(&s.l.mnt, &progress, &stop);
        let delay = rng.below(window);
        thread::sleep(Duration::from_millis(delay));
        sys::kill(pid, libc::SIGKILL).unwrap();
        stop.store(true, Ordering::SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        lazy_unmount(&s.l.mnt, it % 2 == 1);
        drop(g); // reaps the killed daemon

        // A partial copy of big.bin staged in W/work: this kill hit the copy-up mid-way.
        let staged: Vec<u64> = fs::read_dir(s.l.work.join("work"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap())
            .filter(|m| m.is_file() && m.len() >= 1 << 20)
            .map(|m| m.len() >> 20)
            .collect();
        if !staged.is_empty() {
            mid_copy += 1;
        }
        // What the crash left, as the fsck sees it: only staged copies in W/work.
        let (_, lines) = unionrs_check(&s.l, false);
        for line in &lines {
            assert!(
                line.starts_with("stray work entry: "),
                "iteration {it} (seed {seed:#x}, kill at {delay} ms): unexpected finding {line}"
            );
        }
        stray_work += lines.len();

        let g = mount(Fs::Unionrs, &s.l, &[]);
        work_is_empty(&s.l);
        let big = big_state(&s);
        let done = progress.small_done.load(Ordering::SeqCst);
        let small_after = small_state(&s.l, done);
        let linked = progress.linked_done.load(Ordering::SeqCst);
        let linked_after = linked_state(&s.l, linked);
        linked_ops += linked;
        let renamed = progress.renames.load(Ordering::SeqCst);
        let moved = rename_state(&s.l, renamed);
        renames += renamed;
        small_ops += done;
        *tally.entry(big.to_string()).or_default() += 1;
        eprintln!(
            "kill {it}: at {delay} ms; big.bin {big} (MiB staged in W/work: {staged:?}); {renamed} dir renames returned, {moved} \
             show renamed; {done} small ops returned, {small_after} show their result; \
             {linked} hard-link appends returned, {linked_after} show theirs"
        );
        drop(g);
        let (code, lines) = unionrs_check(&s.l, false);
        assert_eq!(code, 0, "check after a clean unmount: {lines:?}");
    }
    eprintln!(
        "seed {seed:#x}: {iters} kills survived (copy-up + append took {copy_ms} ms under load, \
         kills in 0..{window} ms); big.bin states {tally:?}, {mid_copy} kills hit its copy-up mid-way; {stray_work} stray work entries \
         found by check before remounts; {renames} dir renames, {small_ops} small ops and \
         {linked_ops} hard-link appends completed before kills"
    );
}

/// The daemon dies under a process that uses the mount: ENOTCONN, not a hang or EIO; a lazy
/// unmount cleans up (both tools), and a new mount of the same dirs works and sees the data.
#[test]
fn daemon_death_gives_enotconn_and_remount_works() {
    let _s = common::serial();
    let l = Layers::new(1);
    common::write(l.l(1).join("dir/file"), "lower\n");
    let mut passthrough_reads = 0;
    for fusermount in [false, true] {
        let g = mount(Fs::Unionrs, &l, &[]);
        common::write(l.m("dir/mine"), "upper\n");
        // Opened but never read, so no page of it is cached: a read must ask the daemon.
        let mut held = fs::File::open(l.m("dir/file")).unwrap();
        let dir_fd = fs::File::open(l.m("dir")).unwrap();
        sys::kill(g.pid().unwrap(), libc::SIGKILL).unwrap();
        // The connection is aborted once the daemon's exit closes its /dev/fuse fd. Cached
        // entries and attributes may still be served by the kernel (as for any FUSE fs), so
        // only requests that must reach the daemon are asserted.
        let deadline = Instant::now() + Duration::from_secs(5);
        while sys::errno(&sys::statfs(&l.mnt)) != libc::ENOTCONN {
            assert!(
                Instant::now() < deadline,
                "statfs: no ENOTCONN after the kill"
            );
            thread::sleep(Duration::from_millis(10));
        }
        // With FUSE passthrough an open file reads its backing file without the daemon, so a
        // read may still succeed; it must then give the right data, else ENOTCONN.
        let mut buf = [0u8; 16];
        match held.read(&mut buf) {
            Ok(n) => {
                assert_eq!(&buf[..n], b"lower\n", "read through a passthrough fd");
                passthrough_reads += 1;
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "read: {e}"),
        }
        assert_eq!(
            sys::errno(&fs::metadata(l.m("dir/never-looked-up"))),
            libc::ENOTCONN,
            "lookup"
        );
        assert_eq!(
            sys::errno(&fs::write(l.m("dir/new"), "x")),
            libc::ENOTCONN,
            "create"
        );
        assert_eq!(
            sys::errno(&fs::create_dir(l.m("newdir"))),
            libc::ENOTCONN,
            "mkdir"
        );
        lazy_unmount(&l.mnt, fusermount);
        drop(g);
        drop((held, dir_fd));

        let g = mount(Fs::Unionrs, &l, &[]);
        assert_eq!(common::read(l.m("dir/file")), "lower\n");
        assert_eq!(common::read(l.m("dir/mine")), "upper\n");
        common::write(l.m("dir/after"), "after\n");
        assert_eq!(common::read(l.m("dir/after")), "after\n");
        drop(g);
        fs::remove_file(l.upper().join("dir/after")).unwrap();
    }
    eprintln!("reads on fds opened before the kill served by passthrough: {passthrough_reads}/2");
}

/// A lower dir renamed back and forth (d0 -> d1 -> d0 ...): the way back renames an upper dir
/// onto the whiteout its first rename left. unionrs removes that whiteout first
/// (`clear_whiteout`) and renames after, so a kill between the two leaves upper `d1`
/// (redirect=/d0) beside a visible lower `d0`: one directory shows under both names. Kernel
/// overlayfs renames with RENAME_EXCHANGE onto the whiteout and unlinks it afterwards, so a
/// crash shows the old name or the new one, never both.
#[test]
fn kill_during_rename_back_onto_whiteout() {
    let _s = common::serial();
    // It stops at the first failure; the window is narrow, so give it many chances.
    let iters = env_num("UNIONRS_CRASH_ITERS").unwrap_or(300);
    let seed = env_num("UNIONRS_SEED").unwrap_or(0x5eed_2026);
    let mut rng = Rng(seed);
    let l = Layers::new(1);
    for (rel, content) in tree() {
        common::write(l.l(1).join("d0").join(&rel), &content);
    }
    for it in 0..iters {
        reset(&l);
        let g = mount(Fs::Unionrs, &l, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let (m, st) = (l.mnt.clone(), stop.clone());
        let h = thread::spawn(move || {
            let names = ["d0", "d1"];
            let mut i = 0;
            while !st.load(Ordering::SeqCst)
                && fs::rename(m.join(names[i % 2]), m.join(names[(i + 1) % 2])).is_ok()
            {
                i += 1;
            }
            i
        });
        let delay = 5 + rng.below(60);
        thread::sleep(Duration::from_millis(delay));
        sys::kill(g.pid().unwrap(), libc::SIGKILL).unwrap();
        stop.store(true, Ordering::SeqCst);
        let n = h.join().unwrap();
        lazy_unmount(&l.mnt, false);
        drop(g);
        let _g = mount(Fs::Unionrs, &l, &[]);
        work_is_empty(&l);
        let shown = swap_state(&l);
        eprintln!("kill {it} at {delay} ms after {n} renames: {shown} shown");
    }
}

/// metacopy=on: the data of a metacopy file is copied into the upper file in place (not
/// staged in W/work); a kill at any point of that copy must leave the file showing the lower
/// data (metacopy xattr still set, whatever part of the data had landed) or the complete
/// data, never a mix, with the metadata change kept either way.
#[test]
fn kill_during_metacopy_data_copyup() {
    let _s = common::serial();
    let iters = env_num("UNIONRS_CRASH_ITERS").unwrap_or(if long() { 60 } else { 8 });
    let seed = env_num("UNIONRS_SEED").unwrap_or(0x3e7a_c0b1);
    let mut rng = Rng(seed);
    let l = Layers::new(1);
    let blocks = 16; // 128 MiB
    let mut f = fs::File::create(l.l(1).join("big.bin")).unwrap();
    for i in 0..blocks {
        f.write_all(&block(i)).unwrap();
    }
    drop(f);
    let s = Setup {
        l,
        big_len: blocks * CHUNK as u64,
    };
    let upper_big = s.l.upper().join("big.bin");
    let chmod = |mode| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(s.l.m("big.bin"), fs::Permissions::from_mode(mode)).unwrap();
    };
    let append = |m: PathBuf, done: Arc<AtomicBool>| {
        thread::spawn(move || {
            let f = fs::OpenOptions::new().append(true).open(m.join("big.bin"));
            if let Ok(mut f) = f
                && f.write_all(TAIL).is_ok()
            {
                done.store(true, Ordering::SeqCst);
            }
        })
    };

    // How long the data copy-up takes here: kills land in 0..2x that.
    reset(&s.l);
    let g = mount(Fs::Unionrs, &s.l, &["metacopy=on"]);
    chmod(0o600);
    let t = Instant::now();
    append(s.l.mnt.clone(), Arc::new(AtomicBool::new(false)))
        .join()
        .unwrap();
    let window = (t.elapsed().as_millis() as u64 * 2).max(20);
    drop(g);

    let (mut mid_copy, mut tally) = (0, BTreeMap::<&str, usize>::new());
    for it in 0..iters {
        reset(&s.l);
        let g = mount(Fs::Unionrs, &s.l, &["metacopy=on"]);
        chmod(0o600);
        assert!(
            sys::lgetxattr(&upper_big, "trusted.overlay.metacopy").is_ok(),
            "chmod made no metacopy file"
        );
        let done = Arc::new(AtomicBool::new(false));
        let h = append(s.l.mnt.clone(), done.clone());
        let delay = rng.below(window);
        thread::sleep(Duration::from_millis(delay));
        sys::kill(g.pid().unwrap(), libc::SIGKILL).unwrap();
        h.join().unwrap();
        lazy_unmount(&s.l.mnt, it % 2 == 1);
        drop(g);
        let still_meta = sys::lgetxattr(&upper_big, "trusted.overlay.metacopy").is_ok();
        let upper_blocks = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(&upper_big).unwrap().blocks()
        };
        if still_meta && upper_blocks > 0 {
            mid_copy += 1;
        }
        let (code, lines) = unionrs_check(&s.l, false);
        assert_eq!(code, 0, "iteration {it}: check after the kill: {lines:?}");

        let g = mount(Fs::Unionrs, &s.l, &["metacopy=on"]);
        let state = big_state(&s);
        if done.load(Ordering::SeqCst) {
            assert_eq!(
                state, "copied up with tail",
                "iteration {it}: a returned append lost"
            );
        }
        if still_meta {
            assert_eq!(state, "copied up, no tail", "iteration {it}: metacopy file");
        }
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(s.l.m("big.bin")).unwrap().permissions().mode() & 0o7777
        };
        assert_eq!(mode, 0o600, "iteration {it}: the chmod was lost");
        *tally.entry(state).or_default() += 1;
        eprintln!(
            "kill {it} at {delay} ms: {state}, metacopy kept: {still_meta}, upper blocks {upper_blocks}"
        );
        if still_meta {
            // The data copy-up again, over what the killed one left: the result is whole.
            append(s.l.mnt.clone(), Arc::new(AtomicBool::new(false)))
                .join()
                .unwrap();
            assert_eq!(
                big_state(&s),
                "copied up with tail",
                "iteration {it}: retry"
            );
        }
        drop(g);
    }
    eprintln!(
        "seed {seed:#x}: {iters} kills (window {window} ms); states {tally:?}; {mid_copy} hit the data copy mid-way"
    );
}
