"""Bradley-Terry ratings from pairwise battles, with bootstrap confidence intervals.

The model: P(i beats j) = sigma(theta_i - theta_j). The fit maximises the log-likelihood of the
battles minus a tiny ridge penalty ``ridge / 2 * sum(theta ** 2)`` - a logistic regression without
intercept on +1/-1 indicator features, solved by Newton's method. The penalty does two things:

- it keeps the fit finite when the data separate perfectly (a model that won every battle has no
  plain maximum-likelihood estimate - its rating runs off to infinity); with the penalty the
  objective is strictly concave and has exactly one maximum, at a large but finite gap;
- the likelihood only sees differences, so any shift of theta fits equally well; the penalty picks
  the shift with sum(theta) = 0, which anchors the scale.

Ties count as half a win each way: a tie adds 1/2 log sigma(theta_i - theta_j) + 1/2 log
sigma(theta_j - theta_i) (the convention of LMSYS's Chatbot Arena). "Both bad" says nothing about
which model is better and is left out of the fit (it is counted on the board).

Scale: rating = 1000 + 400 / ln(10) * theta, so 400 points mean 10:1 odds as in Elo, and the mean
rating of the models in the fit is 1000.

Confidence intervals: battles are resampled with replacement (seeded), the model refitted on each
resample, and the 2.5th and 97.5th percentiles of each model's rating taken (percentile bootstrap).
A model absent from a resample keeps rating 1000 there (the ridge pulls it to the mean).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCALE = 400.0 / math.log(10.0)
BASE = 1000.0
DEFAULT_RIDGE = 1e-3


@dataclass
class Fit:
    ratings: np.ndarray  # (m,) on the Elo-like scale
    theta: np.ndarray  # (m,) natural-log odds units, sum zero
    iterations: int
    converged: bool = True


def tally(n_models: int, first: np.ndarray, second: np.ndarray, score: np.ndarray,
          weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Score matrix S (S[i, j] = wins of i over j, ties as 1/2) and games matrix N (symmetric)
    from battles ``first[k]`` vs ``second[k]`` where ``score[k]`` is 1 (first won), 0 (second won)
    or 0.5 (tie). ``weight`` repeats battles (bootstrap multiplicities)."""
    w = np.ones(len(first)) if weight is None else np.asarray(weight, dtype=float)
    S = np.zeros((n_models, n_models))
    N = np.zeros((n_models, n_models))
    np.add.at(S, (first, second), w * score)
    np.add.at(S, (second, first), w * (1.0 - score))
    np.add.at(N, (first, second), w)
    np.add.at(N, (second, first), w)
    return S, N


def _objective(theta: np.ndarray, S: np.ndarray, N: np.ndarray, ridge: float):
    """The penalised log-likelihood; ``theta`` (m,) or a batch (B, m)."""
    diff = theta[..., :, None] - theta[..., None, :]
    # S[i, j] * log sigma(d_ij) over ordered pairs covers each game once per outcome side
    log_p = -np.logaddexp(0.0, -diff)
    value = (S * log_p).sum((-2, -1)) - ridge / 2.0 * (theta ** 2).sum(-1)
    return float(value) if np.ndim(value) == 0 else value


def _grad_hess(theta: np.ndarray, S: np.ndarray, N: np.ndarray, ridge: float):
    diff = theta[..., :, None] - theta[..., None, :]
    p = 1.0 / (1.0 + np.exp(-diff))
    grad = (S - N * p).sum(-1) - ridge * theta
    w = N * p * (1.0 - p)
    hess = w.copy()
    idx = np.arange(theta.shape[-1])
    hess[..., idx, idx] = -w.sum(-1) - ridge
    return grad, hess


# Stopping rule. The gradient is a sum over battles, so its rounding error grows with their number
# (about 1e-16 of the battle count): an absolute gradient tolerance that a few hundred battles meet
# is out of reach with a million, and the iteration then ran to max_iter on every fit and every
# bootstrap resample. The Newton step is in theta units whatever the number of battles, so a fit
# stops when the largest step coordinate is below ``XTOL`` (1e-9 logits, 2e-7 rating points), or
# when steps below ``FLOOR_STEP`` stop shrinking. Newton's method near the optimum shrinks the step
# quadratically, so a small step that is not at least halved is rounding noise: the Hessian of a
# lopsided board is ill-conditioned (a ridge of 1e-3 beside a million battles) and its steps keep a
# noise of ~1e-7 logits that never gets below XTOL. That is the optimum to float64 precision.
XTOL = 1e-9
FLOOR_STEP = 1e-5


def _stalled(size, previous):
    return (size < XTOL) | ((size < FLOOR_STEP) & (size >= previous / 2))


