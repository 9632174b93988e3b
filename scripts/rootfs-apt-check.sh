#!/usr/bin/env bash
# Acceptance check: a debootstrap'd Debian rootfs used as the only lower layer can be chrooted
# into through the mount, `apt-get install` of a package with dependencies succeeds, and the
# result lands in the upper dir (and survives a remount) while the lower stays unchanged.
#
#   bash scripts/rootfs-apt-check.sh            # through unionrs ($UNIONRS, default `unionrs`)
#   bash scripts/rootfs-apt-check.sh --kernel   # same steps on kernel overlayfs, for comparison
#   bash scripts/rootfs-apt-check.sh --both     # unionrs, then kernel; prints both times
#
# Environment: ROOTFS_CACHE (default /var/tmp/unionrs-rootfs; built with debootstrap if absent),
# MIRROR (default: the first Debian URI in /etc/apt/sources.list*), SUITE (bookworm),
# PKG (curl), PKG_BIN (the command to run to check it: curl), KEEP=1 keeps the temp dir.
# Root only. Needs network access to the Debian mirror for debootstrap and apt-get.
set -euo pipefail

UNIONRS=${UNIONRS:-unionrs}
ROOTFS=${ROOTFS_CACHE:-/var/tmp/unionrs-rootfs}
SUITE=${SUITE:-bookworm}
PKG=${PKG:-curl}
PKG_BIN=${PKG_BIN:-$PKG}

MODES=()
for a in "$@"; do
  case $a in
    --kernel) MODES+=(kernel) ;;
    --unionrs) MODES+=(unionrs) ;;
    --both) MODES+=(unionrs kernel) ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
[ ${#MODES[@]} -gt 0 ] || MODES=(unionrs)

[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 2; }

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; } # secs T0 T1
log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

# ---- cleanup: everything we mounted, deepest first; then temp dirs -----------------------
MOUNTED=() # mount points in the order mounted
TMP=""
umount_all() {
  local i m
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    m=${MOUNTED[$i]}
    if mountpoint -q "$m" 2>/dev/null; then
      umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null ||
        echo "warning: could not unmount $m" >&2
    fi
  done
  MOUNTED=()
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  umount_all
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if grep -qF " $TMP/" /proc/mounts; then
      echo "warning: something under $TMP is still mounted; left it in place" >&2
    elif [ "${KEEP:-0}" = 1 ]; then
      echo "kept $TMP" >&2
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mnt() { # mnt TARGET mount-args...: mount and remember it for cleanup
  local target=$1
  shift
  mount "$@" "$target"
  MOUNTED+=("$target")
}

# ---- 1) the rootfs ------------------------------------------------------------------------
mirror_url() {
  local u
  u=$(grep -hoE '^(URIs:|deb)[[:space:]]+[^[:space:]]*' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
    awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$u" ]; then # one-line format: deb [opts] URL suite...
    u=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
      grep -oE 'https?://[^[:space:]]*/debian/?' | head -n1 || true)
  fi
  printf '%s' "${u:-http://deb.debian.org/debian}"
}
MIRROR=${MIRROR:-$(mirror_url)}

if [ -x "$ROOTFS/usr/bin/apt-get" ] && [ -f "$ROOTFS/var/lib/dpkg/status" ] && [ -f "$ROOTFS/.debootstrap-done" ]; then
  log "reusing rootfs $ROOTFS"
else
  command -v debootstrap >/dev/null || fail "debootstrap not installed (apt-get install debootstrap)"
  log "debootstrap --variant=minbase $SUITE $ROOTFS $MIRROR"
  rm -rf "$ROOTFS"
  t0=$(date +%s.%N)
  debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >/tmp/rootfs-apt-check.debootstrap.log 2>&1 ||
    { tail -n 30 /tmp/rootfs-apt-check.debootstrap.log >&2; fail "debootstrap"; }
  # Leave no package lists in the rootfs: apt-get update must write them through the mount.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
  touch "$ROOTFS/.debootstrap-done"
  log "debootstrap took $(secs "$t0" "$(date +%s.%N)") s"
fi
[ ! -e "$ROOTFS/usr/bin/$PKG_BIN" ] || fail "$PKG_BIN is already in the rootfs; pick another PKG"
ENTRIES=$(find "$ROOTFS" | wc -l)
SIZE=$(du -sh "$ROOTFS" | cut -f1)
SIZE_MB=$(du -sm "$ROOTFS" | cut -f1)
log "rootfs: $ENTRIES entries, $SIZE ($SIZE_MB MB)"

lower_sum() { # file list with metadata + dpkg status + the tree's content of etc
  {
    (cd "$ROOTFS" && find . -printf '%p %M %U:%G %s %T@\n' | LC_ALL=C sort)
    sha256sum "$ROOTFS/var/lib/dpkg/status"
  } | sha256sum | cut -d' ' -f1
}
SUM_BEFORE=$(lower_sum)

TMP=$(mktemp -d /var/tmp/rootfs-apt-check.XXXXXX)

# ---- 2)-4) one run on one filesystem ------------------------------------------------------
declare -A RESULT_SECS RESULT_UPPER RESULT_UPDATE RESULT_DL
mount_union() { # mount_union MODE UPPER WORK MNT
  local mode=$1 up=$2 wk=$3 mp=$4
  case $mode in
    unionrs)
      "$UNIONRS" -o "lowerdir=$ROOTFS,upperdir=$up,workdir=$wk" "$mp" ||
        fail "unionrs mount exited $?"
      MOUNTED+=("$mp")
      mountpoint -q "$mp" || fail "unionrs exited 0 but $mp is not a mount point"
      ;;
    kernel) mnt "$mp" -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$up,workdir=$wk" ;;
  esac
}
chroot_mounts() { # bind the kernel's API filesystems into the merged root
  local mp=$1
  mnt "$mp/proc" -t proc proc
  mnt "$mp/sys" --rbind /sys
  mount --make-rslave "$mp/sys"
  mnt "$mp/dev" --rbind /dev
  mount --make-rslave "$mp/dev"
}

