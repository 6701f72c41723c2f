#!/usr/bin/env bash
# Installs a HiveMind worker node. This script does what must happen before the `hivemind`
# executable exists: it checks the arguments, installs the dependencies (Docker, WireGuard) and
# fetches and checks the executable; then `hivemind service install` (or uninstall) writes the
# config, the data directory and the service (systemd on Linux, a startup task on Windows under
# Git Bash/MSYS2) and starts the worker. Idempotent. See docs/install.md.
set -euo pipefail

PROG=install.sh

usage() {
  cat <<'EOF'
Usage: install.sh --token TOKEN [--master HOST:PORT] SOURCE [options]
       install.sh --uninstall [--purge] [options]

Installs the HiveMind worker, writes its config, creates its data directory and registers the
service (systemd unit hivemind-worker.service on Linux, startup task HiveMindWorker on Windows).

The executable comes from one SOURCE:
  --binary PATH          a hivemind executable on this machine
  --url URL --sha256 HEX a release download (https://, http:// or file://), checked against HEX
  --from-checkout        built from this checkout with `npm run build:exe`

Joining:
  --token TOKEN          join token (hmj1.…, tunnel mode) or enrollment token (hm1.…, needs --master)
  --master HOST:PORT     address of a development master; not needed with a join token

Options:
  --name NAME            node display name (default: the hostname)
  --max-tasks N          concurrent tasks (default 2)
  --drain-timeout DUR    how long a stop lets running tasks finish, e.g. 10m (default 10m)
  --monitor-port PORT    local web monitor port, 0 = off (default 5001)
  --data-dir DIR         identity, history, spool (Linux default /var/lib/hivemind)
  --bin-dir DIR          where the executable goes (Linux default /usr/local/bin)
  --service MODE         systemd | background | none (default: systemd when PID 1 is systemd,
                         else background: started now with a pid file and log, not at boot)
  --os linux|windows     target platform (default from uname; env HIVEMIND_INSTALL_OS)
  --skip-deps            do not check or install Docker and WireGuard
  --no-start             install and enable, but do not start the worker now
  --dry-run              print every action and change nothing
  --uninstall            stop and remove the service and the executable; keep config and data
  --purge                with --uninstall: also remove the config, data and logs
  -h, --help             this help

Exit codes: 0 done, 1 an action failed, 2 bad arguments.
EOF
}

die_usage() {
  echo "$PROG: $*" >&2
  echo "$PROG: see install.sh --help" >&2
  exit 2
}
fail() {
  echo "$PROG: $*" >&2
  exit 1
}
say() { echo "$PROG: $*"; }

# ---------------------------------------------------------------------------------------------
# arguments

token="" master="" name="" max_tasks="" drain_timeout="" monitor_port=""
src_binary="" src_url="" src_sha256="" from_checkout=0
data_dir="" bin_dir="" service_mode="" target_os="${HIVEMIND_INSTALL_OS:-}"
skip_deps=0 no_start=0 dry_run=0 uninstall=0 purge=0

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then die_usage "$1 needs a value"; fi
}
while [ "$#" -gt 0 ]; do
  case "$1" in
    --token) need_value "$@"; token="$2"; shift 2 ;;
    --master) need_value "$@"; master="$2"; shift 2 ;;
    --name) need_value "$@"; name="$2"; shift 2 ;;
    --max-tasks) need_value "$@"; max_tasks="$2"; shift 2 ;;
    --drain-timeout) need_value "$@"; drain_timeout="$2"; shift 2 ;;
    --monitor-port) need_value "$@"; monitor_port="$2"; shift 2 ;;
    --binary) need_value "$@"; src_binary="$2"; shift 2 ;;
    --url) need_value "$@"; src_url="$2"; shift 2 ;;
    --sha256) need_value "$@"; src_sha256="$2"; shift 2 ;;
    --from-checkout) from_checkout=1; shift ;;
    --data-dir) need_value "$@"; data_dir="$2"; shift 2 ;;
    --bin-dir) need_value "$@"; bin_dir="$2"; shift 2 ;;
    --service) need_value "$@"; service_mode="$2"; shift 2 ;;
    --os) need_value "$@"; target_os="$2"; shift 2 ;;
    --skip-deps) skip_deps=1; shift ;;
    --no-start) no_start=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument: $1" ;;
  esac
