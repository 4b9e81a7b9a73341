"""Report ingestion tokens: created and revoked by a project's admins, shown once, stored hashed.

A token looks like ``lwr_<8 hex>_<43 url-safe characters>``: the ``lwr_`` prefix makes a leaked
token easy to recognise (secret scanners, logs), the 8 hex characters are shown in lists so admins
can tell tokens apart, and the rest carries 256 random bits. Only its SHA-256 is kept; a lookup is
one probe of a unique index on the hash, so there is no stored secret to compare in variable time.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from ..errors import InvalidInput, NotFound
from ..models import Project
from ..services import audit
from .models import ReportToken

TOKEN_PREFIX = "lwr_"
MAX_ACTIVE_TOKENS = 20
# last_used_at is written at most this often per token, so a busy deployment does not turn every
# report into an extra UPDATE of the same row.
LAST_USED_RESOLUTION_SECONDS = 60


@dataclass
class IssuedToken:
    token: ReportToken
    secret: str  # the full token: returned to the admin once, never stored


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_report_token(*, project: Project, name: str, created_by) -> IssuedToken:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("Give the token a name of 1 to 100 characters (which deployment uses it).", field="name")
    with transaction.atomic():
        # Serialise per project so the active-token cap holds under concurrent creation.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = ReportToken.objects.filter(project=project, revoked_at__isnull=True).count()
        if active >= MAX_ACTIVE_TOKENS:
            raise InvalidInput(f"This project already has {active} active report tokens; revoke one first.",
                               field="name")
        public = secrets.token_hex(4)
        raw = f"{TOKEN_PREFIX}{public}_{secrets.token_urlsafe(32)}"
        token = ReportToken.objects.create(project=project, name=name, prefix=f"{TOKEN_PREFIX}{public}",
                                           key_hash=hash_token(raw), created_by=created_by)
        audit.record(action=audit.Action.REPORT_TOKEN_CREATED, actor=created_by, project=project,
                     target=f"report token {token.pk} ({token.prefix}…)", details={"name": name})
    return IssuedToken(token=token, secret=raw)


def revoke_report_token(*, project: Project, token_id: int, revoked_by) -> ReportToken:
    """Revoke at once; revoking twice is not an error (the first time is kept)."""
    with transaction.atomic():
        token = ReportToken.objects.select_for_update().filter(project=project, pk=token_id).first()
        if token is None:
            raise NotFound("No such report token in this project.")
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.revoked_by = revoked_by
            token.save(update_fields=["revoked_at", "revoked_by"])
            audit.record(action=audit.Action.REPORT_TOKEN_REVOKED, actor=revoked_by, project=project,
                         target=f"report token {token.pk} ({token.prefix}…)", details={"name": token.name})
    return token


def authenticate_report_token(raw: str) -> ReportToken | None:
    """The active token ``raw`` names, or None (unknown, malformed or revoked alike)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (ReportToken.objects.select_related("project").filter(key_hash=hash_token(raw), revoked_at__isnull=True)
             .first())
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        ReportToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
