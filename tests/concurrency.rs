//! Concurrency hammer on one unionrs mount: worker threads create/write/append/rename/unlink/
//! mkdir/rmdir/stat/read/readdir in two shared merged directories, reader threads list them,
//! and copy-up racers open the same lower file for write at once. Bounded in time
//! (UNIONRS_HAMMER_SECS, default 10; UNIONRS_HAMMER_WORKERS, default 4). Every errno a
//! user would see fails the run: ESTALE, or EEXIST from mkdir of a name that did not exist.
//!
//! Deterministic by construction: worker t only ever touches names `t{t}_*`, so its model of
//! those names is exact, and every stat/read/readdir of its own names must match that model
//! whatever the other threads do. Checked: the daemon stays up (process alive, mount still
//! fuse.unionrs), no EIO/ENOTCONN ever, no unexpected errno on owned names, readdir of the
//! shared dirs never shows a duplicate or a `.wh.` name and always shows the untouched lower
//! names, racing copy-ups lose no write and never mix or truncate a version, and at the end
//! the tree matches the models, also when the upper is mounted under kernel overlayfs.

mod common;

use common::diffrun::Rng;
use common::snapshot::{assert_same_tree, tree_snapshot};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const DIRS: &[&str] = &["shared", "shared2"];
const LOWER_NAMES: usize = 12;
const RACERS: usize = 6;
const REGION: usize = 4096;
const WHOLE: usize = 32 * 1024;
/// Lower files for copy-up race rounds (each round uses one cu/ and one cw/ file).
const ROUNDS: usize = 400;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Debug, PartialEq)]
enum Ent {
    File(Vec<u8>),
    /// A dir holding one file `inner` with this content.
    Dir(Vec<u8>),
}

struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn err(&self, s: String) {
        let mut e = self.errors.lock().unwrap();
        if e.len() < 80 {
            e.push(s);
        }
    }
    /// Records an unexpected result; EIO and ENOTCONN are called out.
    fn bad(&self, what: &str, e: &std::io::Error) {
        let n = e.raw_os_error().unwrap_or(-1);
        let tag = if n == libc::EIO || n == libc::ENOTCONN {
            "EIO/ENOTCONN "
        } else {
            ""
        };
        self.err(format!("{tag}{what}: {e}"));
    }
}

fn lower_content(dir: &str, i: usize) -> Vec<u8> {
    format!("lower {dir} {i}\n").repeat(50).into_bytes()
}

fn racer_lower(i: usize) -> Vec<u8> {
    (0..RACERS * REGION + 1000)
        .map(|k| b'a' + ((k + i) % 26) as u8)
        .collect()
}

fn stack() -> Layers {
    let l = Layers::new(2);
    for d in DIRS {
        for i in 0..LOWER_NAMES {
            let layer = if i % 2 == 0 { 2 } else { 1 };
            fs::create_dir_all(l.l(layer).join(d)).unwrap();
            fs::write(l.l(layer).join(format!("{d}/low_{i}")), lower_content(d, i)).unwrap();
        }
        // `hidden` is in l2 and whited out in l1 (char 0/0): never listed.
        write(l.l(2).join(format!("{d}/hidden")), "hidden");
        whiteout(l.l(1).join(format!("{d}/hidden")), Whiteout::CharDev);
    }
    mkdir(l.l(2).join("cu"));
    mkdir(l.l(2).join("cw"));
    for r in 0..ROUNDS {
        fs::write(l.l(2).join(format!("cu/r{r}")), racer_lower(r)).unwrap();
        fs::write(l.l(2).join(format!("cw/r{r}")), racer_lower(r + 7)).unwrap();
    }
    mkdir(l.l(1).join("cu"));
    mkdir(l.l(1).join("cw"));
    l
}

fn content(t: usize, step: u64, rng: &mut Rng) -> Vec<u8> {
    let n = [0usize, 10, 100, 5000, 70_000][rng.below(5)];
    let mut v = format!("t{t} s{step}|").into_bytes();
    v.extend((0..n).map(|k| b'A' + ((k as u64 + step) % 26) as u8));
    v
}

