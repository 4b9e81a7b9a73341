"""50 annotators at once against the real stack, for a few minutes: nothing lost, nothing twice.

gunicorn (the product's WSGI app) + a Celery worker with beat (lease reclaim every 30 s, count
compaction every minute) + PostgreSQL + Redis, all on loopback, in a database of its own. Each
simulated annotator loops the way people work, not the way a micro-benchmark does:

- next task; a demonstration is answered (text), a comparison is ranked (random order with a tie,
  ratings for every reply);
- some tasks are skipped with a reason, some leases are abandoned (the annotator walks away: the
  lease runs out and must come back to the pool through reclaim), and some submits are sent twice
  with the same idempotency key (a double click / a retry after a lost response).

Then it checks the database: no task leased or submitted beyond its overlap, nobody given the same
task twice, every submit answered 2xx is stored exactly once, task counters equal the leases and
submissions behind them, and the trigger-kept task counts equal a scan. It prints throughput and
latency percentiles and exits non-zero if any check fails.

    python bench/load.py                          # 50 annotators, 180 s, 20,000 tasks
    python bench/load.py --annotators 20 --seconds 30
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.assign import (  # noqa: E402  (the same machinery as the assignment benchmark)
    CHECKS,
    Gunicorn,
    child_env,
    create_fixture,
    db_url,
    django_setup,
    drop_database,
    make_client,
    ms,
    recreate_database,
    redis_check,
    redis_cleanup,
)

TASK_INSERT = """
INSERT INTO annotations_task
    (project_id, kind, conversation, content_hash, metadata, created_at, state, lease_count, submission_count)
SELECT %(project)s, CASE WHEN g %% 100 < %(comparison_pct)s THEN 'comparison' ELSE 'demonstration' END,
       jsonb_build_array(jsonb_build_object('role', 'user', 'content',
           'Load test question ' || g || ': ' || repeat(md5(g::text), 4))),
       encode(sha256(convert_to('load-' || %(project)s || '-' || g, 'UTF8')), 'hex'), '{}'::jsonb, now(), 'open', 0, 0
