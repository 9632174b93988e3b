#!/usr/bin/env bash
# podman / buildah with `mount_program = unionrs`, checked against kernel overlayfs.
#
#   scripts/podman-check.sh [root|rootless|all|uidmap]     (default: root)
#
# uidmap: root `podman run --uidmap 0:100000:65536 --gidmap 0:100000:65536` (containers/storage
# then passes uidmapping=/gidmapping= to the mount program); a known failure for now.
#
# Run as root. Needs podman, buildah, runc, skopeo, docker-registry, busybox-static, curl,
# and for rootless uidmap (newuidmap/newgidmap) and acl (setfacl). scripts/setup.sh installs
# them. Nothing under /etc/containers is read or changed: every podman/buildah call runs with
# CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF pointing at files in
# a temporary directory, and every graph root lives there too.
#
# What it does:
#  1. builds two images with buildah from a busybox-static rootfs (in a kernel-overlay store):
#     `base`, and `multi` on top of it whose second layer holds whiteouts (.wh.gone, .wh.rmme),
#     an opaque directory (opq/.wh..wh..opq) and additions to a lower directory;
#  2. pushes `multi` to a loopback registry (docker-registry on 127.0.0.1, own config);
#  3. for each store (kernel overlay = reference, then mount_program = unionrs through a
#     logging wrapper) as root (mode root) or as an unprivileged user (mode rootless):
#     podman pull; podman run --rm cat /etc/os-release; / must be fuse.unionrs in the
#     container's /proc/mounts; a view of the whole tree (type, mode, owner, size, content
#     length) of the image, of a container after writes/deletes/renames of files and
#     directories (lower ones too), and of the image `podman commit` made of it;
#     `podman image mount` (read-only, fuse.unionrs in /proc/mounts, writes fail with EROFS);
#     `buildah from/run/commit` and a run of the result;
#  4. compares each view of the unionrs store with the kernel one: they must be identical.
#     `podman diff` output is compared too, but only reported (the same merged tree can be
#     recorded differently in the upper layer).
#
# Environment:
#   UNIONRS        unionrs binary (default: target/release/unionrs, else unionrs on PATH)
#   PODMAN_USER    rootless user (default: tests; created if missing); subuid/subgid ranges
#                  100000-165535 are added if the user has none
#   KEEP=1         keep the work directory (configs, logs, views) instead of removing it
#   WORK           use this (new or empty) directory instead of a mktemp one
#
# Output: one line per check ("ok ..." / "FAIL ..."), notes ("note ..."), and the mount
# command lines containers/storage passed to unionrs (from the wrapper's log). Exit status 0
# only if every check passed. Cleans up containers, images, mounts, the registry and the
# rootless pause process it started, and restores /dev/fuse's mode and ACL.
set -uo pipefail

MODE=${1:-root}
case $MODE in root|rootless|all|uidmap|forcemask) ;; *) echo "usage: $0 [root|rootless|all|uidmap|forcemask]" >&2; exit 2;; esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "podman-check: run as root" >&2; exit 2; }

UNIONRS=${UNIONRS:-}
if [ -z "$UNIONRS" ]; then
  for c in "${CARGO_TARGET_DIR:-$ROOT/target}/release/unionrs" "$(command -v unionrs || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && { UNIONRS=$c; break; }
  done
fi
[ -n "$UNIONRS" ] && [ -x "$UNIONRS" ] || { echo "podman-check: no unionrs binary (set UNIONRS)" >&2; exit 2; }
UNIONRS=$(readlink -f "$UNIONRS")

need=(podman buildah runc skopeo docker-registry busybox curl shuf)
[ "$MODE" != root ] && need+=(newuidmap newgidmap setfacl)
for t in "${need[@]}"; do
  command -v "$t" >/dev/null || { echo "podman-check: FAIL: $t is missing (run scripts/setup.sh)" >&2; exit 2; }
