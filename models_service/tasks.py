"""Celery entry points for model work: take ids, call a service, safe to run twice."""
from celery import shared_task

from . import critique, drafting, judge


@shared_task(name="models_service.run_drafting_job")
def run_drafting_job(job_id: int) -> str:
    return drafting.run_drafting(job_id=job_id).status


@shared_task(name="models_service.run_judging_job")
def run_judging_job(job_id: int) -> str:
    return judge.run_judging(job_id=job_id).status


@shared_task(name="models_service.critique_submission")
def critique_submission(submission_id: int) -> str:
    return critique.critique_submission(submission_id=submission_id).status
from .finetune.tasks import run_finetune  # noqa: E402,F401  (Celery autodiscovery)
