#!/usr/bin/env bash
# Run the external conformance suites against unionrs, with plain ext4 and kernel overlayfs
# as baselines in the same run, and print what unionrs fails that kernel overlayfs passes.
#
#   sudo bash scripts/conformance.sh
#
# 1. pjdfstest (crates.io) on: the work directory's own filesystem ("ext4" here), kernel
#    overlayfs, unionrs. The overlays run the suite in a directory that exists in two lower
#    layers, so every test starts by copying a merged lower directory up.
# 2. fsx (crates.io) on unionrs, twice: with FUSE passthrough and without it (the daemon's
#    own data path), on files that start in a lower layer (the first open copies them up): FSX_OPS ops without mmap, FSX_MMAP_OPS ops with mmap, then 3 processes at
#    once (FSX_PAR_OPS each). The same seeds run on plain ext4 give the expected contents;
#    after an unmount and a fresh mount every file must be byte-identical to them.
#
# Environment (defaults in brackets):
#   UNIONRS        unionrs binary [target/release/unionrs, built if missing]
#   CONFORM_TOOLS  cargo install root for pjdfstest and fsx [/var/tmp/unionrs-conform-tools]
#   CONFORM_DIR    parent of the scratch dir; must be a disk filesystem [/var/tmp]
#   FSX_OPS [20000]  FSX_MMAP_OPS [5000]  FSX_PAR_OPS [5000]  FSX_SEED [1]
#   PJD_NAPTIME    pjdfstest naptime in seconds; 0.001 is below ext4's timestamp step [0.01]
#   PJD_TIMEOUT    seconds before a pjdfstest run counts as hung (fails the gate) [600]
#   FSX_TIMEOUT    seconds before one fsx run counts as hung (fails the gate) [300]
#   CONFORM_DEBUG  1: run the unionrs daemons as `unionrs -f -d` with stderr kept in the logs
#   SKIP_PJD / SKIP_FSX / SKIP_FSX_NOPT   1 to skip that part
# Needs root, /dev/fuse, fuse3, cargo. Logs stay in the scratch dir's logs/ (path printed);
# every mount the script made is unmounted on exit, whatever happens.
#
# The read-only tests of pjdfstest (*::erofs*) run `mount -o remount,ro MNT`: they run on the
# two overlays (their own mounts; unionrs remounts through mount-helper/mount.fuse.unionrs),
# and are skipped on the plain directory, which lives on the machine's root filesystem.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

TOOLS=${CONFORM_TOOLS:-/var/tmp/unionrs-conform-tools}
FSX_OPS=${FSX_OPS:-20000}
FSX_MMAP_OPS=${FSX_MMAP_OPS:-5000}
FSX_PAR_OPS=${FSX_PAR_OPS:-5000}
FSX_SEED=${FSX_SEED:-1}
PJD_NAPTIME=${PJD_NAPTIME:-0.01}
PJD_TIMEOUT=${PJD_TIMEOUT:-600}
FSX_TIMEOUT=${FSX_TIMEOUT:-300}

die() { echo "conformance: $*" >&2; exit 2; }
step() { printf '\n==== %s ====\n' "$*"; }

[ "$(id -u)" = 0 ] || die "run as root (pjdfstest's user-switching tests and mount need it)"
[ -c /dev/fuse ] || die "/dev/fuse missing"

# ---- tools ------------------------------------------------------------------------------
install_tool() { # crate version-req binary
  if [ ! -x "$TOOLS/bin/$3" ]; then
    step "cargo install $1 into $TOOLS"
    CARGO_INSTALL_ROOT="$TOOLS" cargo install --locked "$1" --version "$2" \
      || CARGO_INSTALL_ROOT="$TOOLS" cargo install "$1" --version "$2"
  fi
}
install_tool pjdfstest '^0.2' pjdfstest
install_tool fsx '^0.3' fsx
PJD=$TOOLS/bin/pjdfstest
FSX=$TOOLS/bin/fsx

if [ -z "${UNIONRS:-}" ]; then
  UNIONRS=${CARGO_TARGET_DIR:-$ROOT/target}/release/unionrs
  if [ ! -x "$UNIONRS" ]; then
    step "cargo build --release"
    (cd "$ROOT" && cargo build --release)
  fi
