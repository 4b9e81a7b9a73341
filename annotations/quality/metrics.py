"""Agreement and gold-scoring arithmetic on plain values (no database). Everything here is tested
against a reference implementation on constructed and random data (tests/annotations/quality/).

Rankings are tie-groups of reply ids, best first: ``[[12], [10, 13], [11]]``. Two ways to turn
one into numbers:

* ``rank_positions``: the group index (0 = best). Enough for Kendall's tau, which only looks at
  the sign of differences.
* ``mid_ranks``: the fractional ("average") rank, 1-based, tied replies sharing the mean of the
  places they occupy: ``[[a], [b, c], [d]]`` -> a 1, b 2.5, c 2.5, d 4. Krippendorff's alpha needs
  these: with group indexes a reply ranked last behind a tie would get the same value as a reply
  ranked second in a ranking without ties.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein

RATING_RANGE = (1, 7)


# --- rankings -------------------------------------------------------------------------------------
def rank_positions(tie_groups: Sequence[Sequence]) -> dict[int, int]:
    """{reply_id: group index}, 0 = best; members of one tie-group share a position."""
    return {int(rid): i for i, group in enumerate(tie_groups) for rid in group}


def mid_ranks(tie_groups: Sequence[Sequence]) -> dict[int, float]:
    """{reply_id: fractional rank}, 1-based; a tie-group shares the mean of its places."""
    out: dict[int, float] = {}
    place = 0
    for group in tie_groups:
        n = len(group)
        value = place + (n + 1) / 2
        for rid in group:
            out[int(rid)] = value
        place += n
    return out


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two paired sequences (ties in either handled); nan when one of them is
    constant. Equal to ``scipy.stats.kendalltau(x, y).statistic``."""
    return float(kendall_tau_b_rows(np.asarray([x], dtype=float), np.asarray([y], dtype=float))[0])


