"""Make and build dataset snapshots.

``create_snapshot`` records what was asked (one transaction) and ``build_snapshot`` streams the
selected submissions straight into the writers: PostgreSQL builds the JSON lines and sends them as
it makes them (one statement per format), Python splits, pairs and appends them, and the writers
store row groups on a thread of their own, so memory does not grow with the project.
docs/architecture.md ("Exports") has the why.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from ..errors import InvalidInput, NotFound
from ..models import CandidateReply, DatasetSnapshot, Project, Review, Submission, Task, TaskExclusion, TaskKind
from ..quality.agreement import task_mean_taus
from ..services import audit
from . import datasheet, pairs, split
from .writers import FormatWriters, dumps

FORMATS = ("sft", "dpo")
CHUNK = 2000
PROGRESS_EVERY = 5000
DEFAULT_OPTIONS = {"eval_fraction": 0.1, "near_duplicates": True, "near_dup_threshold": 0.9, "licence": "",
                   "seed": ""}


def snapshot_root() -> Path:
    """``EXPORT_SNAPSHOT_ROOT`` if set, else ``MEDIA_ROOT/snapshots``."""
    root = getattr(settings, "EXPORT_SNAPSHOT_ROOT", "") or Path(settings.MEDIA_ROOT) / "snapshots"
    return Path(root)


def near_dup_limit() -> int:
    return int(getattr(settings, "EXPORT_NEAR_DUP_MAX_PROMPTS", 20_000))


def _when(value, end: bool = False):
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    text = str(value).strip()
    # A bare day means the whole day: checked first, because parse_datetime also reads
    # "2026-06-30" (as its midnight), which would drop that day's work from a date_to.
    try:
        day = parse_date(text) if len(text) == 10 else None
        parsed = (datetime.combine(day, datetime.max.time() if end else datetime.min.time()) if day is not None
                  else parse_datetime(text))
    except ValueError:  # well formed but no such day (2026-02-30)
        parsed = None
    if parsed is None:
        raise InvalidInput(f"Not a date: {value!r}.", field="date_from" if not end else "date_to")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


@transaction.atomic
def create_snapshot(*, project: Project, created_by=None, name: str = "", formats=FORMATS,
                    instruction_versions=None, accepted_only: bool = False, exclude_flagged: bool = True,
                    date_from=None, date_to=None, eval_fraction: float = 0.1, near_duplicates: bool = True,
                    near_dup_threshold: float = 0.9, licence: str = "", seed: str = "", exclude_gold: bool = True,
                    completed_only: bool = False, exclude_pending_review: bool = False,
                    min_agreement: float | None = None) -> DatasetSnapshot:
    formats = list(dict.fromkeys(formats or FORMATS))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InvalidInput(f"Unknown format(s) {unknown}; choose from {list(FORMATS)}.", field="formats")
    if not 0 <= eval_fraction < 1:
        raise InvalidInput("eval_fraction must be in [0, 1).", field="eval_fraction")
    if min_agreement is not None and not -1 <= min_agreement <= 1:
        raise InvalidInput("min_agreement is a Kendall tau, from -1 to 1.", field="min_agreement")
    start, end = _when(date_from), _when(date_to, end=True)
    filters = {
        "instruction_versions": sorted(int(v) for v in instruction_versions) if instruction_versions else None,
        "accepted_only": bool(accepted_only), "exclude_flagged": bool(exclude_flagged),
        "date_from": start.isoformat() if start else None, "date_to": end.isoformat() if end else None,
        # Quality (annotations.quality): gold work is never training data unless asked for.
        "exclude_gold": bool(exclude_gold), "completed_only": bool(completed_only),
        "exclude_pending_review": bool(exclude_pending_review),
        "min_agreement": None if min_agreement is None else float(min_agreement),
    }
    options = {**DEFAULT_OPTIONS, "eval_fraction": eval_fraction, "near_duplicates": near_duplicates,
               "near_dup_threshold": near_dup_threshold, "licence": licence, "seed": seed}
    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.create(project=project, name=name, filters=filters, formats=formats,
                                                  options=options, created_by=created_by)
        snapshot.query = str(selected_submissions(snapshot).query)
        snapshot.save(update_fields=["query"])
        audit.record(action=audit.Action.SNAPSHOT_CREATED, actor=created_by, project=project,
                     target=f"snapshot {snapshot.pk}", details={"name": name, "formats": formats, "filters": filters})
    return snapshot


class SnapshotCancelled(Exception):
    """The snapshot was cancelled while it was being built: the build stops and leaves no files."""


def cancel_snapshot(*, snapshot_id: int, project: Project | None = None, actor=None) -> DatasetSnapshot:
    """Stop a pending or running snapshot: a queued build then does nothing, a running one stops at
    its next progress mark (every ``PROGRESS_EVERY`` records) and removes what it wrote. A ready
    snapshot is immutable and a failed one has nothing to stop: both are refused."""
    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.select_for_update().filter(
            pk=snapshot_id, **({"project": project} if project else {})).first()
        if snapshot is None:
            raise NotFound(f"No snapshot {snapshot_id}.")
        if snapshot.status == DatasetSnapshot.Status.CANCELLED:
            return snapshot
        if snapshot.status not in DatasetSnapshot.ACTIVE:
            raise InvalidInput(f"Only a pending or running snapshot can be cancelled (this one is {snapshot.status}).",
                               field="status")
        DatasetSnapshot.objects.filter(pk=snapshot.pk).update(status=DatasetSnapshot.Status.CANCELLED,
                                                              error="cancelled", finished_at=timezone.now())
        audit.record(action=audit.Action.SNAPSHOT_CANCELLED, actor=actor, project=snapshot.project_id,
                     target=f"snapshot {snapshot.pk}", details={"records_done": snapshot.records_done})
        snapshot.refresh_from_db()
    return snapshot


def record_download(*, snapshot: DatasetSnapshot, file_name: str, actor) -> None:
    """Who took a copy of the data out, and which file."""
    with transaction.atomic():
        audit.record(action=audit.Action.EXPORT_DOWNLOADED, actor=actor, project=snapshot.project_id,
                     target=f"snapshot {snapshot.pk}",
                     details={"file": file_name, "sha256": (snapshot.files.get(file_name) or {}).get("sha256")})


def selected_submissions(snapshot: DatasetSnapshot, *, screened: bool = True):
    """The submissions a snapshot exports: its filters, minus tasks excluded by screening
    (``TaskExclusion``) unless ``screened`` is False."""
    f = snapshot.filters
    qs = Submission.objects.filter(project_id=snapshot.project_id)
    if screened:
        # NOT EXISTS, not a LEFT JOIN ... IS NULL: PostgreSQL estimates the anti-join well, while it
        # takes "exclusion.id IS NULL" after the outer join for ~0 rows and plans a million index
        # probes where one hash join does.
        qs = qs.filter(~Exists(TaskExclusion.objects.filter(task_id=OuterRef("task_id"))))
    qs = qs.filter(status=Submission.Status.ACCEPTED) if f.get("accepted_only") else qs.exclude(
        status=Submission.Status.REJECTED)
    if f.get("instruction_versions"):
        qs = qs.filter(instruction_version__number__in=f["instruction_versions"])
    if f.get("date_from"):
        qs = qs.filter(created_at__gte=parse_datetime(f["date_from"]))
    if f.get("date_to"):
        qs = qs.filter(created_at__lte=parse_datetime(f["date_to"]))
    if f.get("exclude_gold", True):
        qs = qs.exclude(task__state=Task.State.GOLD)
    if f.get("completed_only"):
        qs = qs.filter(task__completed_at__isnull=False)
    if f.get("exclude_pending_review"):
        qs = qs.exclude(status=Submission.Status.SUBMITTED, review_required=True)
    return qs.order_by("task_id", "id")


class Stats:
    """What the datasheet reports; small whatever the size of the export."""

    def __init__(self):
        self.records = 0
        self.rows = Counter()  # "sft.train" -> n
        self.instruction_versions = Counter()
        self.annotators = Counter()
        self.flags = Counter()
        self.excluded = Counter()
        self.sources = Counter()  # "sft:edited_draft", "dpo.chosen:model" ...
        self.tasks = Counter()  # "sft", "dpo" -> distinct tasks
        self.groups = {"near_duplicate_prompts": 0, "near_duplicates": "off"}
        self.review = Counter()  # exported submissions by review state (see review_state)
        self.tau_tasks, self.tau_sum = 0, 0.0  # exported DPO tasks ranked by two or more people

    def agreement(self) -> dict:
        return {"measure": "mean pairwise Kendall tau-b between the annotators of a task, averaged over the "
                           "exported DPO tasks ranked by two or more people",
                "dpo_tasks_measured": self.tau_tasks,
                "mean_task_tau": round(self.tau_sum / self.tau_tasks, 4) if self.tau_tasks else None}


def review_state(status: str, review_required: bool, fixed: bool) -> str:
    """How an exported submission stands with review: ``fixed`` (a reviewer corrected it; the
    correction is exported), ``accepted`` (a reviewer accepted it), ``pending`` (sampled for review,
    not decided yet) or ``not_sampled`` (not chosen for review; counts as accepted)."""
    if fixed:
        return "fixed"
    if status == Submission.Status.ACCEPTED:
        return "accepted"
    return "pending" if review_required else "not_sampled"


# --- record sources: plain tuples from server-side cursors ----------------------------------------
def _demonstrations(qs) -> Iterator[tuple]:
    # A reviewer's fix replaces the annotator's text in the export (the original stays in the database).
    fix = Review.objects.filter(submission=OuterRef("pk"), decision=Review.Decision.FIX).order_by("-id")
    rows = qs.filter(kind=TaskKind.DEMONSTRATION, reply__isnull=False).annotate(
        fixed=Subquery(fix.values("fixed_reply__content")[:1])).values_list(
        "task_id", "task__conversation", "reply_id", "reply__content", "reply__source", "flags", "annotator_id",
        "instruction_version__number", "id", "status", "review_required", "fixed", "task__completed_at")
    yield from rows.iterator(chunk_size=CHUNK)


def _comparisons(qs) -> Iterator[tuple[int, list, list[tuple], dict]]:
    """(task_id, conversation, [(ranking, flags, annotator, version, id, status, review_required,
    task completed_at)], {reply_id: (content, source)}) per comparison task, reading tasks in batches
    so reply texts come in one query per batch."""
    rows = qs.filter(kind=TaskKind.COMPARISON).exclude(ranking=[]).values_list(
        "task_id", "task__conversation", "ranking", "flags", "annotator_id", "instruction_version__number", "id",
        "status", "review_required", "task__completed_at")
    batch: list[tuple] = []
    for task_id, conversation, *rest in rows.iterator(chunk_size=CHUNK):
        if batch and batch[-1][0] == task_id:
            batch[-1][2].append(tuple(rest))
            continue
        if len(batch) >= 500:
            yield from _with_replies(batch)
            batch = []
        batch.append((task_id, conversation, [tuple(rest)]))
    if batch:
        yield from _with_replies(batch)


# Public names for other readers of the same records (annotations.screening).
demonstration_records = _demonstrations
comparison_records = _comparisons


def _with_replies(batch):
    replies: dict[int, dict] = {}
    for reply_id, task_id, content, source in CandidateReply.objects.filter(
            task_id__in=[b[0] for b in batch]).values_list("id", "task_id", "content", "source"):
        replies.setdefault(task_id, {})[reply_id] = (content, source)
    for task_id, conversation, subs in batch:
        yield task_id, conversation, subs, replies.get(task_id, {})


def _messages(conversation) -> list[dict]:
    return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in conversation]


# --- build ----------------------------------------------------------------------------------------
def build_snapshot(*, snapshot_id: int, on_progress=None) -> DatasetSnapshot:
    """Write the files of a pending snapshot. Safe to run twice: a ready snapshot is returned as is,
    an interrupted one is rebuilt from scratch. Progress goes to the snapshot's row every
    ``PROGRESS_EVERY`` records, and to ``on_progress(records_done, progress)`` if given."""
    snapshot = DatasetSnapshot.objects.filter(pk=snapshot_id).first()
    if snapshot is None:
        raise NotFound(f"No snapshot {snapshot_id}.")
    # Claimed unless it is ready or cancelled (also if that happened since it was read): both are
    # returned as they are. A failed one is built again: that is the Celery retry after a lost
    # database connection.
    if not DatasetSnapshot.objects.filter(pk=snapshot.pk).exclude(
            status__in=(DatasetSnapshot.Status.READY, DatasetSnapshot.Status.CANCELLED)).update(
            status=DatasetSnapshot.Status.RUNNING, error="", progress=0, records_done=0):
        return DatasetSnapshot.objects.get(pk=snapshot.pk)
    final = snapshot_root() / str(snapshot.pk)
    work = final.parent / f".{snapshot.pk}.building"
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.monotonic()
        stats, files = _write(snapshot, work, on_progress)
        content = hashlib.sha256()
        for name in sorted(files):
            if name.endswith(".jsonl"):
                content.update(f"{name}:{files[name]['sha256']}\n".encode())
        snapshot.refresh_from_db()
        snapshot.content_sha256 = content.hexdigest()
        snapshot.counts = _counts(stats)
        sheet = datasheet.build(snapshot=snapshot, stats=stats, files=files, seconds=time.monotonic() - started,
                                screening=_screen(snapshot))
        datasheet.write(work, sheet)
        files.update({name: {"bytes": (work / name).stat().st_size} for name in datasheet.FILES})
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    except SnapshotCancelled:
        shutil.rmtree(work, ignore_errors=True)
        return DatasetSnapshot.objects.get(pk=snapshot.pk)
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        DatasetSnapshot.objects.filter(pk=snapshot.pk, status=DatasetSnapshot.Status.RUNNING).update(
            status=DatasetSnapshot.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000],
            finished_at=timezone.now())
        raise
    # Ready only if it is still running: a cancel that came after the last progress mark wins, and
    # its files go.
    done = DatasetSnapshot.objects.filter(pk=snapshot.pk, status=DatasetSnapshot.Status.RUNNING).update(
        files=files, path=str(final), status=DatasetSnapshot.Status.READY, progress=1.0, records_done=stats.records,
        finished_at=timezone.now(), content_sha256=snapshot.content_sha256, counts=snapshot.counts)
    if not done:
        shutil.rmtree(final, ignore_errors=True)
    return DatasetSnapshot.objects.get(pk=snapshot.pk)


def _screen(snapshot: DatasetSnapshot) -> dict:
    """Screen the snapshot's data for data attacks (the datasheet lists the findings). A scan that
    fails says so on the datasheet; it never fails the snapshot."""
    if not getattr(settings, "SCREENING_ON_SNAPSHOT", True):
        return {"status": "off (SCREENING_ON_SNAPSHOT)"}
    from ..screening.service import scan_snapshot, summary

    return summary(scan_snapshot(snapshot=snapshot))


def _counts(stats: Stats) -> dict:
    return {"records": stats.records, "rows": dict(stats.rows), "tasks": dict(stats.tasks),
            "excluded": dict(stats.excluded), "flags": dict(stats.flags),
            "annotators": len(stats.annotators), "review": dict(stats.review), **stats.groups}


def _group_keys(snapshot: DatasetSnapshot, qs, stats: Stats) -> dict[str, str]:
    options = snapshot.options
    if not options.get("near_duplicates", True) or options.get("eval_fraction", 0) <= 0:
        return {}
    tasks = Task.objects.filter(pk__in=qs.values("task_id"))
    if tasks.count() > near_dup_limit():
        stats.groups["near_duplicates"] = f"skipped: more than {near_dup_limit()} prompts"
        return {}
    distinct = {}
    for (conversation,) in tasks.values_list("conversation").iterator(chunk_size=CHUNK):
        distinct.setdefault(split.prompt_key(conversation), split.prompt_text(conversation))
    mapping = split.near_duplicate_keys(distinct.items(), threshold=options.get("near_dup_threshold", 0.9))
    stats.groups["near_duplicates"] = f"embeddings, cosine >= {options.get('near_dup_threshold', 0.9)}"
    stats.groups["near_duplicate_prompts"] = len(mapping)
    return mapping


# --- the export read: JSON lines built by PostgreSQL ----------------------------------------------
# Every text goes through to_json(text)::text, which escapes exactly as json.dumps(ensure_ascii=False)
# does (tests/annotations/exports/test_sql_json.py checks it on hostile text), and the punctuation is
# compact, so a line is byte for byte what writers.dumps writes for the same row (the Python source
# below, used on other databases, is checked equal to it). Python only decides the split and the
# pairs and appends ready lines; it never decodes a reply. The rows stream (_stream_batches), so
# PostgreSQL builds the next lines on one core while this process writes on the other.
_ROLE = "coalesce(m->>'role', '')"
_CONTENT = "coalesce(m->>'content', '')"
# One lateral row per task: its messages as compact JSON objects joined by commas (no brackets) and
# split.prompt_text of the conversation (the split key's input).
_CONVERSATION = f"""LEFT JOIN LATERAL (
    SELECT string_agg('{{"role":' || to_json({_ROLE})::text || ',"content":' || to_json({_CONTENT})::text || '}}', ','
                      ORDER BY i) AS messages,
           string_agg({_ROLE} || ': ' || {_CONTENT}, E'\\n' ORDER BY i) AS prompt
    FROM jsonb_array_elements(%s) WITH ORDINALITY AS e(m, i)) c ON true"""

# (task, submission, reply, annotator, instruction version, status, review_required, task complete,
#  reply source, fixed by a reviewer, flags as JSON text or None, prompt text, JSONL line)
# Both statements sort the narrow selected rows first (an ordered subquery behind OFFSET 0) and
# reach everything else through nested lateral lookups, which keep that order: the plan needs no
# sort of the finished lines, so the first line leaves PostgreSQL at once and the rest are built
# while this process writes (a sort on top would build every line before sending one).
_SORTED = "(SELECT * FROM (%(selected)s) x ORDER BY x.tid, x.sid OFFSET 0) s"
_SFT_SQL = f"""
SELECT s.tid, s.sid, s.rid, s.aid, s.ver, s.st, s.rr, s.done IS NOT NULL, r.source, fx.content IS NOT NULL,
       CASE WHEN s.fl = '{{}}'::jsonb THEN NULL ELSE s.fl::text END, coalesce(c.prompt, ''),
       '{{"messages":[' || coalesce(c.messages || ',', '') || '{{"role":"assistant","content":'
           || to_json(coalesce(fx.content, r.content))::text || '}}]}}' || E'\\n'