run_one() {
  local mode=$1
  local d=$TMP/$mode
  local up=$d/upper wk=$d/work mp=$d/merged
  mkdir -p "$up" "$wk" "$mp"
  log "== $mode: mount (lower=$ROOTFS)"
  mount_union "$mode" "$up" "$wk" "$mp"
  chroot_mounts "$mp"
  # DNS for apt inside the chroot: the host's resolv.conf (written through the mount).
  if ! cmp -s /etc/resolv.conf "$mp/etc/resolv.conf" 2>/dev/null; then
    cp -L /etc/resolv.conf "$mp/etc/resolv.conf"
  fi
  local chr=(chroot "$mp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)

  log "== $mode: chroot apt-get update"
  local t0 t1
  t0=$(date +%s.%N)
  "${chr[@]}" apt-get update >"$d/apt-update.log" 2>&1 ||
    { tail -n 30 "$d/apt-update.log" >&2; fail "$mode: chroot apt-get update"; }
  t1=$(date +%s.%N)
  RESULT_UPDATE[$mode]=$(secs "$t0" "$t1")

  # Fetch the .debs first so that the timed install is unpack + configure, not the network.
  log "== $mode: chroot apt-get install --download-only $PKG"
  t0=$(date +%s.%N)
  "${chr[@]}" apt-get install -y --no-install-recommends --download-only "$PKG" >"$d/apt-download.log" 2>&1 ||
    { tail -n 30 "$d/apt-download.log" >&2; fail "$mode: chroot apt-get install --download-only $PKG"; }
  t1=$(date +%s.%N)
  RESULT_DL[$mode]=$(secs "$t0" "$t1")

  log "== $mode: chroot apt-get install -y --no-install-recommends $PKG"
  t0=$(date +%s.%N)
  "${chr[@]}" apt-get install -y --no-install-recommends "$PKG" >"$d/apt-install.log" 2>&1 ||
    { tail -n 40 "$d/apt-install.log" >&2; fail "$mode: chroot apt-get install $PKG"; }
  t1=$(date +%s.%N)
  RESULT_SECS[$mode]=$(secs "$t0" "$t1")
  local npk
  npk=$(grep -c '^Setting up ' "$d/apt-install.log" || true)
  log "$mode: installed $PKG and $((npk - 1)) dependencies in ${RESULT_SECS[$mode]} s" \
    "(apt-get update ${RESULT_UPDATE[$mode]} s, download ${RESULT_DL[$mode]} s)"

  # 3) checks
  "${chr[@]}" "$PKG_BIN" --version >"$d/version.out" 2>&1 ||
    { cat "$d/version.out" >&2; fail "$mode: $PKG_BIN --version in the chroot"; }
  log "$mode: $(head -n1 "$d/version.out")"
  "${chr[@]}" dpkg -s "$PKG" | grep -q '^Status: install ok installed' ||
    fail "$mode: dpkg -s $PKG does not show it installed"
  "${chr[@]}" dpkg --audit >"$d/audit.out" 2>&1 && [ ! -s "$d/audit.out" ] ||
    { cat "$d/audit.out" >&2; fail "$mode: dpkg --audit reports problems"; }
  [ -f "$up/usr/bin/$PKG_BIN" ] || fail "$mode: $up/usr/bin/$PKG_BIN not in the upper dir"
  [ ! -e "$ROOTFS/usr/bin/$PKG_BIN" ] || fail "$mode: $PKG_BIN leaked into the lower rootfs"
  [ -f "$up/var/lib/dpkg/status" ] || fail "$mode: dpkg status was not copied up"
  grep -q "^Package: $PKG\$" "$up/var/lib/dpkg/status" || fail "$mode: $PKG not in upper dpkg status"
  # every file of the package as dpkg lists it is in the merged tree
  local f missing=0
  while IFS= read -r f; do
    [ -e "$mp$f" ] || [ -L "$mp$f" ] || { echo "missing: $f" >&2; missing=1; }
  done < <("${chr[@]}" dpkg -L "$PKG")
  [ "$missing" = 0 ] || fail "$mode: files listed by dpkg -L $PKG are missing"
  RESULT_UPPER[$mode]=$(find "$up" -mindepth 1 | wc -l)
  log "$mode: upper dir has ${RESULT_UPPER[$mode]} entries ($(du -sh "$up" | cut -f1))"

  # 4) unmount, remount the same upper, check again
  log "== $mode: unmount and remount with the same upper"
  umount_all
  ! grep -qF " $mp " /proc/mounts || fail "$mode: $mp still mounted after umount"
  [ "$(lower_sum)" = "$SUM_BEFORE" ] || fail "$mode: the lower rootfs changed"
  mount_union "$mode" "$up" "$wk" "$mp"
  "${chr[@]}" "$PKG_BIN" --version >/dev/null 2>&1 || fail "$mode: $PKG_BIN gone after remount"
  "${chr[@]}" dpkg -s "$PKG" | grep -q '^Status: install ok installed' ||
    fail "$mode: $PKG not installed after remount"
  umount_all
  ! grep -qF " $mp " /proc/mounts || fail "$mode: $mp still mounted after the final umount"
  [ "$(lower_sum)" = "$SUM_BEFORE" ] || fail "$mode: the lower rootfs changed"
  log "$mode: PASS"
}

if [[ " ${MODES[*]} " == *" unionrs "* ]]; then
  command -v "$UNIONRS" >/dev/null || fail "unionrs binary '$UNIONRS' not found (set UNIONRS=)"
fi
for m in "${MODES[@]}"; do run_one "$m"; done

for m in "${MODES[@]}"; do
  printf 'SUMMARY %s: rootfs entries=%s size=%sMB apt-get-update=%ss download=%ss apt-get-install(%s)=%ss upper-entries=%s PASS\n' \
    "$m" "$ENTRIES" "$SIZE_MB" "${RESULT_UPDATE[$m]}" "${RESULT_DL[$m]}" "$PKG" "${RESULT_SECS[$m]}" "${RESULT_UPPER[$m]}"
done
