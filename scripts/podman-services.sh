#!/usr/bin/env bash
# Podman's Docker-compatible API on this machine, for workers and tests that run tasks on Podman:
# rootful (as root) on /run/hivemind-podman/podman.sock and rootless (as the ordinary user
# hmpodman) on /run/hivemind-podman-rootless/podman.sock. No systemd is assumed: each
# `podman system service --time=0` runs in the background with a pid file next to its socket.
#
#   podman-services.sh setup              the user hmpodman, its subordinate ids, containers.conf, storage.conf
#   podman-services.sh start|stop|status  both API services (start and stop are idempotent), and the
#                                         shared mount rootless tasks' /output filesystems are mounted in
#   podman-services.sh load-images IMG... copies Docker's images into both Podman stores (skips an image whose id already matches)
#
# Needs root. Every verb is idempotent: a second run changes nothing and restarts nothing that answers.
set -euo pipefail

ROOTFUL_DIR=/run/hivemind-podman
ROOTLESS_DIR=/run/hivemind-podman-rootless
# Where a worker on the rootless Podman mounts its tasks' /output filesystems (LoopOutputVolumes,
# mountOnHost): a shared mount, so mounts made there later reach the rootless Podman's own mount
# namespace (made once by its pause process); anywhere else they stay invisible to its containers.
ROOTLESS_OUTPUTS=/var/lib/hivemind-podman-rootless/output-fs
ROOTLESS_USER=hmpodman
ROOTLESS_HOME=/home/$ROOTLESS_USER
SUBID_START=100000
SUBID_COUNT=65536
CONF_DROPIN=/etc/containers/containers.conf.d/50-hivemind.conf
LOG_DIR=/var/log

