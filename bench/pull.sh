#!/usr/bin/env bash
# Registry pull benchmark: `unionrs pull` vs `skopeo copy docker://... oci:DIR` followed by
# `umoci unpack`, from the same loopback docker-registry, end to end until the layers are
# unpacked on disk. The image: a Debian rootfs as the base layer plus 3 small layers
# (gzip), built once as an OCI layout and pushed once with skopeo. Runs interleaved,
# fresh store / fresh OCI dir + bundle each run. Prints a markdown table and the ratio.
# Must run as root (both sides then keep file owners).
#
# Every run writes into a directory of its own, and all are removed only at the end:
# removing one candidate's ~6,800-inode tree just before the other candidate's run would
# bill the other for it. On ext4 without a journal (this project's machines) the inode
# allocator skips inodes freed in the last 5 s (300 s while their inode-table block is
# dirty), scanning past each of them on every allocation (`recently_deleted` in perf):
# a 1.5 s pull became 12-16 s right after an `rm -rf` of the previous run's tree.
# CLEAN_BETWEEN=1 restores the old remove-before-each-run order to see that effect.
#
# Env:
#   BENCH_DIR  scratch dir                 (default /var/tmp/unionrs-pullbench)
#   RUNS       runs per candidate          (default 3)
#   ROOTFS     base layer source           (default /var/tmp/unionrs-rootfs)
#   UNIONRS    unionrs binary              (default /work/target-bench/release/unionrs)
#   OUT        append the table here too   (default: nowhere)
#   CLEAN_BETWEEN  1: remove the previous run's tree before each run (default 0)
set -u -o pipefail

BENCH_DIR=${BENCH_DIR:-/var/tmp/unionrs-pullbench}
RUNS=${RUNS:-3}
ROOTFS=${ROOTFS:-/var/tmp/unionrs-rootfs}
UNIONRS=${UNIONRS:-/work/target-bench/release/unionrs}
OUT=${OUT:-}
CLEAN_BETWEEN=${CLEAN_BETWEEN:-0}

die() { printf 'pull.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
# One run per data dir at a time: two runs would mount over each other's run dirs.
mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.lock"
flock -n 9 || die "another benchmark is using $BENCH_DIR (set BENCH_DIR to run one beside it)"
[ -x "$UNIONRS" ] || die "no unionrs binary at $UNIONRS (cargo build --release)"
[ -d "$ROOTFS" ] || die "no rootfs at $ROOTFS (debootstrap --variant=minbase bookworm $ROOTFS)"
for t in docker-registry skopeo umoci python3; do
  command -v "$t" >/dev/null || die "$t is not installed (scripts/setup.sh)"
done

mkdir -p "$BENCH_DIR"
LAYOUT=$BENCH_DIR/layout
REG=$BENCH_DIR/registry
RUN=$BENCH_DIR/run

# --- the image, built once ------------------------------------------------------------------
if [ ! -f "$LAYOUT/index.json" ]; then
  echo "building the layout (rootfs base + 3 small layers) ..." >&2
  rm -rf "$LAYOUT" "$BENCH_DIR/src"
  mkdir -p "$LAYOUT/blobs/sha256" "$BENCH_DIR/src"
  tar -C "$ROOTFS" --numeric-owner --sort=name -cf "$BENCH_DIR/src/l0.tar" . || die "tar of rootfs"
  for i in 1 2 3; do
    d=$BENCH_DIR/src/d$i
    mkdir -p "$d/etc" "$d/opt/app$i"
    echo "layer $i" > "$d/etc/layer$i"
    head -c $((200000 * i)) /dev/urandom > "$d/opt/app$i/data"
    [ "$i" = 2 ] && : > "$d/etc/.wh.layer1"
    tar -C "$d" --numeric-owner --sort=name -cf "$BENCH_DIR/src/l$i.tar" .
  done
  python3 - "$BENCH_DIR/src" "$LAYOUT" <<'PY' || die "layout"
import gzip, hashlib, json, os, sys
src, lay = sys.argv[1], sys.argv[2]
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(lay, "blobs/sha256", d), "wb").write(data)
    return "sha256:" + d, len(data)
layers, diffs = [], []
for i in range(4):
    t = open(os.path.join(src, f"l{i}.tar"), "rb").read()
    diffs.append("sha256:" + hashlib.sha256(t).hexdigest())
    d, n = blob(gzip.compress(t, 6, mtime=0))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "config": {"Cmd": ["/bin/bash"]}, "rootfs": {"type": "layers", "diff_ids": diffs},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(4)]}).encode()
cd, cn = blob(cfg)
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
    "layers": layers}).encode()
md, mn = blob(m)
open(os.path.join(lay, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
open(os.path.join(lay, "index.json"), "w").write(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
     "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))
PY
  rm -rf "$BENCH_DIR/src"
fi

# --- a loopback registry ----------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf "$REG"; mkdir -p "$REG/data"
cat > "$REG/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG/data
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$REG/config.yml" >"$REG/log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null; wait $REG_PID 2>/dev/null; rm -rf "$RUN"' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')" 2>/dev/null && break
  sleep 0.1
done
IMG=127.0.0.1:$PORT/bench/debian:t
skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:t" "docker://$IMG" || die "skopeo push"

now() { date +%s.%N; }
# A fresh directory for the next run; with CLEAN_BETWEEN=1 the previous runs' trees go first.
next_dir() {
  [ "$CLEAN_BETWEEN" = 1 ] && rm -rf "$RUN"
  mkdir -p "$RUN"
  D=$(mktemp -d "$RUN/$1.XXXX")
  sync
}
rm -rf "$RUN"
declare -a T_U T_S
for r in $(seq "$RUNS"); do
  next_dir unionrs
  t0=$(now)
  "$UNIONRS" --store "$D/store" pull -q "$IMG" >/dev/null || die "unionrs pull failed"
  t1=$(now)
  T_U+=("$(echo "$t1 - $t0" | bc)")
  [ -f "$(ls -d "$D"/store/layers/*/etc/os-release | head -1)" ] || die "unionrs: base layer not unpacked"
  next_dir skopeo
  t0=$(now)
  skopeo copy -q --src-tls-verify=false "docker://$IMG" "oci:$D/oci:t" || die "skopeo copy failed"
  umoci unpack --image "$D/oci:t" "$D/bundle" >/dev/null || die "umoci unpack failed"
  t1=$(now)
  T_S+=("$(echo "$t1 - $t0" | bc)")
  [ -f "$D/bundle/rootfs/etc/os-release" ] || die "umoci: rootfs not unpacked"
  echo "run $r: unionrs ${T_U[-1]} s, skopeo+umoci ${T_S[-1]} s" >&2
done
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
MU=$(median "${T_U[@]}"); MS=$(median "${T_S[@]}")
RATIO=$(echo "scale=3; $MU / $MS" | bc)
SIZE=$(du -sb "$LAYOUT/blobs" | cut -f1)
{
  echo "### Registry pull $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Image: Debian rootfs base + 3 small layers, $((SIZE / 1000000)) MB of gzip blobs, loopback docker-registry; $RUNS runs interleaved, median seconds; CLEAN_BETWEEN=$CLEAN_BETWEEN; load average at the end: $LOAD."
  echo
  echo "| candidate | runs (s) | median (s) | vs skopeo+umoci |"
  echo "| --- | --- | --- | --- |"
  echo "| unionrs pull | ${T_U[*]} | $MU | $RATIO |"
  echo "| skopeo copy + umoci unpack | ${T_S[*]} | $MS | 1.000 |"
  echo
} | tee ${OUT:+-a "$OUT"}
