#!/usr/bin/env python3
"""Measures each benchmark model's speed with llama-server's own timings.

    python3 bench/eval/speed.py [--threads 2] [--runs 3]

For each of weak, mid, strong (paths from the EVAL_* variables if exported, else from
running bench/eval/setup.sh): starts llama-server
on a free loopback port with --threads N --parallel 1, sends the same short chat request
RUNS times (temperature 0, max_tokens 128; the first run is a warm-up and not counted),
and reports the median of the `timings` llama-server returns: prompt tokens/s and
generated tokens/s. Prints a Markdown table and the 1-minute load average before and
after, since other work on the 2 cores skews the numbers. Stops each server it started.
Standard library only.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PROMPT = ("A shop sells pencils at 3 for $1.20. How much do 17 pencils cost? "
          "Explain briefly, then give the final answer on the last line as `Answer: <number>`.")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=300):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def wait_healthy(url, proc, deadline_s=180):
    end = time.time() + deadline_s
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("llama-server did not become healthy")


def measure(server, gguf, alias, threads, runs):
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"speed-{alias}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [server, "-m", gguf, "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
         "--threads", str(threads), "--threads-batch", str(threads), "--parallel", "1",
         "--ctx-size", "2048", "--no-webui"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        gen, pp, n = [], [], []
        for i in range(runs + 1):
            body = {"model": alias, "messages": [{"role": "user", "content": PROMPT}],
                    "temperature": 0, "max_tokens": 128, "cache_prompt": False}
            t = post(url + "/v1/chat/completions", body)["timings"]
            if i == 0:
                continue  # warm-up
            gen.append(t["predicted_per_second"])
            pp.append(t["prompt_per_second"])
            n.append(t["predicted_n"])
        return statistics.median(pp), statistics.median(gen), statistics.median(n)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(log.name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tiers", default="weak,mid,strong")
    a = ap.parse_args()
    if not os.environ.get("EVAL_LLAMA_SERVER"):
        setup = os.path.join(os.path.dirname(os.path.abspath(__file__)), "setup.sh")
        out = subprocess.run([setup], check=True, stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if key.startswith("EVAL_"):
                os.environ[key] = value
    server = os.environ["EVAL_LLAMA_SERVER"]
    load0 = os.getloadavg()[0]
    rows = []
    for tier in a.tiers.split(","):
        gguf = os.environ[f"EVAL_{tier.upper()}_GGUF"]
        pp, gen, n = measure(server, gguf, tier, a.threads, a.runs)
        rows.append((tier, os.path.basename(gguf), pp, gen, n))
        print(f"{tier}: prompt {pp:.1f} tok/s, generation {gen:.1f} tok/s", file=sys.stderr)
    print(f"threads={a.threads}, runs={a.runs} (median), load average before {load0:.2f}, "
          f"after {os.getloadavg()[0]:.2f}\n")
    print("| tier | GGUF | prompt tok/s | generated tok/s | tokens generated |")
    print("|---|---|---|---|---|")
    for tier, name, pp, gen, n in rows:
        print(f"| {tier} | {name} | {pp:.1f} | {gen:.1f} | {n:.0f} |")


if __name__ == "__main__":
    main()
