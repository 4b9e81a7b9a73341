"""Queueing a job once its row is committed, without turning a broker outage into a lost job.

``transaction.on_commit(lambda: task.delay(pk))`` raises inside the commit when Redis is down:
the row is stored but the request answers 500 and no message exists. ``enqueue_on_commit`` logs
instead, and the job stays *pending*; the recovery sweep (``annotations.recovery``) queues pending
jobs that waited longer than ``RECOVER_PENDING_AFTER_S``.
"""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def enqueue(task, *args) -> bool:
    try:
        task.delay(*args)
    except Exception as exc:  # noqa: BLE001 - kombu raises several kinds; the sweep is the fallback
        log.warning("could not queue %s%r (%s); the recovery sweep will queue it", task.name, args, exc)
        return False
    return True


def enqueue_on_commit(task, *args) -> None:
    transaction.on_commit(lambda: enqueue(task, *args))
