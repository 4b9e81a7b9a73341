"""Import throughput: N prompts from a JSONL file into PostgreSQL through the product's import
service (validation, duplicate detection, all-or-nothing transaction, chunked bulk inserts).
Prints wall time, rows/s and peak RSS.

    python bench/import_tasks.py [--rows 1000000] [--comparisons 0.1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "labelwork_bench_import"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--comparisons", type=float, default=0.1, help="Share of rows that are 4-reply comparisons.")
    args = parser.parse_args()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.dev",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}", "DEBUG": "false"}
    os.environ.update(env)
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

    every = int(1 / args.comparisons) if args.comparisons else 0
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i in range(args.rows):
            row = {"prompt": f"Question {i}: explain item {i * 7919 % 100003} to a new colleague in two sentences.",
                   "category": ("coding", "facts", "advice")[i % 3]}
            if every and i % every == 0:
                row.update(kind="comparison", replies=[f"reply {j} to {i}" for j in range(4)])
            f.write(json.dumps(row) + "\n")
        path = f.name
    size = os.path.getsize(path)

    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from annotations.models import CandidateReply, Task
    from annotations.services.imports import import_file
    from annotations.services.projects import create_project

    project = create_project(name="import bench", created_by=get_user_model().objects.create_user("bench"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with open(path, "rb") as stream:
        result = import_file(project=project, stream=stream, fmt="jsonl", size=size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert result.ok, result.errors[:3]
    figures = {"rows": args.rows, "file_mb": round(size / 1e6, 1), "seconds": round(seconds, 1),
               "rows_per_s": round(args.rows / seconds), "tasks": Task.objects.filter(project=project).count(),
               "replies": CandidateReply.objects.filter(task__project=project).count(),
               "peak_rss_mb": round(peak), "rss_before_mb": round(rss_before)}
    # a second import of the same file: every row is a duplicate, nothing is added
    start = time.perf_counter()
    with open(path, "rb") as stream:
        again = import_file(project=project, stream=stream, fmt="jsonl", size=size)
    figures["reimport_seconds"] = round(time.perf_counter() - start, 1)
    figures["reimport_duplicates"] = again.duplicates
    os.unlink(path)
    from django.db import connections

    connections.close_all()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
