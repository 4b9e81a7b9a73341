"""Model drafts: n candidate replies per prompt, stored with the model and sampling that made them.

Drafts feed both task kinds: annotators start demonstrations from them, and comparison tasks are
assembled from drafts and human replies (``build_comparisons``).
"""
from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q

from annotations.models import CandidateReply, ModelVersion, Project, Task, TaskKind
from annotations.queueing import enqueue_on_commit
from annotations.services.imports import content_hash

from . import jobs
from .backends import default_model_version, servable_backend
from .client import ModelServerError, Sampling
from .models import ModelJob

SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed")


def sampling_for(project: Project, params: dict) -> Sampling:
    return Sampling(
        n=int(params.get("n") or project.drafts_n or 1),
        temperature=float(params.get("temperature", settings.DRAFT_TEMPERATURE)),
        top_p=float(params.get("top_p", settings.DRAFT_TOP_P)),
        max_tokens=int(params.get("max_tokens", settings.DRAFT_MAX_TOKENS)),
        seed=params.get("seed"),
    )


def _drafts_of(model_version: ModelVersion):
    return Q(replies__source=CandidateReply.Source.MODEL, replies__model_version=model_version,
             replies__for_ranking=False)


def tasks_needing_drafts(*, project: Project, model_version: ModelVersion, params: dict):
    tasks = Task.objects.filter(project=project, kind=TaskKind.DEMONSTRATION)
    if params.get("task_ids"):
        tasks = tasks.filter(pk__in=params["task_ids"])
    if params.get("import_batch"):
        tasks = tasks.filter(import_batch_id=params["import_batch"])
    return tasks.annotate(have=Count("replies", filter=_drafts_of(model_version))), tasks


@transaction.atomic
def create_drafting_job(*, project: Project, created_by=None, model_version: ModelVersion | None = None,
                        **params) -> ModelJob:
    from .tasks import run_drafting_job  # the Celery entry point; imported here to keep import order simple

    model_version = model_version or project.draft_model or default_model_version()
    sampling = sampling_for(project, params)  # validates the numbers before anything is queued
    if not 1 <= sampling.n <= 16 or not 1 <= sampling.max_tokens <= 4096:
        raise ValueError("n must be 1-16 and max_tokens 1-4096")
    job = ModelJob.objects.create(project=project, kind=ModelJob.Kind.DRAFTING, model_version=model_version,
                                  params={**params, "n": sampling.n}, created_by=created_by)
    enqueue_on_commit(run_drafting_job, job.pk)
    return job


def run_drafting(*, job_id: int) -> ModelJob:
    job = ModelJob.objects.select_related("project", "model_version").get(pk=job_id)
    project, model_version = job.project, job.model_version
    sampling = sampling_for(project, job.params)
    annotated, selected = tasks_needing_drafts(project=project, model_version=model_version, params=job.params)
    todo = annotated.filter(have__lt=sampling.n)
    total = selected.count()
    if not jobs.start(job, total=total, skipped=total - todo.count()):
        return job
    try:
        backend = servable_backend(model_version)  # a finetuned version: its adapter loaded on the server
    except ModelServerError as exc:
        return jobs.fail(job, str(exc))
    params = {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens}

    def items():
        for task_id, conversation, have in todo.values_list("id", "conversation", "have").iterator(chunk_size=500):
            yield task_id, conversation, sampling.n - have

    async def generate(http, item):
        _task_id, conversation, missing = item
        wanted = Sampling(n=missing, temperature=sampling.temperature, top_p=sampling.top_p,
                          max_tokens=sampling.max_tokens, seed=sampling.seed)
        return await backend.achat(http, conversation, wanted)

    def store(item, completions) -> int:
        return store_drafts(task_id=item[0], model_version=model_version, completions=completions,
                            n=sampling.n, params=params)

    return jobs.run_batch(job=job, items=items(), generate=generate, store=store,
                          open_http=lambda: backend.async_http(settings.DRAFT_CONCURRENCY),
                          concurrency=settings.DRAFT_CONCURRENCY)


@transaction.atomic
def store_drafts(*, task_id: int, model_version: ModelVersion, completions, n: int, params: dict) -> int:
    """Keep drafts up to ``n`` per task and model: a re-run or a redelivered job adds none twice."""
    task = Task.objects.select_for_update().get(pk=task_id)
    have = task.replies.filter(source=CandidateReply.Source.MODEL, model_version=model_version,
                               for_ranking=False).count()
    keep = [c for c in completions if c.text.strip()][: max(0, n - have)]
    CandidateReply.objects.bulk_create([
        CandidateReply(task=task, content=c.text, source=CandidateReply.Source.MODEL, model_version=model_version,
                       sampling_params={**params, "finish_reason": c.finish_reason}, for_ranking=False)
        for c in keep
    ])
    return sum(c.completion_tokens for c in keep)


def draft_task(*, task: Task, model_version: ModelVersion | None = None, **params) -> list[CandidateReply]:
    """Draft one task synchronously (the CLI and tests): the same store step as the job."""
    model_version = model_version or task.project.draft_model or default_model_version()
    sampling = sampling_for(task.project, params)
    completions = servable_backend(model_version).chat(task.conversation, sampling)
    store_drafts(task_id=task.pk, model_version=model_version, completions=completions, n=sampling.n,
                 params={"temperature": sampling.temperature, "top_p": sampling.top_p,
                         "max_tokens": sampling.max_tokens})
    return list(task.replies.filter(model_version=model_version, for_ranking=False))


@transaction.atomic
def build_comparisons(*, project: Project, k: int | None = None, task_ids=None) -> int:
    """Turn demonstration tasks with enough replies (model drafts and human-written ones) into
    K-wise comparison tasks over the same conversation. Copies keep their source, model and
    sampling, and point at the reply they came from. Idempotent: identical tasks are not made twice."""
    k = k or project.comparison_k
    sources = Task.objects.filter(project=project, kind=TaskKind.DEMONSTRATION)
    if task_ids:
        sources = sources.filter(pk__in=task_ids)
    created = 0
    for task in sources.prefetch_related("replies").iterator(chunk_size=200):
        replies, seen = [], set()
        # human replies first (they are what a finetune should learn from), then drafts
        for reply in sorted(task.replies.all(), key=lambda r: (r.source == CandidateReply.Source.MODEL, r.pk)):
            text = reply.content.strip()
            if text and text not in seen and not reply.for_ranking:
                seen.add(text)
                replies.append(reply)
        if len(replies) < 2:
            continue
        replies = replies[:k]
        digest = content_hash(TaskKind.COMPARISON, task.conversation, [r.content for r in replies])
        comparison, made = Task.objects.get_or_create(
            project=project, content_hash=digest,
            defaults={"kind": TaskKind.COMPARISON, "conversation": task.conversation,
                      "metadata": {**task.metadata, "source_task": task.pk}},
        )
        if made:
            CandidateReply.objects.bulk_create([
                CandidateReply(task=comparison, content=r.content, source=r.source, model_version=r.model_version,
                               sampling_params=r.sampling_params, parent=r, created_by=r.created_by, for_ranking=True)
                for r in replies
            ])
            created += 1
    return created
