import json

import pytest
from scipy.stats import kendalltau

from annotations.services.leases import lease_next_task
from annotations.services.submissions import submit_ranking
from models_service.judge import combine, judge_task, rank_from_pairs
from models_service.models import AIRanking
from models_service.selectors import ai_human_agreement, compare_rankings
from tests.factories import MembershipFactory, UserFactory, comparison_task

from .fake_server import FakeModelServer

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("first, second, outcome", [
    ("A", "B", "a"), ("B", "A", "b"), ("A", "A", "tie"), ("B", "B", "tie"), ("tie", "B", "tie"), ("A", "tie", "tie"),
])
def test_a_preference_counts_only_when_both_orders_agree(first, second, outcome):
    assert combine(first, second) == outcome


def test_copeland_ranking_with_ties():
    pairs = [{"a": 1, "b": 2, "outcome": "a"}, {"a": 1, "b": 3, "outcome": "a"}, {"a": 2, "b": 3, "outcome": "tie"}]
    assert rank_from_pairs([1, 2, 3], pairs) == [[1], [2, 3]]


def test_identical_rankings_agree_fully_and_reversed_give_tau_minus_one():
    same = compare_rankings([[1], [2], [3]], [[1], [2], [3]])
    assert (same["agree"], same["strict_pairs"], same["tau"]) == (3, 3, pytest.approx(1.0))
    rev = compare_rankings([[3], [2], [1]], [[1], [2], [3]])
    assert (rev["agree"], rev["tau"]) == (0, pytest.approx(-1.0))


def test_tau_matches_scipy_with_ties():
    ai, human = [[1, 2], [3], [4]], [[1], [2, 3], [4]]
    result = compare_rankings(ai, human)
    assert result["tau"] == pytest.approx(kendalltau([0, 0, 1, 2], [0, 1, 1, 2]).statistic)
    # human strict pairs: (1,2) (1,3) (1,4) (2,4) (3,4) = 5; AI ties (1,2); agrees on the other 4
    assert (result["strict_pairs"], result["agree"], result["ai_ties"]) == (5, 4, 1)


def positional_judge(prefer_text):
    """Answers 'A' when A is the preferred text, 'B' when B is: a consistent judge."""

    def handler(body):
        data = json.loads(body["messages"][1]["content"].split("DATA = ", 1)[1])
        better = "A" if data["A"] == prefer_text else "B" if data["B"] == prefer_text else "tie"
        content = json.dumps({"reason": "r", "better": better})
        return 200, {"choices": [{"index": 0, "message": {"content": content}, "finish_reason": "stop"}]}

    return handler


def test_judge_swaps_positions_and_stores_an_ai_ranking(project, model_at):
    task = comparison_task(project, k=3)
    best = task.replies.order_by("id")[1]
    with FakeModelServer([positional_judge(best.content)]) as server:
        ranking = judge_task(task=task, model_version=model_at(server))
    assert len(server.requests) == 6  # 3 pairs x 2 orders
    ids = sorted(task.replies.values_list("pk", flat=True))
    assert ranking.ranking == [[best.pk], sorted(set(ids) - {best.pk})]
    assert AIRanking.objects.filter(task=task).count() == 1


def test_always_first_position_bias_yields_all_ties(project, model_at):
    task = comparison_task(project, k=3)
    always_a = lambda body: (200, {"choices": [{"index": 0, "message": {"content": '{"reason":"","better":"A"}'},  # noqa: E731
                                                "finish_reason": "stop"}]})
    with FakeModelServer([always_a]) as server:
        ranking = judge_task(task=task, model_version=model_at(server))
    assert ranking.ranking == [sorted(task.replies.values_list("pk", flat=True))]


def test_agreement_report_per_model_version(project, model_at):
    from annotations.services.projects import update_project_settings

    project = update_project_settings(project=project, overlap=2)
    task = comparison_task(project, k=3)
    best = task.replies.order_by("id")[1]
    with FakeModelServer([positional_judge(best.content)]) as server:
        version = model_at(server)
        judge_task(task=task, model_version=version)
    others = sorted(set(task.replies.values_list("pk", flat=True)) - {best.pk})
    for ranking in ([[best.pk], [others[0]], [others[1]]], [[others[0]], [others[1]], [best.pk]]):
        user = UserFactory()
        MembershipFactory(project=project, user=user)
        lease = lease_next_task(project=project, annotator=user)
        submit_ranking(lease_id=lease.pk, annotator=user, idempotency_key="k", ranking=ranking)
    [row] = ai_human_agreement(project=project)
    # AI: best > (o0 ~ o1). Human 1 (best>o0>o1): agrees twice, AI tie once. Human 2 (o0>o1>best):
    # AI tie on o0/o1, disagrees on both pairs with best.
    assert row["model_version"] == version.name and row["comparisons"] == 2
    assert row["strict_pairs"] == 6 and row["agree"] == 2 and row["ai_ties"] == 2