FROM generate_series(1, %(n)s) AS g
"""
REPLY_INSERT = """
INSERT INTO annotations_candidatereply (task_id, content, source, sampling_params, for_ranking, created_at)
SELECT t.id, 'Candidate reply ' || r || ' to task ' || t.id, 'human', '{}'::jsonb, true, now()
FROM annotations_task t CROSS JOIN generate_series(1, 4) AS r
WHERE t.project_id = %(project)s AND t.kind = 'comparison'
"""


class Tally:
    def __init__(self):
        self.lat: dict[str, list[float]] = {"next": [], "submit": [], "skip": []}
        self.accepted: set[str] = set()  # idempotency keys answered 2xx
        self.counts = {"demonstrations": 0, "rankings": 0, "skips": 0, "abandoned": 0, "replays": 0,
                       "replay_mismatch": 0, "empty_next": 0, "cap_reached": 0, "late_refused": 0}
        self.errors: dict[str, int] = {}
        self.samples: list[str] = []

    def error(self, key: str, body: bytes = b"") -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.samples) < 8:
            self.samples.append(f"{key}: {body[:300].decode(errors='replace')}")


async def annotator(client, pid: int, t_end: float, tally: Tally, rng: random.Random, args) -> None:
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        try:
            status, body = await client.request("POST", f"/api/projects/{pid}/next/")
        except Exception as exc:
            tally.error("next:exception", repr(exc).encode())
            await asyncio.sleep(0.05)
            continue
        if status == 404 and b"no_task_available" in body:
            tally.counts["empty_next"] += 1
            await asyncio.sleep(0.5)
            continue
        if status == 409 and b"lease_cap" in body:  # abandoned leases fill the cap until they run out
            tally.counts["cap_reached"] += 1
            await asyncio.sleep(1.0)
            continue
        if status != 201:
            tally.error(f"next:{status}", body)
            continue
        tally.lat["next"].append(time.perf_counter() - t0)
        lease = json.loads(body)
        roll = rng.random()
        if roll < args.abandon:
            tally.counts["abandoned"] += 1
            continue
        base = f"/api/projects/{pid}/leases/{lease['id']}"
        if roll < args.abandon + args.skip:
            t1 = time.perf_counter()
            status, body = await client.request("POST", f"{base}/skip/", json.dumps({"reason": "Not my language"}).encode())
            if status == 200:
                tally.lat["skip"].append(time.perf_counter() - t1)
                tally.counts["skips"] += 1
            else:
                tally.error(f"skip:{status}", body)
            continue
        task = lease["task"]
        key = uuid.uuid4().hex
        if task["kind"] == "comparison":
            ids = [r["id"] for r in task["replies"]]
            rng.shuffle(ids)
            ranking = [[ids[0]], sorted(ids[1:3]), *[[i] for i in ids[3:]]]  # a tie in second place
            ratings = {str(i): {"helpful": rng.randint(1, 7), "truthful": rng.randint(1, 7),
                                "harmless": rng.randint(1, 7)} for i in ids}
            payload = {"idempotency_key": key, "ranking": ranking, "ratings": ratings, "time_spent_ms": 5000}
            kind = "rankings"
        else:
            payload = {"idempotency_key": key, "text": f"An answer to task {task['id']}, written with care.",
                       "time_spent_ms": 4000}
            kind = "demonstrations"
        data = json.dumps(payload).encode()
        t1 = time.perf_counter()
        try:
            status, body = await client.request("POST", f"{base}/submit/", data)
        except Exception as exc:
            tally.error("submit:exception", repr(exc).encode())
            continue
        if status == 201:
            tally.lat["submit"].append(time.perf_counter() - t1)
            tally.accepted.add(key)
            tally.counts[kind] += 1
            first_id = json.loads(body)["id"]
        elif status == 409 and b"lease_expired" in body:
            tally.counts["late_refused"] += 1
            continue
        else:
            tally.error(f"submit:{status}", body)
            continue
        if rng.random() < args.replay:
            status, body = await client.request("POST", f"{base}/submit/", data)
            tally.counts["replays"] += 1
            if status != 200 or json.loads(body)["id"] != first_id:
                tally.counts["replay_mismatch"] += 1
                tally.error(f"replay:{status}", body)


async def run_load(port: int, tokens: list[str], pid: int, seconds: float, args) -> tuple[Tally, float]:
    clients = [make_client("raw", port, tok) for tok in tokens]
    tally = Tally()
    try:
        t_start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(
            annotator(c, pid, t_start + seconds, tally, random.Random(i), args) for i, c in enumerate(clients))),
            timeout=seconds + 180)
        return tally, time.perf_counter() - t_start
    finally:
        for c in clients:
            await c.aclose()


def check_database(url: str, project: dict, tally: Tally) -> dict:
    import psycopg

    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, sql in CHECKS.items():
            out[name] = conn.execute(sql, {"p": project["id"], "overlap": project["overlap"]}).fetchone()[0]
        stored = {row[0] for row in conn.execute(
            "SELECT idempotency_key FROM annotations_submission WHERE project_id = %s", (project["id"],))}
        scanned = dict(((k, s), n) for k, s, n in conn.execute(
            "SELECT kind, state, count(*) FROM annotations_task WHERE project_id = %s GROUP BY 1, 2", (project["id"],)))
        kept = dict(((k, s), n) for k, s, n in conn.execute(
            "SELECT kind, state, sum(n) FROM annotations_taskcount WHERE project_id = %s GROUP BY 1, 2 "
            "HAVING sum(n) <> 0", (project["id"],)))
        out["taskcount_rows"] = conn.execute(
            "SELECT count(*) FROM annotations_taskcount WHERE project_id = %s", (project["id"],)).fetchone()[0]
        out["expired_leases"] = conn.execute(
            "SELECT count(*) FROM annotations_lease WHERE project_id = %s AND status = 'expired'",
            (project["id"],)).fetchone()[0]
    out["accepted_by_clients"] = len(tally.accepted)
    out["lost_submissions"] = len(tally.accepted - stored)
    out["submissions_nobody_was_told_of"] = len(stored - tally.accepted)
    out["task_counts_match_scan"] = scanned == {k: int(v) for k, v in kept.items()}
    return out


class WorkerWithBeat:
    """``celery worker -B``: beat's lease reclaim and count compaction run during the load."""

    def __init__(self, env: dict, log_path: Path):
        self.cmd = [sys.executable, "-m", "celery", "-A", "labelstudio_app", "worker", "-B", "--pool", "solo",
                    "--loglevel", "WARNING", "--schedule", str(log_path.with_suffix(".beat"))]
        self.env, self.log_path = env, log_path

    def __enter__(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--seconds", type=float, default=180, help="length of the load (bounded: at most 900)")
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--comparisons", type=int, default=30, help="percent of tasks that are 4-reply comparisons")
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--lease-seconds", type=int, default=20, help="short, so abandoned leases come back during the run")
    p.add_argument("--abandon", type=float, default=0.03, help="share of leases the annotator walks away from")
    p.add_argument("--skip", type=float, default=0.05, help="share of leases skipped with a reason")
    p.add_argument("--replay", type=float, default=0.05, help="share of submits sent a second time")
    p.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (gthread, 2 threads)")
    p.add_argument("--db", default="labelwork_bench_load")
    p.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--redis", default="redis://127.0.0.1:6379/11",
                   help="Redis database of its own (broker for the bench's worker; emptied afterwards)")
    args = p.parse_args()
    args.seconds = min(args.seconds, 900)

    url = db_url(args.pg, args.db)
    redis_check(args.redis)
    env = child_env(url, args.redis)
    # The worker must not call a model: critiques stay off; everything else runs as deployed.
    env["CRITIQUE_ON_SUBMIT"] = "false"
    os.environ.update({k: env[k] for k in ("CRITIQUE_ON_SUBMIT",)})
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    gun = None
    try:
        recreate_database(args.pg, args.db)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                       check=True, timeout=300)
        django_setup(env)
        fixture = create_fixture(clients=args.annotators, overlap=args.overlap)
        project = fixture["projects"]["A"]
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE annotations_project SET lease_seconds = %s, pending_cap = 3 WHERE id = %s",
                         (args.lease_seconds, project["id"]))
            conn.execute(TASK_INSERT, {"project": project["id"], "n": args.tasks, "comparison_pct": args.comparisons})
            conn.execute(REPLY_INSERT, {"project": project["id"]})
            conn.execute("VACUUM (ANALYZE) annotations_task")
        tokens = [a["token"] for a in fixture["annotators"]]
        gun = Gunicorn(env=env, workers=args.workers, threads=2, worker_class="gthread", variant="product",
                       log_path=logs / f"bench-load-gunicorn-{os.getpid()}.log")
        gun.start(tokens[0])
        with WorkerWithBeat(env, logs / f"bench-load-worker-{os.getpid()}.log"):
            print(f"{args.annotators} annotators for {args.seconds:.0f} s on {args.tasks:,} tasks "
                  f"(overlap {args.overlap}, {args.comparisons}% comparisons, lease {args.lease_seconds} s)", flush=True)
            tally, elapsed = asyncio.run(run_load(gun.port, tokens, project["id"], args.seconds, args))
            # Let beat reclaim what was abandoned at the end, then check.
            time.sleep(min(args.lease_seconds + 35, 70))
        checks = check_database(url, project, tally)
    finally:
        if gun:
            gun.stop()
        redis_cleanup(args.redis)
        from django.db import connections

        connections.close_all()
        drop_database(args.pg, args.db)

    done = tally.counts["demonstrations"] + tally.counts["rankings"]
    result = {
        "annotators": args.annotators, "seconds": round(elapsed, 1),
        "submissions_per_s": round(done / elapsed, 1), **tally.counts,
        "next_ms": ms(tally.lat["next"]), "submit_ms": ms(tally.lat["submit"]), "skip_ms": ms(tally.lat["skip"]),
        "errors": sum(tally.errors.values()), "errors_by_kind": tally.errors, "error_samples": tally.samples,
        "checks": checks,
    }
    print(json.dumps(result, indent=1))
    double = (checks["over_assigned_tasks"] + checks["over_submitted_tasks"] + checks["duplicate_lease_pairs"]
              + checks["duplicate_submission_pairs"])
    ok = (result["errors"] == 0 and double == 0 and checks["lost_submissions"] == 0
          and checks["counter_drift_tasks"] == 0 and checks["task_counts_match_scan"]
          and checks["submissions_nobody_was_told_of"] == 0 and tally.counts["replay_mismatch"] == 0)
    print(f"errors {result['errors']}, double assignments {double}, lost {checks['lost_submissions']}, "
          f"counter drift {checks['counter_drift_tasks']}, counts match {checks['task_counts_match_scan']}; "
          f"next p95 {result['next_ms']['p95']} ms, submit p95 {result['submit_ms']['p95']} ms -> "
          f"{'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