def kendall_tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise tau-b of two (P, K) arrays in one vectorised pass: for every pair of columns
    i < j, concordance is sign(x_i - x_j) * sign(y_i - y_j); tau-b = sum / sqrt(n_x * n_y) where
    n_x counts the pairs not tied in x. A pair of rankings costs microseconds, not a scipy call."""
    k = x.shape[1]
    i, j = np.triu_indices(k, 1)
    sx = np.sign(x[:, i] - x[:, j])
    sy = np.sign(y[:, i] - y[:, j])
    num = (sx * sy).sum(axis=1)
    den = np.sqrt(np.count_nonzero(sx, axis=1).astype(float) * np.count_nonzero(sy, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def ranking_tau(a: Sequence[Sequence], b: Sequence[Sequence]) -> float:
    """Tau-b between two rankings of the same replies (over the replies both contain)."""
    pa, pb = rank_positions(a), rank_positions(b)
    ids = sorted(set(pa) & set(pb))
    if len(ids) < 2:
        return math.nan
    return kendall_tau_b([pa[i] for i in ids], [pb[i] for i in ids])


# --- Krippendorff's alpha ---------------------------------------------------------------------------
def alpha_from_units(units: Iterable[Sequence[float]], level: str = "ordinal") -> tuple[float | None, int]:
    """Krippendorff's alpha from the values each unit received, one value per coder:
    ``[[1, 1, 2], [3, 3], ...]``. Units with fewer than two values cannot be paired and are left
    out. Returns (alpha or None when undefined, pairable units).

    The arithmetic is the ``krippendorff`` package's: its distance metric (``ordinal`` weighs a
    disagreement by how many values lie between), its expected coincidences and its formula. Only
    the observed coincidence matrix is summed here, over *distinct* unit rows with their
    multiplicities, instead of the package's (units x values x values) array: a project's units
    repeat a few hundred patterns, so 400,000 units cost what a few hundred do and memory stays
    flat. tests/annotations/quality/test_metrics.py checks the result equals ``krippendorff.alpha``
    on random data."""
    # A unit's count row depends only on the multiset of its values: count the distinct ones.
    return alpha_from_patterns(Counter(tuple(sorted(u)) for u in units if len(u) >= 2), level=level)


def alpha_from_patterns(patterns: Mapping[tuple, int], level: str = "ordinal") -> tuple[float | None, int]:
    """``alpha_from_units`` for units already counted as {sorted tuple of values: units}."""
    from krippendorff import krippendorff as engine  # heavy-ish import: only when agreement is computed

    patterns = {p: n for p, n in patterns.items() if len(p) >= 2 and n}
    n_units = sum(patterns.values())
    if not n_units:
        return None, 0
    domain = np.array(sorted({v for pattern in patterns for v in pattern}), dtype=float)
    if len(domain) < 2:
        # Every coder gave every unit the same single value: no variation to disagree about.
        return None, n_units
    index = {v: i for i, v in enumerate(domain.tolist())}
    rows = np.zeros((len(patterns), len(domain)), dtype=np.int64)
    for r, pattern in enumerate(patterns):
        for v in pattern:
            rows[r, index[v]] += 1
    weights = np.fromiter(patterns.values(), dtype=float, count=len(patterns))
    # Observed coincidences, as krippendorff's _coincidences computes them, weighted by multiplicity.
    per_row = rows[:, :, None] * rows[:, None, :] - rows[:, None, :] * np.eye(len(domain), dtype=np.int64)[None]
    o = np.einsum("r,rck->ck", weights / (rows.sum(axis=1) - 1), per_row)
    n_v = o.sum(axis=0)
    e = engine._random_coincidences(n_v)
    d = engine._distances(domain, engine._distance_metric(level), n_v)
    denominator = (e * d).sum()
    if denominator == 0:
        return None, n_units
    return float(1 - (o * d).sum() / denominator), n_units


# --- gold scoring -----------------------------------------------------------------------------------
def score_ratings(reference: Mapping, ratings: Mapping) -> tuple[float, float] | None:
    """(exact, partial) over every (reply, criterion) the reference rates: exact = share equal;
    partial = mean of 1 - |difference| / 6. A criterion the annotator left empty scores 0."""
    lo, hi = RATING_RANGE
    exact = partial = 0.0
    n = 0
    for reply, scores in (reference or {}).items():
        given = (ratings or {}).get(str(reply)) or {}
        for criterion, want in (scores or {}).items():
            n += 1
            got = given.get(criterion)
            if got is None:
                continue
            exact += got == want
            partial += 1 - abs(got - want) / (hi - lo)
    return (exact / n, partial / n) if n else None


def score_flags(reference: Mapping, flags: Mapping, reply_ids: Iterable[int]) -> tuple[float, float] | None:
    """(exact, partial) over every reply of the task: exact = share of replies whose flag set
    equals the reference's; partial = mean Jaccard similarity of the sets (both empty = 1)."""
    ids = [str(r) for r in reply_ids]
    if not ids:
        return None
    exact = partial = 0.0
    for rid in ids:
        want = set((reference or {}).get(rid) or [])
        got = set((flags or {}).get(rid) or [])
        exact += want == got
        union = want | got
        partial += len(want & got) / len(union) if union else 1.0
    return exact / len(ids), partial / len(ids)


def text_similarity(reference: str, text: str) -> float:
    """1 - normalised Levenshtein distance (1 = identical)."""
    return float(Levenshtein.normalized_similarity(reference or "", text or ""))


def gold_score(*, reference_ranking=None, ranking=None, reference_ratings=None, ratings=None,
               reference_flags=None, flags=None, reply_ids=(), reference_text=None, text=None) -> dict:
    """Every part the reference has, and ``score`` = their mean on a 0..1 scale (ranking tau is
    mapped by (tau + 1) / 2; a ranking that cannot be compared scores 0.5, no better than chance)."""
    parts: dict[str, float | None] = {"ranking_tau": None, "ratings_exact": None, "ratings_partial": None,
                                      "flags_exact": None, "flags_partial": None, "text_similarity": None}
    scaled: list[float] = []
    if reference_ranking:
        tau = ranking_tau(reference_ranking, ranking or [])
        parts["ranking_tau"] = None if math.isnan(tau) else tau
        scaled.append(0.5 if math.isnan(tau) else (tau + 1) / 2)
    if reference_ratings:
        result = score_ratings(reference_ratings, ratings or {})
        if result is not None:
            parts["ratings_exact"], parts["ratings_partial"] = result
            scaled.append(result[1])
    if reference_flags is not None:
        result = score_flags(reference_flags, flags or {}, reply_ids)
        if result is not None:
            parts["flags_exact"], parts["flags_partial"] = result
            scaled.append(result[1])
    if reference_text is not None and reference_text != "":
        parts["text_similarity"] = text_similarity(reference_text, text or "")
        scaled.append(parts["text_similarity"])
    parts["score"] = sum(scaled) / len(scaled) if scaled else 0.0
    return parts
