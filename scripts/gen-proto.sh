#!/usr/bin/env bash
# Regenerates src/protocol/gen/ from proto/ with Debian's protoc and ts-proto.
# --check: regenerate into a temp dir and fail when the committed code is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=src/protocol/gen
if [ "${1:-}" = "--check" ]; then out=$(mktemp -d); fi
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
mkdir -p "$out"
rm -rf "${out:?}"/*
protoc --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,env=node,forceLong=number,useOptionals=messages,oneof=unions-value,useDate=false,useMapType=true \
  -I proto proto/hivemind/v1/*.proto
if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" src/protocol/gen >/dev/null; then
    echo "src/protocol/gen is stale: run 'npm run gen:proto' and commit the result" >&2
    diff -r "$out" src/protocol/gen | head -40 >&2
    rm -rf "$out"; exit 1
  fi
  rm -rf "$out"; echo "generated protocol code is up to date"
fi
