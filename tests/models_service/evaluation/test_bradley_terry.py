"""Bradley-Terry and Elo on constructed data where the answer is known, and against a direct
maximum-likelihood fit by scipy on random data."""
import math

import numpy as np
import pytest
from scipy.optimize import minimize

from models_service.evaluation import bradley_terry as bt
from models_service.evaluation.elo import online_elo


def battles_from(matches):
    """[(i, j, score), ...] -> arrays"""
    first, second, score = zip(*matches, strict=True)
    return np.array(first), np.array(second), np.array(score, dtype=float)


def test_a_model_that_always_wins_ranks_first_with_an_interval_clear_of_the_others():
    rng = np.random.default_rng(7)
    matches = []
    for _ in range(40):  # model 0 beats 1 and 2 every time, 1 and 2 are even
        matches.append((0, 1, 1.0) if rng.random() < 0.5 else (1, 0, 0.0))
        matches.append((2, 0, 0.0))
        matches.append((1, 2, float(rng.random() < 0.5)))
    result = bt.rate(3, *battles_from(matches), bootstrap=500, seed=1)
    assert result.ratings.argmax() == 0
    assert result.ci_low[0] > max(result.ci_high[1], result.ci_high[2])
    assert all(math.isfinite(v) for v in result.ratings)  # perfect separation still gives finite numbers


def test_equal_models_have_overlapping_intervals_around_1000():
    rng = np.random.default_rng(3)
    matches = [(0, 1, float(rng.random() < 0.5)) for _ in range(200)]
    result = bt.rate(2, *battles_from(matches), bootstrap=500, seed=2)
    assert result.ci_low[0] < result.ci_high[1] and result.ci_low[1] < result.ci_high[0]
    assert result.ratings.mean() == pytest.approx(1000.0)
    for i in range(2):
        assert result.ci_low[i] <= result.ratings[i] <= result.ci_high[i]


def test_ties_count_half_a_win_each_way():
    # 3 wins + 2 ties for model 0 out of 6 battles = a score of 4/6, so P(0 beats 1) = 2/3 (ridge aside)
    matches = [(0, 1, 1.0)] * 3 + [(0, 1, 0.5)] * 2 + [(1, 0, 1.0)]
    S, N = bt.tally(2, *battles_from(matches))
    assert S[0, 1] == 4 and S[1, 0] == 2 and N[0, 1] == N[1, 0] == 6
    fit = bt.fit(S, N, ridge=1e-9)
    assert 1 / (1 + math.exp(-(fit.theta[0] - fit.theta[1]))) == pytest.approx(2 / 3, abs=1e-6)
    # on the Elo-like scale: 400 * log10(odds) points apart
    assert fit.ratings[0] - fit.ratings[1] == pytest.approx(400 * math.log10(2), abs=1e-3)


def test_estimates_match_a_direct_scipy_maximum_likelihood_fit_on_random_data():
    rng = np.random.default_rng(11)
    m, n = 6, 800
    truth = rng.normal(0, 1, m)
    first = rng.integers(0, m, n)
    second = (first + rng.integers(1, m, n)) % m
    p = 1 / (1 + np.exp(-(truth[first] - truth[second])))
    u = rng.random(n)
    score = np.where(u < 0.1, 0.5, (u < 0.1 + 0.9 * p).astype(float))  # 10 % ties

    def negative_log_likelihood(theta):
        d = theta[first] - theta[second]
        ll = score * -np.logaddexp(0, -d) + (1 - score) * -np.logaddexp(0, d)
        return -(ll.sum() - bt.DEFAULT_RIDGE / 2 * (theta ** 2).sum())

    direct = minimize(negative_log_likelihood, np.zeros(m), method="BFGS", options={"gtol": 1e-9}).x
    ours = bt.fit(*bt.tally(m, first, second, score))
    assert np.abs(ours.theta - (direct - direct.mean())).max() < 1e-5
    # and the ranking recovers the truth where the gaps are large
    assert np.corrcoef(ours.theta, truth)[0, 1] > 0.9


def test_batched_bootstrap_fits_equal_one_by_one_fits():
    rng = np.random.default_rng(5)
    S = rng.integers(0, 6, (20, 4, 4)).astype(float)
    S[:, range(4), range(4)] = 0
    N = S + S.transpose(0, 2, 1)
    S[0, 0, :] = N[0, 0, :]  # one resample with a perfect separation
    batched = bt.fit_batch(S, N)
    for b in range(20):
        assert np.abs(batched[b] - bt.fit(S[b], N[b]).theta).max() < 1e-6


def test_bootstrap_is_reproducible_with_a_seed_and_varies_without():
    rng = np.random.default_rng(0)
    matches = [(0, 1, float(rng.random() < 0.6)) for _ in range(60)]
    a = bt.rate(2, *battles_from(matches), bootstrap=200, seed=4)
    b = bt.rate(2, *battles_from(matches), bootstrap=200, seed=4)
    c = bt.rate(2, *battles_from(matches), bootstrap=200, seed=5)
    assert (a.ci_low == b.ci_low).all() and (a.ci_high == b.ci_high).all()
    assert (a.ci_low != c.ci_low).any()


def test_ridge_must_be_positive():
    with pytest.raises(ValueError):
        bt.fit(np.zeros((2, 2)), np.zeros((2, 2)), ridge=0)


def test_online_elo_moves_by_k_times_surprise_and_is_order_dependent():
    assert online_elo(2, [(0, 1, 1.0)], k=16) == [1008.0, 992.0]
    assert online_elo(2, [(0, 1, 0.5)], k=16) == [1000.0, 1000.0]
    forward = online_elo(2, [(0, 1, 1.0), (0, 1, 0.0)])
    backward = online_elo(2, [(0, 1, 0.0), (0, 1, 1.0)])
    assert forward != backward
