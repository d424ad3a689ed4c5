#!/usr/bin/env python3
"""tierwise soak: a bounded run of steady, mixed, partly faulty traffic against the release
(or, with --profile debug, the debug) binary, watching for leaks. See bench/SOAK.md.

Starts `bench_upstream` (a fast healthy upstream), a stall server (accepts, reads, never
answers) and a dead port, then tierwise with an audit log and tasks that use them; drives an
open-loop request rate for `--duration`; samples tierwise's RSS, open fds, threads and
`tierwise_in_flight_requests` every `--sample-s`; at the end stops tierwise (SIGTERM, so
the audit log is flushed) and checks that the audit log has a line for every request that
got a response, by the `x-request-id` this script sets.

Request kinds (weights with --mix):
  json             task `chat` (one healthy step), JSON                      -> 200
  stream           task `chat`, stream                                       -> 200, ends with [DONE]
  escalate         task `escalate` (dead port, then healthy), JSON           -> 200 from the 2nd step
  escalate_stream  the same, stream                                          -> 200 from the 2nd step
  stall            task `stalled` (stalling port, then healthy), JSON          -> 200 after the first-byte timeout
  stall_only       model `stall` alone                                       -> 504 upstream_timeout (expected)
  disconnect       task `chat`, stream; the client closes after the first event
  disconnect_wait  model `stall` alone; the client closes while tierwise waits for headers

Python 3.11 standard library only. Every process it starts is stopped in a finally block,
by its own pid; everything listens and connects on 127.0.0.1; every loop and socket
operation is bounded.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import pathlib
import random
import re
import selectors
import socket
import subprocess
import sys
import threading
import time

from procs import HOST, Procs, free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = "/v1/chat/completions"
CLIENT_TIMEOUT_S = 30.0  # any one socket operation of a request
READY_TIMEOUT_S = 10.0
DEFAULT_MIX = "json=35,stream=25,escalate=8,escalate_stream=7,stall=7,stall_only=3,disconnect=10,disconnect_wait=5"
KINDS = ("json", "stream", "escalate", "escalate_stream", "stall", "stall_only", "disconnect", "disconnect_wait")


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: expected e.g. 600, 180s, 10m")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown kind {name!r}; kinds: {', '.join(KINDS)}")
        mix[name] = float(weight)
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("the mix has no weight")
    return mix


# ---------------------------------------------------------------------------------------
# Processes and servers
# ---------------------------------------------------------------------------------------


class StallServer:
    """Accepts connections, reads whatever comes, never answers; closes its side when the
    peer does. Counts what it saw, so the report shows whether tierwise hung up."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0), backlog=256)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.accepted = 0
        self.closed_by_peer = 0
        self.max_open = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stall-server", daemon=True)
        self.thread.start()

    def open_now(self) -> int:
        with self.lock:
            return self.accepted - self.closed_by_peer

    def _run(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                if key.fileobj is self.listener:
                    try:
                        conn, _ = self.listener.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    self.sel.register(conn, selectors.EVENT_READ)
                    with self.lock:
                        self.accepted += 1
                        self.max_open = max(self.max_open, self.accepted - self.closed_by_peer)
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(conn)
                    conn.close()
                    with self.lock:
                        self.closed_by_peer += 1

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def start_upstream(procs: Procs, binary: pathlib.Path, args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    cmd = [str(binary), "--listen", f"{HOST}:0", "--delay-ms", str(args.upstream_delay_ms),
           "--chunks", str(args.chunks), "--chunk-gap-ms", str(args.chunk_gap_ms)]
    proc = procs.start(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # bench_upstream prints and flushes this first
    m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        raise RuntimeError(f"bench_upstream did not report its address (got {line!r})")
    proc.stdout.close()
    return proc, int(m.group(1))


def write_config(workdir: pathlib.Path, port: int, up_port: int, dead_port: int, stall_port: int,
                 audit: pathlib.Path, args: argparse.Namespace) -> pathlib.Path:
    config = workdir / "tierwise-soak.toml"
    # circuit_failures = 0: the faulty upstreams' circuits never open, so every request of a
    # faulty kind meets its fault (with the default breaker they would mostly be skipped).
    config.write_text(f"""[server]
listen = "{HOST}:{port}"
shutdown_grace_ms = 5000

[upstreams.fast]
tier = "local"
base_url = "http://{HOST}:{up_port}/v1"

[upstreams.dead]
tier = "local"
base_url = "http://{HOST}:{dead_port}/v1"
connect_timeout_ms = 500
circuit_failures = 0

[upstreams.stalling]
tier = "local"
base_url = "http://{HOST}:{stall_port}/v1"
first_byte_timeout_ms = {args.stall_timeout_ms}
circuit_failures = 0

[models.bench]
upstream = "fast"
[models.dead]
upstream = "dead"
[models.stall]
upstream = "stalling"

[tasks.chat]
chain = ["bench"]
cache = {{ ttl_s = 3600, max_bytes = {CACHE_MAX_BYTES}, deterministic_only = false }}
[tasks.escalate]
chain = ["dead", "bench"]
[tasks.stalled]
chain = ["stall", "bench"]

[audit]
path = "{audit}"
max_bytes = 4294967296
queue = 65536
""")
    return config


def start_tierwise(procs: Procs, binary: pathlib.Path, config: pathlib.Path, port: int,
                   workdir: pathlib.Path) -> subprocess.Popen:
    env = dict(os.environ, TIERWISE_LOG="warn")
    env.pop("TIERWISE_CONFIG", None)
    with open(workdir / "tierwise.stderr.log", "ab") as stderr:
        proc = procs.start([str(binary), "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tierwise exited with {proc.returncode}; see {workdir / 'tierwise.stderr.log'}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=0.5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"tierwise did not answer /healthz within {READY_TIMEOUT_S} s")


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------


# Task chat caches its answers in this many bytes, and every request to it is a new prompt:
# a flood of unique prompts the store must stay within (docs/caching.md).
CACHE_MAX_BYTES = 262144


def body_for(kind: str, request_id: str) -> bytes:
    model = {"json": "chat", "stream": "chat", "disconnect": "chat", "escalate": "escalate",
             "escalate_stream": "escalate", "stall": "stalled", "stall_only": "stall",
             "disconnect_wait": "stall"}[kind]
    content = f"Say hello to {request_id}." if model == "chat" else "Say hello."
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if kind in ("stream", "escalate_stream", "disconnect"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def error_code(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "no-envelope"


def one_request(port: int, kind: str, request_id: str, due: float, args: argparse.Namespace) -> dict:
    """Sends one request of `kind`; returns what happened. Never raises."""
    started = time.monotonic()
    rec = {"id": request_id, "kind": kind, "late_s": max(0.0, started - due), "status": None,
           "got_headers": False, "outcome": None}
    conn = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT_S)
    try:
        body = body_for(kind, request_id)
        conn.request("POST", PATH, body=body, headers={"content-type": "application/json", "x-request-id": request_id})
        if kind == "disconnect_wait":
            # tierwise is now waiting on the stalling upstream: hang up before its answer.
            time.sleep(args.disconnect_wait_ms / 1000)
            conn.sock.shutdown(socket.SHUT_RDWR)
            rec["outcome"] = "ok:client-left-before-headers"
            return rec
        resp = conn.getresponse()
        rec["status"], rec["got_headers"] = resp.status, True
        echoed = resp.getheader("x-request-id")
        if echoed != request_id:
            rec["outcome"] = f"bad:x-request-id-echo({echoed})"
            return rec
        attempts = resp.getheader("x-tierwise-attempts") or ""
        if kind == "disconnect":
            line = b""
            for _ in range(1000):  # bounded: the first event is a few lines in
                line = resp.readline()
                if not line or line.startswith(b"data:"):
                    break
            conn.sock.shutdown(socket.SHUT_RDWR)
            rec["outcome"] = "ok:client-left-mid-stream" if line.startswith(b"data: {") else f"bad:first-line({line[:60]!r})"
            return rec
        text = resp.read().decode("utf-8", "replace")
        rec["outcome"] = judge(kind, resp.status, attempts, text)
    except socket.timeout:
        rec["outcome"] = "bad:client-timeout"
    except (OSError, http.client.HTTPException) as err:
        rec["outcome"] = f"bad:transport({type(err).__name__})"
    finally:
        rec["took_s"] = time.monotonic() - started
        conn.close()
    return rec


def judge(kind: str, status: int, attempts: str, text: str) -> str:
    """`ok:...` when the response is what this kind should get, else `bad:...`."""
    stream = kind in ("stream", "escalate_stream")
    if kind == "stall_only":
        if status == 504 and error_code(text) == "upstream_timeout":
            return "ok:504-upstream_timeout"
        return f"bad:{status}:{error_code(text)}"
    if status != 200:
        return f"bad:{status}:{error_code(text)}"
    if stream:
        if not text.rstrip().endswith("data: [DONE]"):
            return "bad:stream-without-[DONE]"
        if '"error"' in text:
            return "bad:stream-error-event"
    elif '"choices"' not in text:
        return "bad:not-a-completion"
    first_failed = {"escalate": "local/dead:error(", "escalate_stream": "local/dead:error(", "stall": "local/stall:error("}
    if kind in first_failed and not attempts.startswith(first_failed[kind]):
        return f"bad:attempts({attempts[:80]})"
    return "ok:200"


# ---------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict:
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = int(value.split()[0])
        elif key == "Threads":
            out[key] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def metrics(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                values[key] = float(value)
            except ValueError:
                pass
    return values


class Sampler:
    """Samples tierwise every `every_s`; notes when a watched process (the upstream) exits,
    which this script never causes during the load."""

    def __init__(self, pid: int, port: int, every_s: float, stall: StallServer,
                 watched: dict[str, subprocess.Popen]) -> None:
        self.pid, self.port, self.every_s, self.stall = pid, port, every_s, stall
        self.watched = watched
        self.exits: dict[str, dict] = {}
        self.samples: list[dict] = []
        self.t0 = time.monotonic()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def sample(self) -> dict:
        s = {"t_s": round(time.monotonic() - self.t0, 1), **proc_status(self.pid)}
        try:
            values = metrics(self.port)
            s["in_flight"] = values.get("tierwise_in_flight_requests")
            s["cache_bytes"] = values.get('tierwise_cache_bytes{task="chat"}', 0.0)
            s["cache_evictions"] = values.get('tierwise_cache_evictions_total{cause="size",task="chat"}', 0.0)
        except OSError:
            s["in_flight"] = None
        s["stall_open"] = self.stall.open_now()
        for name, proc in self.watched.items():
            if name not in self.exits and proc.poll() is not None:
                self.exits[name] = {"returncode": proc.returncode, "seen_at_s": s["t_s"]}
                log(f"{name} (pid {proc.pid}) exited with {proc.returncode} (a negative code is the signal)")
        self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self.stopping.wait(self.every_s):
            s = self.sample()
            log(f"t={s['t_s']:6.1f}s RSS {s['VmRSS'] / 1024:6.1f} MiB (anon {s['RssAnon'] / 1024:.1f}), "
                f"fds {s['fds']}, threads {s['Threads']}, "
                f"in flight {s['in_flight']}, stalled upstream conns {s['stall_open']}")

    def start(self) -> None:
        self.sample()
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=self.every_s + 10)


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def drive(port: int, args: argparse.Namespace, stamp: str) -> list[dict]:
    """Open loop: request i is due at t0 + i / rate, whatever the earlier ones are doing."""
    total = int(args.duration * args.rate)
    kinds, weights = zip(*args.mix.items())
    rng = random.Random(args.seed)
    plan = rng.choices(kinds, weights=weights, k=total)
    results: list[dict] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = []
        t0 = time.monotonic()
        for i, kind in enumerate(plan):
            due = t0 + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one_request, port, kind, f"soak-{stamp}-{i}", due, args))
            if i and i % (args.rate * 60) == 0:
                log(f"{i} requests sent")
        for future in futures:  # each is bounded by CLIENT_TIMEOUT_S per socket operation
            results.append(future.result())
    return results


def read_audit(path: pathlib.Path) -> tuple[set[str], int, collections.Counter]:
    """The ids in the audit log (and its rotated files), its line count, and its lines
    counted by (status, outcome, error)."""
    ids, lines, kinds = set(), 0, collections.Counter()
    files = [path] + sorted(path.parent.glob(path.name + ".*"))
    for f in files:
        if not f.exists():
            continue
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                lines += 1
                try:
                    entry = json.loads(line)
                    ids.add(entry["id"])
                    kinds[f"{entry.get('status')} {entry.get('outcome')} {entry.get('error')}"] += 1
                except (ValueError, KeyError, TypeError):
                    kinds["unparsable"] += 1
    return ids, lines, kinds


ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LINE = re.compile(r"^\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+([\w:]+):\s+(.*?)(?:\s+\w+=.*)?$")


def log_counts(path: pathlib.Path) -> collections.Counter:
    """tierwise's stderr lines counted by level, target and message (fields dropped); any
    other line (a panic, say) is counted as `other: ...`."""
    counts: collections.Counter = collections.Counter()
    if path.exists():
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = ANSI.sub("", line).rstrip()
                m = LOG_LINE.match(line)
                counts[" ".join(m.groups()) if m else f"other: {line[:100]}"] += 1
    return counts


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def warmup_s(duration_s: float) -> float:
    """The start of the run left out of the RSS trend: the first minute, or the first
    quarter of a shorter run."""
    return min(60.0, duration_s / 4)


def slope_kib_per_min(samples: list[dict], after_s: float) -> float:
    """Least-squares trend of RSS over the samples from `after_s` on."""
    pts = [(s["t_s"] / 60, s["VmRSS"]) for s in samples if s["t_s"] >= after_s]
    if len(pts) < 3:
        return float("nan")
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    var = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / var if var else float("nan")


def report(args: argparse.Namespace, results: list[dict], samples: list[dict], audit: dict, stall: dict,
           end: dict, tierwise_log: dict[str, int]) -> tuple[dict, str]:
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        by_kind[r["kind"]][r["outcome"]] += 1
    bad = collections.Counter(r["outcome"] for r in results if not r["outcome"].startswith("ok"))
    rss = [s["VmRSS"] for s in samples]
    took = {k: [r["took_s"] for r in results if r["kind"] == k] for k in by_kind}
    late = [r["late_s"] for r in results]
    warm = next((s for s in samples if s["t_s"] >= warmup_s(args.duration)), samples[-1])
    mix = ", ".join(f"{k}={v:g}" for k, v in args.mix.items())
    summary = {
        "profile": args.profile, "duration_s": args.duration, "rate": args.rate, "requests": len(results),
        "mix": args.mix,
        "rss_kib": {"first": rss[0], "min": min(rss), "max": max(rss), "last": rss[-1],
                    "warmup_s": warm["t_s"], "after_warmup": warm["VmRSS"],
                    "slope_after_warmup_kib_per_min": slope_kib_per_min(samples, warm["t_s"])},
        "vm_hwm_kib": samples[-1].get("VmHWM"),
        "fds": {"first": samples[0]["fds"], "max": max(s["fds"] for s in samples), "last": samples[-1]["fds"]},
        "threads": {"first": samples[0]["Threads"], "max": max(s["Threads"] for s in samples),
                    "last": samples[-1]["Threads"]},
        "outcomes_by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "unexpected": dict(bad),
        "latency_s": {k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": max(v)} for k, v in sorted(took.items())},
        "client_lateness_s": {"p50": pct(late, 0.5), "p99": pct(late, 0.99), "max": max(late) if late else 0},
        "audit": audit, "tierwise_log": tierwise_log, "stall_server": stall, "end": end, "samples": samples,
    }
    lines = [
        f"# tierwise soak, {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"{args.profile} build; {len(results)} requests over {args.duration:.0f} s at {args.rate} req/s (open loop), "
        f"mix {mix}.",
        "",
        "## tierwise RSS over time",
        "",
        f"first {rss[0] / 1024:.1f} MiB, after warm-up (t={warm['t_s']} s) {warm['VmRSS'] / 1024:.1f} MiB, "
        f"min {min(rss) / 1024:.1f}, max {max(rss) / 1024:.1f}, last {rss[-1] / 1024:.1f} MiB; "
        f"VmHWM {summary['vm_hwm_kib'] / 1024:.1f} MiB; trend from t={warm['t_s']} s "
        f"{summary['rss_kib']['slope_after_warmup_kib_per_min']:+.1f} KiB/min. "
        f"fds first/max/last {summary['fds']['first']}/{summary['fds']['max']}/{summary['fds']['last']}, "
        f"threads {summary['threads']['first']}/{summary['threads']['max']}/{summary['threads']['last']}.",
        "",
        "| t (s) | RSS (MiB) | of which anonymous | fds | in flight | stalled upstream conns open |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    step = max(1, len(samples) // 24)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for s in shown:
        lines.append(f"| {s['t_s']} | {s['VmRSS'] / 1024:.1f} | {s['RssAnon'] / 1024:.1f} | {s['fds']} | "
                     f"{s['in_flight']} | {s['stall_open']} |")
    lines += ["", "## Outcomes by kind", "", "| kind | outcome | count | p50 (ms) | p99 (ms) |",
              "| --- | --- | ---: | ---: | ---: |"]
    for kind, outcomes in sorted(by_kind.items()):
        lat = summary["latency_s"][kind]
        for i, (outcome, n) in enumerate(sorted(outcomes.items())):
            timing = f"{lat['p50'] * 1000:.1f} | {lat['p99'] * 1000:.1f}" if i == 0 else " | "
            lines.append(f"| {kind} | {outcome} | {n} | {timing} |")
    lines += ["", f"Unexpected outcomes: {dict(bad) or 'none'}.",
              f"Client lateness (start - due): p99 {summary['client_lateness_s']['p99'] * 1000:.1f} ms, "
              f"max {summary['client_lateness_s']['max'] * 1000:.1f} ms.",
              "", "## Audit log", "",
              f"{audit['lines']} lines. Requests that got a response: {audit['responded']}, of which without an audit "
              f"line: {audit['responded_missing']}. Clients that left before the response: {audit['left_early']}, "
              f"of which with an audit line: {audit['left_early_logged']}.",
              "", "| status outcome error | lines |", "| --- | ---: |"]
    lines += [f"| {k} | {n} |" for k, n in audit["by_status_outcome_error"].items()]
    lines += ["", "## tierwise's log (TIERWISE_LOG=warn)", "", "| level target message | lines |", "| --- | ---: |"]
    lines += [f"| {k} | {n} |" for k, n in tierwise_log.items()] or ["| (nothing) | 0 |"]
    lines += ["", "## End state", "",
              f"in flight after the load: {end['in_flight']}; tierwise exit code after SIGTERM: {end['exit_code']}; "
              f"stall server: {stall['accepted']} connections accepted, {stall['closed_by_peer']} closed by tierwise, "
              f"{stall['open_at_end']} open at the end, at most {stall['max_open']} open at once.",
              "", f"Response cache of task chat (every prompt new): at most {end['cache']['most_held']:.0f} bytes held "
              f"of max_bytes {end['cache']['max_bytes']}; {end['cache']['evicted_for_size']:.0f} entries evicted "
              "to stay within it."]
    for name, exit_ in end["unexpected_exits"].items():
        lines.append(f"\n**{name} exited during the run** (code {exit_['returncode']}, noticed at t={exit_['seen_at_s']} s; "
                     "this script did not stop it): the outcomes and RSS after that are not those of the planned mix.")
    lines += ["", "## Verdict", ""]
    lines += [f"FAIL: not: {f}" for f in end["failed_checks"]] or ["PASS: every check passed."]
    lines += [f"NOTE: {n}" for n in end["notes"]]
    return summary, "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=parse_duration, default=600.0, help="load duration (default 10m)")
    ap.add_argument("--rate", type=int, default=100, help="requests per second, open loop (default 100)")
    ap.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX), help=f"kind weights ({DEFAULT_MIX})")
    ap.add_argument("--workers", type=int, default=64, help="client threads (default 64)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="sampling period (default 5 s)")
    ap.add_argument("--upstream-delay-ms", type=int, default=20)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--chunk-gap-ms", type=int, default=5)
    ap.add_argument("--stall-timeout-ms", type=int, default=250, help="first_byte_timeout_ms of the stalling upstream")
    ap.add_argument("--disconnect-wait-ms", type=int, default=100, help="disconnect_wait: hang up after this long")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", choices=("release", "debug"), default="release",
                    help="which build to run: TARGET_DIR/PROFILE/tierwise and .../examples/bench_upstream "
                         "(default release; scripts/soak, CI's bounded run, uses debug)")
    ap.add_argument("--target-dir", type=pathlib.Path,
                    default=pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")),
                    help="cargo target dir (default $CARGO_TARGET_DIR, else ./target)")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()

    tierwise_bin = args.target_dir / args.profile / "tierwise"
    upstream_bin = args.target_dir / args.profile / "examples" / "bench_upstream"
    missing = [b for b in (tierwise_bin, upstream_bin) if not os.access(b, os.X_OK)]
    if missing:
        build = "cargo build" + (" --release" if args.profile == "release" else "")
        log(f"missing or not executable: {', '.join(map(str, missing))}; "
            f"build them with `{build} --bin tierwise --example bench_upstream` (target dir {args.target_dir})")
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = args.out / f"soak-work-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    audit_path = workdir / "audit.jsonl"

    procs, stall = Procs(log), StallServer()
    try:
        upstream, up_port = start_upstream(procs, upstream_bin, args)
        dead_port, port = free_port(), free_port()
        config = write_config(workdir, port, up_port, dead_port, stall.port, audit_path, args)
        tw = start_tierwise(procs, tierwise_bin, config, port, workdir)
        log(f"tierwise pid {tw.pid} on :{port}; upstream :{up_port}, dead :{dead_port}, stall :{stall.port}; "
            f"{args.rate} req/s for {args.duration:.0f} s; work dir {workdir}")
        sampler = Sampler(tw.pid, port, args.sample_s, stall, {"bench_upstream": upstream})
        sampler.start()
        try:
            results = drive(port, args, stamp)
        finally:
            sampler.stop()
        if tw.poll() is not None:
            raise RuntimeError(f"tierwise died during the run (exit {tw.returncode})")
        in_flight = None
        for _ in range(50):  # bounded: 5 s for the last requests to finish
            in_flight = metrics(port).get("tierwise_in_flight_requests")
            if in_flight == 0:
                break
            time.sleep(0.1)
        for _ in range(50):  # bounded: 5 s for tierwise to drop the last stalled connections
            if stall.open_now() == 0:
                break
            time.sleep(0.1)
        sampler.sample()
        exit_code = procs.stop(tw, timeout=15)
        ids, lines, audit_kinds = read_audit(audit_path)
        responded = [r for r in results if r["got_headers"]]
        left_early = [r for r in results if r["kind"] == "disconnect_wait"]
        missing = [r["id"] for r in responded if r["id"] not in ids]
        audit = {"lines": lines, "responded": len(responded), "responded_missing": len(missing),
                 "missing_examples": missing[:10], "left_early": len(left_early),
                 "left_early_logged": sum(1 for r in left_early if r["id"] in ids),
                 "by_status_outcome_error": dict(audit_kinds.most_common())}
        tierwise_log = dict(log_counts(workdir / "tierwise.stderr.log").most_common())
        stall_state = {"accepted": stall.accepted, "closed_by_peer": stall.closed_by_peer,
                       "open_at_end": stall.open_now(), "max_open": stall.max_open}
        cache_max = max((x.get("cache_bytes") or 0.0 for x in sampler.samples), default=0.0)
        evicted = max((x.get("cache_evictions") or 0.0 for x in sampler.samples), default=0.0)
        end = {"in_flight": in_flight, "exit_code": exit_code, "unexpected_exits": sampler.exits,
               "cache": {"max_bytes": CACHE_MAX_BYTES, "most_held": cache_max, "evicted_for_size": evicted}}
        failed = [name for name, passed in (
            ("every request got what its kind should get", not any(
                not r["outcome"].startswith("ok") for r in results)),
            ("every request that got a response has its audit line", not missing),
            ("nothing in flight after the load", in_flight == 0),
            ("tierwise closed every stalled upstream connection", stall_state["open_at_end"] == 0),
            ("tierwise exited 0 on SIGTERM", exit_code == 0),
            ("tierwise logged nothing unexpected (no panic)", not any(k.startswith("other") for k in tierwise_log)),
            ("no process died on its own", not sampler.exits),
            ("the response cache stayed within its max_bytes", cache_max <= CACHE_MAX_BYTES),
        ) if not passed]
        end["failed_checks"] = failed
        # Not a check: a client that hangs up before tierwise has read its request (tierwise
        # paused, say) never reaches a handler, so it cannot have a line. The fault tests
        # check the line of a client that leaves mid-request exactly.
        end["notes"] = [f"{len(left_early) - audit['left_early_logged']} of {len(left_early)} clients that left "
                        "before the response have no audit line"] if audit["left_early_logged"] < len(left_early) else []
        summary, text = report(args, results, sampler.samples, audit, stall_state, end, tierwise_log)
        (args.out / f"soak-{stamp}.json").write_text(json.dumps(summary, indent=1, default=str))
        (args.out / f"soak-{stamp}.md").write_text(text)
        print(text)
        log(f"report: {args.out / f'soak-{stamp}.md'} (and .json)")
        log("PASS: every check passed" if not failed else "FAIL: " + "; ".join(f"not: {f}" for f in failed))
        for note in end["notes"]:
            log(f"NOTE: {note}")
        return 1 if failed else 0
    finally:
        procs.stop_all()
        stall.stop()


if __name__ == "__main__":
    sys.exit(main())
