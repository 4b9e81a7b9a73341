"""The evaluation API: blind battles and votes, eval sets and runs, the leaderboard JSON, and clear
400s for bad input."""
from __future__ import annotations

import json

import pytest

from annotations.models import ModelVersion, Role
from models_service.evaluation import runs
from models_service.evaluation.models import BattleVote, EvalRun, EvalSet
from tests.models_service.fake_server import FakeModelServer

from .conftest import arena_server_handler, make_eval_set, run_to_the_end, versions_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def arena(project):
    eval_set = make_eval_set(project, n=8)
    with FakeModelServer([arena_server_handler]) as server:
        good, weak, judge = versions_at(server, "model-good", "model-weak", "judge")
        run = run_to_the_end(runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[good, weak],
                                                  judge_model=judge, enqueue=False))
    assert run.status == "done"
    return run


def base(project):
    return f"/api/projects/{project.pk}/"


def test_a_voter_gets_blind_battles_never_the_same_twice_and_votes(api, project, arena, voter):
    user = voter()
    client = api(user)
    seen = []
    for _ in range(8):
        response = client.post(base(project) + "battles/next/", {}, format="json")
        assert response.status_code == 200, response.json()
        battle = response.json()
        assert set(battle) == {"id", "run", "conversation", "a", "b", "shown_at"}
        raw = json.dumps(battle)
        assert "model-good" not in raw and "model-weak" not in raw and "judge" not in raw
        # asking again before voting shows the same battle (a reload is the same showing)
        assert client.post(base(project) + "battles/next/", {}, format="json").json()["id"] == battle["id"]
        choice = "a" if "excellent" in battle["a"] else "b"
        voted = client.post(base(project) + f"battles/{battle['id']}/vote/", {"choice": choice, "time_spent_ms": 900},
                            format="json")
        assert voted.status_code == 201, voted.json()
        assert voted.json()[f"{choice}_model"] == "model-good"
        seen.append(battle["id"])
    assert len(set(seen)) == 8
    done = client.post(base(project) + "battles/next/", {}, format="json")
    assert done.status_code == 404 and done.json()["error"] == "no_battle_available"
    # the same vote again is a replay; a different one is refused
    again = client.post(base(project) + f"battles/{seen[0]}/vote/", {"choice": BattleVote.objects.get(
        battle_id=seen[0], voter=user).choice}, format="json")
    assert again.status_code == 200
    changed = client.post(base(project) + f"battles/{seen[0]}/vote/", {"choice": "both_bad"}, format="json")
    assert changed.status_code == 409 and changed.json()["error"] == "already_voted"


def test_votes_only_on_battles_shown_to_the_voter(api, project, arena, voter):
    shown = api(voter()).post(base(project) + "battles/next/", {}, format="json").json()
    other = api(voter())
    response = other.post(base(project) + f"battles/{shown['id']}/vote/", {"choice": "a"}, format="json")
    assert response.status_code == 404
    assert other.post(base(project) + f"battles/{shown['id']}/vote/", {"choice": "maybe"},
                      format="json").status_code == 400


