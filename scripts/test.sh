#!/usr/bin/env bash
# Set up, then run every check CI runs: formatting, clippy, and the test suite.
#
#   bash scripts/test.sh [ARGS...]    (as root, from a clone; ARGS go to cargo test)
#
# The integration tests in tests/ really mount through FUSE: they need root, /dev/fuse,
# fuse3, attr and acl, which setup.sh provides. cargo test runs last, so its summary lines
# ("test result: ...") are the last lines printed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# rustup lives in $HOME/.cargo; some CI runners start without HOME.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"

step() { printf '\n==== %s ====\n' "$*"; }

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
step "conformance: pjdfstest and fsx, unionrs against kernel overlayfs (bounded runs)"
bash "$ROOT/scripts/conformance.sh"

step "cargo test --release --all-features"
# Release, so the test binaries share the build setup.sh just made.
# --all-features: the fuzz regressions replay needs the `fuzzing` feature.
exec cargo test --release --all-features "$@"
