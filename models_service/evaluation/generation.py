"""Generation for an eval run: one ``ModelJob`` per model version replies to every prompt of the
eval set, through the same batch machinery as drafting (``models_service.jobs``: concurrent
requests, progress, cancel, idempotent re-runs). ``max_tokens`` is always set; every reply records
its model version and sampling.

A model version that is a LoRA adapter is served by vLLM under its own name: the adapter is loaded
into the running server (runtime LoRA, ``finetune.serving``) before the first request.
"""
from __future__ import annotations

from django.conf import settings
from django.db.models import Exists, OuterRef

from annotations.models import ModelVersion

from .. import jobs
from ..backends import servable_backend
from ..client import Sampling
from ..jobs import fail as fail_job
from ..models import ModelJob
from .models import EvalPrompt, EvalReply, EvalRun
from .runs import advance_run


def store_reply(*, run: EvalRun, prompt_id: int, model_version: ModelVersion, completion, params: dict) -> int:
    """Keep the first reply per (run, prompt, model): a redelivered job adds nothing twice."""
    _reply, created = EvalReply.objects.get_or_create(
        run=run, prompt_id=prompt_id, model_version=model_version,
        defaults={"content": completion.text, "finish_reason": completion.finish_reason,
                  "completion_tokens": completion.completion_tokens, "sampling_params": params})
    return completion.completion_tokens if created else 0


def run_generation(*, job_id: int) -> ModelJob:
    job = ModelJob.objects.select_related("project", "model_version").get(pk=job_id)
    run = EvalRun.objects.select_related("eval_set").get(pk=job.params["eval_run"])
    version = job.model_version
    prompts = EvalPrompt.objects.filter(eval_set=run.eval_set)
    todo = prompts.filter(~Exists(EvalReply.objects.filter(run=run, model_version=version, prompt=OuterRef("pk"))))
    total = prompts.count()
    if not jobs.start(job, total=total, skipped=total - todo.count()):
        advance_run(run_id=run.pk)  # cancelled (or finished) before this worker took it: the run moves on
        return job
    try:
        backend = servable_backend(version)
    except Exception as exc:  # noqa: BLE001 - the reason goes to the job and the run, never lost
        job = fail_job(job, f"could not serve {version.name}: {type(exc).__name__}: {exc}")
        advance_run(run_id=run.pk)
        return job
    s = run.sampling
    sampling = Sampling(n=1, temperature=s["temperature"], top_p=s["top_p"], max_tokens=s["max_tokens"],
                        seed=s.get("seed"))
    params = {k: s[k] for k in ("temperature", "top_p", "max_tokens", "seed") if k in s}

    def items():
        yield from todo.values_list("id", "conversation").iterator(chunk_size=500)

    async def generate(http, item):
        return (await backend.achat(http, item[1], sampling))[0]

    def store(item, completion) -> int:
        return store_reply(run=run, prompt_id=item[0], model_version=version, completion=completion, params=params)

    job = jobs.run_batch(job=job, items=items(), generate=generate, store=store,
                         open_http=lambda: backend.async_http(settings.DRAFT_CONCURRENCY),
                         concurrency=settings.DRAFT_CONCURRENCY)
    advance_run(run_id=run.pk)
    return job
