#!/usr/bin/env bash
# The real benchmark of `tierwise eval` (issue 13): three models on llama-server, two task
# sets, five tasks; one Markdown summary. Not CI: ~1–3 h on 2 cores at LIMIT=100.
#
#   bench/eval/run.sh                                  # all tasks, 100 items each
#   LIMIT=20 TASKS="gsm-checks code-checks" bench/eval/run.sh
#
# Steps: bench/eval/setup.sh (llama-server, the three GGUFs, verified); builds
# target/release/tierwise unless TIERWISE_BIN is given; starts llama-server three times on
# free loopback ports (aliases weak, mid, strong); writes bench/eval/.cache/config.toml
# (checked with `tierwise check-config`); runs `tierwise eval` once per task into
# bench/eval/results/TASK; concatenates the Markdown reports into
# bench/eval/results/SUMMARY.md. Every process it started is stopped on exit, Ctrl-C
# included. llama-server logs: bench/eval/.cache/logs/.
#
# Tasks (TASKS, space-separated; default all but the feedback tasks), each chain weak →
# strong unless named:
#   D-checks         non_empty + finish_stop + no_refusal (today's checks)
#   D-feedback       the checks, with the rejection's feedback appended for the strong model
#   D-judge          the checks, then weak judges the answer (JSON verdict; today's judge)
#   D-judge-yn       the checks, then weak judges Yes/No with a threshold (judge_score)
#   D-confidence     the checks, then confidence (mean token probability)
#   D-selfcheck      the checks, then self_check (weak's P(Yes) on its own answer)
#   D-mid-confidence mid → strong: the checks, then confidence on mid's answer
#   gsm-consistency  the checks, then consistency (5 samples, final numbers)
#   gsm-3            weak → mid → strong, the checks
# for D in gsm (data/gsm.jsonl) and code (data/humaneval.jsonl). Every task but
# D-feedback turns feedback off, so an escalated request is the strong model's request
# alone — answered from the cache: the benchmark measures routing, and pays each model
# once per item. D-feedback measures what the feedback adds (not in the default set: it
# pays the strong model a second time for most items).
#
# Two phases. Phase 1 (warm) runs every task once, one request at a time, with
# --no-replay-delay: each model is asked once per item, alone on the cores, so the time
# each live call took is the model's own; answers already cached come back at once, so
# its reports' latencies mean nothing and they go to RESULTS/warm/. Phase 2 (report) runs
# every task again, all at once, each at REPORT_CONCURRENCY: every answer comes from the
# cache after the live call's recorded time (no model runs, so running many side by side
# changes no latency), and its reports are the results; then each scored task's --sweep
# of its threshold, from the cache without waiting, into RESULTS/TASK/sweep/.
#
# Env: LIMIT (100), TASKS, PHASES ("warm report"), SEED (7), REPORT_CONCURRENCY (100),
# PARALLEL (1, llama-server --parallel and the upstreams' max_concurrent), THREADS (2),
# CTX_PER_SLOT (4096), RESULTS (bench/eval/results), TIERWISE_BIN (skip the build),
# EVAL_ARGS (extra arguments for every `tierwise eval`), EVAL_CACHE, EVAL_PORTS ("W M S":
# the three llama-servers' ports; the cache keys answers by URL, so a rerun reuses them
# only on the same ports).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

LIMIT=${LIMIT:-100}
DEFAULT_TASKS="gsm-checks gsm-judge gsm-judge-yn gsm-confidence gsm-selfcheck code-checks code-judge code-judge-yn code-confidence code-selfcheck gsm-consistency gsm-mid-confidence code-mid-confidence gsm-3"
ALL_TASKS="$DEFAULT_TASKS gsm-feedback code-feedback"
TASKS=${TASKS:-$DEFAULT_TASKS}
PHASES=${PHASES:-warm report}
REPORT_CONCURRENCY=${REPORT_CONCURRENCY:-100}
SEED=${SEED:-7}
PARALLEL=${PARALLEL:-1}
THREADS=${THREADS:-2}
CTX_PER_SLOT=${CTX_PER_SLOT:-4096}
RESULTS=${RESULTS:-bench/eval/results}
EVAL_ARGS=${EVAL_ARGS:-}
export EVAL_CACHE=${EVAL_CACHE:-$ROOT/bench/eval/.cache}
CONFIG=$EVAL_CACHE/config.toml
LOGS=$EVAL_CACHE/logs