log() { printf '\033[1m[podman]\033[0m %s\n' "$*"; }
die() { printf '[podman] %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it creates the user $ROOTLESS_USER and serves the rootful socket)"

rootless_uid() { id -u "$ROOTLESS_USER"; }
# XDG_RUNTIME_DIR of the rootless Podman: private to hmpodman (its runtime state, the pause process's
# namespace files). /run/user/<uid> as a login session would make it, made here since no logind runs.
rootless_xdg() { echo "/run/user/$(rootless_uid)"; }
as_rootless() {
  runuser -u "$ROOTLESS_USER" -- env HOME="$ROOTLESS_HOME" XDG_RUNTIME_DIR="$(rootless_xdg)" XDG_CONFIG_HOME="$ROOTLESS_HOME/.config" "$@"
}

# --- setup --------------------------------------------------------------------------------------

write_if_changed() { # path mode owner content: rewrites only on a difference
  local path=$1 mode=$2 owner=$3 content=$4
  if [ ! -f "$path" ] || [ "$(cat "$path")" != "$content" ]; then
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" > "$path.tmp" && mv "$path.tmp" "$path"
    log "wrote $path"
  fi
  chmod "$mode" "$path"
  chown "$owner" "$path"
}

setup_user() {
  if ! id "$ROOTLESS_USER" >/dev/null 2>&1; then
    log "creating user $ROOTLESS_USER (home $ROOTLESS_HOME)"
    useradd --create-home --home-dir "$ROOTLESS_HOME" --shell /usr/sbin/nologin --comment 'HiveMind rootless Podman' "$ROOTLESS_USER"
  fi
  # useradd adds subordinate ids on its own only when /etc/subuid already exists; make sure either way.
  local end=$((SUBID_START + SUBID_COUNT - 1))
  touch /etc/subuid /etc/subgid
  if ! grep -q "^$ROOTLESS_USER:" /etc/subuid; then
    log "subordinate uids $SUBID_START-$end for $ROOTLESS_USER"
    usermod --add-subuids "$SUBID_START-$end" "$ROOTLESS_USER"
  fi
  if ! grep -q "^$ROOTLESS_USER:" /etc/subgid; then
    log "subordinate gids $SUBID_START-$end for $ROOTLESS_USER"
    usermod --add-subgids "$SUBID_START-$end" "$ROOTLESS_USER"
  fi
}

setup_dirs() {
  local uid; uid=$(rootless_uid)
  install -d -m 0755 -o root -g root "$ROOTFUL_DIR"
  install -d -m 0700 -o "$uid" -g "$uid" "$(rootless_xdg)"
  # Root (the worker) connects to the rootless socket; other users do not need to.
  install -d -m 0750 -o "$uid" -g "$uid" "$ROOTLESS_DIR"
}

# The [engine] and [containers] lines this host needs, decided from the host itself (pure reads).
engine_conf() {
  # cgroupfs and a file events log: there is no systemd here (PID 1 is not systemd), so Podman's
  # systemd cgroup manager and journald logger would fail.
  printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
  # crun (1.8) refuses a hybrid cgroup host whose cgroup2 mount holds a controller ("cgroups in
  # hybrid mode not supported, drop all controllers from cgroupv2"); runc (Docker's) runs there.
  if grep -qs "[a-z]" /sys/fs/cgroup/unified/cgroup.controllers; then
    printf 'runtime = "runc"\n'
  fi
  # Rootful Podman asks every container for nofile and nproc 1048576; without CAP_SYS_RESOURCE
  # (a root inside a sandbox) that setrlimit fails and no container starts. Ask for what this
  # root holds instead: its hard nofile, and nproc no higher than the 32768 Podman's conmon runs with.
  local capeff; capeff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  if (( (16#$capeff >> 24 & 1) == 0 )); then
    local nofile nproc; nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' "$nofile" "$nofile" "$nproc" "$nproc"
  fi
}

setup_conf() {
  # Read by rootful and rootless Podman alike.
  write_if_changed "$CONF_DROPIN" 0644 root:root "# Written by HiveMind scripts/podman-services.sh setup (see the reasons there).
$(engine_conf)"

  # Rootless networking is slirp4netns, which needs /dev/net/tun; where hmpodman may not open it the
  # default is no network, which is what every HiveMind task gets anyway.
  local uid; uid=$(rootless_uid)
  if ! runuser -u "$ROOTLESS_USER" -- test -r /dev/net/tun -a -w /dev/net/tun; then
    install -d -m 0755 -o "$uid" -g "$uid" "$ROOTLESS_HOME/.config" "$ROOTLESS_HOME/.config/containers"
    write_if_changed "$ROOTLESS_HOME/.config/containers/containers.conf" 0644 "$uid:$uid" '# Written by HiveMind scripts/podman-services.sh setup: /dev/net/tun is closed to this user.
[containers]
netns = "none"'
  fi

  # Rootless storage: overlay. Native (kernel) overlay inside the user namespace when the kernel
  # allows it (Linux >= 5.13), else fuse-overlayfs. Decided once, on the first setup: changing the
  # driver of a store that holds images would need a reset of that store.
  local conf=$ROOTLESS_HOME/.config/containers/storage.conf
  if [ ! -f "$conf" ]; then
    install -d -m 0755 -o "$uid" -g "$uid" "$ROOTLESS_HOME/.config" "$ROOTLESS_HOME/.config/containers"
    local base
    base="# Written by HiveMind scripts/podman-services.sh setup.
[storage]
driver = \"overlay\"
runroot = \"$(rootless_xdg)/containers\"
graphroot = \"$ROOTLESS_HOME/.local/share/containers/storage\""
    write_if_changed "$conf" 0644 "$uid:$uid" "$base"
    if as_rootless podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null | grep -qx overlay; then
      log "rootless storage: native overlay"
    else
      write_if_changed "$conf" 0644 "$uid:$uid" "$base
[storage.options.overlay]
mount_program = \"/usr/bin/fuse-overlayfs\""
      as_rootless podman info --format '{{.Store.GraphDriverName}}' | grep -qx overlay || die "rootless storage: neither native overlay nor fuse-overlayfs works; see: runuser -u $ROOTLESS_USER -- podman info"
      log "rootless storage: overlay through fuse-overlayfs (the kernel refused native overlay in a user namespace)"
    fi
  fi
}

# --- services -----------------------------------------------------------------------------------

shared_outputs() {
  if ! mountpoint -q "$ROOTLESS_OUTPUTS"; then
    install -d -m 0711 -o root -g root "$(dirname "$ROOTLESS_OUTPUTS")" "$ROOTLESS_OUTPUTS"
    mount --bind "$ROOTLESS_OUTPUTS" "$ROOTLESS_OUTPUTS"
    mount --make-rshared "$ROOTLESS_OUTPUTS"
    log "made $ROOTLESS_OUTPUTS a shared mount (the rootless tasks' /output filesystems go there)"
    # A pause process from before it holds a namespace that will never see those mounts: the
    # next rootless Podman must make a new one.
    if pgrep -u "$ROOTLESS_USER" -f 'catatonit -P' >/dev/null; then
      stop_one rootless "$ROOTLESS_DIR"
      log "renewing $ROOTLESS_USER's Podman namespace (podman system migrate)"
      (cd / && as_rootless podman system migrate)
    fi
  fi
}

ping_ok() { [ "$(curl -sS --max-time 5 --unix-socket "$1/podman.sock" http://d/_ping 2>/dev/null)" = OK ]; }

pid_alive() { # dir: the pid file names a live `podman system service` process
  local pid
  pid=$(cat "$1/service.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'podman system service'
}

wait_ping() { # dir name log
  # Gives up early once the service has written its pid file and died; the pid file itself comes
  # a moment after the start.
  for _ in $(seq 1 60); do ping_ok "$1" && return 0; [ -f "$1/service.pid" ] && ! pid_alive "$1" && break; sleep 0.5; done
  ping_ok "$1" || die "$2 Podman did not answer GET /_ping on $1/podman.sock; see $3"
}

conf_newer() { # dir: a containers.conf or storage.conf changed after this service started (it reads them once)
  local f
  for f in "$CONF_DROPIN" "$ROOTLESS_HOME/.config/containers/containers.conf" "$ROOTLESS_HOME/.config/containers/storage.conf"; do
    [ -f "$f" ] && [ "$f" -nt "$1/service.pid" ] && return 0
  done
  return 1
}

start_one() { # name dir user(empty = root)
  local name=$1 dir=$2 user=$3 logf="$LOG_DIR/hivemind-podman-$1.log"
  if pid_alive "$dir" && conf_newer "$dir"; then
    log "$name Podman: its configuration changed since it started; restarting it"
    stop_one "$name" "$dir"
  fi
  # A service started from a directory since removed (a CI checkout) answers pings, but conmon,
  # started in that directory, fails every container ("Failed to get working directory").
  if pid_alive "$dir" && [[ "$(readlink "/proc/$(cat "$dir/service.pid")/cwd")" == *' (deleted)' ]]; then
    log "$name Podman: its working directory was removed since it started; restarting it"
    stop_one "$name" "$dir"
  fi
  if pid_alive "$dir" && ping_ok "$dir"; then return 0; fi
  if pid_alive "$dir"; then
    # Alive but not (yet) answering: give it the usual start time before replacing it.
    if (wait_ping "$dir" "$name" "$logf") 2>/dev/null; then return 0; fi
    stop_one "$name" "$dir"
  fi
  rm -f "$dir/podman.sock" "$dir/service.pid"
  log "starting $name Podman API on unix://$dir/podman.sock (log: $logf)"
  # setsid: the service outlives this script and its terminal; the pid written is podman's own.
  # Started in / (env -C): it outlives the checkout this script runs from.
  # shellcheck disable=SC2016 # $$ and $1 are the inner shell's
  if [ -z "$user" ]; then
    setsid env -C / sh -c 'echo $$ > "$1/service.pid"; exec podman system service --time=0 "unix://$1/podman.sock"' sh "$dir" >>"$logf" 2>&1 < /dev/null &
  else
    touch "$logf"
    # shellcheck disable=SC2016 # $$ and $1 are the inner shell's
    setsid runuser -u "$user" -- env -C / HOME="$ROOTLESS_HOME" XDG_RUNTIME_DIR="$(rootless_xdg)" XDG_CONFIG_HOME="$ROOTLESS_HOME/.config" \
      sh -c 'echo $$ > "$1/service.pid"; exec podman system service --time=0 "unix://$1/podman.sock"' sh "$dir" >>"$logf" 2>&1 < /dev/null &
  fi
  wait_ping "$dir" "$name" "$logf"
  log "$name Podman answers (pid $(cat "$dir/service.pid"))"
}

stop_one() { # name dir
  local pid
  if pid_alive "$2"; then
    pid=$(cat "$2/service.pid")
    log "stopping $1 Podman API (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$2/service.pid" "$2/podman.sock"
}

status_one() { # name dir
  if pid_alive "$2" && ping_ok "$2"; then
    echo "$1: running (pid $(cat "$2/service.pid")), unix://$2/podman.sock answers /_ping"
  elif pid_alive "$2"; then
    echo "$1: process $(cat "$2/service.pid") alive but unix://$2/podman.sock does not answer"; return 1
  else
    echo "$1: not running"; return 1
  fi
}

# --- images -------------------------------------------------------------------------------------

load_images() {
  local img want rootful rootless
  for img in "$@"; do
    want=$(docker image inspect --format '{{.Id}}' "$img" 2>/dev/null) || die "image $img is not in Docker: build it first (scripts/setup.sh does)"
    want=${want#sha256:}
    rootful=$(podman image inspect --format '{{.Id}}' "$img" 2>/dev/null || true)
    if [ "$rootful" != "$want" ]; then
      log "loading $img into the rootful Podman store"
      docker save "$img" | podman load -q >/dev/null
    fi
    rootless=$(as_rootless podman image inspect --format '{{.Id}}' "$img" 2>/dev/null || true)
    if [ "$rootless" != "$want" ]; then
      log "loading $img into $ROOTLESS_USER's rootless Podman store"
      docker save "$img" | as_rootless podman load -q >/dev/null
    fi
  done
}

case "${1:-}" in
  setup) setup_user; setup_dirs; setup_conf ;;
  start) setup_dirs; shared_outputs; start_one rootful "$ROOTFUL_DIR" ""; start_one rootless "$ROOTLESS_DIR" "$ROOTLESS_USER" ;;
  stop) stop_one rootful "$ROOTFUL_DIR"; stop_one rootless "$ROOTLESS_DIR" ;;
  status) rc=0; status_one rootful "$ROOTFUL_DIR" || rc=1; status_one rootless "$ROOTLESS_DIR" || rc=1; exit $rc ;;
  load-images) shift; load_images "$@" ;;
  *) die "usage: $0 setup|start|stop|status|load-images IMAGE..." ;;
esac
