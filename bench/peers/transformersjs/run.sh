#!/usr/bin/env bash
# Benchmark peer for the tokenizer scenario: installs transformers.js (npm @huggingface/transformers, pinned in
# package.json) into ./node_modules, which git ignores, then runs encode-bench.mjs with the given arguments.
# --ignore-scripts: onnxruntime-node's install script downloads extra binaries; tokenization never loads them.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f node_modules/@huggingface/transformers/package.json ]; then
  npm install --no-audit --no-fund --ignore-scripts --loglevel=error >&2
fi
exec node encode-bench.mjs "$@"
