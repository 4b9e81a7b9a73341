"""The audit log's one writer. Every admin action calls ``record`` from inside its own transaction,
so the entry commits or rolls back with the action; ``record`` refuses to run outside one, which
turns a forgotten ``transaction.atomic`` into an error instead of a log that can disagree with the
data."""
from __future__ import annotations

from django.db import connection

from ..models import AuditEntry, Project

Action = AuditEntry.Action
MAX_DETAIL_CHARS = 500


class AuditOutsideTransaction(RuntimeError):
    """``record`` was called where the action's transaction is not open."""


def record(*, action: str, actor=None, project: Project | int | None = None, target: str = "",
           details: dict | None = None) -> AuditEntry:
    if action not in Action.values:
        raise ValueError(f"unknown audit action {action!r}")
    if not connection.in_atomic_block:
        raise AuditOutsideTransaction(f"audit entry {action!r} must be written inside the action's transaction")
    project_id = project.pk if isinstance(project, Project) else project
    actor = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        action=action, actor=actor, actor_name=actor.get_username() if actor else "", project_id=project_id,
        target=target[:200], details=_bounded(details or {}),
    )


def _bounded(details: dict) -> dict:
    """Keep entries small: long strings (a pasted instruction body, a file name chosen by an
    attacker) are cut, so the log cannot be used to store bulk data."""
    out = {}
    for key, value in details.items():
        if isinstance(value, str) and len(value) > MAX_DETAIL_CHARS:
            value = value[:MAX_DETAIL_CHARS] + "…"
        out[str(key)] = value
    return out


def user_target(user) -> str:
    return f"user {user.pk} ({user.get_username()})"
