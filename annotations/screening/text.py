"""Word ids and hashed word n-grams for a whole corpus at once, as flat numpy arrays.

Python touches each text once (a regex ``findall`` and a dict lookup per word); everything after
that is array arithmetic, which is what keeps a 100k-item scan in seconds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"\w+")
MAX_WORDS = 256  # per text: enough for any trigger or shingle statistic, bounded cost
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): a cheap mixing multiplier


def words(text: str, limit: int = MAX_WORDS) -> list[str]:
    return WORD.findall(text.lower())[:limit]


class Vocabulary:
    """Word -> small int, in order of first appearance (deterministic for a given corpus)."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.words: list[str] = []

    def encode(self, tokens: list[str]) -> list[int]:
        ids = self.ids
        out = []
        for token in tokens:
            i = ids.get(token)
            if i is None:
                i = ids[token] = len(self.words)
                self.words.append(token)
            out.append(i)
        return out


@dataclass
class TokenStream:
    """Every text's word ids back to back: ``tokens[i]`` belongs to text ``owner[i]``."""

    tokens: np.ndarray  # int64 word ids
    owner: np.ndarray  # int64 text index
    lengths: np.ndarray  # words per text

    @classmethod
    def build(cls, texts: list[str], vocab: Vocabulary, limit: int = MAX_WORDS) -> TokenStream:
        encoded = [vocab.encode(words(t, limit)) for t in texts]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        tokens = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(lengths.sum()))
        owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        return cls(tokens=tokens, owner=owner, lengths=lengths)


def ngram_hashes(stream: TokenStream, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, owner, start position) of every word n-gram that lies inside one text."""
    count = len(stream.tokens) - n + 1
    if count <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.uint64), empty, empty
    h = np.full(count, (n * int(_MULT)) % (1 << 64), dtype=np.uint64)
    for k in range(n):
        h = (h ^ (stream.tokens[k:k + count].astype(np.uint64) + np.uint64(1))) * _MULT
        h ^= h >> np.uint64(29)
    starts = np.arange(count, dtype=np.int64)
    inside = stream.owner[:count] == stream.owner[n - 1:n - 1 + count]
    return h[inside], stream.owner[:count][inside], starts[inside]


def ngram_text(stream: TokenStream, vocab: Vocabulary, start: int, n: int) -> str:
    return " ".join(vocab.words[int(t)] for t in stream.tokens[start:start + n])


def unique_pairs(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(key, owner) pairs with duplicates removed, sorted by key then owner."""
    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    if len(keys) == 0:
        return keys, owners
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = (keys[1:] != keys[:-1]) | (owners[1:] != owners[:-1])
    return keys[keep], owners[keep]


def runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    lengths = np.diff(np.r_[starts, len(sorted_keys)])
    return starts, lengths


def preview(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
