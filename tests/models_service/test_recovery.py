"""The recovery sweep finds a labelled submission whose critique message was lost before any worker
made its row (Redis down at submit, or restarted): it queues the critique on the real broker, once
per period, and leaves submissions that have their critique, red-team outcomes and fresh ones alone.
(Interrupted critiques, with a worker killed mid-job, are in tests/integration/test_faults.py.)"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from django.core.cache import cache
from django.utils import timezone

from annotations import recovery
from annotations.models import ModelVersion, Submission, TaskKind
from annotations.services.leases import lease_next_task
from annotations.services.submissions import submit_demonstration
from models_service.models import Critique
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


def queued_critiques(broker, queue: str) -> list[tuple[bytes, list]]:
    out = []
    for raw in broker.lrange(queue, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "models_service.critique_submission":
            out.append((raw, json.loads(message["headers"]["argsrepr"].replace("(", "[").replace(",)", "]")
                                         .replace(")", "]"))))
    return out


def test_a_submission_left_without_its_critique_is_queued_once(project, annotator, settings):
    settings.CRITIQUE_ON_SUBMIT = True
    settings.RECOVER_PENDING_AFTER_S = 60
    version = ModelVersion.objects.get_or_create(name=settings.MODEL_NAME)[0]
    submissions = []
    for text in ("First.", "Second.", "Third."):
        TaskFactory(project=project, kind=TaskKind.DEMONSTRATION)
        lease = lease_next_task(project=project, annotator=annotator)
        submissions.append(submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key=text,
                                                text=text))
    lost, critiqued, fresh = submissions
    Submission.objects.filter(pk__in=[lost.pk, critiqued.pk]).update(created_at=timezone.now() - timedelta(minutes=5))
    Critique.objects.create(submission=critiqued, model_version=version,
                            instruction_version=critiqued.instruction_version, status="done")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    # Critiques are background work: they go to their own queue, never the default one.
    queue = settings.CELERY_BACKGROUND_QUEUE
    cache.delete_many([f"recovery-pending:critique:{s.pk}" for s in submissions])
    before = {raw for raw, _args in queued_critiques(broker, queue)}
    default = settings.CELERY_TASK_DEFAULT_QUEUE
    default_before = {raw for raw, _args in queued_critiques(broker, default)}
    try:
        first = recovery.sweep()
        again = recovery.sweep()  # within the period: not queued a second time
        sent = [args for raw, args in queued_critiques(broker, queue) if raw not in before]
        assert sent == [[lost.pk]], sent
        assert first["lost"] >= 1 and again["lost"] == 0
        assert not [a for raw, a in queued_critiques(broker, default) if raw not in default_before]
    finally:
        for raw, _args in queued_critiques(broker, queue):
            if raw not in before:
                broker.lrem(queue, 0, raw)
    settings.CRITIQUE_ON_SUBMIT = False  # switched off, the sweep does not look
    cache.delete(f"recovery-pending:critique:{lost.pk}")
    assert recovery.sweep()["lost"] == 0
