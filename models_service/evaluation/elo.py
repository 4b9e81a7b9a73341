"""Online Elo, shown beside the Bradley-Terry board for comparison.

Every model starts at 1000; battles are replayed in the order they happened and each moves the two
ratings by ``k * (score - expected)`` with expected = 1 / (1 + 10 ** ((r_other - r_self) / 400)).
Ties score 1/2 each way; "both bad" battles are skipped, as in the Bradley-Terry fit.

Unlike Bradley-Terry the result depends on the order of the battles and recent battles weigh more,
which is why the Bradley-Terry fit (order-free, with intervals) is the headline number.
"""
from __future__ import annotations

DEFAULT_K = 16.0
START = 1000.0


def online_elo(n_models: int, battles, *, k: float = DEFAULT_K) -> list[float]:
    """``battles``: iterable of (first, second, score) in time order, score 1 / 0 / 0.5 for first."""
    ratings = [START] * n_models
    for first, second, score in battles:
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[second] - ratings[first]) / 400.0))
        delta = k * (score - expected)
        ratings[first] += delta
        ratings[second] -= delta
    return ratings
