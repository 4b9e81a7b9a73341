"""Celery entry point for exports: take the id, call the service."""
from celery import shared_task

from .service import build_snapshot


@shared_task(name="annotations.build_snapshot")
def build_snapshot_task(snapshot_id: int) -> str:
    return build_snapshot(snapshot_id=snapshot_id).status
