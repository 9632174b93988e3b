#!/usr/bin/env bash
# unionrs benchmark: kernel overlayfs vs unionrs vs fuse-overlayfs 2.0 (crates.io) vs
# fuse-overlayfs 1.x (Debian) [vs unionfs-fuse], same layers, interleaved runs, fresh
# upper/work dir and fresh mount per run. Prints a markdown table of medians (seconds) and
# ratios to the kernel overlay.  Must run as root.
#
# Env:
#   BENCH_DIR   data + scratch dir            (default /var/tmp/unionrs-bench)
#   RUNS        runs per candidate/workload    (default 3)
#   BIG_MB      size of the big file layer     (default 256; the issue's size is 1024)
#   ROOTFS      base layer source (copied)     (default /var/tmp/unionrs-rootfs)
#   UNIONRS     unionrs binary                 (default: this checkout's target/release/unionrs)
#   FO2         fuse-overlayfs 2.0 binary      (default /var/tmp/unionrs-bench-tools/bin/fuse-overlayfs)
#   FO1         fuse-overlayfs 1.x binary      (default /usr/bin/fuse-overlayfs)
#   CANDIDATES  space separated subset of: kernel unionrs fo2 fo1 unionfs
#               (default "kernel unionrs fo2 fo1"; unionfs-fuse has no overlay whiteout
#               semantics, so it is opt-in)
#   WORKLOADS   space separated subset of the workload names below (default: all)
set -u -o pipefail

BENCH_DIR=${BENCH_DIR:-/var/tmp/unionrs-bench}
RUNS=${RUNS:-3}
BIG_MB=${BIG_MB:-256}
ROOTFS=${ROOTFS:-/var/tmp/unionrs-rootfs}
UNIONRS=${UNIONRS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/unionrs}
FO2=${FO2:-/var/tmp/unionrs-bench-tools/bin/fuse-overlayfs}
FO1=${FO1:-/usr/bin/fuse-overlayfs}
UNIONFS=${UNIONFS:-$(command -v unionfs || true)}
CANDIDATES=${CANDIDATES:-kernel unionrs fo2 fo1}
ALL_WORKLOADS="find_warm stat_warm find_cold lsR_usr_warm cat_usr_cold big_read_cold big_read_warm chmod_R_etc rm_rf_usr_share untar_doc_sync"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}

L=$BENCH_DIR/layers
RUN=$BENCH_DIR/run
RES=$BENCH_DIR/results
LOWER=$L/big:$L/mid:$L/base      # leftmost is the top lower layer
CLK_TCK=$(getconf CLK_TCK)

