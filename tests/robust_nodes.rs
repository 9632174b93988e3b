//! The inode table under the FORGET/lookup race that the long load test runs into.
//!
//! When the upper filesystem reuses the inode number of an unlinked file for a new one, the
//! kernel's FORGET for the old object (sent when it evicts that inode, processed whenever
//! the daemon gets to it) and the lookup/create reply for the new object hit the same node.
//! `NodeTable::remember` adds its lookup count after releasing the map entry, so a forget
//! that runs in between sees only the old count, removes the node, and the new object's
//! reference is lost: every later request for that node id fails (ENOENT) although the
//! kernel still holds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use unionrs::union::node::{Node, NodeState, NodeTable, ROOT};

fn state() -> NodeState {
    NodeState::new(None, b"f", true, Vec::new())
}

/// A node table holding only the root.
fn node_table() -> Arc<NodeTable> {
    Arc::new(NodeTable::new(Node::new(ROOT, libc::S_IFDIR, state())))
}

/// One thread takes a reference (remember) and hands each one to a second thread that drops
/// it (forget), as a create reply followed by the FORGET of that object would. Right after
/// `remember` returns, the reference just taken must keep the node in the table.
#[test]
fn remember_racing_forget_never_loses_a_referenced_node() {
    let table = node_table();
    let ino = 4242;
    // References taken and not yet dropped; the forgetter drops them as soon as they exist.
    let pending = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (t, p, st) = (table.clone(), pending.clone(), stop.clone());
    let forgetter = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) || p.load(Ordering::SeqCst) > 0 {
            if p.load(Ordering::SeqCst) > 0 {
                t.forget(ino, 1);
                p.fetch_sub(1, Ordering::SeqCst);
            } else {
                std::hint::spin_loop();
            }
        }
    });
    let mut lost = 0;
    let rounds = 5_000_000;
    for _ in 0..rounds {
        table.remember(ino, libc::S_IFREG, state(), || {
            unreachable!("no number is reused")
        });
        if table.get(ino).is_none() {
            lost += 1;
        }
        pending.fetch_add(1, Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    forgetter.join().unwrap();
    assert_eq!(
        lost, 0,
        "{lost} of {rounds} references were lost: the node was gone right after remember()"
    );
}

/// Two lookups of one live object at once (a lookup and a readdirplus of its directory, or
/// two of its names): the one that makes the node must not let the other see it before its
/// state is written. A node seen half-made looked deleted, so the other lookup moved the
/// number to a new node id: two nodes for one object, and a copy-up through one left the
/// other showing the lower file.
#[test]
fn concurrent_lookups_of_one_object_share_one_node() {
    let table = node_table();
    let ino = 4242;
    let moved = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let (t, moved) = (table.clone(), moved.clone());
            std::thread::spawn(move || {
                for _ in 0..500_000 {
                    let node = t.remember(ino, libc::S_IFREG, state(), || 1 << 60);
                    if node.ino != ino {
                        moved.fetch_add(1, Ordering::Relaxed);
                    }
                    t.forget(node.ino, 1);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let moved = moved.load(Ordering::Relaxed);
    assert_eq!(
        moved, 0,
        "{moved} lookups got a second node for a live object"
    );
}

/// getattr racing a lookup of the same inode. `Union::stat_node` (src/union/attr.rs) reads
/// `node.state.read().lowers.len() + usize::from(node.is_upper())` in one expression: the
/// first read guard lives to the end of the statement while `is_upper` takes a second one.
/// parking_lot's RwLock is fair: when a writer (`NodeTable::remember` from a lookup,
/// readdirplus or create of that inode) queues between the two reads, the second read waits
/// for the writer and the writer for the first read: the daemon deadlocks. Seen under the
/// 48-thread load test as a mount that hung for good (all workers parked on one node's
/// state lock, clients in D state); here without a mount.
#[test]
fn getattr_racing_lookup_never_deadlocks() {
    use std::time::{Duration, Instant};
    let (_dirs, lower, upper, work) = layer_dirs();
    std::fs::write(lower.join("f"), "x").unwrap();
    let u = union_over(lower, upper, work);
    let ino = u.lookup(u.root_ino(), b"f").unwrap().st_ino;
    let progress = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut hs = Vec::new();
    for (i, stat) in [(0, true), (1, false)] {
        let (u, p) = (u.clone(), progress.clone());
        hs.push(std::thread::spawn(move || {
            loop {
                if stat {
                    u.getattr(ino, None).unwrap();
                } else {
                    u.lookup(u.root_ino(), b"f").unwrap();
                    u.forget(ino, 1);
                }
                p[i].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    let mut last = (0, 0, Instant::now());
    while start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        let now = (
            progress[0].load(Ordering::Relaxed),
            progress[1].load(Ordering::Relaxed),
        );
        if now != (last.0, last.1) {
            last = (now.0, now.1, Instant::now());
        }
        assert!(
            last.2.elapsed() < Duration::from_secs(3),
            "deadlock: no getattr or lookup finished for 3 s (after {} getattrs and {} \
             lookups)",
            now.0,
            now.1
        );
    }
    // Workers loop forever; the test process ends with them.
    drop(hs);
}

/// create racing unlink of the same name in a shared directory. `Union::create` makes the
/// file (O_CREAT|O_EXCL), then sets owner and mode *by name* and looks the name up again
/// (`finish_create`); when another client unlinks or renames the name in between, the
/// lookup finds nothing and create fails with EIO (`ok_or(Errno::EIO)`), although the
/// caller's file was made (kernel overlayfs returns the open file). Seen once as an EIO in
/// the 48-thread load test (shared-dir creates against shared-dir unlinks and renames).
#[test]
fn create_racing_unlink_never_eio() {
    use std::time::{Duration, Instant};
    use unionrs::union::Ctx;
    let (_dirs, lower, upper, work) = layer_dirs();
    let u = union_over(lower, upper, work);
    let stop = Arc::new(AtomicBool::new(false));
    let (u2, st) = (u.clone(), stop.clone());
    let unlinker = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let _ = u2.unlink(u2.root_ino(), b"x");
        }
    });
    let ctx = Ctx::default();
    let (mut eio, mut made) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        match u.create(&ctx, u.root_ino(), b"x", 0o644, libc::O_WRONLY) {
            Ok((entry, fh)) => {
                made += 1;
                drop(u.release(fh));
                u.forget(entry.st_ino, 1);
            }
            Err(e) if e.0 == libc::EIO => eio += 1,
            Err(_) => {} // EEXIST / ENOENT: the race itself
        }
    }
    stop.store(true, Ordering::Relaxed);
    unlinker.join().unwrap();
    assert_eq!(eio, 0, "{eio} creates failed with EIO ({made} succeeded)");
}

/// Several clients look up and open the same lower file for append at once (each open
/// copies it up). The load test saw EIO from `open(O_WRONLY|O_APPEND)` of a lower file
/// through the mount (that EIO came from the kernel refusing a direct I/O open of an inode
/// with a passthrough backing: tests/robust_load.rs
/// `append_open_while_a_reader_holds_the_lower_file`). Every lookup and every open must
/// succeed: until the lookups stopped undoing copy-ups (`NodeState::predates_copy_up`) some
/// opens here got EEXIST or EROFS, which this test let pass then.
#[test]
fn concurrent_copy_up_opens_all_succeed() {
    let files = 2000;
    let (_dirs, u) = union_over_lower_files(files);
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (u, failed) = (u.clone(), failed.clone());
            std::thread::spawn(move || {
                for k in 0..files {
                    let name = format!("f{k}");
                    let e = match u.lookup(u.root_ino(), name.as_bytes()) {
                        Ok(e) => e,
                        Err(err) => {
                            failed
                                .lock()
                                .unwrap()
                                .push(format!("lookup {name}: {err:?}"));
                            continue;
                        }
                    };
                    match u.open(e.st_ino, libc::O_WRONLY | libc::O_APPEND) {
                        Ok(r) => drop(u.release(r)),
                        Err(err) => failed.lock().unwrap().push(format!("open {name}: {err:?}")),
                    }
                    if let Err(err) = u.getattr(e.st_ino, None) {
                        failed
                            .lock()
                            .unwrap()
                            .push(format!("getattr {name}: {err:?}"));
                    }
                    u.forget(e.st_ino, 1);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} lookups, opens for append and getattrs failed, first: {:?}",
        failed.len(),
        3 * 4 * files,
        &failed[..failed.len().min(5)]
    );
}

/// A temporary directory holding empty `l`, `u` and `w`: a lower, an upper and a workdir.
fn layer_dirs() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, work) = (t.path().join("l"), t.path().join("u"), t.path().join("w"));
    for d in [&lower, &upper, &work] {
        std::fs::create_dir(d).unwrap();
    }
    (t, lower, upper, work)
}

/// The union core over a lower holding `files` files `f0`, `f1`, ... (with the directory
/// that holds its layers).
fn union_over_lower_files(files: u64) -> (tempfile::TempDir, Arc<unionrs::union::Union>) {
    let (dirs, lower, upper, work) = layer_dirs();
    for k in 0..files {
        std::fs::write(lower.join(format!("f{k}")), "lower\n".repeat(50)).unwrap();
    }
    (dirs, union_over(lower, upper, work))
}

/// The union core over one lower, an upper and a workdir, without mounting (no fsync).
fn union_over(
    lower: std::path::PathBuf,
    upper: std::path::PathBuf,
    work: std::path::PathBuf,
) -> Arc<unionrs::union::Union> {
    use unionrs::union::{Union, UnionConfig};
    Arc::new(
        Union::new(&UnionConfig {
            lowers: vec![lower],
            upper: Some(upper),
            work: Some(work),
            fsync: false,
            user_markers: false,
            ids: Default::default(),
            acl: true,
            ..Default::default()
        })
        .unwrap(),
    )
}

/// A lookup of a name racing the copy-up of the same object (hammer: four racers got EEXIST
/// from their opens, and the name showed the lower file again although the copy had been
/// written). The lookup resolves the name through the layers, the copy-up finishes and marks
/// the node upper, then the lookup stores what it had found before: the node says "lower"
/// again, reads go to the lower file, and the next copy-up's rename finds the upper name
/// taken. The kernel sends such a lookup whenever it has no valid dentry for the name (one
/// was evicted, revalidated or never made) while another process opens it.
#[test]
fn lookup_racing_copy_up_never_undoes_it() {
    let files = 1500;
    let (_dirs, u) = union_over_lower_files(files);
    // The name the copier works on; the looker looks it up again and again meanwhile.
    let current = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let looker = {
        let (u, current, done) = (u.clone(), current.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let name = format!("f{}", current.load(Ordering::Relaxed));
                if let Ok(e) = u.lookup(u.root_ino(), name.as_bytes()) {
                    u.forget(e.st_ino, 1);
                }
            }
        })
    };
    let mut problems = Vec::new();
    for k in 0..files {
        current.store(k, Ordering::Relaxed);
        let name = format!("f{k}");
        let e = u.lookup(u.root_ino(), name.as_bytes()).unwrap();
        // Copied up and emptied (O_TRUNC): from now on the name is the empty upper file.
        match u.open(e.st_ino, libc::O_WRONLY | libc::O_TRUNC) {
            Ok(fh) => drop(u.release(fh)),
            Err(err) => problems.push(format!("{name}: first open: {err:?}")),
        }
        // Let the looker finish a lookup that started before the copy-up was done.
        std::thread::yield_now();
        if let Err(err) = u.open(e.st_ino, libc::O_WRONLY).map(|fh| u.release(fh)) {
            problems.push(format!("{name}: second open: {err:?}"));
        }
        let size = u.getattr(e.st_ino, None).map(|st| st.st_size);
        if size != Ok(0) {
            problems.push(format!(
                "{name}: size {size:?} after the truncating copy-up"
            ));
        }
        u.forget(e.st_ino, 1);
    }
    done.store(true, Ordering::Relaxed);
    looker.join().unwrap();
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
}
