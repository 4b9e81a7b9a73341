"""Eval sets, runs, battles, the judge's votes and the leaderboard, through the services, against
PostgreSQL and a scripted model server (the real vLLM path is tests/integration/test_flywheel.py)."""
from __future__ import annotations

import pytest

from annotations.errors import InvalidInput
from annotations.exports import split
from annotations.exports.service import build_snapshot, create_snapshot
from annotations.models import ModelVersion
from models_service.evaluation import eval_sets, runs, selectors
from models_service.evaluation.errors import LeakageRisk
from models_service.evaluation.models import Battle, EvalPrompt, EvalReply, EvalRun, JudgeVote
from models_service.models import FinetuneJob, ModelJob
from tests.annotations.exports.helpers import comparison, demonstration
from tests.factories import TaskFactory
from tests.models_service.fake_server import FakeModelServer

from .conftest import arena_server_handler, make_eval_set, run_to_the_end, versions_at

pytestmark = pytest.mark.django_db

TOPICS = ["boil an egg", "change a bicycle tyre", "write a cover letter", "learn the piano", "grow tomatoes",
          "fix a leaking tap", "train a puppy", "bake sourdough bread", "file my taxes", "clean a cast iron pan"]


def test_eval_set_holds_out_the_training_prompts_and_their_near_duplicates(project):
    for topic in TOPICS:
        demonstration(project, [{"role": "user", "content": f"How do I {topic}?"}], ["Like this."])
    comparison(project, [{"role": "user", "content": "Name a colour."}], ["Blue.", "Seven."], [[[0], [1]]])
    snapshot = build_snapshot(snapshot_id=create_snapshot(project=project, eval_fraction=0.3).pk)
    sides = eval_sets.snapshot_prompts(snapshot)
    assert sides["train"] and sides["eval"]
    # prompts nobody labelled: near duplicates of every prompt, and two unrelated ones
    for topic in TOPICS:
        TaskFactory(project=project, conversation=[{"role": "user", "content": f"how can i {topic}"}])
    fresh = ["Write a limerick about a lighthouse keeper.", "What is the boiling point of nitrogen?"]
    for text in fresh:
        TaskFactory(project=project, conversation=[{"role": "user", "content": text}])

    eval_set = eval_sets.build_eval_set(eval_set_id=eval_sets.create_eval_set(
        project=project, snapshot=snapshot, max_prompts=100, enqueue=False).pk)

    assert eval_set.status == "ready", eval_set.error
    prompts = list(eval_set.prompts.all())
    keys = {p.prompt_key for p in prompts}
    assert not keys & set(sides["train"]), "a training prompt leaked into the eval set"
    assert set(sides["eval"]) <= keys  # the snapshot's own eval side is all there
    texts = {p.conversation[-1]["content"] for p in prompts}
    assert set(fresh) <= texts
    train_topics = {t for t in TOPICS if any(t in c[-1]["content"] for c in sides["train"].values())}
    # no near duplicate of a training prompt, and one prompt per topic at most
    assert not any(t in text for t in train_topics for text in texts)
    assert all(sum(t in text for text in texts) <= 1 for t in TOPICS)
    counts = eval_set.counts
    assert counts["dropped_near_dup_train"] == len(train_topics)
    assert counts["chosen"] == len(prompts) == counts["chosen_by_source"]["snapshot_eval"] + counts[
        "chosen_by_source"]["held_out"]
    assert all(p.task_id for p in prompts)  # every prompt points at its task


def test_eval_set_is_capped_deterministically_and_rebuilds_the_same(project):
    first = make_eval_set(project, n=12, max_prompts=5, seed="s")
    again = eval_sets.build_eval_set(eval_set_id=eval_sets.create_eval_set(
        project=project, max_prompts=5, seed="s", enqueue=False).pk)
    assert first.counts["chosen"] == 5 and first.counts["chosen_by_source"] == {"project": 5}
    assert sorted(first.prompts.values_list("prompt_key", flat=True)) == sorted(
        again.prompts.values_list("prompt_key", flat=True))


def test_eval_set_input_is_checked(project):
    with pytest.raises(InvalidInput):
        eval_sets.create_eval_set(project=project, max_prompts=0, enqueue=False)
    snapshot = create_snapshot(project=project)  # pending, not built
    with pytest.raises(InvalidInput, match="not ready"):
        eval_sets.create_eval_set(project=project, snapshot=snapshot, enqueue=False)


