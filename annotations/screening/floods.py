"""Near-duplicate floods: many prompts that are copies of one another with small edits.

Exact duplicates never get in (imports skip them by content hash); a flood varies a word or a
number so each copy is "new" and the data's weight shifts towards what the copies teach.

MinHash over hashed word bigrams (64 hash functions, computed for the whole corpus with array
operations), locality-sensitive hashing in 16 bands of 4 to find candidates, each candidate checked
against a centre on the full signature ("stars", see ``stars``). The finding keeps the oldest item and names
the rest. Cost: O(words × 64) for the signatures, O(items × 16) for the bands.

Templated data is not a flood. Many legitimate sets are one template with a filler ("Translate '{x}'
into French and give an example sentence"): long boilerplate, a short slot, so by Jaccard the
prompts are near-copies, yet each asks something else. Compared word by word with the group's
centre (``shape``):

- a *templated family* changes the same few centre words in every member (the slot) and puts
  something new in each time: the words a member removes lie in the slot, and no two members add
  the same words;
- a *flood* is one prompt edited here and there: the edits come from a small pool (the same
  inserted words again and again) at varying places, or its copies carry the same label (one
  canned chosen reply or demonstration for most of them).

A group is reported when its edits look like a flood or its labels are one canned answer; a
templated family with its own label per prompt is counted in the stats and let through. Limit: a
flood whose every copy adds distinct words in one place (a unique id or filler each) and whose
labels differ reads as templated data.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .corpus import Corpus, Finding
from .text import TokenStream, Vocabulary, ngram_hashes, preview, words

KIND = "near_duplicate_flood"
HASHES = 64
BANDS = 16
MAX_CENTRES = 500  # centres tried, most connected first: bounds the work on templated data
EXAMPLES = 5
DIGITS = re.compile(r"\d+")
# "#12", "(12)", "No. 12", "12." opening a line: numbering that sets copies apart, not content
NUMBERING = re.compile(r"#\s*\d+|\(\s*\d+\s*\)|\bno\.?\s*\d+|^\s*\d+[.):]", re.I | re.M)
# templated when at least this share of members only remove slot words, and add distinct words
TEMPLATED_SLOT_SHARE = 0.8
TEMPLATED_DISTINCT_EDITS = 0.7
SLOT_WORD_SHARE = 0.2  # a centre word removed by this share of the members is part of the slot
CANNED_LABEL_SHARE = 0.6  # one label text on this share of the labelled members: a canned answer


def signatures(texts: list[str], seed: int = 0) -> np.ndarray:
    """(len(texts), HASHES) MinHash signatures of each text's word bigrams (its unigram when it
    has a single word; texts without words get a signature of their own)."""
    # Numbers count as one word: "#1" ... "#500" must not make copies look different.
    stream = TokenStream.build([DIGITS.sub("0", t) for t in texts], Vocabulary())
    keys, owners, _ = ngram_hashes(stream, 2)
    single = np.flatnonzero(stream.lengths == 1)
    if len(single):
        uni_keys, uni_owners, _ = ngram_hashes(stream, 1)
        pick = np.isin(uni_owners, single)
        keys, owners = np.r_[keys, uni_keys[pick]], np.r_[owners, uni_owners[pick]]
    order = np.argsort(owners, kind="stable")
    keys, owners = keys[order], owners[order]
    rng = np.random.default_rng(seed)
    mult = rng.integers(1, 1 << 62, size=HASHES, dtype=np.uint64) | np.uint64(1)
    add = rng.integers(0, 1 << 62, size=HASHES, dtype=np.uint64)
    out = np.full((len(texts), HASHES), np.iinfo(np.uint64).max, dtype=np.uint64)
    if len(keys):
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        rows = owners[starts]
        for j in range(HASHES):
            values = keys * mult[j] + add[j]  # wraps mod 2**64: a multiply-add hash family
            values ^= values >> np.uint64(31)
            out[rows, j] = np.minimum.reduceat(values, starts)
    for i in np.flatnonzero(np.bincount(owners, minlength=len(texts)) == 0):  # no words: unlike any other
        out[i] = np.arange(HASHES, dtype=np.uint64) + np.uint64(i) * np.uint64(HASHES) + np.uint64(1)
    return out


def buckets(sig: np.ndarray) -> np.ndarray:
    """(BANDS, n) bucket id of each item in each LSH band."""
    rows = HASHES // BANDS
    out = np.empty((BANDS, len(sig)), dtype=np.int64)
    for b in range(BANDS):
        band = sig[:, b * rows:(b + 1) * rows]
        key = band[:, 0].copy()
        for c in range(1, rows):
            key = key * np.uint64(0x9E3779B97F4A7C15) ^ band[:, c]
        out[b] = np.unique(key, return_inverse=True)[1]
    return out


def stars(sig: np.ndarray, threshold: float, min_size: int) -> list[tuple[int, np.ndarray]]:
    """Groups of at least ``min_size``, as (centre, members): a centre and every item that shares an LSH bucket with it
    and agrees with *it* on ``threshold`` of the hashes, plus one step beyond that core. Not
    connected components: chains of pairwise-similar prompts (a template with a varying topic)
    would join unrelated prompts, and a flood is many copies of one prompt."""
    n = len(sig)
    if n == 0:
        return []
    bucket = buckets(sig)
    index = BucketIndex(bucket)
    # Verified edges between each bucket's first item and the others: an item's count of them
    # ranks it as a possible centre (prompts that merely share a template fail the check).
    us, vs = [], []
    for b in range(BANDS):
        _, first, inverse = np.unique(bucket[b], return_index=True, return_inverse=True)
        rep = first[inverse]
        member = np.flatnonzero(rep != np.arange(n))
        us.append(rep[member])
        vs.append(member)
    u, v = np.concatenate(us), np.concatenate(vs)
    close = (sig[u] == sig[v]).mean(axis=1) >= threshold if len(u) else np.zeros(0, dtype=bool)
    degree = np.bincount(np.r_[u[close], v[close]], minlength=n)
    taken = np.zeros(n, dtype=bool)
    groups = []
    for tried, centre in enumerate(np.argsort(-degree, kind="stable")):
        if degree[centre] == 0 or tried >= MAX_CENTRES:
            break
        if taken[centre]:
            continue
        near = _close_to(sig, index, centre, taken, threshold)
        if len(near) < max(5, min_size // 2):  # the core; the group must reach min_size with the step out
            continue
        # One step out from the core: two copies of a short prompt that each differ from the
        # centre by one edit may differ from each other by two.
        grown = set(near.tolist())
        taken[near] = True
        for member in near[1:]:
            extra = _close_to(sig, index, member, taken, threshold)
            # ...while still resembling the centre, so the step cannot walk into a neighbouring family
            extra = extra[(sig[extra] == sig[centre]).mean(axis=1) >= threshold - 0.15]
            taken[extra] = True
            grown.update(extra.tolist())
        if len(grown) >= min_size:
            groups.append((int(centre), np.array(sorted(grown))))
        else:
            taken[list(grown)] = False
    return groups


class BucketIndex:
    """Members of each band's buckets, so an item's bucket-mates cost their number, not n."""

    def __init__(self, bucket: np.ndarray):
        self.bucket = bucket
        self.order = np.argsort(bucket, axis=1, kind="stable")
        self.sorted = np.take_along_axis(bucket, self.order, axis=1)

    def mates(self, item: int) -> np.ndarray:
        parts = []
        for b in range(self.bucket.shape[0]):
            key = self.bucket[b, item]
            lo, hi = np.searchsorted(self.sorted[b], [key, key + 1])
            parts.append(self.order[b, lo:hi])
        return np.unique(np.concatenate(parts))


def _close_to(sig, index: BucketIndex, item, taken, threshold) -> np.ndarray:
    """Untaken items sharing an LSH bucket with ``item`` and agreeing with it on the signature."""
    near = index.mates(item)
    near = near[~taken[near]]
    return near[(sig[near] == sig[item]).mean(axis=1) >= threshold]


def _content(text: str) -> set[str]:
    return set(words(NUMBERING.sub(" ", text)))


def _label(corpus: Corpus, i: int) -> str | None:
    """What the item teaches: its (first) chosen reply, else its (first) reply."""
    if corpus.pairs[i]:
        return corpus.pairs[i][0][0].strip()
    if corpus.replies[i]:
        return corpus.replies[i][0].strip()
    return None


def shape(corpus: Corpus, centre: int, members: np.ndarray) -> dict:
    """How the group's members differ from its centre, and whether they share one label."""
    base = _content(corpus.prompts[centre])
    others = [int(m) for m in members if m != centre]
    removed, added = [], []
    for m in others:
        own = _content(corpus.prompts[m])
        removed.append(frozenset(base - own))
        added.append(frozenset(own - base))
    counts = Counter(w for r in removed for w in r)
    slot = {w for w, c in counts.items() if c >= SLOT_WORD_SHARE * len(others)}
    slot_share = sum(r <= slot for r in removed) / max(1, len(others))
    distinct_edits = len(set(added)) / max(1, len(others))
    labels = [label for i in members if (label := _label(corpus, int(i)))]
    same_label = Counter(labels).most_common(1)[0][1] / len(labels) if labels else 0.0
    canned = len(labels) >= len(members) / 2 and same_label >= CANNED_LABEL_SHARE
    templated = slot_share >= TEMPLATED_SLOT_SHARE and distinct_edits >= TEMPLATED_DISTINCT_EDITS
    return {"slot_share": round(slot_share, 3), "distinct_edits": round(distinct_edits, 3),
            "slot": sorted(slot)[:10], "same_label_share": round(same_label, 3), "canned_label": canned,
            "edits_repeat": not templated, "templated": templated and not canned}


