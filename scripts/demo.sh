#!/usr/bin/env bash
# unionrs demo: mount two image layers with a writable upper, change the merged tree, show the
# copy-up and the whiteouts in the upper, remount to show the change persisted, and "commit" the
# upper as an OCI layer tar.
#
#   bash scripts/demo.sh          (as root, from a clone of the repository)
#
# Every step checks what it shows; the script stops with an error at the first thing that is
# not as expected. KEEP=1 keeps the temporary directory for a closer look.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
UNIONRS="$PREFIX/bin/unionrs" # installed by setup.sh: mount.fuse3 finds it there too

step() { printf '\n==== %s ====\n' "$*"; }
# Print a command the way one would type it, then run it.
run() {
  local a line='$'
  for a in "$@"; do
    case $a in
      *[!A-Za-z0-9_./:=,@%+-]*) line+=" '$a'" ;;
      *) line+=" $a" ;;
    esac
  done
  printf '%s\n' "$line"
  "$@"
}
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
check() {
  local what=$1
  shift
  if "$@"; then printf 'ok: %s\n' "$what"; else fail "$what"; fi
}
# One line per entry: mode, size, path; sorted by path.
tree_of() {
  find "$1" -mindepth 1 -printf '%P\t%M\t%s\n' | LC_ALL=C sort |
    awk -F'\t' '{ printf "  %s %6s  %s\n", $2, $3, $1 }'
}
no_wh_names() { [ -z "$(find "$1" -name '.wh.*' -print -quit)" ]; }
is_whiteout() { [ -c "$1" ] && [ "$(stat -c '%t:%T' "$1")" = "0:0" ]; }

step "0. Set up (packages, toolchain, build, install to $UNIONRS)"
bash "$ROOT/scripts/setup.sh"

DEMO=$(mktemp -d /tmp/unionrs-demo.XXXXXX)
LAYERS=$DEMO/layers
UPPER=$DEMO/upper
WORK=$DEMO/work
MNT=$DEMO/merged

