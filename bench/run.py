#!/usr/bin/env python3
"""tierwise overhead benchmark: the same open-loop load DIRECT to an upstream double and
THROUGH tierwise, interleaved in one run. Called by bench/run.sh after the release build.

Environment (all optional):
  RATES="50 200 1000 3000"  offered request rates, req/s
  DURATION=10s              length of each measured load run (oha syntax: 10s, 500ms, 1m)
  RUNS=3                    repeats of the whole matrix; the report shows medians
  MODES="json stream"       which request kinds to run
  UPSTREAM_DELAY_MS=20      bench_upstream --delay-ms
  STREAM_CHUNKS=20          bench_upstream --chunks
  CHUNK_GAP_MS=1            bench_upstream --chunk-gap-ms
  MAX_OTHER_LOAD=0.25       cores of other work (not oha, the double, tierwise) a cell may see
  CELL_RETRIES=3            times a cell over MAX_OTHER_LOAD is measured again (0: never)
  QUIET_WAIT_S=120          longest wait for the machine to calm down before a run or a retry
  TIERWISE_BIN              the tierwise binary to measure (default target/release/tierwise):
                            e.g. an older commit's build, to compare two versions
  BENCH_TRACING             1: traces on, every request sampled, exported over OTLP/HTTP to a receiver
                            this script starts (it answers 200 and keeps nothing): what tracing
                            costs per request (bench/README.md, "Traces")
  BENCH_STATE               unset: no client keys. memory | redis: every request carries a client key
                            with rate limits it never reaches, kept in tierwise's memory or in a
                            redis-server this script starts: what the shared state costs per
                            request (bench/README.md, "Shared state")

  BENCH_FLOOR               1: measure the floor instead of tierwise: examples/bench_floor, a bare
                            forwarder on tierwise's own stack (axum in, reqwest out, bytes passed
                            through). Alternate runs with and without it for tierwise's ratio to it
                            (bench/README.md, "The floor")
  BENCH_CACHE               hit: task chat caches its answers, so every request after the warm-up is
                            answered from the cache (what a hit costs; the direct side still waits on
                            the upstream). refresh: every request carries x-tierwise-cache: refresh, so
                            it is keyed, run and stored but never served (what a miss costs)
                            (bench/README.md, "The response cache")

Python 3.11 standard library only. Every process it starts is stopped in a finally block;
everything listens and connects on 127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

from procs import HOST, Procs, free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TIERWISE = pathlib.Path(os.environ.get("TIERWISE_BIN") or ROOT / "target" / "release" / "tierwise")
FLOOR = ROOT / "target" / "release" / "examples" / "bench_floor"
UPSTREAM = ROOT / "target" / "release" / "examples" / "bench_upstream"
PATH = "/v1/chat/completions"
BODIES = {
    "json": '{"model":"chat","messages":[{"role":"user","content":"Say hello."}]}',
    "stream": '{"model":"chat","messages":[{"role":"user","content":"Say hello."}],"stream":true}',
}
CLK_TCK = int(subprocess.run(["getconf", "CLK_TCK"], capture_output=True, text=True, check=True).stdout)
READY_TIMEOUT_S = 10.0
HEALTH_POLL_S = 0.005


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not m:
        raise SystemExit(f"DURATION={text!r}: expected e.g. 10s, 500ms, 1m")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------


def start_upstream(procs: Procs, delay_ms: int, chunks: int, gap_ms: int) -> tuple[subprocess.Popen, int]:
    args = [str(UPSTREAM), "--listen", f"{HOST}:0", "--delay-ms", str(delay_ms), "--chunks", str(chunks),
            "--chunk-gap-ms", str(gap_ms)]
    proc = procs.start(args, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # the first line; bench_upstream flushes it at once
    m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        raise RuntimeError(f"bench_upstream did not report its address (got {line!r})")
    proc.stdout.close()
    return proc, int(m.group(1))


def healthz_ok(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=0.5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


BENCH_KEY = "bench-client-key"


def state_config(procs: Procs, state: str, workdir: pathlib.Path) -> str:
    """The client key every request carries (rate limits it never reaches, so admission
    takes its one state round trip and the answer its token charge), and for `redis` the
    [state] section, with a redis-server started for it."""
    import hashlib
    digest = hashlib.sha256(BENCH_KEY.encode()).hexdigest()
    key = (f'\n[[keys]]\nkey_sha256 = "{digest}"\nprofile = "default"\n'
           f"requests_per_minute = 1000000000\ntokens_per_minute = 1000000000000\n")
    if state == "memory":
        return key
    if state != "redis":
        raise SystemExit(f"BENCH_STATE must be memory or redis, not {state!r}")
    port = free_port()
    log = open(workdir / "redis.log", "ab")
    procs.start(["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
                stdout=log, stderr=log)
    log.close()
    deadline = time.perf_counter() + READY_TIMEOUT_S
    while subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), "ping"], capture_output=True,
                         text=True).stdout.strip() != "PONG":
        if time.perf_counter() > deadline:
            raise RuntimeError(f"redis-server did not answer PING within {READY_TIMEOUT_S} s")
        time.sleep(HEALTH_POLL_S)
    return f'\n[state]\nbackend = "redis"\nurl = "redis://{HOST}:{port}/0"\n' + key


OTLP_RECEIVER = """
import http.server, sys
class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Receiver).serve_forever()
"""


def tracing_config(procs: Procs, workdir: pathlib.Path) -> str:
    """The [tracing] section, with an OTLP/HTTP receiver started for it (a Python
    http.server that answers 200 to every export and keeps nothing)."""
    port = free_port()
    procs.start([sys.executable, "-c", OTLP_RECEIVER, HOST, str(port)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    deadline = time.perf_counter() + READY_TIMEOUT_S
    while True:
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            conn.request("POST", "/v1/traces", body=b"")
            if conn.getresponse().status == 200:
                break
        except OSError:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the OTLP receiver did not answer within {READY_TIMEOUT_S} s")
            time.sleep(HEALTH_POLL_S)
        finally:
            conn.close()
    return f'\n[tracing]\notlp_endpoint = "http://{HOST}:{port}"\nsample_ratio = 1.0\n'


def auth_args() -> list[str]:
    args = ["-H", f"authorization: Bearer {BENCH_KEY}"] if os.environ.get("BENCH_STATE") else []
    cache = os.environ.get("BENCH_CACHE")
    if cache not in (None, "", "hit", "refresh"):
        raise SystemExit(f"BENCH_CACHE must be hit or refresh, not {cache!r}")
    return args + (["-H", "x-tierwise-cache: refresh"] if cache == "refresh" else [])


def start_tierwise(procs: Procs, upstream_port: int, workdir: pathlib.Path) -> tuple[subprocess.Popen, int, float]:
    """Starts tierwise; returns (process, port, seconds from spawn to the first 200 on /healthz)."""
    if os.environ.get("BENCH_FLOOR") == "1":
        return start_floor(procs, upstream_port)
    port = free_port()
    config = workdir / "tierwise-bench.toml"
    config.write_text(
        f"""[server]
