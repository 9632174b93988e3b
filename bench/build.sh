#!/usr/bin/env bash
# Image builds: `unionrs build` against `buildah bud --layers` through Debian's fuse-overlayfs
# (overlay.mount_program) and through kernel overlay, the same two-stage Dockerfile FROM a
# loopback registry, interleaved; cold (fresh storage, base pulled) and warm (every step
# cached). Prints a markdown table of medians and ratios. Root only.
#
# Env:
#   BENCH_DIR  scratch dir                      (default /var/tmp/unionrs-bench-build)
#   RUNS       runs per candidate and mode       (default 3)
#   ROOTFS     base image's root filesystem      (default /var/tmp/unionrs-rootfs: bench/setup.sh)
#   UNIONRS    unionrs binary                    (default: this checkout's target/release/unionrs)
#
# Network: only the docker-registry this script starts on 127.0.0.1.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/unionrs-bench-build}
RUNS=${RUNS:-3}
ROOTFS=${ROOTFS:-/var/tmp/unionrs-rootfs}
UNIONRS=${UNIONRS:-$HERE/../target/release/unionrs}
CANDIDATES="unionrs buildah_fo buildah_kernel"

log() { echo "[bench-build] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ -x "$UNIONRS" ] || die "$UNIONRS not built (cargo build --release)"
[ -d "$ROOTFS/usr" ] || die "no base rootfs at $ROOTFS (bash bench/setup.sh)"
for t in buildah docker-registry fuse-overlayfs runc; do
    command -v "$t" > /dev/null || die "$t missing (bash scripts/setup.sh)"
done

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
REG_PID=""
cleanup() {
    [ -n "$REG_PID" ] && kill "$REG_PID" 2> /dev/null
    # Whatever a failed build left mounted under the scratch dir.
    findmnt -rn -o TARGET | grep "^$BENCH_DIR/" | sort -r | while read -r m; do umount -l "$m"; done
}
trap cleanup EXIT

# A loopback registry with the base image.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$BENCH_DIR/registry.yml" << EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $BENCH_DIR/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$BENCH_DIR/registry.yml" > "$BENCH_DIR/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/v2/" > /dev/null && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/v2/" > /dev/null || die "registry did not start"

BASE=127.0.0.1:$PORT/bench/base:1
log "base image from $ROOTFS -> $BASE"
python3 - "$ROOTFS" "$BENCH_DIR/base" << 'EOF' || die "making the base archive failed"
import hashlib, json, os, subprocess, sys, tarfile
rootfs, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
layer = os.path.join(out, "layer.tar")
subprocess.run(["tar", "--numeric-owner", "--exclude=./.debootstrap-done", "-C", rootfs,
                "-cf", layer, "."], check=True)
h = hashlib.sha256()
with open(layer, "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        h.update(b)
cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                  "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                             "Cmd": ["bash"]},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]},
                  "history": [{"created_by": "debootstrap minbase"}]}).encode()
cid = hashlib.sha256(cfg).hexdigest()
with open(os.path.join(out, cid + ".json"), "wb") as f:
    f.write(cfg)
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump([{"Config": cid + ".json", "RepoTags": ["base:1"], "Layers": ["layer.tar"]}], f)
with tarfile.open(os.path.join(out, "base.tar"), "w") as t:
    for n in ("manifest.json", cid + ".json", "layer.tar"):
        t.add(os.path.join(out, n), n)
EOF
"$UNIONRS" --store "$BENCH_DIR/seed" load -i "$BENCH_DIR/base/base.tar" > /dev/null || die "load failed"
"$UNIONRS" --store "$BENCH_DIR/seed" tag base:1 "$BASE" || die "tag failed"
"$UNIONRS" --store "$BENCH_DIR/seed" push -q --tls-verify=false "$BASE" > /dev/null || die "push failed"
rm -rf "$BENCH_DIR/seed" "$BENCH_DIR/base"

