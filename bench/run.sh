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
#   UNIONRS_BASE  a second unionrs binary, the `unionrs_base` candidate (an older build to
#               compare with, interleaved in the same run; over io_uring like `unionrs`)
#   CANDIDATES  space separated subset of: kernel unionrs unionrs_dev unionrs_normal unionrs_base fo2 fo1 unionfs
#               (default "kernel unionrs fo2 fo1"; unionfs-fuse has no overlay whiteout
#               semantics, so it is opt-in). unionrs uses FUSE over io_uring when the
#               kernel offers it (enable_uring=Y); unionrs_dev is the same binary with
#               -o io_uring=off (/dev/fuse), unionrs_normal with -o queue_sched=normal
#               (io_uring queue threads at SCHED_OTHER instead of SCHED_IDLE)
#   WORKLOADS   space separated subset of the workload names below (default: all)
#   UNIONRS_OPTS  extra -o options for unionrs in every workload, e.g. "metacopy=on"
#               (default none; the report's header says which were used)
#   SRC_MB      size of the source tree for cp -a / grep -r (default 90; built once from
#               `cargo vendor` of this checkout's Cargo.lock, windows-only crates left out)
#
# Needs fio (bench/setup.sh installs it and the peers). Per run it records wall time, the
# daemon's CPU time, its /proc/PID/io deltas (read_bytes/write_bytes: what reached the disk;
# rchar: all bytes it read, /dev/fuse included) and its VmHWM.
set -u -o pipefail

BENCH_DIR=${BENCH_DIR:-/var/tmp/unionrs-bench}
RUNS=${RUNS:-3}
BIG_MB=${BIG_MB:-256}
SRC_MB=${SRC_MB:-90}
ROOTFS=${ROOTFS:-/var/tmp/unionrs-rootfs}
UNIONRS=${UNIONRS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/unionrs}
FO2=${FO2:-/var/tmp/unionrs-bench-tools/bin/fuse-overlayfs}
FO1=${FO1:-/usr/bin/fuse-overlayfs}
UNIONFS=${UNIONFS:-$(command -v unionfs || true)}
UNIONRS_OPTS=${UNIONRS_OPTS:-}
UNIONRS_BASE=${UNIONRS_BASE:-}
CANDIDATES=${CANDIDATES:-kernel unionrs fo2 fo1}
ALL_WORKLOADS="find_warm stat_warm find_cold lsR_usr_warm cat_usr_cold big_read_cold big_read_warm randread_4k_cold randread_4k_warm append_big append_big_nofsync chmod_R_etc rm_rf_usr_share untar_doc_sync lookup64 lookup2 cp_a_src grep_r_src rss_walk"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}

L=$BENCH_DIR/layers
RUN=$BENCH_DIR/run
RES=$BENCH_DIR/results
LOWER=$L/big:$L/mid:$L/base      # leftmost is the top lower layer
DEEP=$BENCH_DIR/deep              # the 64-layer stack: $DEEP/l00 (top) .. $DEEP/l63 (bottom)
DEEP_LAYERS=64
DEEP_FILES=2000
DEEP_DEPTH=24                     # components of the deep path in the bottom layer
SRC=$BENCH_DIR/src-tree           # the source tree copied in by cp_a_src
CLK_TCK=$(getconf CLK_TCK)

log() { echo "[bench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
# One run per data dir at a time: two runs would mount over each other's run dirs.
mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.lock"
flock -n 9 || die "another benchmark is using $BENCH_DIR (set BENCH_DIR to run one beside it)"

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
    prepare_deep
    prepare_src
    if [ ! -e "$BENCH_DIR/doc.tar" ]; then
        log "making usr/share/doc tarball"
        tar -C "$L/base/usr/share" -cf "$BENCH_DIR/doc.tar" doc || die "tar"
    fi
}

