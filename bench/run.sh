#!/usr/bin/env bash
# tierwise overhead benchmark: builds release, then runs bench/run.py (see bench/README.md).
#   bench/run.sh                              # full matrix: RATES="50 200 1000 3000" DURATION=10s RUNS=3
#   RATES="50 200" DURATION=5s RUNS=1 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v oha >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/oha" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "bench: oha (the load generator) is not on PATH; installing it: cargo install oha --locked" >&2
        echo "bench: (this compiles for several minutes, once)" >&2
        cargo install oha --locked
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi
command -v python3 >/dev/null 2>&1 || { echo "bench: python3 (3.11+) is needed" >&2; exit 1; }

cargo build --release --bin tierwise --example bench_upstream --example bench_floor
exec python3 bench/run.py "$@"
