"""Reads of deployment feedback and red-teaming."""
from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from ..models import Lease, Project, Task, TaskKind
from .models import MisbehaviourCategory, MisbehaviourReport, RedTeamSession, RedTeamTurn, ReportTask

# Allow-listed filters of the triage queue: query parameter -> (model field, allowed values or None).
REPORT_FILTERS = {
    "status": ("status", frozenset(MisbehaviourReport.Status.values)),
    "category": ("category", frozenset(MisbehaviourCategory.values)),
    "source": ("source", frozenset(MisbehaviourReport.Source.values)),
    "model_version": ("model_version_name", None),
}
REPORT_ORDERING = {"id": ("id",), "-id": ("-id",), "-times_reported": ("-times_reported", "-id"),
                   "-last_reported_at": ("-last_reported_at", "-id")}


class FilterError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def report_list(*, project: Project, filters: dict) -> QuerySet[MisbehaviourReport]:
    reports = MisbehaviourReport.objects.filter(project=project)
    for key, (field, allowed) in REPORT_FILTERS.items():
        value = filters.get(key)
        if value in (None, ""):
            continue
        if allowed is not None and value not in allowed:
            raise FilterError(key, f"Choose one of {sorted(allowed)}.")
        reports = reports.filter(**{field: value})
    return reports.select_related("token", "triaged_by").prefetch_related(
        Prefetch("task_links", queryset=ReportTask.objects.order_by("turn")))


def report_detail(*, project: Project, report_id: int) -> MisbehaviourReport | None:
    return (MisbehaviourReport.objects.filter(project=project, pk=report_id)
            .select_related("token", "triaged_by", "duplicate_of", "model_version", "red_team_session__annotator")
            .prefetch_related(Prefetch("task_links", queryset=ReportTask.objects.select_related("task")
                                       .order_by("turn"))).first())


def report_counts(*, project: Project) -> dict[str, int]:
    rows = MisbehaviourReport.objects.filter(project=project).values("status").annotate(n=Count("id")).order_by()
    counts = {s: 0 for s in MisbehaviourReport.Status.values}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def model_version_names(*, project: Project) -> list[str]:
    return list(MisbehaviourReport.objects.filter(project=project).order_by("model_version_name")
                .values_list("model_version_name", flat=True).distinct()[:200])


def red_team_session_for_lease(*, lease: Lease) -> RedTeamSession | None:
    return (RedTeamSession.objects.filter(lease=lease)
            .prefetch_related(Prefetch("turns", queryset=RedTeamTurn.objects.select_related("model_version")))
            .first())


def red_team_tasks(*, project: Project) -> QuerySet[Task]:
    return Task.objects.filter(project=project, kind=TaskKind.RED_TEAM).order_by("-id")


def red_team_sessions(*, project: Project, annotator=None) -> QuerySet[RedTeamSession]:
    sessions = RedTeamSession.objects.filter(project=project).select_related("annotator", "task").annotate(
        turn_count=Count("turns"))
    if annotator is not None:
        sessions = sessions.filter(annotator=annotator)
    return sessions.order_by("-id")