log() { printf '[eval %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for task in $TASKS; do
  case " $ALL_TASKS " in
    *" $task "*) ;;
    *) log "unknown task '$task' (known: $ALL_TASKS)"; exit 2 ;;
  esac
done

# The threshold each scored task sweeps in phase 2.
confidence_sweep="verify.confidence.threshold=0.3,0.4,0.5,0.6,0.7,0.8,0.85,0.9,0.95"
declare -A SWEEP=(
  [gsm-confidence]=$confidence_sweep
  [code-confidence]=$confidence_sweep
  [gsm-mid-confidence]=$confidence_sweep
  [code-mid-confidence]=$confidence_sweep
  [gsm-selfcheck]="verify.self_check.threshold=0.05,0.1,0.2,0.3,0.4,0.5,0.7"
  [code-selfcheck]="verify.self_check.threshold=0.05,0.1,0.2,0.3,0.4,0.5,0.7"
  [gsm-judge-yn]="verify.judge_threshold=0.1,0.2,0.3,0.5,0.7,0.9"
  [code-judge-yn]="verify.judge_threshold=0.1,0.2,0.3,0.5,0.7,0.9"
  [gsm-consistency]="verify.consistency.threshold=0.4,0.6,0.8,1.0"
)

# ── stop everything we start, however we leave ──────────────────────────────────────
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load=$(cut -d' ' -f1 /proc/loadavg)
if awk "BEGIN { exit !($load > 1.0) }"; then
  log "warning: load average $load: other work on the cores slows the models (see MODELS.md) and skews latencies"
fi

# ── models and llama-server ─────────────────────────────────────────────────────────
log "setup: llama-server and the three models (bench/eval/setup.sh)"
setup_out=$(bench/eval/setup.sh)
EVAL_LLAMA_SERVER=$(sed -n 's/^EVAL_LLAMA_SERVER=//p' <<<"$setup_out")
declare -A GGUF
GGUF[weak]=$(sed -n 's/^EVAL_WEAK_GGUF=//p' <<<"$setup_out")
GGUF[mid]=$(sed -n 's/^EVAL_MID_GGUF=//p' <<<"$setup_out")
GGUF[strong]=$(sed -n 's/^EVAL_STRONG_GGUF=//p' <<<"$setup_out")

# ── tierwise ────────────────────────────────────────────────────────────────────────
if [ -z "${TIERWISE_BIN:-}" ]; then
  log "building tierwise (cargo build --release --bin tierwise)"
  cargo build --release --bin tierwise
  TIERWISE_BIN=target/release/tierwise
