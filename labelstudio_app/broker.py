"""One fix to the Redis broker transport, applied when the Celery app loads.

When the broker connection is lost while a job runs (Redis restarted, network cut), kombu 5.7's
Redis channel is closed but still used: it restores unacknowledged messages on close, and the
running job's acknowledgement arrives on it later. Both need a fresh Redis client, built from
``channel.connection.client``, which a closed channel no longer has: ``AttributeError``, which the
worker treats as unrecoverable, and it exits. Every Redis restart during a job killed the worker
(found by tests/integration/test_faults.py::test_redis_restart_loses_no_job).

Here a closed channel raises the Redis ``ConnectionError`` instead, the error kombu and Celery
expect from a lost broker: the restore and the acknowledgement are logged and skipped, and the
worker reconnects. Nothing is lost by skipping them: the broker they would write to is gone (or
restarted empty), and interrupted or lost jobs are queued again by the recovery sweep
(``annotations.recovery``).
"""
from __future__ import annotations

import redis.exceptions
from kombu.transport import redis as kombu_redis

_connparams = kombu_redis.Channel._connparams


def _connparams_or_connection_error(self, *args, **kwargs):
    if self.connection is None or self.connection.client is None:
        raise redis.exceptions.ConnectionError("the broker channel is closed (connection lost)")
    return _connparams(self, *args, **kwargs)


def install() -> None:
    if kombu_redis.Channel._connparams is not _connparams_or_connection_error:
        kombu_redis.Channel._connparams = _connparams_or_connection_error