listen = "{HOST}:{port}"

[upstreams.local]
tier = "local"
base_url = "http://{HOST}:{upstream_port}/v1"

[models.bench]
upstream = "local"
name = "bench"

[tasks.chat]
chain = ["bench"]
"""
    )
    if os.environ.get("BENCH_TRACING") == "1":
        with config.open("a") as f:
            f.write(tracing_config(procs, workdir))
    if os.environ.get("BENCH_CACHE"):
        text = config.read_text().replace(
            'chain = ["bench"]\n', 'chain = ["bench"]\ncache = { ttl_s = 3600, deterministic_only = false }\n')
        config.write_text(text)
    state = os.environ.get("BENCH_STATE")
    if state:
        with config.open("a") as f:
            f.write(state_config(procs, state, workdir))
    env = dict(os.environ, TIERWISE_LOG="warn")
    env.pop("TIERWISE_CONFIG", None)
    # TIERWISE_WORKERS=N: tierwise's tokio worker threads (TOKIO_WORKER_THREADS), for it only.
    env.pop("TOKIO_WORKER_THREADS", None)
    if os.environ.get("TIERWISE_WORKERS"):
        env["TOKIO_WORKER_THREADS"] = os.environ["TIERWISE_WORKERS"]
    stderr = open(workdir / "tierwise.stderr.log", "ab")
    t0 = time.perf_counter()
    proc = procs.start([str(TIERWISE), "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    deadline = t0 + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tierwise exited with {proc.returncode}; see {workdir / 'tierwise.stderr.log'}")
        if healthz_ok(port):
            return proc, port, time.perf_counter() - t0
        time.sleep(HEALTH_POLL_S)
    raise RuntimeError(f"tierwise did not answer /healthz within {READY_TIMEOUT_S} s")


def start_floor(procs: Procs, upstream_port: int) -> tuple[subprocess.Popen, int, float]:
    """Starts the bare forwarder in tierwise's place; returns (process, port, seconds to listening)."""
    t0 = time.perf_counter()
    proc = procs.start([str(FLOOR), "--listen", f"{HOST}:0", "--upstream", f"http://{HOST}:{upstream_port}"],
                       stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        raise RuntimeError(f"bench_floor did not report its address (got {line!r})")
    proc.stdout.close()
    return proc, int(m.group(1)), time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads, exited ones included)."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from #3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # #14 utime, #15 stime


