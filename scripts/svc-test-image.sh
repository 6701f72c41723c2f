#!/usr/bin/env bash
# Builds the local Docker image `hivemind/svc-test:1`, the service that issue 19's tests and the
# gateway benchmark run as replicas (test/images/svc-test/server.js: streams, SSE, WebSocket, a crash
# on start, a replica that turns unhealthy): `hivemind/debian-base:12` plus this machine's Node 24
# binary and the script, built with `docker build --network none` (no registry). Rebuilt only when
# its inputs changed (pass --force to rebuild).
#
#   bash scripts/svc-test-image.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
[ "${1:-}" = "--force" ] && force=1
log() { printf '\033[1m[svc-test-image]\033[0m %s\n' "$*"; }
# shellcheck source=/dev/null
. scripts/node-env.sh
image="hivemind/svc-test:1"
base="hivemind/debian-base:12"
hash_label="io.hivemind.build-hash"
node_bin=$(command -v node)
docker image inspect "$base" >/dev/null 2>&1 || bash scripts/debian-base-image.sh
hash=$(printf '%s\n' "$(docker image inspect -f '{{.Id}}' "$base")" "$(sha256sum "$node_bin" test/images/svc-test/server.js)" | sha256sum | cut -c1-64)
if [ "$force" = 0 ] && [ "$(docker image inspect -f "{{ index .Config.Labels \"$hash_label\" }}" "$image" 2>/dev/null || true)" = "$hash" ]; then
  log "$image is up to date"
  exit 0
fi
work=$(mktemp -d /var/tmp/hivemind-svc-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$node_bin" "$work/node"
cp test/images/svc-test/server.js "$work/server.js"
cat >"$work/Dockerfile" <<DOCKERFILE
FROM $base
COPY node /usr/local/bin/node
COPY server.js /srv/server.js
LABEL $hash_label=$hash
WORKDIR /srv
ENTRYPOINT ["/usr/local/bin/node", "/srv/server.js"]
CMD ["serve"]
DOCKERFILE
log "docker build --network none -t $image"
# (the legacy builder's deprecation notice on stderr is shown only when the build fails)
docker build -q --network none -t "$image" "$work" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
log "$image ready ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MiB", $1 / 1048576 }'))"
