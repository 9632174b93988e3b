#!/usr/bin/env bash
# podman with mount_program = unionrs vs fuse-overlayfs 1.x (Debian) vs fuse-overlayfs 2.0
# (crates.io) vs kernel overlayfs (no mount_program, reference). Run as root.
#
#   bench/podman.sh            # prints a markdown table (median seconds, ratio to unionrs)
#
# Image (built once with buildah, copied into each candidate's own graph root through an OCI
# layout dir): busybox-static, /usr/share/doc extracted as a layer (/doc) and as a tarball
# (/doc.tar). Workloads, each a whole `podman run --rm IMG ...` (so each includes start-up,
# mount and unmount), timed with the wall clock:
#   start     true
#   untar     tar xf /doc.tar -C /tmp               (~5,000 creates into the upper)
#   find      find /doc -type f | wc -l              (readdir + lookup of a lower tree)
#   stat      find /doc -print0 | xargs -0 stat       (getattr of every lower entry)
#   touch     5,000 empty files and 1,000 dirs created in /tmp (upper only, no data)
#   chmod     chmod -R go-w /doc                      (metadata copy-up of a lower tree)
#   rm_lower  rm -rf /doc                            (whiteouts over a lower tree)
# Runs are interleaved (run i of every candidate before run i+1); RUNS (default 3).
#
# Env: RUNS, UNIONRS (default /work/target-podman/release/unionrs, else unionrs on PATH),
#      FO1 (/usr/bin/fuse-overlayfs), FO2 (/var/tmp/unionrs-bench-tools/bin/fuse-overlayfs;
#      skipped with a note if missing), CANDIDATES (default "kernel unionrs fo1 fo2"),
#      WORKLOADS, KEEP=1 (keep the work dir), OUT (also append the table to this file).
set -uo pipefail

RUNS=${RUNS:-3}
UNIONRS=${UNIONRS:-/work/target-podman/release/unionrs}
[ -x "$UNIONRS" ] || UNIONRS=$(command -v unionrs || true)
FO1=${FO1:-/usr/bin/fuse-overlayfs}
FO2=${FO2:-/var/tmp/unionrs-bench-tools/bin/fuse-overlayfs}
CANDIDATES=${CANDIDATES:-kernel unionrs fo1 fo2}
WORKLOADS=${WORKLOADS:-start untar find stat touch chmod rm_lower}
log() { echo "[podman-bench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"
for t in podman buildah skopeo runc busybox python3; do command -v $t >/dev/null || die "$t missing (scripts/setup.sh)"; done
[ -x "$UNIONRS" ] || die "no unionrs binary (set UNIONRS)"
cands=()
for c in $CANDIDATES; do
  case $c in
    unionrs) cands+=(unionrs) ;;
    kernel) cands+=(kernel) ;;
    fo1) [ -x "$FO1" ] && cands+=(fo1) || log "fuse-overlayfs 1.x not found at $FO1: skipped" ;;
    fo2) [ -x "$FO2" ] && cands+=(fo2) || log "fuse-overlayfs 2.0 not found at $FO2: skipped" ;;
  esac
done

# lowercase only: podman parses the oci: path as an image name
# keep it short too: with a 19-digit suffix every podman run took 20 s longer (not investigated)
W=/var/tmp/unionrs-podman-bench.$(tr -dc a-z0-9 </dev/urandom | head -c 6); mkdir -m 700 "$W" || die "mkdir $W"
cleanup() {
  set +e
  for c in build "${cands[@]}"; do
    [ -f "$W/storage-$c.conf" ] || continue
    CONTAINERS_STORAGE_CONF=$W/storage-$c.conf buildah rm --all >/dev/null 2>&1
    CONTAINERS_STORAGE_CONF=$W/storage-$c.conf podman rm -af -t0 >/dev/null 2>&1
    CONTAINERS_STORAGE_CONF=$W/storage-$c.conf podman rmi -af >/dev/null 2>&1
  done
  awk -v w="$W" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  if [ "${KEEP:-0}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$W/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
netns = "none"
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
printf 'unqualified-search-registries = []\n' > "$W/registries.conf"
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_REGISTRIES_CONF=$W/registries.conf
unset XDG_RUNTIME_DIR
mp_of() { case $1 in unionrs) echo "$UNIONRS" ;; fo1) echo "$FO1" ;; fo2) echo "$FO2" ;; *) echo "" ;; esac; }
for c in build "${cands[@]}"; do
  cat > "$W/storage-$c.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$W/$c/graph"
runroot = "$W/$c/run"
[storage.options.overlay]
mountopt = "nodev"
EOF
  mp=$(mp_of "$c"); [ -n "$mp" ] && sed -i "/^mountopt/i mount_program = \"$mp\"" "$W/storage-$c.conf"
done