done

if [ -z "$target_os" ]; then
  case "$(uname -s)" in
    MINGW* | MSYS* | CYGWIN*) target_os=windows ;;
    Linux) target_os=linux ;;
    *) die_usage "unsupported system $(uname -s): this script installs on Linux and on Windows (Git Bash / MSYS2); pass --os" ;;
  esac
fi
case "$target_os" in linux | windows) ;; *) die_usage "--os: expected linux or windows, got \"$target_os\"" ;; esac

[ "$purge" -eq 0 ] || [ "$uninstall" -eq 1 ] || die_usage "--purge only goes with --uninstall"

if [ "$uninstall" -eq 0 ]; then
  [ -n "$token" ] || die_usage "--token is required: a join token from \`hivemind token create\` on the master"
  [[ "$token" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die_usage "--token: not a HiveMind token (letters, digits and . _ ~ + / = - only)"
  if [[ "$token" != hmj1.* ]] && [ -z "$master" ]; then
    die_usage "--master HOST:PORT is required with an enrollment token; a join token (hmj1.…) carries the master's address"
  fi
  if [ -n "$master" ] && { ! [[ "$master" =~ ^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$ ]] || [ "${BASH_REMATCH[2]}" -lt 1 ] || [ "${BASH_REMATCH[2]}" -gt 65535 ]; }; then
    die_usage "--master: expected HOST:PORT (e.g. 10.0.0.5:7070), got \"$master\""
  fi
  if [ -n "$name" ] && ! [[ "$name" =~ ^[A-Za-z0-9._-]{1,64}$ ]]; then
    die_usage "--name: 1 to 64 letters, digits, . _ or -, got \"$name\""
  fi
  if [ -n "$max_tasks" ] && { ! [[ "$max_tasks" =~ ^[0-9]+$ ]] || [ "$max_tasks" -lt 1 ] || [ "$max_tasks" -gt 256 ]; }; then
    die_usage "--max-tasks: a whole number from 1 to 256, got \"$max_tasks\""
  fi
  if [ -n "$monitor_port" ] && { ! [[ "$monitor_port" =~ ^[0-9]+$ ]] || [ "$monitor_port" -gt 65535 ]; }; then
    die_usage "--monitor-port: a port from 0 to 65535, got \"$monitor_port\""
  fi
  sources=0
  [ -z "$src_binary" ] || sources=$((sources + 1))
  [ -z "$src_url" ] || sources=$((sources + 1))
  [ "$from_checkout" -eq 0 ] || sources=$((sources + 1))
  [ "$sources" -eq 1 ] || die_usage "give exactly one of --binary PATH, --url URL --sha256 HEX, --from-checkout"
  [ -z "$src_url" ] || [ -n "$src_sha256" ] || die_usage "--url needs --sha256 HEX (the release's .sha256 file) so the download can be checked"
  if [ -n "$src_sha256" ]; then
    [[ "$src_sha256" =~ ^[0-9a-fA-F]{64}$ ]] || die_usage "--sha256: expected 64 hex digits, got \"$src_sha256\""
    src_sha256="$(printf '%s' "$src_sha256" | tr 'A-F' 'a-f')"
  fi
  if [ -n "$src_binary" ] && [ ! -f "$src_binary" ]; then die_usage "--binary: no such file: $src_binary"; fi
fi
# The syntax the worker reads (30s, 10m, 1h30m, 250ms; a bare number is seconds); `hivemind
# service` turns it into seconds.
if [ -n "$drain_timeout" ] && ! [[ "$drain_timeout" =~ ^([0-9]+|([0-9]+(ms|s|m|h|d))+)$ ]]; then
  die_usage "--drain-timeout: \"$drain_timeout\" is not a duration (examples: 30s, 10m, 1h30m)"
fi
case "$service_mode" in
  "") ;;
  systemd | background | none) [ "$target_os" = linux ] || die_usage "--service $service_mode is for Linux; Windows uses a startup task" ;;
  *) die_usage "--service: expected systemd, background or none, got \"$service_mode\"" ;;
