"""Celery entry points for evaluation: take ids, call a service, safe to run twice.

Generation and judging jobs are ``ModelJob`` rows like drafting: they run under the same run lock
(one runner per job) and the recovery sweep queues an interrupted one again
(``models_service.apps``)."""
from celery import shared_task

from annotations.recovery import DB_RETRY, run_locked

from .eval_sets import build_eval_set
from .generation import run_generation
from .judging import run_arena_judging

MODEL_JOB_LOCK = "model_job"  # models_service.tasks.LOCK: one ModelJob row, one lock name


@shared_task(name="models_service.build_eval_set")
def build_eval_set_task(eval_set_id: int) -> str:
    return build_eval_set(eval_set_id=eval_set_id).status


@shared_task(name="models_service.run_eval_generation_job", **DB_RETRY)
def run_eval_generation_job(job_id: int) -> str:
    return run_locked(MODEL_JOB_LOCK, job_id, lambda: run_generation(job_id=job_id).status)


@shared_task(name="models_service.run_arena_judging_job", **DB_RETRY)
def run_arena_judging_job(job_id: int) -> str:
    return run_locked(MODEL_JOB_LOCK, job_id, lambda: run_arena_judging(job_id=job_id).status)
