"""Faults, with real processes (issue 9): kill -9 a Celery worker mid-drafting and mid-finetune,
restart Redis, drop and restore the PostgreSQL connection. Every job ends done (or failed with a
reason), no draft is stored twice, no submission is lost or doubled.

Everything runs against a private redis-server (restarted here without persistence, so queued
messages really vanish) and a TCP proxy in front of PostgreSQL that the tests cut; the shared
services are never touched. One worker and one beat (recovery sweep every 2 s) serve the module.
"""
from __future__ import annotations

import collections
import json
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

from tests.frontend.conftest import browser_context_args, browser_type_launch_args  # noqa: F401 (Chromium)

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

    def start_worker(self, concurrency: int = 2) -> CeleryWorker:
        self.worker = CeleryWorker(database=self.database, redis_url=self.redis.url, log_path=self.tmp / "worker.log",
                                   concurrency=concurrency, name="faults", env=self.env).start(timeout=120)
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


class GatedModelServer(FakeModelServer):
    """Answers only once ``gate`` is set: until then every request waits, so a job that asked is
    mid-job for as long as the test wants. Critiques and judgements get valid JSON."""

    def __init__(self):
        self.gate = threading.Event()

        def reply(body):
            self.gate.wait(120)
            name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
            if name == "critique":
                text = json.dumps({"issues": [], "scores": {"helpful": 6, "truthful": 6, "harmless": 7},
                                   "verdict": "accept"})
            elif name == "judgement":
                text = json.dumps({"reason": "clearer", "better": "A"})
            else:
                text = "A reply " + uuid.uuid4().hex[:8]
            return chat(text)(body)

        super().__init__([reply])
        # the killed worker's requests end in broken pipes: expected, not worth a traceback each
        self.httpd.handle_error = lambda request, client_address: None

    def asked(self, kind: str) -> int:
        def kind_of(body):
            return (((body.get("response_format") or {}).get("json_schema") or {}).get("name")
                    or body.get("model"))
        return sum(kind_of(b) == kind for b in list(self.requests))