def test_the_leaderboard_puts_people_and_judge_side_by_side(api, project, arena, voter):
    # two people: one agrees with the judge, one always says A, one "both bad"
    agree, always_a = api(voter()), api(voter())
    for client, rule in ((agree, "judge"), (always_a, "a")):
        for _ in range(8):
            battle = client.post(base(project) + "battles/next/", {}, format="json").json()
            choice = ("a" if "excellent" in battle["a"] else "b") if rule == "judge" else "a"
            client.post(base(project) + f"battles/{battle['id']}/vote/", {"choice": choice}, format="json")
    last = api(voter())
    battle = last.post(base(project) + "battles/next/", {}, format="json").json()
    last.post(base(project) + f"battles/{battle['id']}/vote/", {"choice": "both_bad"}, format="json")

    engineer = voter(Role.ENGINEER)
    response = api(engineer).get(base(project) + "leaderboard/", {"bootstrap": 200, "seed": 3})
    assert response.status_code == 200
    board = response.json()
    human, judge = board["human"], board["judge"]
    assert human["votes"] == 17 and human["votes_in_fit"] == 16 and human["both_bad_excluded"] == 1
    good = next(r for r in human["models"] if r["model"] == "model-good")
    weak = next(r for r in human["models"] if r["model"] == "model-weak")
    assert good["wins"] > weak["wins"] and good["both_bad"] == 1 and good["battles"] == 17
    assert good["ci_low"] <= good["rating"] <= good["ci_high"] and good["elo"] is not None
    assert judge["models"][0]["model"] == "model-good" and judge["votes"] == 8
    agreement = board["agreement"]
    assert agreement["compared"] == 16 and agreement["agree"] >= 8
    assert board["method"]["ties"] == "half a win each way"
    # the same numbers with the same seed; the run filter works; bad parameters are 400
    assert api(engineer).get(base(project) + "leaderboard/", {"bootstrap": 200, "seed": 3}).json() == board
    assert api(engineer).get(base(project) + "leaderboard/", {"run": arena.pk}).json()["runs"] == [arena.pk]
    for params in ({"bootstrap": 10**6}, {"seed": "x"}, {"ordering": "password"}):
        assert api(engineer).get(base(project) + "leaderboard/", params).status_code == 400


def test_eval_sets_and_runs_through_the_api(api, project, voter, settings):
    make_eval_set(project, n=3)  # the tasks; the set below is made by the API
    engineer = api(voter(Role.ENGINEER))
    created = engineer.post(base(project) + "eval-sets/", {"max_prompts": 2, "name": "held out"}, format="json")
    assert created.status_code == 202, created.json()
    eval_set = EvalSet.objects.get(pk=created.json()["id"])
    from models_service.evaluation.eval_sets import build_eval_set

    build_eval_set(eval_set_id=eval_set.pk)
    detail = engineer.get(base(project) + f"eval-sets/{eval_set.pk}/").json()
    assert detail["status"] == "ready" and detail["prompt_count"] == 2 and len(detail["prompts"]) == 2

    ModelVersion.objects.create(name="m1")
    ModelVersion.objects.create(name="m2")
    bad = [
        ({"eval_set": eval_set.pk, "models": ["m1"]}, "models"),
        ({"eval_set": eval_set.pk, "models": ["m1", "nope"]}, "models"),
        ({"eval_set": eval_set.pk, "models": ["m1", "m2"], "judge": "nope"}, "judge"),
        ({"eval_set": eval_set.pk, "models": ["m1", "m2"], "max_tokens": 0}, "max_tokens"),
        ({"eval_set": 999999, "models": ["m1", "m2"]}, "eval_set"),
    ]
    for body, field in bad:
        response = engineer.post(base(project) + "eval-runs/", body, format="json")
        assert response.status_code == 400 and field in response.json(), (body, response.json())
    assert not EvalRun.objects.exists()  # nothing half-made
    response = engineer.post(base(project) + "eval-runs/", {"eval_set": eval_set.pk, "models": ["m1", "m2"],
                                                            "max_tokens": 16}, format="json")
    assert response.status_code == 202, response.json()
    run = response.json()
    assert run["status"] == "generating" and run["models"] == ["m1", "m2"] and len(run["jobs"]) == 2
    assert {j["kind"] for j in run["jobs"]} == {"eval_generation"}
    cancelled = engineer.post(base(project) + f"eval-runs/{run['id']}/cancel/", {}, format="json").json()
    assert cancelled["status"] == "cancelled" and {j["status"] for j in cancelled["jobs"]} == {"cancelled"}
    # evaluation jobs cannot be started through the generic model-jobs endpoint
    assert engineer.post(base(project) + "model-jobs/", {"kind": "eval_generation"}, format="json").status_code == 400


def test_annotators_cannot_read_the_leaderboard_or_start_runs(api, project, arena, voter):
    annotator = api(voter())
    assert annotator.get(base(project) + "leaderboard/").status_code == 403
    assert annotator.post(base(project) + "eval-runs/", {}, format="json").status_code == 403
    engineer = api(voter(Role.ENGINEER))
    assert engineer.post(base(project) + "battles/next/", {}, format="json").status_code == 403
