"""Misbehaviour reports: ingestion from deployed applications and triage into demonstration tasks.

Reported text is hostile by assumption: it is stored as given (after validation) and reaches pages
only through ``frontend.rendering``. A report is validated strictly (roles, sizes, counts); a bad
one is refused with the reason and a batch keeps its good reports. The same conversation, bad
reply and model reported again is counted on the stored report rather than stored twice.

Triage (project admins): create the demonstration tasks of a report (idempotent: one task per
(report, bad reply)), dismiss it with a reason, or mark it a duplicate of another report.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..conversations import ConversationInvalid, clean_messages
from ..errors import InvalidInput, NotFound
from ..models import ModelVersion, Project, Task, TaskKind
from ..services.imports import content_hash as task_content_hash
from .errors import ReportAlreadyTriaged, ReportClosed
from .models import MisbehaviourCategory, MisbehaviourReport, ReportTask, ReportToken

REPORT_FIELDS = frozenset({"conversation", "model_version", "category", "description", "bad_turn", "metadata"})
MAX_REASON_CHARS = 2_000
# Shown with the demonstration task, so the annotator knows what is asked of them.
TASK_HINTS = {
    "deployment": "A deployed model gave a bad reply at this point ({category}). ",
    "red_team": "A red-teamer made the model misbehave at this point ({category}). ",
}
TASK_HINT_TAIL = ("Write the reply it should have given: refuse what must be refused, and still help with "
                  "whatever can safely be helped with.")


@dataclass
class CleanReport:
    conversation: list[dict]
    bad_turn: int
    model_version_name: str
    category: str
    description: str
    metadata: dict


@dataclass
class IngestResult:
    report: MisbehaviourReport
    created: bool


def clean_report(data) -> CleanReport:
    """Validate one report as a deployed application sends it. Raises InvalidInput naming the field."""
    if not isinstance(data, dict):
        raise InvalidInput("A report must be a JSON object.", field="non_field_errors")
    unknown = sorted(set(data) - REPORT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown field(s) {unknown}; a report has {sorted(REPORT_FIELDS)}.",
                           field="non_field_errors")
    try:
        conversation = clean_messages(data.get("conversation"), max_chars=settings.FEEDBACK_MAX_MESSAGE_CHARS,
                                      max_turns=settings.FEEDBACK_MAX_TURNS)
    except ConversationInvalid as exc:
        raise InvalidInput(exc.reason, field="conversation") from None
    total = sum(len(m["content"]) for m in conversation)
    if total > settings.FEEDBACK_MAX_CONVERSATION_CHARS:
        raise InvalidInput(f"The conversation holds {total} characters; the limit is "
                           f"{settings.FEEDBACK_MAX_CONVERSATION_CHARS}.", field="conversation")
    assistant_turns = [i for i, m in enumerate(conversation) if m["role"] == "assistant"]
    if not assistant_turns:
        raise InvalidInput("The conversation has no assistant message: include the reply that went wrong.",
                           field="conversation")
    bad_turn = data.get("bad_turn", assistant_turns[-1])
    if bad_turn is None:
        bad_turn = assistant_turns[-1]
    check_bad_turn(conversation, bad_turn, field="bad_turn")

    model = data.get("model_version")
    if not isinstance(model, str) or not model.strip() or len(model) > 200 or "\x00" in model:
        raise InvalidInput("model_version must name the model that replied (1 to 200 characters).",
                           field="model_version")
    category = data.get("category")
    if category not in MisbehaviourCategory.values:
        raise InvalidInput(f"category must be one of {MisbehaviourCategory.values}.", field="category")
    description = data.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > settings.FEEDBACK_MAX_DESCRIPTION_CHARS \
            or "\x00" in description:
        raise InvalidInput(f"description must be text of at most {settings.FEEDBACK_MAX_DESCRIPTION_CHARS} "
                           "characters.", field="description")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object.", field="metadata")
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > settings.FEEDBACK_MAX_METADATA_BYTES or "\\u0000" in json.dumps(metadata):
        raise InvalidInput(f"metadata must be at most {settings.FEEDBACK_MAX_METADATA_BYTES} bytes of JSON "
                           "without NUL characters.", field="metadata")
    return CleanReport(conversation=conversation, bad_turn=bad_turn, model_version_name=model.strip(),
                       category=category, description=description, metadata=metadata)


def check_bad_turn(conversation: list[dict], turn, *, field: str) -> int:
    """``turn`` must point at an assistant message that answers a user message."""
    if isinstance(turn, bool) or not isinstance(turn, int) or not 0 <= turn < len(conversation):
        raise InvalidInput(f"{field} must be the 0-based index of a message in the conversation "
                           f"(0 to {len(conversation) - 1}).", field=field)
    if conversation[turn]["role"] != "assistant":
        raise InvalidInput(f"Message {turn} is a {conversation[turn]['role']} message; {field} must point at "
                           "the assistant reply that went wrong.", field=field)
    if turn == 0 or conversation[turn - 1]["role"] != "user":
        raise InvalidInput(f"The reply at {turn} does not follow a user message, so there is no prompt to "
                           "write a better reply to.", field=field)
    return turn


def report_hash(conversation: list[dict], bad_turn: int, model_version_name: str, salt: str = "") -> str:
    canonical = json.dumps([conversation, bad_turn, model_version_name, salt], ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def ingest_report(*, token: ReportToken, report: CleanReport) -> IngestResult:
    """Store a validated report for the token's project, or count it again on the identical one."""
    digest = report_hash(report.conversation, report.bad_turn, report.model_version_name)
    project_id = token.project_id
    now = timezone.now()
    try:
        with transaction.atomic():
            stored = MisbehaviourReport.objects.create(
                project_id=project_id, source=MisbehaviourReport.Source.DEPLOYMENT, token=token,
                conversation=report.conversation, bad_turn=report.bad_turn,
                model_version_name=report.model_version_name,
                model_version=ModelVersion.objects.filter(name=report.model_version_name).first(),
                category=report.category, description=report.description, metadata=report.metadata,
                content_hash=digest, last_reported_at=now,
            )
        return IngestResult(report=stored, created=True)
    except IntegrityError:
        # The unique (project, content_hash) constraint answers the race between identical reports.
        MisbehaviourReport.objects.filter(project_id=project_id, content_hash=digest).update(
            times_reported=F("times_reported") + 1, last_reported_at=now)
        stored = MisbehaviourReport.objects.filter(project_id=project_id, content_hash=digest).first()
        if stored is None:  # cannot happen unless the row was deleted meanwhile; do not lose the report
            raise
        return IngestResult(report=stored, created=False)


