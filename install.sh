#!/usr/bin/env bash
# Installs a HiveMind worker node: the `hivemind` executable, its config, its data directory and a
# service that starts it at boot (systemd on Linux, a startup task on Windows under Git Bash/MSYS2).
# Idempotent: a second run with the same arguments changes nothing. See docs/install.md.
set -euo pipefail

PROG=install.sh
SERVICE_NAME=hivemind-worker
WIN_TASK_NAME=HiveMindWorker
STOP_MARGIN_S=30 # systemd waits the drain timeout plus this before it kills the worker

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
  if [ -n "$master" ]; then
    if ! [[ "$master" =~ ^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$ ]] || [ "${BASH_REMATCH[2]}" -lt 1 ] || [ "${BASH_REMATCH[2]}" -gt 65535 ]; then
      die_usage "--master: expected HOST:PORT (e.g. 10.0.0.5:7070), got \"$master\""
    fi
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
  if [ -n "$src_url" ]; then
    [ -n "$src_sha256" ] || die_usage "--url needs --sha256 HEX (the release's .sha256 file) so the download can be checked"
  fi
  if [ -n "$src_sha256" ]; then
    [[ "$src_sha256" =~ ^[0-9a-fA-F]{64}$ ]] || die_usage "--sha256: expected 64 hex digits, got \"$src_sha256\""
    src_sha256="$(printf '%s' "$src_sha256" | tr 'A-F' 'a-f')"
  fi
  if [ -n "$src_binary" ] && [ ! -f "$src_binary" ]; then die_usage "--binary: no such file: $src_binary"; fi
fi

# Durations as the worker reads them (30s, 10m, 1h30m, 250ms; a bare number is seconds), in whole seconds.
duration_seconds() {
  local s="$1" total_ms=0 n unit
  if [[ "$s" =~ ^[0-9]+$ ]]; then echo "$s"; return 0; fi
  [[ "$s" =~ ^([0-9]+(ms|s|m|h|d))+$ ]] || return 1
  while [[ "$s" =~ ^([0-9]+)(ms|s|m|h|d)(.*)$ ]]; do
    n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}" s="${BASH_REMATCH[3]}"
    case "$unit" in
      ms) total_ms=$((total_ms + n)) ;;
      s) total_ms=$((total_ms + n * 1000)) ;;
      m) total_ms=$((total_ms + n * 60000)) ;;
      h) total_ms=$((total_ms + n * 3600000)) ;;
      d) total_ms=$((total_ms + n * 86400000)) ;;
    esac
  done
  echo $(((total_ms + 999) / 1000))
}
if [ -n "$drain_timeout" ]; then
  duration_seconds "$drain_timeout" >/dev/null || die_usage "--drain-timeout: \"$drain_timeout\" is not a duration (examples: 30s, 10m, 1h30m)"
fi

# ---------------------------------------------------------------------------------------------
# where things go

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$target_os" = linux ]; then
  bin_dir="${bin_dir:-/usr/local/bin}"
  exe="$bin_dir/hivemind"
  config_dir=/etc/hivemind
  default_data_dir=/var/lib/hivemind
  log_dir=/var/log/hivemind
  unit_file="/etc/systemd/system/$SERVICE_NAME.service"
  if [ -z "$service_mode" ]; then
    # sd_booted(): systemd is PID 1 when this directory exists.
    if [ -d /run/systemd/system ]; then service_mode=systemd; else service_mode=background; fi
  fi
else
  program_files="${ProgramW6432:-${ProgramFiles:-C:/Program Files}}"
  program_data="${ProgramData:-C:/ProgramData}"
  bin_dir="${bin_dir:-$program_files/HiveMind}"
  exe="$bin_dir/hivemind.exe"
  config_dir="$program_data/HiveMind"
  default_data_dir="$program_data/HiveMind/worker"
  log_dir="$program_data/HiveMind/logs"
  task_xml="$config_dir/$WIN_TASK_NAME.xml"
  service_mode="${service_mode:-task}"
