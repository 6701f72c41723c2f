#!/usr/bin/env bash
# Builds the worker's Docker image `hivemind/worker` (the Dockerfile at the root) offline, with no
# image registry: first its base `hivemind/worker-base:12`, which is `hivemind/debian-base:12`
# (scripts/debian-base-image.sh) plus the runtime packages below, installed from .deb files that
# the host's apt downloads, in a container with no network, and flattened into one layer; then
# `docker build --network none` of the Dockerfile with the standalone executable
# (dist-exe/hivemind-linux-x64, `npm run build:exe`). Each image carries the hash of what it is
# made of and is rebuilt only when that changed (pass --force to rebuild both). docs/docker-image.md.
#
#   bash scripts/worker-image.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    *) echo "worker-image: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
log() { printf '\033[1m[worker-image]\033[0m %s\n' "$*"; }
debian_base="hivemind/debian-base:12"
runtime_base="hivemind/worker-base:12"
image="hivemind/worker"
exe="dist-exe/hivemind-linux-x64"
hash_label="io.hivemind.build-hash"

# What the worker runs besides itself: `ip` and the WireGuard tools for the tunnel, the CA bundle
# for TLS, tini as PID 1, busybox for `hivemind dev`'s offline task image, mkfs.ext4 and debugfs
# (e2fsprogs) and losetup (mount) for each task's bounded /output (`hivemind doctor` checks each).
# Debian's minbase has the last two already; they are named so that stays true.
packages=(ca-certificates iproute2 wireguard-tools wireguard-go tini busybox-static e2fsprogs mount)
# Run in the base container (no network) after the packages' .deb files are mounted at /debs.
# Headers, docs, man pages and translations are not needed at run time (Node carries its own ICU data).
runtime_setup='set -e
export DEBIAN_FRONTEND=noninteractive
dpkg -i /debs/*.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }
rm -rf /usr/include /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian \
  /var/cache/apt/* /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/*.log /var/log/apt/*'

work="" cid="" build_log=""
cleanup() {
  [ -z "$cid" ] || docker rm -f "$cid" >/dev/null 2>&1 || true
  rm -rf "$work" "$build_log"
}
trap cleanup EXIT
label_of() { docker image inspect -f "{{ index .Config.Labels \"$hash_label\" }}" "$1" 2>/dev/null || true; }

docker image inspect "$debian_base" >/dev/null 2>&1 || bash scripts/debian-base-image.sh

# 1. The runtime base.
base_hash=$(printf '%s\n' "$(docker image inspect -f '{{.Id}}' "$debian_base")" "${packages[*]}" "$runtime_setup" | sha256sum | cut -c1-64)
if [ "$force" = 0 ] && [ "$(label_of "$runtime_base")" = "$base_hash" ]; then
  log "$runtime_base is up to date"
else
  work=$(mktemp -d /var/tmp/hivemind-worker-base.XXXXXX)
  # apt resolves against the base image's dpkg status, so it fetches exactly the missing packages.
  docker run --rm --network none "$debian_base" cat /var/lib/dpkg/status >"$work/status"
  mkdir -p "$work/debs/partial"
  download() {
    apt-get -qq --download-only --no-install-recommends -o Dir::State::status="$work/status" \
      -o Dir::Cache::archives="$work/debs" -o Debug::NoLocking=1 install "${packages[@]}" >"$work/apt.log" 2>&1
  }
  log "downloading ${packages[*]} and their dependencies (apt-get, this machine's mirror)"
  if ! download; then
    log "apt-get failed, updating the package lists once"
    if ! { apt-get update -qq && download; }; then
      cat "$work/apt.log" >&2
      echo "worker-image: apt-get could not download the packages" >&2
      exit 1
    fi
  fi
  log "installing $(find "$work/debs" -maxdepth 1 -name '*.deb' | wc -l) packages into $debian_base (no network)"
  cid=$(docker create --network none -v "$work/debs:/debs:ro" "$debian_base" bash -c "$runtime_setup")
  docker start -a "$cid"
  docker export "$cid" | docker import --change "LABEL $hash_label=$base_hash" --change 'CMD ["/bin/bash"]' - "$runtime_base" >/dev/null
  docker rm "$cid" >/dev/null
  cid=""
  log "$runtime_base ready ($(docker image inspect -f '{{.Size}}' "$runtime_base" | awk '{ printf "%.0f MiB", $1 / 1048576 }'))"
fi

# 2. The worker image.
[ -x "$exe" ] || { echo "worker-image: $exe is missing: run npm run build:exe" >&2; exit 1; }
# The labels say what the executable says of itself: "hivemind 0.1.0 (commit 88f1157, node v24.22.3, standalone)".
read -r version commit < <("$exe" --version | sed -E 's/^hivemind ([^ ]+) \(commit ([^,]+),.*/\1 \2/')
context=(Dockerfile .dockerignore docker "$exe")
image_hash=$({ docker image inspect -f '{{.Id}}' "$runtime_base"; sha256sum "${context[@]:0:2}" docker/* "$exe"; } | sha256sum | cut -c1-64)
if [ "$force" = 0 ] && [ "$(label_of "$image:$version")" = "$image_hash" ] && [ "$(label_of "$image:latest")" = "$image_hash" ]; then
  log "$image:$version is up to date"
  exit 0
fi
log "docker build --network none -t $image:$version -t $image:latest (commit $commit)"
# The context is sent as a tar made here: only these files, and symlinks followed (in a git worktree
# dist-exe/ may be a symlink, which docker would send as a link pointing outside the context).
build_log=$(mktemp /var/tmp/hivemind-worker-image.XXXXXX.log)
tar -ch "${context[@]}" | docker build --network none -f Dockerfile \
  --build-arg "HIVEMIND_VERSION=$version" --build-arg "HIVEMIND_COMMIT=$commit" --build-arg "HIVEMIND_BUILD_HASH=$image_hash" \
  -t "$image:$version" -t "$image:latest" - >"$build_log" 2>&1 || { cat "$build_log" >&2; echo "worker-image: docker build failed" >&2; exit 1; }
log "$image:$version ready ($(docker image inspect -f '{{.Size}}' "$image:$version" | awk '{ printf "%.0f MiB", $1 / 1048576 }'))"
# Earlier builds of these images, untagged by this one, and the intermediate stage the builder
# leaves behind: only dangling images carrying this script's label, and none a container uses.
docker image prune -f --filter dangling=true --filter "label=$hash_label" >/dev/null || true