done
[ -x /bin/busybox ] && file_is_static=$(ldd /bin/busybox 2>&1 | grep -c 'not a dynamic') || true
[ "${file_is_static:-0}" -ge 1 ] || { echo "podman-check: FAIL: /bin/busybox is not static (apt-get install busybox-static)" >&2; exit 2; }

if [ -n "${WORK:-}" ]; then mkdir -p "$WORK"; else WORK=$(mktemp -d /var/tmp/unionrs-podman.XXXXXX); fi
chmod 755 "$WORK"
FAILS=0
ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; FAILS=$((FAILS + 1)); }
note() { printf 'note %s\n' "$*"; }

REG_PID=""
FUSE_MODE=""
CLEAN_STORES=()
PODMAN_USER=${PODMAN_USER:-tests}

cleanup() {
  set +e
  for s in "${CLEAN_STORES[@]}"; do
    local who=${s%%:*} conf=${s#*:}
    if [ "$who" = root ]; then
      env -u XDG_RUNTIME_DIR CONTAINERS_STORAGE_CONF="$conf" CONTAINERS_CONF="$WORK/containers.conf" buildah rm --all >/dev/null 2>&1
      env CONTAINERS_STORAGE_CONF="$conf" CONTAINERS_CONF="$WORK/containers.conf" podman rm -af -t0 >/dev/null 2>&1
      env CONTAINERS_STORAGE_CONF="$conf" CONTAINERS_CONF="$WORK/containers.conf" podman rmi -af >/dev/null 2>&1
    else
      as_user_conf "$conf" buildah rm --all >/dev/null 2>&1
      as_user_conf "$conf" podman rm -af -t0 >/dev/null 2>&1
      as_user_conf "$conf" podman rmi -af >/dev/null 2>&1
    fi
  done
  # the rootless pause process podman started (its pid is in the user's runtime dir)
  for p in "$WORK"/rl/xdg/libpod/tmp/pause.pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
  done
  # any mount left under WORK (deepest first)
  awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
  if [ -n "$FUSE_MODE" ]; then setfacl -b /dev/fuse; chmod "$FUSE_MODE" /dev/fuse; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- configuration files ---------------------------------------------------------------------
cat > "$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
netns = "none"
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
# a free loopback port (nothing answers a connect on it)
for _ in $(seq 50); do
  PORT=$(shuf -i 20000-60000 -n 1)
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
done
REG=127.0.0.1:$PORT
cat > "$WORK/registries.conf" <<EOF
unqualified-search-registries = []
[[registry]]
location = "$REG"
insecure = true
EOF
# the wrapper containers/storage runs as mount_program: logs its arguments, then execs unionrs
cat > "$WORK/wrap.sh" <<EOF
#!/bin/sh
printf 'uid=%s cwd=%s: %s\n' "\$(id -u)" "\$PWD" "\$*" >> "$WORK/mounts.log"
exec "$UNIONRS" "\$@"
EOF
chmod 755 "$WORK/wrap.sh"; : > "$WORK/mounts.log"; chmod 666 "$WORK/mounts.log"

# storage_conf NAME DIR [MOUNT_PROGRAM]
storage_conf() {
  cat > "$WORK/storage-$1.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$2/graph"
rootless_storage_path = "$2/graph"
runroot = "$2/run"
[storage.options.overlay]
mountopt = "nodev"
EOF
  [ -n "${3:-}" ] && sed -i "/^mountopt/i mount_program = \"$3\"" "$WORK/storage-$1.conf"
  chmod 644 "$WORK/storage-$1.conf"
}
storage_conf build "$WORK/build"
storage_conf kernel "$WORK/kernel"
storage_conf unionrs "$WORK/unionrs" "$WORK/wrap.sh"
storage_conf rl-kernel "$WORK/rl/kernel"
storage_conf rl-unionrs "$WORK/rl/unionrs" "$WORK/wrap.sh"
# containers/storage's force_mask: layer files unpacked with mode 0755, their owner and mode
# kept in user.containers.override_stat, and xattr_permissions=2 passed to the mount program
storage_conf fm-unionrs "$WORK/fm/unionrs" "$WORK/wrap.sh"
sed -i '/^mountopt/a force_mask = "shared"' "$WORK/storage-fm-unionrs.conf"

export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
unset XDG_RUNTIME_DIR # root: podman uses /run; rootless gets its own below

# in-container helpers (bind-mounted read-only)
cat > "$WORK/view.sh" <<'EOF'
# One line per path: type, mode, owner, size and content length; mtime only when it was set
# on purpose (< 2001-09-10), since real times differ between runs.
cd / && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./etc/hosts \
   -o -path ./etc/hostname -o -path ./etc/resolv.conf -o -path ./view.sh -o -path ./mutate.sh \) -prune -o -print |
 sort | while read -r p; do
  if [ -L "$p" ]; then echo "$p L $(readlink "$p")";
  elif [ -d "$p" ]; then echo "$p D $(stat -c '%a %u:%g' "$p")";
  else t=$(stat -c %Y "$p"); [ "$t" -lt 1000000001 ] || t=-
       echo "$p F $(stat -c '%a %u:%g %s' "$p") $t $(cat "$p" | wc -c) $(cat "$p" | head -c 40 | tr -c 'a-zA-Z0-9=\n' _ | head -1)"; fi
done
EOF
cat > "$WORK/mutate.sh" <<'EOF'
set -e
echo hello > /newfile
mkdir -p /newdir/deep && echo d > /newdir/deep/f
echo appended >> /lowdir/file
mv /renme /renamed
rm /lowdir/sub/f && rmdir /lowdir/sub
mv /gone2 /gone2-renamed
mv /opq /opq-moved && mkdir /opq && echo fresh > /opq/fresh
rm -f /etc/os-release && printf 'NAME="changed"\n' > /etc/os-release
ln -s /newfile /newlink
chmod 600 /lowdir/l2
touch -d @1000000000 /lowdir/file
mkdir /lowdir/newsub && mv /lowdir/newsub /newsub-moved
echo mutated
EOF
chmod 644 "$WORK/view.sh" "$WORK/mutate.sh"

# ---- registry and images -------------------------------------------------------------------
mkdir -p "$WORK/registry"
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $REG
EOF
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do curl -sf "http://$REG/v2/" >/dev/null && break; sleep 0.1; done
curl -sf "http://$REG/v2/" >/dev/null || { fail "registry did not start: $(tail -3 "$WORK/registry.log")"; exit 1; }

build_images() {
  local rf=$WORK/rootfs c
  mkdir -p "$rf"/{bin,etc,lowdir/sub,gone,opq/old,tmp,proc,sys,dev,run}
  cp /bin/busybox "$rf/bin/"
  for a in sh ls cat rm mv mkdir rmdir echo find stat touch ln chmod true sed sort wc cp grep head tr printf; do
    ln -s busybox "$rf/bin/$a"
  done
  printf 'NAME="unionrs-test"\nID=unionrs\n' > "$rf/etc/os-release"
  echo low > "$rf/lowdir/file"; echo sub > "$rf/lowdir/sub/f"; echo gone > "$rf/gone/f"
  echo old > "$rf/opq/old/f"; echo keep > "$rf/opq/keep"; echo rmme > "$rf/rmme"; echo renme > "$rf/renme"
  chmod 1777 "$rf/tmp"
  export CONTAINERS_STORAGE_CONF=$WORK/storage-build.conf
  CLEAN_STORES+=("root:$CONTAINERS_STORAGE_CONF")
  c=$(buildah from scratch) && buildah copy -q "$c" "$rf" / >/dev/null &&
    buildah config --env PATH=/bin --cmd /bin/sh "$c" && buildah commit -q "$c" localhost/base >/dev/null &&
    buildah rm "$c" >/dev/null || return 1
  c=$(buildah from localhost/base) &&
    buildah run "$c" -- sh -c 'rm /rmme && rm -rf /gone && rm -rf /opq && mkdir /opq && echo new > /opq/new &&
      echo l2 > /lowdir/l2 && mkdir /gone2 && echo x > /gone2/x' &&
    buildah commit -q "$c" localhost/multi >/dev/null && buildah rm "$c" >/dev/null || return 1
  buildah push -q --tls-verify=false localhost/multi "docker://$REG/test/multi:latest" >/dev/null || return 1
}
if build_images > "$WORK/build.log" 2>&1; then
  ok "built localhost/multi (2 layers: whiteouts, opaque dir) and pushed it to $REG"
else
  fail "building the test images: $(tail -5 "$WORK/build.log")"; exit 1
fi
# the layer must really hold whiteouts and an opaque marker
# manifest digests in order: config, layer 1, layer 2
layer_list=$(skopeo inspect --tls-verify=false --raw "docker://$REG/test/multi:latest" 2>/dev/null |
  grep -o 'sha256:[0-9a-f]\{64\}' | sed -n 3p |
  xargs -I{} curl -sfL "http://$REG/v2/test/multi/blobs/{}" | tar tz 2>/dev/null)
if grep -qx '.wh.gone' <<<"$layer_list" && grep -qx 'opq/.wh..wh..opq' <<<"$layer_list"; then
  ok "layer 2 holds .wh.gone, .wh.rmme and opq/.wh..wh..opq"
else
  fail "layer 2 has no whiteout/opaque entries: $layer_list"
fi
IMG=$REG/test/multi:latest

# ---- the flow --------------------------------------------------------------------------------
# Runs as the current user (root, or the rootless user through as_user). $1 = store name,
# $2 = 1 if the store's mounts must be fuse.unionrs. Writes views to $WORK/out-$1/.
# Prints "ok"/"FAIL" lines itself.
cat > "$WORK/flow.sh" <<'FLOW'
set -uo pipefail
name=$1 fuse=$2 W=$WORK O=$WORK/out-$1
mkdir -p "$O"
F=0
ok() { printf 'ok   [%s] %s\n' "$name" "$*"; }
fail() { printf 'FAIL [%s] %s\n' "$name" "$*"; F=$((F + 1)); }
run() { # run DESC CMD...: the command's output goes to $O/log; fail with its tail
  local d=$1; shift
  if "$@" >> "$O/log" 2>&1; then return 0; fi
  fail "$d: exit $?: $*: $(tail -3 "$O/log" | tr '\n' ' ')"; return 1
}
rootfs_type() { awk '$2 == "/" {t=$3} END {print t}'; }
want_type() { [ "$fuse" = 1 ] && echo fuse.unionrs || echo overlay; }
V="-v $W/view.sh:/view.sh:ro -v $W/mutate.sh:/mutate.sh:ro"

run "podman pull" podman pull -q "$IMG" || exit 1
ok "podman pull $IMG"
out=$(podman run --rm "$IMG" cat /etc/os-release 2>&1)
if grep -q 'NAME="unionrs-test"' <<<"$out"; then ok "podman run --rm IMG cat /etc/os-release"; else fail "podman run cat /etc/os-release: $out"; fi
t=$(podman run --rm "$IMG" cat /proc/mounts 2>&1 | rootfs_type)
if [ "$t" = "$(want_type)" ]; then ok "container / is $t"; else fail "container / is '$t', want $(want_type)"; fi
podman run --rm $V "$IMG" sh /view.sh > "$O/view-image" 2>>"$O/log" || fail "view of the image"
if podman run --name mut $V "$IMG" sh -c 'sh /mutate.sh && sh /view.sh' > "$O/view-mutated" 2>>"$O/log" &&
   grep -q mutated "$O/view-mutated"; then
  sed -i '/^mutated$/d' "$O/view-mutated"; ok "container writes, deletes, renames (files and lower dirs)"
else
  fail "mutating container: $(tail -3 "$O/view-mutated" "$O/log" | tr '\n' ' ')"
fi
podman diff mut 2>>"$O/log" | sort > "$O/diff"
run "podman commit" podman commit -q mut localhost/committed && ok "podman commit"
run "podman rm" podman rm mut
podman run --rm $V localhost/committed sh /view.sh > "$O/view-committed" 2>>"$O/log" || fail "run of the committed image"
if grep -q '^./renamed F' "$O/view-committed" && grep -q '^./newsub-moved D' "$O/view-committed" &&
   ! grep -q '^./renme ' "$O/view-committed" && ! grep -q '^./lowdir/sub' "$O/view-committed"; then
  ok "committed image shows the changes"
else
  fail "committed image lacks the changes (see $O/view-committed)"
fi
# podman image mount: read-only, lowerdir only (rootless: inside podman unshare)
im='p=$(podman image mount "$IMG") || exit 1; echo "path=$p"; awk -v p="$p" '"'"'$2 == p {print "type=" $3 " opts=" $4}'"'"' /proc/mounts
    cat "$p/etc/os-release"; if touch "$p/x" 2>/dev/null; then echo wrote; fi; ls "$p/opq" | tr "\n" " "; echo
    podman image unmount "$IMG" >/dev/null; awk -v p="$p" '"'"'$2 == p {print "still-mounted"}'"'"' /proc/mounts'
if [ "$(id -u)" = 0 ]; then out=$(IMG=$IMG sh -c "$im" 2>&1); else out=$(IMG=$IMG podman unshare sh -c "$im" 2>&1); fi
echo "$out" >> "$O/log"
if grep -q "type=$(want_type) opts=ro" <<<"$out" && grep -q unionrs-test <<<"$out" && ! grep -q wrote <<<"$out" &&
   grep -qx 'new ' <<<"$out" && ! grep -q still-mounted <<<"$out"; then
  ok "podman image mount (read-only $(want_type)), image unmount"
else
  fail "podman image mount: $(tr '\n' ' ' <<<"$out")"
fi
# buildah from / run / commit
c=$(buildah from -q "$IMG" 2>>"$O/log") || fail "buildah from"
if [ -n "${c:-}" ]; then
  t=$(buildah run "$c" -- cat /proc/mounts 2>>"$O/log" | rootfs_type)
  if [ "$t" = "$(want_type)" ]; then ok "buildah run: / is $t"; else fail "buildah run: / is '$t', want $(want_type)"; fi
  run "buildah run" buildah run "$c" -- sh -c 'echo built > /built; rm -rf /lowdir; mv /renme /opq/renme2; mv /gone2 /gone3' &&
    run "buildah commit" buildah commit -q "$c" localhost/built && ok "buildah from/run/commit"
  run "buildah rm" buildah rm "$c"
  podman run --rm $V localhost/built sh /view.sh > "$O/view-built" 2>>"$O/log" || fail "run of the buildah-built image"
  if grep -q '^./built F' "$O/view-built"; then ok "run of the buildah-built image"; else fail "buildah-built image lacks /built"; fi
fi
exit $((F > 0))
FLOW
chmod 644 "$WORK/flow.sh"

as_user_conf() { # as_user_conf STORAGE_CONF CMD...
  local conf=$1; shift
  runuser -u "$PODMAN_USER" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK/rl/home" \
    XDG_RUNTIME_DIR="$WORK/rl/xdg" CONTAINERS_CONF="$WORK/containers.conf" \
    CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf" CONTAINERS_STORAGE_CONF="$conf" \
    WORK="$WORK" IMG="$IMG" "$@"
}

# compare_views KERNEL_STORE UNIONRS_STORE
compare_views() {
  local k=$WORK/out-$1 u=$WORK/out-$2 v
  for v in view-image view-mutated view-committed view-built; do
    if [ ! -s "$k/$v" ]; then fail "[$2] no kernel $v to compare with"; continue; fi
    if diff "$k/$v" "$u/$v" > "$WORK/cmp-$2-$v" 2>&1; then
      ok "[$2] $v is identical to kernel overlayfs's ($(wc -l < "$k/$v") entries)"
    else
      fail "[$2] $v differs from kernel overlayfs's (< kernel, > unionrs): $(head -12 "$WORK/cmp-$2-$v" | tr '\n' ' ')"
    fi
  done
  if diff "$k/diff" "$u/diff" > "$WORK/cmp-$2-diff" 2>&1; then
    ok "[$2] podman diff is identical to kernel overlayfs's"
  else
    note "[$2] podman diff differs from kernel overlayfs's (same merged tree, other upper layout): $(grep '^[<>]' "$WORK/cmp-$2-diff" | tr '\n' ' ')"
  fi
}

show_mounts() {
  note "mount command lines passed to unionrs ($1), \$O = overlay dir:"
  sed -n "/^uid=/p" "$WORK/mounts.log" | grep -v -- ' --version$' | sed -E 's#'"$2"'/graph/overlay#$O#g; s#[0-9a-f]{64}#ID#g; s#/l/[A-Z0-9]{26}#/l/SHORT#g' |
    sort | uniq -c | sed 's/^/     /'
}

run_root() {
  local s
  for s in kernel unionrs; do
    CLEAN_STORES+=("root:$WORK/storage-$s.conf")
    : > "$WORK/mounts.log"
    CONTAINERS_STORAGE_CONF=$WORK/storage-$s.conf WORK=$WORK IMG=$IMG \
      bash "$WORK/flow.sh" "$s" "$([ $s = unionrs ] && echo 1 || echo 0)" || FAILS=$((FAILS + 1))
  done
  compare_views kernel unionrs
  show_mounts root "$WORK/unionrs"
}

run_rootless() {
  id "$PODMAN_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PODMAN_USER" ||
    { fail "cannot create user $PODMAN_USER"; return; }
  grep -q "^$PODMAN_USER:" /etc/subuid || usermod --add-subuids 100000-165535 "$PODMAN_USER"
  grep -q "^$PODMAN_USER:" /etc/subgid || usermod --add-subgids 100000-165535 "$PODMAN_USER"
  mkdir -p "$WORK/rl/home" "$WORK/rl/xdg"; chmod 755 "$WORK/rl"; chmod 700 "$WORK/rl/xdg"
  chown -R "$PODMAN_USER:" "$WORK/rl"
  # /dev/fuse for this user only, for the test only (restored in cleanup)
  FUSE_MODE=$(stat -c %a /dev/fuse)
  setfacl -m "u:$PODMAN_USER:rw" /dev/fuse || { fail "setfacl /dev/fuse"; return; }
  local s
  for s in rl-kernel rl-unionrs; do
    CLEAN_STORES+=("user:$WORK/storage-$s.conf")
    mkdir -p "$WORK/out-$s"; chown "$PODMAN_USER:" "$WORK/out-$s"
    : > "$WORK/mounts.log"
    as_user_conf "$WORK/storage-$s.conf" bash "$WORK/flow.sh" "$s" "$([ $s = rl-unionrs ] && echo 1 || echo 0)" ||
      FAILS=$((FAILS + 1))
  done
  compare_views rl-kernel rl-unionrs
  show_mounts rootless "$WORK/rl/unionrs"
}

run_uidmap() {
  local s out want
  for s in kernel unionrs; do
    CLEAN_STORES+=("root:$WORK/storage-$s.conf")
    : > "$WORK/mounts.log"
    export CONTAINERS_STORAGE_CONF=$WORK/storage-$s.conf
    podman pull -q "$IMG" >/dev/null 2>&1 || { fail "[$s] podman pull"; continue; }
    out=$(podman run --rm --uidmap 0:100000:65536 --gidmap 0:100000:65536 "$IMG" sh -c \
      'stat -c "%u:%g" /bin/busybox /lowdir; echo x > /tmp/w && stat -c "%u:%g" /tmp/w; touch /lowdir/file && echo touched' 2>&1)
    want=$'0:0\n0:0\n0:0\ntouched'
    if [ "$out" = "$want" ]; then ok "[$s] --uidmap: owners 0:0 inside, lower file writable"
    else fail "[$s] podman run --uidmap 0:100000:65536 --gidmap 0:100000:65536: $(tr '\n' ' ' <<<"$out")"; fi
  done
  unset CONTAINERS_STORAGE_CONF
  show_mounts uidmap "$WORK/unionrs"
}

# force_mask (root): the container must show the image's owners and modes (the kernel store's
# view, which has no force_mask) although every layer file on disk has mode 0755.
run_forcemask() {
  local s out
  local look='stat -c "%n %u:%g:%a" /bin/busybox /lowdir /lowdir/file /lowdir/l2 /opq/new /gone2/x /etc/os-release;
    echo x > /tmp/w; chown 3:4 /tmp/w; chmod 640 /tmp/w; stat -c "%n %u:%g:%a" /tmp/w;
    mkdir /tmp/d; chown 5:6 /tmp/d; chmod 2750 /tmp/d; stat -c "%n %u:%g:%a" /tmp/d'
  for s in kernel fm-unionrs; do
    CLEAN_STORES+=("root:$WORK/storage-$s.conf")
    : > "$WORK/mounts.log"
    export CONTAINERS_STORAGE_CONF=$WORK/storage-$s.conf
    podman pull -q "$IMG" >/dev/null 2>&1 || { fail "[$s] podman pull"; continue; }
    podman run --rm "$IMG" sh -c "$look" > "$WORK/fm-$s.out" 2>&1 || fail "[$s] podman run: $(tail -3 "$WORK/fm-$s.out" | tr '\n' ' ')"
  done
  unset CONTAINERS_STORAGE_CONF
  local layer masked
  layer=$(grep -l . "$WORK"/fm/unionrs/graph/overlay/*/diff/lowdir/file 2>/dev/null | head -1)
  masked=$( [ -n "$layer" ] && stat -c %a "$layer")
  if [ "$masked" = 755 ] && getfattr --only-values -n user.containers.override_stat "$layer" 2>/dev/null | grep -q ':0644$'; then
    ok "[fm-unionrs] force_mask stored lowdir/file as mode 755 with user.containers.override_stat"
  else
    fail "[fm-unionrs] force_mask did not take effect on disk (lowdir/file mode ${masked:-missing})"
  fi
  if grep -q 'xattr_permissions=2' "$WORK/mounts.log"; then
    ok "[fm-unionrs] containers/storage passed xattr_permissions=2"
  else
    fail "[fm-unionrs] no xattr_permissions=2 in: $(tail -1 "$WORK/mounts.log")"
  fi
  if [ -s "$WORK/fm-kernel.out" ] && diff "$WORK/fm-kernel.out" "$WORK/fm-fm-unionrs.out" > "$WORK/cmp-fm" 2>&1; then
    ok "[fm-unionrs] force_mask: owners and modes inside equal the kernel store's ($(wc -l < "$WORK/fm-kernel.out") paths)"
  else
    fail "[fm-unionrs] force_mask view differs (< kernel, > unionrs): $(tr '\n' ' ' < "$WORK/cmp-fm")"
  fi
  show_mounts forcemask "$WORK/fm/unionrs"
}

case $MODE in
  forcemask) run_forcemask ;;
  uidmap) run_uidmap ;;
  root) run_root ;;
  rootless) run_rootless ;;
  all) run_root; run_rootless ;;
esac

if [ "$FAILS" -eq 0 ]; then echo "podman-check $MODE: all checks passed"; exit 0; fi
echo "podman-check $MODE: $FAILS failure(s) (KEEP=1 keeps $WORK)"; exit 1
