//! Fixed differential cases found by tests/differential_random.rs where kernel overlayfs
//! (the reference, DESIGN.md §2) and unionrs differ. Each runs the full comparison of
//! tests/common/diffrun.rs (errno + observations per step, merged view, upper dir, unionrs
//! upper under the kernel). None is ignored: a case that fails is an open bug and fails the
//! run. With `UNIONRS_TEST_ONLY=kernel` (both sides the kernel) the cases themselves are
//! checked.
//!
//! `Scan` walks the whole tree (readdir, lstat, read, getxattr) between two steps: several bugs need the
//! names to be known to the daemon before the step that fails.

mod common;

use common::diffrun::{Case, M, check};
use common::diffrun::{Lw::*, Op::*};

fn run(c: Case) {
    let _s = common::serial();
    check(&c);
}

/// Two names of one lower file; unlink one; the other name must show nlink 1.
/// Kernel: d nlink 1. unionrs: d nlink 2 (also c/b + d/c in subdirs, and 3-name variants
/// showing 3 instead of 2).
#[test]
fn unlink_lower_hardlink_updates_nlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(1, "a", "ppppppppppppppppppp1", M(0o444)),
            LLink(1, "a", "d"),
        ],
        ops: vec![Unlink("a")],
    });
}

/// Lower file with names a and d; write through d (copy-up); open a, unlink a, fstat the fd.
/// Kernel: nlink 1 (d remains). unionrs: nlink 2.
#[test]
fn open_unlink_copied_up_hardlink_nlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(1, "a", "ttttttttttttttttt3", M(0o444)),
            LLink(1, "a", "d"),
        ],
        ops: vec![
            Append("d", "uuuuuuuuuu8"),
            OpenUnlinkUse("a", "rrrrrrrrrrrrrrrrrrrrrr1", 2),
        ],
    });
}

/// Lower file with 3 names a/c, a/d, d; rename a/d -> c; open c, unlink c, fstat the fd.
/// Kernel: nlink 2 (a/c and d remain). unionrs: nlink 1.
#[test]
fn rename_then_unlink_lower_hardlink_nlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(3, "a/c", "qq9", M(0o755)),
            LLink(3, "a/c", "a/d"),
            LLink(3, "a/c", "d"),
        ],
        ops: vec![Rename("a/d", "c"), OpenUnlinkUse("c", "4", 2)],
    });
}

/// Lower file with names a and c, both looked up; rename c -> b.
/// Kernel: success. unionrs: ENOENT. In a shell: `ls -l MNT; mv MNT/c MNT/b` fails
/// ("No such file or directory"); a second `mv` then succeeds.
#[test]
fn rename_looked_up_lower_hardlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(1, "a", "rrrrrrrrrrrrrrrrrr1", M(0o644)),
            LLink(1, "a", "c"),
        ],
        ops: vec![Scan, Rename("c", "b")],
    });
}

/// Same with RENAME_EXCHANGE: lower dir b/b (l2), lower file a with second name c/b (l1);
/// all looked up; exchange b/b <-> c/b. Kernel: success. unionrs: ENOENT.
#[test]
fn exchange_looked_up_lower_hardlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LDir(2, "b/b", M(0o755)),
            LFile(1, "a", "rrrrrrrr1", M(0o444)),
            LLink(1, "a", "c/b"),
        ],
        ops: vec![Scan, Exchange("b/b", "c/b")],
    });
}

/// Lower file with names a and b (l1), file c (l2), all looked up; rename c over b, then
/// rename a over b. Kernel: both succeed. unionrs: the second fails with EEXIST.
#[test]
fn rename_hardlink_over_replaced_alias() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(2, "c", "q*7957+3", M(0o444)),
            LFile(1, "a", "0", M(0o644)),
            LLink(1, "a", "b"),
        ],
        ops: vec![Scan, Rename("c", "b"), Scan, Rename("a", "b")],
    });
}

/// b (l3) and a lower file with names a and d (l1): exchange b <-> d, rename d over a,
/// utimensat(b). Kernel: success. unionrs: EINVAL.
#[test]
fn utimes_after_exchange_and_rename_over_alias() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(3, "b", "tttttttttt7", M(0o600)),
            LFile(1, "a", "ssssssssssssssss3", M(0o640)),
            LLink(1, "a", "d"),
        ],
        ops: vec![
            Exchange("b", "d"),
            Rename("d", "a"),
            Utimes("b", 1200000086, 291618489),
        ],
    });
}

