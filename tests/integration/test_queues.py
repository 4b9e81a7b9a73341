"""Critiques wait behind every other job: a real worker on real Redis takes the default queue first.

Each test names its own queue (CELERY_TASK_DEFAULT_QUEUE), so the session's worker never takes
these messages; the jobs are sent by a separate process with the product's settings, so routing
is exercised as a deployment has it.
"""
from __future__ import annotations

import re
import subprocess
import sys
import uuid

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.processes import ROOT, CeleryWorker, database_url, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SEND = """
from annotations.tasks import expire_leases
from models_service.tasks import critique_submission
for n in range(3):
    critique_submission.delay(-1 - n)  # no such submission: the job fails at once, after it was taken
for n in range(3):
    expire_leases.delay()
"""


def send(env: dict) -> None:
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", SEND], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def received(worker: CeleryWorker) -> list[str]:
    # the worker's own start-up sweep (annotations.recover_interrupted_work) is left out
    return [name for name in re.findall(r"Task ([\w.]+)\[[0-9a-f-]+\] received", worker.log_path.read_text())
            if name != "annotations.recover_interrupted_work"]


def test_a_burst_of_critiques_does_not_hold_up_the_jobs_queued_after_it(tmp_path):
    queue = f"prio-{uuid.uuid4().hex[:8]}"
    env = {"CELERY_TASK_DEFAULT_QUEUE": queue}
    worker = CeleryWorker(database=database_url(connection.settings_dict), redis_url=settings.REDIS_URL,
                          log_path=tmp_path / "worker.log", concurrency=1, name=queue, env=env)
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        # A worker declares its queues and their bindings first, as in a running deployment.
        worker.start()
        # its start-up sweep is a job on the default queue too: let it run before the worker stops
        wait_for(lambda: re.search(r"recover_interrupted_work\[[0-9a-f-]+\] succeeded", worker.log_path.read_text()),
                 timeout=60, what="the start-up sweep")
        worker.stop()
        send({**worker.env})
        # routed by name: the critiques sit in the background queue, the others in the default one
        # (and only there: a default job bound into both queues would run twice)
        assert (client.llen(f"{queue}.background"), client.llen(queue)) == (3, 3)

        worker.start()
        names = wait_for(lambda: (lambda found: found if len(found) >= 6 else None)(received(worker)),
                         timeout=90, what="six jobs received")
    finally:
        worker.stop()
        client.delete(queue, f"{queue}.background")
    # The critiques were queued first; kombu's default order would alternate the two queues.
    assert names == ["annotations.expire_leases"] * 3 + ["models_service.critique_submission"] * 3, names
