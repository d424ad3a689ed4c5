#!/usr/bin/env python3
"""`command` grader for bench/eval/data/humaneval.jsonl: exit 0 if the answer passes.

tierwise eval runs it with the model's answer on stdin and the dataset line (JSON) in the
file named by TIERWISE_EVAL_ITEM. By hand:

    TIERWISE_EVAL_ITEM=item.json python3 bench/eval/grade_humaneval.py < answer.txt

1. The code: the fenced block of the answer that defines the entry point, else the first
   ```python block, else the first fenced block, else the whole answer (an unclosed fence,
   as when max_tokens cut the answer, runs to the end).
2. The program: the problem's prompt (signature and docstring, the last ```python block of
   the item's user message) followed by the completion. If the completion defines the
   entry point itself (the model repeated the signature), it is appended at top level and
   its definition replaces the prompt's; otherwise it is the function's body, re-indented
   if needed. Then the hidden test (`expected`, which ends in `check(<entry_point>)`).
3. The run: a fresh `python3 -I` in a temporary directory that is deleted afterwards, in its
   own session, with an empty environment, stdin from /dev/null, rlimits (CPU, address
   space, file size, open files, processes, no core dumps), destructive os/shutil/subprocess
   functions disabled before the candidate runs, and a wall-clock timeout that kills the
   whole process group. The candidate's `if __name__ == "__main__":` block does not run,
   its output is discarded, and it passes only if the runner, after the tests returned,
   writes a random token it got on stdin (so an early `sys.exit(0)` is a failure).

Exit status: 0 passed; 1 failed (wrong, crashed, timed out, no code); 2 the grader could
not read its input. The reason goes to stderr.
"""
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap

WALL_S = float(os.environ.get("GRADE_HUMANEVAL_TIMEOUT_S", "10"))
CPU_S = 10
MEM_BYTES = 1 << 30
FSIZE_BYTES = 16 << 20

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)

# Runs inside the sandboxed interpreter: limits, then the guard, then the program.
RUNNER = r'''
import builtins, faulthandler, os, resource, shutil, subprocess, sys

def limit(name, value):
    kind = getattr(resource, name, None)
    if kind is None:
        return
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass

def disabled(*args, **kwargs):
    raise PermissionError("disabled by grade_humaneval.py")

def main():
    # The pass token comes on stdin and is written to the original stdout only after the
    # program (and so check()) returned: sys.exit(0) or os._exit(0) in the candidate, which
    # would end the process with status 0 before the tests ran, leave no token.
    token = sys.stdin.readline().strip()
    result = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the candidate's prints go nowhere
    limit("RLIMIT_CPU", {cpu})
    limit("RLIMIT_AS", {mem})
    limit("RLIMIT_DATA", {mem})
    limit("RLIMIT_FSIZE", {fsize})
    limit("RLIMIT_NOFILE", 64)
    limit("RLIMIT_NPROC", 64)
    limit("RLIMIT_CORE", 0)
    faulthandler.disable()
    with open("program.py", encoding="utf-8") as f:
        code = compile(f.read(), "program.py", "exec")
    for mod, names in (
        (os, "kill killpg system popen putenv remove removedirs rmdir unlink rename renames "
             "replace truncate ftruncate fork forkpty setuid setgid chmod chown lchown chroot "
             "fchdir chdir link symlink execv execve execvp execvpe spawnv spawnve spawnvp "
             "spawnvpe startfile"),
        (shutil, "rmtree move chown copyfile copy copy2 copytree"),
        (subprocess, "Popen run call check_call check_output getoutput getstatusoutput"),
    ):
        for name in names.split():
            if hasattr(mod, name):
                setattr(mod, name, disabled)
    builtins.exit = builtins.quit = disabled
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None
    exec(code, {{"__name__": "candidate", "__builtins__": builtins}})
    os.write(result, (token + "\n").encode())

main()
'''


