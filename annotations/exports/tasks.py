"""Celery entry point for exports: take the id, call the service."""
from celery import shared_task

from .. import recovery
from ..recovery import DB_RETRY
from .service import build_snapshot


@shared_task(name="annotations.build_snapshot", **DB_RETRY)
def build_snapshot_task(snapshot_id: int) -> str:
    return recovery.run_locked("snapshot", snapshot_id, lambda: build_snapshot(snapshot_id=snapshot_id).status)
