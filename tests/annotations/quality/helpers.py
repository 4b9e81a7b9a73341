"""Labelled work built directly (no lease workflow), with chosen annotators, for agreement and
analytics tests."""
from __future__ import annotations

import itertools
from datetime import timedelta

from django.utils import timezone

from annotations.models import CandidateReply, Lease, Submission, Task, TaskKind
from annotations.services.imports import content_hash

_n = itertools.count()


def ranked_task(project, k, work, *, version=None, status="submitted", gold=False):
    """A comparison task with ``k`` replies; ``work`` is [(annotator, ranking by reply index,
    ratings by reply index)]. Returns (task, reply ids, submissions)."""
    n = next(_n)
    conversation = [{"role": "user", "content": f"Rank these {n}"}]
    task = Task.objects.create(project=project, kind=TaskKind.COMPARISON, conversation=conversation,
                               content_hash=content_hash("comparison", conversation, [str(n)]),
                               state=Task.State.GOLD if gold else Task.State.OPEN)
    ids = [CandidateReply.objects.create(task=task, content=f"reply {i}", source="human", for_ranking=True).pk
           for i in range(k)]
    version = version or project.current_instructions
    subs = []
    now = timezone.now()
    for m, (annotator, ranking, *rest) in enumerate(work):
        ratings = rest[0] if rest else {}
        lease = Lease.objects.create(project=project, task=task, annotator=annotator, status="submitted",
                                     created_at=now, expires_at=now + timedelta(hours=1), instruction_version=version)
        subs.append(Submission.objects.create(
            project=project, task=task, lease=lease, annotator=annotator, kind=TaskKind.COMPARISON,
            instruction_version=version, idempotency_key=f"t{task.pk}-{m}", status=status,
            ranking=[[ids[i] for i in group] for group in ranking],
            ratings={str(ids[i]): scores for i, scores in ratings.items()}))
    return task, ids, subs
