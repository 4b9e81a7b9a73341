"""Export a dataset snapshot of a project: ``manage.py export PROJECT_ID [--format sft --format dpo] ...``.

Runs in this process by default; ``--queue`` hands it to a Celery worker and follows its progress
(``--no-follow`` returns at once). Progress goes to stderr, the result (JSON) to stdout."""
from __future__ import annotations

import json
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotations.errors import DomainError
from annotations.exports.service import FORMATS, build_snapshot, create_snapshot
from annotations.models import DatasetSnapshot, Project

FOLLOW_SECONDS = 2.0


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
        parser.add_argument("--near-dup-threshold", type=float, default=0.9)
        parser.add_argument("--seed", default="", help="changes which prompt groups land in eval")
        parser.add_argument("--licence", default="")
        parser.add_argument("--include-gold", action="store_true", help="keep work on gold tasks")
        parser.add_argument("--completed-only", action="store_true", help="only tasks with `overlap` accepted work")
        parser.add_argument("--exclude-pending-review", action="store_true",
                            help="leave out work sampled for review and not decided yet")
        parser.add_argument("--min-agreement", type=float, default=None,
                            help="DPO: only tasks whose annotators' mean pairwise Kendall tau is at least this")
        parser.add_argument("--user", help="username recorded as the creator")
        parser.add_argument("--queue", action="store_true", help="run on a Celery worker instead of here")
        parser.add_argument("--no-follow", action="store_true", help="with --queue: do not wait for the worker")

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
                eval_fraction=o["eval_fraction"], near_duplicates=not o["no_near_duplicates"],
                near_dup_threshold=o["near_dup_threshold"], seed=o["seed"], licence=o["licence"],
                exclude_gold=not o["include_gold"], completed_only=o["completed_only"],
                exclude_pending_review=o["exclude_pending_review"], min_agreement=o["min_agreement"])
            if o["queue"]:
                from annotations.exports.tasks import build_snapshot_task

                build_snapshot_task.delay(snapshot.pk)
                self.stderr.write(f"snapshot {snapshot.pk} queued")
                if o["no_follow"]:
                    return
                snapshot = self._follow(snapshot.pk)
            else:
                snapshot = build_snapshot(snapshot_id=snapshot.pk, on_progress=lambda records, progress: self._progress(
                    snapshot.pk, "running", records, progress))
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if snapshot.status != DatasetSnapshot.Status.READY:
            raise CommandError(f"snapshot {snapshot.pk} {snapshot.status}: {snapshot.error}")
        self.stdout.write(json.dumps({"snapshot": snapshot.pk, "path": snapshot.path, "counts": snapshot.counts,
                                      "content_sha256": snapshot.content_sha256}, indent=2))

    def _follow(self, snapshot_id: int) -> DatasetSnapshot:
        while True:
            snapshot = DatasetSnapshot.objects.get(pk=snapshot_id)
            self._progress(snapshot.pk, snapshot.status, snapshot.records_done, snapshot.progress)
            if snapshot.status not in DatasetSnapshot.ACTIVE:
                return snapshot
            time.sleep(FOLLOW_SECONDS)

    def _progress(self, snapshot_id: int, status: str, records: int, progress: float) -> None:
        self.stderr.write(f"snapshot {snapshot_id} {status}: {records} records ({progress:.0%})")
