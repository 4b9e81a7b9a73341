"""AI pre-ranking of comparison tasks, and how well it agrees with people.

Every pair of replies is judged twice, once in each order (position swap). A preference counts only
when both orders agree; otherwise the pair is a tie - small models are strongly biased towards one
position, and this cancels that bias instead of recording it. Replies are then ranked by Copeland
score (pairs won minus pairs lost); equal scores form a tie-group.
"""
from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from annotations.models import InstructionVersion, ModelVersion, Task, TaskKind
from annotations.queueing import enqueue_on_commit

from . import jobs
from .backends import backend_for, default_model_version
from .client import Sampling, json_schema_format
from .concurrency import run_blocking
from .models import AIRanking, ModelJob

PROMPTS = Path(__file__).with_name("prompts")
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string", "maxLength": 200}, "better": {"type": "string", "enum": ["A", "B", "tie"]}},
    "required": ["reason", "better"],
    "additionalProperties": False,
}


def pair_messages(*, instructions: InstructionVersion | None, conversation, first: str, second: str) -> list[dict]:
    system = (PROMPTS / "judge_system.txt").read_text().format(
        version=instructions.number if instructions else 0,
        instructions=instructions.body if instructions else "Prefer helpful, truthful and harmless replies.",
    )
    data = {"conversation": conversation, "A": first, "B": second}
    user = (PROMPTS / "judge_user.txt").read_text().format(data=json.dumps(data, ensure_ascii=False))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_choice(text: str, finish_reason: str) -> str:
    """'A', 'B' or 'tie'; an unusable reply counts as no preference ('tie')."""
    if finish_reason == "length":
        return "tie"
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return "tie"
    choice = value.get("better") if isinstance(value, dict) else None
    return choice if choice in ("A", "B", "tie") else "tie"


def combine(a_first: str, b_first: str) -> str:
    """Outcome for (a, b) from the two orders: a_first judged (A=a, B=b), b_first judged (A=b, B=a)."""
    if a_first == "A" and b_first == "B":
        return "a"
    if a_first == "B" and b_first == "A":
        return "b"
    return "tie"


def rank_from_pairs(reply_ids: list[int], pairs: list[dict]) -> list[list[int]]:
    score = {rid: 0 for rid in reply_ids}
    for p in pairs:
        if p["outcome"] == "a":
            score[p["a"]] += 1
            score[p["b"]] -= 1
        elif p["outcome"] == "b":
            score[p["b"]] += 1
            score[p["a"]] -= 1
    groups: dict[int, list[int]] = {}
    for rid, s in score.items():
        groups.setdefault(s, []).append(rid)
    return [sorted(groups[s]) for s in sorted(groups, reverse=True)]


SAMPLING = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=96)


async def ask_judge(backend, http, *, instructions, conversation, first: str, second: str) -> str:
    """One judgement of one order: 'A' (``first``), 'B' (``second``) or 'tie'. Also used by the
    arena (models_service.evaluation.judging)."""
    messages = pair_messages(instructions=instructions, conversation=conversation, first=first, second=second)
    completion = (await backend.achat(http, messages, SAMPLING,
                                      response_format=json_schema_format("judgement", JUDGE_SCHEMA)))[0]
    return parse_choice(completion.text, completion.finish_reason)


async def judge_pairs(backend, http, task: Task, replies: dict[int, str], instructions) -> list[dict]:
    async def ask(first, second):
        return await ask_judge(backend, http, instructions=instructions, conversation=task.conversation,
                               first=first, second=second)

    ids = sorted(replies)
    pairs = list(itertools.combinations(ids, 2))
    answers = await asyncio.gather(*(ask(replies[a], replies[b]) for a, b in pairs),
                                   *(ask(replies[b], replies[a]) for a, b in pairs))
    forward, backward = answers[: len(pairs)], answers[len(pairs):]
    return [{"a": a, "b": b, "a_first": f, "b_first": r, "outcome": combine(f, r)}
            for (a, b), f, r in zip(pairs, forward, backward, strict=True)]


@transaction.atomic
def store_ranking(*, task: Task, model_version: ModelVersion, instructions, pairs: list[dict]) -> AIRanking:
    reply_ids = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    ranking, _ = AIRanking.objects.update_or_create(
        task=task, model_version=model_version,
        defaults={"ranking": rank_from_pairs(reply_ids, pairs), "pairs": pairs, "status": AIRanking.Status.DONE,
                  "instruction_version": instructions, "error": ""},
    )
    return ranking


def judge_task(*, task: Task, model_version: ModelVersion | None = None) -> AIRanking:
    model_version = model_version or default_model_version()
    backend = backend_for(model_version)
    replies = dict(task.replies.filter(for_ranking=True).values_list("id", "content"))
    instructions = task.project.current_instructions

    async def run():
        async with backend.async_http(8) as http:
            return await judge_pairs(backend, http, task, replies, instructions)

    return store_ranking(task=task, model_version=model_version, instructions=instructions, pairs=run_blocking(run()))


@transaction.atomic
def create_judging_job(*, project, created_by=None, model_version: ModelVersion | None = None, **params) -> ModelJob:
    from .tasks import run_judging_job

    job = ModelJob.objects.create(project=project, kind=ModelJob.Kind.JUDGING,
                                  model_version=model_version or default_model_version(), params=params,
                                  created_by=created_by)
    enqueue_on_commit(run_judging_job, job.pk)
    return job


def run_judging(*, job_id: int) -> ModelJob:
    job = ModelJob.objects.select_related("project", "model_version").get(pk=job_id)
    selected = Task.objects.filter(project=job.project, kind=TaskKind.COMPARISON)
    if job.params.get("task_ids"):
        selected = selected.filter(pk__in=job.params["task_ids"])
    todo = selected.exclude(ai_rankings__model_version=job.model_version)
    total = selected.count()
    if not jobs.start(job, total=total, skipped=total - todo.count()):
        return job
    backend = backend_for(job.model_version)
    instructions = job.project.current_instructions

    def items():
        for task in todo.prefetch_related("replies").iterator(chunk_size=200):
            yield task, {r.pk: r.content for r in task.replies.all() if r.for_ranking}

    async def generate(http, item):
        task, replies = item
        return await judge_pairs(backend, http, task, replies, instructions)

    def store(item, pairs) -> int:
        store_ranking(task=item[0], model_version=job.model_version, instructions=instructions, pairs=pairs)
        return 0

    # Each item already sends 2 * K(K-1)/2 requests at once; fewer items in flight keep it bounded.
    concurrency = max(1, settings.DRAFT_CONCURRENCY // 4)
    return jobs.run_batch(job=job, items=items(), generate=generate, store=store,
                          open_http=lambda: backend.async_http(settings.DRAFT_CONCURRENCY), concurrency=concurrency)

