"""Celery entry points for evaluation: take ids, call a service, safe to run twice. Each runs
under its job's run lock, so the recovery sweep (annotations.recovery) can tell an interrupted job
from a running one."""
from celery import shared_task

from annotations.recovery import DB_RETRY, run_locked

from ..locks import EVAL_SET, MODEL_JOB
from .eval_sets import build_eval_set
from .generation import run_generation
from .judging import run_arena_judging


@shared_task(name="models_service.build_eval_set", **DB_RETRY)
def build_eval_set_task(eval_set_id: int) -> str:
    return run_locked(EVAL_SET, eval_set_id, lambda: build_eval_set(eval_set_id=eval_set_id).status)


@shared_task(name="models_service.run_eval_generation_job", **DB_RETRY)
def run_eval_generation_job(job_id: int) -> str:
    return run_locked(MODEL_JOB, job_id, lambda: run_generation(job_id=job_id).status)


@shared_task(name="models_service.run_arena_judging_job", **DB_RETRY)
def run_arena_judging_job(job_id: int) -> str:
    return run_locked(MODEL_JOB, job_id, lambda: run_arena_judging(job_id=job_id).status)