esac

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
host_os=linux
case "$(uname -s)" in MINGW* | MSYS* | CYGWIN*) host_os=windows ;; esac
if [ "$target_os" = linux ]; then
  exe="${bin_dir:-/usr/local/bin}/hivemind"
else
  program_files="${ProgramW6432:-${ProgramFiles:-C:/Program Files}}"
  exe="${bin_dir:-$program_files/HiveMind}/hivemind.exe"
fi

# ---------------------------------------------------------------------------------------------
# actions: each one says what it does; under --dry-run it only says what it would do

changes=0
# scratch space for downloads; removed on exit
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/hivemind-install.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT

# run CMD...: runs a command that changes the system (echoed), or prints it under --dry-run.
run() {
  if [ "$dry_run" -eq 1 ]; then echo "[dry-run] would run: $*"; return 0; fi
  echo "+ $*"
  "$@"
}
changed() {
  changes=$((changes + 1))
  if [ "$dry_run" -eq 1 ]; then echo "[dry-run] would $*"; else say "$*"; fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# ---------------------------------------------------------------------------------------------
# preconditions

if [ "$dry_run" -eq 0 ]; then
  [ "$host_os" = "$target_os" ] || die_usage "--os $target_os on a $host_os machine works only with --dry-run"
  if [ "$target_os" = linux ]; then
    [ "$(id -u)" -eq 0 ] || fail "run as root (sudo bash install.sh ...): it writes $exe, /etc/hivemind and the service"
  else
    net session >/dev/null 2>&1 || fail "run Git Bash as Administrator: it writes $(dirname "$exe") and registers a startup task"
  fi
fi

# ---------------------------------------------------------------------------------------------
# dependencies

pkg_manager() {
  if command -v apt-get >/dev/null 2>&1; then echo apt
  elif command -v dnf >/dev/null 2>&1; then echo dnf
  else echo none; fi
}

check_deps_linux() {
  local missing=() pkgs=() pm
  if ! command -v docker >/dev/null 2>&1 && [ ! -S /var/run/docker.sock ]; then missing+=(docker); fi
  if [[ "$token" == hmj1.* ]]; then
    command -v wg >/dev/null 2>&1 || missing+=(wireguard-tools)
    # kernel WireGuard, else the userspace wireguard-go
    if [ ! -d /sys/module/wireguard ] && ! modprobe -n wireguard >/dev/null 2>&1 && ! command -v wireguard-go >/dev/null 2>&1; then
      missing+=(wireguard-go)
    fi
  fi
  if [ "${#missing[@]}" -eq 0 ]; then
    if [[ "$token" == hmj1.* ]]; then say "found: Docker, WireGuard tools"; else say "found: Docker (WireGuard is not needed with a development master)"; fi
    return 0
  fi
  pm="$(pkg_manager)"
  local m
  for m in "${missing[@]}"; do
    case "$pm:$m" in
      apt:docker) pkgs+=(docker.io) ;;
      dnf:docker) pkgs+=(moby-engine) ;;
      apt:wireguard-* | dnf:wireguard-*) pkgs+=("$m") ;;
    esac
  done
  say "missing: ${missing[*]}"
  case "$pm" in
    apt)
      changed "install ${pkgs[*]} with apt-get"
      run apt-get update -q
      run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" ||
        fail "apt-get could not install ${pkgs[*]}; install them and run again, or pass --skip-deps" ;;
    dnf)
      changed "install ${pkgs[*]} with dnf"
      run dnf install -y "${pkgs[@]}" ||
        fail "dnf could not install ${pkgs[*]}: install Docker Engine (https://docs.docker.com/engine/install/) and wireguard-tools, then run again, or pass --skip-deps" ;;
    none)
      fail "install ${missing[*]} with your distribution's package manager (Docker Engine: https://docs.docker.com/engine/install/; WireGuard: wireguard-tools, and wireguard-go when the kernel has no WireGuard), then run again, or pass --skip-deps" ;;
  esac
  # the service mode's default (hivemind service's): systemd when it is PID 1
  if [[ " ${missing[*]} " == *" docker "* ]] && [ "${service_mode:-$([ -d /run/systemd/system ] && echo systemd)}" = systemd ]; then
    run systemctl enable --now docker.service
  fi
}

