#!/usr/bin/env bash
# Runs its arguments with the project's Node (>= 22) first on PATH, as bin/hivemind does: the npm
# scripts go through it, so `npm run bench` works in a fresh shell where the system's node is 20.
# Usage: bash scripts/with-node.sh node dist/scripts/bench-core.js [args...]
source "$(dirname "${BASH_SOURCE[0]}")/node-env.sh"
exec "$@"
