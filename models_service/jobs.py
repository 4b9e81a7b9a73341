"""Running a batch of model requests for a ``ModelJob``.

Requests go to the server concurrently (bounded) so vLLM can batch them; that part is asyncio in a
side thread. Every database write happens on the calling thread, in small transactions, so the
Django ORM never runs inside the event loop and a killed worker loses at most the in-flight items
(which a re-run redoes: the store step is idempotent).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotations.errors import NotFound

from .client import ModelServerError
from .models import ModelJob

PROGRESS_EVERY_S = 0.5
MAX_ERRORS_KEPT = 5


@dataclass
class Outcome:
    item: Any
    result: Any = None
    error: str = ""


_DONE = object()


def run_batch(
    *,
    job: ModelJob,
    items: Iterable[Any],
    generate: Callable[[Any, Any], Awaitable[Any]],
    store: Callable[[Any, Any], int],
    open_http: Callable[[], Any],
    concurrency: int,
) -> ModelJob:
    """``items`` is read here (it may query the database); ``generate(http, item)`` runs in the
    event loop; ``store(item, result)`` runs here and returns the completion tokens it recorded.
    Marks the job done, or failed when nothing succeeded."""
    inbox: queue.Queue = queue.Queue(maxsize=concurrency * 2)  # bounded memory however many items
    outbox: queue.Queue = queue.Queue()

    async def produce():
        async with open_http() as http:
            async def worker():
                while True:
                    item = await asyncio.to_thread(inbox.get)
                    if item is _DONE:
                        return
                    try:
                        outcome = Outcome(item, result=await generate(http, item))
                    except ModelServerError as exc:
                        outcome = Outcome(item, error=str(exc))
                    outbox.put(outcome)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    def producer():
        try:
            asyncio.run(produce())
        except Exception as exc:  # noqa: BLE001 - reported through the queue, never lost
            outbox.put(Outcome(None, error=f"{type(exc).__name__}: {exc}"))
        finally:
            outbox.put(_DONE)

    thread = threading.Thread(target=producer, name=f"model-job-{job.pk}", daemon=True)
    thread.start()
    done = failed = tokens = 0
    errors: list[str] = []
    flushed = (0, 0, 0)
    cancelled = False

    def flush() -> bool:
        nonlocal flushed
        d, f, t = done - flushed[0], failed - flushed[1], tokens - flushed[2]
        if d or f or t:
            ModelJob.objects.filter(pk=job.pk).update(done=F("done") + d, failed=F("failed") + f,
                                                      completion_tokens=F("completion_tokens") + t)
            flushed = (done, failed, tokens)
        status = ModelJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        return status == ModelJob.Status.CANCELLED

    def handle(outcome: Outcome) -> None:
        nonlocal done, failed, tokens
        if outcome.error:
            failed += 1
            if len(errors) < MAX_ERRORS_KEPT:
                errors.append(outcome.error)
        else:
            tokens += store(outcome.item, outcome.result)
            done += 1

    try:
        source = iter(items)
        pending: Any = None
        feeding = True
        last_flush = time.monotonic()
        finished = False
        while not finished:
            # feed the loop without blocking, then take whatever came back
            while feeding:
                if pending is None:
                    pending = next(source, _DONE)
                    if pending is _DONE:
                        feeding = False
                        break
                try:
                    inbox.put_nowait(pending)
                    pending = None
                except queue.Full:
                    break
            if not feeding and pending is _DONE:
                for _ in range(concurrency):
                    while thread.is_alive():  # a dead loop takes nothing: never block on it
                        try:
                            inbox.put(_DONE, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                pending = None
            try:
                outcome = outbox.get(timeout=0.05)
            except queue.Empty:
                outcome = None
            while outcome is not None:
                if outcome is _DONE:
                    finished = True
                    break
                handle(outcome)
                try:
                    outcome = outbox.get_nowait()
                except queue.Empty:
                    outcome = None
            if time.monotonic() - last_flush >= PROGRESS_EVERY_S:
                last_flush = time.monotonic()
                if flush() and feeding:
                    cancelled, feeding, pending = True, False, _DONE
                    while True:  # drop what was queued but not started
                        try:
                            inbox.get_nowait()
                        except queue.Empty:
                            break
    except BaseException:
        # The database went away (or anything else broke) in this thread: stop the event loop's
        # workers so the thread ends with the job instead of lingering in the worker process.
        _stop(inbox, thread, concurrency)
        raise
    thread.join()
    flush()

    job.refresh_from_db()
    if job.status != ModelJob.Status.CANCELLED and not cancelled:
        job.status = ModelJob.Status.FAILED if failed and not done else ModelJob.Status.DONE
    job.error = "\n".join(errors)
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error", "finished_at"])
    return job


def _stop(inbox: queue.Queue, thread: threading.Thread, concurrency: int) -> None:
    while True:
        try:
            inbox.get_nowait()
        except queue.Empty:
            break
    for _ in range(concurrency):
        try:
            inbox.put_nowait(_DONE)
        except queue.Full:
            break
    thread.join(timeout=30)


def start(job: ModelJob, *, total: int, skipped: int) -> bool:
    """Claim a pending (or interrupted) job. False when it already finished or was cancelled."""
    claimed = ModelJob.objects.filter(
        pk=job.pk, status__in=[ModelJob.Status.PENDING, ModelJob.Status.RUNNING]
    ).update(status=ModelJob.Status.RUNNING, started_at=timezone.now(), total=total, skipped=skipped, done=0,
             failed=0)
    job.refresh_from_db()
    return bool(claimed)


def cancel_job(*, job_id: int, project=None) -> ModelJob:
    """Cancel a pending or running job (a finished one is left as it is). A running batch notices
    within ``PROGRESS_EVERY_S`` and stops; a pending one is never started. A job that belongs to an
    eval run moves its run on once this commits (the run is cancelled too): a job cancelled before
    any worker took it would otherwise leave the run waiting for ever."""
    with transaction.atomic():
        job = ModelJob.objects.select_for_update().filter(
            pk=job_id, **({"project": project} if project else {})).select_related("model_version").first()
        if job is None:
            raise NotFound("No such model job.")
        if job.status in (ModelJob.Status.PENDING, ModelJob.Status.RUNNING):
            job.status = ModelJob.Status.CANCELLED
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "finished_at"])
            run_id = (job.params or {}).get("eval_run")
            if run_id:
                from .evaluation.runs import advance_run

                # after the commit: the job's row lock is gone before the run's is taken (the
                # order every other path uses: run, then its jobs)
                transaction.on_commit(lambda: advance_run(run_id=run_id))
    return job


def fail(job: ModelJob, error: str) -> ModelJob:
    """End a job that cannot run at all (e.g. its model cannot be served), with the reason."""
    ModelJob.objects.filter(pk=job.pk).update(status=ModelJob.Status.FAILED, error=error[:5000],
                                              finished_at=timezone.now())
    job.refresh_from_db()
    return job