@pytest.fixture
def arena(project):
    """A finished run: two models on 12 prompts with a judge, all through the services."""
    eval_set = make_eval_set(project, n=12)
    with FakeModelServer([arena_server_handler]) as server:
        good, weak, judge = versions_at(server, "model-good", "model-weak", "judge")
        run = runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[good, weak],
                                   judge_model=judge, max_tokens=32, temperature=0.5, seed=3, enqueue=False)
        run = run_to_the_end(run)
        yield {"run": run, "good": good, "weak": weak, "judge": judge, "server": server, "eval_set": eval_set}


def test_a_run_generates_with_recorded_sampling_then_battles_then_judge_votes(arena):
    run, good, weak = arena["run"], arena["good"], arena["weak"]
    assert run.status == EvalRun.Status.DONE, run.error
    assert EvalReply.objects.filter(run=run).count() == 24
    reply = EvalReply.objects.filter(run=run, model_version=good).first()
    assert reply.content.startswith("An excellent answer") and reply.sampling_params == {
        "temperature": 0.5, "top_p": 0.95, "max_tokens": 32, "seed": 3}
    generation = [r for r in arena["server"].requests if "DATA = " not in r["messages"][-1]["content"]]
    assert {r["max_tokens"] for r in generation} == {32} and {r["model"] for r in generation} == {
        "model-good", "model-weak"}
    battles = list(Battle.objects.filter(run=run).select_related("left", "right"))
    assert len(battles) == 12 == run.battles_created
    # sides drawn at random and stored: both placements occur (chance of not: 2 ** -11)
    assert {b.left.model_version_id for b in battles} == {good.pk, weak.pk}
    votes = list(JudgeVote.objects.filter(battle__run=run).select_related("battle__left"))
    assert len(votes) == 12
    for vote in votes:  # the judge was asked in both orders and the good model won on whichever side
        good_side = "a" if vote.battle.left.model_version_id == good.pk else "b"
        assert vote.choice == good_side
        assert {vote.left_first, vote.right_first} == {"A", "B"}
    judge_requests = [r for r in arena["server"].requests if "DATA = " in r["messages"][-1]["content"]]
    assert len(judge_requests) == 24
    jobs = {j.kind: j for j in runs.run_jobs(run)}
    assert jobs[ModelJob.Kind.ARENA_JUDGING].done == 12 and jobs[ModelJob.Kind.EVAL_GENERATION].done == 12


def test_judge_board_ranks_the_better_model_first_with_a_clear_interval(arena, project):
    board = selectors.leaderboard(project=project, bootstrap=300, seed=1)
    judge = board["judge"]
    assert [r["model"] for r in judge["models"]] == ["model-good", "model-weak"]
    best, other = judge["models"]
    assert best["rank"] == 1 and best["ci_low"] > other["ci_high"]
    assert best["wins"] == 12 and other["losses"] == 12 and best["battles"] == 12
    assert judge["win_rate"][judge["matrix_models"].index("model-good")][judge["matrix_models"].index(
        "model-weak")] == 1.0
    assert judge["judges"] == ["judge"]
    assert board["human"]["votes"] == 0 and all(r["rating"] is None for r in board["human"]["models"])
    assert board["agreement"]["compared"] == 0


def test_rerunning_a_generation_job_adds_nothing(arena):
    run = arena["run"]
    job = runs.run_jobs(run).filter(kind=ModelJob.Kind.EVAL_GENERATION).first()
    ModelJob.objects.filter(pk=job.pk).update(status=ModelJob.Status.PENDING)
    requests = len(arena["server"].requests)
    from models_service.evaluation.generation import run_generation

    job = run_generation(job_id=job.pk)
    assert (job.status, job.total, job.skipped, job.done) == ("done", 12, 12, 0)
    assert len(arena["server"].requests) == requests
    assert EvalReply.objects.filter(run=run).count() == 24 and Battle.objects.filter(run=run).count() == 12