log() { echo "[bench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- cleanup
cleanup() {
    local m
    # unmount everything under $RUN (deepest first)
    for m in $(awk -v p="$RUN/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- data
prepare() {
    mkdir -p "$L" "$RES"
    if [ ! -e "$L/base.done" ]; then
        log "copying base layer from $ROOTFS"
        rm -rf "$L/base"
        cp -a "$ROOTFS" "$L/base" || die "copy of rootfs failed"
        touch "$L/base.done"
    fi
    if [ ! -e "$L/mid.done" ]; then
        log "building middle layer (400 overrides, 100 file whiteouts, 1 dir whiteout, 1 opaque dir)"
        rm -rf "$L/mid"; mkdir -p "$L/mid"
        # deterministic pick of regular files under usr/share, etc, usr/lib
        # the directory to white out (its files are not picked below)
        local wd=usr/share/doc/apt
        [ -d "$L/base/$wd" ] || wd=$(cd "$L/base" && find usr/share/doc -mindepth 1 -maxdepth 1 -type d | LC_ALL=C sort | head -1)
        (cd "$L/base" && find usr/share etc usr/lib -type f | grep -v "^$wd/" | grep -v '^etc/apt/' | LC_ALL=C sort) > "$L/files.lst"
        local n; n=$(wc -l < "$L/files.lst")
        # every (n/500)th file: first 400 overridden, next 100 whited out
        awk -v n="$n" 'NR % int(n/500) == 0' "$L/files.lst" | head -500 > "$L/picked.lst"
        head -400 "$L/picked.lst" | while IFS= read -r f; do
            mkdir -p "$L/mid/$(dirname "$f")"
            printf 'overridden by mid layer: %s\n' "$f" > "$L/mid/$f"
        done
        tail -n +401 "$L/picked.lst" | while IFS= read -r f; do
            mkdir -p "$L/mid/$(dirname "$f")"
            mknod "$L/mid/$f" c 0 0
        done
        # one whited-out directory
        mkdir -p "$L/mid/$(dirname "$wd")"; mknod "$L/mid/$wd" c 0 0
        echo "$wd" > "$L/whiteout-dir.txt"
        # one opaque directory, with one file of its own
        mkdir -p "$L/mid/etc/apt"
        setfattr -n trusted.overlay.opaque -v y "$L/mid/etc/apt" || die "setfattr opaque failed"
        echo "deb http://example.invalid/ bookworm main" > "$L/mid/etc/apt/sources.list"
        touch "$L/mid.done"
    fi
    if [ ! -e "$L/big.done" ] || [ "$(cat "$L/big.done")" != "$BIG_MB" ]; then
        log "writing ${BIG_MB} MiB random file"
        rm -rf "$L/big"; mkdir -p "$L/big"
        head -c "$((BIG_MB * 1024 * 1024))" /dev/urandom > "$L/big/big.bin" || die "big file"
        echo "$BIG_MB" > "$L/big.done"
    fi
    if [ ! -e "$BENCH_DIR/doc.tar" ]; then
        log "making usr/share/doc tarball"
        tar -C "$L/base/usr/share" -cf "$BENCH_DIR/doc.tar" doc || die "tar"
    fi
}

# ---------------------------------------------------------------- candidates
declare -A SKIP=()
check_candidates() {
    local c avail=""
    for c in $CANDIDATES; do
        case $c in
            kernel)  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
                     grep -qw overlay /proc/filesystems || SKIP[$c]="overlay not in /proc/filesystems" ;;
            unionrs) [ -x "$UNIONRS" ] || SKIP[$c]="$UNIONRS not built" ;;
            fo2)     [ -x "$FO2" ] || SKIP[$c]="$FO2 missing (cargo install fuse-overlayfs failed or not run)" ;;
            fo1)     [ -x "$FO1" ] || SKIP[$c]="$FO1 missing" ;;
            unionfs) [ -n "$UNIONFS" ] && [ -x "$UNIONFS" ] || SKIP[$c]="unionfs-fuse not installed" ;;
            *) die "unknown candidate $c" ;;
        esac
        [ -n "${SKIP[$c]:-}" ] && log "skipping $c: ${SKIP[$c]}" || avail="$avail $c"
    done
    ACTIVE=${avail# }
}

version_of() {
    case $1 in
        kernel)  echo "overlay $(uname -r)" ;;
        unionrs) echo "unionrs $(cd "$(dirname "$0")/.." 2>/dev/null && git rev-parse --short HEAD 2>/dev/null)" ;;
        fo2)     "$FO2" --version 2>/dev/null | head -1 ;;
        fo1)     "$FO1" --version 2>/dev/null | grep -m1 -i overlayfs ;;
        unionfs) "$UNIONFS" --version 2>/dev/null | head -1 ;;
    esac
}

mnt_of() { echo "$RUN/$1/mnt"; }

# fresh upper/work/mnt, mount; sets DPID (daemon pid or empty)
do_mount() {
    local c=$1 d=$RUN/$1
    local u=$d/upper w=$d/work m=$d/mnt
    if mountpoint -q "$m"; then umount "$m" || die "stale mount $m"; fi
    rm -rf "$d"; mkdir -p "$u" "$w" "$m"
    local opts="lowerdir=$LOWER,upperdir=$u,workdir=$w"
    case $c in
        kernel)  mount -t overlay overlay -o "$opts" "$m" ;;
        unionrs) "$UNIONRS" -o "$opts" "$m" ;;
        fo2)     "$FO2" -o "$opts" "$m" ;;
        fo1)     "$FO1" -o "$opts" "$m" ;;
        unionfs) "$UNIONFS" -o cow,hide_meta_files,max_files=65536 "$u=RW:$L/big=RO:$L/mid=RO:$L/base=RO" "$m" ;;
    esac 2>>"$RES/mount-$c.log" || { log "mount of $c failed (see $RES/mount-$c.log)"; return 1; }
    local i
    for i in $(seq 100); do mountpoint -q "$m" && break; sleep 0.05; done
    mountpoint -q "$m" || { log "$c: not mounted"; return 1; }
    DPID=""
    if [ "$c" != kernel ]; then
        DPID=$(pgrep -f -- " $m\$" | head -1)
    fi
    return 0
}

