"""LoRA-finetune a base model on a snapshot: ``manage.py finetune SNAPSHOT_ID --method sft --base NAME``.

Runs here by default (the trainer is still a child process); ``--queue`` hands it to a Celery worker
and follows it until it ends (``--no-follow`` returns at once). Either way a line per new step
(step, loss) goes to stderr while it runs, and the outcome as JSON to stdout.
``--set key=value`` overrides training settings (lora_r, learning_rate, max_steps, ...)."""
from __future__ import annotations

import json
import threading
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from annotations.errors import DomainError
from annotations.models import DatasetSnapshot, ModelVersion
from models_service.finetune.service import ACTIVE, TUNABLE, create_finetune_job, run_finetune_job
from models_service.models import FinetuneJob

POLL_S = 2.0


class Command(BaseCommand):
    help = "Finetune (SFT or DPO, LoRA) a base ModelVersion on a dataset snapshot, printing progress."

    def add_arguments(self, parser):
        parser.add_argument("snapshot_id", type=int)
        parser.add_argument("--method", choices=["sft", "dpo"], required=True)
        parser.add_argument("--base", required=True, help="ModelVersion name of the base model")
        parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                            help=f"one of {', '.join(TUNABLE)}; value parsed as JSON when it can be")
        parser.add_argument("--user", help="username recorded as the one who started it (audit log)")
        parser.add_argument("--queue", action="store_true", help="run on a Celery worker instead of here")
        parser.add_argument("--no-follow", action="store_true", help="with --queue: return once it is queued")

    def handle(self, *args, **o):
        snapshot = DatasetSnapshot.objects.filter(pk=o["snapshot_id"]).first()
        base = ModelVersion.objects.filter(name=o["base"]).first()
        if snapshot is None or base is None:
            raise CommandError("Unknown snapshot or base model.")
        user = None
        if o["user"]:
            user = get_user_model().objects.filter(username=o["user"]).first()
            if user is None:
                raise CommandError(f"No user {o['user']!r}.")
        params = {}
        for item in o["settings"]:
            key, _, value = item.partition("=")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        try:
            job = create_finetune_job(project=snapshot.project, snapshot=snapshot, method=o["method"],
                                      base_model=base, params=params, enqueue=o["queue"], created_by=user)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"finetune job {job.pk}: {job.method} of {base.name} on snapshot {snapshot.pk}"
                          f"{' queued' if o['queue'] else ''}")
        if o["queue"]:
            if o["no_follow"]:
                self.stdout.write(json.dumps({"job": job.pk, "status": job.status}))
                return
            self._follow(job.pk)
        else:
            stop = threading.Event()
            follower = threading.Thread(target=self._follow, args=(job.pk, stop), daemon=True)
            follower.start()
            try:
                run_finetune_job(job_id=job.pk)
            finally:
                stop.set()
                follower.join()
        job = FinetuneJob.objects.select_related("result_model").get(pk=job.pk)
        self.stdout.write(json.dumps({"job": job.pk, "status": job.status, "error": job.error,
                                      "model": job.result_model.name if job.result_model else None,
                                      "summary": job.summary, "final_loss": (job.metrics or [{}])[-1].get("loss")},
                                     indent=2))
        if job.status != FinetuneJob.Status.DONE:
            raise CommandError(f"finetune {job.status}: {job.error}")

    def _follow(self, job_id: int, stop: threading.Event | None = None) -> None:
        """Print each new step (and status changes) until the job ends or ``stop`` is set."""
        seen_step, seen_status = 0, None
        try:
            while True:
                job = FinetuneJob.objects.filter(pk=job_id).values("status", "step", "total_steps", "metrics").first()
                if job is None:
                    return
                if job["status"] != seen_status:
                    seen_status = job["status"]
                    self.stderr.write(f"  {seen_status}")
                for m in job["metrics"] or []:
                    if m.get("step", 0) > seen_step:
                        seen_step = m["step"]
                        loss = m.get("loss")
                        self.stderr.write(f"  step {seen_step}/{job['total_steps'] or '?'}  loss "
                                          f"{'nan' if loss is None else f'{loss:.4f}'}")
                if job["status"] not in ACTIVE or (stop is not None and stop.is_set()):
                    return
                if stop is not None:
                    stop.wait(POLL_S)
                else:
                    time.sleep(POLL_S)
        finally:
            if stop is not None:  # a side thread: its database connection is its own
                connection.close()
