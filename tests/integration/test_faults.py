"""Faults, with real processes (issue 9): kill -9 a Celery worker mid-drafting and mid-finetune,
restart Redis, drop and restore the PostgreSQL connection. Every job ends done (or failed with a
reason), no draft is stored twice, no submission is lost or doubled.

Everything runs against a private redis-server (restarted here without persistence, so queued
messages really vanish) and a TCP proxy in front of PostgreSQL that the tests cut; the shared
services are never touched. One worker and one beat (recovery sweep every 2 s) serve the module.
"""
from __future__ import annotations

import collections
import threading
import time
import uuid

import httpx
import pytest
from django.db.models import Count

from annotations.models import CandidateReply, ModelVersion, Role, Submission, TaskKind
from models_service.drafting import create_drafting_job
from models_service.models import FinetuneJob, ModelJob
from tests.factories import MembershipFactory, TaskFactory, UserFactory
from tests.models_service.fake_server import FakeModelServer, chat
from tests.processes import CeleryWorker, database_url, wait_for

from .faults import Beat, Gunicorn, PrivateRedis, TcpProxy, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

N_DRAFTS = 2


class Faults:
    def __init__(self, tmp, db_settings):
        self.tmp = tmp
        self.redis = PrivateRedis(free_port(), tmp / "redis.log").start()
        self.proxy = TcpProxy((db_settings.get("HOST") or "127.0.0.1", int(db_settings.get("PORT") or 5432)))
        direct = database_url(db_settings)
        self.database = direct.replace(f":{db_settings.get('PORT') or 5432}/", f":{self.proxy.port}/")
        assert self.database != direct
        self.env = {"DRAFT_CONCURRENCY": "2", "RECOVERY_INTERVAL_S": "2", "RECOVER_PENDING_AFTER_S": "3",
                    "DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.test", "DATABASE_URL": self.database,
                    "REDIS_URL": self.redis.url, "MEDIA_ROOT": str(tmp / "media")}
        self.worker = None
        self.start_worker()
        import os

        self.beat = Beat({**os.environ, **self.env}, tmp / "beat.log", tmp / "beat-schedule").start()

    def start_worker(self) -> CeleryWorker:
        self.worker = CeleryWorker(database=self.database, redis_url=self.redis.url, log_path=self.tmp / "worker.log",
                                   concurrency=2, name="faults", env=self.env).start(timeout=120)
        return self.worker

    def log(self) -> str:
        return (self.tmp / "worker.log").read_text(errors="replace")[-4000:]

    def close(self):
        for stop in (self.worker.stop, self.beat.stop, self.redis.stop, self.proxy.close):
            try:
                stop()
            except Exception:  # noqa: BLE001 - tear everything down whatever failed first
                pass


def _use_broker(app, url):
    """Point this process's Celery app (which queues jobs on commit) at another broker."""
    app.conf.broker_url = url
    app.conf.result_backend = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="module")
