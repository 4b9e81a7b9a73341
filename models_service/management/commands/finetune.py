"""LoRA-finetune a base model on a snapshot: ``manage.py finetune SNAPSHOT_ID --method sft --base NAME``.

Runs here by default (the trainer is still a child process); ``--queue`` hands it to a Celery worker.
``--set key=value`` overrides training settings (lora_r, learning_rate, max_steps, ...)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from annotations.errors import DomainError
from annotations.models import DatasetSnapshot, ModelVersion
from models_service.finetune.service import TUNABLE, create_finetune_job, run_finetune_job


class Command(BaseCommand):
    help = "Finetune (SFT or DPO, LoRA) a base ModelVersion on a dataset snapshot."

    def add_arguments(self, parser):
        parser.add_argument("snapshot_id", type=int)
        parser.add_argument("--method", choices=["sft", "dpo"], required=True)
        parser.add_argument("--base", required=True, help="ModelVersion name of the base model")
        parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                            help=f"one of {', '.join(TUNABLE)}; value parsed as JSON when it can be")
        parser.add_argument("--queue", action="store_true")

    def handle(self, *args, **o):
        snapshot = DatasetSnapshot.objects.filter(pk=o["snapshot_id"]).first()
        base = ModelVersion.objects.filter(name=o["base"]).first()
        if snapshot is None or base is None:
            raise CommandError("Unknown snapshot or base model.")
        params = {}
        for item in o["settings"]:
            key, _, value = item.partition("=")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        try:
            job = create_finetune_job(project=snapshot.project, snapshot=snapshot, method=o["method"],
                                      base_model=base, params=params, enqueue=o["queue"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if o["queue"]:
            self.stdout.write(f"finetune job {job.pk} queued")
            return
        job = run_finetune_job(job_id=job.pk)
        self.stdout.write(json.dumps({"job": job.pk, "status": job.status, "error": job.error,
                                      "model": job.result_model.name if job.result_model else None,
                                      "summary": job.summary, "final_loss": (job.metrics or [{}])[-1].get("loss")},
                                     indent=2))
        if job.status != "done":
            raise CommandError(f"finetune failed: {job.error}")