# 64 layers: each upper one adds a file to the shared directory `d` and to the deep path's
# first directories (so both merge all 64 layers); the bottom one alone holds the 2,000
# files looked up and the whole deep path.
prepare_deep() {
    [ -e "$DEEP.done" ] && return
    log "building the ${DEEP_LAYERS}-layer stack (${DEEP_FILES} files in the bottom layer)"
    rm -rf "$DEEP"
    local i top=$((DEEP_LAYERS - 1)) deep="" n
    for n in $(seq "$DEEP_DEPTH"); do deep="$deep/p$n"; done
    deep=${deep#/}
    for i in $(seq -f %02g 0 $((top - 1))); do
        mkdir -p "$DEEP/l$i/d" "$DEEP/l$i/p1/p2/p3"
        echo "layer $i" > "$DEEP/l$i/d/own-$i"
        echo "layer $i" > "$DEEP/l$i/p1/p2/p3/own-$i"
    done
    local b; b=$DEEP/l$(printf %02d "$top")
    mkdir -p "$b/d" "$b/$deep"
    (cd "$b/d" && seq -f 'f%04g' 0 $((DEEP_FILES - 1)) | xargs touch) || die "deep layer files"
    echo leaf > "$b/$deep/leaf"
    { seq -f 'd/f%04g' 0 $((DEEP_FILES - 1)); echo "$deep/leaf"; } > "$BENCH_DIR/deep-names.lst"
    touch "$DEEP.done"
}

# A real source tree: this checkout's dependencies (`cargo vendor`, fixed by Cargo.lock),
# crates taken in name order until SRC_MB is reached; windows-only crates are mostly
# prebuilt libraries, so they are left out.
prepare_src() {
    [ -e "$SRC.done" ] && [ "$(cat "$SRC.done")" = "$SRC_MB" ] && return
    log "building the ~${SRC_MB} MB source tree (cargo vendor)"
    local root v=$BENCH_DIR/vendor
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    rm -rf "$SRC" "$v"
    (cd "$root" && cargo vendor --locked "$v" > /dev/null 2>"$RES/vendor.log") \
        || die "cargo vendor failed (see $RES/vendor.log)"
    mkdir -p "$SRC"
    local kb=0 d sz
    for d in $(cd "$v" && ls | LC_ALL=C sort | grep -v '^win'); do
        [ "$kb" -ge $((SRC_MB * 1024)) ] && break
        sz=$(du -sk "$v/$d" | cut -f1)
        mv "$v/$d" "$SRC/"
        kb=$((kb + sz))
    done
    rm -rf "$v"
    echo "$SRC_MB" > "$SRC.done"
}

# ---------------------------------------------------------------- candidates
declare -A SKIP=()
check_candidates() {
    local c avail=""
    for c in $CANDIDATES; do
        case $c in
            kernel)  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
                     grep -qw overlay /proc/filesystems || SKIP[$c]="overlay not in /proc/filesystems" ;;
            unionrs|unionrs_dev|unionrs_normal) [ -x "$UNIONRS" ] || SKIP[$c]="$UNIONRS not built" ;;
            unionrs_base) [ -n "$UNIONRS_BASE" ] && [ -x "$UNIONRS_BASE" ] || SKIP[$c]="UNIONRS_BASE not set to a binary" ;;
            fo2)     [ -x "$FO2" ] || SKIP[$c]="$FO2 missing (cargo install fuse-overlayfs failed or not run)" ;;
            fo1)     [ -x "$FO1" ] || SKIP[$c]="$FO1 missing" ;;
            unionfs) [ -n "$UNIONFS" ] && [ -x "$UNIONFS" ] || SKIP[$c]="unionfs-fuse not installed" ;;
            *) die "unknown candidate $c" ;;
        esac
        [ -n "${SKIP[$c]:-}" ] && log "skipping $c: ${SKIP[$c]}" || avail="$avail $c"
    done
    ACTIVE=${avail# }
    case " $WORKLOADS " in
        *" randread_4k_"*) command -v fio > /dev/null || die "fio not installed (bash bench/setup.sh)" ;;
    esac
}

version_of() {
    case $1 in
        kernel)  echo "overlay $(uname -r)" ;;
        unionrs) echo "unionrs $(cd "$(dirname "$0")/.." 2>/dev/null && git rev-parse --short HEAD 2>/dev/null)${UNIONRS_OPTS:+ (mounted with -o $UNIONRS_OPTS)}, io_uring if enable_uring=$(cat /sys/module/fuse/parameters/enable_uring 2>/dev/null)" ;;
        unionrs_dev) echo "unionrs over /dev/fuse (-o io_uring=off${UNIONRS_OPTS:+,$UNIONRS_OPTS})" ;;
        unionrs_normal) echo "unionrs over io_uring, queue threads at SCHED_OTHER (-o queue_sched=normal${UNIONRS_OPTS:+,$UNIONRS_OPTS})" ;;
        unionrs_base) echo "$("$UNIONRS_BASE" --version 2>/dev/null | head -1) at $UNIONRS_BASE${UNIONRS_OPTS:+ (-o $UNIONRS_OPTS)}" ;;
        fo2)     "$FO2" --version 2>/dev/null | head -1 ;;
        fo1)     "$FO1" --version 2>/dev/null | grep -m1 -i overlayfs ;;
        unionfs) "$UNIONFS" --version 2>/dev/null | head -1 ;;
    esac
}

