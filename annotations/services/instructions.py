from __future__ import annotations

import hashlib

from django.db import transaction
from django.db.models import Max

from ..errors import InvalidInput
from ..models import InstructionVersion, Project
from . import audit

MAX_INSTRUCTIONS_CHARS = 200_000


@transaction.atomic
def publish_instructions(*, project: Project, body: str, published_by, title: str = "") -> InstructionVersion:
    """Store a new immutable version and make it the project's current one. Old versions stay as
    they were; submissions keep pointing at the version they were made under."""
    body = (body or "").replace("\r\n", "\n")
    if not body.strip():
        raise InvalidInput("Instructions cannot be empty.")
    if len(body) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidInput(f"Instructions are limited to {MAX_INSTRUCTIONS_CHARS} characters.")
    # Lock the project row so two admins publishing at once get consecutive numbers.
    project = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    last = project.instruction_versions.aggregate(n=Max("number"))["n"] or 0
    version = InstructionVersion.objects.create(
        project=project,
        number=last + 1,
        title=title[:200],
        body=body,
        body_sha256=hashlib.sha256(body.encode()).hexdigest(),
        created_by=published_by,
    )
    project.current_instructions = version
    project.save(update_fields=["current_instructions"])
    audit.record(action=audit.Action.INSTRUCTIONS_PUBLISHED, actor=published_by, project=project,
                 target=f"instructions v{version.number}",
                 details={"title": version.title, "sha256": version.body_sha256, "chars": len(body)})
    return version