fi
config_file="$config_dir/worker.json"

# A string value of the installed config (the file worker_config writes: one key per line).
configured() {
  [ -f "$config_file" ] || return 0
  sed -n "s/^ *\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" "$config_file" | head -n 1 | sed 's/\\"/"/g; s/\\\\/\\/g'
}
# A re-run without --data-dir keeps the installed node's data dir: the default one would hold a
# fresh identity (a new node, and an enrollment token that is usually used up), and an uninstall
# would look for the worker, and purge, in the wrong place.
if [ -z "$data_dir" ]; then
  data_dir="$(configured dataDir)"
  if [ -n "$data_dir" ] && [ "$data_dir" != "$default_data_dir" ]; then
    say "data dir $data_dir, from $config_file (--data-dir DIR to choose another)"
  fi
fi
data_dir="${data_dir:-$default_data_dir}"
# An uninstall stops the worker with the drain timeout it was installed with.
if [ -z "$drain_timeout" ] && [ "$uninstall" -eq 1 ]; then drain_timeout="$(configured drainTimeout)"; fi
drain_timeout="${drain_timeout:-10m}"
drain_s="$(duration_seconds "$drain_timeout")" || fail "drainTimeout in $config_file: \"$drain_timeout\" is not a duration; pass --drain-timeout"
case "$service_mode" in
  systemd | background | none) [ "$target_os" = linux ] || die_usage "--service $service_mode is for Linux; Windows uses a startup task" ;;
  task) ;;
  *) die_usage "--service: expected systemd, background or none, got \"$service_mode\"" ;;
esac

# ---------------------------------------------------------------------------------------------
# actions: each one says what it does; under --dry-run it only says what it would do

changes=0
# scratch space for downloads and for comparing generated files; removed on exit
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/hivemind-install.XXXXXX")"
cleanup() { rm -rf "$tmp_dir"; }
trap cleanup EXIT

# run CMD...: runs a command that changes the system (echoed), or prints it under --dry-run.
run() {
  if [ "$dry_run" -eq 1 ]; then
    echo "[dry-run] would run: $*"
    return 0
  fi
  echo "+ $*"
  "$@"
}
changed() {
  changes=$((changes + 1))
  if [ "$dry_run" -eq 1 ]; then echo "[dry-run] would $*"; else say "$*"; fi
}
unchanged() { say "unchanged: $*"; }

file_mode() { stat -c '%a' "$1" 2>/dev/null || echo none; }

# put_file SRC DEST MODE: installs SRC as DEST (atomically) unless DEST already has the same bytes and mode.
put_file() {
  local src="$1" dest="$2" mode="$3" what
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    if [ "$target_os" = windows ] || [ "$(file_mode "$dest")" = "${mode#0}" ]; then
      unchanged "$dest"
      return 1
    fi
    changed "set mode $mode on $dest"
    [ "$dry_run" -eq 1 ] || chmod "$mode" "$dest"
    return 0
  fi
  if [ -e "$dest" ]; then what="replace"; else what="create"; fi
  changed "$what $dest (mode $mode)"
  if [ "$dry_run" -eq 0 ]; then
    # copy beside the target then rename: a running executable is replaced, never half-written
    cp "$src" "$dest.new.$$"
    chmod "$mode" "$dest.new.$$"
    mv -f "$dest.new.$$" "$dest"
  fi
  return 0
}

# put_generated DEST MODE FUNCTION: installs what FUNCTION prints (no pipeline: the change count
# must be kept in this shell)
put_generated() {
  local f
  f="$tmp_dir/generated.$((changes + RANDOM))"
  "$3" >"$f"
  put_file "$f" "$1" "$2"
}

