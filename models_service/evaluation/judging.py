"""The judge's votes on an eval run's battles: the position-swapped judge of
``models_service.judge`` asked in both orders (left reply as A, then right reply as A). A side wins
only when both orders agree; otherwise the vote is a tie, which cancels a small model's strong
position bias instead of recording it."""
from __future__ import annotations

import asyncio

from django.conf import settings
from django.db.models import Exists, OuterRef

from .. import jobs
from ..backends import servable_backend
from ..judge import ask_judge, combine
from ..models import ModelJob
from .generation import fail_job
from .models import Battle, Choice, JudgeVote
from .runs import advance_run

OUTCOME_TO_CHOICE = {"a": Choice.A, "b": Choice.B, "tie": Choice.TIE}


def run_arena_judging(*, job_id: int) -> ModelJob:
    job = ModelJob.objects.select_related("project", "model_version").get(pk=job_id)
    run_id = job.params["eval_run"]
    judge = job.model_version
    battles = Battle.objects.filter(run_id=run_id)
    todo = battles.filter(~Exists(JudgeVote.objects.filter(battle=OuterRef("pk"), judge_model=judge)))
    total = battles.count()
    if not jobs.start(job, total=total, skipped=total - todo.count()):
        advance_run(run_id=run_id)  # cancelled (or finished) before this worker took it: the run moves on
        return job
    try:
        backend = servable_backend(judge)
    except Exception as exc:  # noqa: BLE001 - reported on the job and the run
        job = fail_job(job, f"could not serve the judge {judge.name}: {type(exc).__name__}: {exc}")
        advance_run(run_id=run_id)
        return job
    instructions = job.project.current_instructions

    def items():
        yield from todo.values_list("id", "prompt__conversation", "left__content", "right__content").iterator(
            chunk_size=200)

    async def generate(http, item):
        _battle_id, conversation, left, right = item
        return await asyncio.gather(
            ask_judge(backend, http, instructions=instructions, conversation=conversation, first=left, second=right),
            ask_judge(backend, http, instructions=instructions, conversation=conversation, first=right, second=left))

    def store(item, answers) -> int:
        left_first, right_first = answers
        JudgeVote.objects.get_or_create(
            battle_id=item[0], judge_model=judge,
            defaults={"left_first": left_first, "right_first": right_first, "instruction_version": instructions,
                      "choice": OUTCOME_TO_CHOICE[combine(left_first, right_first)]})
        return 0

    # two requests per battle
    concurrency = max(1, settings.DRAFT_CONCURRENCY // 2)
    job = jobs.run_batch(job=job, items=items(), generate=generate, store=store,
                         open_http=lambda: backend.async_http(settings.DRAFT_CONCURRENCY), concurrency=concurrency)
    advance_run(run_id=run_id)
    return job
