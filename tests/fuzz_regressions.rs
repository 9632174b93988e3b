//! Replays, through the same entry points the fuzz targets use (`unionrs::fuzzing`), every
//! input the fuzzers found a bug with (`fuzz/regressions/TARGET/`) and every target's seed
//! corpus (`fuzz/corpus/TARGET/`). Runs on stable Rust without cargo-fuzz, so each fixed
//! crash stays fixed in the normal test suite. See docs/reliability.md (Fuzzing).

use std::path::{Path, PathBuf};
use unionrs::fuzzing::{TARGETS, run};

fn fuzz_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
}

/// Runs target `target` on every file of `dir`; returns how many there were.
fn replay(target: &str, dir: &Path) -> usize {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        eprintln!("{target}: {}", f.display());
        run(target, &data);
    }
    files.len()
}

/// Every target has a seed corpus, and every seed passes the target's checks.
#[test]
fn seed_corpora_pass() {
    for t in TARGETS {
        let n = replay(t, &fuzz_dir("corpus").join(t));
        assert!(
            n > 0,
            "fuzz target {t} has no seed corpus in fuzz/corpus/{t}"
        );
    }
}

/// Every input a fuzzer crashed on before its fix now passes.
#[test]
fn crashes_found_by_fuzzing_stay_fixed() {
    let dir = fuzz_dir("regressions");
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions") {
        let target = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            TARGETS.contains(&target.as_str()),
            "fuzz/regressions/{target}: no such fuzz target"
        );
        replay(&target, &dir.join(&target));
    }
}