/// Lower dir a (with a/x); new empty dir e; RENAME_EXCHANGE a <-> e. The new dir now at `a`
/// must be opaque (the kernel sets trusted.overlay.opaque=y on it), else a/x from the lower
/// shows through it.
#[test]
fn exchange_new_dir_with_lower_dir_is_opaque() {
    run(Case {
        every_step: false,
        lowers: vec![LDir(3, "a", M(0o755)), LFile(3, "a/x", "x", M(0o644))],
        ops: vec![Mkdir("e", M(0o555)), Exchange("a", "e")],
    });
}

/// The visible form of the previous bug: lower dir c/d holds symlink c/d/d; new dir e;
/// exchange c/d <-> e; rename e to c/d with RENAME_NOREPLACE (EEXIST on both).
/// Kernel: c/d is the new empty dir. unionrs: c/d lists the lower c/d/d (the same inode as
/// e/d), i.e. the lower dir shows through the new one.
#[test]
fn exchange_new_dir_with_lower_dir_visible() {
    run(Case {
        every_step: false,
        lowers: vec![LSymlink(2, "c/d/d", "d")],
        ops: vec![
            Mkdir("e", M(0o775)),
            Exchange("c/d", "e"),
            RenameNoReplace("e", "c/d"),
        ],
    });
}

/// Lower file with names b and d/d/a (l1), lower dir a (l2): rename b over a (EISDIR on
/// both), unlink d/d/a, exchange b <-> d/d. Kernel: success. unionrs: EEXIST.
#[test]
fn exchange_after_unlinking_other_hardlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LDir(2, "a", M(0o775)),
            LFile(1, "b", "ppppppp0", M(0o755)),
            LLink(1, "b", "d/d/a"),
        ],
        ops: vec![Rename("b", "a"), Unlink("d/d/a"), Exchange("b", "d/d")],
    });
}

/// Lower file with names b and d: rename d -> c, b -> a, link a d, create c exclusively
/// (EEXIST on both), open+unlink c, link d c. Kernel: success. unionrs: ENOENT.
#[test]
fn link_after_renames_of_lower_hardlink() {
    run(Case {
        every_step: false,
        lowers: vec![LFile(1, "b", "tt1", M(0o644)), LLink(1, "b", "d")],
        ops: vec![
            Rename("d", "d"),
            Rename("d", "c"),
            Rename("b", "a"),
            Link("a", "d"),
            CreateExcl("c", M(0o600)),
            OpenUnlinkUse("c", "rrr5", 50),
            Link("d", "c"),
        ],
    });
}

/// Lower file with names b/c and c/a/b; the other name looked up first (by a failing
/// RENAME_NOREPLACE onto it); then append through b/c. Kernel copies up b/c (upper has b/,
/// b/c). unionrs copied up c/a/b instead (upper had c/, c/a/, c/a/b, no b/): a FUSE open
/// names the node that both names share, and the kernel's cached dentry of b/c sent no new
/// LOOKUP before the append, so the copy-up took the other name and, under kernel
/// overlayfs, the unionrs upper showed the old data at b/c. Names of lower hard links not
/// yet copied up are now not cached (entry time-out 0): every walk looks the name up again.
#[test]
fn write_copies_up_the_name_written() {
    run(Case {
        every_step: false,
        lowers: vec![
            LSymlink(1, "a/d/c", "../e"),
            LDir(1, "b/b", M(0o775)),
            LFile(1, "b/c", "u9", M(0o755)),
            LLink(1, "b/c", "c/a/b"),
        ],
        ops: vec![
            RenameNoReplace("b/b", "b/c"),
            RenameNoReplace("a/d/c", "c/a/b"),
            Append("b/c", "u9"),
        ],
    });
}

/// Lower file b (l2), lower dir a (l1); rename a -> e; link b e/c; unlink b; link e/c b.
/// (Walking the tree between steps, as the per-step check does.) Kernel: success.
/// unionrs: the last link fails with ENOENT.
#[test]
fn link_from_second_name_after_unlinking_first() {
    run(Case {
        every_step: true,
        lowers: vec![
            LFile(2, "b", "ppppppppppp1", M(0o444)),
            LDir(1, "a", M(0o555)),
        ],
        ops: vec![
            Rename("a", "e"),
            Link("b", "e/c"),
            Unlink("b"),
            Link("e/c", "b"),
        ],
    });
}