def fail(msg, code=1):
    print(f"grade_humaneval: {msg}", file=sys.stderr)
    sys.exit(code)


def extract_code(answer, entry_point):
    blocks = [(lang.lower(), body) for lang, body in FENCE.findall(answer)]
    if not blocks:
        return answer.strip("\n")
    defines = re.compile(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", re.M)
    for _, body in blocks:
        if defines.search(body):
            return body
    for lang, body in blocks:
        if lang in ("python", "py", "python3"):
            return body
    return blocks[0][1]


def problem_prompt(item):
    users = [m for m in item["messages"] if m.get("role") == "user"]
    if not users:
        raise ValueError("the item has no user message")
    content = users[-1]["content"]
    if not isinstance(content, str):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    blocks = FENCE.findall(content)
    if not blocks:
        raise ValueError("no ```python block in the user message")
    return blocks[-1][1]


def entry_point_of(test):
    calls = re.findall(r"^check\((\w+)\)\s*$", test, re.M)
    if not calls:
        raise ValueError("`expected` does not end in check(<entry_point>)")
    return calls[-1]


def compiles(source):
    try:
        compile(source, "program.py", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def assemble(prompt, completion, entry_point):
    """prompt + completion as one program, trying the plausible ways to join them."""
    completion = completion.rstrip() + "\n"
    defines = re.search(rf"^(\s*)def\s+{re.escape(entry_point)}\s*\(", completion, re.M)
    candidates = []
    if defines:
        # A whole function (maybe with imports and helpers): after the prompt, at top level;
        # the later `def` wins. Dedent in case the model indented the whole block.
        candidates.append(prompt + "\n\n" + textwrap.dedent(completion))
    else:
        candidates.append(prompt + completion)  # the body, indented as in the function
        candidates.append(prompt + textwrap.indent(textwrap.dedent(completion), "    "))
    for source in candidates:
        if compiles(source):
            return source
    return candidates[0]  # let it fail with its own SyntaxError


def run(program, test):
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="grade-humaneval-") as tmp:
        with open(os.path.join(tmp, "program.py"), "w", encoding="utf-8") as f:
            f.write(program + "\n\n" + test)
        with open(os.path.join(tmp, "runner.py"), "w", encoding="utf-8") as f:
            f.write(RUNNER.format(cpu=CPU_S, mem=MEM_BYTES, fsize=FSIZE_BYTES))
        # stderr to a file (capped by RLIMIT_FSIZE), not a pipe that could fill memory
        with open(os.path.join(tmp, "stderr.txt"), "w+b") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "runner.py"], cwd=tmp,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"},
                start_new_session=True)
            try:
                out, _ = proc.communicate(input=(token + "\n").encode(), timeout=WALL_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return False, f"timed out after {WALL_S:g} s"
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
                except ProcessLookupError:
                    pass
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", "replace").strip().splitlines()[-3:]
        if proc.returncode == 0 and token in out.decode("ascii", "replace").split():
            return True, "passed"
        if proc.returncode == 0:
            return False, "exited 0 before the tests finished"
        return False, f"exit {proc.returncode}: " + " | ".join(tail)


def grade(answer, item):
    test = item["expected"]
    entry_point = entry_point_of(test)
    prompt = problem_prompt(item)
    completion = extract_code(answer, entry_point)
    if not completion.strip():
        return False, "no code in the answer"
    return run(assemble(prompt, completion, entry_point), test)


def main():
    path = os.environ.get("TIERWISE_EVAL_ITEM")
    if not path:
        fail("TIERWISE_EVAL_ITEM is not set (the file holding the dataset line)", 2)
    try:
        with open(path, encoding="utf-8") as f:
            item = json.load(f)
        answer = sys.stdin.read()
        ok, why = grade(answer, item)
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"bad input: {e}", 2)
    print(f"grade_humaneval: {item.get('id', '?')}: {why}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
