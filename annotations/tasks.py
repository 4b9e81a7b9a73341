"""Celery entry points: take ids, call a service, safe to run twice."""
from celery import shared_task

from .services.imports import run_import_batch
from .services import task_counts
from .services.leases import reclaim_expired_leases


@shared_task(name="annotations.process_import")
def process_import(batch_id: int) -> str:
    return run_import_batch(batch_id=batch_id).status


@shared_task(name="annotations.expire_leases")
def expire_leases() -> int:
    return reclaim_expired_leases()


@shared_task(name="annotations.compact_task_counts")
def compact_task_counts() -> int:
    return task_counts.compact()
from .exports.tasks import build_snapshot_task  # noqa: E402,F401  (Celery autodiscovery)
from .screening.tasks import scan_import_task  # noqa: E402,F401
