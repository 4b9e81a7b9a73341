"""`make flywheel`, reduced: scripts/flywheel.py --small against the test database. The script starts
the product itself (the vLLM CPU server with the bundled model and runtime LoRA, gunicorn, a Celery
worker on its own queue) and plays every part over HTTP and the CLI; this test then checks what
each stage left in the database, and that the figures the script printed are those rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from annotations.exports import split
from annotations.feedback.models import MisbehaviourReport, ReportTask
from annotations.models import CandidateReply, DatasetSnapshot, Project, Submission, Task, TaskKind
from models_service.evaluation import selectors
from models_service.evaluation.eval_sets import snapshot_prompts
from models_service.evaluation.models import BattleVote, EvalReply, EvalRun, JudgeVote
from models_service.models import Critique, FinetuneJob
from models_service.vllm_server import default_python
from tests.processes import ROOT, database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SHARED = ROOT.parent / "shared" / "data"
MODEL = "smollm2-135m-instruct"
# About 4 minutes on a quiet 2-core machine; a loaded shared one took far longer (docs/benchmarks.md).
RUN_TIMEOUT_S = int(os.environ.get("FLYWHEEL_TEST_TIMEOUT", "2400"))


def load_sizes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("flywheel_script", ROOT / "scripts" / "flywheel.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.SMALL, module.REFUSE


@pytest.fixture
def flywheel_run(tmp_path):
    """Run the reduced flywheel to the end (its output is shown when this test fails)."""
    python = default_python()
    assert python.exists(), f"vLLM venv missing ({python}): run `bash scripts/vllm_venv.sh` (make test does)"
    summary_path = tmp_path / "summary.json"
    command = [sys.executable, "scripts/flywheel.py", "--small", "--database-url", database_url(
        connection.settings_dict), "--redis-url", settings.REDIS_URL, "--workdir", str(tmp_path / "flywheel"),
        "--json-out", str(summary_path), "--vllm-python", str(python), "--worker-concurrency", "3"]
    if os.environ.get("FLYWHEEL_TEST_MODEL_PORT"):  # a fixed port on a shared machine (default: a free one)
        command += ["--model-port", os.environ["FLYWHEEL_TEST_MODEL_PORT"]]
    env = {**os.environ}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the script's server runs the product's settings, not the tests'
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:  # timed out or interrupted: SIGTERM lets the script stop its servers
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(stdout[-20_000:])
    print(stderr[-10_000:], file=sys.stderr)
    assert proc.returncode == 0, "the flywheel failed (its output is above)"
    logs = tmp_path / "flywheel" / "logs"
    return json.loads(summary_path.read_text()), stdout, {n: (logs / f"{n}.log").read_text() for n in ("worker", "critic")}


@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_the_reduced_flywheel_closes_the_loop(flywheel_run):
    summary, output, logs = flywheel_run
    small, refuse = load_sizes()
    stages = summary["stages"]
    assert list(stages) == ["services", "project", "import", "drafting", "demos", "rankings", "snapshot",
                            "critiques", "finetune", "eval", "board", "report"]

    # project: the example instructions, published through the API, and the scripted members
    project = Project.objects.get(pk=summary["project"])
    assert project.current_instructions.body == (SHARED / "instructions_example.md").read_text()
    assert {m.user.username for m in project.memberships.select_related("user")} == {
        "fw-admin", "fw-engineer", *(f"fw-annotator-{i + 1}" for i in range(small.annotators))}

    # import: the first prompts of the demo file, one task each
    prompts = [json.loads(line) for line in (SHARED / "demo_prompts.jsonl").read_text().splitlines()][: small.prompts]
    imported = Task.objects.filter(project=project, import_batch__isnull=False)
    assert imported.count() == small.prompts == stages["import"]["tasks_created"]
    assert {t.conversation[-1]["content"] for t in imported} == {p["prompt"] for p in prompts}
    assert all(t.metadata.get("category") for t in imported)

    # drafting: n drafts per labelled prompt by the bundled model, with the sampling recorded
    drafts = CandidateReply.objects.filter(task__project=project, source=CandidateReply.Source.MODEL,
                                           for_ranking=False)
    assert drafts.count() == small.demonstrations * small.drafts_n == stages["drafting"]["drafts"]
    assert {d.model_version.name for d in drafts.select_related("model_version")} == {MODEL}
    assert {d.sampling_params["max_tokens"] for d in drafts} == {small.draft_tokens}
    assert all(d.content.strip() for d in drafts)

    # demonstrations by the annotators, from drafts unless the prompt had to be refused
    demos = Submission.objects.filter(project=project, kind=TaskKind.DEMONSTRATION).select_related(
        "annotator", "reply", "task")
    assert demos.count() == small.demonstrations == stages["demos"]["demonstrations"]
    assert {s.annotator.username for s in demos} <= {f"fw-annotator-{i + 1}" for i in range(small.annotators)}
    for sub in demos:
        assert sub.reply.content.strip()
        if sub.task.metadata.get("category") not in refuse:
            assert sub.draft_sources, "a demonstration written from a draft records it"
            draft = CandidateReply.objects.get(pk=sub.draft_sources[0]["reply_id"])
            assert draft.task_id == sub.task_id and draft.source == CandidateReply.Source.MODEL

    # comparisons built from drafts + the human reply, each ranked by two different annotators
    comparisons = Task.objects.filter(project=project, kind=TaskKind.COMPARISON)
    assert comparisons.count() == small.comparisons == stages["rankings"]["comparisons_built"]
    rankings = Submission.objects.filter(project=project, kind=TaskKind.COMPARISON)
    assert rankings.count() == 2 * small.comparisons == stages["rankings"]["rankings"]
    for task in comparisons:
        replies = set(task.replies.values_list("pk", flat=True))
        # the annotator's reply (an edited draft, or written fresh) beside the drafts
        assert len(replies) == 3 and task.replies.exclude(source=CandidateReply.Source.MODEL).exists()
        subs = list(rankings.filter(task=task))
        assert len({s.annotator_id for s in subs}) == 2
        for sub in subs:
            assert sorted(r for group in sub.ranking for r in group) == sorted(replies)
    assert stages["rankings"]["agreement_tasks"] == small.comparisons

    # critiques: the background worker asked the model about every submission, on the background queue
    critiques = Critique.objects.filter(submission__project=project)
    assert critiques.values("submission").distinct().count() == demos.count() + rankings.count()
    assert critiques.filter(status="done").count() == stages["critiques"]["critiques_done"] >= 1
    # routed to the background queue: the critic worker ran them, the jobs worker none
    assert "Task models_service.critique_submission" in logs["critic"]
    assert "Task models_service.critique_submission" not in logs["worker"]
    assert "Task models_service.run_finetune" in logs["worker"]
    for critique in critiques.filter(status="done"):
        assert critique.verdict in ("accept", "revise", "reject") and set(critique.scores) == {
            "helpful", "truthful", "harmless"}

    # snapshot: SFT and DPO files on disk, with the rows the script counted
    snapshot = DatasetSnapshot.objects.get(pk=stages["snapshot"]["snapshot"])
    assert snapshot.status == "ready" and set(snapshot.formats) == {"sft", "dpo"}
    rows = snapshot.counts["rows"]
    assert rows["sft.train"] >= 1 and rows["dpo.train"] >= 1
    sft_lines = (Path(snapshot.path) / "sft.train.jsonl").read_text().splitlines()
    assert len(sft_lines) == rows["sft.train"] == stages["snapshot"]["downloaded_sft_rows"]

    # finetune: a LoRA adapter on disk and a model version that names it
    job = FinetuneJob.objects.select_related("result_model").get(pk=stages["finetune"]["finetune"])
    assert job.status == "done" and job.step == small.finetune_steps and job.snapshot_id == snapshot.pk
    assert (Path(job.result_model.adapter_path) / "adapter_config.json").exists()
    assert job.result_model.name == stages["finetune"]["model"] and len(job.metrics) == small.finetune_steps

    # eval: replies from both models (the adapter served by vLLM), battles, the judge's votes
    run = EvalRun.objects.get(pk=stages["eval"]["eval_run"])
    assert run.status == "done", run.error
    assert {m.name for m in run.model_versions.all()} == {MODEL, job.result_model.name}
    n_prompts = run.eval_set.prompts.count()
    assert n_prompts == stages["eval"]["prompts"] >= 1
    tuned = EvalReply.objects.filter(run=run, model_version=job.result_model)
    assert tuned.count() == n_prompts and any(r.content.strip() for r in tuned)
    assert tuned.first().sampling_params["max_tokens"] == small.eval_tokens
    train_keys = set(snapshot_prompts(snapshot)["train"])
    assert not {split.prompt_key(p.conversation) for p in run.eval_set.prompts.all()} & train_keys
    assert run.battles.count() == n_prompts == stages["eval"]["battles"]
    assert JudgeVote.objects.filter(battle__run=run).count() == n_prompts
    human = BattleVote.objects.filter(battle__run=run, voted_at__isnull=False)
    assert human.count() == stages["eval"]["human_votes"] >= 1

    # leaderboard: both models rated with intervals on the judge's board, as the script printed
    board = selectors.leaderboard(project=project, run_ids=[run.pk], bootstrap=small.bootstrap, seed=0)
    judged = {r["model"]: r for r in board["judge"]["models"]}
    for name, tag in ((MODEL, "base"), (job.result_model.name, "ft")):
        row = judged[name]
        assert row["ci_low"] <= row["rating"] <= row["ci_high"]
        assert row["rating"] == stages["board"][f"judge_{tag}_rating"]
    assert "judge board" in output and "95% CI" in output

    # report: ingested with a report token, triaged into a demonstration task up to the bad reply
    report = MisbehaviourReport.objects.get(pk=stages["report"]["report"])
    assert report.project_id == project.pk and report.category == "jailbreak"
    links = list(ReportTask.objects.filter(report=report).select_related("task"))
    assert [link.task_id for link in links] == stages["report"]["task_ids"] and len(links) == 1
    task = links[0].task
    assert task.kind == TaskKind.DEMONSTRATION and task.metadata["report"] == report.pk
    assert task.conversation == report.conversation[:2]  # the system turn and the jailbreak, not the bad reply