def busy_seconds() -> float:
    """CPU time the whole machine spent in processes (all cores), from /proc/stat: user + nice +
    system. Interrupt and softirq time are left out: loopback traffic is mostly softirq, and
    that is the benchmark's own doing."""
    fields = [int(x) for x in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / CLK_TCK


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def status_kib(pid: int, key: str) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


# ---------------------------------------------------------------------------------------
# oha: latency, completion and errors
# ---------------------------------------------------------------------------------------


def oha_connections(rate: int, expected_s: float) -> int:
    """Connections for an open-loop rate: twice the expected concurrency (rate × response time),
    at least 50, so oha never runs out of free connections and queues requests itself."""
    return max(50, math.ceil(rate * expected_s * 2))


def expected_response_s(mode: str, cfg: dict) -> float:
    if mode == "stream":
        return (cfg["delay_ms"] + cfg["chunks"] * cfg["gap_ms"]) / 1000
    return cfg["delay_ms"] / 1000 + 0.005


def run_oha(url: str, mode: str, rate: int, cfg: dict) -> dict:
    duration, duration_s = cfg["duration"], cfg["duration_s"]
    connections = oha_connections(rate, expected_response_s(mode, cfg))
    args = ["oha", "-z", duration, "-q", str(rate), "--latency-correction", "--no-tui", "--output-format", "json",
            "-c", str(connections), "-w", "-m", "POST", "-H", "content-type: application/json", *auth_args(),
            "-d", BODIES[mode], url]
    timeout = duration_s + 60
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed ({out.returncode}): {out.stderr.strip()[:2000]}")
    report = json.loads(out.stdout)
    codes = {int(k): v for k, v in (report.get("statusCodeDistribution") or {}).items()}
    transport = report.get("errorDistribution") or {}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    pct = report.get("latencyPercentiles") or {}
    first = report.get("firstBytePercentiles") or {}
    return {
        "p50_ms": (pct.get("p50") or math.nan) * 1000,
        "p99_ms": (pct.get("p99") or math.nan) * 1000,
        # First body frame, timed from when the request was actually sent (not latency-corrected).
        "ttfb_p50_ms": (first.get("p50") or math.nan) * 1000,
        "ttfb_p99_ms": (first.get("p99") or math.nan) * 1000,
        "ok": ok,
        "offered": round(rate * duration_s),
        "non_2xx": sum(v for k, v in codes.items() if not 200 <= k < 300),
        # What oha actually sent: its schedule stops at the deadline, and its timer's rounding
        # can push the last tick or two past it, so this can be a few short of `offered`.
        "sent": sum(codes.values()) + sum(transport.values()),
        "transport_errors": sum(transport.values()),
        "error_kinds": transport,
        "rps": (report.get("summary") or {}).get("requestsPerSec"),
        "status_codes": codes,
        "connections": connections,
    }


def warm_up(url: str, mode: str) -> None:
    args = ["oha", "-n", "300", "-c", "10", "--no-tui", "--output-format", "json", "-m", "POST",
            "-H", "content-type: application/json", *auth_args(), "-d", BODIES[mode], url]
    subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)