/// Worker `t`: random ops on its own names; checks every result against its model.
fn worker(mnt: &Path, t: usize, sh: &Shared) -> BTreeMap<String, Ent> {
    let mut rng = Rng::new(1000 + t as u64);
    let mut model: BTreeMap<String, Ent> = BTreeMap::new();
    let names: Vec<String> = DIRS
        .iter()
        .flat_map(|d| (0..6).map(move |k| format!("{d}/t{t}_{k}")))
        .collect();
    let mut step = 0u64;
    // The last steps of this worker, for the first problem it reports.
    let mut hist: std::collections::VecDeque<String> = Default::default();
    let mut reported = false;
    while !sh.stop.load(Ordering::Relaxed) {
        step += 1;
        sh.ops.fetch_add(1, Ordering::Relaxed);
        let p = names[rng.below(names.len())].clone();
        let q = names[rng.below(names.len())].clone();
        let (mp, mq) = (mnt.join(&p), mnt.join(&q));
        let errs_before = sh.errors.lock().unwrap().len();
        let kind = rng.below(10);
        let before = (model.get(&p).map(ent_kind), model.get(&q).map(ent_kind));
        hist.push_back(format!(
            "step {step}: op {kind} p={p} q={q} model before {before:?}"
        ));
        if hist.len() > 12 {
            hist.pop_front();
        }
        match kind {
            0 | 1 => {
                if !matches!(model.get(&p), Some(Ent::Dir(_))) {
                    let c = content(t, step, &mut rng);
                    match fs::write(&mp, &c) {
                        Ok(()) => drop(model.insert(p, Ent::File(c))),
                        Err(e) => sh.bad(&format!("write {p}"), &e),
                    }
                }
            }
            2 => {
                if let Some(Ent::File(c)) = model.get_mut(&p) {
                    let add = format!("+{step}");
                    match OpenOptions::new()
                        .append(true)
                        .open(&mp)
                        .and_then(|mut f| f.write_all(add.as_bytes()))
                    {
                        Ok(()) => c.extend(add.as_bytes()),
                        Err(e) => sh.bad(&format!("append {p}"), &e),
                    }
                }
            }
            3 => {
                // rename a file over an absent name or a file; a dir only to an absent name
                let ok = matches!(
                    (model.get(&p), model.get(&q)),
                    (Some(Ent::File(_)), None | Some(Ent::File(_))) | (Some(Ent::Dir(_)), None)
                );
                if ok && p != q {
                    match fs::rename(&mp, &mq) {
                        Ok(()) => {
                            let e = model.remove(&p).unwrap();
                            model.insert(q, e);
                        }
                        Err(e) => sh.bad(&format!("rename {p} {q}"), &e),
                    }
                }
            }
            4 => match model.get(&p) {
                Some(Ent::File(_)) => match fs::remove_file(&mp) {
                    Ok(()) => drop(model.remove(&p)),
                    Err(e) => sh.bad(&format!("unlink {p}"), &e),
                },
                Some(Ent::Dir(_)) => {
                    match fs::remove_file(mp.join("inner")).and_then(|_| fs::remove_dir(&mp)) {
                        Ok(()) => drop(model.remove(&p)),
                        Err(e) => sh.bad(&format!("rmdir {p}"), &e),
                    }
                }
                None => {
                    // Must be ENOENT.
                    match fs::symlink_metadata(&mp) {
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                        r => sh.err(format!("lstat of absent {p}: {r:?}")),
                    }
                }
            },
            5 => {
                if let std::collections::btree_map::Entry::Vacant(slot) = model.entry(p.clone()) {
                    let c = content(t, step, &mut rng);
                    match fs::create_dir(&mp).and_then(|_| fs::write(mp.join("inner"), &c)) {
                        Ok(()) => drop(slot.insert(Ent::Dir(c))),
                        Err(e) => sh.bad(&format!("mkdir {p}"), &e),
                    }
                }
            }
            6 | 7 => {
                // stat + read back an owned name
                let r = match model.get(&p) {
                    Some(Ent::File(c)) => fs::read(&mp).map(|d| (d == *c, d.len(), c.len())),
                    Some(Ent::Dir(c)) => {
                        fs::read(mp.join("inner")).map(|d| (d == *c, d.len(), c.len()))
                    }
                    None => continue,
                };
                match r {
                    Ok((true, _, _)) => {}
                    Ok((false, got, want)) => sh.err(format!(
                        "read {p}: content differs from the last write ({got} bytes, want {want})"
                    )),
                    Err(e) => sh.bad(&format!("read {p}"), &e),
                }
            }
            _ => {
                // readdir one shared dir: my names there must be exactly my model's
                let d = DIRS[rng.below(DIRS.len())];
                match fs::read_dir(mnt.join(d)) {
                    Ok(rd) => {
                        let mut seen = BTreeSet::new();
                        for e in rd {
                            let Ok(e) = e else {
                                sh.err(format!("readdir {d}: entry error"));
                                continue;
                            };
                            let n = e.file_name().to_string_lossy().into_owned();
                            if n.starts_with(&format!("t{t}_")) {
                                seen.insert(format!("{d}/{n}"));
                            }
                        }
                        let mine: BTreeSet<String> = model
                            .keys()
                            .filter(|k| k.starts_with(&format!("{d}/")))
                            .cloned()
                            .collect();
                        if seen != mine {
                            sh.err(format!(
                                "readdir {d} by t{t}: own names {seen:?}, model {mine:?}"
                            ));
                        }
                    }
                    Err(e) => sh.bad(&format!("readdir {d}"), &e),
                }
            }
        }
        if !reported && sh.errors.lock().unwrap().len() > errs_before {
            reported = true;
            sh.err(format!(
                "t{t} history up to its first problem (ops: 0-1 write, 2 append, 3 rename p->q, 4 unlink/rmdir, 5 mkdir, 6-7 read, 8-9 readdir):\n    {}",
                hist.iter().cloned().collect::<Vec<_>>().join("\n    ")
            ));
        }
    }
    model
}

