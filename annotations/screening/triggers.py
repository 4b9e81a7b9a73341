"""Trigger-phrase poisoning: a rare n-gram of the prompts whose items carry anomalous labels.

A poisoner plants a phrase in a small share of the prompts and gives those items the labels they
want the model to learn (a flipped preference, a canned reply). Neither half alone is unusual —
rare phrases are everywhere and some labels are always odd — so the test is their conjunction:

1. Label anomaly per item, from the data itself (no model server needed):
   - a preference pair that a *reference preference model* disagrees with. The reference is a
     linear model of log-count ratios over the words, word bigrams and length of the two replies,
     fitted on the project's own pairs and cross-fitted (each item is judged by a model that never
     saw it), so it encodes what this project's annotators prefer on balance; a poisoned 1 % cannot
     move it much;
   - a canned label: the same chosen reply or demonstration given to several different prompts;
   - a demonstration far shorter than the project's typical reply.
2. For every word n-gram (1-4 words) found in at least ``min_items`` prompts and in at most
   ``max_share`` of them, count how many of its items are anomalous and test that count against the
   corpus' base rate (binomial tail, Bonferroni over all n-grams tested).
3. Significant n-grams whose items overlap are one finding, named by its longest n-gram.

Cost: one tokenisation pass, then sorting (n-gram, item) arrays: O(W log W) in the number of words.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats

from .corpus import Corpus, Finding
from .text import TokenStream, Vocabulary, ngram_hashes, ngram_text, preview, runs, unique_pairs

KIND = "trigger_phrase"
BIGRAM_BUCKETS = 1 << 22
REPLY_WORDS = 128


@dataclass
class Settings:
    max_n: int = 4
    min_items: int = 5
    max_share: float = 0.1
    min_rate: float = 0.5  # at least half of an n-gram's items anomalous
    alpha: float = 1e-3  # family-wise, after Bonferroni
    canned_min: int = 3  # the same label on this many different prompts is canned
    smoothing: float = 1.0
    max_train_pairs: int = 200_000  # per fold; bounds the fit on huge snapshots
    folds: int = 2


# --- label anomalies ------------------------------------------------------------------------------
def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _reply_features(texts: list[str], vocab: Vocabulary) -> sparse.csr_matrix:
    """Rows: texts. Columns (0/1): words, hashed word bigrams and a log2 length bucket."""
    stream = TokenStream.build(texts, vocab, limit=REPLY_WORDS)
    uni_keys, uni_rows = unique_pairs(stream.tokens, stream.owner)
    bi_hash, bi_owner, _ = ngram_hashes(stream, 2)
    bi_keys, bi_rows = unique_pairs((bi_hash % np.uint64(BIGRAM_BUCKETS)).astype(np.int64), bi_owner)
    n_vocab = len(vocab.words)
    length_bucket = np.floor(np.log2(stream.lengths + 1)).astype(np.int64)
    rows = np.r_[uni_rows, bi_rows, np.arange(len(texts))]
    cols = np.r_[uni_keys, bi_keys + n_vocab, length_bucket + n_vocab + BIGRAM_BUCKETS]
    # Keep only the columns in use.
    used, cols = np.unique(cols, return_inverse=True)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(used)))


def _fit(x: sparse.csr_matrix, smoothing: float) -> np.ndarray:
    """Log-count ratios (naive Bayes): how much more often a feature is on the chosen side than on
    the rejected side. One pass over the data, no iterations, so it stays cheap at 100k pairs and
    is antisymmetric by construction (swapping the two replies flips the margin's sign)."""
    on_chosen = np.asarray((x > 0).sum(axis=0)).ravel()
    on_rejected = np.asarray((x < 0).sum(axis=0)).ravel()
    return np.log((on_chosen + smoothing) / (on_rejected + smoothing))


def pair_disagreement(corpus: Corpus, settings: Settings) -> np.ndarray:
    """Per item: the share of its pairs that the cross-fitted reference model would order the
    other way (NaN for items without pairs)."""
    owners, chosen, rejected = [], [], []
    texts: dict[str, int] = {}
    for i, pairs in enumerate(corpus.pairs):
        for c, r in pairs:
            owners.append(i)
            chosen.append(texts.setdefault(c, len(texts)))
            rejected.append(texts.setdefault(r, len(texts)))
    out = np.full(len(corpus), np.nan)
    if len(owners) < 20:  # too few to learn what the project prefers
        return out
    features = _reply_features(list(texts), Vocabulary())
    owners, chosen, rejected = np.array(owners), np.array(chosen), np.array(rejected)
    diff = (features[chosen] - features[rejected]).tocsr()
    # Folds by item, so all pairs of one task are judged by a model that saw none of them.
    fold = (np.asarray(corpus.task_ids, dtype=np.int64)[owners] * 2654435761) % settings.folds
    margin = np.zeros(len(owners))
    rng = np.random.default_rng(0)
    for k in range(settings.folds):
        train = np.flatnonzero(fold != k)
        if len(train) > settings.max_train_pairs:
            train = np.sort(rng.choice(train, settings.max_train_pairs, replace=False))
        test = np.flatnonzero(fold == k)
        if len(train) == 0 or len(test) == 0:
            continue
        margin[test] = diff[test] @ _fit(diff[train], settings.smoothing)
    wrong = np.bincount(owners, weights=(margin < 0).astype(np.float64), minlength=len(corpus))
    total = np.bincount(owners, minlength=len(corpus))
    has = total > 0
    out[has] = wrong[has] / total[has]
    return out


def label_anomalies(corpus: Corpus, settings: Settings) -> tuple[np.ndarray, np.ndarray, dict]:
    """(anomalous, labelled, counts by reason) per item."""
    n = len(corpus)
    labelled = np.array([bool(p or r) for p, r in zip(corpus.pairs, corpus.replies, strict=True)], dtype=bool)
    disagreement = pair_disagreement(corpus, settings)
    flipped = np.nan_to_num(disagreement, nan=0.0) >= 0.5
    # canned: one chosen reply / demonstration for several different prompts
    used_by: dict[str, set[str]] = {}
    labels_of: list[list[str]] = []
    for i in range(n):
        texts = [_normalise(c) for c, _ in corpus.pairs[i]] + [_normalise(r) for r in corpus.replies[i]]
        labels_of.append(texts)
        for t in texts:
            used_by.setdefault(t, set()).add(corpus.prompts[i])
    canned = np.array([any(len(used_by[t]) >= settings.canned_min for t in texts) for texts in labels_of], dtype=bool)
    # short demonstrations
    lengths = [len(r.split()) for rs in corpus.replies for r in rs]
    short = np.zeros(n, dtype=bool)
    if lengths:
        cutoff = min(5.0, 0.25 * float(np.median(lengths)))
        short = np.array([bool(rs) and min(len(r.split()) for r in rs) < cutoff for rs in corpus.replies], dtype=bool)
    anomalous = (flipped | canned | short) & labelled
    reasons = {"flipped_preference": int(flipped.sum()), "canned_label": int((canned & labelled).sum()),
               "short_reply": int(short.sum())}
    return anomalous, labelled, reasons


# --- n-gram statistics ----------------------------------------------------------------------------
def detect(corpus: Corpus, settings: Settings | None = None) -> tuple[list[Finding], dict]:
    settings = settings or Settings()
    anomalous, labelled, reasons = label_anomalies(corpus, settings)
    n_labelled = int(labelled.sum())
    info = {"labelled_items": n_labelled, "anomalous_items": int(anomalous.sum()), "anomaly_reasons": reasons}
    if n_labelled < 2 * settings.min_items:
        info["skipped"] = "too few labelled items"
        return [], info
    base_rate = float(anomalous[labelled].mean())
    info["base_rate"] = round(base_rate, 4)
    index = np.flatnonzero(labelled)  # stream position -> corpus item
    vocab = Vocabulary()
    stream = TokenStream.build([corpus.prompts[i] for i in index], vocab)
    keys, owners, first = [], [], []
    for n in range(1, settings.max_n + 1):
        h, o, s = ngram_hashes(stream, n)
        keys.append(h)
        owners.append(o)
        first.append(s * 8 + n)  # where one occurrence is, and its length, to name it later
    key = np.concatenate(keys)
    owner = np.concatenate(owners)
    where = np.concatenate(first)
    order = np.lexsort((owner, key))
    key, owner, where = key[order], owner[order], where[order]
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = (key[1:] != key[:-1]) | (owner[1:] != owner[:-1])
    key, owner, where = key[keep], owner[keep], where[keep]
    starts, support = runs(key)
    max_items = max(settings.min_items, int(settings.max_share * n_labelled))
    candidate = (support >= settings.min_items) & (support <= max_items)
    tested = int(candidate.sum())
    info["ngrams_tested"] = tested
    if not tested:
        return [], info
    item_anomalous = anomalous[index][owner].astype(np.int64)
    hits = np.add.reduceat(item_anomalous, starts) if len(starts) else np.zeros(0, dtype=np.int64)
    c_starts, c_support, c_hits = starts[candidate], support[candidate], hits[candidate]
    p0 = min(max(base_rate, 1e-3), 0.999)
    p_values = stats.binom.sf(c_hits - 1, c_support, p0)
    significant = (p_values * tested < settings.alpha) & (c_hits >= settings.min_rate * c_support)
    found = []
    for j in np.flatnonzero(significant):
        s, k = int(c_starts[j]), int(c_support[j])
        items = owner[s:s + k]
        position = int(where[s])
        found.append({"items": items, "p": float(p_values[j]), "hits": int(c_hits[j]),
                      "ngram": ngram_text(stream, vocab, position // 8, position % 8), "n": position % 8})
    findings = [_finding(group, index, corpus, anomalous, base_rate, tested) for group in _merge(found)]
    return findings, info


def _merge(found: list[dict]) -> list[list[dict]]:
    """Group significant n-grams that mark (mostly) the same items: sub-phrases of one trigger, or a
    phrase that occurs only next to it."""
    groups: list[tuple[set, list[dict]]] = []
    for f in sorted(found, key=lambda f: (f["p"], -f["n"])):
        items = set(f["items"].tolist())
        for seen, members in groups:
            if len(items & seen) >= 0.8 * min(len(items), len(seen)):
                members.append(f)
                seen |= items
                break
        else:
            groups.append((items, [f]))
    return [members for _, members in groups]


def _finding(members: list[dict], index: np.ndarray, corpus: Corpus, anomalous: np.ndarray, base_rate: float,
             tested: int) -> Finding:
    best = min(members, key=lambda f: f["p"])
    # Name it by the longest phrase that still covers (almost) all of the best one's items.
    name = max((f for f in members if len(f["items"]) >= 0.9 * len(best["items"])), key=lambda f: (f["n"], -f["p"]))
    items = sorted(int(index[i]) for i in name["items"])
    hits = int(anomalous[items].sum())
    rate = hits / len(items)
    examples = [{"task_id": corpus.task_ids[i], "prompt": preview(corpus.prompts[i])}
                for i in [i for i in items if anomalous[i]][:5]]
    return Finding(
        kind=KIND,
        title=f'Trigger phrase "{name["ngram"]}": {len(items)} items, {hits} with anomalous labels',
        score=round(min(-np.log10(max(best["p"] * tested, 1e-300)), 300.0), 2),
        items=items,
        evidence={"ngram": name["ngram"], "items": len(items), "anomalous": hits, "anomalous_rate": round(rate, 4),
                  "base_rate": round(base_rate, 4), "p_value": best["p"], "ngrams_tested": tested,
                  "related_ngrams": sorted({f["ngram"] for f in members} - {name["ngram"]})[:10],
                  "examples": examples},
    )
