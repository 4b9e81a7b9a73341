"""Handing tasks to annotators.

The contract: a task is leased to at most ``project.overlap`` annotators at once (leases plus
submissions), nobody ever gets the same task twice, an annotator holds at most
``project.pending_cap`` open leases, and a lease that runs out returns its slot to the pool.

On PostgreSQL the assignment is one statement (pick + lock with ``FOR UPDATE SKIP LOCKED``, bump
the task's counters, insert the lease) as measured in shared/notes/postgres-assignment.md; the
annotator's membership row is locked first so one annotator's parallel requests cannot overrun
their cap. Other databases (the SQLite fallback for a machine without PostgreSQL) take a simpler
ORM path; SQLite serialises writers anyway.
"""
from __future__ import annotations

import json
import time
from collections.abc import Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.utils import timezone

from ..errors import LeaseCapReached, LeaseNotActive, NoInstructions, NoTaskAvailable, NotFound, PermissionDenied
from ..models import Lease, Membership, Project, Role, Task
from ..quality.serving import ensure_serving, serve_gold
from . import prepared

LABELLING_ROLES = (Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN)


def state_after(*, overlap: int, lease_delta: int = 0, submission_delta: int = 0) -> Case:
    """The task state once its counters have moved by the given deltas. An UPDATE's SET sees the
    old values, so the deltas are applied inside the expression."""
    return Case(
        When(state=Task.State.GOLD, then=Value(Task.State.GOLD)),  # gold never joins the pool
        When(submission_count__gte=overlap - submission_delta, then=Value(Task.State.DONE)),
        When(lease_count__gte=overlap - lease_delta - submission_delta - F("submission_count"),
             then=Value(Task.State.BUSY)),
        default=Value(Task.State.OPEN),
    )


def _state_sql(lease_delta: str, submission_delta: str) -> str:
    return (
        f"CASE WHEN t.submission_count {submission_delta} >= %(overlap)s THEN 'done' "
        f"WHEN t.lease_count {lease_delta} + t.submission_count {submission_delta} >= %(overlap)s THEN 'busy' "
        "ELSE 'open' END"
    )


def lease_next_task(*, project: Project, annotator, now: datetime | None = None,
                    kinds: Collection[str] | None = None) -> Lease:
    """Lease the annotator's next task; ``kinds`` limits it to those task kinds (red-teaming is
    started apart from labelling), ``None`` takes any kind."""
    now = now or timezone.now()
    kinds = tuple(kinds) if kinds else None
    if project.current_instructions_id is None:
        raise NoInstructions("This project has no published instructions yet; nothing can be labelled.")
    reclaimed = False
    deadline = time.monotonic() + LOCKED_WAIT_S
    for attempt in range(MAX_ATTEMPTS):
        lease = _lease_once(project=project, annotator=annotator, now=now, kinds=kinds)
        if lease is not None:
            return lease
        # Slots held by leases that ran out look taken until they are reclaimed. Beat reclaims
        # every 30 s; doing it here only when nothing was found keeps it off the common path
        # (it cost 1.35 ms of CPU on every next when it ran each time).
        if not reclaimed:
            reclaimed = True
            if reclaim_expired_leases(project=project, now=now):
                continue
        # SKIP LOCKED passes over tasks other requests hold at this instant; one of them may still
        # have a free slot once they commit. Answer "no task" only when none is left at all.
        if not _open_task_left_for(project=project, annotator=annotator, kinds=kinds):
            break
        # Bounded by time, not by tries: on a loaded machine the holders' commits can take far
        # longer than a fixed handful of short sleeps (a test saw a false "no task" that way).
        if time.monotonic() >= deadline:
            break
        time.sleep(min(0.002 * (attempt + 1), 0.05))
    raise NoTaskAvailable("No task is waiting for you in this project right now.")


MAX_ATTEMPTS = 200
LOCKED_WAIT_S = 2.0  # longest wait for other requests' locks on the last free tasks


def _open_task_left_for(*, project: Project, annotator, kinds: tuple | None) -> bool:
    had = Lease.objects.filter(annotator=annotator, task_id=OuterRef("pk"))
    tasks = Task.objects.filter(project=project, state=Task.State.OPEN)
    if kinds:
        tasks = tasks.filter(kind__in=kinds)
    return tasks.exclude(Exists(had)).exists()


