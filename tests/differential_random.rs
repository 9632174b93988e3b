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
//! UNIONRS_DIFF_NO_LOWER_LINKS=1 (no hard links in the lowers),
//! UNIONRS_DIFF_METACOPY=1 (both sides mounted metacopy=on, see diffrun::metacopy_mode).
//! Every difference fails the run: the seed, the failure and a shrunk case as ready-to-paste
//! Rust for tests/union_regressions.rs. With UNIONRS_TEST_ONLY=kernel both sides are the kernel.

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
    let mut report = String::new();
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
        report += &format!(
            "\n=== [{sig}] seeds {seeds:?}; shrunk from seed {seed} in {runs} runs:\n{why}\n\n// seed {seed}, [{sig}]\ndiffrun::check(&{});\n",
            diffrun::to_rust(&small)
        );
    }
    panic!(
        "kernel overlayfs and {:?} differ:{report}",
        diffrun::other_fs()
    );
}
