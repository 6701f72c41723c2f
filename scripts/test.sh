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
# cluster from scripts/test-postgres.sh): the same files, not copies. Whole runs only (or
# HM_TEST_PG=1); under CI a missing server fails this pass. About 35 s.
if { [ -z "${HM_TEST_FILES:-}" ] && [ "${1:-}" != "--faults" ]; } || [ "${HM_TEST_PG:-}" = 1 ]; then
  HIVEMIND_TEST_STORE=postgres node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit \
    dist/test/unit/master-placement.test.js dist/test/integration/master-grpc.test.js || rc=$?
fi
# The summary is the bar for the fault tests (lost 0, duplicated 0, escaped 0); a narrowed run
# that recorded nothing has no summary.
if [ -s "$ledger" ] || [ "${1:-}" = "--faults" ]; then
  summary_rc=0
  node dist/scripts/fault-summary.js "$ledger" || summary_rc=$?
  [ "$rc" -ne 0 ] || rc=$summary_rc
fi
exit "$rc"
