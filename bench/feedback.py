"""Report ingestion and triage throughput, in process through the whole DRF stack (report-token
authentication, both throttles against Redis, JSON parsing, validation, the insert or the dedupe
update) on PostgreSQL. No network hop: it measures the server's own cost per report.

    python bench/feedback.py [--reports 500] [--batch 50] [--triage 200]

Prints per phase: reports (or tasks) per second and p50 / p95 latency per request.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "labelwork_bench_feedback"


def report(i: int, turns: int = 4) -> dict:
    conversation = [{"role": "system", "content": "You are the support assistant of an online shop."}]
    for t in range(turns):
        conversation += [{"role": "user", "content": f"Case {i}, question {t}: how do I return item {i * 31 % 997}?"},
                         {"role": "assistant", "content": f"Sure. For case {i} step {t}: " + "details " * 40}]
    return {"conversation": conversation, "model_version": f"shop-bot-v{i % 3}", "category": "hallucination",
            "description": f"Made up a return policy (case {i}).", "metadata": {"request_id": f"r-{i}"}}


def timed(label: str, calls, unit: int = 1) -> None:
    latencies = []
    start = time.perf_counter()
    for call in calls:
        t0 = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 20 else [max(latencies)] * 19
    print(f"{label:<46} {len(latencies) * unit / wall:8.0f} /s   p50 {statistics.median(latencies):7.1f} ms   "
          f"p95 {q[18]:7.1f} ms   ({len(latencies)} requests, {wall:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--triage", type=int, default=200)
    # Throttle counters only (rates set far above what the run reaches); nothing is flushed.
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.dev",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}", "REDIS_URL": args.redis,
           "DEBUG": "false", "ALLOWED_HOSTS": "testserver", "THROTTLE_REPORTS": "1000000/min",
           "THROTTLE_REPORTS_ADDRESS": "1000000/min"}
    os.environ.update(env)
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from annotations.feedback.models import MisbehaviourReport
    from annotations.feedback.tokens import create_report_token
    from annotations.services.projects import create_project

    admin = get_user_model().objects.create_user("bench-admin")
    project = create_project(name="feedback bench", created_by=admin)
    secret = create_report_token(project=project, name="bench", created_by=admin).secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    n, size = args.reports, args.batch

    def post(body, expect):
        response = client.post("/api/feedback/reports/", body, format="json")
        assert response.status_code == expect, (response.status_code, response.content[:300])

    print(f"{n} reports of 9 messages (~2.7 KB each); batches of {size}; PostgreSQL and Redis on loopback")
    timed("single reports, new", (lambda i=i: post(report(i), 201) for i in range(n)))
    timed("single reports, identical again (dedupe)", (lambda i=i: post(report(i), 200) for i in range(n)))
    batches = [[report(n + b * size + j) for j in range(size)] for b in range(max(1, n // size))]
    timed(f"batches of {size}, new (per report)", (lambda b=b: post({"reports": b}, 201) for b in batches), unit=size)
    assert MisbehaviourReport.objects.filter(project=project).count() == n + len(batches) * size

    staff = APIClient()
    staff.force_authenticate(admin)
    ids = list(MisbehaviourReport.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    ids = ids[:args.triage]

    def triage(rid, expect):
        response = staff.post(f"/api/projects/{project.pk}/reports/{rid}/tasks/", {"turns": [2, 8]}, format="json")
        assert response.status_code == expect, (response.status_code, response.content[:300])

    timed("triage: 2 tasks per report (per task)", (lambda r=r: triage(r, 201) for r in ids), unit=2)
    timed("triage repeated: nothing new (per report)", (lambda r=r: triage(r, 200) for r in ids))
    response = staff.get(f"/api/projects/{project.pk}/reports/", {"status": "new", "page_size": 50})
    assert response.status_code == 200
    timed("queue page of 50 (status=new)",
          (lambda: staff.get(f"/api/projects/{project.pk}/reports/", {"status": "new", "page_size": 50})
           for _ in range(50)))


if __name__ == "__main__":
    main()
