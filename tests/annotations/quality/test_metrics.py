"""Agreement and gold arithmetic on constructed data with known answers, and against the
reference implementations (scipy's Kendall tau, the krippendorff package) on random data."""
import math
import random

import krippendorff
import numpy as np
import pytest
from scipy.stats import kendalltau

from annotations.quality import metrics


def test_mid_ranks_share_the_mean_of_the_places_a_tie_occupies():
    assert metrics.mid_ranks([[7], [3, 5], [9]]) == {7: 1.0, 3: 2.5, 5: 2.5, 9: 4.0}
    assert metrics.mid_ranks([[1, 2, 3]]) == {1: 2.0, 2: 2.0, 3: 2.0}
    assert metrics.rank_positions([[7], [3, 5], [9]]) == {7: 0, 3: 1, 5: 1, 9: 2}


def test_identical_rankings_have_tau_one_and_alpha_one():
    rankings = [[[1], [2, 3], [4]], [[5], [6], [7], [8]], [[9, 10], [11], [12]]]
    assert all(metrics.ranking_tau(r, r) == pytest.approx(1.0) for r in rankings)
    units = []
    for r in rankings:  # three annotators give the same ranking of every task
        ranks = metrics.mid_ranks(r)
        units += [[ranks[rid]] * 3 for rid in ranks]
    alpha, n = metrics.alpha_from_units(units)
    assert alpha == pytest.approx(1.0) and n == 12


def test_reversed_rankings_have_tau_minus_one_and_negative_alpha():
    a, b = [[1], [2], [3], [4]], [[4], [3], [2], [1]]
    assert metrics.ranking_tau(a, b) == pytest.approx(-1.0)
    ra, rb = metrics.mid_ranks(a), metrics.mid_ranks(b)
    alpha, _ = metrics.alpha_from_units([[ra[i], rb[i]] for i in ra])
    assert alpha < 0


def test_ties_are_handled_as_tau_b():
    # One tie on one side: tau-b, not tau-a (scipy's default variant)
    a, b = [[1], [2, 3], [4]], [[1], [2], [3], [4]]
    expected = kendalltau([0, 1, 1, 2], [0, 1, 2, 3]).statistic
    assert metrics.ranking_tau(a, b) == pytest.approx(expected)
    assert expected == pytest.approx(5 / math.sqrt(5 * 6))
    # A ranking that ties everything has no order: tau is undefined, never a made-up number
    assert math.isnan(metrics.ranking_tau([[1, 2, 3]], [[1], [2], [3]]))


def test_vectorised_tau_equals_scipy_on_random_rankings_with_ties():
    rng = np.random.default_rng(7)
    for k in (2, 3, 4, 5, 9):
        x = rng.integers(0, 3, size=(300, k)).astype(float)  # few values: many ties
        y = rng.integers(0, k, size=(300, k)).astype(float)
        ours = metrics.kendall_tau_b_rows(x, y)
        for row in range(300):
            ref = kendalltau(x[row], y[row]).statistic
            if math.isnan(ref):
                assert math.isnan(ours[row])
            else:
                assert ours[row] == pytest.approx(ref, abs=1e-12)


def test_alpha_equals_the_package_on_random_reliability_data():
    rng = random.Random(3)
    for level, values in (("ordinal", [1, 1.5, 2, 2.5, 3, 4]), ("ordinal", list(range(1, 8))),
                          ("nominal", [0, 1, 2])):
        coders, n_units = 6, 80
        data = np.full((coders, n_units), np.nan)
        for u in range(n_units):
            for c in rng.sample(range(coders), rng.randint(1, coders)):
                data[c, u] = rng.choice(values)
        reference = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        units = [[v for v in data[:, u] if not np.isnan(v)] for u in range(n_units)]
        ours, _ = metrics.alpha_from_units(units, level=level)
        assert ours == pytest.approx(reference, abs=1e-12), level


def test_alpha_is_undefined_without_pairable_units_or_variation():
    assert metrics.alpha_from_units([[1], [2]]) == (None, 0)
    assert metrics.alpha_from_units([[3, 3], [3, 3]]) == (None, 2)


def test_gold_scores_for_rankings_ratings_flags_and_text():
    ref = [[1], [2], [3]]
    exact = metrics.gold_score(reference_ranking=ref, ranking=[[1], [2], [3]], reply_ids=[1, 2, 3])
    assert exact["ranking_tau"] == 1 and exact["score"] == 1
    reverse = metrics.gold_score(reference_ranking=ref, ranking=[[3], [2], [1]], reply_ids=[1, 2, 3])
    assert reverse["ranking_tau"] == -1 and reverse["score"] == 0
    # Ratings: one exact, one off by 3 of 6 -> exact 0.5, partial (1 + 0.5) / 2
    parts = metrics.gold_score(reference_ranking=ref, ranking=ref, reference_ratings={"1": {"helpful": 7,
                                                                                            "truthful": 4}},
                               ratings={"1": {"helpful": 7, "truthful": 1}}, reply_ids=[1, 2, 3])
    assert (parts["ratings_exact"], parts["ratings_partial"]) == (0.5, 0.75)
    assert parts["score"] == pytest.approx((1 + 0.75) / 2)
    # Flags over every reply: reply 1 right, reply 2 half right (Jaccard 1/2), reply 3 right (both none)
    parts = metrics.gold_score(reference_flags={"1": ["unsafe"], "2": ["unsafe", "factually_wrong"]},
                               flags={"1": ["unsafe"], "2": ["unsafe"]}, reply_ids=[1, 2, 3])
    assert parts["flags_exact"] == pytest.approx(2 / 3) and parts["flags_partial"] == pytest.approx(2.5 / 3)
    # An empty reference flag set is a claim ("nothing to flag"): flagging there costs
    parts = metrics.gold_score(reference_flags={}, flags={"2": ["unsafe"]}, reply_ids=[1, 2])
    assert parts["flags_exact"] == 0.5
    text = metrics.gold_score(reference_text="Paris is in France.", text="Paris is in France.")
    assert text["text_similarity"] == 1 and text["score"] == 1
    assert metrics.gold_score(reference_text="abcd", text="abxy")["score"] == pytest.approx(0.5)
