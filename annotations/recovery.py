"""Finding background jobs that a fault interrupted or lost, and queueing them again.

Two faults leave a job row that no worker will ever touch:

- *running* but nobody runs it: the worker was killed (SIGKILL, OOM, host lost) or its database
  connection dropped mid-job. Its advisory lock (``annotations.runlocks``) is free, which nothing
  but an interruption explains, so the job goes back to *pending* and is queued again right away. The broker would redeliver
  the message too, but only after its visibility timeout (an hour), and not at all if Redis lost
  it;
- *pending* with no message: Redis restarted without persistence, or was unreachable when the
  job was queued (``annotations.queueing``). A job pending for longer than
  ``RECOVER_PENDING_AFTER_S`` is queued again, at most once per that period.

Queueing twice is safe: every job task takes the job's run lock first and leaves a job that
another worker runs, or that has finished, alone. A job interrupted ``RECOVERY_MAX_ATTEMPTS``
times is failed with the reason rather than retried for ever.

The sweep runs on every worker start (``labelstudio_app.celery``) and every
``RECOVERY_INTERVAL_S`` from beat. Each app registers its job tables here (``models_service``
from its ``AppConfig.ready``), so this module imports no other app.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from . import runlocks

log = logging.getLogger(__name__)
BATCH = 200
# Celery options for job tasks: a job whose database connection dropped is tried again once the
# database is back. It holds no run lock meanwhile, so the sweep may queue it too; whichever comes
# first runs it and the other finds it taken or finished.
DB_RETRY = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 2, "retry_backoff_max": 30,
            "max_retries": 8}


@dataclass(frozen=True)
class JobKind:
    lock: str  # the name the job's task holds its run lock under
    model: type
    task: str  # Celery task name, called with the row's id
    give_up: Callable[[int, str], None]  # mark the row failed with this reason
    only: dict = field(default_factory=dict)  # extra filter (e.g. one ModelJob kind)
    running: str = "running"
    pending: str = "pending"


KINDS: list[JobKind] = []


def register(kind: JobKind) -> None:
    if all((k.lock, k.task) != (kind.lock, kind.task) for k in KINDS):
        KINDS.append(kind)


def run_locked(lock: str, job_id: int, run: Callable[[], str]) -> str:
    """What every job task does: run the job only while holding its lock."""
    with runlocks.hold(lock, job_id) as mine:
        if not mine:
            return "running in another worker"
        return run()


def sweep(*, now=None) -> dict[str, int]:
    """Queue interrupted and lost jobs again. Returns counts by kind of action."""
    from celery import current_app

    now = now or timezone.now()
    counts = {"interrupted": 0, "lost": 0, "given_up": 0}
    for kind in KINDS:
        rows = kind.model.objects.filter(**kind.only)
        if runlocks.supported():
            for pk in rows.filter(status=kind.running).order_by("pk").values_list("pk", flat=True)[:BATCH]:
                if runlocks.running_elsewhere(kind.lock, pk):
                    continue
                attempts = _count(f"recovery-attempts:{kind.lock}:{pk}")
                if attempts > settings.RECOVERY_MAX_ATTEMPTS:
                    kind.give_up(pk, f"interrupted {attempts - 1} times (worker lost or database unreachable); "
                                     "start it again")
                    counts["given_up"] += 1
                    continue
                # Back to pending first: until a worker takes it, later sweeps treat it as queued.
                if rows.filter(pk=pk, status=kind.running).update(status=kind.pending):
                    log.warning("%s %s was interrupted (no worker holds it); queueing it again", kind.lock, pk)
                    _once_per_period(f"recovery-pending:{kind.lock}:{pk}")
                    current_app.send_task(kind.task, args=[pk])
                    counts["interrupted"] += 1
        cutoff = now - timedelta(seconds=settings.RECOVER_PENDING_AFTER_S)
        for pk in rows.filter(status=kind.pending, created_at__lte=cutoff).order_by("pk").values_list(
                "pk", flat=True)[:BATCH]:
            if runlocks.supported() and runlocks.running_elsewhere(kind.lock, pk):
                continue  # a worker has just taken it
            if _once_per_period(f"recovery-pending:{kind.lock}:{pk}"):
                current_app.send_task(kind.task, args=[pk])
                counts["lost"] += 1
    return counts


def _count(key: str) -> int:
    try:
        cache.add(key, 0, timeout=86400)
        return cache.incr(key)
    except Exception:  # noqa: BLE001 - without the cache the cap is off, the recovery is not
        return 1


def _once_per_period(key: str) -> bool:
    try:
        return cache.add(key, 1, timeout=settings.RECOVER_PENDING_AFTER_S)
    except Exception:  # noqa: BLE001
        return True
