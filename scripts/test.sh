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
pattern="${HM_TEST_FILES:-dist/test/**/*.test.js}"
exec node --test --test-concurrency=1 --test-timeout=600000 "$pattern"
