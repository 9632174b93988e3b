#!/usr/bin/env bash
# Set up, then run every check CI runs: formatting, clippy, the conformance gate and the test
# suite in three passes.
#
#   bash scripts/test.sh [ARGS...]    (as root, from a clone; ARGS go to each cargo test pass)
#
# The integration tests in tests/ really mount through FUSE: they need root, /dev/fuse,
# fuse3, attr and acl, which setup.sh provides. Passes (each --no-fail-fast, so one failing
# test binary hides no other; a failed pass does not stop the next, the script fails at the
# end if any did):
#   1. conformance.sh: pjdfstest and fsx (fsx with passthrough on and off), bounded time-outs;
#   2. cargo test --profile ci-debug: the whole suite with debug assertions and overflow
#      checks on (Cargo.toml), over the /dev/fuse transport (UNIONRS_IO_URING=off);
#   3. UNIONRS_NO_PASSTHROUGH=1 UNIONRS_DIR_HANDLES=0: the differential tests again with FUSE
#      passthrough off and no directory handle kept, so the daemon's own read/write/mmap path
#      and its uncached lookups and listings (what a mount past its handle budget does) are
#      compared with the kernel too;
#   (the random differential test runs 100 other seeds in each of 2-4)
#   4. cargo test --release: the whole suite as shipped, over FUSE io_uring (setup.sh enables
#      the kernel's parameter). It runs last, so its summary lines
#      ("test result: ...") are the last lines printed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# rustup lives in $HOME/.cargo; some CI runners start without HOME.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"

# Each step's start time (UTC), so the log shows what each pass costs.
step() { printf '\n==== %s ==== %s\n' "$*" "$(date -u +%T)"; }

step "setup"
bash "$ROOT/scripts/setup.sh"

# setup.sh may have just installed Rust with rustup; its PATH change does not reach us.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi

cd "$ROOT"
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features -- -D warnings
# Never set in CI: it would leave the tests of one filesystem out (scripts/test-only.sh).
unset UNIONRS_TEST_ONLY UNIONRS_NO_PASSTHROUGH UNIONRS_IO_URING UNIONRS_DIR_HANDLES
FAILED=()

step "conformance: pjdfstest and fsx, unionrs against kernel overlayfs (bounded runs)"
bash "$ROOT/scripts/conformance.sh" || FAILED+=("conformance")

# The random differential test takes 100 seeds in each pass, a different 100 each time
# (0-99 release, 100-199 ci-debug, 200-299 passthrough off): 300 per CI run for ~1 min.
export UNIONRS_DIFF_SEEDS=100

# The debug-assertions pass also covers the second transport: FUSE over /dev/fuse
# (UNIONRS_IO_URING=off); the release pass below runs over io_uring, which setup.sh enables.
# --all-features everywhere: the fuzz regressions replay needs the `fuzzing` feature.
step "cargo test --profile ci-debug --no-fail-fast, /dev/fuse transport (debug assertions, overflow checks)"
UNIONRS_IO_URING=off UNIONRS_DIFF_FIRST_SEED=100 cargo test --profile ci-debug --all-features --no-fail-fast "$@" \
  || FAILED+=("ci-debug tests (/dev/fuse)")

step "passthrough off, no kept directory handles: cargo test --release --no-fail-fast --test differential_random --test differential"
UNIONRS_NO_PASSTHROUGH=1 UNIONRS_DIR_HANDLES=0 UNIONRS_DIFF_FIRST_SEED=200 \
  cargo test --release --all-features --no-fail-fast --test differential_random --test differential \
  || FAILED+=("passthrough-off differential tests")

if [ ${#FAILED[@]} -gt 0 ]; then
  step "cargo test --release --all-features --no-fail-fast, io_uring transport (earlier failures: ${FAILED[*]})"
else
  step "cargo test --release --all-features --no-fail-fast, io_uring transport"
fi
# Release last, so its summary lines end the output; the exit status covers every pass.
rc=0
cargo test --release --all-features --no-fail-fast "$@" || rc=$?
[ ${#FAILED[@]} -eq 0 ] || exit 1
exit "$rc"