# make_dir DIR MODE
make_dir() {
  local dir="$1" mode="$2"
  if [ -d "$dir" ]; then
    if [ "$target_os" = windows ] || [ "$(file_mode "$dir")" = "${mode#0}" ]; then
      unchanged "$dir/"
      return 0
    fi
    changed "set mode $mode on $dir/"
    [ "$dry_run" -eq 1 ] || chmod "$mode" "$dir"
    return 0
  fi
  changed "create $dir/ (mode $mode)"
  [ "$dry_run" -eq 1 ] || { mkdir -p "$dir" && chmod "$mode" "$dir"; }
  if [ "$target_os" = windows ] && [ "$mode" = 0700 ]; then
    # ProgramData is readable by every user: only SYSTEM and Administrators may read the token and identity
    run icacls "$(windows_path "$dir")" //inheritance:r //grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F"
  fi
}

remove_path() {
  if [ -e "$1" ] || [ -L "$1" ]; then
    changed "remove $1"
    [ "$dry_run" -eq 1 ] || rm -rf "$1"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# ---------------------------------------------------------------------------------------------
# preconditions

is_admin() {
  if [ "$target_os" = linux ]; then [ "$(id -u)" -eq 0 ]; else net session >/dev/null 2>&1; fi
}
host_os=linux
case "$(uname -s)" in MINGW* | MSYS* | CYGWIN*) host_os=windows ;; esac

if [ "$dry_run" -eq 1 ]; then
  say "dry run: nothing will be changed"
elif [ "$host_os" != "$target_os" ]; then
  die_usage "--os $target_os on a $host_os machine works only with --dry-run"
elif ! is_admin; then
  if [ "$target_os" = linux ]; then fail "run as root (sudo bash install.sh ...): it writes $exe, $config_dir and the service"; fi
  fail "run Git Bash as Administrator: it writes $bin_dir and registers a startup task"
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
      *:wireguard-tools) pkgs+=(wireguard-tools) ;;
      apt:wireguard-go) pkgs+=(wireguard-go) ;;
      dnf:wireguard-go) pkgs+=(wireguard-go) ;;
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
  if [[ " ${missing[*]} " == *" docker "* ]] && [ "$service_mode" = systemd ]; then
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

# Brings the executable to a local file; sets src to its path.
src=""
fetch_binary() {
  if [ -n "$src_binary" ]; then
    src="$src_binary"
    return 0
  fi
  if [ "$from_checkout" -eq 1 ]; then
    # only this machine's target is built (build-exe's names: linux-x64, linux-arm64, win-x64)
    local target=win-x64 exe_name=hivemind-win-x64.exe
    if [ "$target_os" = linux ]; then
      case "$(uname -m)" in
        x86_64 | amd64) target=linux-x64 ;;
        aarch64 | arm64) target=linux-arm64 ;;
        *) fail "--from-checkout: no executable is built for $(uname -m) (x86_64 and aarch64 only); install with npm instead" ;;
      esac
      exe_name="hivemind-$target"
    fi
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
  say "downloaded $src_url (sha256 $got, as expected)"
}

# ---------------------------------------------------------------------------------------------
# config, unit, task

worker_config() {
  echo '{'
  echo '  "worker": {'
  [ -z "$master" ] || echo "    \"master\": $(json_str "$master"),"
  echo "    \"token\": $(json_str "$token"),"
  [ -z "$name" ] || echo "    \"name\": $(json_str "$name"),"
  [ -z "$max_tasks" ] || echo "    \"maxTasks\": $max_tasks,"
  [ -z "$monitor_port" ] || echo "    \"monitorPort\": $monitor_port,"
  echo "    \"drainTimeout\": $(json_str "$drain_timeout"),"
  # Docker Desktop has no loop devices to bound /output with: without this the worker refuses to start
  [ "$target_os" != windows ] || echo '    "allowUnboundedOutput": true,'
  echo "    \"dataDir\": $(json_str "$data_dir")"
  echo '  }'
  echo '}'
}

