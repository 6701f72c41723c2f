#!/usr/bin/env bash
# Builds the local Docker image `hivemind/debian-base:12`: a minimal Debian rootfs made with
# debootstrap from the Debian mirror this machine's apt already uses, then `docker import`ed.
# No image registry is involved. It has no Node.js, so it is also the "machine without Node" the
# standalone-executable and install.sh tests run in. Idempotent: an existing image is kept
# (pass --force to rebuild).
#
#   bash scripts/debian-base-image.sh [--force] [--tag REF]
set -euo pipefail
tag="hivemind/debian-base:12"
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --tag) tag="$2"; shift ;;
    *) echo "debian-base-image: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
log() { printf '\033[1m[debian-base]\033[0m %s\n' "$*"; }

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag already exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debian-base-image: debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

# The mirror and suite this machine's apt is configured with (deb822 sources or sources.list).
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "debian-base-image: no Debian mirror found in /etc/apt/sources.list{,.d}" >&2; exit 1; }
# shellcheck source=/dev/null
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

work=$(mktemp -d /var/tmp/hivemind-debian-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
log "debootstrap --variant=minbase $suite (from this machine's apt mirror) into $work"
debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "debian-base-image: debootstrap failed" >&2
  exit 1
}
# Smaller image: apt lists and caches are not needed inside.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
log "docker import as $tag"
tar -C "$work/rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
log "$tag ready ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MiB", $1 / 1048576 }'))"