check_deps_windows() {
  local missing=()
  local wg_exe="$program_files/WireGuard/wg.exe"
  if ! command -v wg >/dev/null 2>&1 && [ ! -f "$wg_exe" ]; then
    missing+=("WireGuard for Windows (winget install WireGuard.WireGuard, or https://www.wireguard.com/install/)")
  fi
  if ! command -v docker >/dev/null 2>&1; then
    missing+=("Docker Desktop (winget install Docker.DockerDesktop, or https://docs.docker.com/desktop/setup/install/windows-install/)")
  fi
  if [ "${#missing[@]}" -eq 0 ]; then
    say "found: Docker Desktop, WireGuard for Windows"
    return 0
  fi
  local m
  for m in "${missing[@]}"; do say "missing: $m"; done
  [ "$dry_run" -eq 1 ] || fail "install what is missing above, start Docker Desktop once, then run again (or pass --skip-deps)"
}

# ---------------------------------------------------------------------------------------------
# the executable

# build-exe's name of the executable for OS $1 on this machine's CPU; empty where none is built
exe_name_for() {
  if [ "$1" = windows ]; then echo hivemind-win-x64.exe; return 0; fi
  case "$(uname -m)" in x86_64 | amd64) echo hivemind-linux-x64 ;; aarch64 | arm64) echo hivemind-linux-arm64 ;; esac
}

# Brings the executable to a local file; sets src to its path.
src=""
fetch_binary() {
  if [ -n "$src_binary" ]; then
    src="$src_binary"
    return 0
  fi
  if [ "$from_checkout" -eq 1 ]; then
    # only this machine's target is built (build-exe's targets: linux-x64, linux-arm64, win-x64)
    local exe_name target
    exe_name="$(exe_name_for "$target_os")"
    [ -n "$exe_name" ] || fail "--from-checkout: no executable is built for $(uname -m) (x86_64 and aarch64 only); install with npm instead"
    target="${exe_name#hivemind-}" && target="${target%.exe}"
    [ -f "$script_dir/package.json" ] || fail "--from-checkout: $script_dir is not a HiveMind checkout"
    src="$script_dir/dist-exe/$exe_name"
    if [ "$dry_run" -eq 1 ]; then
      echo "[dry-run] would run: (cd $script_dir && npm ci && HM_EXE_TARGETS=$target npm run build:exe) to build $src"
      return 0
    fi
    echo "+ (cd $script_dir && npm ci && HM_EXE_TARGETS=$target npm run build:exe)"
    # shellcheck disable=SC1091 # the checkout's own Node setup, present only in a checkout
    (cd "$script_dir" && source scripts/node-env.sh && npm ci --no-fund --no-audit && HM_EXE_TARGETS="$target" npm run -s build:exe) ||
      fail "--from-checkout: the build failed (run bash scripts/setup.sh first for Node and the tools)"
    [ -f "$src" ] || fail "--from-checkout: the build did not produce $src"
    return 0
  fi
  src="$tmp_dir/download"
  case "$src_url" in
    file://*) cp "${src_url#file://}" "$src" || fail "--url: cannot read ${src_url#file://}" ;;
    *)
      if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$src" "$src_url" || fail "--url: download of $src_url failed"
      elif command -v wget >/dev/null 2>&1; then wget -q -O "$src" "$src_url" || fail "--url: download of $src_url failed"
      else fail "--url: neither curl nor wget is installed (apt-get install curl)"; fi ;;
  esac
  local got
  got="$(sha256_of "$src")"
  [ "$got" = "$src_sha256" ] || fail "sha256 mismatch for $src_url: expected $src_sha256, got $got; nothing was installed"
  # curl and wget save without the executable bit; the check and the install below run it
  chmod 755 "$src"
  say "downloaded $src_url (sha256 $got, as expected)"
}

