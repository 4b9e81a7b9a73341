"""Importing prompts (and optional candidate replies) from JSONL or CSV.

All-or-nothing per file: the rows are validated and inserted inside one transaction; if any row is
bad, every error is reported with its line number and nothing from the file is stored. Exact
duplicates (same kind, conversation and replies, within the file or already in the project) are
skipped and counted, not errors. Rows stream through in chunks, so memory stays flat and a
million-row file is practical.

JSONL, one object per line:
    {"prompt": "...", "kind": "demonstration", "category": "coding"}
    {"conversation": [{"role": "user", "content": "..."}, ...], "kind": "comparison",
     "replies": ["...", {"content": "...", "source": "model", "model": "my-model"}]}
CSV, with a header: ``prompt`` (required), optional ``kind``, ``system``, any ``reply_*`` columns
(candidate replies, empty cells ignored); every other column goes into the task's metadata.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from ..conversations import ConversationInvalid, check_text, clean_messages
from ..errors import DomainError, ImportRejected, ImportRowError
from ..models import LABELLING_KINDS, CandidateReply, ImportBatch, ModelVersion, Project, Task, TaskKind
from ..signals import import_finished
from . import audit

log = logging.getLogger(__name__)
CHUNK = 2000
MIN_RANKED, MAX_RANKED = 2, 9
RESERVED = {"prompt", "conversation", "messages", "kind", "system", "replies", "metadata"}
# Looked up once: Django's TextChoices.values builds a new list on every access (it showed up as
# ~15 % of a million-row import in the profile).
KINDS = frozenset(LABELLING_KINDS)
HUMAN, MODEL = CandidateReply.Source.HUMAN.value, CandidateReply.Source.MODEL.value


@dataclass
class ParsedRow:
    line: int
    kind: str
    conversation: list[dict]
    replies: list[dict]
    metadata: dict
    content_hash: str = ""


@dataclass
class ImportResult:
    rows_total: int = 0
    tasks_created: int = 0
    duplicates: int = 0
    error_count: int = 0
    errors: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_count == 0


def progress_key(batch_id: int) -> str:
    return f"import-progress:{batch_id}"


def import_file(*, project: Project, stream: BinaryIO, fmt: str, default_kind: str = TaskKind.DEMONSTRATION,
                size: int | None = None, batch: ImportBatch | None = None) -> ImportResult:
    """Validate and store every row of ``stream`` or, if any row is bad, none of them."""
    if fmt not in ("jsonl", "csv"):
        raise ImportRejected(f"Unknown format {fmt!r}; use jsonl or csv.")
    if default_kind not in KINDS:
        raise ImportRejected(f"Unknown task kind {default_kind!r}.")
    if size is not None and size > settings.IMPORT_MAX_BYTES:
        raise ImportRejected(f"The file is {size} bytes; the limit is {settings.IMPORT_MAX_BYTES}.")
    max_chars = settings.IMPORT_MAX_FIELD_CHARS
    rows = (_jsonl_rows if fmt == "jsonl" else _csv_rows)(stream, default_kind, max_chars)
    result = ImportResult()
    models: dict[str, ModelVersion] = {}
    with transaction.atomic():
        chunk: list[ParsedRow] = []
        for item in rows:
            result.rows_total += 1
            if result.rows_total > settings.IMPORT_MAX_ROWS:
                _record_error(result, ImportRowError(item.line, f"more than {settings.IMPORT_MAX_ROWS} rows"))
                break
            if isinstance(item, ImportRowError):
                _record_error(result, item)
                continue
            if result.ok:  # once a row failed nothing will be kept: only validate the rest
                chunk.append(item)
                if len(chunk) >= CHUNK:
                    _store_chunk(project, chunk, batch, models, result)
                    chunk = []
                    if batch is not None:
                        _report_progress(batch.pk, result.rows_total)
        if chunk and result.ok:
            _store_chunk(project, chunk, batch, models, result)
        if not result.ok:
            transaction.set_rollback(True)
            result.tasks_created = 0
            result.duplicates = 0
    return result


def start_import(*, project: Project, upload, fmt: str, default_kind: str, created_by) -> ImportBatch:
    """Store an uploaded file and queue its processing (``annotations.tasks.process_import``) for
    when the batch row is committed. The client's file name is kept only as a label: the file on
    disk gets a random name."""
    import os
    import uuid

    from django.core.files.storage import default_storage

    from ..queueing import enqueue_on_commit
    from ..tasks import process_import

    if upload.size > settings.IMPORT_MAX_BYTES:
        raise ImportRejected(f"The file is {upload.size} bytes; the limit is {settings.IMPORT_MAX_BYTES}.")
    if fmt not in ("jsonl", "csv"):
        raise ImportRejected(f"Unknown format {fmt!r}; use jsonl or csv.")
    stored = default_storage.save(f"imports/{uuid.uuid4().hex}.{fmt}", upload)
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            project=project, file_name=os.path.basename(upload.name or "")[:255], file=stored, format=fmt,
            default_kind=default_kind, created_by=created_by,
        )
        audit.record(action=audit.Action.IMPORT_STARTED, actor=created_by, project=project,
                     target=f"import {batch.pk}", details={"file_name": batch.file_name, "bytes": upload.size})
        enqueue_on_commit(process_import, batch.pk)
    return batch


def run_import_batch(*, batch_id: int) -> ImportBatch:
    """Process a stored upload, or fetch the batch's URL first (the Celery job calls this). Safe to
    run twice: a batch that already finished is left alone, and an interrupted one stored nothing,
    so it simply runs again."""
    from django.core.files.storage import default_storage

    batch = ImportBatch.objects.select_related("project").get(pk=batch_id)
    if batch.status in (ImportBatch.Status.DONE, ImportBatch.Status.FAILED):
        return batch
    ImportBatch.objects.filter(pk=batch.pk).update(status=ImportBatch.Status.RUNNING)
    try:
        if batch.source_url and not batch.file:
            from .url_imports import fetch_into_storage

            fetch_into_storage(batch)
        with default_storage.open(batch.file, "rb") as stream:
            result = import_file(project=batch.project, stream=stream, fmt=batch.format,
                                 default_kind=batch.default_kind, batch=batch)
    except DomainError as exc:  # refused file, refused URL, failed fetch: the batch ends with the reason
        result = ImportResult(error_count=1, errors=[{"line": 0, "reason": exc.message}])
    except FileNotFoundError:
        # Retrying cannot bring a lost upload back: end the batch with the reason.
        result = ImportResult(error_count=1, errors=[{"line": 0, "reason": "the uploaded file is missing from storage"}])
    batch.status = ImportBatch.Status.DONE if result.ok else ImportBatch.Status.FAILED
    batch.rows_total = batch.rows_done = result.rows_total
    batch.tasks_created = result.tasks_created
    batch.duplicates = result.duplicates
    batch.error_count = result.error_count
    batch.errors = result.errors
    batch.finished_at = timezone.now()
    with transaction.atomic():
        batch.save()
        if batch.status == ImportBatch.Status.DONE and batch.tasks_created:
            transaction.on_commit(lambda: import_finished.send(sender=ImportBatch, batch_id=batch.pk))
            if settings.SCREENING_ON_IMPORT:
                from ..models import DataScan
                from ..queueing import enqueue_on_commit
                from ..screening.tasks import scan_import_task

                # The pending scan commits with the import: a lost message or a killed worker leaves
                # a row the recovery sweep finds.
                DataScan.objects.get_or_create(import_batch=batch, defaults={"project_id": batch.project_id})
                enqueue_on_commit(scan_import_task, batch.pk)
    _report_progress(batch.pk, None)
    return batch


def _report_progress(batch_id: int, rows: int | None) -> None:
    """Progress lives in the cache (Redis). It is a courtesy: a Redis restart must not fail the
    import, which is all in PostgreSQL."""
    try:
        if rows is None:
            cache.delete(progress_key(batch_id))
        else:
            cache.set(progress_key(batch_id), rows, timeout=3600)
    except Exception as exc:  # noqa: BLE001 - the cache backend raises its client's own errors
        log.warning("import %s: progress not recorded (%s)", batch_id, exc)


def _record_error(result: ImportResult, error: ImportRowError) -> None:
    result.error_count += 1
    if len(result.errors) < settings.IMPORT_MAX_ERRORS_REPORTED:
        result.errors.append({"line": error.line, "reason": error.reason})


def _store_chunk(project, chunk: list[ParsedRow], batch, models: dict, result: ImportResult) -> None:
    unique: dict[str, ParsedRow] = {}
    for row in chunk:
        unique.setdefault(row.content_hash, row)
    # Rows stored by earlier chunks of this same transaction are visible here too.
    existing = set(
        Task.objects.filter(project=project, content_hash__in=list(unique)).values_list("content_hash", flat=True)
    )
    fresh = [row for h, row in unique.items() if h not in existing]
    result.duplicates += len(chunk) - len(fresh)
    if not fresh:
        return
    for row in fresh:
        for reply in row.replies:
            name = reply["model"]
            if reply["source"] == CandidateReply.Source.MODEL and name not in models:
                models[name], _ = ModelVersion.objects.get_or_create(name=name, defaults={"backend": "external"})
    if connection.vendor == "postgresql":
        _copy_chunk(project, fresh, batch, models)
    else:
        _bulk_create_chunk(project, fresh, batch, models)
    result.tasks_created += len(fresh)


def _reply_rows(task_id: int, row: ParsedRow, models: dict):
    for reply in row.replies:
        model = models[reply["model"]] if reply["source"] == CandidateReply.Source.MODEL else None
        yield task_id, reply, model


def _copy_chunk(project, rows: list[ParsedRow], batch, models: dict) -> None:
    """PostgreSQL COPY: about 8x faster than Django's bulk INSERT here (measured in
    bench/import_tasks.py). Ids come from the table's sequence first, so replies can point at
    their tasks without reading anything back."""
    now = timezone.now()
    task_table, reply_table = Task._meta.db_table, CandidateReply._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{task_table}', 'id')) "
                       "FROM generate_series(1, %s)", [len(rows)])
        ids = [r[0] for r in cursor.fetchall()]
        raw = cursor.cursor  # the psycopg 3 cursor underneath Django's wrapper
        columns = ("id, project_id, kind, conversation, content_hash, metadata, import_batch_id, created_at, "
                   "state, lease_count, submission_count")
        with raw.copy(f"COPY {task_table} ({columns}) FROM STDIN") as copy:
            for task_id, row in zip(ids, rows, strict=True):
                copy.write_row((task_id, project.pk, row.kind, json.dumps(row.conversation), row.content_hash,
                                json.dumps(row.metadata), batch.pk if batch else None, now, Task.State.OPEN, 0, 0))
        if any(row.replies for row in rows):
            columns = "task_id, content, source, model_version_id, sampling_params, for_ranking, created_at"
            with raw.copy(f"COPY {reply_table} ({columns}) FROM STDIN") as copy:
                for task_id, row in zip(ids, rows, strict=True):
                    for _, reply, model in _reply_rows(task_id, row, models):
                        copy.write_row((task_id, reply["content"], reply["source"], model.pk if model else None,
                                        "{}", row.kind == TaskKind.COMPARISON, now))


def _bulk_create_chunk(project, rows: list[ParsedRow], batch, models: dict) -> None:
    tasks = Task.objects.bulk_create([
        Task(project=project, kind=row.kind, conversation=row.conversation, content_hash=row.content_hash,
             metadata=row.metadata, import_batch=batch)
        for row in rows
    ])
    CandidateReply.objects.bulk_create([
        CandidateReply(task=task, content=reply["content"], source=reply["source"], model_version=model,
                       for_ranking=row.kind == TaskKind.COMPARISON)
        for task, row in zip(tasks, rows, strict=True)
        for _, reply, model in _reply_rows(task.pk, row, models)
    ], batch_size=CHUNK)


# --- parsing --------------------------------------------------------------------------------------

def _text(stream: BinaryIO) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")


def _jsonl_rows(stream: BinaryIO, default_kind: str, max_chars: int) -> Iterator[ParsedRow | ImportRowError]:
    line_no = 0
    for raw in stream:
        line_no += 1
        try:
            line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError:
            yield ImportRowError(line_no, "not valid UTF-8")
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield ImportRowError(line_no, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            yield ImportRowError(line_no, "each line must be a JSON object")
            continue
        yield _parse_row(line_no, obj, default_kind, max_chars)


def _csv_rows(stream: BinaryIO, default_kind: str, max_chars: int) -> Iterator[ParsedRow | ImportRowError]:
    text = _text(stream)
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (UnicodeDecodeError, csv.Error) as exc:
        yield ImportRowError(1, f"unreadable header ({exc})")
        return
    header = [h.strip() for h in header]
    if "prompt" not in header and "conversation" not in header:
        yield ImportRowError(1, "the header needs a 'prompt' column")
        return
    if len(set(header)) != len(header):
        yield ImportRowError(1, "the header repeats a column name")
        return
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            yield ImportRowError(start, "not valid UTF-8")
            return  # the decoder cannot resynchronise; the error stops the file
        except csv.Error as exc:
            yield ImportRowError(start, f"malformed CSV ({exc})")
            return
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield ImportRowError(start, f"expected {len(header)} columns, found {len(values)}")
            continue
        record = dict(zip(header, values, strict=True))
        obj: dict = {"metadata": {}}
        replies = []
        for key, value in record.items():
            if key.startswith("reply_"):
                if value.strip():
                    replies.append(value)
            elif key == "conversation":
                try:
                    obj["conversation"] = json.loads(value) if value.strip() else None
                except json.JSONDecodeError:
                    yield ImportRowError(start, "the conversation column is not valid JSON")
                    break
            elif key in RESERVED:
                if value.strip():
                    obj[key] = value
            elif value != "":
                obj["metadata"][key] = value
        else:
            if replies:
                obj["replies"] = replies
            yield _parse_row(start, obj, default_kind, max_chars)


def _parse_row(line: int, obj: dict, default_kind: str, max_chars: int) -> ParsedRow | ImportRowError:
    try:
        return _validate(line, obj, default_kind, max_chars)
    except ImportRowError as exc:
        return exc


def _check_text(line: int, value, what: str, max_chars: int) -> str:
    try:
        return check_text(value, what, max_chars)
    except ConversationInvalid as exc:
        raise ImportRowError(line, exc.reason) from None


def _validate(line: int, obj: dict, default_kind: str, max_chars: int) -> ParsedRow:
    kind = obj.get("kind") or default_kind
    if kind not in KINDS:
        raise ImportRowError(line, f"kind must be one of {', '.join(LABELLING_KINDS)}, not {kind!r}")
    conversation = obj.get("conversation", obj.get("messages"))
    if conversation is not None and "prompt" in obj:
        raise ImportRowError(line, "give either 'prompt' or 'conversation', not both")
    if conversation is None:
        if "prompt" not in obj:
            raise ImportRowError(line, "missing 'prompt' (or 'conversation')")
        conversation = [{"role": "user", "content": _check_text(line, obj["prompt"], "prompt", max_chars)}]
    try:
        clean = clean_messages(conversation, max_chars=max_chars)
    except ConversationInvalid as exc:
        raise ImportRowError(line, exc.reason) from None
    if obj.get("system"):
        if clean[0]["role"] == "system":
            raise ImportRowError(line, "give the system prompt either in 'system' or in the conversation")
        clean.insert(0, {"role": "system", "content": _check_text(line, obj["system"], "system", max_chars)})
    if clean[-1]["role"] != "user":
        raise ImportRowError(line, "the conversation must end with a user message (the turn to reply to)")

    raw_replies = obj.get("replies") or []
    if not isinstance(raw_replies, list):
        raise ImportRowError(line, "replies must be a list")
    replies = []
    for i, reply in enumerate(raw_replies, 1):
        if isinstance(reply, str):
            reply = {"content": reply}
        if not isinstance(reply, dict) or set(reply) - {"content", "source", "model"}:
            raise ImportRowError(line, f"reply {i} must be a string or an object with content, source, model")
        source = reply.get("source") or ("model" if reply.get("model") else "human")
        if source not in (HUMAN, MODEL):
            raise ImportRowError(line, f"reply {i} source must be 'human' or 'model'")
        if source == "model" and not (isinstance(reply.get("model"), str) and reply["model"].strip()):
            raise ImportRowError(line, f"reply {i} comes from a model: name it in 'model'")
        replies.append({"content": _check_text(line, reply.get("content"), f"reply {i}", max_chars), "source": source,
                        "model": (reply.get("model") or "").strip()[:200]})
    if kind == TaskKind.COMPARISON and not MIN_RANKED <= len(replies) <= MAX_RANKED:
        raise ImportRowError(line, f"a comparison needs {MIN_RANKED} to {MAX_RANKED} replies, found {len(replies)}")

    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    metadata = {**metadata, **{k: v for k, v in obj.items() if k not in RESERVED}}
    if metadata and len(json.dumps(metadata)) > max_chars:
        raise ImportRowError(line, "metadata is too large")
    row = ParsedRow(line=line, kind=kind, conversation=clean, replies=replies, metadata=metadata)
    row.content_hash = content_hash(kind, clean, [r["content"] for r in replies])
    return row


def content_hash(kind: str, conversation: list[dict], replies: list[str]) -> str:
    canonical = json.dumps([kind, conversation, replies], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
