#!/usr/bin/env python3
"""The tables of bench/EVAL.md, from the reports bench/eval/run.sh wrote.

    python3 bench/eval/tables.py [--no-latency] [RESULTS] [SWEEPS]
        # RESULTS: the task reports (default bench/eval/results); SWEEPS: where the
        # sweeps are (default RESULTS); --no-latency drops the p50 / p95 columns (for
        # reports whose latencies mean nothing, like the warm phase's)

For each task set (gsm, code): one row per task — its chain and verifier — with accuracy,
the share of requests that reached the strongest tier, cost, the verifier's confusion
matrix and wrong answers among accepted ones, the quality gap recovered, random routing
at the same escalation rate, and latency; then each swept threshold, with the issue's
goal checked per setting: at least 95 % of the strongest model's accuracy, at most 50 %
of requests to the strongest tier, at most 10 % wrong among accepted answers.
Standard library only.
"""
from __future__ import annotations

import json
import pathlib
import sys

VERIFIER = {
    "checks": "checks only (non_empty, finish_stop, no_refusal)",
    "judge": "checks + weak judges (JSON verdict)",
    "judge-yn": "checks + weak judges (yes/no, P(Yes) ≥ 0.5)",
    "confidence": "checks + confidence (mean token probability ≥ 0.5)",
    "selfcheck": "checks + self_check (P(Yes) ≥ 0.5)",
    "consistency": "checks + consistency (5 samples, ≥ 60 % agree)",
    "mid-confidence": "checks + confidence (mean token probability ≥ 0.5)",
    "3": "checks only, three models",
    "feedback": "checks only, feedback to the strong model",
}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def ms(x: float) -> str:
    return f"{x / 1000:.1f} s" if x >= 1000 else f"{x:.0f} ms"


def by_kind(report: dict, kind: str) -> list[dict]:
    return [s for s in report["strategies"] if s["strategy"]["kind"] == kind]


def goal(chain: dict, strongest: dict) -> str:
    c = chain["chain"]
    accepted = c["confusion"]["accepted_right"] + c["confusion"]["accepted_wrong"]
    wrong = c["accepted_wrong_share"] if accepted else 0.0
    parts = [
        chain["accuracy"] >= 0.95 * strongest["accuracy"],
        chain["reached_strongest_tier"] <= 0.5,
        wrong <= 0.10,
    ]
    return "**met**" if all(parts) else "no (" + ", ".join(
        n for n, ok in zip(["accuracy", "cloud share", "wrong accepted"], parts) if not ok) + ")"


def task_rows(results: pathlib.Path, prefix: str, latency: bool) -> list[str]:
    rows = [
        "| task | chain, verifier | accuracy (95 % CI) | reached strongest | cost / 1k req | accepted right / wrong, rejected right / wrong | wrong among accepted | gap recovered | random, same rate |"
        + (" p50 / p95 |" if latency else "") + " goal |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if latency else ""),
    ]
    alone_rows: dict[str, dict] = {}
    for path in sorted(results.glob(f"{prefix}-*/report.json")):
        report = json.loads(path.read_text())
        task = report["task"]
        chain = next(s for s in by_kind(report, "chain") if not s["strategy"].get("setting"))
        random = next((s for s in by_kind(report, "random") if not s["strategy"].get("setting")), None)
        alone = by_kind(report, "alone")
        for a in alone:
            alone_rows.setdefault(a["name"], a)
        strongest = alone[-1]
        c = chain["chain"]
        m = c["confusion"]
        lo, hi = chain["accuracy_ci95"]
        rows.append(
            f"| `{task}` | {' → '.join(x['model'] for x in report['chain'])}: {VERIFIER.get(task.split('-', 1)[1], '')} "
            f"| {pct(chain['accuracy'])} ({pct(lo)}–{pct(hi)}) | {pct(chain['reached_strongest_tier'])} "
            f"| ${chain['cost_per_1k_requests_usd']:.3f} | {m['accepted_right']} / {m['accepted_wrong']}, "
            f"{m['rejected_right']} / {m['rejected_wrong']} | {pct(c['accepted_wrong_share'] if m['accepted_right'] + m['accepted_wrong'] else None)} "
            f"| {pct(c['quality_gap_recovered'])} | {pct(random['accuracy']) if random else '–'} |"
            + (f" {ms(chain['latency_p50_ms'])} / {ms(chain['latency_p95_ms'])} |" if latency else "")
            + f" {goal(chain, strongest)} |"
        )
    rows.append("")
    rows.append("| model alone | accuracy (95 % CI) | cost / 1k req |" + (" p50 / p95 |" if latency else ""))
    rows.append("|---|---|---|" + ("---|" if latency else ""))
    for name, a in alone_rows.items():
        lo, hi = a["accuracy_ci95"]
        rows.append(f"| {name} | {pct(a['accuracy'])} ({pct(lo)}–{pct(hi)}) | ${a['cost_per_1k_requests_usd']:.3f} |"
                    + (f" {ms(a['latency_p50_ms'])} / {ms(a['latency_p95_ms'])} |" if latency else ""))
    return rows


def sweep_rows(results: pathlib.Path, prefix: str) -> list[str]:
    rows = []
    for path in sorted(results.glob(f"{prefix}-*/sweep/report.json")):
        report = json.loads(path.read_text())
        strongest = by_kind(report, "alone")[-1]
        rows += [f"**`{report['task']}`** (strongest alone: {pct(strongest['accuracy'])}; "
                 f"cheapest setting reaching 95 % of it: {report['target'].get('cheapest') or 'none'})", "",
                 "| setting | accuracy | reached strongest | cost / 1k req | wrong among accepted | goal |",
                 "|---|---|---|---|---|---|"]
        for chain in by_kind(report, "chain"):
            setting = chain["strategy"].get("setting") or "as configured"
            c = chain["chain"]
            m = c["confusion"]
            rows.append(
                f"| {setting} | {pct(chain['accuracy'])} | {pct(chain['reached_strongest_tier'])} "
                f"| ${chain['cost_per_1k_requests_usd']:.3f} "
                f"| {pct(c['accepted_wrong_share'] if m['accepted_right'] + m['accepted_wrong'] else None)} "
                f"| {goal(chain, strongest)} |")
        rows.append("")
    return rows


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--no-latency"]
    latency = "--no-latency" not in sys.argv[1:]
    results = pathlib.Path(args[0] if args else "bench/eval/results")
    sweeps = pathlib.Path(args[1]) if len(args) > 1 else results
    for prefix, title in [("gsm", "Arithmetic word problems (gsm)"), ("code", "HumanEval (code)")]:
        print(f"### {title}\n")
        rows = task_rows(results, prefix, latency)
        print("\n".join(rows))
        print()
        print("\n".join(sweep_rows(sweeps, prefix)))


if __name__ == "__main__":
    main()