/// Lower file d/c (l3); link d/c d/e; open d/c, unlink it, write + ftruncate through the fd;
/// utimensat(d/e). Kernel: success. unionrs: EINVAL. In a shell, with f in a lower:
/// `ln MNT/f MNT/g; rm MNT/f; touch -d @1200000000 MNT/g` -> "Invalid argument".
#[test]
fn utimes_on_second_name_after_unlinking_first() {
    run(Case {
        every_step: false,
        lowers: vec![LFile(3, "d/c", "tttttttttttttttttttt3", M(0o444))],
        ops: vec![
            Link("d/c", "d/e"),
            OpenUnlinkUse("d/c", "rrrrrrrr4", 7),
            Utimes("d/e", 1200000414, 971772062),
        ],
    });
}

/// Lower symlink a/b/a -> ../e (l2); rename a -> b (RENAME_NOREPLACE); link b/b/a e (a hard
/// link to the symlink); unlink b/b/a; removexattr through e/c/e, i.e. following e.
/// Kernel: ENOENT (e resolves to ../e, which does not exist). unionrs: EINVAL, the errno of
/// readlink on a non-symlink: the symlink reached through its second name no longer reads.
#[test]
fn symlink_hardlink_after_unlinking_first() {
    run(Case {
        every_step: false,
        lowers: vec![LSymlink(2, "a/b/a", "../e")],
        ops: vec![
            RenameNoReplace("a", "b"),
            Link("b/b/a", "e"),
            Unlink("b/b/a"),
            RemoveXattr("e/c/e", "user.x"),
        ],
    });
}

/// l3 has b/b/d; l1 has b (opaque) with an empty b/b. Rename b/b -> e (a redirect to
/// /b/b); mkdir e (EEXIST on both). Kernel: e is empty (the opaque b in l1 ends the merge,
/// so l3's b/b is not below it). unionrs: e lists d from l3.
#[test]
fn redirect_respects_opaque_parent_in_lower() {
    run(Case {
        every_step: false,
        lowers: vec![
            LSymlink(3, "b/b/d", "d"),
            LDir(1, "b/b", M(0o775)),
            LOpaque(1, "b"),
        ],
        ops: vec![RenameNoReplace("b/b", "e"), Mkdir("e", M(0o555))],
    });
}

/// Lower hard links a and b, both known to the kernel (a scan after every step): renaming
/// the name that is not the node's own failed with ENOENT (the copy-up made the upper copy
/// under the node's own name, b, and the rename then found no upper a). Seed 37.
#[test]
fn rename_other_name_of_lower_hardlink() {
    run(Case {
        every_step: true,
        lowers: vec![
            LFile(1, "a", "rrrrrrrrrrrrrrrrrrrr8", M(0o640)),
            LLink(1, "a", "b"),
        ],
        ops: vec![RenameNoReplace("c", "e"), Rename("a", "c")],
    });
}

/// The same for RENAME_EXCHANGE with the other name as the target (seed 137).
#[test]
fn exchange_with_other_name_of_lower_hardlink() {
    run(Case {
        every_step: true,
        lowers: vec![
            LFile(1, "a", "rrrrrrr2", M(0o600)),
            LLink(1, "a", "b"),
            LSymlink(1, "d", "c"),
        ],
        ops: vec![
            SetXattr("d", "user.y", "v30"),
            CreateExcl("a", M(0o444)),
            Exchange("d", "b"),
        ],
    });
}

/// Three names of one lower file in two dirs; unlinking one leaves an index copy with no
/// upper name yet (one link of its own): the other names showed nlink 1, not 2. Seed 41.
#[test]
fn unlink_one_of_three_lower_hardlinks_shows_two() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(3, "b/a", "uuuuuuuuuuuuuuuuuuu5", M(0o640)),
            LLink(3, "b/a", "b/b/a"),
            LLink(3, "b/a", "b/b/b"),
        ],
        ops: vec![Unlink("b/b/b")],
    });
}

/// Three names of one lower file; open one for writing (its copy goes to the index), unlink
/// it, fstat the fd: the two lower names left count (kernel: 2), unionrs showed the index
/// copy's own link count, 1. Seed 294.
#[test]
fn open_unlink_one_of_three_lower_hardlinks_nlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(3, "a", "qqqqqqqqqqqqqqqq1", M(0o600)),
            LLink(3, "a", "c"),
            LLink(3, "a", "d"),
        ],
        ops: vec![OpenUnlinkUse("d", "pppppp8", 7)],
    });
}

