from annotations.exports.pairs import aggregate, pairs_from_groups, pairs_from_rankings


def test_pairs_cross_tie_groups_only():
    ranking = [[12], [10, 13], [11]]
    assert set(pairs_from_rankings([ranking])) == {(12, 10), (12, 13), (12, 11), (10, 11), (13, 11)}


def test_a_single_ranking_aggregates_to_itself():
    assert aggregate([[[12], [10, 13], [11]]]) == [[12], [10, 13], [11]]


def test_all_tied_gives_no_pairs():
    assert pairs_from_rankings([[[1, 2, 3]]]) == []


def test_borda_over_annotators_keeps_majority_and_cancels_even_disagreement():
    # A: 1 > 2 > 3; B: 2 > 1 > 3 -> 1 and 2 tie, both beat 3.
    assert set(pairs_from_rankings([[[1], [2], [3]], [[2], [1], [3]]])) == {(1, 3), (2, 3)}
    # Two of three prefer 1 over 2.
    assert (1, 2) in pairs_from_rankings([[[1], [2]], [[1], [2]], [[2], [1]]])


def test_excluded_replies_drop_out_of_every_pair():
    assert pairs_from_rankings([[[1], [2], [3]]], exclude={2}) == [(1, 3)]


def test_pairs_from_groups_order_is_best_first():
    assert pairs_from_groups([[1], [2]]) == [(1, 2)]
