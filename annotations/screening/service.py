"""Run the screening detectors over an import batch or a snapshot, store what they find, and
exclude a finding's tasks from the snapshots built after it.

Imports are scanned by a Celery job queued when the import commits (``scan_import``); snapshots
are scanned while they are built (``scan_snapshot``, called by ``build_snapshot`` before it writes
the datasheet), so the datasheet lists the findings of exactly the data it describes. A ready
snapshot never changes: excluding one of its findings keeps the tasks out of every later snapshot,
and ``rebuild=True`` builds that later snapshot straight away with the same filters.
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..errors import InvalidInput, NotFound
from ..models import CandidateReply, DataFinding, DataScan, DatasetSnapshot, ImportBatch, Project, TaskExclusion
from . import encoded, floods, suffixes, triggers
from .corpus import Corpus, Finding

log = logging.getLogger(__name__)

DETECTORS = (
    ("triggers", triggers.detect),
    ("encoded", encoded.detect),
    ("suffixes", suffixes.detect),
    ("floods", floods.detect),
)


def max_items() -> int:
    return int(getattr(settings, "SCREENING_MAX_ITEMS", 200_000))


# --- corpora ------------------------------------------------------------------------------------
def corpus_for_import(batch: ImportBatch) -> tuple[Corpus, bool]:
    """The batch's tasks with the replies that came in the file (drafts made later are left out).
    Returns (corpus, truncated)."""
    corpus = Corpus()
    tasks = batch.tasks.order_by("id").values_list("id", "conversation")[: max_items() + 1]
    rows = list(tasks.iterator(chunk_size=2000))
    truncated = len(rows) > max_items()
    rows = rows[: max_items()]
    replies: dict[int, list[str]] = {}
    imported = CandidateReply.objects.filter(task__import_batch=batch, created_by__isnull=True)
    if batch.finished_at:
        imported = imported.filter(created_at__lte=batch.finished_at)
    for task_id, content in imported.values_list("task_id", "content").iterator(chunk_size=5000):
        replies.setdefault(task_id, []).append(content)
    for task_id, conversation in rows:
        corpus.add(task_id, conversation, replies=replies.get(task_id, ()))
    return corpus, truncated


def corpus_for_snapshot(snapshot: DatasetSnapshot) -> tuple[Corpus, bool]:
    """What the snapshot exports: demonstrations with their submitted replies, comparisons with
    the (chosen, rejected) pairs their aggregated rankings give."""
    from ..exports import pairs as pair_rules
    from ..exports.service import comparison_records, demonstration_records, selected_submissions

    qs = selected_submissions(snapshot)
    corpus, limit = Corpus(), max_items()
    demos: dict[int, tuple[list, list[str]]] = {}
    truncated = False
    if "sft" in snapshot.formats:
        for task_id, conversation, _reply_id, content, *_rest in demonstration_records(qs):
            if task_id not in demos and len(demos) >= limit:
                truncated = True
                break
            demos.setdefault(task_id, (conversation, []))[1].append(content)
    for task_id, (conversation, texts) in demos.items():
        corpus.add(task_id, conversation, replies=texts)
    if "dpo" in snapshot.formats:
        for task_id, conversation, subs, replies in comparison_records(qs):
            if len(corpus) >= limit:
                truncated = True
                break
            found = pair_rules.pairs_from_rankings([s[0] for s in subs])
            corpus.add(task_id, conversation,
                       pairs=[(replies[c][0], replies[r][0]) for c, r in found if c in replies and r in replies])
    return corpus, truncated


# --- running ------------------------------------------------------------------------------------
def run_detectors(corpus: Corpus) -> tuple[list[Finding], dict]:
    findings, stats = [], {}
    for name, detect in DETECTORS:
        started = time.monotonic()
        found, info = detect(corpus)
        stats[name] = {**info, "seconds": round(time.monotonic() - started, 3), "findings": len(found)}
        findings.extend(found)
    return findings, stats


def _run(scan: DataScan, load) -> DataScan:
    DataScan.objects.filter(pk=scan.pk).update(status=DataScan.Status.RUNNING, error="")
    started = time.monotonic()
    try:
        corpus, truncated = load()
        findings, stats = run_detectors(corpus)
    except Exception as exc:  # noqa: BLE001 - a scan that cannot run says why and leaves the data alone
        log.exception("screening scan %s failed", scan.pk)
        DataScan.objects.filter(pk=scan.pk).update(status=DataScan.Status.FAILED, finished_at=timezone.now(),
                                                   error=f"{type(exc).__name__}: {exc}"[:5000])
        scan.refresh_from_db()
        return scan
    stats["total_seconds"] = round(time.monotonic() - started, 3)
    if truncated:
        stats["truncated"] = f"only the first {max_items()} tasks were scanned (SCREENING_MAX_ITEMS)"
    with transaction.atomic():
        scan = DataScan.objects.select_for_update().get(pk=scan.pk)
        scan.findings.all().delete()  # an interrupted earlier run of this same scan
        DataFinding.objects.bulk_create([
            DataFinding(scan=scan, project_id=scan.project_id, kind=f.kind, title=f.title[:300], score=f.score,
                        evidence=f.evidence, task_ids=[corpus.task_ids[i] for i in f.items], item_count=len(f.items))
            for f in findings
        ])
        scan.status = DataScan.Status.DONE
        scan.items = len(corpus)
        scan.stats = stats
        scan.finished_at = timezone.now()
        scan.save()
    return scan


def scan_import(*, batch_id: int) -> DataScan | None:
    """Screen a finished import (the Celery job calls this). Safe to run twice: a finished scan
    is returned as it is."""
    batch = ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.DONE).first()
    if batch is None:
        return None
    scan, _ = DataScan.objects.get_or_create(import_batch=batch, defaults={"project_id": batch.project_id})
    if scan.status in (DataScan.Status.DONE, DataScan.Status.FAILED):
        return scan
    return _run(scan, lambda: corpus_for_import(batch))


def scan_snapshot(*, snapshot: DatasetSnapshot) -> DataScan:
    scan, _ = DataScan.objects.get_or_create(snapshot=snapshot, defaults={"project_id": snapshot.project_id})
    if scan.status == DataScan.Status.DONE:
        return scan
    return _run(scan, lambda: corpus_for_snapshot(snapshot))


def summary(scan: DataScan | None) -> dict:
    """What the datasheet says about the screening of its data."""
    if scan is None:
        return {"status": "not run"}
    return {
        "scan": scan.pk, "status": scan.status, "items": scan.items, "error": scan.error,
        "detectors": scan.stats,
        "findings": [{"id": f.pk, "kind": f.kind, "title": f.title, "score": f.score, "items": f.item_count,
                      "exclude": f"/api/projects/{scan.project_id}/screening/findings/{f.pk}/exclude/"}
                     for f in scan.findings.order_by("-score", "id")],
    }


# --- exclusion ----------------------------------------------------------------------------------
def exclude_finding(*, finding_id: int, project: Project, by, rebuild: bool = False) -> tuple[DataFinding, int, DatasetSnapshot | None]:
    """Keep the finding's tasks out of every snapshot built from now on. Idempotent: a second
    click excludes nothing more. With ``rebuild`` (snapshot findings only) a new snapshot with the
    same filters is queued. Returns (finding, tasks newly excluded, the new snapshot or None)."""
    from ..exports.service import create_snapshot
    from ..exports.tasks import build_snapshot_task
    from ..queueing import enqueue_on_commit

    with transaction.atomic():
        finding = (DataFinding.objects.select_for_update(of=("self",)).select_related("scan__snapshot")
                   .filter(pk=finding_id, project=project).first())
        if finding is None:
            raise NotFound("No such finding.")
        source = finding.scan.snapshot
        if rebuild and source is None:
            raise InvalidInput("Only a snapshot's findings can rebuild a snapshot.", field="rebuild")
        task_ids = set(project.tasks.filter(pk__in=finding.task_ids).values_list("pk", flat=True))
        already = set(TaskExclusion.objects.filter(task_id__in=task_ids).values_list("task_id", flat=True))
        reason = f"finding {finding.pk}: {finding.title}"[:300]
        TaskExclusion.objects.bulk_create(
            [TaskExclusion(project=project, task_id=t, finding=finding, reason=reason, created_by=by)
             for t in sorted(task_ids - already)],
            ignore_conflicts=True)  # a concurrent exclusion of the same task by another finding
        if finding.excluded_at is None:
            finding.excluded_at = timezone.now()
            finding.excluded_by = by
            finding.save(update_fields=["excluded_at", "excluded_by"])
        rebuilt = None
        if rebuild:
            options = {k: source.options[k] for k in ("eval_fraction", "near_duplicates", "near_dup_threshold",
                                                     "licence", "seed") if k in source.options}
            rebuilt = create_snapshot(project=project, created_by=by, formats=source.formats,
                                      name=f"{source.name or f'snapshot {source.pk}'} (screened)"[:200],
                                      **source.filters, **options)
            enqueue_on_commit(build_snapshot_task, rebuilt.pk)
    return finding, len(task_ids - already), rebuilt
