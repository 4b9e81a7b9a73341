"""Celery entry point for finetuning: take the id, call the service."""
from celery import shared_task

from annotations.recovery import DB_RETRY, run_locked

from .service import LOCK, run_finetune_job


@shared_task(name="models_service.run_finetune", **DB_RETRY)
def run_finetune(job_id: int) -> str:
    return run_locked(LOCK, job_id, lambda: run_finetune_job(job_id=job_id).status)
