"""Cost of the quality reads on a big project: the agreement report (Krippendorff's alpha over every
(task, reply) unit, tau-b over every annotator pair, per instruction version and per annotator),
the annotator analytics, and a DPO snapshot with and without the min-agreement filter.

    python bench/quality.py [--tasks 100000] [--overlap 3] [--annotators 30] [--k 4]

Creates and drops its own database (labelwork_bench_quality). Loads ``--tasks`` comparison tasks
with ``--k`` replies each and ``--overlap`` submissions per task from random annotators (random
rankings with ties, one rating per reply), half under instructions v1 and half under v2, with
server-side COPY; then times each read in this process and prints wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "labelwork_bench_quality"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--annotators", type=int, default=30)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the agreement report (top 15 by own time)")
    args = parser.parse_args()
    env = {"DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.dev",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}", "DEBUG": "false"}
    os.environ.update(env)
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                       env={**os.environ, **env}, check=True)
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def run(args) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from annotations.models import Membership, Project
    from annotations.quality import agreement, analytics
    from annotations.services.instructions import publish_instructions
    from annotations.services.projects import create_project

    User = get_user_model()
    admin = User.objects.create_user("bench-admin")
    project = create_project(name="quality bench", created_by=admin, overlap=args.overlap, comparison_k=args.k)
    v1 = publish_instructions(project=project, body="# v1", published_by=admin)
    v2 = publish_instructions(project=project, body="# v2", published_by=admin)
    people = [User.objects.create_user(f"bench-annotator-{i}") for i in range(args.annotators)]
    Membership.objects.bulk_create([Membership(project=project, user=u, role="annotator") for u in people])
    project = Project.objects.get(pk=project.pk)

    started = time.monotonic()
    rng = random.Random(1)
    now = timezone.now().isoformat()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO annotations_task (project_id, kind, conversation, content_hash, metadata, created_at, state,"
            " lease_count, submission_count, accepted_count) SELECT %s, 'comparison', jsonb_build_array("
            "jsonb_build_object('role', 'user', 'content', 'Compare these replies, prompt ' || g)), md5(g::text),"
            " '{}', now(), 'done', 0, %s, %s FROM generate_series(1, %s) g",
            [project.pk, args.overlap, args.overlap, args.tasks])
        cur.execute("SELECT min(id), max(id) FROM annotations_task WHERE project_id = %s", [project.pk])
        first_task, last_task = cur.fetchone()
        cur.execute(
            "INSERT INTO annotations_candidatereply (task_id, content, source, sampling_params, for_ranking,"
            " created_at) SELECT t, 'reply ' || r || ' to ' || t, 'human', '{}', true, now()"
            " FROM generate_series(%s, %s) t, generate_series(1, %s) r", [first_task, last_task, args.k])
        cur.execute("SELECT task_id, array_agg(id ORDER BY id) FROM annotations_candidatereply"
                    " WHERE task_id BETWEEN %s AND %s GROUP BY task_id", [first_task, last_task])
        replies = dict(cur.fetchall())
    lease_rows, sub_rows = io.StringIO(), io.StringIO()
    lease_id = sub_id = 0
    with connection.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM annotations_lease")
        lease_id = cur.fetchone()[0]
    leases = []
    for task_id, ids in replies.items():
        version = v1.pk if task_id % 2 else v2.pk
        for person in rng.sample(people, args.overlap):
            lease_id += 1
            order = ids[:]
            rng.shuffle(order)
            groups, i = [], 0
            while i < len(order):
                size = rng.choice((1, 1, 1, 2))
                groups.append(order[i:i + size])
                i += size
            ratings = {str(r): {"helpful": rng.randint(1, 7)} for r in ids}
            leases.append((lease_id, task_id, person.pk, version))
            lease_rows.write(f"{lease_id}\t{project.pk}\t{task_id}\t{person.pk}\tsubmitted\t{now}\t{now}\t{now}\t\t"
                             f"{version}\n")
            sub_id += 1
            sub_rows.write("\t".join(map(str, (
                project.pk, task_id, lease_id, person.pk, "comparison", version, f"k{lease_id}", "submitted", now,
                rng.randint(10_000, 200_000), "", json.dumps(groups), json.dumps(ratings), "{}", "[]", "f"))) + "\n")
    with connection.cursor() as cur:
        with cur.connection.cursor().copy(
                "COPY annotations_lease (id, project_id, task_id, annotator_id, status, created_at, expires_at,"
                " closed_at, reason, instruction_version_id) FROM STDIN") as copy:
            copy.write(lease_rows.getvalue())
        with cur.connection.cursor().copy(
                "COPY annotations_submission (project_id, task_id, lease_id, annotator_id, kind,"
                " instruction_version_id, idempotency_key, status, created_at, time_spent_ms, rationale, ranking,"
                " ratings, flags, draft_sources, review_required) FROM STDIN") as copy:
            copy.write(sub_rows.getvalue())
        cur.execute("SELECT setval('annotations_lease_id_seq', %s)", [lease_id])
        cur.execute("VACUUM ANALYZE")
    print(f"load average before the timings: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"setup: {args.tasks} tasks x {args.k} replies, {sub_id} submissions by {args.annotators} annotators "
          f"in {time.monotonic() - started:.1f} s; RSS {rss_mb():.0f} MB")

    def timed(label, fn):
        # CPU seconds of this process beside the wall time: on a shared machine the wall time
        # mostly measures the neighbours; PostgreSQL's own CPU is not in the figure.
        before = rss_mb()
        t0, c0 = time.monotonic(), time.process_time()
        result = fn()
        print(f"{label}: {time.monotonic() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU, "
              f"peak RSS {rss_mb():.0f} MB (before {before:.0f} MB)")
        return result

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(agreement.agreement_report, project=project)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    report = timed("agreement_report (project + versions + per annotator)",
                   lambda: agreement.agreement_report(project=project))
    r = report["rankings"]
    print(f"  alpha {r['alpha']}, mean tau {r['mean_tau']}, units {r['units']}, pairs {r['pairs']}"
          f" (+{r['undefined_pairs']} undefined), helpful alpha {report['ratings']['helpful']['alpha']}")
    timed("agreement_report (project + versions only)",
          lambda: agreement.agreement_report(project=project, per_annotator=False))
    timed("report_signature (what a cached page view pays)", lambda: agreement.report_signature(project=project))
    agreement.cached_agreement_report(project=project)
    timed("cached_agreement_report, cache hit", lambda: agreement.cached_agreement_report(project=project))
    timed("annotator_analytics (without peers)", lambda: analytics.annotator_analytics(project=project))
    peers = {row["annotator_id"]: row for row in report["by_annotator"]}
    timed("annotator_analytics (with peers from the report)",
          lambda: analytics.annotator_analytics(project=project, peers=peers))
    if args.skip_export:
        return
    from annotations.exports.service import build_snapshot, create_snapshot

    with tempfile.TemporaryDirectory() as folder:
        from django.conf import settings

        settings.EXPORT_SNAPSHOT_ROOT = folder
        for label, extra in (("DPO snapshot", {}), ("DPO snapshot, min_agreement 0.3", {"min_agreement": 0.3})):
            snap = timed(label, lambda extra=extra: build_snapshot(snapshot_id=create_snapshot(
                project=project, formats=["dpo"], near_duplicates=False, eval_fraction=0, **extra).pk))
            print(f"  rows {snap.counts['rows']}, excluded {snap.counts['excluded']}")


if __name__ == "__main__":
    main()