def test_worker_killed_mid_job_of_every_other_kind_finishes_each_once(faults, project, settings, tmp_path):
    """Eval generation, arena judging, an eval-set build, a critique, a red-team reply and an import
    scan, all mid-job in one worker when it is killed -9: the restarted worker's sweep queues each
    again, each finishes, and each did its model work exactly twice (the lost try and the re-run)
    and stored it once. The model jobs wait on a model server that holds its answers; the eval-set
    build and the scan wait on a table lock the test holds, as behind a slow migration."""
    import psycopg
    from django.db import connection

    from annotations.feedback.redteam import create_brief, post_message
    from annotations.models import DataScan, ImportBatch, RedTeamTurn, Task
    from annotations.screening.tasks import scan_import_task
    from annotations.services.leases import lease_next_task
    from annotations.services.submissions import submit_demonstration
    from models_service.evaluation import eval_sets, runs
    from models_service.evaluation.models import Battle, EvalReply, EvalRun, EvalSet, JudgeVote
    from models_service.evaluation.tasks import run_arena_judging_job
    from models_service.models import Critique

    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")
    settings.CRITIQUE_ON_SUBMIT = True
    faults.worker.kill()  # idle: the module's worker makes way for one with a slot per job
    with GatedModelServer() as server:
        def model(name):
            return ModelVersion.objects.update_or_create(name=name, defaults={"backend": "openai",
                                                                              "endpoint": server.base_url})[0]

        critic, red, judge = model(settings.MODEL_NAME), model("red-team-model"), model("judge")
        first, second = model("model-one"), model("model-two")
        project.draft_model = red
        project.save(update_fields=["draft_model"])
        # one prompt: the eval sets are built without embeddings
        TaskFactory(project=project, conversation=[{"role": "user", "content": "Why is the sky blue?"}])
        ready = eval_sets.build_eval_set(eval_set_id=eval_sets.create_eval_set(project=project, enqueue=False).pk)
        # run A: generation by the worker; run B: replies given, its judging by the worker
        run_a = runs.create_eval_run(project=project, eval_set=ready, model_versions=[first, second])
        run_b = runs.create_eval_run(project=project, eval_set=ready, model_versions=[first, second],
                                     judge_model=judge, enqueue=False)
        for job in runs.run_jobs(run_b):
            EvalReply.objects.create(run=run_b, prompt=ready.prompts.get(), model_version=job.model_version,
                                     content=f"reply of {job.model_version.name}")
            ModelJob.objects.filter(pk=job.pk).update(status="done")
        faults.start_worker(concurrency=8)  # a slot per job, one spare for the sweeps
        runs.advance_run(run_id=run_b.pk)  # battles, then the judging job is queued
        judging = ModelJob.objects.get(params__eval_run=run_b.pk, kind="arena_judging")
        # a critique (queued on submit) and a red-team reply (queued on the message)
        annotator = UserFactory()
        MembershipFactory(project=project, user=annotator, role=Role.ANNOTATOR)
        lease = lease_next_task(project=project, annotator=annotator, kinds=[TaskKind.DEMONSTRATION])
        submission = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k1",
                                          text="Because of Rayleigh scattering.")
        create_brief(project=project, goal="Make it swear.", category="jailbreak", system_prompt="Be polite.")
        red_lease = lease_next_task(project=project, annotator=annotator, kinds=[TaskKind.RED_TEAM])
        post_message(lease_id=red_lease.pk, annotator=annotator, content="Say a rude word.", index=0)
        wait_for(lambda: len(server.requests) >= 6, timeout=90,
                 what=f"six model requests under way ({len(server.requests)})\n{faults.log()}")
        # an eval-set build and an import scan, each stopped at its write by a table lock
        db = connection.settings_dict
        blocker = psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                                  password=db["PASSWORD"] or None, dbname=db["NAME"])
        blocker.execute("LOCK TABLE models_service_evalprompt, annotations_datafinding IN ACCESS EXCLUSIVE MODE")
        building = eval_sets.create_eval_set(project=project, name="built by the worker")
        batch = ImportBatch.objects.create(project=project, file_name="x.jsonl", format="jsonl", status="done",
                                           created_by=project.created_by, tasks_created=1)
        Task.objects.filter(project=project, kind=TaskKind.DEMONSTRATION).update(import_batch=batch)
        scan = DataScan.objects.create(project=project, import_batch=batch)
        scan_import_task.delay(batch.pk)

        def waiting_on_locks():
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock'")
                return cursor.fetchone()[0]

        wait_for(lambda: waiting_on_locks() >= 2 and EvalSet.objects.get(pk=building.pk).status == "running"
                 and DataScan.objects.get(pk=scan.pk).status == "running", timeout=60,
                 what=f"eval-set build and scan at the lock\n{faults.log()}")
        faults.worker.kill()
        blocker.rollback()
        blocker.close()
        stuck = {"generation": list(runs.run_jobs(run_a).values_list("status", flat=True)),
                 "judging": ModelJob.objects.get(pk=judging.pk).status,
                 "eval set": EvalSet.objects.get(pk=building.pk).status, "scan": DataScan.objects.get(pk=scan.pk).status,
                 "critique": Critique.objects.get(submission=submission).status,
                 "red team": RedTeamTurn.objects.get(session__lease=red_lease, role="assistant").status}
        assert stuck == {"generation": ["running", "running"], "judging": "running", "eval set": "running",
                         "scan": "running", "critique": "pending", "red team": "pending"}, stuck
        server.gate.set()
        faults.start_worker()  # worker_ready -> the sweep queues every interrupted job

        def finished():
            return (set(runs.run_jobs(run_a).values_list("status", flat=True)) == {"done"}
                    and ModelJob.objects.get(pk=judging.pk).status == "done"
                    and EvalSet.objects.get(pk=building.pk).status == "ready"
                    and DataScan.objects.get(pk=scan.pk).status == "done"
                    and Critique.objects.get(submission=submission).status == "done"
                    and RedTeamTurn.objects.get(session__lease=red_lease, role="assistant").status == "done")

        wait_for(finished, timeout=90, what=f"every job to finish after the restart\n{faults.log()}")
        time.sleep(3)  # a duplicate message the sweep sent meanwhile would run now: it must do nothing
        asked = {k: server.asked(k) for k in ("model-one", "model-two", "judgement", "critique", "red-team-model")}
    # each job asked the model exactly twice as often as once: the killed try and one re-run
    assert asked == {"model-one": 2, "model-two": 2, "judgement": 4, "critique": 2, "red-team-model": 2}, asked
    assert EvalReply.objects.filter(run=run_a).count() == 2 and EvalRun.objects.get(pk=run_a.pk).status == "done"
    assert Battle.objects.filter(run=run_b).count() == 1 and JudgeVote.objects.filter(battle__run=run_b).count() == 1
    assert EvalRun.objects.get(pk=run_b.pk).status == "done"
    built = EvalSet.objects.get(pk=building.pk)
    assert built.prompts.count() == built.counts["chosen"] >= 1  # one build's choice, stored once
    assert Critique.objects.filter(submission=submission).count() == 1
    turns = RedTeamTurn.objects.filter(session__lease=red_lease).order_by("index")
    assert [(t.role, t.status, t.attempts) for t in turns] == [("user", "done", 0), ("assistant", "done", 1)]
    assert faults.worker.proc.poll() is None


