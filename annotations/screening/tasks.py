"""Celery entry point for screening an import: take the id, call the service."""
from celery import shared_task

from .service import scan_import


@shared_task(name="annotations.scan_import")
def scan_import_task(batch_id: int) -> str:
    scan = scan_import(batch_id=batch_id)
    return scan.status if scan else "no finished import"