do_umount() {
    local c=$1 m; m=$(mnt_of "$1")
    sync
    umount "$m" 2>/dev/null || { sleep 0.5; umount "$m" 2>/dev/null; } || umount -l "$m"
    if [ -n "${DPID:-}" ]; then
        local i; for i in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
    fi
}

cpu_ticks() { # utime+stime of pid, in ticks (all threads)
    [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# ---------------------------------------------------------------- workloads
# prep_<w> MNT : untimed; run_<w> MNT : timed
prep_find_warm()      { find "$1" > /dev/null; }
run_find_warm()       { find "$1" | wc -l > "$OUT"; }
prep_stat_warm()      { find "$1" -printf '%s\n' > /dev/null; }
run_stat_warm()       { find "$1" -printf '%s %m %U\n' | wc -l > "$OUT"; }
prep_find_cold()      { drop_caches; }
run_find_cold()       { find "$1" | wc -l > "$OUT"; }
prep_lsR_usr_warm()   { ls -laR "$1/usr" > /dev/null; }
run_lsR_usr_warm()    { ls -laR "$1/usr" | wc -l > "$OUT"; }
prep_cat_usr_cold()   { drop_caches; }
run_cat_usr_cold()    { find "$1/usr" -type f -exec cat {} + | wc -c > "$OUT"; }
prep_big_read_cold()  { drop_caches; }
run_big_read_cold()   { dd if="$1/big.bin" of=/dev/null bs=1M 2>&1 | tail -1 | cut -d' ' -f1 > "$OUT"; }
prep_big_read_warm()  { dd if="$1/big.bin" of=/dev/null bs=1M status=none; }
run_big_read_warm()   { dd if="$1/big.bin" of=/dev/null bs=1M 2>&1 | tail -1 | cut -d' ' -f1 > "$OUT"; }
prep_chmod_R_etc()    { :; }
run_chmod_R_etc()     { chmod -R g+w "$1/etc"; find "$1/etc" ! -perm -g+w ! -type l | wc -l > "$OUT"; }
prep_rm_rf_usr_share() { :; }
run_rm_rf_usr_share() { rm -rf "$1/usr/share"; ls -A "$1/usr" | tr '\n' ' ' > "$OUT"; }
prep_untar_doc_sync() { mkdir -p "$1/untar"; }
run_untar_doc_sync()  { tar -xf "$BENCH_DIR/doc.tar" -C "$1/untar" && sync; find "$1/untar" | wc -l > "$OUT"; }

now_ns() { date +%s%N; }

# ---------------------------------------------------------------- main
prepare
check_candidates
[ -n "$ACTIVE" ] || die "no candidate available"
TS=$(date +%Y%m%d-%H%M%S)
RAW=$RES/raw-$TS.tsv
ERRLOG=$RES/errors-$TS.txt
: > "$RAW"; : > "$ERRLOG"
LOAD_BEFORE=$(cat /proc/loadavg)
log "candidates: $ACTIVE; workloads: $WORKLOADS; runs: $RUNS; raw: $RAW"

for w in $WORKLOADS; do
    declare -F "run_$w" > /dev/null || die "unknown workload $w"
    for r in $(seq "$RUNS"); do
        for c in $ACTIVE; do
            m=$(mnt_of "$c")
            OUT=$RES/out.$c
            if ! do_mount "$c"; then
                printf '%s\t%s\t%s\tMOUNTFAIL\t0\t-\n' "$w" "$c" "$r" >> "$RAW"; continue
            fi
            "prep_$w" "$m" 2>>"$ERRLOG.tmp"
            rm -f "$OUT"; : > "$RES/err.$c"
            c0=$(cpu_ticks "$DPID"); t0=$(now_ns)
            "run_$w" "$m" 2> "$RES/err.$c"; rc=$?
            t1=$(now_ns); c1=$(cpu_ticks "$DPID")
            do_umount "$c"
            secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
            cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/t}')
            [ -n "$DPID" ] || cpu=-
            out=$(tr -d '\n' < "$OUT" 2>/dev/null)
            if [ "$rc" != 0 ] || [ -s "$RES/err.$c" ]; then
                { echo "== $w $c run $r rc=$rc"; head -5 "$RES/err.$c"; echo "   ($(wc -l < "$RES/err.$c") stderr lines)"; } >> "$ERRLOG"
                status=ERR
            else status=ok; fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$c" "$r" "$secs" "$cpu" "$status" "$out" >> "$RAW"
            log "$w run $r $c: ${secs}s cpu=$cpu $status out=$out"
        done
    done
done
LOAD_AFTER=$(cat /proc/loadavg)

# ---------------------------------------------------------------- report
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "-"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
col() { # workload cand field -> values
    awk -F'\t' -v w="$1" -v c="$2" -v f="$3" '$1==w && $2==c && $4!="MOUNTFAIL" {print $f}' "$RAW"
}
{
    echo "### unionrs benchmark $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- kernel: \`$(uname -r)\`, $(nproc) cores; load average before: \`$LOAD_BEFORE\`, after: \`$LOAD_AFTER\`"
    echo "- \`uptime\`: \`$(uptime)\`"
    echo "- runs: $RUNS per candidate per workload, interleaved, fresh upper/work + fresh mount each run; big file: ${BIG_MB} MiB"
    echo "- layers: lowerdir=big:mid:base (base = rootfs copy; mid = 400 overrides, 100 file whiteouts, 1 dir whiteout \`$(cat "$L/whiteout-dir.txt")\`, opaque etc/apt)"
    for c in $ACTIVE; do echo "- $c: $(version_of "$c")"; done
    for c in $CANDIDATES; do [ -n "${SKIP[$c]:-}" ] && echo "- **$c skipped**: ${SKIP[$c]}"; done
    echo
    printf '| workload |'; for c in $ACTIVE; do printf ' %s s |' "$c"; done
    for c in $ACTIVE; do [ "$c" = kernel ] || printf ' %s ×kernel |' "$c"; done
    for c in $ACTIVE; do [ "$c" = kernel ] || printf ' %s daemon CPU s |' "$c"; done; echo
    printf '|---|'; for c in $ACTIVE; do printf -- '---:|'; done
    for c in $ACTIVE; do [ "$c" = kernel ] || printf -- '---:|---:|'; done; echo
    for w in $WORKLOADS; do
        printf '| %s |' "$w"
        declare -A MED=()
        for c in $ACTIVE; do
            MED[$c]=$(col "$w" "$c" 4 | median)
            e=$(awk -F'\t' -v w="$w" -v c="$c" '$1==w && $2==c && $6!="ok"' "$RAW" | wc -l)
            [ "$e" -gt 0 ] && printf ' %s (err×%s) |' "${MED[$c]}" "$e" || printf ' %s |' "${MED[$c]}"
        done
        for c in $ACTIVE; do
            [ "$c" = kernel ] && continue
            k=${MED[kernel]:--}
            awk -v a="${MED[$c]}" -v k="$k" 'BEGIN{ if (k=="-" || a=="-" || k+0<=0) printf " - |"; else printf " %.2f |", a/k }'
        done
        for c in $ACTIVE; do
            [ "$c" = kernel ] && continue
            printf ' %s |' "$(col "$w" "$c" 5 | median)"
        done
        echo
        unset MED
    done
    echo
    echo "Result check (workload output of run 1: entry count / bytes / remaining names; should agree across candidates):"
    echo
    printf '| workload |'; for c in $ACTIVE; do printf ' %s |' "$c"; done; echo
    printf '|---|'; for c in $ACTIVE; do printf -- '---|'; done; echo
    for w in $WORKLOADS; do
        printf '| %s |' "$w"
        for c in $ACTIVE; do printf ' %s |' "$(awk -F'\t' -v w="$w" -v c="$c" '$1==w && $2==c && $3==1 {print $7}' "$RAW" | cut -c1-60)"; done
        echo
    done
    if [ -s "$ERRLOG" ]; then
        echo
        echo "Errors (stderr / non-zero exit), first lines:"
        echo
        echo '```'
        head -60 "$ERRLOG"
        echo '```'
    fi
} | tee "$RES/table-$TS.md"
rm -f "$ERRLOG.tmp"
