"""Celery entry points for evaluation: take ids, call a service, safe to run twice."""
from celery import shared_task

from .eval_sets import build_eval_set
from .generation import run_generation
from .judging import run_arena_judging


@shared_task(name="models_service.build_eval_set")
def build_eval_set_task(eval_set_id: int) -> str:
    return build_eval_set(eval_set_id=eval_set_id).status


@shared_task(name="models_service.run_eval_generation_job")
def run_eval_generation_job(job_id: int) -> str:
    return run_generation(job_id=job_id).status


@shared_task(name="models_service.run_arena_judging_job")
def run_arena_judging_job(job_id: int) -> str:
    return run_arena_judging(job_id=job_id).status
