#!/usr/bin/env bash
# Runs the tests with UNIONRS_TEST_ONLY=MODE and ends with the count of the tests that did not
# run as written. Never used by CI (scripts/test.sh does not set UNIONRS_TEST_ONLY).
#
#   bash scripts/test-only.sh kernel|unionrs [ARGS...]   (ARGS go to cargo test)
#
# kernel: the tests of both filesystems run on kernel overlayfs only, and the differential
# tests compare the kernel with itself: a check of the tests' own expectations against the
# reference. unionrs: the kernel side of `both!` tests is left out. Each test left out prints
# a SKIPPED line at once (tests/common/mod.rs `skipped`).
set -uo pipefail
case ${1:-} in kernel|unionrs) MODE=$1; shift ;; *) echo "usage: $0 kernel|unionrs [cargo test args]" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=${CARGO_TARGET_DIR:-$ROOT/target}/tmp/unionrs-test-only.skipped
rm -f "$LOG"
rc=0
(cd "$ROOT" && UNIONRS_TEST_ONLY=$MODE cargo test "$@") || rc=$?
n=$(cat "$LOG" 2>/dev/null | wc -l)
echo
echo "UNIONRS_TEST_ONLY=$MODE: $n test(s) SKIPPED or not run on unionrs as written (list: $LOG)"
exit "$rc"