systemd_unit() {
  cat <<EOF
# Installed by HiveMind install.sh; a re-run rewrites it. Local changes: systemctl edit $SERVICE_NAME
[Unit]
Description=HiveMind worker node
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
Type=simple
ExecStart=$exe --config $config_file worker start
Environment=HIVEMIND_HOME=$data_dir
Restart=on-failure
RestartSec=5s
# exit 2 is a configuration error: restarting cannot fix it
RestartPreventExitStatus=2
# SIGTERM to the worker alone drains it (no new tasks; running ones may finish within the drain
# timeout, $drain_timeout); whatever is left is killed after the drain timeout plus ${STOP_MARGIN_S}s.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=$((drain_s + STOP_MARGIN_S))
EOF
  # StateDirectory only names directories under /var/lib; another data dir is made writable instead
  if [ "$data_dir" = /var/lib/hivemind ]; then
    echo "StateDirectory=hivemind"
    echo "StateDirectoryMode=0700"
  else
    echo "ReadWritePaths=$data_dir"
  fi
  cat <<EOF
LogsDirectory=hivemind
LogsDirectoryMode=0750
StandardOutput=journal
StandardError=journal
# Hardening. The worker runs as root: it talks to the Docker socket (root-equivalent anyway) and
# needs CAP_NET_ADMIN and /dev/net/tun for the WireGuard tunnel (kernel WireGuard, or wireguard-go
# whose control socket lives in /run/wireguard). Task containers are started by dockerd, outside
# this sandbox, so none of this limits them (they have their own lock-down).
ProtectSystem=strict
ReadWritePaths=/run
ProtectHome=true
PrivateTmp=true
NoNewPrivileges=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictNamespaces=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL
UMask=0077

[Install]
WantedBy=multi-user.target
EOF
}

