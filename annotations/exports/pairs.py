"""Preference pairs from K-wise rankings with ties.

A ranking is tie-groups of reply ids, best first: ``[[12], [10, 13], [11]]``. Replies in one group
are equally good and never become a pair.

Several annotators of one task are aggregated by a Borda count: in each ranking a reply scores
(replies ranked strictly below it) − (replies ranked strictly above it), so tied replies score the
same; scores are summed over annotators and replies with equal sums form one aggregated group.
Pairs are then every (better, worse) across aggregated groups. With one annotator this gives back
exactly their tie-groups. When annotators disagree on a pair with equal weight, the two replies
tie and produce no pair: only preferences the group holds on balance are exported.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence


def borda_scores(rankings: Iterable[Sequence[Sequence[int]]], exclude: set[int] = frozenset()) -> dict[int, int]:
    scores: dict[int, int] = defaultdict(int)
    for ranking in rankings:
        groups = [[r for r in group if r not in exclude] for group in ranking]
        groups = [g for g in groups if g]
        total = sum(len(g) for g in groups)
        above = 0
        for group in groups:
            below = total - above - len(group)
            for reply in group:
                scores[reply] += below - above
            above += len(group)
    return dict(scores)


def aggregate(rankings: Iterable[Sequence[Sequence[int]]], exclude: set[int] = frozenset()) -> list[list[int]]:
    """Aggregated tie-groups, best first."""
    rankings = list(rankings)
    if len(rankings) == 1:
        # One annotator: the Borda scores fall strictly from group to group, so the aggregate is
        # their own tie-groups (the common case of an export, without the arithmetic).
        if not exclude:
            return [sorted(group) for group in rankings[0] if group]
        groups = [sorted(r for r in group if r not in exclude) for group in rankings[0]]
        return [g for g in groups if g]
    by_score: dict[int, list[int]] = defaultdict(list)
    for reply, score in borda_scores(rankings, exclude).items():
        by_score[score].append(reply)
    return [sorted(by_score[s]) for s in sorted(by_score, reverse=True)]


def pairs_from_groups(groups: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(chosen, rejected) for every two replies in different groups; ties give none."""
    out = []
    for i, better in enumerate(groups):
        for worse in groups[i + 1:]:
            out.extend((b, w) for b in better for w in worse)
    return out


def pairs_from_rankings(rankings: Iterable[Sequence[Sequence[int]]], exclude: set[int] = frozenset()) -> list[tuple[int, int]]:
    return pairs_from_groups(aggregate(rankings, exclude))