fi
[ -x "$TIERWISE_BIN" ] || { log "no tierwise binary at $TIERWISE_BIN"; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

mkdir -p "$LOGS"
TIERS=(weak mid strong)
declare -A PORT
# The cache keys answers by upstream URL, port included: a rerun on the same EVAL_PORTS
# reuses every answer; on fresh ports it asks every model again.
read -r -a fixed_ports <<<"${EVAL_PORTS:-}"
for i in "${!TIERS[@]}"; do
  tier=${TIERS[$i]}
  PORT[$tier]=${fixed_ports[$i]:-$(free_port)}
  log "starting llama-server '$tier' ($(basename "${GGUF[$tier]}")) on 127.0.0.1:${PORT[$tier]}"
  "$EVAL_LLAMA_SERVER" -m "${GGUF[$tier]}" --alias "$tier" --host 127.0.0.1 --port "${PORT[$tier]}" \
    --threads "$THREADS" --threads-batch "$THREADS" --parallel "$PARALLEL" \
    --ctx-size $((CTX_PER_SLOT * PARALLEL)) --no-webui >"$LOGS/$tier.log" 2>&1 &
  pids+=($!)
done
for i in "${!TIERS[@]}"; do
  tier=${TIERS[$i]}
  for _ in $(seq 1 360); do
    curl -sf "http://127.0.0.1:${PORT[$tier]}/health" >/dev/null 2>&1 && break
    kill -0 "${pids[$i]}" 2>/dev/null || { log "llama-server '$tier' exited; see $LOGS/$tier.log"; exit 1; }
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:${PORT[$tier]}/health" >/dev/null || { log "llama-server '$tier' not healthy after 180 s"; exit 1; }
done
log "all three llama-servers are up"

# ── the tierwise config ─────────────────────────────────────────────────────────────
# Non-streaming calls send their first byte only when the whole answer is done, so the
# byte and call timeouts are generous; circuits are off so that a slow answer does not
# make later items skip a tier. Prices: strong stands in for a cloud model at
# gpt-4.1-mini's list price; mid at a small hosted model's; weak (local) is free.
# The sensitive-content detector is off: the datasets hold no personal data, and a false
# positive (a number that looks like a phone number) would keep an item on the local tier,
# which would measure the detector rather than the verifier.
upstream() { # name tier port
  cat <<EOF
[upstreams.$1]
tier = "$2"
kind = "openai"
base_url = "http://127.0.0.1:$3/v1"
timeout_ms = 900000
first_byte_timeout_ms = 900000
retries = 0
circuit_failures = 0
max_concurrent = $PARALLEL
queue_limit = 256
queue_wait_ms = 900000

EOF
}
checks='["non_empty", "finish_stop", "no_refusal"]'
{
  cat <<EOF
# Written by bench/eval/run.sh — do not edit; it is rewritten on every run.
[server]
listen = "127.0.0.1:$(free_port)"
request_timeout_ms = 1800000

[detect]
mode = "off"

EOF
  upstream weak local "${PORT[weak]}"
  upstream mid server "${PORT[mid]}"
  upstream strong cloud "${PORT[strong]}"
  cat <<EOF
[models]
weak = { upstream = "weak", name = "weak" }
mid = { upstream = "mid", name = "mid", price = { input_usd_per_mtok = 0.10, output_usd_per_mtok = 0.40 } }
strong = { upstream = "strong", name = "strong", price = { input_usd_per_mtok = 0.40, output_usd_per_mtok = 1.60 } }

[profiles.default]
allowed_tiers = ["local", "server", "cloud"]
cloud_consent = true

EOF
  for set in gsm code; do
    cat <<EOF
[tasks.$set-checks]
chain = ["weak", "strong"]
verify = { checks = $checks, feedback = "off" }

[tasks.$set-feedback]
chain = ["weak", "strong"]
verify = { checks = $checks }

[tasks.$set-judge]
chain = ["weak", "strong"]
verify = { checks = $checks, feedback = "off", judge = "weak", judge_timeout_ms = 120000 }

[tasks.$set-judge-yn]
chain = ["weak", "strong"]
verify = { checks = $checks, feedback = "off", judge = "weak", judge_score = "yes_no", judge_threshold = 0.5, judge_timeout_ms = 120000 }

[tasks.$set-confidence]
chain = ["weak", "strong"]
verify = { checks = $checks, feedback = "off", confidence = { threshold = 0.5 } }

[tasks.$set-selfcheck]
chain = ["weak", "strong"]
verify = { checks = $checks, feedback = "off", self_check = { threshold = 0.5, timeout_ms = 120000 } }

[tasks.$set-mid-confidence]
chain = ["mid", "strong"]
verify = { checks = $checks, feedback = "off", confidence = { threshold = 0.5 } }

EOF
  done
  cat <<EOF
[tasks.gsm-consistency]
chain = ["weak", "strong"]
verify = { checks = $checks, feedback = "off", consistency = { samples = 5, extract = "number", threshold = 0.6, timeout_ms = 600000 } }

[tasks.gsm-3]
chain = ["weak", "mid", "strong"]
verify = { checks = $checks, feedback = "off" }
EOF
} >"$CONFIG"
"$TIERWISE_BIN" --config "$CONFIG" check-config >&2

# ── the evals ───────────────────────────────────────────────────────────────────────
mkdir -p "$RESULTS"
ANSWERS=$EVAL_CACHE/answers
failed=()
done_tasks=()
run_eval() { # out task concurrency [extra arguments]
  local out=$1 task=$2 concurrency=$3 dataset
  shift 3
  case $task in
    gsm-*) dataset=bench/eval/data/gsm.jsonl ;;
    code-*) dataset=bench/eval/data/humaneval.jsonl ;;
  esac
  log "eval $task $*: $dataset, --limit $LIMIT, --concurrency $concurrency"
  # shellcheck disable=SC2086  # EVAL_ARGS is a list of words
  "$TIERWISE_BIN" --config "$CONFIG" eval --dataset "$dataset" --task "$task" --limit "$LIMIT" --seed "$SEED" \
    --concurrency "$concurrency" --cache "$ANSWERS" --out "$out" "$@" $EVAL_ARGS
}
ready=()
if [[ " $PHASES " == *" warm "* ]]; then
  for task in $TASKS; do
    if run_eval "$RESULTS/warm/$task" "$task" 1 --no-replay-delay; then
      ready+=("$task")
    else
      log "eval $task failed (exit $?)"
      failed+=("$task")
    fi
  done