# A hivemind that runs on this machine, for a dry run for another platform or an uninstall whose
# executable is gone: the one beside this script, this checkout's build, or the one on PATH.
local_hivemind() {
  local c name
  name="$(exe_name_for "$host_os")"
  for c in "$script_dir/hivemind" "$script_dir/hivemind.exe" ${name:+"$script_dir/dist-exe/$name"}; do
    if [ -f "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  command -v hivemind 2>/dev/null ||
    fail "no hivemind executable that runs on this machine: put one beside install.sh, build this checkout (npm run build:exe) or install it on PATH"
}

# ---------------------------------------------------------------------------------------------
# main: `hivemind service` does the rest, under this script's name

opts=(--caller "$PROG" --os "$target_os")
[ -z "$data_dir" ] || opts+=(--data-dir "$data_dir")
[ -z "$bin_dir" ] || opts+=(--bin-dir "$bin_dir")
[ -z "$service_mode" ] || opts+=(--service "$service_mode")
[ -z "$drain_timeout" ] || opts+=(--drain-timeout "$drain_timeout")
[ "$dry_run" -eq 0 ] || opts+=(--dry-run)

if [ "$uninstall" -eq 1 ]; then
  [ "$purge" -eq 0 ] || opts+=(--purge)
  # the installed one; Windows cannot delete a running executable: there the uninstall runs a copy
  if [ "$host_os" = "$target_os" ] && [ -f "$exe" ]; then
    hivemind="$exe"
    [ "$host_os" = linux ] || { cp "$exe" "$tmp_dir/hivemind.exe" && hivemind="$tmp_dir/hivemind.exe"; }
  else
    hivemind="$(local_hivemind)" || exit 1
  fi
  status=0
  "$hivemind" service uninstall "${opts[@]}" || status=$?
  exit "$status"
fi

if [ "$skip_deps" -eq 1 ]; then
  say "--skip-deps: not checking Docker and WireGuard"
elif [ "$target_os" = linux ]; then
  check_deps_linux
else
  check_deps_windows
fi

fetch_binary
if [ ! -f "$src" ]; then
  say "dry run: $src is not built, so what \`hivemind service install\` would do next is not shown"
  exit 0
fi
if [ "$host_os" = "$target_os" ]; then
  version="$("$src" --version 2>&1)" || fail "$src does not run here (${version:-no output}); is it the executable for this platform?"
  say "executable: $src ($version)"
  hivemind="$src"
else
  # a dry run for another platform: its executable cannot run here
  hivemind="$(local_hivemind)" || exit 1
fi
opts+=(--prior-changes "$changes" --executable "$src" --token "$token")
[ -z "$master" ] || opts+=(--master "$master")
[ -z "$name" ] || opts+=(--name "$name")
[ -z "$max_tasks" ] || opts+=(--max-tasks "$max_tasks")
[ -z "$monitor_port" ] || opts+=(--monitor-port "$monitor_port")
[ "$no_start" -eq 0 ] || opts+=(--no-start)
status=0
"$hivemind" service install "${opts[@]}" || status=$?
exit "$status"