def fit(S: np.ndarray, N: np.ndarray, *, ridge: float = DEFAULT_RIDGE, max_iter: int = 200) -> Fit:
    """Maximise the penalised log-likelihood by Newton's method with backtracking (the objective is
    strictly concave for ridge > 0, so this converges to the unique maximum). ``converged`` is
    False only when ``max_iter`` steps were not enough."""
    if ridge <= 0:
        raise ValueError("ridge must be positive (it makes the optimum unique and finite)")
    m = S.shape[0]
    theta = np.zeros(m)
    value = _objective(theta, S, N, ridge)
    converged = False
    iteration = 0
    previous = np.inf
    while iteration < max_iter:
        iteration += 1
        grad, hess = _grad_hess(theta, S, N, ridge)
        step = np.linalg.solve(hess, -grad)
        size = float(np.abs(step).max())
        if _stalled(size, previous):
            converged = True
            break
        previous = size
        t = 1.0
        while t >= 1e-10:
            candidate = theta + t * step
            new_value = _objective(candidate, S, N, ridge)
            if new_value >= value:
                break
            t /= 2.0
        else:
            # Nothing along the Newton direction (an ascent direction) is as good as where we are:
            # the objective is flat to rounding here.
            converged = True
            break
        theta, value = candidate, new_value
    theta = theta - theta.mean()  # already ~0 at the optimum; removes rounding drift
    return Fit(ratings=BASE + SCALE * theta, theta=theta, iterations=iteration, converged=converged)


def fit_batch(S: np.ndarray, N: np.ndarray, *, ridge: float = DEFAULT_RIDGE, max_iter: int = 100) -> np.ndarray:
    """Many fits at once (bootstrap): S, N of shape (B, m, m) -> thetas (B, m). Newton steps are
    clipped to 1 logit per coordinate, which keeps the batched iteration stable without a per-fit
    line search. Each fit stops on its own by the rule of :func:`fit`; any fit still moving after
    ``max_iter`` steps is redone with :func:`fit`."""
    B, m, _ = S.shape
    theta = np.zeros((B, m))
    previous = np.full(B, np.inf)
    active = np.ones(B, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        grad, hess = _grad_hess(theta[idx], S[idx], N[idx], ridge)
        step = np.linalg.solve(hess, -grad[..., None])[..., 0]
        size = np.abs(step).max(-1)
        stalled = _stalled(size, previous[idx])
        moving = idx[~stalled]
        theta[moving] += step[~stalled] / np.maximum(1.0, size[~stalled])[:, None]
        previous[idx] = size
        active[idx[stalled]] = False
    for b in np.flatnonzero(active):
        theta[b] = fit(S[b], N[b], ridge=ridge).theta
    return theta - theta.mean(-1, keepdims=True)


@dataclass
class Ratings:
    ratings: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    bootstrap: int


def rate(n_models: int, first, second, score, *, bootstrap: int = 1000, seed: int = 0,
         ridge: float = DEFAULT_RIDGE, confidence: float = 0.95) -> Ratings:
    """Point ratings and percentile-bootstrap intervals for battles given as parallel arrays."""
    first = np.asarray(first, dtype=int)
    second = np.asarray(second, dtype=int)
    score = np.asarray(score, dtype=float)
    S, N = tally(n_models, first, second, score)
    point = fit(S, N, ridge=ridge).ratings
    if bootstrap <= 0 or len(first) == 0:
        return Ratings(point, point.copy(), point.copy(), 0)
    # Resampling battles with replacement = multinomial counts over the distinct
    # (first, second, score) cells, which is much cheaper than materialising each resample.
    # (One integer key per battle: np.unique over a 1-D array is a plain sort, much faster than
    # over the columns of a 3-row array when there are millions of battles.)
    scores, score_index = np.unique(score, return_inverse=True)
    keys = (first * n_models + second) * len(scores) + score_index.ravel()
    cells, counts = np.unique(keys, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(first), counts / counts.sum(), size=bootstrap)  # (B, cells)
    pair, c_score = cells // len(scores), scores[cells % len(scores)]
    c_first, c_second = pair // n_models, pair % n_models
    S_b = np.zeros((bootstrap, n_models, n_models))
    N_b = np.zeros((bootstrap, n_models, n_models))
    for c in range(len(cells)):
        i, j, s = c_first[c], c_second[c], c_score[c]
        S_b[:, i, j] += draws[:, c] * s
        S_b[:, j, i] += draws[:, c] * (1.0 - s)
        N_b[:, i, j] += draws[:, c]
        N_b[:, j, i] += draws[:, c]
    samples = BASE + SCALE * fit_batch(S_b, N_b, ridge=ridge)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    return Ratings(point, low, high, bootstrap)