fi
[ -x "$UNIONRS" ] || die "no unionrs binary at $UNIONRS"

# ---- users pjdfstest switches to: nobody:nogroup (Debian) and tests:tests --------------
getent group tests >/dev/null || groupadd tests
getent passwd tests >/dev/null || useradd -M -d / -s /usr/sbin/nologin -g tests tests
NOBODY_GROUP=nogroup
getent group nogroup >/dev/null || NOBODY_GROUP=nobody

# ---- scratch dir, mounts, cleanup -------------------------------------------------------
W=$(mktemp -d "${CONFORM_DIR:-/var/tmp}/unionrs-conform.XXXXXX")
# mktemp makes it 0700: pjdfstest's tests that switch to nobody/tests must reach inside.
chmod 0755 "$W"
LOGS=$W/logs
mkdir -p "$LOGS"
MOUNTS=()
DEBUG_PIDS=()

is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }

cleanup() {
  local rc=$? i m pid
  set +e
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${MOUNTS[i]}
    if is_mounted "$m"; then
      umount "$m" 2>/dev/null || { sleep 1; umount "$m" 2>/dev/null; } || umount -l "$m"
    fi
  done
  # Anything else still mounted under the scratch dir (should be nothing).
  awk -v w="$W/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    echo "conformance: $m still mounted, lazy unmount" >&2
    umount -l "$m"
  done
  for pid in "${DEBUG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  # The backgrounded daemons exit on unmount; report (and end) any of ours that did not.
  sleep 0.5
  for pid in $(pgrep -f -- "unionrs .*$W/" || true); do
    echo "conformance: unionrs daemon $pid still running after unmount: $(tr '\0' ' ' </proc/"$pid"/cmdline)" >&2
    kill "$pid"
  done
  find "$W" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null
  echo "conformance: logs in $LOGS" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two lower layers that both hold directory d (pjdfstest runs inside it) and fsx/.
make_layers() { # base
  mkdir -p "$1"/{l1,l2,u,w,m} "$1"/l1/d "$1"/l2/d "$1"/l1/fsx "$1"/l2/fsx
  echo l1 >"$1/l1/d/from-l1"
  echo l2 >"$1/l2/d/from-l2"
}

mount_kovl() { # base
  mount -t overlay overlay -o "lowerdir=$1/l1:$1/l2,upperdir=$1/u,workdir=$1/w" "$1/m"
  MOUNTS+=("$1/m")
}

mount_unionrs() { # base logname
  local opts="lowerdir=$1/l1:$1/l2,upperdir=$1/u,workdir=$1/w" i
  MOUNTS+=("$1/m")
  if [ "${CONFORM_DEBUG:-0}" = 1 ]; then
    "$UNIONRS" -f -d -o "$opts" "$1/m" 2>"$LOGS/$2.daemon.log" &
    DEBUG_PIDS+=($!)
    for i in $(seq 100); do is_mounted "$1/m" && return 0; sleep 0.1; done
    die "unionrs -f -d did not mount $1/m (see $LOGS/$2.daemon.log)"
  else
    "$UNIONRS" -o "$opts" "$1/m" 2>"$LOGS/$2.daemon.log" || die "unionrs mount failed: $(cat "$LOGS/$2.daemon.log")"
  fi
}

alive() { # mountpoint: the daemon still answers
  is_mounted "$1" && timeout 10 stat "$1/." >/dev/null 2>&1
}

umount_one() { # mountpoint (a daemon that does not answer: lazy unmount, and the gate fails)
  if ! timeout 60 umount "$1"; then
    BROKEN+=("umount $1 failed or hung")
    umount -l "$1" || die "umount -l $1 failed"
  fi
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    [ "${MOUNTS[i]}" = "$1" ] && unset 'MOUNTS[i]'
  done
  MOUNTS=("${MOUNTS[@]}")
}

# ---- pjdfstest ----------------------------------------------------------------------------
declare -A PASS FAIL SKIP
# Hangs, time-outs and dead daemons: each fails the gate.
BROKEN=()
CANDS=(ext4 kernel-overlayfs unionrs)

run_pjd() { # name dir [config]
  local log=$LOGS/pjdfstest.$1.log rc=0 cfg=${3:-$W/pjdfstest.toml}
  echo "pjdfstest on $1 ($2)"
  timeout -k 10 "$PJD_TIMEOUT" "$PJD" -c "$cfg" -s "$W/secondary" -p "$2" >"$log.raw" 2>&1 || rc=$?
  sed 's/\x1b\[[0-9;]*m//g' "$log.raw" >"$log" && rm -f "$log.raw"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "  HUNG: pjdfstest did not finish in ${PJD_TIMEOUT}s" | tee -a "$log"
    BROKEN+=("pjdfstest on $1 hung (timeout ${PJD_TIMEOUT}s)")
  fi
  local sum
  sum=$(grep -E '^Summary:' "$log" || true)
  PASS[$1]=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$sum")
  FAIL[$1]=$(sed -nE 's/^Summary: ([0-9]+) failed.*/\1/p' <<<"$sum")
  SKIP[$1]=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$sum")
  [ -n "$sum" ] || BROKEN+=("pjdfstest on $1 printed no summary (exit $rc)")
  : "${PASS[$1]:=?}" "${FAIL[$1]:=?}" "${SKIP[$1]:=?}"
  # name<TAB>first message line, one line per failed test
  awk '/ FAILED$/ { n = $1; getline m; sub(/^[ \t]+/, "", m); print n "\t" m }' "$log" \
    | sort >"$LOGS/pjdfstest.$1.failed"
}

if [ "${SKIP_PJD:-0}" != 1 ]; then
  step "pjdfstest ($("$PJD" --version 2>/dev/null || echo pjdfstest))"
  cat >"$W/pjdfstest.toml" <<EOF
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
naptime = $PJD_NAPTIME
allow_remount = false

[dummy_auth]
entries = [["nobody", "$NOBODY_GROUP"], ["tests", "tests"]]
EOF
  # The overlays are mounts of their own, so their read-only tests may remount them
  # (`mount -o remount,ro MNT`; for unionrs through mount.fuse.unionrs, which setup.sh
  # installs). The plain directory lives on the machine's root filesystem: never there.
  sed 's/^allow_remount = false/allow_remount = true/' "$W/pjdfstest.toml" >"$W/pjdfstest-remount.toml"
  mkdir -p "$W/secondary"
  mount -t tmpfs -o size=64m conform-secondary "$W/secondary"
  MOUNTS+=("$W/secondary")

  mkdir -p "$W/ext4/d"
  FSTYPE=$(findmnt -no FSTYPE -T "$W/ext4")
  run_pjd ext4 "$W/ext4/d"

  make_layers "$W/kovl"
  mount_kovl "$W/kovl"
  run_pjd kernel-overlayfs "$W/kovl/m/d" "$W/pjdfstest-remount.toml"
  umount_one "$W/kovl/m"

  make_layers "$W/urs"
  mount_unionrs "$W/urs" pjdfstest.unionrs
  run_pjd unionrs "$W/urs/m/d" "$W/pjdfstest-remount.toml"
  if ! alive "$W/urs/m"; then
    echo "unionrs: mount no longer answers after pjdfstest (daemon crashed or hung)" | tee -a "$LOGS/pjdfstest.unionrs.log"
    BROKEN+=("unionrs daemon dead or hung after pjdfstest")
  fi
  umount_one "$W/urs/m"

  step "pjdfstest results (plain dir is $FSTYPE; *::erofs* skipped on the plain dir only)"
  printf '%-18s | %6s | %6s | %7s\n' candidate passed failed skipped
  printf '%-18s-+-%6s-+-%6s-+-%7s\n' ------------------ ------ ------ -------
  for c in "${CANDS[@]}"; do
    printf '%-18s | %6s | %6s | %7s\n' "$c" "${PASS[$c]}" "${FAIL[$c]}" "${SKIP[$c]}"
  done

  echo
  echo "unionrs failures that pass on kernel overlayfs:"
  join -t $'\t' -v 1 "$LOGS/pjdfstest.unionrs.failed" \
    <(cut -f1 "$LOGS/pjdfstest.kernel-overlayfs.failed") | sed 's/^/  /' | tee "$LOGS/pjdfstest.unionrs-only"
  [ -s "$LOGS/pjdfstest.unionrs-only" ] || echo "  (none)"
  echo "kernel overlayfs failures that pass on unionrs:"
  join -t $'\t' -v 1 "$LOGS/pjdfstest.kernel-overlayfs.failed" \
    <(cut -f1 "$LOGS/pjdfstest.unionrs.failed") | sed 's/^/  /' | tee "$LOGS/pjdfstest.kovl-only"
  [ -s "$LOGS/pjdfstest.kovl-only" ] || echo "  (none)"
  umount_one "$W/secondary"
fi

# ---- fsx ------------------------------------------------------------------------------------
# Run twice: with FUSE passthrough (the kernel does the data I/O on the layer files) and
# without (UNIONRS_NO_PASSTHROUGH=1 for the daemon: every read, write and mmap fault goes
# through the daemon's own data path, src/union/file.rs, as on rootless and noatime mounts).
FSX_RESULT=()
if [ "${SKIP_FSX:-0}" != 1 ]; then
  step "fsx ($("$FSX" --version 2>/dev/null || echo fsx))"
  # Every operation fsx 0.3 knows, mmap off / on.
  common='close_open = 1
read = 10
write = 10
truncate = 5
fsync = 1
fdatasync = 1
posix_fallocate = 1
punch_hole = 1
sendfile = 1
posix_fadvise = 1
copy_file_range = 1'
  printf '[weights]\n%s\nmapread = 0\nmapwrite = 0\ninvalidate = 0\n' "$common" >"$W/fsx-nommap.toml"
  printf '[weights]\n%s\nmapread = 10\nmapwrite = 10\ninvalidate = 1\n' "$common" >"$W/fsx-mmap.toml"

  # name ops config seed
  JOBS=("nommap $FSX_OPS nommap $FSX_SEED"
        "mmap $FSX_MMAP_OPS mmap $((FSX_SEED + 1))"
        "par1 $FSX_PAR_OPS nommap $((FSX_SEED + 2))"
        "par2 $FSX_PAR_OPS mmap $((FSX_SEED + 3))"
        "par3 $FSX_PAR_OPS nommap $((FSX_SEED + 4))")

  fsx_run() { # dir name ops config seed -> log (bounded: rc 124 on a hang)
    mkdir -p "$LOGS/fsx-art-$FSX_TAG-$2"
    timeout -k 10 "$FSX_TIMEOUT" "$FSX" -N "$3" -S "$5" -f "$W/fsx-$4.toml" -P "$LOGS/fsx-art-$FSX_TAG-$2" "$1/$2" \
      >"$LOGS/fsx.$FSX_TAG.$2.log" 2>&1
  }

  # The same seeds on plain disk give the expected contents.
  mkdir -p "$W/fsxref"
  FSX_TAG=ref
  for j in "${JOBS[@]}"; do
    read -r name ops conf seed <<<"$j"
    fsx_run "$W/fsxref" "$name" "$ops" "$conf" "$seed" || die "fsx failed on plain $W/fsxref ($name)"
  done

  fsx_pass() { # tag passthrough(on|off)
    local tag=$1 pt=$2 base=$W/fsx-$1 j name ops conf seed rc p r c
    local -A FRC
    local pids=()
    FSX_TAG=$tag
    make_layers "$base"
    for j in "${JOBS[@]}"; do
      read -r name _ _ _ <<<"$j"
      # The files start in the lowest layer with data fsx will O_TRUNC away: copy-up first.
      head -c 300000 /dev/urandom >"$base/l2/fsx/$name"
    done
    if [ "$pt" = off ]; then export UNIONRS_NO_PASSTHROUGH=1; fi
    mount_unionrs "$base" "fsx.$tag.unionrs"
    unset UNIONRS_NO_PASSTHROUGH
    # The daemon's own word, checked so a pass cannot quietly test the other data path.
    grep -qx "passthrough $pt" <("$UNIONRS" stats "$base/m") \
      || die "fsx $tag: the mount does not say 'passthrough $pt': $("$UNIONRS" stats "$base/m" 2>&1 | tr '\n' ' ')"
    echo "fsx, passthrough $pt:"
    for j in "${JOBS[@]:0:2}"; do
      read -r name ops conf seed <<<"$j"
      echo "fsx $name: $ops ops, seed $seed"
      rc=0; fsx_run "$base/m/fsx" "$name" "$ops" "$conf" "$seed" || rc=$?
      FRC[$name]=$rc
    done
    echo "fsx par1..3 at once: $FSX_PAR_OPS ops each"
    for j in "${JOBS[@]:2}"; do
      read -r name ops conf seed <<<"$j"
      fsx_run "$base/m/fsx" "$name" "$ops" "$conf" "$seed" &
      pids+=("$name:$!")
    done
    for p in "${pids[@]}"; do
      rc=0; wait "${p#*:}" || rc=$?
      FRC[${p%%:*}]=$rc
    done
    if ! alive "$base/m"; then
      echo "unionrs: mount no longer answers after fsx (passthrough $pt: daemon crashed or hung)"
      BROKEN+=("unionrs daemon dead or hung after fsx (passthrough $pt)")
    fi

    umount_one "$base/m"
    mount_unionrs "$base" "fsx.$tag.unionrs.remount"
    step "fsx results, passthrough $pt (after unmount + remount, compared with the same seeds on plain disk)"
    printf '%-7s | %6s | %-6s | %-5s | %s\n' run ops mmap fsx "file after remount"
    for j in "${JOBS[@]}"; do
      read -r name ops conf seed <<<"$j"
      case "${FRC[$name]}" in
        0) r=ok ;;
        124|137) r="HUNG(timeout ${FSX_TIMEOUT}s)" ;;
        *) r="FAIL(rc=${FRC[$name]})" ;;
      esac
      if cmp -s "$W/fsxref/$name" "$base/m/fsx/$name"; then c=identical
      else c="DIFFERS: $(cmp "$W/fsxref/$name" "$base/m/fsx/$name" 2>&1 | head -1)"; fi
      [ -f "$base/u/fsx/$name" ] || c="$c (not in upper: no copy-up?)"
      printf '%-7s | %6s | %-6s | %-5s | %s\n' "$name" "$ops" "$([ "$conf" = mmap ] && echo yes || echo no)" "$r" "$c"
      FSX_RESULT+=("$tag/$name $r $c")
      [ "$r" = ok ] || tail -n 20 "$LOGS/fsx.$tag.$name.log" | sed 's/^/    /'
    done
    umount_one "$base/m"
  }
  fsx_pass pt on
  [ "${SKIP_FSX_NOPT:-0}" = 1 ] || fsx_pass nopt off