windows_path() {
  if command -v cygpath >/dev/null 2>&1; then cygpath -w "$1"; else printf '%s' "${1//\//\\}"; fi
}
xml_escape() { printf '%s' "$1" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g; s/"/\&quot;/g'; }

# A Task Scheduler task: at boot, as SYSTEM (Docker Desktop's pipe and WireGuard need an admin),
# no run-time limit (the default kills a task after 72 h), restarted on failure.
windows_task_xml() {
  cat <<EOF
<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>HiveMind worker node (installed by install.sh)</Description>
  </RegistrationInfo>
  <Triggers>
    <BootTrigger>
      <Enabled>true</Enabled>
      <Delay>PT30S</Delay>
    </BootTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>S-1-5-18</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
    <StartWhenAvailable>true</StartWhenAvailable>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>$(xml_escape "$(windows_path "$exe")")</Command>
      <Arguments>--config "$(xml_escape "$(windows_path "$config_file")")" worker start --log-file "$(xml_escape "$(windows_path "$log_dir/worker.log")")"</Arguments>
      <WorkingDirectory>$(xml_escape "$(windows_path "$data_dir")")</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
EOF
}

# ---------------------------------------------------------------------------------------------
# the service

pid_file="$data_dir/worker.pid" # written by the worker itself
bg_running_pid() {
  local pid
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

bg_stop() {
  local pid
  pid="$(bg_running_pid)"
  [ -n "$pid" ] || return 0
  changed "stop the worker (pid $pid): it drains for up to $drain_timeout"
  [ "$dry_run" -eq 1 ] || run "$exe" worker stop --data-dir "$data_dir" --timeout "$((drain_s + STOP_MARGIN_S))s" || kill -KILL "$pid" 2>/dev/null || true
}

bg_start() {
  changed "start the worker in the background (log $log_dir/worker.log, pid file $pid_file)"
  [ "$dry_run" -eq 0 ] || return 0
  # the worker writes (and rotates) its log itself; worker.out keeps what it prints outside it
  echo "+ nohup $exe --config $config_file worker start --log-file $log_dir/worker.log >>$log_dir/worker.out 2>&1 &"
  HIVEMIND_HOME="$data_dir" nohup "$exe" --config "$config_file" worker start --log-file "$log_dir/worker.log" >>"$log_dir/worker.out" 2>&1 </dev/null &
  local pid=$! i
  # a bad config or an unusable data dir ends it at once: wait until it has claimed its pid file
  for i in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log_dir/worker.out" >&2 || true
      fail "the worker exited at start; its output is above (and in $log_dir/worker.out; its log in $log_dir/worker.log)"
    fi
    [ "$(cat "$pid_file" 2>/dev/null || true)" != "$pid" ] || break
    sleep 0.1
    [ "$i" -lt 50 ] || say "warning: the worker (pid $pid) has not written $pid_file yet"
  done
  say "worker running in the background, pid $pid"
}

service_linux() {
  local restart="$1"
  case "$service_mode" in
    systemd)
      local unit_changed=0
      put_generated "$unit_file" 0644 systemd_unit && unit_changed=1
      if [ "$dry_run" -eq 1 ]; then
        echo "[dry-run] unit $unit_file:"
        systemd_unit | sed 's/^/    /'
      fi
      if [ "$unit_changed" -eq 1 ]; then run systemctl daemon-reload; fi
      if [ "$dry_run" -eq 1 ] || ! systemctl is-enabled --quiet "$SERVICE_NAME.service" 2>/dev/null; then
        changed "enable $SERVICE_NAME.service (starts at boot)"
        run systemctl enable "$SERVICE_NAME.service"
      fi
      [ "$no_start" -eq 0 ] || { say "not starting it (--no-start): systemctl start $SERVICE_NAME"; return 0; }
      if [ "$dry_run" -eq 1 ] || ! systemctl is-active --quiet "$SERVICE_NAME.service" 2>/dev/null; then
        changed "start $SERVICE_NAME.service"
        run systemctl start "$SERVICE_NAME.service"
      elif [ "$restart" -eq 1 ] || [ "$unit_changed" -eq 1 ]; then
        changed "restart $SERVICE_NAME.service (it drains first, up to $drain_timeout)"
        run systemctl restart "$SERVICE_NAME.service"
      else
        unchanged "$SERVICE_NAME.service is enabled and running"
      fi ;;
    background)
      say "no systemd here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): the worker runs in the background and does NOT start at boot; start it from your init system with: $exe --config $config_file worker start"
      [ "$no_start" -eq 0 ] || { say "not starting it (--no-start)"; return 0; }
      if [ -n "$(bg_running_pid)" ]; then
        if [ "$restart" -eq 1 ]; then bg_stop; bg_start
        else unchanged "the worker is running (pid $(bg_running_pid))"; fi
      else
        bg_start
      fi ;;
    none)
      say "--service none: start it yourself with: $exe --config $config_file worker start" ;;
  esac
}

# Windows has no SIGTERM, and `schtasks /End` kills: `hivemind worker stop` asks the worker to drain
# through its data dir first (the same as on Linux), then /End ends the task (at once, for a worker
# too old to take the request, or one still draining after the timeout).
win_stop() {
  if [ -f "$exe" ] || [ "$dry_run" -eq 1 ]; then
    run "$exe" worker stop --data-dir "$data_dir" --timeout "$((drain_s + STOP_MARGIN_S))s" || true
  fi
  run schtasks //End //TN "$WIN_TASK_NAME" || true
}

service_windows() {
  local restart="$1" xml_changed=0 registered=0
  put_generated "$task_xml" 0644 windows_task_xml && xml_changed=1
  if [ "$dry_run" -eq 1 ]; then
    echo "[dry-run] task $WIN_TASK_NAME ($task_xml):"
    windows_task_xml | sed 's/^/    /'
  fi
  if [ "$host_os" = windows ] && schtasks //Query //TN "$WIN_TASK_NAME" >/dev/null 2>&1; then registered=1; fi
  if [ "$xml_changed" -eq 1 ] || [ "$registered" -eq 0 ]; then
    changed "register the startup task $WIN_TASK_NAME (at boot, as SYSTEM)"
    # schtasks reads task XML as UTF-16
    local xml16
    xml16="$tmp_dir/task-utf16.xml"
    run iconv -f UTF-8 -t UTF-16 "$task_xml" -o "$xml16"
    run schtasks //Create //TN "$WIN_TASK_NAME" //XML "$(windows_path "$xml16")" //F
    restart=1
  fi
  [ "$no_start" -eq 0 ] || { say "not starting it (--no-start): schtasks /Run /TN $WIN_TASK_NAME"; return 0; }
  if [ "$restart" -eq 1 ]; then
    [ "$registered" -eq 0 ] || win_stop
    changed "start the task $WIN_TASK_NAME"
    run schtasks //Run //TN "$WIN_TASK_NAME"
  else
    unchanged "startup task $WIN_TASK_NAME"
  fi
}