/// Three names of one lower file; a, then b, are looked up (failing unlinks below them),
/// then a is unlinked (its index copy is made then) and b written: the write must reach c
/// too. unionrs made a second copy for b, because b's node still pointed at the lower file:
/// c kept the old data (and seed 2134's deleted-but-open link count was off the same way).
#[test]
fn write_after_unlink_of_another_lower_hardlink_reaches_the_third() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(1, "a", "v1", M(0o644)),
            LLink(1, "a", "b"),
            LLink(1, "a", "c"),
        ],
        ops: vec![Unlink("a/x"), Unlink("b/x"), Unlink("a"), Append("b", "v2")],
    });
}

/// Lower file b with names b, c/a/b and c/b/a; an open for write through c/b/a copies it up
/// (index); then setxattr through c/a/b. Kernel: the xattr goes to the shared upper inode and
/// c/a/b gets no upper entry (`ovl_xattr_set` copies up only an inode without an upper).
/// unionrs linked c/a/b into the upper (creating c/a/), so the uppers differed. Found by
/// differential_random seed 340 once the KNOWN list was gone (issue 18).
#[test]
fn setxattr_through_another_name_of_a_copied_up_lower_hardlink() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(3, "b", "sssssssssssssssssssssss4", M(0o644)),
            LLink(3, "b", "c/a/b"),
            LLink(3, "b", "c/b/a"),
        ],
        ops: vec![
            Create("c/b/a", M(0o755)),
            SetXattr("c/a/b", "user.z", "v81"),
        ],
    });
}

/// Seeds 127 and 170 (CI of 2026-12-07, after the kernel index format): a hard-linked lower
/// file's copy, reached through an exchanged name, opened, then unlinked: its last name went,
/// so fstat of the open file shows nlink 0. The relative count ("U-1" on a copy with one link
/// left) came to 0, which was read as "no count" and fell back to the copy's own link (1).
#[test]
fn last_name_of_an_index_copy_unlinked_while_open_shows_nlink_0() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(1, "a", "rrrrrrrrrrrrrrrrrr1", M(0o644)),
            LLink(1, "a", "c"),
        ],
        ops: vec![
            Unlink("a"),
            Rename("c", "b"),
            Create("a", M(0o640)),
            Exchange("b", "a"),
            OpenUnlinkUse("a", "s2", 50),
        ],
    });
}

/// Seed 1057 (a run beyond CI's seeds, 2026-12-07): a lower file with names `b/a` and `d`,
/// `d` copied up (opened for writing), then a walk looks `b/a` up and the node follows that
/// name; the next open for writing through `d`, whose cached entry the kernel kept, copied up
/// `b/a` (and its directory) as well. Names of an indexed file are now looked up on every
/// walk, as those of a lower file with several names already were.
#[test]
fn open_through_a_cached_upper_name_copies_up_no_other_name() {
    run(Case {
        every_step: true,
        lowers: vec![
            LFile(2, "b/a", "ssssssssssssssssss6", M(0o644)),
            LLink(2, "b/a", "d"),
        ],
        ops: vec![Create("d", M(0o640)), Append("d", "uuuuuuuuuuuuu2")],
    });
}

/// Seed 1451 (beyond CI's seeds, passthrough off; pre-existing): a lower file with names
/// `b/a` and `b/b/d` opened read-write through `b/a` (copied up), `b/a` unlinked, then
/// ftruncate through the open file: the node had moved on to the name `b/b/d`, and the
/// truncate copied that name (and `b/b`) up. It now changes the index copy the file has open.
#[test]
fn ftruncate_of_an_open_copy_whose_name_went_copies_up_no_other_name() {
    run(Case {
        every_step: true,
        lowers: vec![
            LFile(2, "b/a", "u*6831+9", M(0o444)),
            LLink(2, "b/a", "b/b/d"),
        ],
        ops: vec![
            Mkdir("d/d", M(0o700)),
            OpenUnlinkUse("b/a", "rrrrrrrrrr9", 7),
        ],
    });
}

