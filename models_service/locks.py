"""Run-lock names of model jobs (annotations.runlocks): the Celery task holds the lock named after
its argument while it runs, and the recovery sweep (annotations.recovery) probes the same name."""

MODEL_JOB = "model_job"  # drafting, judging, eval generation and arena judging: one row of ModelJob each
EVAL_SET = "eval_set"
CRITIQUE = "critique"  # by submission id: the task's argument
RED_TEAM_TURN = "red_team_turn"