fi

step "mount check"
if awk -v w="$W/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
  echo "still mounted under $W (cleanup will unmount)"
else
  echo "nothing left mounted under $W"
fi

# Gate for the test command: a pjdfstest that passes on kernel overlayfs must pass on unionrs,
# every fsx run (passthrough on and off) must succeed and leave an identical file after
# remount, and no suite may hang past its timeout or leave a daemon that does not answer.
FAILS=0
if [ "${SKIP_PJD:-0}" != 1 ] && [ -s "$LOGS/pjdfstest.unionrs-only" ]; then
  FAILS=$((FAILS + $(wc -l <"$LOGS/pjdfstest.unionrs-only")))
fi
for r in "${FSX_RESULT[@]}"; do
  case "$r" in *" ok identical"*) ;; *) FAILS=$((FAILS + 1)) ;; esac
done
for b in "${BROKEN[@]}"; do
  echo "conformance: $b" >&2
  FAILS=$((FAILS + 1))
done
if [ "$FAILS" -gt 0 ]; then
  echo "conformance: $FAILS regression(s): see the lists above" >&2
  exit 1
fi
echo "conformance: no regression (pjdfstest: unionrs fails nothing kernel overlayfs passes; fsx: ${#FSX_RESULT[@]} runs ok and identical)"