log "building the image (busybox + /usr/share/doc as /doc and /doc.tar)"
rf=$W/rootfs; mkdir -p "$rf"/{bin,etc,tmp,proc,sys,dev,run}
cp /bin/busybox "$rf/bin/"; for a in sh true tar find wc rm chmod stat xargs seq touch mkdir; do ln -s busybox "$rf/bin/$a"; done
chmod 1777 "$rf/tmp"; cp -a /usr/share/doc "$rf/doc"; tar cf "$rf/doc.tar" -C /usr/share doc
n_doc=$(find "$rf/doc" | wc -l)
(
  export CONTAINERS_STORAGE_CONF=$W/storage-build.conf
  c=$(buildah from scratch) && buildah copy -q "$c" "$rf" / >/dev/null && buildah config --env PATH=/bin "$c" &&
    buildah commit -q "$c" localhost/bench >/dev/null && buildah rm "$c" >/dev/null &&
    skopeo copy -q "containers-storage:[overlay@$W/build/graph+$W/build/run]localhost/bench:latest" "oci:$W/oci:bench"
) > "$W/build.log" 2>&1 || die "image build failed: $(tail -5 "$W/build.log")"
rm -rf "$rf"
for c in "${cands[@]}"; do
  CONTAINERS_STORAGE_CONF=$W/storage-$c.conf podman pull -q "oci:$W/oci:bench" > /dev/null 2>>"$W/build.log" ||
    die "podman pull into $c failed: $(tail -3 "$W/build.log")"
done
IMG=$(CONTAINERS_STORAGE_CONF=$W/storage-unionrs.conf podman images -q | head -1)
[ -n "$IMG" ] || die "no image"

cmd_of() {
  case $1 in
    start) echo 'true' ;;
    untar) echo 'tar xf /doc.tar -C /tmp' ;;
    find) echo 'find /doc -type f | wc -l >/dev/null' ;;
    stat) echo 'find /doc -print0 | xargs -0 stat -c %i >/dev/null' ;;
    touch) echo 'cd /tmp && seq 1000 | xargs mkdir && for d in $(seq 1000); do cd $d && touch a b c d e && cd ..; done' ;;
    chmod) echo 'chmod -R go-w /doc' ;;
    rm_lower) echo 'rm -rf /doc' ;;
  esac
}
now() { date +%s.%N; }
declare -A T
for r in $(seq "$RUNS"); do
  for wl in $WORKLOADS; do
    for c in "${cands[@]}"; do
      t0=$(now)
      if ! CONTAINERS_STORAGE_CONF=$W/storage-$c.conf podman run --rm "$IMG" sh -c "$(cmd_of "$wl")" > "$W/out" 2>&1; then
        log "run $r $wl $c failed: $(tail -3 "$W/out")"; T[$wl,$c]+="NaN "; continue
      fi
      t1=$(now)
      T[$wl,$c]+="$(python3 -c "print(f'{$t1-$t0:.3f}')") "
    done
  done
  log "run $r/$RUNS done"
done

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:] if x!="NaN"]; print(f"{statistics.median(v):.3f}" if v else "fail")' "$@"; }
{
  echo
  echo "### podman run with each mount_program ($(date -u +%F), $RUNS interleaved runs, median seconds of the whole \`podman run --rm\`; ratio = candidate / unionrs)"
  echo
  echo "Image: busybox + /usr/share/doc ($n_doc entries) as a lower layer and as a tarball. unionrs $("$UNIONRS" --version 2>/dev/null | head -1), fuse-overlayfs 1.x $("$FO1" --version 2>/dev/null | head -1 | awk '{print $NF}'), fuse-overlayfs 2.0 $([ -x "$FO2" ] && "$FO2" --version 2>/dev/null | head -1 | awk '{print $NF}')."
  echo
  hdr="| workload |"; sep="| --- |"
  for c in "${cands[@]}"; do hdr+=" $c s |"; sep+=" ---: |"; done
  for c in "${cands[@]}"; do [ "$c" = unionrs ] || { hdr+=" $c/unionrs |"; sep+=" ---: |"; }; done
  echo "$hdr"; echo "$sep"
  for wl in $WORKLOADS; do
    declare -A M=()
    line="| $wl |"
    for c in "${cands[@]}"; do M[$c]=$(median ${T[$wl,$c]}); line+=" ${M[$c]} |"; done
    for c in "${cands[@]}"; do
      [ "$c" = unionrs ] && continue
      line+=" $(python3 -c "a='${M[$c]}'; b='${M[unionrs]}'; print(f'{float(a)/float(b):.2f}' if 'fail' not in (a,b) else 'n/a')") |"
    done
    echo "$line"
  done
  echo
  echo "Raw seconds per run:"
  echo
  for wl in $WORKLOADS; do for c in "${cands[@]}"; do echo "    $wl $c: ${T[$wl,$c]}"; done; done
} | tee "$W/table.md"
[ -n "${OUT:-}" ] && cat "$W/table.md" >> "$OUT"
exit 0
