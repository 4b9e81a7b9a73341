"""Folding the task-count deltas that PostgreSQL triggers append (see ``models.TaskCount``)."""
from __future__ import annotations

from django.db import connection

from ..models import Project, TaskCount

_COMPACT_SQL = f"""
WITH gone AS (
    DELETE FROM {TaskCount._meta.db_table} WHERE %(all)s OR project_id = ANY(%(projects)s)
    RETURNING project_id, kind, state, complete, n
)
INSERT INTO {TaskCount._meta.db_table} (project_id, kind, state, complete, n)
SELECT project_id, kind, state, complete, sum(n) FROM gone
WHERE project_id IN (SELECT id FROM {Project._meta.db_table})
GROUP BY project_id, kind, state, complete
HAVING sum(n) <> 0
"""


def compact(*, project_ids: list[int] | None = None) -> int:
    """Replace each project's delta rows by one row per (kind, state). One statement, so it is
    atomic; deltas that other transactions commit meanwhile are not seen by its DELETE and stay.
    Rows of deleted projects go. Returns the number of rows left for the projects compacted."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_COMPACT_SQL, {"all": project_ids is None, "projects": list(project_ids or [])})
        return cursor.rowcount
