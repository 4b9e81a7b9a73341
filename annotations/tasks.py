"""Celery entry points: take ids, call a service, safe to run twice."""
from celery import shared_task

from . import recovery
from .recovery import DB_RETRY
from .services.imports import run_import_batch
from .services import task_counts
from .services.leases import reclaim_expired_leases


@shared_task(name="annotations.process_import", **DB_RETRY)
def process_import(batch_id: int) -> str:
    return recovery.run_locked("import", batch_id, lambda: run_import_batch(batch_id=batch_id).status)


@shared_task(name="annotations.recover_interrupted_work")
def recover_interrupted_work() -> dict:
    return recovery.sweep()


@shared_task(name="annotations.expire_leases")
def expire_leases() -> int:
    return reclaim_expired_leases()


@shared_task(name="annotations.compact_task_counts")
def compact_task_counts() -> int:
    return task_counts.compact()
from .exports.tasks import build_snapshot_task  # noqa: E402,F401  (Celery autodiscovery)
from .screening.tasks import scan_import_task  # noqa: E402,F401