# Lock the annotator's membership (so one annotator's parallel requests cannot overrun their cap)
# and count their live leases in the same round trip. A lease past its time no longer counts
# against the cap even before it is reclaimed.
_LOCK_SQL = f"""
SELECT m.role, (
    SELECT count(*) FROM {Lease._meta.db_table} l
    WHERE l.project_id = m.project_id AND l.annotator_id = m.user_id
      AND l.status = 'active' AND l.expires_at > %(now)s), m.paused_at
FROM {Membership._meta.db_table} m
WHERE m.project_id = %(project)s AND m.user_id = %(annotator)s
FOR NO KEY UPDATE OF m
"""


@transaction.atomic
def _lease_once(*, project: Project, annotator, now: datetime, kinds: tuple | None) -> Lease | None:
    if connection.vendor == "postgresql":
        # A fresh statement after BEGIN: under READ COMMITTED it sees leases committed meanwhile.
        row = prepared.fetchone(_LOCK_SQL, {"project": project.pk, "annotator": annotator.pk, "now": now})
        role, open_leases, paused_at = row if row else (None, 0, None)
    else:
        membership = Membership.objects.select_for_update(no_key=True).filter(project=project, user=annotator).first()
        role, paused_at = (membership.role, membership.paused_at) if membership else (None, None)
        open_leases = Lease.objects.filter(project=project, annotator=annotator, status=Lease.Status.ACTIVE,
                                           expires_at__gt=now).count()
    if role not in LABELLING_ROLES:
        raise PermissionDenied("Only annotators, reviewers and admins of this project can label.")
    ensure_serving(paused_at)  # quality hook: a paused annotator gets no new task
    if open_leases >= project.pending_cap:
        raise LeaseCapReached(
            f"You already hold {open_leases} open task(s) in this project (the limit is {project.pending_cap}); "
            "submit, skip or release one first.",
            open_leases=open_leases,
        )
    expires_at = now + timedelta(seconds=project.lease_seconds)
    # Quality hook: at the project's gold rate, an unseen gold task first (annotations.quality.serving).
    gold = serve_gold(project=project, annotator=annotator, now=now, expires_at=expires_at, kinds=kinds)
    if gold is not None:
        return gold
    if connection.vendor == "postgresql":
        return _lease_postgres(project=project, annotator=annotator, now=now, expires_at=expires_at, kinds=kinds)
    return _lease_generic(project=project, annotator=annotator, now=now, expires_at=expires_at, kinds=kinds)


_LEASE_SQL_TEMPLATE = f"""
WITH candidate AS (
    SELECT t.id FROM {Task._meta.db_table} t
    WHERE t.project_id = %(project)s AND t.state = 'open' {{kind_filter}}
      AND NOT EXISTS (
          -- OFFSET 0 fences the subquery: one index probe per candidate instead of a merge
          -- anti-join over every lease (shared/notes/postgres-assignment.md).
          SELECT 1 FROM {Lease._meta.db_table} l
          WHERE l.annotator_id = %(annotator)s AND l.task_id = t.id OFFSET 0)
    ORDER BY t.id
    LIMIT 1
    FOR NO KEY UPDATE OF t SKIP LOCKED
), bumped AS (
    UPDATE {Task._meta.db_table} t
    SET lease_count = t.lease_count + 1, state = {_state_sql("+ 1", "")}
    FROM candidate c WHERE t.id = c.id
    RETURNING t.id, t.kind, t.conversation::text
), leased AS (
    INSERT INTO {Lease._meta.db_table}
        (project_id, task_id, annotator_id, status, created_at, expires_at, reason, instruction_version_id)
    SELECT %(project)s, b.id, %(annotator)s, 'active', %(now)s, %(expires)s, '', %(instructions)s FROM bumped b
    RETURNING id, task_id
)
-- The task's own fields come back with the lease, so showing it costs one more query (its replies).
SELECT l.id, l.task_id, b.kind, b.conversation FROM leased l JOIN bumped b ON b.id = l.task_id
"""
_LEASE_SQL = _LEASE_SQL_TEMPLATE.format(kind_filter="")
_LEASE_SQL_KINDS = _LEASE_SQL_TEMPLATE.format(kind_filter="AND t.kind = ANY(%(kinds)s)")


def _lease_postgres(*, project, annotator, now, expires_at, kinds) -> Lease | None:
    params = {"project": project.pk, "annotator": annotator.pk, "now": now, "expires": expires_at,
              "overlap": project.overlap, "instructions": project.current_instructions_id}
    if kinds:
        params["kinds"] = list(kinds)
    row = prepared.fetchone(_LEASE_SQL_KINDS if kinds else _LEASE_SQL, params)
    if row is None:
        return None
    lease = Lease(id=row[0], task_id=row[1], project=project, annotator=annotator, status=Lease.Status.ACTIVE,
                  created_at=now, expires_at=expires_at, instruction_version_id=project.current_instructions_id)
    # The task as the statement returned it (id, kind, conversation): enough to show it. Every other
    # field is deferred, so code that reads one loads it rather than seeing a default.
    task = Task.from_db(connection.alias, ["id", "project_id", "kind", "conversation"],
                        [row[1], project.pk, row[2], json.loads(row[3])])
    task.project = project
    lease.task = task
    if "current_instructions" in project._state.fields_cache:
        lease.instruction_version = project.current_instructions  # spares the view a query
    return lease