mnt_of() { echo "$RUN/$1/mnt"; }

# FUSE requests a unionrs mount has served so far (the sum of `unionrs stats`'s requests.*
# lines; stats travel over the daemon's control socket, not FUSE); "-" for the others.
requests_of() { # candidate mountpoint
    case $1 in
        unionrs*) "$UNIONRS" stats "$2" 2>/dev/null | awk '$1 ~ /^requests\./ {n += $2} END {printf "%.0f\n", n}' ;;
        *) echo - ;;
    esac
}

# Entries a workload touches, to show requests per entry: what it lists, stats, removes,
# writes or reads (counted in the data, not in a run).
entries_of() { # workload
    case $1 in
        find_warm|stat_warm|find_cold|rss_walk) find "$L/big" "$L/mid" "$L/base" 2>/dev/null | wc -l ;;
        lsR_usr_warm|cat_usr_cold) find "$L/base/usr" | wc -l ;;
        chmod_R_etc) find "$L/base/etc" | wc -l ;;
        rm_rf_usr_share) find "$L/base/usr/share" | wc -l ;;
        untar_doc_sync) tar -tf "$BENCH_DIR/doc.tar" | wc -l ;;
        lookup64|lookup2) wc -l < "$BENCH_DIR/deep-names.lst" ;;
        cp_a_src|grep_r_src) find "$SRC" | wc -l ;;
        *) echo 1 ;;
    esac
}

# The lower layers of a workload (top first, colon separated).
lower_of() {
    case $1 in
        lookup64) local i s=""
                  for i in $(seq -f %02g 0 $((DEEP_LAYERS - 1))); do s="$s:$DEEP/l$i"; done
                  echo "${s#:}" ;;
        lookup2)  echo "$DEEP/l00:$DEEP/l$(printf %02d $((DEEP_LAYERS - 1)))" ;;
        *)        echo "$LOWER" ;;
    esac
}

# Mount options a workload adds for one candidate (the unionrs variant without fsync).
extra_opts_of() { # workload candidate
    case $1:$2 in
        append_big_nofsync:unionrs*) echo ",fsync=0" ;;
    esac
}

# fresh upper/work/mnt, mount; sets DPID (daemon pid or empty)
do_mount() { # candidate lowerdirs extra-options
    local c=$1 lower=$2 extra=${3:-} d=$RUN/$1
    local u=$d/upper w=$d/work m=$d/mnt
    if mountpoint -q "$m"; then umount "$m" || die "stale mount $m"; fi
    rm -rf "$d"; mkdir -p "$u" "$w" "$m"
    local opts="lowerdir=$lower,upperdir=$u,workdir=$w$extra"
    case $c in
        kernel)  mount -t overlay overlay -o "$opts" "$m" ;;
        unionrs) "$UNIONRS" -o "$opts${UNIONRS_OPTS:+,$UNIONRS_OPTS}" "$m" ;;
        unionrs_dev) "$UNIONRS" -o "$opts,io_uring=off${UNIONRS_OPTS:+,$UNIONRS_OPTS}" "$m" ;;
        unionrs_normal) "$UNIONRS" -o "$opts,queue_sched=normal${UNIONRS_OPTS:+,$UNIONRS_OPTS}" "$m" ;;
        unionrs_base) "$UNIONRS_BASE" -o "$opts${UNIONRS_OPTS:+,$UNIONRS_OPTS}" "$m" ;;
        fo2)     "$FO2" -o "$opts" "$m" ;;
        fo1)     "$FO1" -o "$opts" "$m" ;;
        unionfs) "$UNIONFS" -o cow,hide_meta_files,max_files=65536 "$u=RW:$(echo "$lower" | sed 's/:/=RO:/g')=RO" "$m" ;;
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

# Sums are printed with printf "%.0f": mawk, the awk of a fresh Debian, prints a number above
# 2^31 in %g form (2.86422e+09), which bash arithmetic then refuses.
cpu_ns() { # time on a CPU of all of pid's threads, in ns (/proc/PID/task/*/schedstat); - without
    [ -n "${1:-}" ] && [ -d "/proc/$1/task" ] || { echo -; return; }
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{n += $1} END {printf "%.0f\n", n}'
}

