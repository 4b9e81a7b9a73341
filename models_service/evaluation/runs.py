"""Eval runs: create (one generation job per model version), advance (battles once every model has
replied, then the judge), cancel.

A run moves pending -> generating -> judging (when it has a judge) -> done; a failed generation job
fails the run, a cancelled one cancels it (cancelled through the run or as a single model job).
``advance_run`` is called by each job when it ends or is cancelled; it locks the run row, so two
jobs finishing together make the battles once.
"""
from __future__ import annotations

import itertools
import random
from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from annotations.errors import InvalidInput, NotFound
from annotations.models import ModelVersion, Project

from ..models import FinetuneJob, ModelJob
from .errors import LeakageRisk
from .eval_sets import snapshot_prompts
from .models import Battle, EvalReply, EvalRun, EvalSet

MAX_MODELS = 8
ACTIVE = (ModelJob.Status.PENDING, ModelJob.Status.RUNNING)
FINAL = (EvalRun.Status.DONE, EvalRun.Status.FAILED, EvalRun.Status.CANCELLED)
DEFAULT_SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 256}


def check_leakage(*, eval_set: EvalSet, model_versions) -> None:
    """Refuse a run where a finetuned model was trained on prompts of the eval set. A set built
    from the model's own training snapshot is held out by construction (exact and near
    duplicates); for any other snapshot the exact prompt keys are compared."""
    keys = set(eval_set.prompts.values_list("prompt_key", flat=True))
    for version in model_versions:
        for job in FinetuneJob.objects.filter(result_model=version).select_related("snapshot"):
            if job.snapshot_id == eval_set.snapshot_id:
                continue
            overlap = keys & set(snapshot_prompts(job.snapshot)["train"])
            if overlap:
                raise LeakageRisk(
                    f"{len(overlap)} prompt(s) of eval set {eval_set.pk} are in the training data of {version.name} "
                    f"(snapshot {job.snapshot_id}). Build the eval set from that snapshot.", field="eval_set")


@transaction.atomic
def create_eval_run(*, project: Project, eval_set: EvalSet, model_versions: list[ModelVersion],
                    judge_model: ModelVersion | None = None, created_by=None, temperature: float | None = None,
                    top_p: float | None = None, max_tokens: int | None = None, seed: int | None = None,
                    enqueue: bool = True) -> EvalRun:
    if eval_set.project_id != project.pk:
        raise NotFound("No such eval set in this project.")
    if eval_set.status != EvalSet.Status.READY:
        raise InvalidInput("The eval set is not ready yet.", field="eval_set")
    if not eval_set.prompts.exists():
        raise InvalidInput("The eval set has no prompts.", field="eval_set")
    unique = list({v.pk: v for v in model_versions}.values())
    if not 2 <= len(unique) <= MAX_MODELS:
        raise InvalidInput(f"Name 2-{MAX_MODELS} different model versions.", field="models")
    for version in unique + ([judge_model] if judge_model else []):
        if version.adapter_path and version.backend == "transformers":
            raise InvalidInput(f"{version.name} is a LoRA adapter: serve it through vLLM (runtime LoRA).",
                               field="models")
    sampling = {**DEFAULT_SAMPLING, **{k: v for k, v in {"temperature": temperature, "top_p": top_p,
                                                         "max_tokens": max_tokens}.items() if v is not None}}
    if not (0 <= sampling["temperature"] <= 2 and 0 < sampling["top_p"] <= 1 and 1 <= sampling["max_tokens"] <= 4096):
        raise InvalidInput("temperature must be 0-2, top_p in (0, 1], max_tokens 1-4096.", field="sampling")
    if seed is not None:
        sampling["seed"] = int(seed)
    check_leakage(eval_set=eval_set, model_versions=unique)
    run = EvalRun.objects.create(project=project, eval_set=eval_set, judge_model=judge_model, sampling=sampling,
                                 status=EvalRun.Status.GENERATING, created_by=created_by)
    run.model_versions.set(unique)
    generation_jobs = [
        ModelJob.objects.create(project=project, kind=ModelJob.Kind.EVAL_GENERATION, model_version=version,
                                params={"eval_run": run.pk, **sampling}, created_by=created_by)
        for version in unique
    ]
    if enqueue:
        from annotations.queueing import enqueue_on_commit

        from .tasks import run_eval_generation_job

        for job in generation_jobs:
            enqueue_on_commit(run_eval_generation_job, job.pk)  # a broker outage leaves them to the sweep
    return run