FROM {_SORTED}
LEFT JOIN LATERAL (SELECT r.source, r.content FROM annotations_candidatereply r WHERE r.id = s.rid OFFSET 0) r ON true
LEFT JOIN LATERAL (  -- a reviewer's fix replaces the annotator's text (the original stays stored)
    SELECT f.content FROM annotations_review rv LEFT JOIN annotations_candidatereply f ON f.id = rv.fixed_reply_id
    WHERE rv.submission_id = s.sid AND rv.decision = 'fix' ORDER BY rv.id DESC LIMIT 1) fx ON true
{_CONVERSATION % "(SELECT t.conversation FROM annotations_task t WHERE t.id = s.tid)"}
ORDER BY s.tid, s.sid"""

# (task, task complete, submissions as JSON [[ranking, flags, annotator, version, id, status,
#  review_required], ...] by id, prompt text, prompt messages as JSON, replies as text: one line per
#  reply by id, "id<TAB>source<TAB>[{"role":"assistant","content":...}]" (see _replies))
_DPO_SQL = f"""
SELECT g.tid, t.done, g.subs, coalesce(c.prompt, ''), '[' || coalesce(c.messages, '') || ']',
       (SELECT string_agg(r.id || E'\\t' || r.source || E'\\t' || '[{{"role":"assistant","content":'
                          || to_json(r.content)::text || '}}]', E'\\n' ORDER BY r.id)
        FROM annotations_candidatereply r WHERE r.task_id = g.tid)