/// A lower directory exchanged with one name of a hard-linked lower file (RENAME_EXCHANGE
/// copies the file up through the index) while the view is taken after every step: the
/// other lower names must keep showing the copy's inode number. Seed 27 of the random
/// differential in CI's io_uring pass, once the queue threads waited at SCHED_IDLE.
#[test]
fn exchange_of_a_hard_linked_lower_name_keeps_the_group() {
    run(Case {
        every_step: true,
        lowers: vec![
            LFile(3, "a", "8", M(0o600)),
            LLink(3, "a", "b/a"),
            LLink(3, "a", "c"),
            LDir(2, "b/c", M(0o555)),
            LFile(1, "d", "pppppppp4", M(0o600)),
            LXattr(1, "d", "user.x", "l99"),
        ],
        ops: vec![Exchange("a", "b/c"), Create("b/a", M(0o644)), Rmdir("a")],
    });
}

/// A lower directory renamed into a new (upper-only) directory, then removed there: the
/// kernel leaves no whiteout (the name is in no lower copy of the parent; `ovl_lower_positive`
/// looks at the parent's lower directories, not at the removed directory's redirected lower
/// copy), unionrs left one, which the kernel, mounted on that upper, then listed in the
/// non-merged directory and could not stat. Random differential seed 5165.
#[test]
fn removing_a_renamed_lower_dir_from_an_upper_only_dir_leaves_no_whiteout() {
    run(Case {
        every_step: false,
        lowers: vec![LDir(1, "b/b", M(0o700))],
        ops: vec![
            Mkdir("e", M(0o555)),
            RenameNoReplace("b/b", "e/e"),
            Rmdir("e/e"),
        ],
    });
}

/// An upper-only directory made in the merged root (the kernel marks it opaque there) moved
/// below a directory remade over a whiteout: the kernel's upper has it opaque, unionrs's had
/// not (it marked only directories made over a lower name). Random differential seed 30417.
#[test]
fn a_directory_made_in_a_merged_dir_stays_opaque_when_moved() {
    run(Case {
        every_step: false,
        lowers: vec![
            LFile(3, "d", "rrrrrrr8", M(0o600)),
            LDir(2, "a/b", M(0o755)),
        ],
        ops: vec![
            Mkdir("e", M(0o555)),
            Exchange("a", "d"),
            OpenUnlinkUse("a", "pppppppppppppppppppp1", 7),
            Mkdir("a", M(0o755)),
            Rename("e", "a/b"),
        ],
    });
}

/// Lower hard links b and d read (each view opens both; the RELEASE of one comes after the
/// other's OPEN), then b is copied up through the index: the next open of d failed with
/// ENOENT once released handles were closed by the closing thread, which counted a backing
/// it had not dropped yet as an open handle of the inode (the open was answered ESTALE).
/// Timing-dependent here; `passthrough::tests` holds the deterministic case. Random
/// differential seed 41035.
#[test]
fn reading_hard_links_then_copying_one_up_keeps_the_other_readable() {
    run(Case {
        every_step: true,
        lowers: vec![
            LFile(3, "b", "ppppppppppppppppp5", M(0o600)),
            LLink(3, "b", "d"),
            LLink(2, "b", "d"),
            LDir(1, "a", M(0o555)),
        ],
        ops: vec![
            Write("c", 35, "qqqqqqqqqqqqqqqqqqqqqqq6"),
            Chown("b", 1234, 5678),
        ],
    });
}

/// A lower directory renamed over a non-empty directory that only the upper holds: ENOTEMPTY
/// on both, but the kernel leaves that emptiness to the upper's own rename and copies the
/// source (and the target's parent) up first, so its upper keeps a copy of `a/c` and of
/// `a`. unionrs checked first and copied nothing (random differential seed 41129).
#[test]
fn a_rename_refused_by_a_full_upper_dir_leaves_the_copies_up() {
    run(Case {
        every_step: false,
        lowers: vec![LDir(2, "a/c", M(0o750)), LFile(1, "b/x", "q1", M(0o644))],
        ops: vec![
            Mkdir("d", M(0o755)),
            Create("d/y", M(0o600)),
            Rename("a/c", "d"),
        ],
    });
}

/// A FIFO made through the mount, renamed, opened (O_RDWR), then unlinked: fstat of the open
/// FIFO failed with ENOENT on unionrs (the kernel serves FIFO opens itself, so the daemon
/// never knew it was open and kept nothing of it); the kernel shows it with st_nlink 0.
#[test]
fn an_open_fifo_keeps_its_attributes_after_unlink() {
    run(Case {
        every_step: false,
        lowers: vec![],
        ops: vec![
            Mkfifo("a", M(0o4755)),
            Rename("a", "c"),
            OpenUnlinkUse("c", "ttttttttttt2", 2),
        ],
    });
}
