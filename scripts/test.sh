#!/usr/bin/env bash
# The whole test suite: build, check the generated protocol code is fresh, then unit,
# integration (real Docker, real SQLite) and end-to-end tests (master and worker processes).
# Run scripts/setup.sh first on a fresh machine (the README's quick start does both).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
if [ "$(hm_node_major)" -lt 22 ]; then echo "node $(node --version) is too old: run bash scripts/setup.sh" >&2; exit 1; fi
npm run -s build
bash scripts/gen-proto.sh --check
mkdir -p test-artifacts
# Files run one at a time: integration tests share the Docker daemon and the machine has 2 cores.
# HM_TEST_FILES narrows the run, e.g. HM_TEST_FILES='dist/test/unit/*.test.js' npm test
# `--faults` (npm run test:faults) runs only the fault scenarios and hostile-input tests: the files
# that record into the fault ledger.
files=("${HM_TEST_FILES:-dist/test/**/*.test.js}")
if [ "${1:-}" = "--faults" ]; then
  mapfile -t files < <(grep -rl --include='*.test.js' 'fault-ledger' dist/test | sort)
fi
# Every run keeps a ledger of faults injected and hostile inputs tried, summarised at the end.
ledger="$(mktemp -t hivemind-faults.XXXXXX)"
trap 'rm -f "$ledger"' EXIT
rc=0
# --test-force-exit: a file whose tests are done exits even if a handle (a forgotten timer) would
# keep it alive; one such timer once added 16 idle minutes to every run.
HIVEMIND_FAULT_LEDGER="$ledger" node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit "${files[@]}" || rc=$?
# The master's store tests a second time against PostgreSQL (test/helpers/test-store.ts; the
# cluster from scripts/test-postgres.sh, which setup.sh starts): the same files, not copies. Every
# file whose master or store comes from test-store.ts, plus one end-to-end file
# (cli-roundtrip: `master start --store postgres://` runs tasks through a worker process). The
# pg-* files use PostgreSQL in the first pass already. Left out: the other process-cluster e2e
# files (their store use is the same as cli-roundtrip's and each costs minutes). Whole runs only
# (or HM_TEST_PG=1); a missing server fails this pass, under CI as locally. About 2 min 10 s.
pg_files=(
  dist/test/unit/master-auth.test.js dist/test/unit/master-placement.test.js dist/test/unit/tunnel-hub.test.js
  dist/test/integration/master-grpc.test.js dist/test/integration/master-ops.test.js
  dist/test/integration/master-exec.test.js dist/test/integration/master-services.test.js
  dist/test/integration/replica-handover.test.js dist/test/integration/data-sets.test.js
  dist/test/integration/data-in-tasks.test.js dist/test/integration/gateway.test.js
  dist/test/integration/cli-untrusted-input.test.js dist/test/e2e/cli-roundtrip.test.js
)
if { [ -z "${HM_TEST_FILES:-}" ] && [ "${1:-}" != "--faults" ]; } || [ "${HM_TEST_PG:-}" = 1 ]; then
  if [ -z "${HIVEMIND_TEST_PG:-}" ] && [ ! -s .tools/test-pg.url ]; then
    echo "the PostgreSQL pass needs the test cluster: run bash scripts/test-postgres.sh (or set HIVEMIND_TEST_PG)" >&2
    rc=1
  else
    HIVEMIND_TEST_STORE=postgres node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit \
      "${pg_files[@]}" || rc=$?
  fi
fi
# The summary is the bar for the fault tests (lost 0, duplicated 0, escaped 0); a narrowed run
# that recorded nothing has no summary.
if [ -s "$ledger" ] || [ "${1:-}" = "--faults" ]; then
  summary_rc=0
  node dist/scripts/fault-summary.js "$ledger" || summary_rc=$?
  [ "$rc" -ne 0 ] || rc=$summary_rc
fi
exit "$rc"
