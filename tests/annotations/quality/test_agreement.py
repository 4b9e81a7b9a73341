"""Agreement over a project's rankings and ratings: known answers on constructed data, and the same
numbers as scipy and the krippendorff package computed independently from the stored rows."""
import itertools
import math
import random

import krippendorff
import numpy as np
import pytest
from scipy.stats import kendalltau

from annotations.models import Submission
from annotations.quality.agreement import agreement_report, task_mean_taus
from annotations.quality.metrics import mid_ranks
from annotations.services.instructions import publish_instructions
from tests.factories import UserFactory

from .helpers import ranked_task

pytestmark = pytest.mark.django_db


def test_identical_rankings_give_alpha_and_tau_one(project):
    people = [UserFactory() for _ in range(3)]
    for ranking in ([[0], [1, 2], [3]], [[3], [2], [1], [0]], [[1], [0, 2, 3]]):
        ranked_task(project, 4, [(p, ranking, {0: {"helpful": 5}, 1: {"helpful": 2}}) for p in people])
    report = agreement_report(project=project)
    r = report["rankings"]
    assert (r["alpha"], r["mean_tau"], r["tasks"], r["pairs"], r["units"]) == (1.0, 1.0, 3, 9, 12)
    assert report["ratings"]["helpful"] == {"alpha": 1.0, "units": 6}
    assert report["ratings"]["truthful"] == {"alpha": None, "units": 0}
    assert {row["username"]: row["mean_tau_with_peers"] for row in report["by_annotator"]} == {
        p.username: 1.0 for p in people}


def test_reversed_rankings_give_tau_minus_one(project):
    a, b = UserFactory(), UserFactory()
    for _ in range(3):
        ranked_task(project, 4, [(a, [[0], [1], [2], [3]]), (b, [[3], [2], [1], [0]])])
    report = agreement_report(project=project)
    assert report["rankings"]["mean_tau"] == -1.0 and report["rankings"]["alpha"] < 0
    assert all(row["mean_tau_with_peers"] == -1.0 for row in report["by_annotator"])


def test_a_ranking_that_ties_everything_has_no_tau_and_is_counted_apart(project):
    a, b = UserFactory(), UserFactory()
    ranked_task(project, 3, [(a, [[0, 1, 2]]), (b, [[0], [1], [2]])])
    r = agreement_report(project=project)["rankings"]
    assert (r["mean_tau"], r["pairs"], r["undefined_pairs"]) == (None, 0, 1)


def test_values_equal_the_reference_packages_on_random_data(project):
    rng = random.Random(11)
    people = [UserFactory() for _ in range(5)]
    k = 4
    for _ in range(25):
        coders = rng.sample(people, rng.randint(1, 4))
        work = []
        for person in coders:
            order = list(range(k))
            rng.shuffle(order)
            groups, i = [], 0
            while i < k:  # random tie-groups
                size = rng.choice((1, 1, 2))
                groups.append(order[i:i + size])
                i += size
            work.append((person, groups, {j: {"helpful": rng.randint(1, 7)} for j in range(k) if rng.random() < 0.7}))
        ranked_task(project, k, work)
    report = agreement_report(project=project)

    # Independently from the stored rows: a coders x units matrix of mid-ranks, and scipy per pair.
    subs = list(Submission.objects.filter(project=project).order_by("task_id", "id"))
    by_task = {}
    for sub in subs:
        by_task.setdefault(sub.task_id, []).append(sub)
    coder_index = {p.pk: n for n, p in enumerate(people)}
    columns, rating_columns, taus = [], [], []
    for task_subs in by_task.values():
        if len(task_subs) < 2:
            continue
        reply_ids = sorted({rid for s in task_subs for g in s.ranking for rid in g})
        for rid in reply_ids:
            column = np.full(len(people), np.nan)
            rating_column = np.full(len(people), np.nan)
            for s in task_subs:
                column[coder_index[s.annotator_id]] = mid_ranks(s.ranking)[rid]
                if str(rid) in s.ratings:
                    rating_column[coder_index[s.annotator_id]] = s.ratings[str(rid)]["helpful"]
            columns.append(column)
            rating_columns.append(rating_column)
        for s, t in itertools.combinations(task_subs, 2):
            x, y = mid_ranks(s.ranking), mid_ranks(t.ranking)
            tau = kendalltau([x[r] for r in reply_ids], [y[r] for r in reply_ids]).statistic
            if not math.isnan(tau):
                taus.append(tau)
    expected_alpha = krippendorff.alpha(reliability_data=np.array(columns).T, level_of_measurement="ordinal")
    expected_ratings = krippendorff.alpha(reliability_data=np.array(rating_columns).T,
                                          level_of_measurement="ordinal")
    assert report["rankings"]["alpha"] == pytest.approx(expected_alpha, abs=1e-4)
    assert report["ratings"]["helpful"]["alpha"] == pytest.approx(expected_ratings, abs=1e-4)
    assert report["rankings"]["mean_tau"] == pytest.approx(sum(taus) / len(taus), abs=1e-4)
    assert report["rankings"]["pairs"] == len(taus)


