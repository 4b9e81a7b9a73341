"""Recording what an annotator produced for a leased task.

Every submit carries a client-made idempotency key: a double click, a retry after a lost response
or two tabs sending the same work store exactly one submission, and the replay gets it back.

A lease that ran out is not a reason to lose work: if the task still has a free slot the
submission is taken; only when someone else has filled the slot does the annotator get
``LeaseExpired`` (the client keeps the text).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rapidfuzz.distance import Levenshtein

from ..errors import IdempotencyConflict, InvalidInput, LeaseExpired, LeaseNotActive, NotFound
from ..models import (
    FLAG_CHOICES,
    RATING_CRITERIA,
    LABELLING_KINDS,
    CandidateReply,
    InstructionVersion,
    Lease,
    Project,
    Submission,
    Task,
    TaskKind,
)
from ..quality import completion, sampling
from ..signals import submission_created
from . import prepared
from .leases import state_after

MAX_REPLY_CHARS = 50_000
MAX_RATIONALE_CHARS = 10_000
MAX_KEY_CHARS = 100


def submit_demonstration(
    *,
    lease_id: int,
    annotator,
    idempotency_key: str,
    text: str,
    draft_ids: Iterable[int] = (),
    rationale: str = "",
    time_spent_ms: int = 0,
    instruction_version: int | None = None,
    now: datetime | None = None,
) -> Submission:
    text = (text or "").replace("\r\n", "\n")
    if not text.strip():
        raise InvalidInput("The reply is empty.", field="text")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidInput(f"The reply is longer than {MAX_REPLY_CHARS} characters.", field="text")
    draft_ids = list(dict.fromkeys(int(d) for d in draft_ids))

    def build(lease: Lease, task: Task) -> dict:
        drafts = {
            r.pk: r
            for r in CandidateReply.objects.filter(task=task, pk__in=draft_ids).exclude(
                source=CandidateReply.Source.HUMAN)
        } if draft_ids else {}  # written from scratch: no query
        missing = [d for d in draft_ids if d not in drafts]
        if missing:
            raise InvalidInput(f"Draft(s) {missing} are not model drafts of this task.", field="draft_ids")
        sources = [{"reply_id": d, "edit_distance": Levenshtein.distance(drafts[d].content, text)} for d in draft_ids]
        closest = min(sources, key=lambda s: s["edit_distance"]) if sources else None
        reply = CandidateReply.objects.create(
            task=task,
            content=text,
            source=CandidateReply.Source.EDITED if closest else CandidateReply.Source.HUMAN,
            parent_id=closest["reply_id"] if closest else None,
            created_by=annotator,
        )
        return {"reply": reply, "draft_sources": sources}

    return _submit(
        kind=TaskKind.DEMONSTRATION, lease_id=lease_id, annotator=annotator, idempotency_key=idempotency_key,
        rationale=rationale, time_spent_ms=time_spent_ms, instruction_version=instruction_version, now=now,
        build=build,
    )


def submit_ranking(
    *,
    lease_id: int,
    annotator,
    idempotency_key: str,
    ranking: list[list[int]],
    ratings: Mapping | None = None,
    flags: Mapping | None = None,
    rationale: str = "",
    time_spent_ms: int = 0,
    instruction_version: int | None = None,
    now: datetime | None = None,
) -> Submission:
    def build(lease: Lease, task: Task) -> dict:
        reply_ids = set(task.replies.filter(for_ranking=True).values_list("pk", flat=True))
        return {
            "ranking": validate_ranking(ranking, reply_ids),
            "ratings": validate_ratings(ratings or {}, reply_ids),
            "flags": validate_flags(flags or {}, reply_ids),
        }

    return _submit(
        kind=TaskKind.COMPARISON, lease_id=lease_id, annotator=annotator, idempotency_key=idempotency_key,
        rationale=rationale, time_spent_ms=time_spent_ms, instruction_version=instruction_version, now=now,
        build=build,
    )


def validate_ranking(ranking, reply_ids: set[int]) -> list[list[int]]:
    """Tie-groups best first: ``[[b], [a, d], [c]]``. Every reply exactly once, no empty group."""
    if not isinstance(ranking, list) or not ranking:
        raise InvalidInput("ranking must be a non-empty list of tie-groups, best first.", field="ranking")
    seen: list[int] = []
    clean: list[list[int]] = []
    for group in ranking:
        if not isinstance(group, list) or not group:
            raise InvalidInput("Each tie-group must be a non-empty list of reply ids.", field="ranking")
        try:
            ids = [int(x) for x in group if not isinstance(x, bool)]
        except (TypeError, ValueError):
            raise InvalidInput("Reply ids in a ranking must be integers.", field="ranking") from None
        if len(ids) != len(group):
            raise InvalidInput("Reply ids in a ranking must be integers.", field="ranking")
        clean.append(sorted(ids))
        seen.extend(ids)
    if len(seen) != len(set(seen)):
        raise InvalidInput("A reply appears more than once in the ranking.", field="ranking")
    if set(seen) != reply_ids:
        missing, extra = sorted(reply_ids - set(seen)), sorted(set(seen) - reply_ids)
        raise InvalidInput(
            f"The ranking must place every reply of this task exactly once (missing {missing}, unknown {extra}).",
            field="ranking",
        )
    return clean


def _reply_key(key, reply_ids: set[int], field: str) -> str:
    try:
        rid = int(key)
    except (TypeError, ValueError):
        raise InvalidInput(f"{key!r} is not a reply id.", field=field) from None
    if rid not in reply_ids:
        raise InvalidInput(f"Reply {rid} is not one of this task's replies.", field=field)
    return str(rid)


def validate_ratings(ratings, reply_ids: set[int]) -> dict:
    if not isinstance(ratings, Mapping):
        raise InvalidInput("ratings must map reply id to {helpful, truthful, harmless}.", field="ratings")
    clean = {}
    for key, scores in ratings.items():
        rid = _reply_key(key, reply_ids, "ratings")
        if not isinstance(scores, Mapping):
            raise InvalidInput(f"Ratings of reply {rid} must be an object.", field="ratings")
        unknown = set(scores) - set(RATING_CRITERIA)
        if unknown:
            raise InvalidInput(f"Unknown rating criteria {sorted(unknown)}.", field="ratings")
        for criterion, value in scores.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 7:
                raise InvalidInput(f"{criterion} of reply {rid} must be an integer from 1 to 7.", field="ratings")
        if scores:
            clean[rid] = dict(scores)
    return clean


def validate_flags(flags, reply_ids: set[int]) -> dict:
    if not isinstance(flags, Mapping):
        raise InvalidInput("flags must map reply id to a list of flags.", field="flags")
    clean = {}
    for key, values in flags.items():
        rid = _reply_key(key, reply_ids, "flags")
        if not isinstance(values, list) or any(v not in FLAG_CHOICES for v in values):
            raise InvalidInput(f"Flags of reply {rid} must be a list drawn from {list(FLAG_CHOICES)}.", field="flags")
        if values:
            clean[rid] = sorted(set(values))
    return clean


def _submit(*, kind, lease_id, annotator, idempotency_key, rationale, time_spent_ms, instruction_version, now, build,
            after=None):
    """The common path of every submission. ``build(lease, task)`` returns the kind's own fields;
    ``after(submission)``, when given, runs in the same transaction once the row exists."""
    now = now or timezone.now()
    key = (idempotency_key or "").strip()
    if not key or len(key) > MAX_KEY_CHARS:
        raise InvalidInput(f"An idempotency key of 1 to {MAX_KEY_CHARS} characters is required.", field="idempotency_key")
    if len(rationale or "") > MAX_RATIONALE_CHARS:
        raise InvalidInput(f"The rationale is longer than {MAX_RATIONALE_CHARS} characters.", field="rationale")
    if not isinstance(time_spent_ms, int) or time_spent_ms < 0:
        raise InvalidInput("time_spent_ms must be a non-negative integer.", field="time_spent_ms")

    try:
        with transaction.atomic():
            # Lock the lease row only (``of``): locking the joined project row too would queue every
            # submit of a project behind one another.
            lease = _lock_lease(lease_id)
            if lease is None or lease.annotator_id != annotator.pk:
                raise NotFound("No such lease.")
            # Checked under the lock: a concurrent duplicate may have committed while we waited.
            replay = _replay(annotator=annotator, key=key, lease_id=lease_id)
            if replay is not None:
                return replay
            project = lease.project
            task = Task.objects.select_for_update(no_key=True).only("id", "kind", "state", "lease_count", "submission_count").get(
                pk=lease.task_id)
            if task.kind != kind:
                raise InvalidInput(f"This is a {task.kind} task, not a {kind} task.", field="kind")
            if lease.status == Lease.Status.ACTIVE:
                lease_delta = -1
            elif lease.status == Lease.Status.EXPIRED:
                if task.lease_count + task.submission_count >= project.overlap:
                    raise LeaseExpired(
                        "Your time on this task ran out and it has been given to someone else. "
                        "Your text is still in the editor; copy it if you want to keep it.")
                lease_delta = 0
            else:
                raise LeaseNotActive(f"This lease is already {lease.status}.", status=lease.status)

            version = _instruction_version(project=project, lease=lease, number=instruction_version)
            fields = build(lease, task)
            # Quality: gold work is scored, not reviewed; other work is sampled for review, and
            # work not sampled counts as accepted toward the task's completion at once.
            gold = task.state == Task.State.GOLD
            # A red-team outcome is not labelled work: nothing to review (a success already made its
            # report and task for triage).
            review_required = not gold and kind in LABELLING_KINDS and sampling.needs_review(
                project=project, annotator=annotator, lease_id=lease.pk)
            submission = Submission.objects.create(
                project=project, task=task, lease=lease, annotator=annotator, kind=kind,
                instruction_version=version, idempotency_key=key, rationale=rationale or "",
                time_spent_ms=time_spent_ms, review_required=review_required, **fields,
            )
            lease.status = Lease.Status.SUBMITTED
            lease.closed_at = now
            lease.save(update_fields=["status", "closed_at"])
            Task.objects.filter(pk=task.pk).update(
                lease_count=F("lease_count") + lease_delta,
                submission_count=F("submission_count") + 1,
                state=state_after(overlap=project.overlap, lease_delta=lease_delta, submission_delta=1),
                **completion.accepted_update(overlap=project.overlap, delta=int(not (gold or review_required)),
                                             now=now),
            )
            if gold:
                from ..quality.gold import after_gold_submission

                after_gold_submission(submission=submission)
            if after is not None:
                after(submission)
            transaction.on_commit(lambda: submission_created.send(sender=Submission, submission_id=submission.pk,
                                                                  kind=submission.kind))
            return submission
    except IntegrityError:
        # The unique (annotator, key) constraint is the last line against a racing duplicate.
        replay = _replay(annotator=annotator, key=key, lease_id=lease_id)
        if replay is not None:
            return replay
        raise


def _lock_lease(lease_id: int) -> Lease | None:
    """The lease, locked, with its project and instruction version. Every submit starts with it,
    so on PostgreSQL it is one prepared statement (see annotations.services.prepared)."""
    if connection.vendor != "postgresql":
        return (Lease.objects.select_for_update(of=("self",), no_key=True)
                .select_related("project", "instruction_version").filter(pk=lease_id).first())
    row = prepared.fetchone(_lock_lease_sql(), {"lease": lease_id})
    if row is None:
        return None
    lease, lease.project, lease.instruction_version = prepared.instances(row, Lease, Project, InstructionVersion)
    return lease


@functools.cache
def _lock_lease_sql() -> str:
    return (
        f"SELECT {prepared.select_list(Lease, 'l')}, {prepared.select_list(Project, 'p')}, "
        f"{prepared.select_list(InstructionVersion, 'iv')} FROM {Lease._meta.db_table} l "
        f"JOIN {Project._meta.db_table} p ON p.id = l.project_id "
        f"JOIN {InstructionVersion._meta.db_table} iv ON iv.id = l.instruction_version_id "
        "WHERE l.id = %(lease)s FOR NO KEY UPDATE OF l"
    )


def _replay(*, annotator, key: str, lease_id: int) -> Submission | None:
    existing = Submission.objects.filter(annotator=annotator, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.lease_id != lease_id:
        raise IdempotencyConflict("This idempotency key was already used for another task.")
    existing.replayed = True
    return existing


def _instruction_version(*, project, lease: Lease, number: int | None) -> InstructionVersion:
    if number is None:
        return lease.instruction_version
    version = InstructionVersion.objects.filter(project=project, number=number).first()
    if version is None:
        raise InvalidInput(f"Instruction version {number} does not exist in this project.",
                           field="instruction_version")
    return version