def faults(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.db import connection

    from labelstudio_app.celery import app

    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
    env = Faults(tmp_path_factory.mktemp("faults"), settings_dict)
    before = (app.conf.broker_url, app.conf.result_backend)
    _use_broker(app, env.redis.url)
    try:
        yield env
    finally:
        env.close()
        app.conf.broker_url, app.conf.result_backend = before
        app._pool = None
        app.amqp._producer_pool = None


def slow_server(delay: float):
    def reply(body):
        time.sleep(delay)
        return chat("A draft: " + uuid.uuid4().hex[:8])(body)

    return FakeModelServer([reply])


def drafting_setup(project, server, tasks: int):
    TaskFactory.create_batch(tasks, project=project)
    model = ModelVersion.objects.create(name=f"slow-{uuid.uuid4().hex[:6]}", backend="openai",
                                        endpoint=server.base_url)
    return model


def job_of(pk) -> ModelJob:
    return ModelJob.objects.get(pk=pk)


def assert_drafted_once(project, model, tasks: int):
    per_task = (CandidateReply.objects.filter(task__project=project, model_version=model)
                .values("task").annotate(n=Count("id")))
    assert len(per_task) == tasks and {row["n"] for row in per_task} == {N_DRAFTS}, list(per_task)


def test_worker_killed_mid_drafting_job_finishes_once_after_restart(faults, project):
    with slow_server(0.3) as server:
        model = drafting_setup(project, server, 30)
        job = create_drafting_job(project=project, model_version=model, n=N_DRAFTS)
        wait_for(lambda: job_of(job.pk).done >= 4, timeout=90, what="drafting under way")
        faults.worker.kill()
        stuck = job_of(job.pk)
        assert stuck.status == "running" and stuck.done < 30
        faults.start_worker()  # worker_ready -> recovery sweep -> the job is queued again
        done = wait_for(lambda: (j := job_of(job.pk)).status in ("done", "failed") and j, timeout=120,
                        what=f"job to finish after the restart\n{faults.log()}")
    assert (done.status, done.error) == ("done", ""), done.error
    assert done.done + done.skipped == 30 and done.skipped >= 4  # the first run's drafts were kept
    assert_drafted_once(project, model, 30)


def test_worker_killed_mid_finetune_kills_the_orphan_and_trains_again(faults, project):
    from tests.models_service.finetune.conftest import TINY, make_snapshot

    from models_service.finetune.service import _alive, create_finetune_job
    from models_service.model_files import prepare_model

    base = ModelVersion.objects.create(name=f"smol-{uuid.uuid4().hex[:6]}", base_model=str(prepare_model()))
    snapshot = make_snapshot(project, n=4)
    job = create_finetune_job(project=project, snapshot=snapshot, method="sft", base_model=base,
                              params={**TINY, "max_steps": 2, "max_length": 64})
    running = wait_for(lambda: (j := FinetuneJob.objects.get(pk=job.pk)).child_pid and j, timeout=120,
                       what=f"the training child\n{faults.log()}")
    child = running.child_pid
    time.sleep(3)  # the child is loading the model and data: mid-finetune
    faults.worker.kill()
    # The trainer runs in its own session, out of reach of the worker's kill: it leaves on its own.
    wait_for(lambda: not _alive(child), timeout=15, what="orphaned trainer to exit")
    faults.start_worker()
    done = wait_for(lambda: (j := FinetuneJob.objects.get(pk=job.pk)).status in ("done", "failed") and j,
                    timeout=480, what=f"finetune to finish after the restart\n{faults.log()}")
    assert done.status == "done", (done.error, done.log[-2000:])
    assert done.attempts == 2 and done.step == 2 and done.result_model is not None
    assert ModelVersion.objects.filter(name__endswith=f"-sft-ft{job.pk}").count() == 1


def test_redis_restart_loses_no_job(faults, project):
    """A job runs through a Redis restart (no persistence: its message is gone); another is
    created while Redis is down (its message never existed). Both finish, once."""
    with slow_server(0.2) as server:
        model = drafting_setup(project, server, 20)
        first = create_drafting_job(project=project, model_version=model, n=N_DRAFTS, task_ids=list(
            project.tasks.order_by("id").values_list("id", flat=True)[:10]))
        wait_for(lambda: job_of(first.pk).done >= 2, timeout=60, what="first job under way")
        faults.redis.stop()
        # Queued while the broker is down: the row commits, the enqueue fails quietly.
        second = create_drafting_job(project=project, model_version=model, n=N_DRAFTS, task_ids=list(
            project.tasks.order_by("id").values_list("id", flat=True)[10:]))
        time.sleep(1)
        faults.redis.start()
        for job in (first, second):
            done = wait_for(lambda j=job: (x := job_of(j.pk)).status in ("done", "failed") and x, timeout=120,
                            what=f"job {job.pk} after the Redis restart\n{faults.log()}")
            assert (done.status, done.error) == ("done", "")
    assert faults.worker.proc.poll() is None  # the worker rode it out
    assert_drafted_once(project, model, 20)


def test_database_drop_mid_drafting_job_finishes_once(faults, project):
    with slow_server(0.3) as server:
        model = drafting_setup(project, server, 24)
        job = create_drafting_job(project=project, model_version=model, n=N_DRAFTS)
        wait_for(lambda: job_of(job.pk).done >= 3, timeout=90, what="drafting under way")
        faults.proxy.cut()
        time.sleep(3)
        faults.proxy.restore()
        done = wait_for(lambda: (j := job_of(job.pk)).status in ("done", "failed") and j, timeout=150,
                        what=f"job after the database came back\n{faults.log()}")
    assert (done.status, done.error) == ("done", "")
    assert_drafted_once(project, model, 24)
    assert faults.worker.proc.poll() is None


def test_submissions_over_http_through_a_database_drop_lose_nothing(faults, project, tmp_path):
    """An annotator's client labels 16 tasks while the database connection is cut for 2 seconds.
    Every request either succeeds or gets a clear 503 it retries (the same idempotency key for a
    submit); in the end every label is stored exactly once."""
    import os

    from rest_framework.authtoken.models import Token

    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator, role=Role.ANNOTATOR)
    TaskFactory.create_batch(20, project=project, kind=TaskKind.DEMONSTRATION)
    token = Token.objects.create(user=annotator).key
    server = Gunicorn({**os.environ, **faults.env}, tmp_path / "gunicorn.log").start()
    statuses: list[int | str] = []
    base = f"{server.url}/api/projects/{project.pk}"
    client = httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=30)

    def call(method, url, **kw):
        while True:
            try:
                response = client.request(method, url, **kw)
            except httpx.TransportError as exc:
                statuses.append(type(exc).__name__)
                time.sleep(0.3)
                continue
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.json()["error"] == "database_unavailable" and response.headers["Retry-After"]
                time.sleep(0.3)
                continue
            return response

    labelling = threading.Event()

    def cut_later():
        labelling.wait(120)
        faults.proxy.cut()
        time.sleep(2)
        faults.proxy.restore()

    cutter = threading.Thread(target=cut_later)
    try:
        cutter.start()
        labels = {}
        for i in range(16):
            # A lost answer to "next" leaves a lease open: the client resumes its open leases first.
            open_leases = call("GET", f"{base}/leases/").json()
            lease = open_leases[0] if open_leases else call("POST", f"{base}/next/").json()
            key, text = f"key-{i}-{uuid.uuid4().hex[:6]}", f"Label number {i}."
            response = call("POST", f"{base}/leases/{lease['id']}/submit/", json={"idempotency_key": key,
                                                                                 "text": text})
            assert response.status_code in (200, 201), response.text
            labels[key] = text
            if i == 3:
                labelling.set()  # the cut comes while the next labels are on their way
            time.sleep(0.15)
        cutter.join()
    finally:
        client.close()
        server.stop()
    print("\nresponses during the run:", dict(collections.Counter(map(str, statuses))))
    assert 500 not in statuses
    assert any(s == 503 or isinstance(s, str) for s in statuses), ("the cut never hit a request", statuses)
    stored = dict(Submission.objects.filter(annotator=annotator).values_list("idempotency_key", "reply__content"))
    assert stored == labels  # every label, once, with its text
    assert Submission.objects.filter(annotator=annotator).count() == 16