def _lease_generic(*, project, annotator, now, expires_at, kinds) -> Lease | None:
    had = Lease.objects.filter(annotator=annotator, project=project).values("task_id")
    tasks = Task.objects.select_for_update().filter(project=project, state=Task.State.OPEN)
    if kinds:
        tasks = tasks.filter(kind__in=kinds)
    task = tasks.exclude(pk__in=had).order_by("id").first()
    if task is None:
        return None
    Task.objects.filter(pk=task.pk).update(
        lease_count=F("lease_count") + 1, state=state_after(overlap=project.overlap, lease_delta=1)
    )
    return Lease.objects.create(project=project, task=task, annotator=annotator, status=Lease.Status.ACTIVE,
                                created_at=now, expires_at=expires_at,
                                instruction_version_id=project.current_instructions_id)


def reclaim_expired_leases(*, project: Project | None = None, now: datetime | None = None) -> int:
    """Mark leases past their time as expired and give their slots back. Safe to run anywhere, any
    number of times at once: each lease is claimed under ``SKIP LOCKED`` by exactly one caller."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            leases = Lease.objects.filter(status=Lease.Status.ACTIVE, expires_at__lte=now)
            if project is not None:
                leases = leases.filter(project=project)
            batch = list(
                leases.select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked, no_key=True)
                .order_by("id").values_list("id", "task_id", "project_id")[: settings.LEASE_RECLAIM_BATCH]
            )
            if not batch:
                return total
            Lease.objects.filter(pk__in=[b[0] for b in batch]).update(status=Lease.Status.EXPIRED, closed_at=now)
            _return_slots(batch)
            total += len(batch)
        if len(batch) < settings.LEASE_RECLAIM_BATCH:
            return total


def _return_slots(lease_rows) -> None:
    per_task: dict[tuple[int, int], int] = {}
    for _lease_id, task_id, project_id in lease_rows:
        per_task[(task_id, project_id)] = per_task.get((task_id, project_id), 0) + 1
    overlaps = dict(Project.objects.filter(pk__in={p for _, p in per_task}).values_list("id", "overlap"))
    # Lock tasks in id order so concurrent reclaimers and submitters cannot deadlock.
    for (task_id, project_id), n in sorted(per_task.items()):
        Task.objects.filter(pk=task_id).update(
            lease_count=F("lease_count") - n, state=state_after(overlap=overlaps[project_id], lease_delta=-n)
        )


def _close_lease(*, lease_id: int, annotator, status: str, reason: str, now: datetime | None = None) -> Lease:
    now = now or timezone.now()
    with transaction.atomic():
        # Only the lease row, and NO KEY: a FOR UPDATE on the joined project row made every commit that
        # inserts a row referencing the project (deferred FK checks take KEY SHARE) wait on it, and
        # deadlocked against next-task under load (bench/load.py).
        lease = (Lease.objects.select_for_update(of=("self",), no_key=True).select_related("project")
                 .filter(pk=lease_id).first())
        if lease is None or lease.annotator_id != annotator.pk:
            raise NotFound("No such lease.")
        if lease.status != Lease.Status.ACTIVE:
            raise LeaseNotActive(f"This lease is already {lease.status}.", status=lease.status)
        lease.status = status
        lease.reason = reason
        lease.closed_at = now
        lease.save(update_fields=["status", "reason", "closed_at"])
        Task.objects.filter(pk=lease.task_id).update(
            lease_count=F("lease_count") - 1, state=state_after(overlap=lease.project.overlap, lease_delta=-1)
        )
    return lease


def release_lease(*, lease_id: int, annotator, reason: str = "", now: datetime | None = None) -> Lease:
    """Give a task back without labelling it; its slot goes to someone else."""
    return _close_lease(lease_id=lease_id, annotator=annotator, status=Lease.Status.RELEASED, reason=reason, now=now)


def skip_lease(*, lease_id: int, annotator, reason: str, now: datetime | None = None) -> Lease:
    """Decline a task with a reason (unclear, not my language, harmful...). Reasons are kept for admins."""
    return _close_lease(lease_id=lease_id, annotator=annotator, status=Lease.Status.SKIPPED, reason=reason, now=now)
