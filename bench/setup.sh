#!/usr/bin/env bash
# Installs what bench/run.sh compares and drives (as root, Debian 12; idempotent):
#   - Debian packages: fio (random reads), fuse-overlayfs 1.x and unionfs-fuse (peers),
#     debootstrap (the base layer), attr (setfattr for the opaque directory);
#   - fuse-overlayfs 2.0 from crates.io into $TOOLS (the Rust peer);
#   - the base layer: a debootstrap minbase bookworm rootfs in $ROOTFS.
# unionrs itself is built with `cargo build --release` (scripts/setup.sh).
#
# Env: TOOLS (default /var/tmp/unionrs-bench-tools), ROOTFS (default /var/tmp/unionrs-rootfs),
#      MIRROR (default http://deb.debian.org/debian)
set -euo pipefail

TOOLS=${TOOLS:-/var/tmp/unionrs-bench-tools}
ROOTFS=${ROOTFS:-/var/tmp/unionrs-rootfs}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=(fio fuse-overlayfs unionfs-fuse debootstrap attr)

log() { printf '[bench-setup] %s\n' "$*"; }
die() { printf '[bench-setup] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (installs packages, debootstraps the base layer)"

missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$TOOLS/bin/fuse-overlayfs" ]; then
  command -v cargo >/dev/null || die "cargo not found (run scripts/setup.sh first)"
  log "cargo install fuse-overlayfs 2.0.0 into $TOOLS"
  CARGO_INSTALL_ROOT="$TOOLS" cargo install --locked fuse-overlayfs --version 2.0.0 ||
    CARGO_INSTALL_ROOT="$TOOLS" cargo install fuse-overlayfs --version 2.0.0
fi

if [ ! -f "$ROOTFS/.debootstrap-done" ]; then
  log "debootstrap --variant=minbase bookworm $ROOTFS"
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" > /tmp/bench-debootstrap.log 2>&1 ||
    { tail -n 30 /tmp/bench-debootstrap.log >&2; die "debootstrap failed"; }
  touch "$ROOTFS/.debootstrap-done"
fi
log "ready: fio $(fio --version), $TOOLS/bin/fuse-overlayfs, $ROOTFS"