FROM (SELECT s.tid, json_agg(json_build_array(s.rk, s.fl, s.aid, s.ver, s.sid, s.st, s.rr) ORDER BY s.sid)::text AS subs
      FROM {_SORTED} GROUP BY s.tid) g
LEFT JOIN LATERAL (SELECT t.completed_at IS NOT NULL AS done, t.conversation FROM annotations_task t
                   WHERE t.id = g.tid OFFSET 0) t ON true
{_CONVERSATION % "t.conversation"}
ORDER BY g.tid"""


def _sft_selected(qs):
    return qs.filter(kind=TaskKind.DEMONSTRATION, reply__isnull=False).order_by().values(
        sid=F("id"), tid=F("task_id"), rid=F("reply_id"), aid=F("annotator_id"), ver=F("instruction_version__number"),
        st=F("status"), rr=F("review_required"), fl=F("flags"), done=F("task__completed_at"))


def _dpo_selected(qs):
    return qs.filter(kind=TaskKind.COMPARISON).exclude(ranking=[]).order_by().values(
        sid=F("id"), tid=F("task_id"), aid=F("annotator_id"), ver=F("instruction_version__number"), st=F("status"),
        rr=F("review_required"), rk=F("ranking"), fl=F("flags"))


def _stream_batches(template: str, selected, size: int) -> Iterator[list[tuple]]:
    """Rows of ``template`` around the queryset ``selected``, ``size`` at a time. One statement whose
    rows PostgreSQL sends as it makes them (libpq's chunked rows mode): it runs ahead of this process
    instead of materialising the result first (what a WITH HOLD cursor outside a transaction does).
    The connection is busy until the last row is read, and psycopg holds its (non-reentrant) lock
    meanwhile: code run between the batches must not use it (it would wait forever); the progress
    goes through a connection of its own (_ProgressWriter)."""
    import psycopg

    sql, params = selected.query.sql_with_params()
    connection.ensure_connection()
    raw = connection.connection
    query = psycopg.ClientCursor(raw).mogrify(template.replace("%(selected)s", sql), params)
    with raw.cursor() as cursor:
        # JIT compiling these plans costs seconds and buys nothing on a single pass; sorts and the
        # per-task aggregation stay in memory with a larger work_mem (this session only).
        cursor.execute("SET jit = off")
        cursor.execute(f"SET work_mem = '{int(getattr(settings, 'EXPORT_WORK_MEM_MB', 64))}MB'")
        try:
            yield from _chunks(cursor.stream(query, size=size), size)
        finally:
            cursor.execute("RESET jit")
            cursor.execute("RESET work_mem")


def _chunks(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _sft_rows(qs) -> Iterator[list[tuple]]:
    if connection.vendor == "postgresql":
        return _stream_batches(_SFT_SQL, _sft_selected(qs), CHUNK)
    return _chunks(_python_sft_rows(qs), CHUNK)


def _dpo_rows(qs) -> Iterator[list[tuple]]:
    if connection.vendor == "postgresql":
        return _stream_batches(_DPO_SQL, _dpo_selected(qs), CHUNK // 4)
    return _chunks(_python_dpo_rows(qs), CHUNK // 4)


def _python_sft_rows(qs) -> Iterator[tuple]:
    """The rows of ``_SFT_SQL`` built in Python from the ORM (SQLite, and the reference in tests)."""
    for (task_id, conversation, reply_id, content, source, flags, annotator, version, sub_id, status,
         review_required, fixed, completed_at) in _demonstrations(qs):
        line = dumps({"messages": _messages(conversation) + [
            {"role": "assistant", "content": content if fixed is None else fixed}]}) + "\n"
        yield (task_id, sub_id, reply_id, annotator, version, status, review_required, completed_at is not None,
               source, fixed is not None, dumps(flags) if flags else None, split.prompt_text(_messages(conversation)),
               line)


def _python_dpo_rows(qs) -> Iterator[tuple]:
    """The rows of ``_DPO_SQL`` built in Python from the ORM."""
    for task_id, conversation, subs, replies in _comparisons(qs):
        messages = _messages(conversation)
        yield (task_id, subs[0][7] is not None, dumps([list(s[:7]) for s in subs]), split.prompt_text(messages),
               dumps(messages), "\n".join(f"{reply_id}\t{source}\t" + dumps([{"role": "assistant", "content": content}])
                                          for reply_id, (content, source) in sorted(replies.items())) or None)


def _replies(text: str | None) -> dict[int, tuple[str, str]]:
    """{reply id: (source, its assistant message list as JSON)} from _DPO_SQL's replies column. Plain
    splits instead of a JSON decode of every reply text: JSON text never holds a raw tab or newline
    (to_json and json.dumps escape both), and a source is one of CandidateReply.Source's words."""
    out = {}
    for line in text.split("\n") if text else ():
        reply_id, source, message = line.split("\t", 2)
        out[int(reply_id)] = (source, message)
    return out


class _ProgressWriter:
    """Writes a snapshot's progress through a connection of its own: the export's connection is busy
    streaming rows. (Inside a test's transaction the row is not visible there; nothing is written.)"""

    def __init__(self, snapshot_id: int):
        self.snapshot_id = snapshot_id
        self.db = None

    def __call__(self, records: int, progress: float) -> None:
        """Record the progress; raise SnapshotCancelled if the snapshot is no longer running."""
        if self.db is None:
            self.db = connections.create_connection(DEFAULT_DB_ALIAS)
        with self.db.cursor() as cursor:
            cursor.execute(f"UPDATE {DatasetSnapshot._meta.db_table} SET records_done = %s, progress = %s "
                           "WHERE id = %s AND status <> %s RETURNING id",
                           [records, progress, self.snapshot_id, DatasetSnapshot.Status.CANCELLED])
            if cursor.fetchone() is None and self.visible():
                raise SnapshotCancelled(self.snapshot_id)

    def visible(self) -> bool:
        """Whether this connection sees the snapshot at all (inside a test's transaction it does not)."""
        with self.db.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {DatasetSnapshot._meta.db_table} WHERE id = %s", [self.snapshot_id])
            return cursor.fetchone() is not None

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def _write(snapshot: DatasetSnapshot, folder: Path, on_progress=None) -> tuple[Stats, dict]:
    qs = selected_submissions(snapshot)
    stats = Stats()
    total = max(qs.count(), 1)
    screened_out = selected_submissions(snapshot, screened=False).filter(task__exclusion__isnull=False).count()
    if screened_out:
        stats.excluded["screening_exclusions"] = screened_out
    groups = _group_keys(snapshot, qs, stats)
    eval_fraction = snapshot.options.get("eval_fraction", 0.1)
    seed = snapshot.options.get("seed", "")
    exclude_flagged = snapshot.filters.get("exclude_flagged", True)
    min_agreement = snapshot.filters.get("min_agreement")
    text_key, split_of = split.text_key, split.split_of

    def side(prompt: str) -> str:
        if eval_fraction <= 0:
            return "train"
        key = text_key(prompt)
        return split_of(groups.get(key, key), eval_fraction, seed)

    record_progress = _ProgressWriter(snapshot.pk)

    def tick(n: int) -> None:
        before = stats.records
        stats.records += n
        if before // PROGRESS_EVERY != stats.records // PROGRESS_EVERY:
            progress = min(stats.records / total, 0.99)
            record_progress(stats.records, progress)
            if on_progress is not None:
                on_progress(stats.records, progress)

    files: dict[str, dict] = {}
    try:
        for fmt, write in (("sft", lambda w: _write_sft(qs, w, stats, side, tick, exclude_flagged)),
                           ("dpo", lambda w: _write_dpo(qs, w, stats, side, tick, exclude_flagged, min_agreement))):
            if fmt not in snapshot.formats:
                continue
            writers = FormatWriters(folder, fmt)
            try:
                files.update(write(writers))
            except BaseException:
                writers.abort()
                raise
    finally:
        record_progress.close()
    return stats, files


def _write_sft(qs, writers: FormatWriters, stats: Stats, side, tick, exclude_flagged: bool) -> dict:
    # What the datasheet counts per written row, as one counter of tuples: one dict update per row.
    written: Counter = Counter()
    tasks, last_task = 0, None
    for rows in _sft_rows(qs):
        out = {name: ([], []) for name in writers.splits}
        for (task_id, sub_id, reply_id, annotator, version, status, review_required, complete, source, fixed, flags,
             prompt, line) in rows:
            if flags is not None:
                flags = json.loads(flags)
                for names in flags.values():
                    stats.flags.update(names)
                if exclude_flagged and any(flags.values()):
                    stats.excluded["sft_flagged"] += 1
                    continue
            where = side(prompt)
            review = review_state(status, review_required, fixed)
            lines, metas = out[where]
            lines.append(line)
            metas.append(f'{{"task_id":{task_id},"submission_id":{sub_id},"reply_id":{reply_id},'
                         f'"annotator_id":{annotator},"instruction_version":{version},"review":"{review}",'
                         f'"task_complete":{"true" if complete else "false"}}}\n')
            written[where, "reviewer_fix" if fixed else source, review, version, annotator] += 1
            if task_id != last_task:  # rows come in task order
                tasks, last_task = tasks + 1, task_id
        for name, (lines, metas) in out.items():
            writers.splits[name].extend(lines, metas)
        tick(len(rows))
    for (where, source, review, version, annotator), n in written.items():
        stats.rows[f"sft.{where}"] += n
        stats.sources[f"sft:{source}"] += n
        stats.review[review] += n
        stats.instruction_versions[version] += n
        stats.annotators[annotator] += n
    stats.tasks["sft"] = tasks
    return writers.close()


def _dpo_meta(task_id: int, subs: list, reviews: Counter, complete: bool, tau: float | None) -> str:
    """The meta line of a DPO row up to its reply ids, without the closing brace: what
    dumps({"task_id", "submission_ids", "review", "task_complete", "agreement_tau"}) writes (floats
    as repr, like json), checked against dumps by the export tests."""
    ids = ",".join(str(s[4]) for s in subs)
    review = ",".join(f'"{state}":{n}' for state, n in reviews.items())
    return (f'{{"task_id":{task_id},"submission_ids":[{ids}],"review":{{{review}}},'
            f'"task_complete":{"true" if complete else "false"},'
            f'"agreement_tau":{"null" if tau is None else repr(round(tau, 4))}')


def _write_dpo(qs, writers: FormatWriters, stats: Stats, side, tick, exclude_flagged: bool,
               min_agreement: float | None) -> dict:
    people: Counter = Counter()  # (annotator, instruction version) per submission read
    chosen_sources: Counter = Counter()
    rejected_sources: Counter = Counter()
    rows_out: Counter = Counter()
    n_tasks = 0
    for batch in _dpo_rows(qs):
        records = 0
        for task_id, complete, subs, prompt, prompt_json, replies in batch:
            subs = json.loads(subs)
            records += len(subs)
            flagged = set()
            for _ranking, flags, annotator, version, *_rest in subs:
                for reply, names in (flags or {}).items():
                    stats.flags.update(names)
                    if names:
                        flagged.add(int(reply))
                people[annotator, version] += 1
            exclude = flagged if exclude_flagged else set()
            stats.excluded["dpo_flagged_replies"] += len(exclude)
            rankings = [s[0] for s in subs]
            # One ranking has no agreement (task_mean_taus says None); skip its numpy call.
            tau = task_mean_taus([(task_id, rankings)])[task_id] if len(rankings) > 1 else None
            if min_agreement is not None and (tau is None or tau < min_agreement):
                # Too few annotators to measure agreement counts as not agreeing enough.
                stats.excluded["dpo_tasks_below_min_agreement"] += 1
                continue
            texts = _replies(replies)
            found = [(c, r) for c, r in pairs.pairs_from_rankings(rankings, exclude=exclude)
                     if c in texts and r in texts]
            if not found:
                stats.excluded["dpo_tasks_without_pairs"] += 1
                continue
            n_tasks += 1
            if tau is not None:
                stats.tau_tasks += 1
                stats.tau_sum += tau
            where = side(prompt)
            reviews = Counter(review_state(s[5], s[6], False) for s in subs)
            stats.review.update(reviews)
            meta = _dpo_meta(task_id, subs, reviews, complete, tau)
            head = '{"prompt":' + prompt_json + ',"chosen":'
            writers.splits[where].extend(
                [f'{head}{texts[c][1]},"rejected":{texts[r][1]}}}\n' for c, r in found],
                [f'{meta},"chosen_reply_id":{c},"rejected_reply_id":{r}}}\n' for c, r in found])
            for c, r in found:
                chosen_sources[texts[c][0]] += 1
                rejected_sources[texts[r][0]] += 1
            rows_out[where] += len(found)
        tick(records)
    for (annotator, version), n in people.items():
        stats.annotators[annotator] += n
        stats.instruction_versions[version] += n
    for where, n in rows_out.items():
        stats.rows[f"dpo.{where}"] += n
    for source, n in chosen_sources.items():
        stats.sources[f"dpo.chosen:{source}"] += n
    for source, n in rejected_sources.items():
        stats.sources[f"dpo.rejected:{source}"] += n
    stats.tasks["dpo"] = n_tasks
    return writers.close()


def annotator_names(ids) -> dict[int, str]:
    return dict(get_user_model().objects.filter(pk__in=list(ids)[:10_000]).values_list("pk", "username"))


def load_datasheet(snapshot: DatasetSnapshot) -> dict:
    return json.loads((Path(snapshot.path) / "datasheet.json").read_text())
