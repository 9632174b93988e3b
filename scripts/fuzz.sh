#!/usr/bin/env bash
# Runs every coverage-guided fuzz target (fuzz/, cargo fuzz + libFuzzer) for a bounded time.
#
#   bash scripts/fuzz.sh SECONDS_PER_TARGET [TARGET...]
#
# Exits non-zero if any target finds a crash (a panic: a parser bug or a broken invariant,
# see src/fuzzing/); the input is then in fuzz/artifacts/TARGET/ and the log in
# fuzz/work/TARGET.log. Turn it into a regression: fix the bug, copy the input to
# fuzz/regressions/TARGET/, and `cargo test --features fuzzing --test fuzz_regressions` replays it from then on.
#
# Stable Rust only: cargo fuzz passes -Z flags (sanitizer, coverage) to rustc, which stable
# rustc accepts with RUSTC_BOOTSTRAP=1. Each target starts from its committed seeds
# (fuzz/corpus/TARGET, left untouched) plus what earlier runs found (fuzz/work/TARGET, not
# committed). The targets write their sandboxes under a tmpfs when there is one: the store
# fsyncs, and on a disk that alone divides the speed by ten.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi

secs=${1:?usage: fuzz.sh SECONDS_PER_TARGET [TARGET...]}
shift
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a positive number, not \"$secs\"" >&2; exit 2; }

cd "$ROOT/fuzz"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^unionrs-fuzz$')
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1

scratch_parent=/dev/shm
[ -d "$scratch_parent" ] && [ -w "$scratch_parent" ] || scratch_parent=${TMPDIR:-/tmp}
TMPDIR=$(mktemp -d "$scratch_parent/unionrs-fuzz.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

cargo fuzz build

failed=()
printf '%-18s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  log="work/$t.log"
  status=ok
  # -timeout: one input running longer than 10 s counts as a hang (a crash).
  if ! cargo fuzz run "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    status="CRASH: see fuzz/$log and fuzz/artifacts/$t/"
    failed+=("$t")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  corpus=$(find "work/$t" -type f | wc -l)
  printf '%-18s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$status"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
