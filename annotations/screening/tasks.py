"""Celery entry point for screening an import: take the id, call the service."""
from celery import shared_task

from .. import recovery
from ..recovery import DB_RETRY
from .service import scan_import


@shared_task(name="annotations.scan_import", **DB_RETRY)
def scan_import_task(batch_id: int) -> str:
    def run() -> str:
        scan = scan_import(batch_id=batch_id)
        return scan.status if scan else "no finished import"

    return recovery.run_locked("scan_import", batch_id, run)
