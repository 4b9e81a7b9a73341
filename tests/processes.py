"""Real processes for integration tests: one Celery worker per test session, pointed at the test
database that pytest-django created and at the test Redis database."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def database_url(settings_dict: dict) -> str:
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    user = settings_dict.get("USER") or "postgres"
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


class CeleryWorker:
    def __init__(self, *, database: str, redis_url: str, log_path: Path, concurrency: int = 2, name: str = "test",
                 env: dict | None = None):
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.test",
                    "DATABASE_URL": database, "REDIS_URL": redis_url, **(env or {})}
        self.log_path = log_path
        self.concurrency = concurrency
        self.name = name
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> CeleryWorker:
        self.log = open(self.log_path, "ab")
        self.log_start = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "labelstudio_app", "worker", "--loglevel", "INFO",
             "--concurrency", str(self.concurrency), "--hostname", f"{self.name}@%h", "--without-gossip",
             "--without-mingle", "--pool", "prefork"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if b" ready." in self.log_path.read_bytes()[self.log_start:]:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def kill(self) -> None:
        """kill -9 the whole worker (main process and its pool children)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
