"""Export a dataset snapshot of a project: ``manage.py export PROJECT_ID [--format sft --format dpo] ...``.

Runs in this process by default (progress on stderr); ``--queue`` hands it to a Celery worker."""
from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotations.errors import DomainError
from annotations.exports.service import FORMATS, build_snapshot, create_snapshot
from annotations.models import Project


class Command(BaseCommand):
    help = "Export labelled data of a project as an immutable dataset snapshot (SFT / DPO, JSONL + Parquet)."

    def add_arguments(self, parser):
        parser.add_argument("project_id", type=int)
        parser.add_argument("--format", dest="formats", action="append", choices=FORMATS)
        parser.add_argument("--name", default="")
        parser.add_argument("--instruction-version", dest="instruction_versions", action="append", type=int)
        parser.add_argument("--accepted-only", action="store_true")
        parser.add_argument("--include-flagged", action="store_true")
        parser.add_argument("--date-from")
        parser.add_argument("--date-to")
        parser.add_argument("--eval-fraction", type=float, default=0.1)
        parser.add_argument("--no-near-duplicates", action="store_true")
        parser.add_argument("--licence", default="")
        parser.add_argument("--user", help="username recorded as the creator")
        parser.add_argument("--queue", action="store_true", help="run on a Celery worker instead of here")

    def handle(self, *args, **o):
        project = Project.objects.filter(pk=o["project_id"]).first()
        if project is None:
            raise CommandError(f"No project {o['project_id']}.")
        user = get_user_model().objects.filter(username=o["user"]).first() if o["user"] else project.created_by
        try:
            snapshot = create_snapshot(
                project=project, created_by=user, name=o["name"], formats=o["formats"] or FORMATS,
                instruction_versions=o["instruction_versions"], accepted_only=o["accepted_only"],
                exclude_flagged=not o["include_flagged"], date_from=o["date_from"], date_to=o["date_to"],
                eval_fraction=o["eval_fraction"], near_duplicates=not o["no_near_duplicates"], licence=o["licence"])
            if o["queue"]:
                from annotations.exports.tasks import build_snapshot_task

                build_snapshot_task.delay(snapshot.pk)
                self.stdout.write(f"snapshot {snapshot.pk} queued")
                return
            snapshot = build_snapshot(snapshot_id=snapshot.pk)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps({"snapshot": snapshot.pk, "path": snapshot.path, "counts": snapshot.counts,
                                      "content_sha256": snapshot.content_sha256}, indent=2))