def test_gold_and_rejected_work_is_left_out_and_versions_are_compared_apart(project):
    a, b, c = UserFactory(), UserFactory(), UserFactory()
    same, reverse = [[0], [1], [2]], [[2], [1], [0]]
    ranked_task(project, 3, [(a, same), (b, same)])
    ranked_task(project, 3, [(a, same), (b, reverse)], gold=True)
    ranked_task(project, 3, [(a, same), (b, reverse)], status="rejected")
    v2 = publish_instructions(project=project, body="# v2", published_by=project.created_by)
    ranked_task(project, 3, [(a, same, {}), (c, reverse, {})], version=v2)
    # Mixed versions on one task: compared overall, but not within either version
    _task, _ids, (_first, second) = ranked_task(project, 3, [(a, same), (b, same)], version=v2)
    Submission.objects.filter(pk=second.pk).update(instruction_version=v2.project.instruction_versions.get(number=1))
    report = agreement_report(project=project)
    assert report["rankings"]["tasks"] == 3 and report["rankings"]["mean_tau"] == pytest.approx(1 / 3, abs=1e-4)
    by_version = {row["instruction_version"]: row["rankings"] for row in report["by_instruction_version"]}
    assert (by_version[1]["tasks"], by_version[1]["mean_tau"]) == (1, 1.0)
    assert (by_version[2]["tasks"], by_version[2]["mean_tau"]) == (1, -1.0)
    only_v2 = agreement_report(project=project, instruction_version=2)
    assert only_v2["rankings"]["tasks"] == 1 and only_v2["rankings"]["mean_tau"] == -1.0


def test_task_mean_taus_for_exports():
    same, reverse = [[1], [2], [3]], [[3], [2], [1]]
    assert task_mean_taus([(1, [same, same, same]), (2, [same, reverse]), (3, [same]), (4, [[[1, 2, 3]], same])]) == {
        1: 1.0, 2: -1.0, 3: None, 4: None}


def test_cached_report_is_reused_until_the_data_changes(project, monkeypatch):
    from annotations.quality import agreement, gold

    a, b = UserFactory(), UserFactory()
    same, reverse = [[0], [1], [2]], [[2], [1], [0]]
    ranked_task(project, 3, [(a, same), (b, same)])
    computed = []
    real = agreement.agreement_report
    monkeypatch.setattr(agreement, "agreement_report", lambda **kw: computed.append(kw) or real(**kw))
    first = agreement.cached_agreement_report(project=project)
    assert agreement.cached_agreement_report(project=project) == first and len(computed) == 1  # from Redis
    _task, ids, (_x, disagreeing) = ranked_task(project, 3, [(a, same), (b, reverse)])
    assert agreement.cached_agreement_report(project=project)["rankings"]["mean_tau"] == 0.0  # a new submission
    Submission.objects.filter(pk=disagreeing.pk).update(status="rejected")
    assert agreement.cached_agreement_report(project=project)["rankings"]["mean_tau"] == 1.0  # a rejection
    gold.set_gold(project=project, task_id=_task.pk, created_by=project.created_by, ranking=[[i] for i in ids])
    assert agreement.cached_agreement_report(project=project)["rankings"]["tasks"] == 1  # gold changes too
    assert len(computed) == 4
