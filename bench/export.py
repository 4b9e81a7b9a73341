"""Export benchmark: N labelled records in PostgreSQL -> a dataset snapshot (SFT + DPO, JSONL and
Parquet, train/eval split, meta files, hashes, datasheet) through the product's own code.

    python bench/export.py [--records 1000000] [--code DIR ...] [--repeat 1] [--keep-db]

Creates its own database (``labelwork_bench_export``, ``--db``), migrates it and loads ``--records``
labelled tasks with server-side ``INSERT ... SELECT``: half demonstrations (one submitted reply each,
every 4th an edited model draft, every 10th a two-turn conversation), half comparisons of 4 replies
ranked once with one tie (``[[a], [b, c], [d]]``: 5 DPO pairs each), 50 annotators, every 200th
comparison with a flagged reply. Then, for each ``--code`` tree (default: this checkout), a fresh
Python process imports that tree and runs ``create_snapshot`` + ``build_snapshot`` on the loaded
project, exactly as the Celery job does: the PostgreSQL read (server-side cursors), grouping, split,
pairs, the six data files and six meta files per format, hashing, datasheet.

Not included: the data-attack scan of the snapshot (``SCREENING_ON_SNAPSHOT`` is off here; it
scans at most ``SCREENING_MAX_ITEMS`` tasks and is measured by bench/screening.py). Near-duplicate
grouping is on, as by default; above ``EXPORT_NEAR_DUP_MAX_PROMPTS`` distinct prompts it falls back to
exact grouping, which is what happens at this size.

Prints per run: wall seconds, CPU seconds of the export process and of the PostgreSQL backend
serving it (read from /proc, so only with PostgreSQL on this machine), peak RSS of the export process
(ru_maxrss of a fresh process; its RSS after Django's start-up is printed beside it), rows, bytes
written and the snapshot's content hash, so two code trees on the same data can be checked for
identical output.
Pass an older checkout (``git archive <rev> | tar -x -C /tmp/old``) as the first ``--code`` to
measure before and after in one run under the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://postgres@127.0.0.1:5432"


def _env(db: str) -> dict:
    return {"DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.dev", "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}",
            "DEBUG": "false", "SCREENING_ON_SNAPSHOT": "false",
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db", default="labelwork_bench_export")
    parser.add_argument("--code", action="append", help="checkout to measure (repeatable; default this one)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per checkout, interleaved")
    parser.add_argument("--keep-db", action="store_true", help="keep the database (and reuse it if it has the data)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return
    os.environ.update(_env(args.db))
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [args.db]).fetchone()
    loaded = False
    if exists and args.keep_db:
        with psycopg.connect(f"{PG}/{args.db}") as conn:
            row = conn.execute("SELECT count(*) FROM annotations_task").fetchone()
            loaded = row[0] == args.records
    try:
        if not loaded:
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{args.db}"')
            subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                           env={**os.environ}, check=True)
            started = time.monotonic()
            load(args.records, args.db)
            print(f"setup: {args.records} records loaded in {time.monotonic() - started:.0f} s", flush=True)
        trees = [str(Path(t).resolve()) for t in (args.code or [str(ROOT)])]
        results = []
        for attempt in range(args.repeat):
            for tree in trees:
                load_avg = os.getloadavg()
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", "--tree", tree,
                                      "--db", args.db], cwd=tree, env={**os.environ}, check=True,
                                     capture_output=True, text=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result.update(tree=tree, load_before=round(load_avg[0], 2), load_after=round(os.getloadavg()[0], 2))
                results.append(result)
                pg = f"{result['pg_cpu_s']:.1f} s" if result.get("pg_cpu_s") is not None else "n/a"
                print(f"[{attempt + 1}] {tree}: wall {result['wall_s']:.1f} s, CPU {result['cpu_s']:.1f} s "
                      f"(PostgreSQL backend {pg}), peak RSS {result['peak_rss_mb']:.0f} MB "
                      f"({result.get('rss_before_mb', 0):.0f} MB before the export), rows {result['rows']}, "
                      f"files {result['bytes'] / 1e6:.0f} MB, content {result['content_sha256'][:12]}, "
                      f"load 1-min avg {result['load_before']} -> {result['load_after']} on {os.cpu_count()} cores",
                      flush=True)
        hashes = {r["content_sha256"] for r in results}
        print("same content hash for every run:", "yes" if len(hashes) == 1 else f"NO ({len(hashes)} different)")
    finally:
        if not args.keep_db:
            from contextlib import suppress

            with suppress(Exception), psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')


def load(n: int, db: str) -> None:
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotations.models import Membership, ModelVersion
    from annotations.services.instructions import publish_instructions
    from annotations.services.projects import create_project

    User = get_user_model()
    admin = User.objects.create_user("bench-admin")
    project = create_project(name="export bench", created_by=admin, comparison_k=4)
    version = publish_instructions(project=project, body="# v1", published_by=admin)
    people = [User.objects.create_user(f"bench-annotator-{i}") for i in range(50)]
    Membership.objects.bulk_create([Membership(project=project, user=u, role="annotator") for u in people])
    model = ModelVersion.objects.get_or_create(name="bench-drafter")[0]
    first_user = people[0].pk
    with connection.cursor() as cur:
        # Tasks: odd g demonstrations, even g comparisons; every 10th demonstration has two turns.
        cur.execute(
            "INSERT INTO annotations_task (project_id, kind, conversation, content_hash, metadata, created_at, state,"
            " lease_count, submission_count, accepted_count, completed_at)"
            " SELECT %s, CASE WHEN g %% 2 = 1 THEN 'demonstration' ELSE 'comparison' END,"
            " CASE WHEN g %% 20 = 1 THEN jsonb_build_array("
            "   jsonb_build_object('role', 'user', 'content', 'Hello, I have a question about topic ' || (g %% 997)),"
            "   jsonb_build_object('role', 'assistant', 'content', 'Of course, ask away.'),"
            "   jsonb_build_object('role', 'user', 'content', 'Question ' || g || ': why is topic ' || (g %% 997) || ' hard?'))"
            " ELSE jsonb_build_array(jsonb_build_object('role', 'user', 'content',"
            "   'Question ' || g || ': how would you explain topic ' || (g %% 997) || ' to a child?')) END,"
            " md5(g::text), '{}', now(), 'done', 1, 1, 1, now() FROM generate_series(1, %s) g",
            [project.pk, n])
        cur.execute("SELECT min(id) FROM annotations_task WHERE project_id = %s", [project.pk])
        base = cur.fetchone()[0] - 1
        cur.execute(
            "INSERT INTO annotations_candidatereply (task_id, content, source, model_version_id, sampling_params,"
            " for_ranking, created_at)"
            " SELECT t.id, repeat('Answer ' || (t.id - %s) || '. ', 8),"
            " CASE WHEN t.id %% 4 = 0 THEN 'edited_draft' ELSE 'human' END, NULL, '{}', false, now()"
            " FROM annotations_task t WHERE t.project_id = %s AND t.kind = 'demonstration'", [base, project.pk])
        cur.execute(
            "INSERT INTO annotations_candidatereply (task_id, content, source, model_version_id, sampling_params,"
            " for_ranking, created_at)"
            " SELECT t.id, repeat('Reply ' || r || ' to question ' || (t.id - %s) || '. ', 6),"
            " CASE WHEN r = 2 THEN 'model' ELSE 'human' END, CASE WHEN r = 2 THEN %s END, '{}', true, now()"
            " FROM annotations_task t, generate_series(1, 4) r"
            " WHERE t.project_id = %s AND t.kind = 'comparison' ORDER BY t.id, r", [base, model.pk, project.pk])
        cur.execute(
            "INSERT INTO annotations_lease (project_id, task_id, annotator_id, status, created_at, expires_at,"
            " closed_at, reason, instruction_version_id)"
            " SELECT %s, t.id, %s + t.id %% 50, 'submitted', now(), now(), now(), '', %s"
            " FROM annotations_task t WHERE t.project_id = %s", [project.pk, first_user, version.pk, project.pk])
        cur.execute(
            "INSERT INTO annotations_submission (project_id, task_id, lease_id, annotator_id, kind,"
            " instruction_version_id, idempotency_key, status, created_at, time_spent_ms, rationale, reply_id,"
            " ranking, ratings, flags, draft_sources, review_required)"
            " SELECT %s, l.task_id, l.id, l.annotator_id, t.kind, l.instruction_version_id, 'k' || l.task_id,"
            " 'submitted', now(), 1000, '', CASE WHEN t.kind = 'demonstration' THEN r.ids[1] END,"
            " CASE WHEN t.kind = 'comparison' THEN jsonb_build_array(jsonb_build_array(r.ids[1]),"
            "   jsonb_build_array(r.ids[2], r.ids[3]), jsonb_build_array(r.ids[4])) ELSE '[]'::jsonb END,"
            " '{}', CASE WHEN t.kind = 'comparison' AND t.id %% 200 = 0"
            "   THEN jsonb_build_object(r.ids[3]::text, jsonb_build_array('factually_wrong')) ELSE '{}'::jsonb END,"
            " '[]', false"
            " FROM annotations_lease l JOIN annotations_task t ON t.id = l.task_id"
            " JOIN (SELECT task_id, array_agg(id ORDER BY id) AS ids FROM annotations_candidatereply"
            "       GROUP BY task_id) r ON r.task_id = l.task_id"
            " WHERE l.project_id = %s", [project.pk, project.pk])
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    connection.close()


def _rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a local process: the PostgreSQL backend serving the export
    (its parallel workers, if any, are not in it). None when PostgreSQL is not on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args) -> None:
    """One export in this (fresh) process, from the tree given: prints one JSON line."""
    sys.path.insert(0, args.tree)
    os.environ.update(_env(args.db))
    import django

    django.setup()
    from django.conf import settings

    from annotations.exports.service import build_snapshot, create_snapshot
    from annotations.models import Project

    folder = Path(tempfile.mkdtemp(prefix="export-bench-"))
    settings.EXPORT_SNAPSHOT_ROOT = str(folder)
    settings.SCREENING_ON_SNAPSHOT = False
    from django.db import connection

    project = Project.objects.get(name="export bench")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    rss_before = _rss_now_mb()
    pg_cpu = _proc_cpu_s(backend)
    started, cpu = time.monotonic(), time.process_time()
    snapshot = build_snapshot(snapshot_id=create_snapshot(project=project, created_by=project.created_by).pk)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    pg_cpu = _proc_cpu_s(backend) - pg_cpu if pg_cpu is not None else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = sum(snapshot.counts["rows"].values())
    size = sum(f["bytes"] for f in snapshot.files.values())
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "rss_before_mb": rss_before, "pg_cpu_s": pg_cpu, "rows": rows, "bytes": size,
                      "counts": snapshot.counts, "content_sha256": snapshot.content_sha256}))


if __name__ == "__main__":
    main()
