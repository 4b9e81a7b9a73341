#!/usr/bin/env python
"""Next-task assignment benchmark: the product over HTTP against the same SQL raw, same run.

    python bench/assign.py [--tasks 100000] [--clients 50] [--seconds 30] [--overlap 1] [--keep]

What it does (details and how to read the output: bench/README.md):

1. Setup: drops and re-creates its own database (``labelwork_bench``), migrates it with
   ``manage.py migrate``, creates two identical projects A and B (published instructions,
   ``--clients`` annotators with API tokens, N tasks each, loaded server-side with one
   ``INSERT ... SELECT generate_series``), then ``VACUUM ANALYZE``.
2. Run A, the product: gunicorn on a free loopback port with the dev settings, DEBUG off and
   persistent DB connections; C asyncio clients (one keep-alive connection per annotator) loop
   POST next -> POST submit on project A for ``--seconds``.
3. One annotator alone over HTTP (sequential next -> submit), then the task count endpoint and
   task list pages (first page, following ``next``, a cursor in the middle of the project).
4. Run B, the raw limit: gunicorn stopped, the product's own ``_LEASE_SQL`` through psycopg 3
   (``prepare=True``) plus a one-statement raw submit (mark the lease submitted, bump the task's
   counters, insert a minimal submission row) on project B, same clients, same time.
5. Checks in the database for both projects: over-assignment, duplicates, counter drift, lost
   submissions. Prints a table and a final JSON line. Stops gunicorn and drops the database
   (unless ``--keep``).

Loopback only; every phase is bounded in time.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "labelstudio_app.settings.dev"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------
# Server-side variants (loaded by gunicorn as ``bench.assign:wsgi_app('<variant>')``). "product" is
# the app exactly as deployed; the others exist only to measure a suggested change before it is made.
# --------------------------------------------------------------------------------------------------
VARIANTS = ("product", "prepared", "fastpath")


def wsgi_app(variant: str = "product"):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    from django.conf import settings

    # Django's psycopg 3 backend defaults to client-side binding (ClientCursor, never prepared) and
    # prepare_threshold=None, which also makes psycopg ignore an explicit execute(..., prepare=True).
    if variant == "prepared":  # every ORM query server-side bound, prepared after 5 runs
        settings.DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=5)
    if variant == "fastpath":  # ORM unchanged; the fast path's own statements use prepare=True
        settings.DATABASES["default"].setdefault("OPTIONS", {}).update(prepare_threshold=5)
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    if variant == "fastpath":
        _mount_fastpath()
    return app


# The "fastpath" variant: a prototype of the change suggested to the lead, measured here before
# anyone writes it for real. The two hot endpoints become plain Django views that do their work in
# one transaction of at most two prepared statements (token, membership and project settings are
# read by the same statement that locks the membership; the task payload comes back as JSON from
# the statement that inserts the lease). Anything unusual - no token, not a member, cap reached, no
# task, a replayed or duplicate idempotency key, drafts, a comparison task, an expired lease - falls
# through to the product's DRF view, so answers and errors stay the product's.
_FP_LOCK_SQL = """
SELECT u.id, m.role, p.overlap, p.pending_cap, p.lease_seconds, p.current_instructions_id, iv.number
FROM authtoken_token tk
JOIN auth_user u ON u.id = tk.user_id AND u.is_active
JOIN annotations_membership m ON m.user_id = u.id AND m.project_id = %(project)s
JOIN annotations_project p ON p.id = m.project_id
JOIN annotations_instructionversion iv ON iv.id = p.current_instructions_id
WHERE tk.key = %(key)s
FOR UPDATE OF m
"""


def _fp_sql() -> tuple[str, str]:
    from annotations.services.leases import _state_sql

    lease = f"""
WITH candidate AS (
    SELECT t.id FROM annotations_task t
    WHERE t.project_id = %(project)s AND t.state = 'open'
      AND (SELECT count(*) FROM annotations_lease o
           WHERE o.project_id = %(project)s AND o.annotator_id = %(annotator)s AND o.status = 'active') < %(cap)s
      AND NOT EXISTS (SELECT 1 FROM annotations_lease l
                      WHERE l.annotator_id = %(annotator)s AND l.task_id = t.id OFFSET 0)
    ORDER BY t.id LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
), bumped AS (
    UPDATE annotations_task t SET lease_count = t.lease_count + 1, state = {_state_sql("+ 1", "")}
    FROM candidate c WHERE t.id = c.id
    RETURNING t.id, t.kind, t.conversation
), ins AS (
    INSERT INTO annotations_lease
        (project_id, task_id, annotator_id, status, created_at, expires_at, reason, instruction_version_id)
    SELECT %(project)s, b.id, %(annotator)s, 'active', %(now)s, %(expires)s, '', %(instructions)s FROM bumped b
    RETURNING id, task_id, created_at, expires_at
)
SELECT json_build_object(
    'id', i.id, 'status', 'active', 'created_at', i.created_at, 'expires_at', i.expires_at,
    'instruction_version', %(instruction_number)s,
    'task', json_build_object(
        'id', b.id, 'kind', b.kind, 'conversation', b.conversation,
        'replies', coalesce((SELECT json_agg(json_build_object('id', r.id, 'content', r.content) ORDER BY r.id)
                             FROM annotations_candidatereply r WHERE r.task_id = b.id AND r.for_ranking), '[]'),
        'drafts', coalesce((SELECT json_agg(json_build_object('id', r.id, 'content', r.content, 'source', r.source,
                                                              'model', mv.name) ORDER BY r.id)
                            FROM annotations_candidatereply r
                            LEFT JOIN annotations_modelversion mv ON mv.id = r.model_version_id
                            WHERE r.task_id = b.id AND NOT r.for_ranking AND r.source = 'model'), '[]')))::text
FROM ins i JOIN bumped b ON b.id = i.task_id
"""
    submit = f"""
