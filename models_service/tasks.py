"""Celery entry points for model work: take ids, call a service, safe to run twice."""
from celery import shared_task

from django.conf import settings

from annotations.recovery import DB_RETRY, run_locked

from . import critique, drafting, judge, locks, redteam

LOCK = locks.MODEL_JOB


@shared_task(name="models_service.run_drafting_job", **DB_RETRY)
def run_drafting_job(job_id: int) -> str:
    return run_locked(LOCK, job_id, lambda: drafting.run_drafting(job_id=job_id).status)


@shared_task(name="models_service.run_judging_job", **DB_RETRY)
def run_judging_job(job_id: int) -> str:
    return run_locked(LOCK, job_id, lambda: judge.run_judging(job_id=job_id).status)


@shared_task(name="models_service.critique_submission", **DB_RETRY)
def critique_submission(submission_id: int) -> str:
    return run_locked(locks.CRITIQUE, submission_id,
                      lambda: critique.critique_submission(submission_id=submission_id).status)


@shared_task(name="models_service.red_team_turn",
             # two attempts of RED_TEAM_TURN_TIMEOUT each, and room to load and store
             soft_time_limit=2 * settings.RED_TEAM_TURN_TIMEOUT + 30,
             time_limit=2 * settings.RED_TEAM_TURN_TIMEOUT + 60)
def red_team_turn(turn_id: int) -> str:
    return run_locked(locks.RED_TEAM_TURN, turn_id, lambda: redteam.generate_turn(turn_id=turn_id).status)


from .finetune.tasks import run_finetune  # noqa: E402,F401  (Celery autodiscovery)
from .evaluation.tasks import (  # noqa: E402,F401  (Celery autodiscovery)
    build_eval_set_task,
    run_arena_judging_job,
    run_eval_generation_job,
)
