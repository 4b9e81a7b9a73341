"""Finetune jobs: create, run (parent of the training child), cancel, retry.

The child (``models_service.finetune.train``) runs in its own process group. The parent reads its
stdout on a side thread, stores each step's loss and progress, polls the job row for a cancel
request once a second and kills the child's group when asked. Any way the child ends other than a
clean "done" fails the job with the reason (exit code or signal, last lines of the log).
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotations import runlocks
from annotations.errors import InvalidInput, NotFound
from annotations.models import DatasetSnapshot, ModelVersion, Project
from annotations.queueing import enqueue_on_commit
from annotations.services import audit

from ..models import FinetuneJob
from .train import DEFAULTS, EVENT_PREFIX

ROOT = Path(__file__).resolve().parents[2]
TUNABLE = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "batch_size", "grad_accum",
           "max_steps", "num_train_epochs", "max_length", "beta", "seed", "gradient_checkpointing", "device")
LOG_LINES = 200
ACTIVE = (FinetuneJob.Status.PENDING, FinetuneJob.Status.RUNNING)
LOCK = "finetune"  # the run lock its Celery task holds (annotations.runlocks)
PARENT_ENV = "LSW_FINETUNE_PARENT_PID"  # the child exits when this process is gone (train.py)


def finetune_root() -> Path:
    """``FINETUNE_ROOT`` if set, else ``MEDIA_ROOT/finetunes``."""
    return Path(getattr(settings, "FINETUNE_ROOT", "") or Path(settings.MEDIA_ROOT) / "finetunes")


def _enqueue(job: FinetuneJob) -> None:
    from .tasks import run_finetune

    enqueue_on_commit(run_finetune, job.pk)


@transaction.atomic
def create_finetune_job(*, project: Project, snapshot: DatasetSnapshot, method: str, base_model: ModelVersion,
                        created_by=None, params: dict | None = None, enqueue: bool = True) -> FinetuneJob:
    if snapshot.project_id != project.pk:
        raise NotFound("No such snapshot in this project.")
    if method not in FinetuneJob.Method.values:
        raise InvalidInput(f"method must be one of {FinetuneJob.Method.values}.", field="method")
    if snapshot.status != DatasetSnapshot.Status.READY:
        raise InvalidInput("The snapshot is not ready yet.", field="snapshot")
    if method not in snapshot.formats or not snapshot.counts.get("rows", {}).get(f"{method}.train"):
        raise InvalidInput(f"The snapshot has no {method} training rows.", field="snapshot")
    if base_model.adapter_path:
        raise InvalidInput("Train on a base model, not on an adapter.", field="base_model")
    unknown = set(params or {}) - set(TUNABLE)
    if unknown:
        raise InvalidInput(f"Unknown setting(s): {sorted(unknown)}.", field="params")
    settings_ = {k: DEFAULTS[k] for k in TUNABLE} | dict(params or {})
    job = FinetuneJob.objects.create(project=project, snapshot=snapshot, method=method, base_model=base_model,
                                     params=settings_, created_by=created_by,
                                     total_steps=settings_["max_steps"] if settings_["max_steps"] > 0 else 0)
    audit.record(action=audit.Action.FINETUNE_STARTED, actor=created_by, project=project, target=f"finetune {job.pk}",
                 details={"snapshot": snapshot.pk, "method": method, "base_model": base_model.name,
                          "params": settings_})
    if enqueue:
        _enqueue(job)
    return job


def cancel_finetune_job(*, job_id: int, project: Project | None = None, actor=None) -> FinetuneJob:
    """Mark the job cancelled; the parent sees it within a second and kills the child."""
    with transaction.atomic():
        qs = FinetuneJob.objects.select_for_update()
        job = qs.filter(pk=job_id, **({"project": project} if project else {})).first()
        if job is None:
            raise NotFound("No such finetune job.")
        if job.status in ACTIVE:
            job.status = FinetuneJob.Status.CANCELLED
            job.error = "cancelled"
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "error", "finished_at"])
            audit.record(action=audit.Action.FINETUNE_CANCELLED, actor=actor, project=job.project_id,
                         target=f"finetune {job.pk}", details={"step": job.step})
    return job


def retry_finetune_job(*, job_id: int, project: Project | None = None, enqueue: bool = True,
                       actor=None) -> FinetuneJob:
    with transaction.atomic():
        job = FinetuneJob.objects.select_for_update().filter(
            pk=job_id, **({"project": project} if project else {})).first()
        if job is None:
            raise NotFound("No such finetune job.")
        if job.status not in (FinetuneJob.Status.FAILED, FinetuneJob.Status.CANCELLED):
            raise InvalidInput(f"Only failed or cancelled jobs can be retried (this one is {job.status}).",
                               field="status")
        FinetuneJob.objects.filter(pk=job.pk).update(status=FinetuneJob.Status.PENDING, error="", progress=0, step=0,
                                                     metrics=[], child_pid=None, finished_at=None)
        job.refresh_from_db()
        audit.record(action=audit.Action.FINETUNE_RETRIED, actor=actor, project=job.project_id,
                     target=f"finetune {job.pk}", details={"attempts": job.attempts})
        if enqueue:
            _enqueue(job)
    return job


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # an exited child nobody reaped (no init to adopt it) is a zombie: not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _kill_orphan(pid: int) -> None:
    """Stop a training child whose supervising worker died, before training again."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _base_path(model: ModelVersion) -> str:
    if model.base_model:
        return model.base_model
    if getattr(settings, "MODEL_PATH", ""):
        return settings.MODEL_PATH
    from ..model_files import prepare_model

    return str(prepare_model())