cleanup() {
  local rc=$?
  trap - EXIT
  if mountpoint -q "$MNT" 2>/dev/null; then
    umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || true
  fi
  if mountpoint -q "$MNT" 2>/dev/null; then
    printf 'warning: %s is still mounted; left %s in place\n' "$MNT" "$DEMO" >&2
  elif [ "${KEEP:-0}" = 1 ]; then
    printf 'kept %s\n' "$DEMO"
  else
    rm -rf --one-file-system "$DEMO"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_union() {
  run "$UNIONRS" -o "lowerdir=$LAYERS/app:$LAYERS/base,upperdir=$UPPER,workdir=$WORK" "$MNT"
  check "the union is mounted at merged/" mountpoint -q "$MNT"
  run findmnt -n -o TARGET,FSTYPE,OPTIONS "$MNT"
}
# The unionrs daemons serving $MNT (their exe is $UNIONRS and one argument is $MNT).
daemon_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$UNIONRS" ] || continue
    tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$MNT" && printf '%s\n' "${p#/proc/}"
  done
  return 0
}
not_mounted() { ! mountpoint -q "$MNT"; }
unmount_union() {
  run umount "$MNT"
  check "merged/ is unmounted" not_mounted
  # The daemon exits on its own once the kernel drops the mount; wait so that the next mount
  # of the same upper/work does not race with it.
  for _ in $(seq 50); do
    [ -z "$(daemon_pids)" ] && return 0
    sleep 0.1
  done
  printf 'warning: the unionrs daemon (pid %s) is still running 5 s after umount\n' "$(daemon_pids | xargs)" >&2
}

cd "$DEMO"
printf '\nworking in %s\n' "$DEMO"

step "1. The example layers (examples/demo/layers, copied to layers/)"
cp -a "$ROOT/examples/demo/layers" "$LAYERS"
mkdir "$UPPER" "$WORK" "$MNT"
echo "layers/base (bottom):"
tree_of layers/base
echo "layers/app (top; etc/.wh.issue deletes base's etc/issue, OCI tar form):"
tree_of layers/app

step "2. Mount: lowerdir=app:base (app on top), upperdir=upper, workdir=work"
mount_union
echo "merged tree:"
tree_of merged
run cat merged/etc/motd
check "etc/motd comes from the app layer" grep -q 'app layer' merged/etc/motd
check "etc/os-release comes from the base layer" test -f merged/etc/os-release
check "app/config.json is there" test -f merged/app/config.json
check "etc/issue is hidden by app's whiteout" test ! -e merged/etc/issue
check "no .wh.* names are shown" no_wh_names merged
ino_before=$(stat -c %i merged/etc/motd)

step "3. Change a lower file: append to etc/motd"
echo 'Changed through the unionrs mount.' >>merged/etc/motd
run cat merged/etc/motd
check "merged etc/motd has the new line" grep -q 'Changed through the unionrs mount' merged/etc/motd
ino_after=$(stat -c %i merged/etc/motd)
printf 'inode number of merged/etc/motd: before copy-up %s, after %s (%s)\n' \
  "$ino_before" "$ino_after" "$([ "$ino_before" = "$ino_after" ] && echo same || echo 'differs')"

step "4. Delete lower objects: a file and a directory"
run rm merged/usr/share/doc/readme.txt
run rm -r merged/var/cache/old
check "usr/share/doc/readme.txt is gone" test ! -e merged/usr/share/doc/readme.txt
check "var/cache/old is gone" test ! -e merged/var/cache/old
echo "merged tree:"
tree_of merged

step "5. The copy-up: changes live in upper/, the lower layers are untouched"
echo "upper tree:"
tree_of upper
run ls -l upper/etc/motd layers/app/etc/motd
run stat -c '%n: %F, %s bytes, mode %a, inode %i' upper/etc/motd layers/app/etc/motd
run cat layers/app/etc/motd
check "upper/etc/motd holds the copied-up, changed file" grep -q 'Changed through the unionrs mount' upper/etc/motd
check "the lower etc/motd is unchanged" cmp -s layers/app/etc/motd "$ROOT/examples/demo/layers/app/etc/motd"
echo "whiteouts in the upper (kernel overlayfs format: character device 0/0):"
run ls -l upper/usr/share/doc upper/var/cache
run stat -c '%n: %F, device %t:%T' upper/usr/share/doc/readme.txt upper/var/cache/old
check "upper/usr/share/doc/readme.txt is a 0/0 whiteout" is_whiteout upper/usr/share/doc/readme.txt
check "upper/var/cache/old is a 0/0 whiteout" is_whiteout upper/var/cache/old
check "the lower file is still there" test -f layers/base/usr/share/doc/readme.txt
check "the lower directory is still there" test -d layers/base/var/cache/old
echo "xattrs in the upper (overlay and unionrs metadata):"
run getfattr -R -d -m - --absolute-names upper || true
echo "workdir (copy-ups are staged here, then renamed into upper/):"
tree_of work

step "6. Unmount"
unmount_union
check "the lower layers are byte-for-byte what the repository ships" \
  diff -r "$ROOT/examples/demo/layers" "$LAYERS"

step "7. Remount: the change persisted"
mount_union
echo "merged tree:"
tree_of merged
run cat merged/etc/motd
check "etc/motd still has the new line" grep -q 'Changed through the unionrs mount' merged/etc/motd
check "usr/share/doc/readme.txt is still gone" test ! -e merged/usr/share/doc/readme.txt
check "var/cache/old is still gone" test ! -e merged/var/cache/old
check "etc/issue is still hidden" test ! -e merged/etc/issue
unmount_union

step "8. Commit: export upper/ as an OCI layer tar"
if ! "$UNIONRS" export-layer --help >/dev/null 2>&1; then
  fail "'unionrs export-layer' is not available in this build yet, so the demo cannot commit; everything before this step ran for real"
fi
out=$(run "$UNIONRS" export-layer "$UPPER" "$DEMO/layer.tar") || fail "unionrs export-layer failed"
printf '%s\n' "$out"
diff_id=$(grep -oE 'sha256:[0-9a-f]{64}' <<<"$out" | tail -n 1 || true)
[ -n "$diff_id" ] || fail "export-layer printed no sha256: diff ID"
run tar tvf layer.tar
names=$(tar tf layer.tar | sed 's#^\./##')
has_entry() { grep -qxE "$1" <<<"$names"; }
check "the tar has the changed etc/motd" has_entry 'etc/motd'
check "the deleted file became usr/share/doc/.wh.readme.txt" has_entry 'usr/share/doc/\.wh\.readme\.txt'
check "the deleted directory became var/cache/.wh.old" has_entry 'var/cache/\.wh\.old'
check "the tar has no character devices" test -z "$(tar tvf layer.tar | grep '^c' || true)"
actual="sha256:$(sha256sum layer.tar | cut -d' ' -f1)"
check "the printed diff ID is the sha256 of the tar ($actual)" test "$diff_id" = "$actual"
printf '\nlayer diff ID: %s\n' "$diff_id"

step "Done"
echo "The temporary directory is removed on exit (KEEP=1 keeps it)."
