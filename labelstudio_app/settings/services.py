"""Find PostgreSQL and Redis, or say clearly that we fall back to local files.

Zero-config rule: on our machines PostgreSQL and Redis listen on localhost, so the product uses
them without any variable set. Where neither is reachable the product still starts, on a SQLite
file and kombu's filesystem broker under ``var/``, and says so loudly. Explicit ``DATABASE_URL`` /
``REDIS_URL`` always win.
"""
from __future__ import annotations

import socket
import sys
from urllib.parse import urlparse


def reachable(url: str, default_port: int, timeout: float = 0.3) -> bool:
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def notice(message: str) -> None:
    # stderr so it never corrupts the output of commands that print data (dumpdata, export).
    print(f"\n*** {message} ***\n", file=sys.stderr)