# "rchar wchar read_bytes write_bytes" of pid (all threads), zeros without a daemon
proc_io() {
    [ -n "${1:-}" ] && [ -r "/proc/$1/io" ] || { echo "0 0 0 0"; return; }
    awk '/^(rchar|wchar|read_bytes|write_bytes):/ {v[$1]=$2}
         END {printf "%.0f %.0f %.0f %.0f\n", v["rchar:"], v["wchar:"], v["read_bytes:"], v["write_bytes:"]}' "/proc/$1/io"
}

vm_kib() { # pid VmHWM|VmRSS: memory of pid in KiB, "-" without a daemon
    [ -n "${1:-}" ] && [ -r "/proc/$1/status" ] || { echo -; return; }
    awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"
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
# fio: random 4 KiB reads of the big file (same offsets everywhere: fixed seed), 16,384
# from a cold cache and 65,536 with the file already cached; the output is the KiB read.
# fio takes ~0.4 s to start, so the time recorded is fio's own run time (SECS_OUT).
fio_randread() { # mnt io-size invalidate(0|1)
    local r
    r=$(fio --name=randread --filename="$1/big.bin" --readonly --rw=randread --bs=4k \
        --io_size="$2" --ioengine=psync --randrepeat=1 --randseed=42 --invalidate="$3" \
        --minimal) || return 1
    echo "$r" | cut -d';' -f6 > "$OUT"
    echo "$r" | awk -F';' '{printf "%.3f\n", $9 / 1000}' > "$SECS_OUT"
}
prep_randread_4k_cold() { drop_caches; }
run_randread_4k_cold()  { fio_randread "$1" 64m 1; }
prep_randread_4k_warm() { cat "$1/big.bin" > /dev/null; }
run_randread_4k_warm()  { fio_randread "$1" 256m 0; }
# One byte appended to the big lower file: a copy-up of all of it. The kernel fsyncs the copy
# before it renames it into place; append_big_nofsync mounts unionrs with fsync=0 (the
# peers never fsync a copy-up).
# Each run writes 1 GiB: without draining the write-back of the previous runs first, the
# fsync of the copy measures the disk's backlog (1.5 s vs 0.55 s for the same copy-up).
# The lower file is read directly, not through the mount: every candidate then copies from
# the same cached source and no FUSE page cache of it is left to invalidate.
prep_append_big()     { sync; cat "$L/big/big.bin" > /dev/null; }
run_append_big()      { printf x >> "$1/big.bin"; stat -c %s "$1/big.bin" > "$OUT"; }
prep_append_big_nofsync() { prep_append_big "$1"; }
run_append_big_nofsync()  { run_append_big "$1"; }
# The kernel copies each file's data up and fsyncs it: without draining first, its fsyncs
# pay for the journal commit of the previous run's `rm -rf` of its upper (measured: 0.02 to
# 0.29 s for the same kernel run).
prep_chmod_R_etc()    { sync; }
run_chmod_R_etc()     { chmod -R g+w "$1/etc"; find "$1/etc" ! -perm -g+w ! -type l | wc -l > "$OUT"; }
prep_rm_rf_usr_share() { :; }
run_rm_rf_usr_share() { rm -rf "${1:?}/usr/share"; ls -A "$1/usr" | tr '\n' ' ' > "$OUT"; }
prep_untar_doc_sync() { mkdir -p "$1/untar"; }
run_untar_doc_sync()  { tar -xf "$BENCH_DIR/doc.tar" -C "$1/untar" && sync; find "$1/untar" | wc -l > "$OUT"; }
# 2,000 distinct bottom-layer files and the deep path, each looked up once on a fresh mount
# (lower_of picks 64 or 2 layers); one stat process, so the time is the lookups.
prep_lookup64()       { :; }
run_lookup64()        { (cd "$1" && xargs -a "$BENCH_DIR/deep-names.lst" stat -c %s) | wc -l > "$OUT"; }
prep_lookup2()        { :; }
run_lookup2()         { run_lookup64 "$1"; }
# cp -a of the source tree into the mount (no sync, like a shell user), then grep -r over
# the copy (prep copies it in, untimed; its pages are then cached as after a cp).
prep_cp_a_src()       { :; }
run_cp_a_src()        { cp -a "$SRC" "$1/src" && find "$1/src" | wc -l > "$OUT"; }
prep_grep_r_src()     { cp -a "$SRC" "$1/src"; }
run_grep_r_src()      { LC_ALL=C grep -r -c unsafe "$1/src" | awk -F: '{n += $NF} END {print n}' > "$OUT"; }
# A full walk with a stat of every entry; the output is the number of entries, and the
# daemon's VmHWM after it is the peak RSS (see the RSS table).
prep_rss_walk()       { :; }
run_rss_walk()        { find "$1" -printf '%s\n' | wc -l > "$OUT"; }

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
            if ! do_mount "$c" "$(lower_of "$w")" "$(extra_opts_of "$w" "$c")"; then
                printf '%s\t%s\t%s\tMOUNTFAIL\t0\t-\n' "$w" "$c" "$r" >> "$RAW"; continue
            fi
            "prep_$w" "$m" 2>>"$ERRLOG.tmp"
            SECS_OUT=$RES/secs.$c  # a workload that times itself writes its seconds here
            rm -f "$OUT" "$SECS_OUT"; : > "$RES/err.$c"
            req0=$(requests_of "$c" "$m"); ns0=$(cpu_ns "$DPID")
            rss0=$(vm_kib "$DPID" VmRSS); io0=$(proc_io "$DPID"); c0=$(cpu_ticks "$DPID"); t0=$(now_ns)
            "run_$w" "$m" 2> "$RES/err.$c"; rc=$?
            t1=$(now_ns); c1=$(cpu_ticks "$DPID"); io1=$(proc_io "$DPID")
            hwm=$(vm_kib "$DPID" VmHWM)
            req1=$(requests_of "$c" "$m"); ns1=$(cpu_ns "$DPID")
            cpuns=-
            [ "$ns0" != - ] && [ "$ns1" != - ] && cpuns=$((ns1 - ns0))
            reqs=-
            [ "$req0" != - ] && [ "$req1" != - ] && reqs=$((req1 - req0))
            nodes=-
            case $c in unionrs*) ;; *) false ;; esac && nodes=$("$UNIONRS" stats "$m" 2>/dev/null | awk '$1=="cached_inodes" {print $2}')
            do_umount "$c"
            # rchar wchar read_bytes write_bytes deltas, in MB
            io=$(echo "$io0 $io1" | awk '{printf "%.1f\t%.1f\t%.1f\t%.1f", ($5-$1)/1e6, ($6-$2)/1e6, ($7-$3)/1e6, ($8-$4)/1e6}')
            [ -n "$DPID" ] || io=$(printf -- '-\t-\t-\t-')
            secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
            [ -s "$SECS_OUT" ] && secs=$(cat "$SECS_OUT")
            cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/t}')
            [ -n "$DPID" ] || cpu=-
            out=$(tr -d '\n' < "$OUT" 2>/dev/null)
            if [ "$rc" != 0 ] || [ -s "$RES/err.$c" ]; then
                { echo "== $w $c run $r rc=$rc"; head -5 "$RES/err.$c"; echo "   ($(wc -l < "$RES/err.$c") stderr lines)"; } >> "$ERRLOG"
                status=ERR
            else status=ok; fi
            # columns: workload cand run secs cpu status out rchar wchar read_bytes write_bytes
            # hwm_kib nodes rss_before_kib requests cpu_ns
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$c" "$r" "$secs" "$cpu" "$status" "$out" "$io" "$hwm" "${nodes:--}" "$rss0" "$reqs" "$cpuns" >> "$RAW"
            log "$w run $r $c: ${secs}s cpu=$cpu io(MB rchar wchar rd wr)=$(echo "$io" | tr '\t' ' ') hwm=${hwm}KiB $status out=$out"
        done
    done
