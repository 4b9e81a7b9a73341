"""CPU cost of the annotator hot path (next task -> submit), in process, without HTTP or gunicorn.

bench/assign.py measures the product end to end under load, but on a shared 2-core machine its
wall-clock figures swing with whatever else runs. This measures what one next + submit pair costs
the web process itself: CPU seconds of this process per pair (``time.process_time``, so other load
moves it little), SQL statements sent through Django per request, and optionally a cProfile of the
pairs. Requests go through Django's full WSGI stack (middleware, DRF, token auth) via the test
client, exactly as gunicorn would call it, minus the socket.

    python bench/hotpath.py                       # 300 pairs on 2,000 demonstration tasks
    python bench/hotpath.py --profile 25          # and print the 25 most expensive functions

It creates (and drops) its own database ``<DATABASE_URL's name>_hotpath``.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=30, help="pairs before measuring (prepares statements)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print the N top functions by cumulative CPU time (process time, so other load moves it little)")
    p.add_argument("--profile-sort", default="cumulative", choices=["cumulative", "tottime"])
    p.add_argument("--profile-only", default="both", choices=["both", "next", "submit"],
                   help="profile only this request of each pair")
    p.add_argument("--list-pages", type=int, default=50, help="task-list pages (50 tasks each) and count calls to time")
    p.add_argument("--sql", action="store_true", help="print the statements Django sends for one next and one submit")
    p.add_argument("--keep", action="store_true", help="keep the database")
    args = p.parse_args()

    os.environ["DJANGO_SETTINGS_MODULE"] = "labelstudio_app.settings.dev"
    import dj_database_url

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/labelwork")
    cfg = dj_database_url.parse(base)
    bench_db = f"{cfg['NAME']}_hotpath"
    os.environ["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + bench_db
    os.environ.setdefault("DEBUG", "false")
    admin = base.rsplit("/", 1)[0] + "/postgres"

    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{bench_db}"')
    try:
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')


def run(args) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token

    from annotations.models import Role, Task
    from annotations.services import instructions, projects

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    User = get_user_model()
    owner = User.objects.create_user("owner", password="x")
    worker = User.objects.create_user("worker", password="x")
    project = projects.create_project(created_by=owner, name="hotpath", overlap=1, pending_cap=5)
    instructions.publish_instructions(project=project, published_by=owner, body="Be helpful.")
    projects.set_member(project=project, user=worker, role=Role.ANNOTATOR)
    Task.objects.bulk_create(
        Task(project=project, kind="demonstration", conversation=[{"role": "user", "content": f"Question {i}?"}],
             content_hash=f"h{i}") for i in range(args.tasks))
    token = Token.objects.create(user=worker).key
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1")
    base = f"/api/projects/{project.pk}"

    profiler = cProfile.Profile(time.process_time) if args.profile else None

    def profiled(which, call):
        on = profiler is not None and profiling and args.profile_only in ("both", which)
        if on:
            profiler.enable()
        try:
            return call()
        finally:
            if on:
                profiler.disable()

    profiling = False

    def pair():
        t0 = time.process_time()
        r = profiled("next", lambda: client.post(f"{base}/next/"))
        t1 = time.process_time()
        assert r.status_code == 201, (r.status_code, r.content[:300])
        lease = r.json()
        body = {"idempotency_key": uuid.uuid4().hex, "text": "An answer.", "time_spent_ms": 1000}
        r = profiled("submit", lambda: client.post(f"{base}/leases/{lease['id']}/submit/", data=json.dumps(body),
                                                   content_type="application/json"))
        t2 = time.process_time()
        assert r.status_code == 201, (r.status_code, r.content[:300])
        return t1 - t0, t2 - t1

    for _ in range(args.warmup):
        pair()
    nexts, submits = [], []
    profiling = True
    wall0 = time.perf_counter()
    for _ in range(args.pairs):
        a, b = pair()
        nexts.append(a * 1000)
        submits.append(b * 1000)
    wall = time.perf_counter() - wall0
    profiling = False

    staff = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}", HTTP_HOST="127.0.0.1")
    pages = []
    url = f"{base}/tasks/?page_size=50"
    for i in range(args.list_pages):
        t0 = time.process_time()
        r = staff.get(url)
        pages.append((time.process_time() - t0) * 1000)
        assert r.status_code == 200, r.content[:200]
        url = r.json()["next"] or f"{base}/tasks/?page_size=50"
    counts = []
    for _ in range(args.list_pages):
        t0 = time.process_time()
        assert staff.get(f"{base}/tasks/counts/").status_code == 200
        counts.append((time.process_time() - t0) * 1000)

    with CaptureQueriesContext(connection) as ctx:
        lease = client.post(f"{base}/next/").json()
    with CaptureQueriesContext(connection) as ctx2:
        client.post(f"{base}/leases/{lease['id']}/submit/",
                    data=json.dumps({"idempotency_key": uuid.uuid4().hex, "text": "x"}), content_type="application/json")

    def q(v, pct):
        return round(statistics.quantiles(v, n=100)[pct - 1], 2)

    out = {
        "pairs": args.pairs,
        "cpu_ms_per_pair": round((sum(nexts) + sum(submits)) / args.pairs, 2),
        "next_cpu_ms_p50_p95": [q(nexts, 50), q(nexts, 95)],
        "submit_cpu_ms_p50_p95": [q(submits, 50), q(submits, 95)],
        "wall_ms_per_pair": round(wall * 1000 / args.pairs, 2),
        "task_page_cpu_ms_p50_p95": [q(pages, 50), q(pages, 95)] if args.list_pages > 1 else None,
        "task_counts_cpu_ms_p50_p95": [q(counts, 50), q(counts, 95)] if args.list_pages > 1 else None,
        "django_sql_statements": {"next": len(ctx.captured_queries), "submit": len(ctx2.captured_queries)},
        "prepare_threshold": settings.DATABASES["default"].get("OPTIONS", {}).get("prepare_threshold"),
        "critique_on_submit": getattr(settings, "CRITIQUE_ON_SUBMIT", None),
    }
    print(json.dumps(out, indent=1))
    if args.sql:
        for label, c in (("next", ctx), ("submit", ctx2)):
            print(f"--- {label}")
            for query in c.captured_queries:
                print("  ", query["sql"][:160])
    if profiler:
        pstats.Stats(profiler).sort_stats(args.profile_sort).print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
