"""Build labelled work directly (no lease workflow): what the exporter reads."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from annotations.models import CandidateReply, Lease, ModelVersion, Submission, Task, TaskKind
from annotations.services.imports import content_hash
from tests.factories import UserFactory


def _lease(project, task, annotator, version):
    now = timezone.now()
    return Lease.objects.create(project=project, task=task, annotator=annotator, status=Lease.Status.SUBMITTED,
                                created_at=now, expires_at=now + timedelta(hours=1), instruction_version=version)


def _task(project, kind, conversation):
    return Task.objects.create(project=project, kind=kind, conversation=conversation,
                               content_hash=content_hash(kind, conversation, [str(Task.objects.count())]))


def demonstration(project, conversation, texts, *, source="human", status="submitted", flags=None, version=None,
                  annotators=None):
    """One demonstration task answered once per text (one annotator each)."""
    version = version or project.current_instructions
    task = _task(project, TaskKind.DEMONSTRATION, conversation)
    subs = []
    for i, text in enumerate(texts):
        annotator = annotators[i] if annotators else UserFactory()
        reply = CandidateReply.objects.create(task=task, content=text, source=source)
        subs.append(Submission.objects.create(
            project=project, task=task, lease=_lease(project, task, annotator, version), annotator=annotator,
            kind=TaskKind.DEMONSTRATION, instruction_version=version, idempotency_key=f"d{task.pk}-{i}",
            status=status, reply=reply, flags=flags or {}))
    return task, subs


def comparison(project, conversation, replies, rankings, *, flags=None, status="submitted", sources=None):
    """A comparison task with ``replies`` (texts) and one submission per ranking; rankings use reply
    indexes (0-based) and are translated to ids. Returns (task, [reply ids])."""
    task = _task(project, TaskKind.COMPARISON, conversation)
    model = None
    ids = []
    for i, text in enumerate(replies):
        source = (sources or {}).get(i, "human")
        if source == "model" and model is None:
            model = ModelVersion.objects.get_or_create(name="drafter")[0]
        ids.append(CandidateReply.objects.create(task=task, content=text, source=source, for_ranking=True,
                                                 model_version=model if source == "model" else None).pk)
    for n, ranking in enumerate(rankings):
        annotator = UserFactory()
        Submission.objects.create(
            project=project, task=task, lease=_lease(project, task, annotator, project.current_instructions),
            annotator=annotator, kind=TaskKind.COMPARISON, instruction_version=project.current_instructions,
            idempotency_key=f"c{task.pk}-{n}", status=status,
            ranking=[[ids[i] for i in group] for group in ranking],
            flags={str(ids[i]): names for i, names in (flags or {}).items()} if n == 0 else {})
    return task, ids
