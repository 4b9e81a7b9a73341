"""Celery entry point for finetuning: take the id, call the service."""
from celery import shared_task

from .service import run_finetune_job


@shared_task(name="models_service.run_finetune")
def run_finetune(job_id: int) -> str:
    return run_finetune_job(job_id=job_id).status