else
  read -r -a ready <<<"$TASKS"
fi
if [[ " $PHASES " == *" report "* ]]; then
  # Every task at once: replayed answers only sleep, so side by side they change no
  # latency, and the phase takes as long as its slowest task, not their sum.
  declare -A report_pid
  for task in "${ready[@]}"; do
    run_eval "$RESULTS/$task" "$task" "$REPORT_CONCURRENCY" >"$LOGS/report-$task.log" 2>&1 &
    report_pid[$task]=$!
  done
  for task in "${ready[@]}"; do
    if wait "${report_pid[$task]}"; then
      done_tasks+=("$task")
    else
      log "eval $task (report) failed; see $LOGS/report-$task.log"
      failed+=("$task (report)")
    fi
  done
  # The sweeps: cost and accuracy per threshold, from the cache without waiting (their
  # latencies mean nothing; the task's own report has the real ones).
  for task in "${done_tasks[@]}"; do
    [ -n "${SWEEP[$task]:-}" ] || continue
    run_eval "$RESULTS/$task/sweep" "$task" 8 --sweep "${SWEEP[$task]}" --no-replay-delay ||
      { log "sweep of $task failed"; failed+=("$task (sweep)"); }
  done
fi

# ── SUMMARY.md: every task's Markdown report, in order ──────────────────────────────
reports_of() { # the Markdown a task's --out produced: OUT.md, OUT (a file), or OUT/*.md
  local out=$1
  if [ -d "$out" ]; then
    find "$out" -maxdepth 1 -name '*.md' | sort
  elif [ -f "$out.md" ]; then
    echo "$out.md"
  elif [ -f "$out" ]; then
    echo "$out"
  fi
}
summary=$RESULTS/SUMMARY.md
{
  echo "# tierwise eval: the real benchmark"
  echo
  echo "Made by \`bench/eval/run.sh\` on $(date -u +%Y-%m-%dT%H:%MZ) at commit" \
    "\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`, on $(nproc) cores."
  echo
  echo "\`LIMIT=$LIMIT TASKS=\"$TASKS\" PHASES=\"$PHASES\" SEED=$SEED REPORT_CONCURRENCY=$REPORT_CONCURRENCY PARALLEL=$PARALLEL THREADS=$THREADS bench/eval/run.sh\`"
  echo
  echo "llama-server: \`$("$EVAL_LLAMA_SERVER" --version 2>&1 | grep -m1 -i version || echo unknown)\`"
  echo
  python3 bench/eval/models.py table
  echo
  echo "Datasets: bench/eval/data/MANIFEST.json. Config: bench/eval/.cache/config.toml (below)."
  [ ${#failed[@]} -eq 0 ] || { echo; echo "**Failed tasks:** ${failed[*]}"; }
  for task in "${done_tasks[@]}"; do
    echo
    echo "## $task"
    echo
    mapfile -t reports < <(reports_of "$RESULTS/$task"; reports_of "$RESULTS/$task/sweep")
    if [ ${#reports[@]} -eq 0 ]; then
      echo "(no Markdown report found under $RESULTS/$task)"
    else
      for report in "${reports[@]}"; do
        sed 's/^#/##/' "$report"   # one heading level down, under the task's
        echo
      done
    fi
  done
  echo
  echo "<details><summary>config.toml</summary>"
  echo
  echo '```toml'
  cat "$CONFIG"
  echo '```'
  echo
  echo "</details>"
} >"$summary"

log "results: $RESULTS/ (per task: $RESULTS/TASK); summary: $summary"
[ ${#failed[@]} -eq 0 ] || { log "failed: ${failed[*]}"; exit 1; }