def detect(corpus: Corpus, *, min_size: int = 20, min_share: float = 0.001,
           threshold: float = 0.6) -> tuple[list[Finding], dict]:
    n = len(corpus)
    size_needed = max(min_size, int(np.ceil(min_share * n)))
    if n < size_needed:
        return [], {"flood_min_size": size_needed, "floods": 0, "templated_families": 0}
    sig = signatures(corpus.prompts)
    groups = stars(sig, threshold, size_needed)
    findings, templated = [], []
    for centre, members in groups:
        why = shape(corpus, centre, members)
        if why["templated"]:
            templated.append({"size": int(len(members)), "example": preview(corpus.prompts[centre], 120), **why})
            continue
        # Keep the oldest: the flood is what came after it.
        members = members[np.argsort(np.asarray(corpus.task_ids)[members], kind="stable")]
        kept, rest = int(members[0]), [int(m) for m in members[1:]]
        findings.append(Finding(
            kind=KIND,
            title=f"{len(members)} near-copies of one prompt"
                  + (" with one canned label" if why["canned_label"] else ""),
            score=round(float(len(members)) / size_needed, 2),
            items=sorted(rest),
            evidence={"cluster_size": int(len(members)), "kept_task_id": corpus.task_ids[kept],
                      "kept_prompt": preview(corpus.prompts[kept]), "threshold": threshold, "why": why,
                      "examples": [{"task_id": corpus.task_ids[i], "prompt": preview(corpus.prompts[i])}
                                   for i in rest[:EXAMPLES]]},
        ))
    findings.sort(key=lambda f: -f.evidence["cluster_size"])
    templated.sort(key=lambda g: -g["size"])
    return findings, {"flood_min_size": size_needed, "floods": len(findings), "templated_families": len(templated),
                      "templated_examples": templated[:5]}