# Two stages, 20 instructions, no network in RUN.
CTX=$BENCH_DIR/context
mkdir -p "$CTX/src"
for i in $(seq 200); do printf 'file %s\n' "$i" > "$CTX/src/f$i.txt"; done
printf '#!/bin/sh\necho built by the benchmark\n' > "$CTX/hello.sh"
cat > "$CTX/Dockerfile" << EOF
FROM $BASE AS tools
ARG LEVEL=9
WORKDIR /work
COPY src/ /work/src/
RUN tar -cf /work/src.tar -C /work src && gzip -\$LEVEL /work/src.tar
RUN cp -a /usr/share/doc /work/doc && find /work/doc -type f | wc -l > /work/count
RUN mkdir -p /out && mv /work/src.tar.gz /work/count /out/

FROM $BASE
LABEL org.example.bench=build
ENV APP_HOME=/opt/app PATH=/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN useradd -m -u 1000 app
WORKDIR /opt/app
COPY --from=tools /out/ /opt/app/data/
COPY hello.sh /opt/app/bin/hello
RUN chmod 755 /opt/app/bin/hello && chown -R app:app /opt/app
RUN rm -rf /usr/share/doc/*/changelog* /usr/share/man
EXPOSE 8080
VOLUME /opt/app/var
USER app
ENTRYPOINT ["/opt/app/bin/hello"]
CMD ["--help"]
EOF

now_ns() { date +%s%N; }
# build CANDIDATE DIR: one build with storage under DIR; prints the seconds it took.
build() {
    local c=$1 d=$2 t0 t1 rc
    t0=$(now_ns)
    case $c in
        unionrs) "$UNIONRS" --store "$d/store" build -q --tls-verify=false -t bench:1 "$CTX" ;;
        buildah_fo) buildah --root "$d/root" --runroot "$d/runroot" --storage-driver overlay \
            --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs \
            bud --layers --runtime runc --isolation oci --tls-verify=false -q -t bench:1 "$CTX" ;;
        buildah_kernel) buildah --root "$d/root" --runroot "$d/runroot" --storage-driver overlay \
            bud --layers --runtime runc --isolation oci --tls-verify=false -q -t bench:1 "$CTX" ;;
    esac > "$d/out.log" 2>&1
    rc=$?
    t1=$(now_ns)
    [ $rc = 0 ] || { log "$c build failed: $(tail -3 "$d/out.log")"; return 1; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}

# Removes a candidate's storage (buildah's overlay leaves mounts behind it on the way).
wipe() {
    local d=$1
    findmnt -rn -o TARGET | grep "^$d/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$d"
}

declare -A COLD WARM
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$RUNS"); do
    for c in $CANDIDATES; do
        d=$BENCH_DIR/run-$c
        wipe "$d"; mkdir -p "$d"; sync
        cold=$(build "$c" "$d") || die "cold build of $c failed"
        warm=$(build "$c" "$d") || die "warm build of $c failed"
        COLD[$c]+="$cold "; WARM[$c]+="$warm "
        log "run $r $c: cold ${cold}s, warm ${warm}s"
        wipe "$d"
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "### unionrs build benchmark $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- load average before: $load_before, after: $load_after; $RUNS runs per candidate, interleaved"
echo "- Dockerfile: two stages, 20 instructions, FROM a loopback registry (debootstrap minbase);"
echo "  cold = fresh storage (base pulled), warm = the same build again (every step cached)"
echo "- unionrs $(cd "$HERE/.." && git rev-parse --short HEAD 2>/dev/null); $(buildah --version); $(fuse-overlayfs --version 2>&1 | grep -m1 '^fuse-overlayfs:')"
echo
echo "| candidate | cold s (median) | warm s (median) | cold x buildah_fo | cold x buildah_kernel |"
echo "|---|---:|---:|---:|---:|"
fo=$(echo "${COLD[buildah_fo]}" | median)
kern=$(echo "${COLD[buildah_kernel]}" | median)
for c in $CANDIDATES; do
    cm=$(echo "${COLD[$c]}" | median); wm=$(echo "${WARM[$c]}" | median)
    awk -v c="$c" -v cm="$cm" -v wm="$wm" -v fo="$fo" -v k="$kern" \
        'BEGIN { printf "| %s | %.2f | %.2f | %.2f | %.2f |\n", c, cm, wm, cm / fo, cm / k }'
done
echo
echo "Raw (cold / warm seconds per run): $(for c in $CANDIDATES; do printf '%s: %s/ %s; ' "$c" "${COLD[$c]}" "${WARM[$c]}"; done)"
