"""Who is running a background job, told by PostgreSQL itself.

A worker that runs a job holds a session-level advisory lock named after it on its own database
connection for as long as it runs. PostgreSQL releases the lock when that connection ends, and a
worker killed with SIGKILL, a worker whose host vanished or a connection the network dropped all
end it. So:

- a second runner of the same job (a redelivered message, a duplicate queued by the recovery
  sweep) cannot take the lock and leaves the job alone: one runner per job at a time;
- a job marked *running* whose lock nobody holds was interrupted, and the recovery sweep
  (``annotations.recovery``) queues it again at once, instead of waiting for the broker's
  visibility timeout (an hour) to redeliver it.

No clocks and no heartbeats to tune. On a database without advisory locks (the SQLite fallback of
a machine without PostgreSQL) every lock is granted and the sweep cannot tell, so it only re-queues
pending jobs.
"""
from __future__ import annotations

import contextlib
import zlib

from django.db import DatabaseError, connection


def _key(kind: str, job_id: int) -> tuple[int, int]:
    # Two int4 keys: the kind (a stable hash of its name) and the row id.
    return zlib.crc32(kind.encode()) & 0x7FFFFFFF, int(job_id) & 0x7FFFFFFF


def supported() -> bool:
    return connection.vendor == "postgresql"


@contextlib.contextmanager
def hold(kind: str, job_id: int):
    """``with hold("model_job", 7) as mine:`` -- ``mine`` is False when another live session runs
    that job. The lock goes when the block ends or the connection dies, whichever comes first."""
    if not supported():
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", _key(kind, job_id))
        mine = cursor.fetchone()[0]
    try:
        yield mine
    finally:
        if mine:
            with contextlib.suppress(DatabaseError):  # a dead connection released it already
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _key(kind, job_id))


def running_elsewhere(kind: str, job_id: int) -> bool:
    """Does a live session hold the job's lock? (Call it from a session that does not hold it.)"""
    if not supported():
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", _key(kind, job_id))
        if not cursor.fetchone()[0]:
            return True
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _key(kind, job_id))
    return False
