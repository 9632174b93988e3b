//! Randomized differential test: seeded random 3-layer stacks (files, dirs, symlinks, hard-linked
//! pairs, char-dev and xattr whiteouts, opaque dirs: kernel format) and random op sequences over
//! a small name pool (so operations collide), run on kernel overlayfs (redirect_dir=on,index=on)
//! and unionrs over identical copies. Per step: errno and observations; merged views every step
//! (odd seeds) or at the end (even seeds, fewer lookups between ops); then the normalized upper
//! dirs; then the unionrs upper mounted under kernel overlayfs. See tests/common/diffrun.rs.
//!
//! Env: UNIONRS_DIFF_SEEDS (default 30), UNIONRS_DIFF_STEPS (default 40),
//! UNIONRS_DIFF_SEED (run only this seed), UNIONRS_DIFF_FIRST_SEED (default 0),
//! UNIONRS_DIFF_SHRINK_SECS (shrinking budget per distinct failure, default 60),
//! UNIONRS_DIFF_STRICT=1 (known open bugs, see KNOWN below, fail the run too),
//! UNIONRS_DIFF_NO_LOWER_LINKS=1 (no hard links in the lowers: explores past the known
//! lower-hard-link bugs, which otherwise end many sequences early),
//! UNIONRS_DIFF_METACOPY=1 (both sides mounted metacopy=on, see diffrun::metacopy_mode).
//! On failure: the seed, the failure and a shrunk case as ready-to-paste Rust for
//! tests/union_regressions.rs. With UNIONRS_TEST_ONLY=kernel both sides are the kernel.

mod common;

use common::diffrun::{self, Case, Failure};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_differential() {
    let _s = common::serial();
    let steps = env("UNIONRS_DIFF_STEPS", 40) as usize;
    let seeds: Vec<u64> = match std::env::var("UNIONRS_DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("UNIONRS_DIFF_SEED")],
        Err(_) => {
            let first = env("UNIONRS_DIFF_FIRST_SEED", 0);
            (first..first + env("UNIONRS_DIFF_SEEDS", 30)).collect()
        }
    };
    let t0 = Instant::now();
    let mut by_sig: BTreeMap<String, Vec<(u64, Case, Failure)>> = BTreeMap::new();
    let mut total_ops = 0;
    for &seed in &seeds {
        let (case, res) = diffrun::run_seed(seed, steps);
        total_ops += case.ops.len();
        if let Err(f) = res {
            eprintln!(
                "seed {seed}: [{}] {}",
                f.sig,
                f.msg.lines().take(3).collect::<Vec<_>>().join(" / ")
            );
            by_sig
                .entry(f.sig.clone())
                .or_default()
                .push((seed, case, f));
        }
    }
    eprintln!(
        "differential_random: {} seeds x {steps} steps ({total_ops} ops run) in {:.1} s, {} failing seeds, {} distinct failures",
        seeds.len(),
        t0.elapsed().as_secs_f64(),
        by_sig.values().map(Vec::len).sum::<usize>(),
        by_sig.len()
    );
    if by_sig.is_empty() {
        return;
    }
    let budget = Duration::from_secs(env("UNIONRS_DIFF_SHRINK_SECS", 60));
    let strict = std::env::var_os("UNIONRS_DIFF_STRICT").is_some();
    let mut report = String::new();
    let mut unknown = 0;
    for (sig, mut v) in by_sig {
        // Shrink the failing seed with the fewest steps first.
        v.sort_by_key(|(_, c, _)| c.ops.len() + c.lowers.len());
        let seeds: Vec<u64> = v.iter().map(|x| x.0).collect();
        let (seed, case, f) = v.swap_remove(0);
        let (small, runs) = diffrun::shrink(case, &sig, budget);
        let why = diffrun::run_case(&small)
            .err()
            .map(|f| f.msg)
            .unwrap_or(f.msg);
        let known = KNOWN.iter().find(|(_, m)| m(&sig, &small)).map(|(t, _)| *t);
        if known.is_none() || strict {
            unknown += 1;
        }
        report += &format!(
            "\n=== [{sig}] seeds {seeds:?}; shrunk from seed {seed} in {runs} runs{}:\n{why}\n\n// seed {seed}, [{sig}]\ndiffrun::check(&{});\n",
            known
                .map(|t| format!(" (KNOWN open bug, see union_regressions::{t})"))
                .unwrap_or_default(),
            diffrun::to_rust(&small)
        );
    }
    eprintln!("{report}");
    if unknown > 0 {
        panic!(
            "kernel overlayfs and {:?} differ:{report}",
            diffrun::other_fs()
        );
    }
}

/// Open unionrs bugs that have an ignored test in tests/union_regressions.rs, recognised by
/// the failure class and the SHRUNK case. They are reported (with the shrunk case) but do not
/// fail the default run; UNIONRS_DIFF_STRICT=1 makes them fail it too. Remove an entry when
/// its bug is fixed (the un-ignored regression test then guards it).
type Matcher = fn(&str, &Case) -> bool;
const KNOWN: &[(&str, Matcher)] = &[
    // Every hard-link bug found (lower hard links, or links made through the mount to lower
    // files): link counts after unlink/rename of a name, ENOENT/EEXIST/EINVAL from
    // rename/exchange/link/utimens on the other names, the wrong name copied up.
    (
        "unlink_lower_hardlink_updates_nlink (and the other *hardlink* tests)",
        |sig, c| {
            let hardlinked = c.lowers.iter().any(|l| matches!(l, diffrun::Lw::LLink(..)))
                || c.ops.iter().any(|o| matches!(o, diffrun::Op::Link(..)));
            let class = sig == "view:nlink"
                || sig == "remount:nlink"
                || sig.starts_with("errno:OpenUnlinkUse:")
                || sig.starts_with("upper:only-")
                || [
                    "errno:Rename:0:2",
                    "errno:Rename:0:17",
                    "errno:Exchange:0:2",
                    "errno:Exchange:0:17",
                    "errno:RenameNoReplace:0:2",
                    "errno:Link:0:2",
                    "errno:Utimes:0:22",
                ]
                .contains(&sig);
            hardlinked && class
        },
    ),
    (
        "exchange_new_dir_with_lower_dir_is_opaque (and ..._visible)",
        |sig, c| {
            let exchanged = c.ops.iter().any(|o| matches!(o, diffrun::Op::Exchange(..)));
            // The lower dir's entries show through: extra names, EEXIST on creating them,
            // ENOTEMPTY on removing the (empty) new dir.
            let visible = [
                "upper:opaque",
                "view:only in second",
                "remount:only in second",
                "errno:Rmdir:0:39",
            ]
            .contains(&sig)
                || (sig.starts_with("errno:") && sig.ends_with(":0:17"));
            visible && exchanged
        },
    ),
];

#[test]
#[ignore = "debug aid: prints the lowers of UNIONRS_DIFF_SEED"]
fn print_seed_lowers() {
    let seed = env("UNIONRS_DIFF_SEED", 0);
    for l in diffrun::describe_seed(seed) {
        println!("{l:?}");
    }
}