def run_jobs(run: EvalRun):
    return ModelJob.objects.filter(project_id=run.project_id, params__eval_run=run.pk).select_related("model_version")


def make_battles(run: EvalRun) -> int:
    """One battle per prompt and pair of models that both replied; sides drawn at random and
    stored. Idempotent (unique per run, prompt and pair)."""
    replies: dict[int, dict[int, int]] = defaultdict(dict)
    for reply_id, prompt_id, version_id in EvalReply.objects.filter(run=run).values_list(
            "id", "prompt_id", "model_version_id"):
        replies[prompt_id][version_id] = reply_id
    versions = sorted(run.model_versions.values_list("pk", flat=True))
    coin = random.SystemRandom()
    battles = []
    for prompt_id, got in replies.items():
        for a, b in itertools.combinations(versions, 2):
            if a in got and b in got:
                left, right = (got[a], got[b]) if coin.random() < 0.5 else (got[b], got[a])
                battles.append(Battle(run=run, prompt_id=prompt_id, left_id=left, right_id=right, pair_key=f"{a}:{b}"))
    coin.shuffle(battles)  # ids say nothing about the prompt order
    Battle.objects.bulk_create(battles, ignore_conflicts=True)
    return Battle.objects.filter(run=run).count()


def advance_run(*, run_id: int) -> EvalRun:
    """Move the run on from what its jobs say; called whenever one of them ends or is cancelled.
    A cancelled generation job cancels the run and a failed one fails it (either way the run's
    other unfinished jobs are cancelled: their work could not be used). The judge failing or being
    cancelled does not end the people's arena: the run is done, with the reason in ``error``."""
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().get(pk=run_id)
        if run.status in FINAL:
            return run
        jobs = list(run_jobs(run))
        generation = [j for j in jobs if j.kind == ModelJob.Kind.EVAL_GENERATION]
        judging = [j for j in jobs if j.kind == ModelJob.Kind.ARENA_JUDGING]
        if any(j.status == ModelJob.Status.CANCELLED for j in generation):
            run.status = EvalRun.Status.CANCELLED
        elif any(j.status == ModelJob.Status.FAILED for j in generation):
            run.status = EvalRun.Status.FAILED
            run.error = "\n".join(f"{j.model_version.name}: {j.error}" for j in generation
                                  if j.status == ModelJob.Status.FAILED)[:5000]
        elif any(j.status in ACTIVE for j in generation):
            run.status = EvalRun.Status.GENERATING
        else:
            run.battles_created = make_battles(run)
            if run.battles_created == 0:
                run.status = EvalRun.Status.FAILED
                run.error = "No prompt got a reply from two models: no battles."
            elif run.judge_model_id and not judging:
                from annotations.queueing import enqueue_on_commit

                from .tasks import run_arena_judging_job

                job = ModelJob.objects.create(project_id=run.project_id, kind=ModelJob.Kind.ARENA_JUDGING,
                                              model_version_id=run.judge_model_id, params={"eval_run": run.pk},
                                              created_by=run.created_by)
                enqueue_on_commit(run_arena_judging_job, job.pk)
                run.status = EvalRun.Status.JUDGING
            elif any(j.status in ACTIVE for j in judging):
                run.status = EvalRun.Status.JUDGING
            else:
                # The people's arena stays open even if the judge failed or was cancelled: say so,
                # do not end the run.
                run.error = "\n".join(
                    f"judging failed: {j.error}" if j.status == ModelJob.Status.FAILED else "judging cancelled"
                    for j in judging if j.status in (ModelJob.Status.FAILED, ModelJob.Status.CANCELLED))[:5000]
                run.status = EvalRun.Status.DONE
        if run.status in (EvalRun.Status.CANCELLED, EvalRun.Status.FAILED):
            run_jobs(run).filter(status__in=ACTIVE).update(status=ModelJob.Status.CANCELLED,
                                                           finished_at=timezone.now())
        if run.status in FINAL:
            run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "battles_created", "finished_at"])
        return run


def cancel_eval_run(*, run_id: int, project: Project | None = None) -> EvalRun:
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().filter(
            pk=run_id, **({"project": project} if project else {})).first()
        if run is None:
            raise NotFound("No such eval run.")
        if run.status not in FINAL:
            run_jobs(run).filter(status__in=ACTIVE).update(status=ModelJob.Status.CANCELLED,
                                                           finished_at=timezone.now())
            run.status = EvalRun.Status.CANCELLED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
    return run