fn ent_kind(e: &Ent) -> &'static str {
    match e {
        Ent::File(_) => "file",
        Ent::Dir(_) => "dir",
    }
}

/// Lists the shared dirs: never a duplicate, never a `.wh.` name or `hidden`, always every
/// lower name (nobody touches them).
fn lister(mnt: &Path, sh: &Shared) {
    while !sh.stop.load(Ordering::Relaxed) {
        for d in DIRS {
            sh.ops.fetch_add(1, Ordering::Relaxed);
            let rd = match fs::read_dir(mnt.join(d)) {
                Ok(rd) => rd,
                Err(e) => {
                    sh.bad(&format!("readdir {d}"), &e);
                    continue;
                }
            };
            let mut seen = BTreeSet::new();
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(".wh.") || n == "hidden" {
                    sh.err(format!("readdir {d} shows {n}"));
                }
                if !seen.insert(n.clone()) {
                    sh.err(format!("readdir {d} lists {n} twice"));
                }
            }
            for i in 0..LOWER_NAMES {
                if !seen.contains(&format!("low_{i}")) {
                    sh.err(format!("readdir {d} misses low_{i}"));
                }
            }
            // A lower file read through the mount is always the lower content.
            let i = seen.len() % LOWER_NAMES;
            match fs::read(mnt.join(format!("{d}/low_{i}"))) {
                Ok(c) if c == lower_content(d, i) => {}
                Ok(_) => sh.err(format!("{d}/low_{i}: wrong content")),
                Err(e) => sh.bad(&format!("read {d}/low_{i}"), &e),
            }
        }
    }
}