done
LOAD_AFTER=$(cat /proc/loadavg)

# ---------------------------------------------------------------- report
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "-"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
col() { # workload cand field -> values
    awk -F'\t' -v w="$1" -v c="$2" -v f="$3" '$1==w && $2==c && $4!="MOUNTFAIL" && $f!="-" && $f!="" {print $f}' "$RAW"
}
DAEMONS=$(for c in $ACTIVE; do [ "$c" = kernel ] || printf '%s ' "$c"; done)
{
    echo "### unionrs benchmark $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- kernel: \`$(uname -r)\`, $(nproc) cores; load average before: \`$LOAD_BEFORE\`, after: \`$LOAD_AFTER\`"
    echo "- \`uptime\`: \`$(uptime)\`"
    echo "- runs: $RUNS per candidate per workload, interleaved, fresh upper/work + fresh mount each run; big file: ${BIG_MB} MiB"
    echo "- layers: lowerdir=big:mid:base (base = rootfs copy; mid = 400 overrides, 100 file whiteouts, 1 dir whiteout \`$(cat "$L/whiteout-dir.txt")\`, opaque etc/apt)"
    echo "- lookup64/lookup2: ${DEEP_FILES} bottom-layer files + a ${DEEP_DEPTH}-deep path through ${DEEP_LAYERS} layers / through 2 (top + bottom)"
    echo "- source tree (cp_a_src, grep_r_src): $(du -sh "$SRC" | cut -f1), $(find "$SRC" | wc -l) entries; append_big_nofsync mounts unionrs with fsync=0"
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
    if [ -n "$DAEMONS" ]; then
        echo
        echo "Daemon I/O per workload (medians, MB, from /proc/PID/io): rchar = all bytes read (/dev/fuse included), rd = read_bytes (from disk: what the page cache did not serve), wr = write_bytes."
        echo
        printf '| workload |'; for c in $DAEMONS; do printf ' %s rchar | %s rd | %s wr |' "$c" "$c" "$c"; done; echo
        printf '|---|'; for c in $DAEMONS; do printf -- '---:|---:|---:|'; done; echo
        for w in $WORKLOADS; do
            printf '| %s |' "$w"
            for c in $DAEMONS; do
                printf ' %s | %s | %s |' "$(col "$w" "$c" 8 | median)" "$(col "$w" "$c" 10 | median)" "$(col "$w" "$c" 11 | median)"
            done
            echo
        done
    fi
    UNIONRS_RUNS=$(for c in $ACTIVE; do case $c in unionrs*) printf '%s ' "$c" ;; esac; done)
    if [ -n "$UNIONRS_RUNS" ]; then
        echo
        echo "FUSE requests of the timed part (medians; from \`unionrs stats\`; entries: what the workload lists, stats, removes or writes, counted in the data — for find the three layers' entries, so a little more than the merged tree) and the daemon's CPU per request:"
        echo
        printf '| workload | entries |'; for c in $UNIONRS_RUNS; do printf ' %s requests | per entry | daemon CPU µs per request |' "$c"; done; echo
        printf '|---|---:|'; for c in $UNIONRS_RUNS; do printf -- '---:|---:|---:|'; done; echo
        for w in $WORKLOADS; do
            ent=$(entries_of "$w")
            printf '| %s | %s |' "$w" "$ent"
            for c in $UNIONRS_RUNS; do
                rq=$(col "$w" "$c" 15 | median); ns=$(col "$w" "$c" 16 | median)
                awk -v r="$rq" -v e="$ent" -v c="$ns" 'BEGIN{
                    if (r=="-") { printf " - | - | - |"; exit }
                    printf " %d | %.2f |", r, (e > 0 ? r/e : 0)
                    if (c=="-" || r+0<=0) printf " - |"; else printf " %.1f |", c/1e3/r }'
            done
            echo
        done
    fi
    if [ -n "$DAEMONS" ] && [[ " $WORKLOADS " == *" rss_walk "* ]]; then
        echo
        echo "Daemon peak RSS (VmHWM) after a full walk (rss_walk: find + stat of every entry on a fresh mount; entries = inodes the kernel holds; unionrs also reports its own cached_inodes):"
        echo
        echo '| candidate | RSS before KiB | VmHWM after KiB | entries | cached inodes | KiB per inode (HWM / entries) | KiB per inode ((HWM - before) / entries) |'
        echo '|---|---:|---:|---:|---:|---:|---:|'
        for c in $DAEMONS; do
            hwm=$(col rss_walk "$c" 12 | median); ent=$(col rss_walk "$c" 7 | median)
            nod=$(col rss_walk "$c" 13 | median); r0=$(col rss_walk "$c" 14 | median)
            per=$(awk -v h="$hwm" -v n="$ent" 'BEGIN{ if (h=="-" || n=="-" || n+0<=0) print "-"; else printf "%.2f", h/n }')
            mar=$(awk -v h="$hwm" -v b="$r0" -v n="$ent" 'BEGIN{ if (h=="-" || b=="-" || n=="-" || n+0<=0) print "-"; else printf "%.2f", (h-b)/n }')
            printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$r0" "$hwm" "$ent" "$nod" "$per" "$mar"
        done
    fi
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