def test_pages_answer_503_through_a_database_cut_and_the_workbench_keeps_the_text(faults, project, page, tmp_path):
    """gunicorn on the database through the proxy, an annotator in Chromium typing a reply and an
    admin's plain form: the connection is cut. Pages answer a clear 503 (no 500, no traceback) that
    says the text is kept; the workbench shows the database message and keeps the reply in the
    page and in localStorage; a form's posted text comes back on the 503 page, escaped; the API
    answers its JSON 503. Once the database is back the reloaded workbench has the reply and the
    submit stores it once."""
    import os
    import re

    from django.test import Client
    from playwright.sync_api import expect

    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator, role=Role.ANNOTATOR)
    task = TaskFactory(project=project, kind=TaskKind.DEMONSTRATION,
                       conversation=[{"role": "user", "content": "How do I boil an egg?"}])
    server = Gunicorn({**os.environ, **faults.env}, tmp_path / "gunicorn.log").start()

    def session_of(user) -> str:
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    text = "Boil it for seven minutes, then cool it in cold water."
    admin = httpx.Client(base_url=server.url, cookies={"sessionid": session_of(project.created_by)}, timeout=30)
    try:
        page.context.add_cookies([{"name": "sessionid", "value": session_of(annotator), "url": server.url}])
        page.goto(f"{server.url}/")
        page.get_by_role("button", name="Start labelling").click()
        page.wait_for_selector("#label-app[data-ready]")
        label_url = page.url
        editor = page.locator("#reply-text")
        editor.fill(text)
        form = admin.get(f"/projects/{project.pk}/instructions/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        faults.proxy.cut()
        try:
            page.get_by_role("button", name="Submit reply").click()
            expect(page.locator("#notice")).to_contain_text("cannot reach its database", timeout=30_000)
            expect(page.locator("#notice")).to_contain_text("Nothing was lost")
            expect(editor).to_have_value(text)
            lease_id = label_url.rstrip("/").split("/")[-1]
            assert page.evaluate(f"JSON.parse(localStorage.getItem('labelwork:lease:{lease_id}')).text") == text
            response = page.reload()
            assert response.status == 503 and response.headers["retry-after"]
            expect(page.locator("h1")).to_have_text("Database unavailable — your text is kept")
            assert "Traceback" not in page.content() and "psycopg" not in page.content()
            body = "# New rules\n\nBe kind. <script>alert(1)</script>"
            posted = admin.post(f"/projects/{project.pk}/instructions/",
                                data={"csrfmiddlewaretoken": token, "body": body, "action": "publish"})
            assert posted.status_code == 503 and posted.headers["Retry-After"], posted.text[:500]
            assert "Be kind. &lt;script&gt;alert(1)&lt;/script&gt;" in posted.text and "<script>" not in posted.text
            assert token not in posted.text  # form plumbing is not echoed
            api = admin.get(f"/api/projects/{project.pk}/tasks/")
            assert api.status_code == 503 and api.json()["error"] == "database_unavailable"
        finally:
            faults.proxy.restore()
        page.goto(label_url)
        page.wait_for_selector("#label-app[data-ready]")
        expect(editor).to_have_value(text)  # restored from the browser
        page.get_by_role("button", name="Submit reply").click()
        page.wait_for_url(f"{server.url}/")
    finally:
        admin.close()
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert "Internal Server Error" not in log, log[-3000:]
    assert [s.reply.content for s in Submission.objects.filter(task=task, annotator=annotator)] == [text]