WITH who AS (
    SELECT u.id, u.username FROM authtoken_token tk
    JOIN auth_user u ON u.id = tk.user_id AND u.is_active
    JOIN annotations_membership m ON m.user_id = u.id AND m.project_id = %(project)s
                                  AND m.role IN ('annotator', 'reviewer', 'admin')
    WHERE tk.key = %(key)s
), l AS (
    SELECT l.id, l.task_id, l.instruction_version_id, l.annotator_id
    FROM annotations_lease l
    WHERE l.id = %(lease)s AND l.project_id = %(project)s AND l.status = 'active'
      AND l.annotator_id = (SELECT id FROM who)
    FOR UPDATE
), p AS (
    SELECT overlap FROM annotations_project WHERE id = %(project)s
), bumped AS (
    UPDATE annotations_task t
    SET lease_count = t.lease_count - 1, submission_count = t.submission_count + 1,
        state = CASE WHEN t.submission_count + 1 >= p.overlap THEN 'done'
                     WHEN t.lease_count - 1 + t.submission_count + 1 >= p.overlap THEN 'busy' ELSE 'open' END
    FROM l, p WHERE t.id = l.task_id AND t.kind = 'demonstration'
    RETURNING t.id
), reply AS (
    INSERT INTO annotations_candidatereply
        (task_id, content, source, model_version_id, sampling_params, parent_id, created_by_id, for_ranking, created_at)
    SELECT b.id, %(text)s, 'human', NULL, '{{}}', NULL, l.annotator_id, false, %(now)s
    FROM bumped b JOIN l ON l.task_id = b.id
    RETURNING id, task_id
), sub AS (
    INSERT INTO annotations_submission
        (project_id, task_id, lease_id, annotator_id, kind, instruction_version_id, idempotency_key, status,
         created_at, time_spent_ms, rationale, reply_id, draft_sources, ranking, ratings, flags)
    SELECT %(project)s, l.task_id, l.id, l.annotator_id, 'demonstration', l.instruction_version_id, %(idem)s,
           'submitted', %(now)s, %(ms)s, %(rationale)s, r.id, '[]', '[]', '{{}}', '{{}}'
    FROM l JOIN reply r ON r.task_id = l.task_id
    RETURNING id, task_id, lease_id, instruction_version_id, created_at
), closed AS (
    UPDATE annotations_lease x SET status = 'submitted', closed_at = %(now)s
    FROM sub WHERE x.id = sub.lease_id
    RETURNING x.id
)
SELECT json_build_object(
    'id', s.id, 'task', s.task_id, 'lease', s.lease_id, 'kind', 'demonstration',
    'annotator', (SELECT username FROM who), 'status', 'submitted', 'instruction_version', iv.number,
    'idempotency_key', %(idem)s, 'created_at', s.created_at, 'time_spent_ms', %(ms)s, 'rationale', %(rationale)s,
    'text', %(text)s, 'draft_sources', '[]'::json, 'ranking', '[]'::json, 'ratings', '{{}}'::json,
    'flags', '{{}}'::json)::text, s.id