# ---------------------------------------------------------------------------------------------
# uninstall

do_uninstall() {
  say "uninstalling the HiveMind worker ($target_os)"
  if [ "$target_os" = linux ]; then
    case "$service_mode" in
      systemd)
        if [ "$dry_run" -eq 1 ] || [ -f "$unit_file" ]; then
          changed "stop and disable $SERVICE_NAME.service (it drains first, up to $drain_timeout)"
          run systemctl disable --now "$SERVICE_NAME.service" || true
          remove_path "$unit_file"
          run systemctl daemon-reload
        fi ;;
      background) bg_stop ;;
      none) ;;
    esac
  else
    if [ "$dry_run" -eq 1 ] || { [ "$host_os" = windows ] && schtasks //Query //TN "$WIN_TASK_NAME" >/dev/null 2>&1; }; then
      changed "stop and delete the startup task $WIN_TASK_NAME (the worker drains first, up to $drain_timeout)"
      win_stop
      run schtasks //Delete //TN "$WIN_TASK_NAME" //F
    fi
    remove_path "$task_xml"
  fi
  remove_path "$exe"
  if [ "$purge" -eq 1 ]; then
    remove_path "$config_file"
    remove_path "$data_dir"
    remove_path "$log_dir"
    if [ -d "$config_dir" ] && [ -z "$(ls -A "$config_dir")" ]; then remove_path "$config_dir"; fi
  else
    say "kept: config $config_file, data $data_dir (identity, history), logs $log_dir; --purge removes them"
  fi
}

# ---------------------------------------------------------------------------------------------
# main

if [ "$uninstall" -eq 1 ]; then
  do_uninstall
else
  say "installing the HiveMind worker ($target_os, service: $service_mode)"
  if [ "$skip_deps" -eq 1 ]; then
    say "--skip-deps: not checking Docker and WireGuard"
  elif [ "$target_os" = linux ]; then
    check_deps_linux
  else
    check_deps_windows
  fi

  fetch_binary
  if [ "$host_os" = "$target_os" ] && [ -f "$src" ]; then
    version="$("$src" --version 2>&1)" || fail "$src does not run here (${version:-no output}); is it the executable for this platform?"
    say "executable: $src ($version)"
  fi

  make_dir "$bin_dir" 0755
  restart=0
  if [ -f "$src" ]; then
    put_file "$src" "$exe" 0755 && restart=1
  else
    changed "install $exe"
  fi
  if [ "$target_os" = linux ]; then make_dir "$config_dir" 0755; else make_dir "$config_dir" 0700; fi
  if [ "$target_os" = windows ]; then
    say "config: allowUnboundedOutput, because Docker Desktop has no loop devices to bound a task's /output with: its output is checked against its cap after it exits, and the Docker Desktop VM's disk bounds the rest"
  fi
  put_generated "$config_file" 0600 worker_config && restart=1
  make_dir "$data_dir" 0700
  make_dir "$log_dir" 0750

  if [ "$target_os" = linux ]; then service_linux "$restart"; else service_windows "$restart"; fi
fi

if [ "$changes" -eq 0 ]; then
  say "nothing changed"
elif [ "$dry_run" -eq 1 ]; then
  say "dry run: $changes change(s) would be made; nothing was changed"
else
  say "done: $changes change(s)"
fi