/// One copy-up race round: RACERS threads open the same lower files for write at once, and
/// one more chmods and sets an xattr on cu/rN meanwhile (both must be kept).
/// cu/rN: thread i writes its own REGION at i*REGION (no truncation): every region must
/// land, the rest stays the lower content. cw/rN: each thread opens with O_TRUNC and writes a
/// whole WHOLE-byte version in one write: the result is exactly one of the versions.
fn race_round(mnt: &Path, r: usize, sh: &Shared) {
    let barrier = Arc::new(Barrier::new(RACERS + 1));
    std::thread::scope(|s| {
        // A metadata racer: chmod + setxattr (metadata-only copy-ups) while the writers open.
        let b2 = barrier.clone();
        s.spawn(move || {
            let p = mnt.join(format!("cu/r{r}"));
            b2.wait();
            sh.ops.fetch_add(2, Ordering::Relaxed);
            if let Err(e) =
                fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            {
                sh.bad(&format!("chmod cu/r{r}"), &e);
            }
            if let Err(e) = sys::lsetxattr(&p, "user.race", format!("{r}").as_bytes()) {
                sh.bad(&format!("setxattr cu/r{r}"), &e);
            }
        });
        for i in 0..RACERS {
            let barrier = barrier.clone();
            s.spawn(move || {
                let tag = |c: u8| vec![c; REGION];
                barrier.wait();
                sh.ops.fetch_add(2, Ordering::Relaxed);
                let f = OpenOptions::new()
                    .write(true)
                    .open(mnt.join(format!("cu/r{r}")));
                match f.and_then(|f| f.write_all_at(&tag(b'0' + i as u8), (i * REGION) as u64)) {
                    Ok(()) => {}
                    Err(e) => sh.bad(&format!("racer {i} cu/r{r}"), &e),
                }
                let v = vec![b'A' + i as u8; WHOLE];
                let f = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(mnt.join(format!("cw/r{r}")));
                match f.and_then(|mut f| f.write_all(&v)) {
                    Ok(()) => {}
                    Err(e) => sh.bad(&format!("racer {i} cw/r{r}"), &e),
                }
            });
        }
    });
    let mut want = racer_lower(r);
    for i in 0..RACERS {
        want[i * REGION..(i + 1) * REGION].fill(b'0' + i as u8);
    }
    match fs::read(mnt.join(format!("cu/r{r}"))) {
        Ok(got) if got == want => {}
        Ok(got) => {
            let lost: Vec<usize> = (0..RACERS)
                .filter(|i| {
                    got.get(i * REGION..(i + 1) * REGION)
                        != Some(&want[i * REGION..(i + 1) * REGION])
                })
                .collect();
            sh.err(format!(
                "cu/r{r}: {} bytes (want {}), regions of racers {lost:?} lost",
                got.len(),
                want.len()
            ))
        }
        Err(e) => sh.bad(&format!("read cu/r{r}"), &e),
    }
    let p = mnt.join(format!("cu/r{r}"));
    let mode = fs::metadata(&p)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
    let x = sys::lgetxattr(&p, "user.race").ok();
    if mode.as_ref().ok() != Some(&0o640) || x.as_deref() != Some(format!("{r}").as_bytes()) {
        sh.err(format!(
            "cu/r{r}: metadata lost in the race: mode {:?}, user.race {x:?}",
            mode.map(|m| format!("{m:o}"))
        ));
    }
    match fs::read(mnt.join(format!("cw/r{r}"))) {
        Ok(got)
            if got.len() == WHOLE
                && got.iter().all(|b| *b == got[0])
                && (b'A'..b'A' + RACERS as u8).contains(&got[0]) => {}
        Ok(got) => sh.err(format!(
            "cw/r{r}: not one whole version: {} bytes, first {:?}, distinct {:?}",
            got.len(),
            got.first().map(|b| *b as char),
            got.iter().collect::<BTreeSet<_>>().len()
        )),
        Err(e) => sh.bad(&format!("read cw/r{r}"), &e),
    }
}

