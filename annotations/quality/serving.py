"""The two quality checks inside "next task" (annotations.services.leases._lease_once calls them
after it has locked the caller's membership and checked the pending cap):

* ``ensure_serving``: an annotator paused by a quality rule (or an admin) gets no new task.
* ``serve_gold``: with probability ``project.gold_rate``, try to lease a gold task this annotator
  has never had, before the normal pool. Gold tasks sit outside that pool (state ``gold``), so the
  normal assignment statement never sees them and they never take an overlap slot.

Nothing in the lease tells the two apart: same lease row, same task shape, same API answer.
Kept apart from leases.py so the hot path there stays one statement that can be tuned alone.
"""
from __future__ import annotations

import json
import random
from datetime import datetime

from django.db import connection
from django.db.models import F

from ..errors import AnnotatorPaused
from ..models import Lease, Project, Task
from ..services import prepared

_rng = random.SystemRandom()

PAUSED_MESSAGE = ("No new tasks are served to you in this project: your recent work is below the quality bar its "
                  "admins set. They have been told and can resume you. Tasks you already hold can still be "
                  "submitted.")


def ensure_serving(paused_at: datetime | None) -> None:
    """``paused_at`` of the caller's membership, read under the lock that "next" takes anyway."""
    if paused_at is not None:
        raise AnnotatorPaused(PAUSED_MESSAGE, paused_at=paused_at.isoformat())


_GOLD_SQL = f"""
WITH candidate AS (
    SELECT t.id FROM {Task._meta.db_table} t
    WHERE t.project_id = %(project)s AND t.state = 'gold' AND (%(kinds)s::text[] IS NULL OR t.kind = ANY(%(kinds)s))
      AND NOT EXISTS (
          SELECT 1 FROM {Lease._meta.db_table} l
          WHERE l.annotator_id = %(annotator)s AND l.task_id = t.id OFFSET 0)
    ORDER BY random()
    LIMIT 1
    FOR NO KEY UPDATE OF t SKIP LOCKED
), bumped AS (
    UPDATE {Task._meta.db_table} t SET lease_count = t.lease_count + 1
    FROM candidate c WHERE t.id = c.id
    RETURNING t.id, t.kind, t.conversation::text
), leased AS (
    INSERT INTO {Lease._meta.db_table}
        (project_id, task_id, annotator_id, status, created_at, expires_at, reason, instruction_version_id)
    SELECT %(project)s, b.id, %(annotator)s, 'active', %(now)s, %(expires)s, '', %(instructions)s FROM bumped b
    RETURNING id, task_id
)
SELECT l.id, l.task_id, b.kind, b.conversation FROM leased l JOIN bumped b ON b.id = l.task_id
"""


def serve_gold(*, project: Project, annotator, now: datetime, expires_at: datetime,
               kinds: tuple | None = None, rng: random.Random | None = None) -> Lease | None:
    """A lease on an unseen gold task, or None (not drawn this time, or none left for this
    annotator). Gold tasks are served in random order so that annotators do not all meet the
    same one first. ``kinds`` as in ``lease_next_task`` (None: any kind). Must run inside the
    caller's transaction, after the membership lock."""
    rate = project.gold_rate
    if rate <= 0 or (rate < 1 and (rng or _rng).random() >= rate):
        return None
    if connection.vendor == "postgresql":
        row = prepared.fetchone(_GOLD_SQL, {"project": project.pk, "annotator": annotator.pk, "now": now,
                                            "expires": expires_at, "instructions": project.current_instructions_id,
                                            "kinds": list(kinds) if kinds else None})
        if row is None:
            return None
        # The same shape as a lease from the normal pool (leases._lease_postgres): nothing differs.
        lease = Lease(id=row[0], task_id=row[1], project=project, annotator=annotator, status=Lease.Status.ACTIVE,
                      created_at=now, expires_at=expires_at, instruction_version_id=project.current_instructions_id)
        # Fields the statement did not return are deferred (loaded on use), as in leases._lease_postgres.
        lease.task = Task.from_db(connection.alias, ["id", "project_id", "kind", "conversation"],
                                  [row[1], project.pk, row[2], json.loads(row[3])])
        lease.task.project = project
        if "current_instructions" in project._state.fields_cache:
            lease.instruction_version = project.current_instructions
        return lease
    had = Lease.objects.filter(annotator=annotator, project=project).values("task_id")
    tasks = Task.objects.select_for_update(no_key=True).filter(project=project, state=Task.State.GOLD)
    if kinds:
        tasks = tasks.filter(kind__in=kinds)
    task = tasks.exclude(pk__in=had).order_by("?").first()
    if task is None:
        return None
    Task.objects.filter(pk=task.pk).update(lease_count=F("lease_count") + 1)
    return Lease.objects.create(project=project, task=task, annotator=annotator, status=Lease.Status.ACTIVE,
                                created_at=now, expires_at=expires_at,
                                instruction_version_id=project.current_instructions_id)
