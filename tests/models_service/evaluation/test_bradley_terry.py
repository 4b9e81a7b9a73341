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


# --- degenerate boards: the stopping rule ---------------------------------------------------------

def sweep_board(n):
    """Model 0 beats 1 and 2 in every one of ``n`` battles each; 1 and 2 split theirs evenly."""
    S = np.zeros((3, 3))
    S[0, 1] = S[0, 2] = n
    S[1, 2] = S[2, 1] = n / 2
    return S, S + S.T


@pytest.mark.parametrize("n", [10, 1_000, 1_000_000])
def test_a_model_that_wins_every_battle_converges_in_a_few_newton_steps_at_any_scale(n):
    # The gradient is a sum over battles: its rounding error grows with their number, so the old
    # absolute gradient tolerance (1e-10) was never met on a million battles and every fit ran to
    # max_iter. The stopping rule must not depend on how many battles there are.
    S, N = sweep_board(n)
    result = bt.fit(S, N)
    assert result.converged and result.iterations < 40, result.iterations
    grad, _ = bt._grad_hess(result.theta, S, N, bt.DEFAULT_RIDGE)
    assert np.abs(grad).max() <= 1e-12 * N.sum()  # the optimum, to the precision of the sums
    assert result.theta[0] > 0 > result.theta[1] and result.theta[1] == pytest.approx(result.theta[2], abs=1e-6)
    assert all(math.isfinite(v) for v in result.ratings)
    # no step from the answer raises the objective: it is the maximum
    best = bt._objective(result.theta - result.theta.mean(), S, N, bt.DEFAULT_RIDGE)
    for direction in np.eye(3):
        for eps in (1e-4, -1e-4):
            assert bt._objective(result.theta + eps * direction, S, N, bt.DEFAULT_RIDGE) <= best


def test_the_batched_bootstrap_stops_on_lopsided_resamples_and_matches_single_fits():
    S, N = sweep_board(1_000_000)
    rng = np.random.default_rng(2)
    S_b = S * rng.uniform(0.5, 1.5, (30, 1, 1))
    S_b[:, 1, 2] = S_b[:, 2, 1] = rng.uniform(1e5, 1e6, 30)
    N_b = S_b + S_b.transpose(0, 2, 1)
    batched = bt.fit_batch(S_b, N_b)
    for b in range(30):
        single = bt.fit(S_b[b], N_b[b])
        assert single.converged and single.iterations < 40
        assert np.abs(batched[b] - single.theta).max() < 1e-6


def test_a_disconnected_comparison_graph_fits_each_part_around_1000():
    # {0, 1} and {2, 3} never met: the data say nothing about how the two pairs compare, the ridge
    # centres each part on 1000, and within a part the fit is the plain maximum likelihood.
    S = np.zeros((4, 4))
    S[0, 1], S[1, 0] = 30, 10
    S[2, 3], S[3, 2] = 5, 25
    N = S + S.T
    result = bt.fit(S, N, ridge=1e-9)
    assert result.converged and result.iterations < 40
    assert result.theta[0] - result.theta[1] == pytest.approx(math.log(3), abs=1e-6)
    assert result.theta[3] - result.theta[2] == pytest.approx(math.log(5), abs=1e-6)
    assert result.theta[:2].sum() == pytest.approx(0, abs=1e-6) and result.theta[2:].sum() == pytest.approx(0, abs=1e-6)
    # the same with a sweep inside each part (perfect separation twice over) and the bootstrap on top
    first = [0] * 500 + [3] * 400
    second = [1] * 500 + [2] * 400
    rated = bt.rate(4, first, second, [1.0] * 900, bootstrap=200, seed=3)
    assert all(math.isfinite(v) for v in np.concatenate([rated.ratings, rated.ci_low, rated.ci_high]))
    assert rated.ratings[0] > 1000 > rated.ratings[1] and rated.ratings[3] > 1000 > rated.ratings[2]
    assert rated.ratings[:2].mean() == pytest.approx(1000) and rated.ratings[2:].mean() == pytest.approx(1000)


def test_a_model_without_battles_stays_at_1000():
    S = np.zeros((3, 3))
    S[0, 1], S[1, 0] = 5, 3
    result = bt.fit(S, S + S.T)
    assert result.converged and result.ratings[2] == pytest.approx(1000.0)


def test_the_board_says_when_its_comparison_graph_falls_apart():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from models_service.evaluation.selectors import Outcome, board

    models = [SimpleNamespace(pk=pk, name=name) for pk, name in ((1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"))]
    now = datetime.now(timezone.utc)
    outcomes = [Outcome(k, 1, 2, "a", now) for k in range(6)] + [Outcome(10 + k, 4, 3, "b", now) for k in range(4)]
    apart = board(outcomes, models, bootstrap=50, seed=0)
    assert apart["connected"] is False and apart["components"] == [["a", "b"], ["c", "d"]]
    rows = {r["model"]: r for r in apart["models"]}
    assert rows["a"]["rating"] > 1000 > rows["b"]["rating"] and rows["c"]["rating"] > 1000 > rows["d"]["rating"]
    assert rows["e"]["rating"] is None  # no battles: not rated, not in any part
    joined = board(outcomes + [Outcome(99, 2, 3, "tie", now)], models, bootstrap=50, seed=0)
    assert joined["connected"] is True and joined["components"] == [["a", "b", "c", "d"]]