#[test]
fn hammer() {
    // With UNIONRS_TEST_ONLY=kernel the same hammer runs on kernel overlayfs: a check of the
    // test's own expectations against the reference.
    let fs_ = if enabled_or_skip(
        Fs::Unionrs,
        "concurrency::hammer on unionrs (runs on the kernel)",
    ) {
        Fs::Unionrs
    } else {
        Fs::KernelOverlay
    };
    let _s = serial();
    let secs = env("UNIONRS_HAMMER_SECS", 10);
    let workers = env("UNIONRS_HAMMER_WORKERS", 4) as usize;
    let l = stack();
    let m = mount(fs_, &l, &[]);
    let pid = m.pid();
    let alive = |mnt: &Path| {
        pid.is_none_or(|p| sys::kill(p, 0).is_ok())
            && mounted_fstype(mnt).as_deref()
                == Some(if fs_ == Fs::Unionrs {
                    "fuse.unionrs"
                } else {
                    "overlay"
                })
    };
    let sh = Shared {
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
    };
    let t0 = Instant::now();
    let mut rounds = 0;
    let models: Vec<BTreeMap<String, Ent>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|t| {
                let (mnt, sh) = (&l.mnt, &sh);
                s.spawn(move || worker(mnt, t, sh))
            })
            .collect();
        for _ in 0..2 {
            let (mnt, sh) = (&l.mnt, &sh);
            s.spawn(move || lister(mnt, sh));
        }
        let deadline = t0 + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if rounds < ROUNDS {
                race_round(&l.mnt, rounds, &sh);
                rounds += 1;
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !alive(&l.mnt) {
                sh.err("daemon died or mount gone during the hammer".into());
                break;
            }
        }
        sh.stop.store(true, Ordering::Relaxed);
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let ops = sh.ops.load(Ordering::Relaxed);
    eprintln!(
        "hammer ({fs_:?}): {workers} workers + 2 listers + {rounds} copy-up race rounds x {RACERS} racers, {ops} ops in {elapsed:.1} s = {:.0} ops/s",
        ops as f64 / elapsed
    );
    assert!(
        alive(&l.mnt),
        "daemon not running or mount gone after the hammer:\n{}",
        m.log()
    );

    // Final state: every worker's names exactly as its model says.
    let check_final = |root: &Path, what: &str| {
        for (t, model) in models.iter().enumerate() {
            for d in DIRS {
                let mut found = BTreeMap::new();
                for e in fs::read_dir(root.join(d)).unwrap().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if !n.starts_with(&format!("t{t}_")) {
                        continue;
                    }
                    let p = root.join(d).join(&n);
                    let ent = if p.is_dir() {
                        Ent::Dir(fs::read(p.join("inner")).unwrap())
                    } else {
                        Ent::File(fs::read(&p).unwrap())
                    };
                    found.insert(format!("{d}/{n}"), ent);
                }
                let want: BTreeMap<_, _> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&format!("{d}/")))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if found != want {
                    let brief = |m: &BTreeMap<String, Ent>| {
                        m.iter()
                            .map(|(k, v)| {
                                format!(
                                    "{k}:{}",
                                    match v {
                                        Ent::File(c) => c.len(),
                                        Ent::Dir(c) => c.len(),
                                    }
                                )
                            })
                            .collect::<Vec<_>>()
                    };
                    sh.err(format!(
                        "{what}: final {d} of t{t}: {:?}, model {:?}",
                        brief(&found),
                        brief(&want)
                    ));
                }
            }
        }
        for d in DIRS {
            for i in 0..LOWER_NAMES {
                if fs::read(root.join(format!("{d}/low_{i}"))).ok() != Some(lower_content(d, i)) {
                    sh.err(format!("{what}: {d}/low_{i} changed"));
                }
            }
        }
    };
    check_final(&l.mnt, &format!("{fs_:?}"));
    let view = tree_snapshot(&l.mnt);
    let st = m.unmount();
    assert!(st.is_none_or(|s| s.success()), "daemon exit status {st:?}");

    // The same tree through kernel overlayfs over the unionrs upper.
    let k = mount(Fs::KernelOverlay, &l, &[]);
    check_final(&l.mnt, &format!("kernel over the {fs_:?} upper"));
    assert_same_tree(
        &view,
        &tree_snapshot(&l.mnt),
        "view vs kernel over the same upper",
    );
    drop(k);

    let errs = sh.errors.lock().unwrap();
    assert!(
        errs.is_empty(),
        "{} problems:\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
    assert!(ops > 0 && rounds > 0);
}

/// The kernel caches listings (FOPEN_CACHE_DIR) across handles: it records the directory's
/// version when a cache starts at offset 0 and appends whatever a handle reading on from the
/// cache's end returns. Interleaved by hand: handle A reads its first batch, B reads all
/// (the cache completes), a name from the end goes, C starts a new cache with its first
/// batch, then A reads on. A's rest must not come from its listing of before the unlink, or
/// the new cache ends with the removed name and every later listing shows it. Kernel
/// overlayfs is the reference.
#[test]
fn listing_cached_by_the_kernel_never_shows_a_removed_name() {
    let _s = serial();
    for fs_ in [Fs::KernelOverlay, Fs::Unionrs] {
        if !enabled_or_skip(
            fs_,
            &format!(
                "concurrency::listing_cached_by_the_kernel_never_shows_a_removed_name on {fs_:?}"
            ),
        ) {
            continue;
        }
        let l = Layers::new(1);
        // Long names: many batches (a FUSE readdir reply is one page).
        for i in 0..600 {
            write(l.l(1).join(format!("d/{i:04}-{}", "n".repeat(60))), "x");
        }
        let m = mount(fs_, &l, &[]);
        let d = l.m("d");
        // Copied up, so the listing comes from the upper each time.
        write(d.join("upper-file"), "u");
        let mut a = fs::read_dir(&d).unwrap();
        a.next().unwrap().unwrap();
        let all: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let last = all.last().unwrap().clone();
        fs::remove_file(d.join(&last)).unwrap();
        let mut c = fs::read_dir(&d).unwrap();
        c.next().unwrap().unwrap();
        let rest_of_a: Vec<String> = a
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        drop(c);
        assert!(
            rest_of_a.len() > 100,
            "{fs_:?}: the first batch took most of the listing"
        );
        for round in 0..2 {
            let now: BTreeSet<String> = fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(
                !now.contains(&last),
                "{fs_:?}: listing {round} after the unlink still shows {last}"
            );
            assert_eq!(now.len(), all.len() - 1, "{fs_:?}");
        }
        m.unmount();
    }
}
