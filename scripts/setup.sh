#!/usr/bin/env bash
# Set up a Debian 12 machine (as root) to build, test and run unionrs.
#
#   bash scripts/setup.sh
#
# Idempotent: a second run skips apt when every package is already installed, reuses an
# existing Rust toolchain when it is new enough, and only rebuilds what changed.
#
# Environment:
#   PREFIX            install prefix for the binary (default /usr/local -> /usr/local/bin/unionrs)
#   CARGO_TARGET_DIR  honoured as cargo does (default: target/ in the repository)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
# rustup lives in $HOME/.cargo; some CI runners start without HOME.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
MIN_RUST_MINOR=85 # Rust 1.85: edition 2024

# Runtime: fuse3 (fusermount3, mount.fuse3). Tests: attr (getfattr/setfattr), acl (getfacl/setfacl).
# Build: gcc/make (build-essential), pkg-config. Toolchain download: curl, ca-certificates.
# Comparisons and differential tests: fuse-overlayfs.
# Image tests: skopeo, umoci, docker-registry (a loopback registry). Container tests: podman,
# buildah, runc, uidmap, busybox-static (the test images' rootfs). strace: the independent
# witness of the daemon's disk syncs (tests/union_options.rs).
PACKAGES=(fuse3 attr acl build-essential pkg-config ca-certificates curl fuse-overlayfs skopeo umoci docker-registry podman buildah runc uidmap busybox-static strace passt)

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (installs packages, loads fuse, installs to $PREFIX/bin)"

# --- 1. Debian packages ---------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "packages already installed: ${PACKAGES[*]}"
else
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- 2. /dev/fuse -----------------------------------------------------------------------------
if [ ! -c /dev/fuse ]; then
  log "/dev/fuse is missing; trying modprobe fuse"
  modprobe fuse 2>/dev/null || true
  [ -c /dev/fuse ] || log "warning: still no /dev/fuse: mounting (demo, integration tests) will fail"
fi
# FUSE over io_uring (kernel 6.14+, CONFIG_FUSE_IO_URING): off until root turns it on; the
# kernel then offers it at INIT and unionrs uses it (unless -o io_uring=off).
uring_param=/sys/module/fuse/parameters/enable_uring
if [ -w "$uring_param" ]; then
  if [ "$(cat "$uring_param")" != Y ]; then
    echo Y >"$uring_param" && log "FUSE over io_uring enabled ($uring_param)"
  fi
else
  log "no writable $uring_param (kernel without CONFIG_FUSE_IO_URING, or not root): FUSE over /dev/fuse only"
fi

# --- 3. Rust toolchain (>= 1.$MIN_RUST_MINOR) -------------------------------------------------
# A toolchain installed by rustup earlier may not be on PATH (fresh shell, CI).
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi

rust_new_enough() {
  local v minor
  command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1 || return 1
  v=$(rustc --version 2>/dev/null | awk '{print $2}') # e.g. 1.85.0
  [ "${v%%.*}" = 1 ] || return 1
  minor=${v#1.}
  minor=${minor%%.*}
  [ "$minor" -ge "$MIN_RUST_MINOR" ] 2>/dev/null
}

if rust_new_enough; then
  log "using $(cargo --version) at $(command -v cargo)"
else
  if command -v cargo >/dev/null 2>&1; then
    log "$(rustc --version 2>/dev/null || echo 'rustc: missing') is too old (need 1.$MIN_RUST_MINOR+); installing stable with rustup"
  else
    log "cargo not found; installing the stable Rust toolchain with rustup"
  fi
  if command -v rustup >/dev/null 2>&1; then
    rustup toolchain install stable --profile minimal
    rustup default stable
  else
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal ||
      die "installing Rust with rustup failed (is https://sh.rustup.rs reachable?)"
  fi
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
  rust_new_enough || die "rustc is still older than 1.$MIN_RUST_MINOR: $(rustc --version)"
  log "using $(cargo --version)"
fi

# scripts/test.sh needs rustfmt and clippy; rustup's minimal profile has neither.
components=()
cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
if [ "${#components[@]}" -gt 0 ]; then
  command -v rustup >/dev/null 2>&1 || die "missing ${components[*]} and there is no rustup to add them"
  log "adding toolchain components: ${components[*]}"
  rustup component add "${components[@]}"
fi

# --- 4. Build and install ---------------------------------------------------------------------
cd "$ROOT"
log "cargo build --release"
cargo build --release

target=${CARGO_TARGET_DIR:-target}
bin="$target/release/unionrs"
[ -x "$bin" ] || die "build produced no $bin"
# mount.fuse3 runs helpers with a sanitized PATH that has /usr/local/bin but not ~/.cargo/bin.
# Copy then rename, so a daemon running the old binary is never overwritten in place.
install -d "$PREFIX/bin"
install -m 0755 "$bin" "$PREFIX/bin/.unionrs.new"
mv -f "$PREFIX/bin/.unionrs.new" "$PREFIX/bin/unionrs"
log "installed $PREFIX/bin/unionrs"

# --- 5. mount(8) helper, man page, completions ------------------------------------------------
# `mount -t fuse.unionrs` (fstab, systemd .mount units) runs /sbin/mount.fuse.unionrs. On a
# merged-/usr system (Debian 12: /sbin -> usr/sbin) that is /usr/sbin/mount.fuse.unionrs; else
# /sbin, which is where mount(8) looks.
sbin=$(readlink -f /sbin)
install -d "$sbin"
install -m 0755 "$ROOT/mount-helper/mount.fuse.unionrs" "$sbin/.mount.fuse.unionrs.new"
mv -f "$sbin/.mount.fuse.unionrs.new" "$sbin/mount.fuse.unionrs"
log "installed $sbin/mount.fuse.unionrs (mount -t fuse.unionrs)"

man1="$PREFIX/share/man/man1"
"$PREFIX/bin/unionrs" generate-man "$man1"
log "installed man pages in $man1 (man unionrs, man unionrs-VERB)"

"$PREFIX/bin/unionrs" completions bash | install -D -m 0644 /dev/stdin "$PREFIX/share/bash-completion/completions/unionrs"
"$PREFIX/bin/unionrs" completions zsh | install -D -m 0644 /dev/stdin "$PREFIX/share/zsh/site-functions/_unionrs"
"$PREFIX/bin/unionrs" completions fish | install -D -m 0644 /dev/stdin "$PREFIX/share/fish/vendor_completions.d/unionrs.fish"
log "installed bash, zsh and fish completions under $PREFIX/share"
