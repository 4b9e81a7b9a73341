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

Some job rows have no *running* state, only *pending* until the work lands (a critique, a
red-team reply): for them a worker that takes the lock also leaves a mark in the cache
(``run_locked``) and wipes it when the run ends. A pending row with that mark and a free lock was
interrupted; without the mark it is waiting in the queue, and only the *pending* rule applies. If
the cache itself was lost, so were the marks, and the pending rule still finds the job.

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
    task: str  # Celery task name, called with the row's ``arg``
    give_up: Callable[[int, str], None]  # mark the row (by pk) failed with this reason
    only: dict = field(default_factory=dict)  # extra filter (e.g. one ModelJob kind)
    running: str | None = "running"  # None: the row stays pending while it runs (see above)
    pending: str = "pending"
    arg: str = "pk"  # the field the task is called with, and its run lock is named after
    since: str = "created_at"  # when the row started waiting (the pending rule)
    # Work that should have a row by now and has none (its message was lost before a worker made
    # the row): called with the pending rule's cutoff, returns task arguments.
    missing: Callable[[object], list] | None = None


KINDS: list[JobKind] = []


def register(kind: JobKind) -> None:
    if all((k.lock, k.task) != (kind.lock, kind.task) for k in KINDS):
        KINDS.append(kind)


def run_locked(lock: str, job_id: int, run: Callable[[], str]) -> str:
    """What every job task does: run the job only while holding its lock (and say so in the cache
    while it runs: a killed worker leaves the mark behind)."""
    with runlocks.hold(lock, job_id) as mine:
        if not mine:
            return "running in another worker"
        key = _started_key(lock, job_id)
        _cache_call("set", key, 1, timeout=2 * 86400)
        try:
            return run()
        finally:
            _cache_call("delete", key)


def _started_key(lock: str, job_id) -> str:
    return f"recovery-started:{lock}:{job_id}"


def _cache_call(name: str, *args, **kwargs):
    try:
        return getattr(cache, name)(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the mark is a hint; without the cache the pending rule still holds
        log.warning("cache unavailable for recovery marks (%s)", name)
        return None


def sweep(*, now=None) -> dict[str, int]:
    """Queue interrupted and lost jobs again. Returns counts by kind of action."""
    from celery import current_app

    now = now or timezone.now()
    counts = {"interrupted": 0, "lost": 0, "given_up": 0}
    for kind in KINDS:
        rows = kind.model.objects.filter(**kind.only)
        if runlocks.supported():
            for pk, key in _interrupted(kind, rows):
                if runlocks.running_elsewhere(kind.lock, key):
                    continue
                attempts = _count(f"recovery-attempts:{kind.lock}:{key}")
                if attempts > settings.RECOVERY_MAX_ATTEMPTS:
                    kind.give_up(pk, f"interrupted {attempts - 1} times (worker lost or database unreachable); "
                                     "start it again")
                    _cache_call("delete", _started_key(kind.lock, key))
                    counts["given_up"] += 1
                    continue
                if kind.running:
                    # Back to pending first: until a worker takes it, later sweeps treat it as queued.
                    if not rows.filter(pk=pk, status=kind.running).update(status=kind.pending):
                        continue
                else:
                    _cache_call("delete", _started_key(kind.lock, key))
                log.warning("%s %s was interrupted (no worker holds it); queueing it again", kind.lock, key)
                _once_per_period(f"recovery-pending:{kind.lock}:{key}")
                current_app.send_task(kind.task, args=[key])
                counts["interrupted"] += 1
        cutoff = now - timedelta(seconds=settings.RECOVER_PENDING_AFTER_S)
        for pk, key in rows.filter(status=kind.pending, **{f"{kind.since}__lte": cutoff}).order_by("pk").values_list(
                "pk", kind.arg)[:BATCH]:
            if runlocks.supported() and runlocks.running_elsewhere(kind.lock, key):
                continue  # a worker has just taken it
            if _once_per_period(f"recovery-pending:{kind.lock}:{key}"):
                current_app.send_task(kind.task, args=[key])
                counts["lost"] += 1
        for key in (kind.missing(cutoff) if kind.missing else ()):
            if runlocks.supported() and runlocks.running_elsewhere(kind.lock, key):
                continue
            if _once_per_period(f"recovery-pending:{kind.lock}:{key}"):
                log.warning("%s %s has no row yet (its message was lost); queueing it again", kind.lock, key)
                current_app.send_task(kind.task, args=[key])
                counts["lost"] += 1
    return counts


def _interrupted(kind: JobKind, rows) -> list[tuple[int, object]]:
    """(pk, task argument) of the rows that a worker began and may have dropped: *running* rows,
    or for kinds without that state, pending rows whose run left its mark in the cache."""
    if kind.running:
        return list(rows.filter(status=kind.running).order_by("pk").values_list("pk", kind.arg)[:BATCH])
    found = []
    last = 0
    while True:  # pending rows can be many (a queue backlog): read the marks in pages
        page = list(rows.filter(status=kind.pending, pk__gt=last).order_by("pk").values_list("pk", kind.arg)[:1000])
        if not page:
            return found
        marks = _cache_call("get_many", [_started_key(kind.lock, key) for _pk, key in page]) or {}
        found += [(pk, key) for pk, key in page if _started_key(kind.lock, key) in marks]
        if len(found) >= BATCH:
            return found[:BATCH]
        last = page[-1][0]


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