def run_finetune_job(*, job_id: int, python: str | None = None) -> FinetuneJob:
    """Run a pending job to the end. Safe to run twice: a finished job is left alone, a job another
    live worker holds the run lock of is theirs, and a running job nobody holds (its worker died)
    starts again, after killing a training child the dead worker may have left behind."""
    job = FinetuneJob.objects.select_related("snapshot", "base_model").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No finetune job {job_id}.")
    if job.status not in ACTIVE:
        return job
    if runlocks.supported():
        if runlocks.running_elsewhere(LOCK, job.pk):
            return job  # a live worker supervises it
        if _alive(job.child_pid):
            _kill_orphan(job.child_pid)  # nobody supervises it: its worker died
    elif job.status == FinetuneJob.Status.RUNNING and _alive(job.child_pid):
        return job
    folder = finetune_root() / str(job.pk)
    output = folder / "adapter"
    updated = FinetuneJob.objects.filter(pk=job.pk, status__in=ACTIVE).update(
        status=FinetuneJob.Status.RUNNING, attempts=job.attempts + 1, started_at=timezone.now(), metrics=[],
        step=0, progress=0, log="", error="", output_path=str(output))
    if not updated:  # cancelled meanwhile
        return FinetuneJob.objects.get(pk=job.pk)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        config = {**job.params, "method": job.method, "model_path": _base_path(job.base_model),
                  "train_file": str(Path(job.snapshot.path) / f"{job.method}.train.jsonl"),
                  "output_dir": str(output)}
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        return _supervise(job, folder, python or sys.executable)
    except Exception as exc:
        FinetuneJob.objects.filter(pk=job.pk).update(status=FinetuneJob.Status.FAILED, finished_at=timezone.now(),
                                                     error=f"{type(exc).__name__}: {exc}"[:5000])
        raise


def _supervise(job: FinetuneJob, folder: Path, python: str) -> FinetuneJob:
    log_file = open(folder / "train.log", "w")
    child = subprocess.Popen(
        [python, "-m", "models_service.finetune.train", str(folder / "config.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True, bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", PARENT_ENV: str(os.getpid())},
    )
    FinetuneJob.objects.filter(pk=job.pk).update(child_pid=child.pid)
    lines: queue.Queue = queue.Queue()

    def read():
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    tail: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
    metrics, done, cancelled, eof = [], None, False, False
    last_check = time.monotonic()
    while not eof:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            line = ""
        if line is None:
            eof = True
        elif line.startswith(EVENT_PREFIX):
            event = json.loads(line[len(EVENT_PREFIX):])
            if event["event"] == "step":
                metrics.append({k: v for k, v in event.items() if k != "event"})
                total = event.get("max_steps") or job.total_steps or 1
                FinetuneJob.objects.filter(pk=job.pk).update(step=event["step"], total_steps=total, metrics=metrics,
                                                             progress=min(event["step"] / total, 1.0))
            elif event["event"] == "start":
                FinetuneJob.objects.filter(pk=job.pk).update(total_steps=event.get("max_steps") or 0)
                tail.append(line[len(EVENT_PREFIX):])
            elif event["event"] == "done":
                done = event
        elif line:
            log_file.write(line)
            tail.append(line.rstrip("\n"))
        if not cancelled and time.monotonic() - last_check >= 1:
            last_check = time.monotonic()
            if FinetuneJob.objects.filter(pk=job.pk, status=FinetuneJob.Status.CANCELLED).exists():
                cancelled = True
                _kill(child)
    rc = child.wait()
    log_file.close()
    log = "\n".join(tail)[-20_000:]
    if cancelled or FinetuneJob.objects.filter(pk=job.pk, status=FinetuneJob.Status.CANCELLED).exists():
        FinetuneJob.objects.filter(pk=job.pk).update(log=log, metrics=metrics, child_pid=None)
        return FinetuneJob.objects.get(pk=job.pk)
    if rc == 0 and done:
        return _succeed(job, done, metrics, log)
    if rc < 0:
        reason = f"training process killed by signal {signal.Signals(-rc).name}"
    else:
        last = next((t for t in reversed(tail) if t.strip()), "")
        reason = f"training process exited with code {rc}: {last}"
    FinetuneJob.objects.filter(pk=job.pk).update(status=FinetuneJob.Status.FAILED, error=reason[:5000], log=log,
                                                 metrics=metrics, child_pid=None, finished_at=timezone.now())
    return FinetuneJob.objects.get(pk=job.pk)


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@transaction.atomic
def _succeed(job: FinetuneJob, done: dict, metrics: list, log: str) -> FinetuneJob:
    base = job.base_model
    version, _ = ModelVersion.objects.update_or_create(
        name=f"{base.name}-{job.method}-ft{job.pk}",
        defaults={"base": base, "base_model": _base_path(base), "adapter_path": done["adapter"],
                  "endpoint": base.endpoint, "backend": base.backend})
    summary = {k: done.get(k) for k in ("tokens", "train_seconds", "tokens_per_second", "steps")}
    FinetuneJob.objects.filter(pk=job.pk).update(
        status=FinetuneJob.Status.DONE, progress=1.0, metrics=metrics, summary=summary, log=log,
        output_path=done["adapter"], result_model=version, child_pid=None, finished_at=timezone.now())
    return FinetuneJob.objects.get(pk=job.pk)