# ---------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------


def wait_quiet(max_cores: float, timeout_s: float) -> bool:
    """Waits (at most `timeout_s`) until the machine is busier than `max_cores` no more."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = busy_seconds()
        time.sleep(3)
        load = (busy_seconds() - before) / 3
        if load <= max_cores:
            return True
        if time.monotonic() >= deadline:
            log(f"still {load:.2f} cores busy after {timeout_s:.0f} s of waiting; going on")
            return False


def measure_cell(mode: str, rate: int, order: list[str], urls: dict, tw, upstream, cfg: dict) -> dict:
    """One oha run per side, back to back, with tierwise's CPU and the machine's other load."""
    cell = {"mode": mode, "rate": rate}
    for side in order:
        before = cpu_seconds(tw.pid)
        before_up, before_oha, before_busy = cpu_seconds(upstream.pid), children_cpu_seconds(), busy_seconds()
        res = run_oha(urls[side], mode, rate, cfg)
        used = cpu_seconds(tw.pid) - before
        used_up = cpu_seconds(upstream.pid) - before_up
        used_oha = children_cpu_seconds() - before_oha
        # Whatever else ran on the machine meanwhile (another build, say), in cores.
        res["other_load_cores"] = max(0.0, busy_seconds() - before_busy - used - used_up - used_oha) / cfg["duration_s"]
        res["upstream_cpu_ms_per_req"] = used_up * 1000 / res["ok"] if res["ok"] else math.nan
        res["oha_cpu_s"] = used_oha
        if side == "tierwise":
            res["cpu_s"] = used
            res["cpu_ms_per_req"] = used * 1000 / res["ok"] if res["ok"] else math.nan
            res["vm_hwm_kib"] = status_kib(tw.pid, "VmHWM")
        cell[side] = res
    return cell


def one_run(run: int, cfg: dict, procs: Procs, workdir: pathlib.Path) -> dict:
    wait_quiet(cfg["max_other_load"], cfg["quiet_wait_s"])
    upstream, up_port = start_upstream(procs, cfg["delay_ms"], cfg["chunks"], cfg["gap_ms"])
    tw, tw_port = None, None
    try:
        tw, tw_port, ready_s = start_tierwise(procs, up_port, workdir)
        idle_rss = status_kib(tw.pid, "VmRSS")
        log(f"run {run}: upstream :{up_port}, tierwise :{tw_port} (pid {tw.pid}) ready in {ready_s * 1000:.1f} ms, "
            f"idle RSS {idle_rss / 1024:.1f} MiB")
        direct = f"http://{HOST}:{up_port}{PATH}"
        through = f"http://{HOST}:{tw_port}{PATH}"
        for mode in cfg["modes"]:
            warm_up(direct, mode)
            warm_up(through, mode)
        cells = []
        peak = None
        for mode in cfg["modes"]:
            for rate in cfg["rates"]:
                # Alternate which side goes first, so that drift does not favour one.
                order = ["direct", "tierwise"] if (run + rate) % 2 == 0 else ["tierwise", "direct"]
                # A cell disturbed by other work on the machine (a build, say) is measured again,
                # after waiting for quiet, up to CELL_RETRIES times; the last try is kept, marked.
                for attempt in range(cfg["cell_retries"] + 1):
                    cell = measure_cell(mode, rate, order, {"direct": direct, "tierwise": through}, tw, upstream, cfg)
                    other = max(cell[side]["other_load_cores"] for side in order)
                    cell["attempts"] = attempt + 1
                    cell["noisy"] = other > cfg["max_other_load"]
                    if not cell["noisy"] or attempt == cfg["cell_retries"]:
                        break
                    log(f"run {run} {mode} {rate}/s: {other:.2f} cores of other load meanwhile; measuring again")
                    wait_quiet(cfg["max_other_load"], cfg["quiet_wait_s"])
                if tw.poll() is not None:
                    raise RuntimeError(f"tierwise exited with {tw.returncode} during {mode} {rate}")
                if rate == max(cfg["rates"]):
                    peak = status_kib(tw.pid, "VmHWM")
                cells.append(cell)
                d, t = cell["direct"], cell["tierwise"]
                extra = ""
                if mode == "stream":
                    extra = f", first byte {d['ttfb_p50_ms']:.2f} -> {t['ttfb_p50_ms']:.2f} ms"
                log(f"run {run} {mode:6} {rate:5}/s: p50 {d['p50_ms']:.2f} -> {t['p50_ms']:.2f} ms, "
                    f"p99 {d['p99_ms']:.2f} -> {t['p99_ms']:.2f} ms, ok {t['ok']}/{t['offered']}, "
                    f"err {t['non_2xx'] + t['transport_errors']}, cpu {t['cpu_ms_per_req']:.3f} ms/req{extra}, "
                    f"other load {max(d['other_load_cores'], t['other_load_cores']):.2f} cores")
        return {"run": run, "ready_ms": ready_s * 1000, "idle_rss_kib": idle_rss, "peak_rss_kib": peak,
                "final_vm_hwm_kib": status_kib(tw.pid, "VmHWM"), "cells": cells}
    finally:
        if tw is not None:
            procs.stop(tw)
        procs.stop(upstream)


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


def fmt(x: float, digits: int = 2, signed: bool = False) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def summarize(runs: list[dict], cfg: dict) -> tuple[list[dict], dict]:
    rows = []
    for mode in cfg["modes"]:
        for rate in cfg["rates"]:
            cells = [c for r in runs for c in r["cells"] if c["mode"] == mode and c["rate"] == rate]
            d = [c["direct"] for c in cells]
            t = [c["tierwise"] for c in cells]
            row = {
                "mode": mode,
                "rate": rate,
                "direct_p50": med([x["p50_ms"] for x in d]),
                "tw_p50": med([x["p50_ms"] for x in t]),
                "p50_overhead": med([b["p50_ms"] - a["p50_ms"] for a, b in zip(d, t)]),
                "direct_p99": med([x["p99_ms"] for x in d]),
                "tw_p99": med([x["p99_ms"] for x in t]),
                "p99_overhead": med([b["p99_ms"] - a["p99_ms"] for a, b in zip(d, t)]),
                "completed_pct": med([100 * x["ok"] / x["offered"] for x in t]),
                "direct_completed_pct": med([100 * x["ok"] / x["offered"] for x in d]),
                "tw_unsent": max(x["offered"] - x["sent"] for x in t),
                "direct_unsent": max(x["offered"] - x["sent"] for x in d),
                "noisy_runs": sum(1 for c in cells if c.get("noisy")),
                "tw_all_sent_ok": all(x["ok"] == x["sent"] for x in t),
                "tw_errors": sum(x["non_2xx"] + x["transport_errors"] for x in t),
                "direct_errors": sum(x["non_2xx"] + x["transport_errors"] for x in d),
                "cpu_ms_per_req": med([x["cpu_ms_per_req"] for x in t]),
                "ttfb_direct": math.nan,
                "ttfb_tw": math.nan,
                "ttfb_overhead": math.nan,
            }
            if mode == "stream" and cells:
                row["ttfb_direct"] = med([x["ttfb_p50_ms"] for x in d])
                row["ttfb_tw"] = med([x["ttfb_p50_ms"] for x in t])
                row["ttfb_overhead"] = med([b["ttfb_p50_ms"] - a["ttfb_p50_ms"] for a, b in zip(d, t)])
            rows.append(row)
    proc = {
        "idle_rss_mib": med([r["idle_rss_kib"] / 1024 for r in runs]),
        "peak_rss_mib": med([r["peak_rss_kib"] / 1024 for r in runs if r["peak_rss_kib"]]),
        "peak_rss_max_mib": max((r["peak_rss_kib"] or 0) / 1024 for r in runs),
        "ready_ms": med([r["ready_ms"] for r in runs]),
        "ready_max_ms": max(r["ready_ms"] for r in runs),
        # Older result files have no other-load figures: NaN there.
        "other_load_median_cores": med([c[s].get("other_load_cores", math.nan) for r in runs for c in r["cells"] for s in ("direct", "tierwise")]),
        "other_load_max_cores": max((c[s].get("other_load_cores", math.nan) for r in runs for c in r["cells"] for s in ("direct", "tierwise")), default=math.nan),
        "cell_retries": sum(c.get("attempts", 1) - 1 for r in runs for c in r["cells"]),
    }
    return rows, proc


def check_targets(rows: list[dict], proc: dict, cfg: dict) -> list[str]:
    out = []

    def verdict(ok: bool, text: str) -> None:
        out.append(f"- {'PASS' if ok else 'MISS'}: {text}")

    for r in rows:
        if r["mode"] == "json" and r["rate"] <= 1000:
            verdict(r["p50_overhead"] <= 0.5 and r["p99_overhead"] <= 2,
                    f"json {r['rate']}/s p50 overhead {fmt(r['p50_overhead'], 2, True)} ms (≤ 0.5), "
                    f"p99 overhead {fmt(r['p99_overhead'], 2, True)} ms (≤ 2)")
        if r["mode"] == "json" and r["rate"] >= 3000:
            # "100 % completed": every request oha sent succeeded, and the only shortfall is oha's
            # end-of-schedule edge (ticks its timer pushed past the deadline): no larger than on
            # the direct side, give or take 2 ms worth of requests.
            edge = r["direct_unsent"] + math.ceil(r["rate"] * 0.002)
            complete = r["tw_all_sent_ok"] and r["tw_unsent"] <= edge
            verdict(complete and r["tw_errors"] == 0 and r["p50_overhead"] <= 1,
                    f"json {r['rate']}/s completed {fmt(r['completed_pct'], 2)} % of offered (every sent request "
                    f"answered: {'yes' if r['tw_all_sent_ok'] else 'NO'}; at most {r['tw_unsent']} never sent by oha "
                    f"at the deadline, direct {r['direct_unsent']}), errors {r['tw_errors']} (0), p50 overhead {fmt(r['p50_overhead'], 2, True)} ms (≤ 1)")
        if r["mode"] == "stream" and r["rate"] <= 1000:
            verdict(r["ttfb_overhead"] <= 0.5 and r["p50_overhead"] <= 1.5,
                    f"stream {r['rate']}/s first-byte overhead {fmt(r['ttfb_overhead'], 2, True)} ms (≤ 0.5), "
                    f"p50 overhead {fmt(r['p50_overhead'], 2, True)} ms (≤ 1.5)")
    for mode, limit in (("json", 0.25), ("stream", 0.6)):
        cpu = [r["cpu_ms_per_req"] for r in rows if r["mode"] == mode and not math.isnan(r["cpu_ms_per_req"])]
        if cpu:
            verdict(max(cpu) <= limit, f"{mode} CPU up to {max(cpu):.3f} ms/req over the rates (≤ {limit})")
    verdict(proc["peak_rss_mib"] <= 64, f"peak RSS {proc['peak_rss_mib']:.1f} MiB after the {max(cfg['rates'])}/s runs (≤ 64)")
    verdict(proc["idle_rss_mib"] <= 20, f"idle RSS {proc['idle_rss_mib']:.1f} MiB (≤ 20)")
    verdict(proc["ready_ms"] <= 1000, f"ready to serve in {proc['ready_ms']:.1f} ms (≤ 1000)")
    return out


def render(rows: list[dict], proc: dict, cfg: dict, meta: dict) -> str:
    lines = [
        f"tierwise overhead benchmark, {meta['date']} — {meta['runs']} runs × {cfg['duration']} per cell, medians "
        f"(overheads are medians of the per-run paired differences), git {meta['git']}",
        "",
        "| mode | rate (req/s) | direct p50 | tierwise p50 | p50 overhead | direct p99 | tierwise p99 | p99 overhead "
        "| completed % (tierwise / direct) | errors (tierwise / direct) | TTFB overhead (streams) | CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ttfb = "–"
        if not math.isnan(r["ttfb_overhead"]):
            ttfb = f"{fmt(r['ttfb_overhead'], 2, True)} ms ({fmt(r['ttfb_direct'])} → {fmt(r['ttfb_tw'])})"
        lines.append(
            f"| {r['mode']} | {r['rate']}{'*' * (r['noisy_runs'] > 0)} | {fmt(r['direct_p50'])} ms | {fmt(r['tw_p50'])} ms | "
            f"{fmt(r['p50_overhead'], 2, True)} ms | {fmt(r['direct_p99'])} ms | {fmt(r['tw_p99'])} ms | "
            f"{fmt(r['p99_overhead'], 2, True)} ms | {fmt(r['completed_pct'], 2)} / {fmt(r['direct_completed_pct'], 2)} | {r['tw_errors']} / {r['direct_errors']} | "
            f"{ttfb} | {fmt(r['cpu_ms_per_req'], 3)} |"
        )
    lines += [
        "",
        "Latency: whole response (streams: through `data: [DONE]`), from the scheduled send time (oha "
        "`--latency-correction`). TTFB: first response body bytes, from the actual send, p50 (direct → tierwise). "
        "Completed: successful responses / (rate × duration). Errors: non-2xx + transport errors, summed over "
        "all runs. CPU: tierwise utime+stime during its run / successful requests."
        + ("" if math.isnan(cfg["max_other_load"]) else
           f" `*`: in at least one run this cell saw more than {cfg['max_other_load']} cores of other load on "
           f"the machine even after {cfg['cell_retries']} retries."),
        "",
        f"- idle RSS (right after start, before any load): {proc['idle_rss_mib']:.1f} MiB",
        f"- peak RSS (VmHWM after the {max(cfg['rates'])} req/s runs): {proc['peak_rss_mib']:.1f} MiB "
        f"(max over runs {proc['peak_rss_max_mib']:.1f} MiB)",
        f"- ready to serve (spawn → first 200 on /healthz): {proc['ready_ms']:.1f} ms (max over runs {proc['ready_max_ms']:.1f} ms)",
        "- other load on the machine during the load runs (busy CPU not from oha, the upstream double or tierwise): "
        + ("not measured" if math.isnan(proc["other_load_median_cores"]) else
           f"median {proc['other_load_median_cores']:.2f} cores, worst kept run {proc['other_load_max_cores']:.2f} "
           f"cores; {proc['cell_retries']} cell(s) measured again because of it"),
        "",
        "Targets:",
        "",
        *check_targets(rows, proc, cfg),
    ]
    return "\n".join(lines) + "\n"


def meta_info(cfg: dict) -> dict:
    def cmd(args: list[str]) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    dirty = cmd(["git", "status", "--porcelain", "--untracked-files=no"])
    cpu = "?"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "git": cmd(["git", "rev-parse", "--short", "HEAD"]) + ("+dirty" if dirty else ""),
        "oha": cmd(["oha", "--version"]),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "runs": cfg["runs"],
        "loadavg_start": os.getloadavg(),
    }


def report(path: pathlib.Path) -> int:
    """Renders the table again from a raw result file (`run.py --report bench/results/X.json`)."""
    data = json.loads(path.read_text())
    cfg, meta = data["config"], data["meta"]
    cfg.setdefault("max_other_load", math.nan)
    cfg.setdefault("cell_retries", 0)
    rows, proc = summarize(data["runs"], cfg)
    print(render(rows, proc, cfg, meta))
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        return report(pathlib.Path(sys.argv[2]))
    cfg = {
        "rates": [int(x) for x in os.environ.get("RATES", "50 200 1000 3000").split()],
        "duration": os.environ.get("DURATION", "10s"),
        "runs": int(os.environ.get("RUNS", "3")),
        "modes": os.environ.get("MODES", "json stream").split(),
        "delay_ms": int(os.environ.get("UPSTREAM_DELAY_MS", "20")),
        "chunks": int(os.environ.get("STREAM_CHUNKS", "20")),
        "gap_ms": int(os.environ.get("CHUNK_GAP_MS", "1")),
        "max_other_load": float(os.environ.get("MAX_OTHER_LOAD", "0.25")),
        "cell_retries": int(os.environ.get("CELL_RETRIES", "3")),
        "quiet_wait_s": float(os.environ.get("QUIET_WAIT_S", "120")),
    }
    cfg["duration_s"] = parse_duration(cfg["duration"])
    for exe in (TIERWISE, UPSTREAM):
        if not exe.exists():
            raise SystemExit(f"{exe} is missing: run bench/run.sh (it builds release first)")
    if shutil.which("oha") is None:
        raise SystemExit("oha is not on PATH: run bench/run.sh (it installs it) or `cargo install oha --locked`")
    if any(m not in BODIES for m in cfg["modes"]):
        raise SystemExit(f"MODES={cfg['modes']}: known modes are {sorted(BODIES)}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS / f"work-{stamp}"
    workdir.mkdir()
    meta = meta_info(cfg)
    cells = len(cfg["modes"]) * len(cfg["rates"])
    log(f"{cfg['runs']} runs × {cells} cells × 2 sides × {cfg['duration']}; "
        f"oha {meta['oha']}; results in {RESULTS}")

    procs = Procs(log)
    # SIGTERM/SIGHUP unwind through the finally below like Ctrl-C does.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    runs = []
    try:
        for run in range(cfg["runs"]):
            runs.append(one_run(run, cfg, procs, workdir))
    finally:
        procs.stop_all()

    rows, proc = summarize(runs, cfg)
    meta["loadavg_end"] = os.getloadavg()
    table = render(rows, proc, cfg, meta)
    env_line = (f"Machine: {meta['cpus']} CPUs ({meta['cpu']}), Linux {meta['kernel']}, {meta['oha']}, "
                f"Python {meta['python']}; load average at start {meta['loadavg_start'][0]:.2f}, "
                f"at end {meta['loadavg_end'][0]:.2f}.\n")
    (RESULTS / f"bench-{stamp}.md").write_text(table + "\n" + env_line)
    (RESULTS / f"bench-{stamp}.json").write_text(
        json.dumps({"meta": meta, "config": cfg, "summary": {"rows": rows, "process": proc}, "runs": runs}, indent=2)
    )
    print(table)
    print(env_line)
    print(f"written: {RESULTS / f'bench-{stamp}.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
