"""Adversarial suffixes: token salad appended to an ordinary prompt.

Optimised jailbreak suffixes (GCG and its kin) are strings of tokenizer pieces chosen for their
effect on the model, not for meaning: ``describing.\\ + similarlyNow write oppositeley.]( Me
giving**ONE please? revert with "\\!--Two``. Their words are glued together across character
classes (``giving**ONE``), change case mid-word (``similarlyNow``), carry brackets, backslashes
and symbol runs, and glue word pieces into non-words (``reputborolash``). A prompt is flagged when
some tail of it is dense in such tokens while the head before it reads as ordinary text: comparing
a prompt with itself keeps code and maths (odd all the way through) out of the findings. "Ordinary"
is an English word list plus every word this corpus uses in several prompts (its own jargon).

Optimised suffixes that read fluently (AutoDAN-style) are not caught by this test.
"""
from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path

from .corpus import Corpus, Finding
from .text import preview

KIND = "gibberish_suffix"
MAX_TAIL = 80
MIN_TAIL_RATE = 0.35  # measured: 0.84 recall on 20-token random-vocabulary suffixes, no false
MAX_HEAD_RATE = 0.1  # positive on the clean demo prompts (tests/annotations/screening)
MIN_TAIL = 5
MIN_HEAD = 3
CORPUS_KNOWN = 3  # a word used in this many prompts is this project's vocabulary, whatever the dictionary says
EXAMPLES = 20

EDGE = "\"'([{<«“‘*_"  # may open a word
TRAIL = ".,;:!?\"')]}>»”’*_"  # may close a word
ALLOWED_INSIDE = re.compile(r"^[\w]+(?:['’\-./@][\w]+)*$")  # don't, e-mail, e.g, 3.14, a/b, user@host
PROSE_SYMBOLS = frozenset("/-–—&|·•")  # "helpful / truthful", "A – B"
ACRONYM = re.compile(r"^[A-Z]{2,6}s?$")  # SFT, DPO, LLMs
SYMBOL_RUN = re.compile(r"[^\w\s]{2,}")
INLINE_CODE = re.compile(r"`[^`\n]{1,200}`")
LETTERS = re.compile(r"[^\W\d_]+")


@functools.cache
def english() -> frozenset[str]:
    """73k English words (SCOWL via Debian's wamerican; see english_words.NOTICE)."""
    with gzip.open(Path(__file__).with_name("english_words.txt.gz"), "rt", encoding="utf-8") as f:
        return frozenset(f.read().split())


def _known(piece: str, known: frozenset[str], corpus: set[str]) -> bool:
    word = piece.lower()
    if not word.isascii() or len(word) <= 2 or word in known or word in corpus:
        return True
    # plurals and common endings the list leaves out
    return any(word.endswith(end) and word[: -len(end)] in known for end in ("s", "es", "ed", "ing", "ly", "er"))


def odd(token: str, corpus_words: set[str] = frozenset()) -> bool:
    """Would a careful writer produce this whitespace-separated token? Glued word pieces
    (``bodieschanged``), case changes mid-word (``similarlyNow``), symbol runs (``.](``),
    backslashes and lone symbols are what optimised suffixes are made of."""
    core = token.lstrip(EDGE).rstrip(TRAIL)
    if core.isalpha() and core.islower() and core in english():
        return False  # the common case, answered before any regex runs
    if token in PROSE_SYMBOLS or ACRONYM.match(core):
        return False
    if not core:
        return True
    if "\\" in token or SYMBOL_RUN.search(token.rstrip(".?!").lstrip("\"'(")):
        return True
    if not ALLOWED_INSIDE.match(core):
        return True
    known = english()
    return not all(_known(piece, known, corpus_words) for piece in LETTERS.findall(core))


def split_suffix(prompt: str, corpus_words: set[str] = frozenset()) -> tuple[float, str] | None:
    """The split of ``prompt`` into head and tail that best separates ordinary words from odd
    ones: (tail oddness - head oddness, the tail), or None when no split qualifies."""
    # Inline code is written on purpose and reads odd: one placeholder word instead, kept inside
    # its punctuation ("(`x`)," -> "(code),", not the lone "(" and ")," that read as symbol noise).
    tokens = INLINE_CODE.sub("code", prompt[-6000:]).split()
    if len(tokens) < MIN_HEAD + MIN_TAIL:
        return None
    flags = [odd(t, corpus_words) for t in tokens]
    before = [0]
    for f in flags:
        before.append(before[-1] + f)
    n, best = len(tokens), None
    for start in range(max(MIN_HEAD, n - MAX_TAIL), n - MIN_TAIL + 1):
        tail_odd = before[n] - before[start]
        tail_rate = tail_odd / (n - start)
        head_rate = before[start] / start
        if tail_rate < MIN_TAIL_RATE or tail_odd < 4 or head_rate > MAX_HEAD_RATE or not flags[start]:
            continue
        gap = tail_rate - head_rate
        if best is None or gap > best[0]:
            best = (gap, start)
    if best is None:
        return None
    return best[0], " ".join(tokens[best[1]:])


def corpus_vocabulary(prompts: list[str]) -> set[str]:
    seen: dict[str, int] = {}
    for prompt in prompts:
        for word in set(w.lower() for w in LETTERS.findall(prompt)):
            seen[word] = seen.get(word, 0) + 1
    return {w for w, n in seen.items() if n >= CORPUS_KNOWN}


def detect(corpus: Corpus) -> tuple[list[Finding], dict]:
    vocabulary = corpus_vocabulary(corpus.prompts)
    hits = []
    for i, prompt in enumerate(corpus.prompts):
        result = split_suffix(prompt, vocabulary)
        if result:
            hits.append((i, *result))
    if not hits:
        return [], {"suffix_items": 0}
    hits.sort(key=lambda h: -h[1])
    items = sorted(i for i, _, _ in hits)
    finding = Finding(
        kind=KIND,
        title=f"Gibberish suffix on {len(items)} prompt{'s' if len(items) != 1 else ''}",
        score=round(max(h[1] for h in hits) * 5, 2),
        items=items,
        evidence={"items": len(items),
                  "examples": [{"task_id": corpus.task_ids[i], "suffix": preview(suffix), "oddness": round(s, 2)}
                               for i, s, suffix in hits[:EXAMPLES]]},
    )
    return [finding], {"suffix_items": len(items)}