def test_an_adapter_is_loaded_into_the_server_before_it_generates(project):
    eval_set = make_eval_set(project, n=3)
    with FakeModelServer([arena_server_handler]) as server:
        base, = versions_at(server, "base")
        adapter = ModelVersion.objects.create(name="base-good-sft-ft1", base=base, backend="vllm",
                                              endpoint=server.base_url, adapter_path="/adapters/ft1")
        run = run_to_the_end(runs.create_eval_run(project=project, eval_set=eval_set,
                                                  model_versions=[base, adapter], enqueue=False))
    loads = [r for r in server.requests if "lora_name" in r]
    assert loads == [{"lora_name": "base-good-sft-ft1", "lora_path": "/adapters/ft1"}]
    assert run.status == "done" and run.battles_created == 3
    assert {r["model"] for r in server.requests if "messages" in r} == {"base", "base-good-sft-ft1"}


def test_an_adapter_the_server_cannot_load_fails_the_run_with_the_reason(project):
    eval_set = make_eval_set(project, n=2)

    def refuse(body):
        if "lora_name" in body:
            return 404, {"error": {"message": "The lora adapter '/nope' does not exist"}}
        return arena_server_handler(body)

    with FakeModelServer([refuse]) as server:
        base, = versions_at(server, "base")
        adapter = ModelVersion.objects.create(name="broken-ft", base=base, endpoint=server.base_url,
                                              adapter_path="/nope")
        run = run_to_the_end(runs.create_eval_run(project=project, eval_set=eval_set,
                                                  model_versions=[base, adapter], enqueue=False))
    assert run.status == "failed" and "broken-ft" in run.error and "does not exist" in run.error
    assert not Battle.objects.filter(run=run).exists()


def test_a_run_refuses_a_model_trained_on_prompts_of_the_eval_set(project):
    for topic in TOPICS[:4]:
        demonstration(project, [{"role": "user", "content": f"How do I {topic}?"}], ["Like this."])
    everything = build_snapshot(snapshot_id=create_snapshot(project=project, eval_fraction=0).pk)
    base = ModelVersion.objects.create(name="base")
    tuned = ModelVersion.objects.create(name="tuned", base=base, adapter_path="/a")
    FinetuneJob.objects.create(project=project, snapshot=everything, method="sft", base_model=base,
                               result_model=tuned, status="done")
    eval_set = make_eval_set(project, n=0)  # every project prompt, no snapshot to hold out from
    with pytest.raises(LeakageRisk, match="4 prompt"):
        runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[base, tuned], enqueue=False)
    held_out = eval_sets.build_eval_set(eval_set_id=eval_sets.create_eval_set(
        project=project, snapshot=everything, enqueue=False).pk)
    assert held_out.counts["dropped_exact_train"] == 4 and held_out.counts["chosen"] == 0


def test_run_input_is_checked(project):
    eval_set = make_eval_set(project, n=2)
    a, b = ModelVersion.objects.create(name="a"), ModelVersion.objects.create(name="b")
    with pytest.raises(InvalidInput, match="2-8"):
        runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[a, a], enqueue=False)
    with pytest.raises(InvalidInput, match="max_tokens"):
        runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[a, b], max_tokens=0, enqueue=False)
    eval_set.status = "pending"
    eval_set.save()
    with pytest.raises(InvalidInput, match="not ready"):
        runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[a, b], enqueue=False)


def test_cancelling_a_run_cancels_its_jobs_and_the_worker_does_no_work(project):
    eval_set = make_eval_set(project, n=2)
    with FakeModelServer([arena_server_handler]) as server:
        a, b = versions_at(server, "a", "b")
        run = runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[a, b], enqueue=False)
        runs.cancel_eval_run(run_id=run.pk, project=project)
        run = run_to_the_end(run)
    assert run.status == "cancelled"
    assert set(runs.run_jobs(run).values_list("status", flat=True)) == {"cancelled"}
    assert server.requests == []


def test_prompt_keys_are_the_exports_keys(project):
    eval_set = make_eval_set(project, n=2)
    for prompt in EvalPrompt.objects.filter(eval_set=eval_set):
        assert prompt.prompt_key == split.prompt_key(prompt.conversation)


# --- a cancelled (or given-up) eval job moves its run on ------------------------------------------