# --- triage ---------------------------------------------------------------------------------------

def _locked_report(project: Project, report_id: int) -> MisbehaviourReport:
    report = MisbehaviourReport.objects.select_for_update().filter(project=project, pk=report_id).first()
    if report is None:
        raise NotFound("No such report in this project.")
    return report


def create_tasks_for_report(*, project: Project, report_id: int, created_by=None,
                            turns: list[int] | None = None) -> tuple[list[ReportTask], int]:
    """Demonstration tasks for the bad replies at ``turns`` (default: the reported one), each the
    conversation up to that reply. Safe to repeat: a (report, turn) that has its task already is
    returned as it is. When another task of the project already holds the same conversation, that
    task is linked instead of a copy being made. Returns (links, how many are new)."""
    with transaction.atomic():
        report = _locked_report(project, report_id)
        if report.status in (MisbehaviourReport.Status.DISMISSED, MisbehaviourReport.Status.DUPLICATE):
            raise ReportClosed(f"This report is {report.status}; it makes no tasks.", status=report.status)
        turns = [report.bad_turn] if not turns else list(dict.fromkeys(turns))
        for turn in turns:
            check_bad_turn(report.conversation, turn, field="turns")
        existing = {link.turn: link for link in report.task_links.select_related("task")}
        created = 0
        for turn in turns:
            if turn in existing:
                continue
            task = _task_for_prefix(project, report, turn)
            existing[turn] = ReportTask.objects.create(report=report, task=task, turn=turn, created_by=created_by)
            created += 1
        if report.status == MisbehaviourReport.Status.NEW:
            report.status = MisbehaviourReport.Status.TASKS_CREATED
            report.triaged_by = created_by
            report.triaged_at = timezone.now()
            report.save(update_fields=["status", "triaged_by", "triaged_at"])
        return [existing[t] for t in sorted(existing)], created


def _task_for_prefix(project: Project, report: MisbehaviourReport, turn: int) -> Task:
    prefix = [dict(m) for m in report.conversation[:turn]]
    digest = task_content_hash(TaskKind.DEMONSTRATION, prefix, [])
    task = Task.objects.filter(project=project, content_hash=digest).first()
    if task is not None:
        return task
    metadata = {
        "source": f"report:{report.source}",
        "report": report.pk,
        "category": report.category,
        "model_version": report.model_version_name,
        "bad_reply": report.conversation[turn]["content"],
        "hint": TASK_HINTS[report.source].format(category=MisbehaviourCategory(report.category).label.lower())
        + TASK_HINT_TAIL,
    }
    try:
        with transaction.atomic():
            return Task.objects.create(project=project, kind=TaskKind.DEMONSTRATION, conversation=prefix,
                                       content_hash=digest, metadata=metadata)
    except IntegrityError:  # an import stored the same prompt meanwhile
        return Task.objects.get(project=project, content_hash=digest)


def dismiss_report(*, project: Project, report_id: int, dismissed_by, reason: str) -> MisbehaviourReport:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the report is dismissed.", field="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"The reason is longer than {MAX_REASON_CHARS} characters.", field="reason")
    with transaction.atomic():
        report = _locked_report(project, report_id)
        _must_be_new(report)
        report.status = MisbehaviourReport.Status.DISMISSED
        report.status_reason = reason
        report.triaged_by = dismissed_by
        report.triaged_at = timezone.now()
        report.save(update_fields=["status", "status_reason", "triaged_by", "triaged_at"])
    return report


def mark_duplicate(*, project: Project, report_id: int, marked_by, original_id: int) -> MisbehaviourReport:
    """Point the report at the one it repeats (followed to the first of a chain) and add its count
    to that one's."""
    with transaction.atomic():
        report = _locked_report(project, report_id)
        _must_be_new(report)
        original = MisbehaviourReport.objects.filter(project=project, pk=original_id).first()
        if original is None:
            raise InvalidInput("The original report is not in this project.", field="of")
        seen = {report.pk}
        while original.duplicate_of_id is not None and original.pk not in seen:
            seen.add(original.pk)
            original = MisbehaviourReport.objects.get(pk=original.duplicate_of_id)
        if original.pk == report.pk:
            raise InvalidInput("A report cannot be a duplicate of itself.", field="of")
        report.status = MisbehaviourReport.Status.DUPLICATE
        report.duplicate_of = original
        report.triaged_by = marked_by
        report.triaged_at = timezone.now()
        report.save(update_fields=["status", "duplicate_of", "triaged_by", "triaged_at"])
        MisbehaviourReport.objects.filter(pk=original.pk).update(
            times_reported=F("times_reported") + report.times_reported)
    return report


def _must_be_new(report: MisbehaviourReport) -> None:
    if report.status != MisbehaviourReport.Status.NEW:
        raise ReportAlreadyTriaged(f"This report was already triaged ({report.status}).", status=report.status)
