"""Which submissions go to the review queue.

A submission is sampled for review when the project reviews everything (``review_rate`` 1), when
it redoes work a reviewer returned, when its annotator has fewer than ``review_new_until``
accepted submissions in the project (new people are always checked), or else with probability
``review_rate``. The draw uses the system's random source: an annotator cannot steer it (the
idempotency key, which the client chooses, plays no part)."""
from __future__ import annotations

import random

from ..models import Project, Submission

_rng = random.SystemRandom()


def needs_review(*, project: Project, annotator, lease_id: int, rng: random.Random | None = None) -> bool:
    rate = project.review_rate
    if rate >= 1:
        return True  # the default: no query at all
    if Submission.objects.filter(lease_id=lease_id, status=Submission.Status.REJECTED).exists():
        return True
    n = project.review_new_until
    if n and Submission.objects.filter(project=project, annotator=annotator,
                                       status=Submission.Status.ACCEPTED)[:n].count() < n:
        return True
    if rate <= 0:
        return False
    return (rng or _rng).random() < rate