def test_a_generation_job_cancelled_through_the_jobs_api_cancels_its_run(
        api, project, django_capture_on_commit_callbacks):
    from models_service.evaluation.generation import run_generation

    eval_set = make_eval_set(project, n=3)
    with FakeModelServer([arena_server_handler]) as server:
        a, b = versions_at(server, "a", "b")
        run = runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[a, b], enqueue=False)
        job = runs.run_jobs(run).order_by("id").first()
        with django_capture_on_commit_callbacks(execute=True):
            response = api(project.created_by).post(
                f"/api/projects/{project.pk}/model-jobs/{job.pk}/cancel/", format="json")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        run.refresh_from_db()
        # the run does not wait for ever for a job nobody will run
        assert run.status == EvalRun.Status.CANCELLED and run.finished_at is not None
        assert set(runs.run_jobs(run).values_list("status", flat=True)) == {"cancelled"}  # the other job too
        for each in runs.run_jobs(run):  # a worker that takes either message later does nothing
            assert run_generation(job_id=each.pk).status == "cancelled"
    assert server.requests == []
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED and not Battle.objects.filter(run=run).exists()


def test_a_worker_taking_a_job_cancelled_before_it_started_moves_the_run_on(project):
    from models_service.evaluation.generation import run_generation

    eval_set = make_eval_set(project, n=2)
    with FakeModelServer([arena_server_handler]) as server:
        a, b = versions_at(server, "a", "b")
        run = runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[a, b], enqueue=False)
        first, second = runs.run_jobs(run).order_by("id")
        run_generation(job_id=first.pk)
        # cancelled by a row update alone (no hook ran: e.g. the process that cancelled it died)
        ModelJob.objects.filter(pk=second.pk).update(status=ModelJob.Status.CANCELLED)
        run.refresh_from_db()
        assert run.status == EvalRun.Status.GENERATING
        run_generation(job_id=second.pk)  # the worker takes its message
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED and run.finished_at is not None
    assert len(server.requests) == 2  # only the first job's two prompts were generated


def test_cancelling_the_judge_leaves_the_peoples_arena_open(api, project, django_capture_on_commit_callbacks, voter):
    from models_service.evaluation.generation import run_generation
    from models_service.evaluation.judging import run_arena_judging

    eval_set = make_eval_set(project, n=3)
    with FakeModelServer([arena_server_handler]) as server:
        good, weak, judge = versions_at(server, "model-good", "model-weak", "judge")
        run = runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[good, weak],
                                   judge_model=judge, enqueue=False)
        for job in runs.run_jobs(run).order_by("id"):
            run_generation(job_id=job.pk)
        run.refresh_from_db()
        judging = runs.run_jobs(run).get(kind=ModelJob.Kind.ARENA_JUDGING)
        assert run.status == EvalRun.Status.JUDGING
        with django_capture_on_commit_callbacks(execute=True):
            api(project.created_by).post(f"/api/projects/{project.pk}/model-jobs/{judging.pk}/cancel/", format="json")
        run.refresh_from_db()
        assert run.status == EvalRun.Status.DONE and run.error == "judging cancelled" and run.battles_created == 3
        assert run_arena_judging(job_id=judging.pk).status == "cancelled"
    assert not JudgeVote.objects.filter(battle__run=run).exists()
    battle = api(voter()).post(f"/api/projects/{project.pk}/battles/next/", {}, format="json")
    assert battle.status_code == 200 and battle.json()["run"] == run.pk


def test_an_eval_job_the_recovery_sweep_gives_up_on_fails_its_run(project):
    from annotations import recovery

    eval_set = make_eval_set(project, n=2)
    a, b = ModelVersion.objects.create(name="a"), ModelVersion.objects.create(name="b")
    run = runs.create_eval_run(project=project, eval_set=eval_set, model_versions=[a, b], enqueue=False)
    first, second = runs.run_jobs(run).order_by("id")
    ModelJob.objects.filter(pk=first.pk).update(status=ModelJob.Status.RUNNING)
    kind = next(k for k in recovery.KINDS if k.task == "models_service.run_eval_generation_job")
    kind.give_up(first.pk, "interrupted 3 times")
    run.refresh_from_db()
    assert run.status == EvalRun.Status.FAILED and "interrupted 3 times" in run.error
    assert ModelJob.objects.get(pk=second.pk).status == ModelJob.Status.CANCELLED
