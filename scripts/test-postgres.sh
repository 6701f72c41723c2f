#!/usr/bin/env bash
# Starts (idempotently) the private PostgreSQL cluster the tests of the master's PostgreSQL store
# use: Debian's postgresql 15 binaries, a data dir of its own, listening on 127.0.0.1 only, with a
# role and database hivemind_test. It exports nothing: it writes the URL to .tools/test-pg.url,
# where test/helpers/postgres.ts finds it (HIVEMIND_TEST_PG overrides). Root cannot run postgres,
# so as root the cluster runs as the postgres user.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m[test-postgres]\033[0m %s\n' "$*"; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "PostgreSQL is not installed (apt-get install postgresql; scripts/setup.sh does it)" >&2; exit 1; }
dir=${HIVEMIND_TEST_PG_DIR:-/var/tmp/hivemind-test-pg}
port=${HIVEMIND_TEST_PG_PORT:-55432}
as=()
if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
run() { "${as[@]}" "$@"; }

if [ ! -f "$dir/data/PG_VERSION" ]; then
  log "initdb $dir/data"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  echo hivemind-test-admin > "$dir/pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/pwfile"; fi
  run "$bin/initdb" -D "$dir/data" -A scram-sha-256 --username=postgres --pwfile="$dir/pwfile" >/dev/null
  rm -f "$dir/pwfile"
fi
if ! run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  log "starting on 127.0.0.1:$port"
  # Small and fast for tests: no durability beyond the process (fsync off), a few connections.
  run "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
fi
export PGPASSWORD=hivemind-test-admin
psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'hivemind_test'")" != 1 ]; then
  "${psql[@]}" -c "CREATE ROLE hivemind_test LOGIN PASSWORD 'hivemind-test'"
fi
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'hivemind_test'")" != 1 ]; then
  "${psql[@]}" -c "CREATE DATABASE hivemind_test OWNER hivemind_test"
fi
mkdir -p .tools
echo "postgres://hivemind_test:hivemind-test@127.0.0.1:$port/hivemind_test" > .tools/test-pg.url
log "ready: .tools/test-pg.url"