FROM sub s JOIN annotations_instructionversion iv ON iv.id = s.instruction_version_id, closed
"""
    return lease, submit


def _mount_fastpath() -> None:
    import psycopg
    from django.db import connection, transaction
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    import labelstudio_app.urls as root_urls
    from annotations.api import views as api
    from annotations.models import Submission
    from annotations.signals import submission_created

    lease_sql, submit_sql = _fp_sql()
    drf_next = api.NextTaskView.as_view()
    drf_submit = api.SubmitView.as_view()
    labellers = {"annotator", "reviewer", "admin"}

    def token_of(request) -> str | None:
        head = request.META.get("HTTP_AUTHORIZATION", "")
        return head[6:].strip() or None if head.startswith("Token ") else None

    def raw_cursor():
        connection.ensure_connection()
        return psycopg.Cursor(connection.connection)  # server-side binding, so prepare=True works

    @csrf_exempt
    def fast_next(request, project_id):
        key = token_of(request)
        if request.method != "POST" or not key:
            return drf_next(request, project_id=project_id)
        now = datetime.now(timezone.utc)
        with transaction.atomic(), raw_cursor() as cur:
            cur.execute(_FP_LOCK_SQL, {"project": project_id, "key": key}, prepare=True)
            row = cur.fetchone()
            payload = None
            if row and row[1] in labellers:
                user_id, _role, overlap, cap, lease_s, instructions, number = row
                cur.execute(lease_sql, {"project": project_id, "annotator": user_id, "cap": cap, "overlap": overlap,
                                        "now": now, "expires": now + timedelta(seconds=lease_s),
                                        "instructions": instructions, "instruction_number": number}, prepare=True)
                got = cur.fetchone()
                payload = got[0] if got else None
        if payload is None:  # cap reached, no task, not allowed...: the product's own path and answer
            return drf_next(request, project_id=project_id)
        return HttpResponse(payload, status=201, content_type="application/json")

    @csrf_exempt
    def fast_submit(request, project_id, lease_id):
        key = token_of(request)
        try:
            data = json.loads(request.body) if request.method == "POST" and key else None
        except ValueError:
            data = None
        simple = (isinstance(data, dict) and set(data) <= {"idempotency_key", "text", "rationale", "time_spent_ms"}
                  and isinstance(data.get("idempotency_key"), str) and isinstance(data.get("text"), str)
                  and isinstance(data.get("rationale", ""), str) and type(data.get("time_spent_ms", 0)) is int)
        if simple:
            idem, text = data["idempotency_key"].strip(), data["text"].replace("\r\n", "\n")
            rationale, spent = data.get("rationale", ""), data.get("time_spent_ms", 0)
            simple = (0 < len(idem) <= 100 and text.strip() and len(text) <= 50_000 and len(rationale) <= 10_000
                      and 0 <= spent <= 7 * 86400 * 1000)
        if not simple:
            return drf_submit(request, project_id=project_id, lease_id=lease_id)
        try:
            with transaction.atomic(), raw_cursor() as cur:
                cur.execute(submit_sql, {"project": project_id, "key": key, "lease": lease_id, "text": text,
                                         "idem": idem, "ms": spent, "rationale": rationale,
                                         "now": datetime.now(timezone.utc)}, prepare=True)
                row = cur.fetchone()
                if row:
                    sub_id = row[1]
                    transaction.on_commit(lambda: submission_created.send(sender=Submission, submission_id=sub_id))
        except psycopg.IntegrityError:
            row = None  # a duplicate idempotency key: the product's path answers the replay or conflict
        if row is None:
            return drf_submit(request, project_id=project_id, lease_id=lease_id)
        return HttpResponse(row[0], status=201, content_type="application/json")

    root_urls.urlpatterns[:0] = [
        path("api/projects/<int:project_id>/next/", fast_next),
        path("api/projects/<int:project_id>/leases/<int:lease_id>/submit/", fast_submit),
    ]


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def ms(values: list[float]) -> dict:
    """p50/p95/p99/max in milliseconds of a list of seconds."""
    out = {"n": len(values)}
    for q in (50, 95, 99):
        v = pct(values, q)
        out[f"p{q}"] = round(v * 1000, 2) if v is not None else None
    out["max"] = round(max(values) * 1000, 2) if values else None
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return parts._replace(path="/" + name).geturl()


# --------------------------------------------------------------------------------------------------
# CPU accounting: where the two cores went during a run
# --------------------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[1] is ppid; utime, stime are fields 14, 15 of the full line (index 11, 12 here)
    return comm, int(fields[1]), int(fields[11]) + int(fields[12])


BENCH_DB = "labelwork_bench"  # set from --db; PostgreSQL backends of other databases are not ours


def _ours_postgres(pid: int) -> bool:
    """A backend of the bench database, or one of the server's own processes (WAL writer,
    checkpointer...), whose title names no client. Other databases' backends are someone else's."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if "(" not in title and "[local]" not in title:
        return True
    return f" {BENCH_DB} " in title


def cpu_snapshot(gunicorn_pid: int | None) -> dict:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                procs[int(entry)] = st
    postgres = sum(t for pid, (comm, _pp, t) in procs.items() if comm.startswith("postgres") and _ours_postgres(pid))
    redis_ = sum(t for comm, _pp, t in procs.values() if comm.startswith("redis-server"))
    kernel = sum(t for pid, (_c, pp, t) in procs.items() if pp == 2 or pid == 2)  # kernel threads (I/O, flushes)
    gunicorn = 0
    if gunicorn_pid:
        family = {gunicorn_pid}
        changed = True
        while changed:
            changed = False
            for pid, (_c, ppid, _t) in procs.items():
                if ppid in family and pid not in family:
                    family.add(pid)
                    changed = True
        gunicorn = sum(procs[p][2] for p in family if p in procs)
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    busy = sum(cpu) - cpu[3] - cpu[4]  # minus idle and iowait
    t = os.times()
    return {"wall": time.perf_counter(), "client": (t.user + t.system), "postgres": postgres / CLK_TCK,
            "gunicorn": gunicorn / CLK_TCK, "redis": redis_ / CLK_TCK, "kernel": kernel / CLK_TCK,
            "busy": busy / CLK_TCK}


def machine_busy_cores(seconds: float = 2.0) -> float:
    """Cores busy on the whole machine over a short window (before anything of ours runs)."""
    a = cpu_snapshot(None)
    time.sleep(seconds)
    b = cpu_snapshot(None)
    return (b["busy"] - a["busy"]) / (b["wall"] - a["wall"])


def wait_for_quiet(limit_s: float, threshold: float = 0.3) -> float:
    """Other work on the machine skews every figure here (2 cores). Wait up to ``limit_s`` for the
    background load to drop under ``threshold`` cores; return the last reading either way."""
    deadline = time.monotonic() + limit_s
    busy = machine_busy_cores()
    while busy > threshold and time.monotonic() < deadline:
        log(f"machine busy with other work ({busy:.2f} cores); waiting for it to settle")
        time.sleep(5)
        busy = machine_busy_cores()
    return round(busy, 2)


def cpu_delta(a: dict, b: dict, pairs: int) -> dict:
    wall = b["wall"] - a["wall"]
    d = {k: b[k] - a[k] for k in ("client", "postgres", "gunicorn", "redis", "kernel", "busy")}
    # "kernel" holds kernel threads only; interrupt and syscall time is in the processes' own figures
    d["other"] = d["busy"] - d["client"] - d["postgres"] - d["gunicorn"] - d["redis"] - d["kernel"]
    out = {"cores_busy": round(d["busy"] / wall, 2) if wall else None}
    ours = d["client"] + d["gunicorn"] + d["postgres"] + d["redis"]
    # CPU the bench itself spent per pair: unlike pairs/s, hardly moved by other work on the machine
    out["ours_ms_per_pair"] = round(ours * 1000 / pairs, 2) if pairs else None
    for k in ("client", "gunicorn", "postgres", "redis", "kernel", "other"):
        out[f"{k}_cores"] = round(d[k] / wall, 2) if wall else None
        out[f"{k}_ms_per_pair"] = round(d[k] * 1000 / pairs, 2) if pairs else None
    return out


# --------------------------------------------------------------------------------------------------
# HTTP clients. "raw" is a minimal HTTP/1.1 keep-alive client on asyncio streams (a few tens of
# microseconds per request); "httpx" is httpx.AsyncClient, heavier on the shared 2 cores.
# --------------------------------------------------------------------------------------------------
class RawHTTP:
    def __init__(self, port: int, token: str | None):
        self.port = port
        auth = f"Authorization: Token {token}\r\n" if token else ""
        self.headers = f"Host: 127.0.0.1:{port}\r\n{auth}Accept: application/json\r\n".encode()
        self.reader = self.writer = None

    async def _connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        if body is None:
            msg = b"%s %s HTTP/1.1\r\n%sContent-Length: 0\r\n\r\n" % (method.encode(), path.encode(), self.headers)
        else:
            msg = b"%s %s HTTP/1.1\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                method.encode(), path.encode(), self.headers, len(body), body)
        try:
            self.writer.write(msg)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, chunked, close = None, False, False
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
                elif key == b"connection" and value.strip().lower() == b"close":
                    close = True
            if chunked:
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await self.reader.readuntil(b"\r\n")
                        break
                    parts.append(await self.reader.readexactly(size))
                    await self.reader.readexactly(2)
                data = b"".join(parts)
            elif length is not None:
                data = await self.reader.readexactly(length)
            else:
                data = await self.reader.read()
                close = True
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, data

    async def aclose(self):
        self.close()


class HttpxHTTP:
    def __init__(self, port: int, token: str | None):
        import httpx

        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else None
        r = await self.client.request(method, path, content=body, headers=headers)
        return r.status_code, r.content

    async def aclose(self):
        await self.client.aclose()


def make_client(kind: str, port: int, token: str | None):
    return (RawHTTP if kind == "raw" else HttpxHTTP)(port, token)


# --------------------------------------------------------------------------------------------------
# per-run statistics
# --------------------------------------------------------------------------------------------------
class Stats:
    def __init__(self):
        self.per_client: list[int] = []
        self.next_lat: list[float] = []
        self.submit_lat: list[float] = []
        self.pair_lat: list[float] = []
        self.pairs = 0
        self.empty = 0
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []

    def error(self, key: str, sample: str = "") -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        if sample and len(self.error_samples) < 5:
            self.error_samples.append(f"{key}: {sample[:300]}")


def summarize(stats: Stats, elapsed: float) -> dict:
    return {
        "pairs": stats.pairs,
        "elapsed_s": round(elapsed, 2),
        "pairs_per_s": round(stats.pairs / elapsed, 1) if elapsed else None,
        "next_ms": ms(stats.next_lat),
        "submit_ms": ms(stats.submit_lat),
        "pair_ms": ms(stats.pair_lat),
        # fairness: pairs done by the slowest, the median and the fastest client
        "pairs_per_client_min_med_max": ([min(stats.per_client), int(pct(stats.per_client, 50)), max(stats.per_client)]
                                         if stats.per_client else None),
        "empty_next": stats.empty,
        "errors": sum(stats.errors.values()),
        "errors_by_kind": stats.errors,
        "error_samples": stats.error_samples,
    }


# --------------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------------
def recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_env(url: str, redis_url: str) -> dict:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": url,
        # Every submit enqueues a critique job (models_service, CRITIQUE_ON_SUBMIT). The bench's jobs
        # go to a Redis database of their own that no worker reads, and are deleted afterwards: a
        # worker of the real app must never receive submission ids from the bench database.
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DEBUG": "false",
        # A throwaway key: the dev settings would otherwise create var/secret_key in the tree.
        "SECRET_KEY": env.get("BENCH_SECRET_KEY", "bench-" + uuid.uuid4().hex * 2),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def redis_check(redis_url: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    foreign = [k for k in r.scan_iter(count=1000) if not (k == b"celery" or k.startswith(b"_kombu."))]
    if foreign:
        raise SystemExit(f"{redis_url} holds keys the bench did not write ({foreign[:3]}...); choose another --redis")


def redis_cleanup(redis_url: str) -> int:
    """Delete the critique jobs the bench's submits enqueued; return how many there were."""
    import redis

    r = redis.Redis.from_url(redis_url)
    n = r.llen("celery")
    keys = [k for k in r.scan_iter(count=1000) if k == b"celery" or k.startswith(b"_kombu.")]
    if keys:
        r.delete(*keys)
    return n


def django_setup(env: dict) -> None:
    for key in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "REDIS_URL", "CELERY_BROKER_URL",
                "CELERY_RESULT_BACKEND"):
        os.environ[key] = env[key]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_fixture(*, clients: int, overlap: int) -> dict:
    """Users, tokens, two projects with published instructions, memberships - through the ORM and
    the product's own services."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotations.models import Membership, Role
    from annotations.services.instructions import publish_instructions
    from annotations.services.projects import create_project

    User = get_user_model()
    admin = User.objects.create_user("bench-admin", password=None, is_staff=True)
    projects = {}
    for label in ("A", "B"):
        project = create_project(name=f"bench {label}", created_by=admin, overlap=overlap, pending_cap=100,
                                 lease_seconds=7 * 86400)
        publish_instructions(project=project, body="Write the best reply you can to the user's last message.",
                             published_by=admin, title="v1")
        project.refresh_from_db()
        projects[label] = project
    users = User.objects.bulk_create(
        [User(username=f"bench-annotator-{i:04d}", password="!") for i in range(clients)]
        + [User(username="bench-solo", password="!")])
    tokens = Token.objects.bulk_create([Token(key=Token.generate_key(), user=u) for u in users])
    admin_token = Token.objects.create(user=admin)
    annotators, solo = users[:clients], users[clients]
    Membership.objects.bulk_create(
        [Membership(project=projects[label], user=u, role=Role.ANNOTATOR) for label in ("A", "B") for u in annotators]
        + [Membership(project=projects["A"], user=solo, role=Role.ANNOTATOR)])
    key_of = {t.user_id: t.key for t in tokens}
    return {
        "projects": {label: {"id": p.pk, "instructions": p.current_instructions_id, "overlap": p.overlap}
                     for label, p in projects.items()},
        "annotators": [{"id": u.pk, "token": key_of[u.pk]} for u in annotators],
        "solo": {"id": solo.pk, "token": key_of[solo.pk]},
        "admin_token": admin_token.key,
    }


TASK_INSERT = """
INSERT INTO annotations_task
    (id, project_id, kind, conversation, content_hash, metadata, created_at, state, lease_count, submission_count,
     import_batch_id)
SELECT %(first_id)s + g - 1, %(project)s, 'demonstration',
       jsonb_build_array(jsonb_build_object(
           'role', 'user',
           'content', 'Task ' || g || ' of the assignment benchmark. Please answer: ' || repeat(md5(g::text), 8))),
       encode(sha256(convert_to('bench-' || %(project)s || '-' || g, 'UTF8')), 'hex'),
       '{"source": "bench"}'::jsonb, now(), 'open', 0, 0, NULL
FROM generate_series(1, %(n)s) AS g
"""


def load_tasks(url: str, project_ids: list[int], n: int) -> float:
    """N tasks per project, server-side, each project in its own connection (one per core). Ids are
    given explicitly so that each project owns one contiguous range (project 1: 1..N, project 2:
    N+1..2N), as after two imports made one after the other; the id sequence is moved past them."""
    import psycopg

    t0 = time.perf_counter()
    errors = []

    def one(pid: int, first_id: int):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET synchronous_commit = off")
                conn.execute(TASK_INSERT, {"project": pid, "n": n, "first_id": first_id})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(pid, 1 + i * n)) for i, pid in enumerate(project_ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setval(pg_get_serial_sequence('annotations_task', 'id'), %s)", (n * len(project_ids),))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# gunicorn
# --------------------------------------------------------------------------------------------------
class Gunicorn:
    def __init__(self, *, env: dict, workers: int, threads: int, worker_class: str, variant: str, log_path: Path):
        self.port = free_port()
        app = "labelstudio_app.wsgi:application" if variant == "product" else f"bench.assign:wsgi_app({variant!r})"
        self.cmd = [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{self.port}",
                    "--workers", str(workers), "--worker-class", worker_class, "--keep-alive", "75",
                    "--backlog", "2048", "--log-level", "warning", "--graceful-timeout", "5",
                    "--timeout", "60"]
        if worker_class == "gthread":
            self.cmd += ["--threads", str(threads)]
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, ready_token: str, timeout: float = 60) -> None:
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
            try:
                status, _ = asyncio.run(_one_request(self.port, ready_token, "GET", "/api/projects/"))
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        if not self.proc:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _proc_stat(int(entry))
                if st and st[1] == self.proc.pid:
                    out.append(int(entry))
        return sorted(out)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        self.log_file.close()


async def _one_request(port: int, token: str, method: str, path: str) -> tuple[int, bytes]:
    c = RawHTTP(port, token)
    try:
        return await c.request(method, path)
    finally:
        c.close()


# --------------------------------------------------------------------------------------------------
# Run A: the product over HTTP
# --------------------------------------------------------------------------------------------------
REPLY_TEXT = ("Here is a careful, complete answer to the question, written by a person for the "
              "benchmark. " * 4)


async def http_pair(client, pid: int, stats: Stats, counters: dict) -> bool:
    """One next -> submit cycle of one annotator, recorded in ``stats``."""
    t0 = time.perf_counter()
    try:
        status, body = await client.request("POST", f"/api/projects/{pid}/next/")
    except Exception as exc:
        stats.error("next:exception", repr(exc))
        await asyncio.sleep(0.01)
        return False
    t1 = time.perf_counter()
    if status != 201:
        if status == 404 and b"no_task_available" in body:
            stats.empty += 1
            await asyncio.sleep(0.05)
        else:
            stats.error(f"next:{status}", body.decode(errors="replace"))
        return False
    lease = json.loads(body)
    payload = json.dumps({"idempotency_key": uuid.uuid4().hex,
                          "text": f"Reply to task {lease['task']['id']}. {REPLY_TEXT}"}).encode()
    try:
        status, body = await client.request("POST", f"/api/projects/{pid}/leases/{lease['id']}/submit/", payload)
    except Exception as exc:
        stats.error("submit:exception", repr(exc))
        counters["submit_unknown"] += 1
        return False
    t2 = time.perf_counter()
    if status in (200, 201):
        counters["submits_2xx"] += 1
        stats.pairs += 1
        stats.next_lat.append(t1 - t0)
        stats.submit_lat.append(t2 - t1)
        stats.pair_lat.append(t2 - t0)
        return True
    stats.error(f"submit:{status}", body.decode(errors="replace"))
    return False


async def http_annotator(client, pid: int, t_end: float, stats: Stats, counters: dict) -> None:
    done = 0
    while time.perf_counter() < t_end:
        done += await http_pair(client, pid, stats, counters)
    stats.per_client.append(done)


async def http_run(*, port: int, client_kind: str, tokens: list[str], pid: int, seconds: float,
                   counters: dict, cpu_pid: int | None) -> tuple[dict, Stats]:
    clients = [make_client(client_kind, port, tok) for tok in tokens]
    stats = Stats()
    try:
        # Open every keep-alive connection before the clock starts.
        await asyncio.gather(*(c.request("GET", f"/api/projects/{pid}/stats/me/") for c in clients))
        before = cpu_snapshot(cpu_pid)
        t_start = time.perf_counter()
        t_end = t_start + seconds
        await asyncio.wait_for(
            asyncio.gather(*(http_annotator(c, pid, t_end, stats, counters) for c in clients)),
            timeout=seconds + 120)
        elapsed = time.perf_counter() - t_start
        after = cpu_snapshot(cpu_pid)
    finally:
        for c in clients:
            await c.aclose()
    out = summarize(stats, elapsed)
    out["cpu"] = cpu_delta(before, after, stats.pairs)
    return out, stats


async def solo_run(*, port: int, client_kind: str, token: str, pid: int, iterations: int, warmup: int,
                   counters: dict) -> dict:
    client = make_client(client_kind, port, token)
    try:
        await http_annotator_n(client, pid, warmup, Stats(), counters)
        stats = Stats()
        t0 = time.perf_counter()
        await http_annotator_n(client, pid, iterations, stats, counters)
        elapsed = time.perf_counter() - t0
    finally:
        await client.aclose()
    return summarize(stats, elapsed)


async def http_annotator_n(client, pid: int, n: int, stats: Stats, counters: dict) -> None:
    for _ in range(n):
        await http_pair(client, pid, stats, counters)


# --------------------------------------------------------------------------------------------------
# Count and list endpoints
# --------------------------------------------------------------------------------------------------
def cursor_at(position: int) -> str:
    """A DRF CursorPagination cursor that starts after ``position`` (ordering by id)."""
    return base64.b64encode(f"p={position}".encode()).decode()


async def listing_run(*, port: int, token: str, projects: dict, id_ranges: dict, repeats: int) -> dict:
    client = RawHTTP(port, token)
    out: dict = {}

    async def timed(path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        status, body = await client.request("GET", path)
        return time.perf_counter() - t0, status, body

    try:
        for label in ("A", "B"):
            pid = projects[label]["id"]
            lo, hi = id_ranges[label]
            res: dict = {}
            # warm: the first call of each kind pays for plan caching and cold pages
            for path in (f"/api/projects/{pid}/tasks/counts/", f"/api/projects/{pid}/tasks/?page_size=50"):
                await timed(path)
            lat, statuses = [], set()
            for _ in range(repeats):
                dt, status, body = await timed(f"/api/projects/{pid}/tasks/counts/")
                lat.append(dt)
                statuses.add(status)
            res["count"] = {**ms(lat), "status": sorted(statuses), "body": json.loads(body) if status == 200 else None}
            lat, statuses = [], set()
            for _ in range(repeats):
                dt, status, body = await timed(f"/api/projects/{pid}/tasks/?page_size=50")
                lat.append(dt)
                statuses.add(status)
            res["first_page"] = {**ms(lat), "status": sorted(statuses)}
            # follow `next` links
            lat, statuses, path, pages = [], set(), f"/api/projects/{pid}/tasks/?page_size=50", 0
            _, _, body = await timed(path)
            nxt = json.loads(body).get("next")
            while nxt and pages < max(repeats, 10):
                path = nxt[nxt.index("/api/"):]
                dt, status, body = await timed(path)
                lat.append(dt)
                statuses.add(status)
                pages += 1
                nxt = json.loads(body).get("next") if status == 200 else None
            res["next_pages"] = {**ms(lat), "status": sorted(statuses)}
            # a cursor in the middle of the project, then follow it
            mid = lo + (hi - lo) // 2
            lat, statuses = [], set()
            path = f"/api/projects/{pid}/tasks/?page_size=50&cursor={cursor_at(mid)}"
            first_id = None
            for i in range(repeats):
                dt, status, body = await timed(path)
                lat.append(dt)
                statuses.add(status)
                if status == 200:
                    page = json.loads(body)
                    if first_id is None and page["results"]:
                        first_id = page["results"][0]["id"]
                    if page.get("next") and i % 2 == 0:
                        path = page["next"][page["next"].index("/api/"):]
            res["deep_cursor_page"] = {**ms(lat), "status": sorted(statuses), "position": mid, "first_id": first_id}
            out[label] = res
    finally:
        client.close()
    return out


# --------------------------------------------------------------------------------------------------
# Run B: the same assignment SQL, raw, through psycopg with prepared statements
# --------------------------------------------------------------------------------------------------
def raw_sql() -> tuple[str, str]:
    from annotations.models import Lease, Submission, Task
    from annotations.services.leases import _LEASE_SQL, _state_sql

    submit = f"""
WITH closed AS (
    UPDATE {Lease._meta.db_table} SET status = 'submitted', closed_at = %(now)s
    WHERE id = %(lease)s AND status = 'active'
    RETURNING id, task_id, project_id, annotator_id, instruction_version_id
), bumped AS (
    UPDATE {Task._meta.db_table} t
    SET lease_count = t.lease_count - 1, submission_count = t.submission_count + 1,
        state = {_state_sql("- 1", "+ 1")}
    FROM closed c WHERE t.id = c.task_id
    RETURNING t.id, t.kind
)
INSERT INTO {Submission._meta.db_table}
    (project_id, task_id, lease_id, annotator_id, kind, instruction_version_id, idempotency_key, status,
     created_at, time_spent_ms, rationale, draft_sources, ranking, ratings, flags, reply_id)
SELECT c.project_id, c.task_id, c.id, c.annotator_id, b.kind, c.instruction_version_id, %(key)s, 'submitted',
       %(now)s, 0, '', '[]', '[]', '{{}}', '{{}}', NULL
FROM closed c JOIN bumped b ON b.id = c.task_id
RETURNING id
"""
    return _LEASE_SQL, submit


async def raw_annotator(conn, lease_sql: str, submit_sql: str, project: dict, annotator_id: int, t_end: float,
                        stats: Stats, counters: dict) -> None:
    import psycopg

    params = {"project": project["id"], "annotator": annotator_id, "overlap": project["overlap"],
              "instructions": project["instructions"]}
    completed = 0
    async with conn.cursor() as cur:
        while time.perf_counter() < t_end:
            now = datetime.now(timezone.utc)
            t0 = time.perf_counter()
            try:
                await cur.execute(lease_sql, {**params, "now": now, "expires": now + timedelta(days=7)}, prepare=True)
                row = await cur.fetchone()
            except psycopg.Error as exc:
                stats.error(f"next:{type(exc).__name__}", str(exc))
                continue
            t1 = time.perf_counter()
            if row is None:
                stats.empty += 1
                await asyncio.sleep(0.05)
                continue
            try:
                await cur.execute(submit_sql, {"now": datetime.now(timezone.utc), "lease": row[0],
                                               "key": uuid.uuid4().hex, "overlap": project["overlap"]}, prepare=True)
                done = await cur.fetchone()
            except psycopg.Error as exc:
                stats.error(f"submit:{type(exc).__name__}", str(exc))
                counters["submit_unknown"] += 1
                continue
            t2 = time.perf_counter()
            if done is None:
                stats.error("submit:lease_not_active")
                continue
            counters["submits_2xx"] += 1
            stats.pairs += 1
            stats.next_lat.append(t1 - t0)
            stats.submit_lat.append(t2 - t1)
            stats.pair_lat.append(t2 - t0)
            completed += 1
    stats.per_client.append(completed)


async def raw_run(*, url: str, project: dict, annotator_ids: list[int], seconds: float, warmup: float,
                  counters: dict) -> dict:
    import psycopg

    lease_sql, submit_sql = raw_sql()
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in annotator_ids]
    try:
        if warmup:
            t_end = time.perf_counter() + warmup
            await asyncio.gather(*(raw_annotator(c, lease_sql, submit_sql, project, a, t_end, Stats(), counters)
                                   for c, a in zip(conns, annotator_ids)))
        stats = Stats()
        before = cpu_snapshot(None)
        t_start = time.perf_counter()
        t_end = t_start + seconds
        await asyncio.wait_for(
            asyncio.gather(*(raw_annotator(c, lease_sql, submit_sql, project, a, t_end, stats, counters)
                             for c, a in zip(conns, annotator_ids))),
            timeout=seconds + 120)
        elapsed = time.perf_counter() - t_start
        after = cpu_snapshot(None)
    finally:
        for c in conns:
            await c.close()
    out = summarize(stats, elapsed)
    out["cpu"] = cpu_delta(before, after, stats.pairs)
    return out


# --------------------------------------------------------------------------------------------------
# Checks in the database
# --------------------------------------------------------------------------------------------------
CHECKS = {
    # leases that hold or used a slot, beyond the overlap
    "over_assigned_tasks": """
        SELECT count(*) FROM (
            SELECT task_id FROM annotations_lease WHERE project_id = %(p)s AND status IN ('active', 'submitted')
            GROUP BY task_id HAVING count(*) > %(overlap)s) x""",
    "over_submitted_tasks": """
        SELECT count(*) FROM (
            SELECT task_id FROM annotations_submission WHERE project_id = %(p)s
            GROUP BY task_id HAVING count(*) > %(overlap)s) x""",
    "duplicate_lease_pairs": """
        SELECT count(*) FROM (
            SELECT 1 FROM annotations_lease WHERE project_id = %(p)s
            GROUP BY annotator_id, task_id HAVING count(*) > 1) x""",
    "duplicate_submission_pairs": """
        SELECT count(*) FROM (
            SELECT 1 FROM annotations_submission WHERE project_id = %(p)s
            GROUP BY annotator_id, task_id HAVING count(*) > 1) x""",
    "counter_drift_tasks": """
        SELECT count(*) FROM annotations_task t
        LEFT JOIN (SELECT task_id, count(*) FILTER (WHERE status = 'active') AS active
                   FROM annotations_lease WHERE project_id = %(p)s GROUP BY task_id) l ON l.task_id = t.id
        LEFT JOIN (SELECT task_id, count(*) AS n FROM annotations_submission WHERE project_id = %(p)s
                   GROUP BY task_id) s ON s.task_id = t.id
        WHERE t.project_id = %(p)s
          AND (t.lease_count <> coalesce(l.active, 0) OR t.submission_count <> coalesce(s.n, 0))""",
    "submissions_in_db": "SELECT count(*) FROM annotations_submission WHERE project_id = %(p)s",
    "leases_in_db": "SELECT count(*) FROM annotations_lease WHERE project_id = %(p)s",
    "active_leases_left": "SELECT count(*) FROM annotations_lease WHERE project_id = %(p)s AND status = 'active'",
}


def db_checks(url: str, project: dict, counters: dict) -> dict:
    import psycopg

    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, sql in CHECKS.items():
            out[name] = conn.execute(sql, {"p": project["id"], "overlap": project["overlap"]}).fetchone()[0]
    out["submits_2xx_by_clients"] = counters["submits_2xx"]
    out["submits_unknown_outcome"] = counters["submit_unknown"]
    out["lost_submissions"] = counters["submits_2xx"] - out["submissions_in_db"]
    out["double_assignments"] = (out["over_assigned_tasks"] + out["over_submitted_tasks"]
                                 + out["duplicate_lease_pairs"] + out["duplicate_submission_pairs"])
    return out


def explain(url: str, projects: dict, fixture: dict, id_ranges: dict, path: Path) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the hot statements, written to a file (the lease is rolled back)."""
    import psycopg

    from annotations.services.leases import _LEASE_SQL

    a = projects["A"]
    lo, hi = id_ranges["A"]
    now = datetime.now(timezone.utc)
    stmts = [
        ("next-task (_LEASE_SQL), project A, annotator 0",
         _LEASE_SQL, {"project": a["id"], "annotator": fixture["annotators"][0]["id"], "now": now,
                      "expires": now + timedelta(days=7), "overlap": a["overlap"], "instructions": a["instructions"]}),
        ("task counts (selectors.task_counts)",
         "SELECT kind, state, COUNT(id) AS n FROM annotations_task WHERE project_id = %(p)s GROUP BY kind, state",
         {"p": a["id"]}),
        ("first list page", "SELECT * FROM annotations_task WHERE project_id = %(p)s ORDER BY id LIMIT 51",
         {"p": a["id"]}),
        ("cursor page in the middle",
         "SELECT * FROM annotations_task WHERE project_id = %(p)s AND id > %(pos)s ORDER BY id LIMIT 51",
         {"p": a["id"], "pos": lo + (hi - lo) // 2}),
        ("first list page, project B (ids after A)",
         "SELECT * FROM annotations_task WHERE project_id = %(p)s ORDER BY id LIMIT 51", {"p": projects["B"]["id"]}),
    ]
    with psycopg.connect(url) as conn, open(path, "w") as f:
        for title, sql, params in stmts:
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
            f.write(f"### {title}\n" + "\n".join(r[0] for r in rows) + "\n\n")
            conn.rollback()


# --------------------------------------------------------------------------------------------------
# py-spy (investigation only): sample every gunicorn worker during run A
# --------------------------------------------------------------------------------------------------
def start_py_spy(pids: list[int], seconds: float, out_dir: Path) -> list[subprocess.Popen]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in pids:
        procs.append(subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--format", "raw",
             "--output", str(out_dir / f"worker-{pid}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------
def fmt(v) -> str:
    return "-" if v is None else str(v)


def print_table(r: dict) -> None:
    a, b = r["A"], r["B"]
    w = 28
    print()
    print(f"Task assignment benchmark  {r['date']}  {r['machine']}")
    print(f"tasks/project {r['args']['tasks']:,}  clients {r['args']['clients']}  seconds {r['args']['seconds']}  "
          f"overlap {r['args']['overlap']}  gunicorn {r['gunicorn']['config']}  client {r['args']['client']}  "
          f"variant {r['args']['variant']}")
    s = r["setup"]
    print(f"setup {s['total_s']} s (create+migrate {s['migrate_s']} s, fixture {s['fixture_s']} s, "
          f"tasks {s['tasks_s']} s, vacuum analyze {s['vacuum_s']} s)")
    print()
    print(f"background load before runs (cores, not ours): A {r.get('background_cores_before_A')}, "
          f"solo {r.get('background_cores_before_solo')}, B {r.get('background_cores_before_B')}")
    print(f"{'':{w}} {'A: product/HTTP':>18} {'B: raw SQL':>18}")
    rows = [
        ("throughput (pairs/s)", a["pairs_per_s"], b["pairs_per_s"]),
        ("pairs", a["pairs"], b["pairs"]),
        ("next p50 / p95 / p99 ms", "/".join(fmt(a["next_ms"][k]) for k in ("p50", "p95", "p99")),
         "/".join(fmt(b["next_ms"][k]) for k in ("p50", "p95", "p99"))),
        ("pair p50 / p95 / p99 ms", "/".join(fmt(a["pair_ms"][k]) for k in ("p50", "p95", "p99")),
         "/".join(fmt(b["pair_ms"][k]) for k in ("p50", "p95", "p99"))),
        ("pairs/client min/med/max", "/".join(map(str, a["pairs_per_client_min_med_max"] or [])),
         "/".join(map(str, b["pairs_per_client_min_med_max"] or []))),
        ("errors", a["errors"], b["errors"]),
        ("empty next (no task)", a["empty_next"], b["empty_next"]),
        ("double assignments", a["checks"]["double_assignments"], b["checks"]["double_assignments"]),
        ("counter drift (tasks)", a["checks"]["counter_drift_tasks"], b["checks"]["counter_drift_tasks"]),
        ("2xx submits / rows in DB", f"{a['checks']['submits_2xx_by_clients']}/{a['checks']['submissions_in_db']}",
         f"{b['checks']['submits_2xx_by_clients']}/{b['checks']['submissions_in_db']}"),
        ("lost submissions", a["checks"]["lost_submissions"], b["checks"]["lost_submissions"]),
        ("CPU cores busy (of 2)", a["cpu"]["cores_busy"], b["cpu"]["cores_busy"]),
        ("  kernel threads / redis", f'{a["cpu"]["kernel_cores"]} / {a["cpu"]["redis_cores"]}',
         f'{b["cpu"]["kernel_cores"]} / {b["cpu"]["redis_cores"]}'),
        ("  other processes (not ours)", a["cpu"]["other_cores"], b["cpu"]["other_cores"]),
        ("CPU ms/pair client", a["cpu"]["client_ms_per_pair"], b["cpu"]["client_ms_per_pair"]),
        ("CPU ms/pair gunicorn", a["cpu"]["gunicorn_ms_per_pair"], b["cpu"]["gunicorn_ms_per_pair"]),
        ("CPU ms/pair postgres", a["cpu"]["postgres_ms_per_pair"], b["cpu"]["postgres_ms_per_pair"]),
        ("CPU ms/pair, all ours", a["cpu"]["ours_ms_per_pair"], b["cpu"]["ours_ms_per_pair"]),
    ]
    for name, x, y in rows:
        print(f"{name:{w}} {fmt(x):>18} {fmt(y):>18}")
    g = r["goals"]
    print()
    print(f"A/B throughput ratio: {r['ratio_A_over_B']}  (goal >= 0.35: {'met' if g['ratio'] else 'MISSED'}); "
          f"by CPU per pair (B/A, robust to other load): {r.get('ratio_by_cpu_cost')}")
    so = r["solo"]
    print(f"one annotator alone ({so['pairs']} pairs): next p50 {so['next_ms']['p50']} ms, p95 {so['next_ms']['p95']} ms"
          f" (goal p95 <= 10 ms: {'met' if g['solo_next_p95'] else 'MISSED'}); submit p50 {so['submit_ms']['p50']} ms,"
          f" p95 {so['submit_ms']['p95']} ms")
    for label in ("A", "B"):
        li = r["listing"][label]
        print(f"project {label} list endpoints (p50 / p95 ms): counts {li['count']['p50']} / {li['count']['p95']}, "
              f"first page {li['first_page']['p50']} / {li['first_page']['p95']}, following next "
              f"{li['next_pages']['p50']} / {li['next_pages']['p95']}, mid-project cursor "
              f"{li['deep_cursor_page']['p50']} / {li['deep_cursor_page']['p95']}")
    print(f"goals: count <= 70 ms {'met' if g['count'] else 'MISSED'}; cursor page <= 10 ms "
          f"{'met' if g['cursor_page'] else 'MISSED'}")
    for label in ("A", "B"):
        if r[label]["error_samples"]:
            print(f"{label} error samples: {r[label]['error_samples']}")
    print()


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=100_000, help="tasks per project (A and B each get this many)")
    p.add_argument("--clients", type=int, default=50, help="concurrent annotators in runs A and B")
    p.add_argument("--seconds", type=float, default=30, help="length of runs A and B")
    p.add_argument("--overlap", type=int, default=1, help="annotators per task")
    p.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    p.add_argument("--db", default="labelwork_bench", help="bench database name (dropped and re-created)")
    p.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="URL of the server's maintenance database (used to create/drop the bench database)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14",
                   help="Redis database for the bench's cache and Celery broker (emptied afterwards)")
    p.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker (gthread)")
    p.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    p.add_argument("--client", default="raw", choices=["raw", "httpx"],
                   help="HTTP client for run A: raw (minimal asyncio HTTP/1.1) or httpx.AsyncClient")
    p.add_argument("--variant", default="product", choices=VARIANTS,
                   help="server variant: the product as is, or with a suggested change (investigation only)")
    p.add_argument("--warmup", type=float, default=3, help="seconds of load before each timed run")
    p.add_argument("--solo", type=int, default=300, help="iterations of the one-annotator run")
    p.add_argument("--repeats", type=int, default=20, help="requests per list-endpoint measurement")
    p.add_argument("--setup-only", action="store_true",
                   help="build the database and stop (implies --keep); for investigating by hand")
    p.add_argument("--skip-b", action="store_true", help="skip run B (investigating A only)")
    p.add_argument("--quiet-wait", type=float, default=300,
                   help="before each timed run, wait up to this many seconds for other work on the machine to stop")
    p.add_argument("--explain", metavar="FILE", help="write EXPLAIN (ANALYZE, BUFFERS) of the hot SQL here")
    p.add_argument("--py-spy", metavar="DIR", help="record every gunicorn worker with py-spy during run A")
    args = p.parse_args()

    started = time.perf_counter()
    global BENCH_DB
    BENCH_DB = args.db
    url = db_url(args.pg, args.db)
    redis_check(args.redis)
    env = child_env(url, args.redis)
    gun: Gunicorn | None = None
    result: dict = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "args": vars(args),
    }
    try:
        # ---------------- setup
        t0 = time.perf_counter()
        log(f"creating database {args.db} and migrating")
        recreate_database(args.pg, args.db)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                       check=True, timeout=300)
        t1 = time.perf_counter()
        django_setup(env)
        fixture = create_fixture(clients=args.clients, overlap=args.overlap)
        projects = fixture["projects"]
        t2 = time.perf_counter()
        log(f"loading {args.tasks:,} tasks into each of projects A and B")
        tasks_s = load_tasks(url, [projects["A"]["id"], projects["B"]["id"]], args.tasks)
        t3 = time.perf_counter()
        log(f"tasks loaded in {tasks_s:.1f} s; VACUUM ANALYZE")
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) annotations_task")
            id_ranges = {label: tuple(conn.execute(
                "SELECT min(id), max(id) FROM annotations_task WHERE project_id = %s", (pr["id"],)).fetchone())
                for label, pr in projects.items()}
        t4 = time.perf_counter()
        result["setup"] = {"migrate_s": round(t1 - t0, 1), "fixture_s": round(t2 - t1, 1),
                           "tasks_s": round(t3 - t2, 1), "vacuum_s": round(t4 - t3, 1), "total_s": round(t4 - t0, 1)}
        log(f"setup done in {t4 - t0:.1f} s")
        if args.explain:
            explain(url, projects, fixture, id_ranges, Path(args.explain))
        if args.setup_only:
            args.keep = True
            print(json.dumps({"database": url, "setup": result["setup"], "id_ranges": id_ranges, **fixture}))
            return 0

        # ---------------- run A: the product over HTTP
        gun = Gunicorn(env=env, workers=args.workers, threads=args.threads, worker_class=args.worker_class,
                       variant=args.variant, log_path=Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-gunicorn-{os.getpid()}.log")
        gun.start(fixture["admin_token"])
        config = (f"{args.workers} workers x {args.threads} threads (gthread)" if args.worker_class == "gthread"
                  else f"{args.workers} sync workers")
        result["gunicorn"] = {"config": config, "port": gun.port, "cmd": " ".join(gun.cmd[2:])}
        log(f"gunicorn up on 127.0.0.1:{gun.port} ({config}); warm-up {args.warmup} s")
        tokens = [a["token"] for a in fixture["annotators"]]
        counters_a = {"submits_2xx": 0, "submit_unknown": 0}
        if args.warmup:
            asyncio.run(http_run(port=gun.port, client_kind=args.client, tokens=tokens, pid=projects["A"]["id"],
                                 seconds=args.warmup, counters=counters_a, cpu_pid=None))
        result["background_cores_before_A"] = wait_for_quiet(args.quiet_wait)
        spies = start_py_spy(gun.worker_pids(), args.seconds, Path(args.py_spy)) if args.py_spy else []
        log(f"run A: {args.clients} clients, {args.seconds} s")
        result["A"], _ = asyncio.run(http_run(port=gun.port, client_kind=args.client, tokens=tokens,
                                              pid=projects["A"]["id"], seconds=args.seconds, counters=counters_a,
                                              cpu_pid=gun.proc.pid))
        for sp in spies:
            sp.wait(timeout=60)
        log(f"run A: {result['A']['pairs_per_s']} pairs/s; one annotator alone, {args.solo} pairs")
        counters_solo = {"submits_2xx": 0, "submit_unknown": 0}
        result["background_cores_before_solo"] = wait_for_quiet(args.quiet_wait)
        result["solo"] = asyncio.run(solo_run(port=gun.port, client_kind=args.client, token=fixture["solo"]["token"],
                                              pid=projects["A"]["id"], iterations=args.solo, warmup=30,
                                              counters=counters_solo))
        log("count and list endpoints")
        result["listing"] = asyncio.run(listing_run(port=gun.port, token=fixture["admin_token"], projects=projects,
                                                    id_ranges=id_ranges, repeats=args.repeats))
        gun.stop()
        counters_a["submits_2xx"] += counters_solo["submits_2xx"]
        counters_a["submit_unknown"] += counters_solo["submit_unknown"]
        result["A"]["checks"] = db_checks(url, projects["A"], counters_a)

        # ---------------- run B: the same SQL, raw
        counters_b = {"submits_2xx": 0, "submit_unknown": 0}
        if args.skip_b:
            result["B"] = {**summarize(Stats(), 0), "cpu": {f"{k}_{u}": None for u in ("cores", "ms_per_pair") for k in (
                "client", "gunicorn", "postgres", "redis", "kernel", "other")} | {"cores_busy": None, "ours_ms_per_pair": None}}
        else:
            result["background_cores_before_B"] = wait_for_quiet(args.quiet_wait)
            log(f"run B: raw SQL, {args.clients} clients, {args.seconds} s")
            result["B"] = asyncio.run(raw_run(url=url, project=projects["B"],
                                              annotator_ids=[a["id"] for a in fixture["annotators"]],
                                              seconds=args.seconds, warmup=args.warmup, counters=counters_b))
        result["B"]["checks"] = db_checks(url, projects["B"], counters_b)

        import redis

        result["critique_jobs_enqueued"] = redis.Redis.from_url(args.redis).llen("celery")
        a_rate, b_rate = result["A"]["pairs_per_s"], result["B"]["pairs_per_s"]
        result["ratio_A_over_B"] = round(a_rate / b_rate, 3) if a_rate and b_rate else None
        a_cost, b_cost = result["A"]["cpu"]["ours_ms_per_pair"], result["B"]["cpu"]["ours_ms_per_pair"]
        result["ratio_by_cpu_cost"] = round(b_cost / a_cost, 3) if a_cost and b_cost else None
        li = result["listing"]
        cursor_p95 = max(li[lb][k]["p95"] for lb in ("A", "B") for k in ("first_page", "next_pages", "deep_cursor_page"))
        result["goals"] = {
            "ratio": bool(result["ratio_A_over_B"] and result["ratio_A_over_B"] >= 0.35),
            "solo_next_p95": bool(result["solo"]["next_ms"]["p95"] is not None
                                  and result["solo"]["next_ms"]["p95"] <= 10),
            "count": max(li[lb]["count"]["p95"] for lb in ("A", "B")) <= 70,
            "cursor_page": cursor_p95 <= 10,
            "no_double_assignment": all(result[x]["checks"]["double_assignments"] == 0 for x in ("A", "B")),
            "no_lost_submission": all(result[x]["checks"]["lost_submissions"] == 0 for x in ("A", "B")),
        }
        result["total_s"] = round(time.perf_counter() - started, 1)
        print_table(result)
        for lb in ("A", "B"):
            li[lb]["count"].pop("body", None)
        print(json.dumps(result, separators=(",", ":")))
        ok = result["goals"]["no_double_assignment"] and result["goals"]["no_lost_submission"]
        return 0 if ok else 1
    finally:
        if gun is not None:
            gun.stop()
        try:
            jobs = redis_cleanup(args.redis)
            log(f"deleted {jobs} critique jobs the bench's submits had enqueued in {args.redis}")
        except Exception as exc:
            log(f"could not clean {args.redis}: {exc}")
        if not args.keep:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:
                pass
            try:
                drop_database(args.pg, args.db)
                log(f"dropped {args.db}")
            except Exception as exc:
                log(f"could not drop {args.db}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
