"""Task completion: a task is complete once ``project.overlap`` of its submissions count as
accepted, i.e. accepted by a reviewer, or not sampled for review and not rejected. The services
that change a submission's standing move ``Task.accepted_count`` in the same UPDATE as the other
counters and stamp or clear ``completed_at``, so "which tasks are complete" is an index scan,
never a count. Gold tasks are never complete: they are not part of the dataset."""
from __future__ import annotations

from datetime import datetime

from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce

from ..models import Project, Submission, Task


def counts_as_accepted(*, status: str, review_required: bool) -> bool:
    return status == Submission.Status.ACCEPTED or (status == Submission.Status.SUBMITTED and not review_required)


def accepted_update(*, overlap: int, delta: int, now: datetime) -> dict:
    """UPDATE kwargs that move ``accepted_count`` by ``delta`` and keep ``completed_at`` in line
    (an UPDATE's SET sees the old values, so the delta is applied inside the condition)."""
    if not delta:
        return {}
    return {
        "accepted_count": F("accepted_count") + delta,
        "completed_at": Case(
            When(accepted_count__gte=overlap - delta, then=Coalesce(F("completed_at"), Value(now))),
            default=Value(None),
        ),
    }


ACCEPTED_FILTER = Q(status=Submission.Status.ACCEPTED) | Q(status=Submission.Status.SUBMITTED,
                                                             review_required=False)


def recount_task(*, task: Task, overlap: int, now: datetime) -> None:
    """Recount one task's accepted submissions from the rows (after it stops being gold)."""
    n = task.submissions.filter(ACCEPTED_FILTER).count()
    Task.objects.filter(pk=task.pk).update(accepted_count=n, completed_at=(
        Coalesce(F("completed_at"), Value(now)) if n >= overlap else None))


def recompute_completion(*, project: Project, now: datetime) -> int:
    """After the overlap changed: stamp tasks that are now complete, clear those that are not."""
    k = project.overlap
    tasks = Task.objects.filter(project=project).exclude(state=Task.State.GOLD)
    n = tasks.filter(accepted_count__gte=k, completed_at__isnull=True).update(completed_at=now)
    n += tasks.filter(accepted_count__lt=k, completed_at__isnull=False).update(completed_at=None)
    return n

