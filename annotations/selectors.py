"""Reads of the labelling domain that are more than a ``.get()``."""
from __future__ import annotations

import functools
import statistics
from datetime import timedelta

from django.db import connection
from django.db.models import Count, F, Prefetch, Q, QuerySet, Sum, prefetch_related_objects
from django.utils import timezone

from .models import (AuditEntry, CandidateReply, InstructionVersion, Lease, Membership, ModelVersion, Project, Review,
                     Submission, Task, TaskCount)
from .services import prepared

# Allow-lists: anything a client may sort or filter by is named here, never passed through.
TASK_ORDERING = {"id": ("id",), "-id": ("-id",), "created_at": ("created_at", "id"), "-created_at": ("-created_at", "-id")}
TASK_FILTERS = ("kind", "state", "import_batch", "complete")


def projects_for_user(user) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).select_related("current_instructions").order_by("id")


def membership(*, project_id: int, user) -> Membership | None:
    """The user's membership with its project and the project's current instructions. Every
    project-scoped request starts here, so on PostgreSQL it is one prepared statement."""
    if connection.vendor != "postgresql":
        return (Membership.objects.select_related("project", "project__current_instructions")
                .filter(project_id=project_id, user=user).first())
    row = prepared.fetchone(_membership_sql(), {"project": project_id, "user": user.pk})
    if row is None:
        return None
    found, project, current = prepared.instances(row, Membership, Project, InstructionVersion)
    project.current_instructions = current
    found.project = project
    return found


@functools.cache
def _membership_sql() -> str:
    return (
        f"SELECT {prepared.select_list(Membership, 'm')}, {prepared.select_list(Project, 'p')}, "
        f"{prepared.select_list(InstructionVersion, 'iv')} "
        f"FROM {Membership._meta.db_table} m JOIN {Project._meta.db_table} p ON p.id = m.project_id "
        f"LEFT JOIN {InstructionVersion._meta.db_table} iv ON iv.id = p.current_instructions_id "
        "WHERE m.project_id = %(project)s AND m.user_id = %(user)s"
    )


def task_list(*, project: Project, filters: dict) -> QuerySet[Task]:
    tasks = Task.objects.filter(project=project)
    for key in ("kind", "state", "import_batch"):
        if filters.get(key) not in (None, ""):
            tasks = tasks.filter(**{key: filters[key]})
    complete = filters.get("complete")
    if complete not in (None, ""):
        # Complete = `overlap` accepted submissions (annotations.quality.completion); gold never is.
        tasks = tasks.filter(completed_at__isnull=not complete).exclude(state=Task.State.GOLD)
    return tasks


def task_counts(*, project: Project) -> dict:
    if connection.vendor == "postgresql":
        # Trigger-kept deltas: a few rows per project instead of a scan of its tasks.
        rows = [{"kind": r["kind"], "state": r["state"], "n": r["tasks"], "complete": r["completed"]}
                for r in TaskCount.objects.filter(project=project).values("kind", "state").order_by()
                .annotate(tasks=Sum("n"), completed=Sum("n", filter=Q(complete=True), default=0))
                .filter(tasks__gt=0)]
    else:
        rows = Task.objects.filter(project=project).values("kind", "state").annotate(
            n=Count("id"), complete=Count("id", filter=Q(completed_at__isnull=False))).order_by()
    counts = {"total": 0, "by_state": {s: 0 for s in Task.State.values}, "by_kind": {}, "complete": 0}
    for row in rows:
        counts["total"] += row["n"]
        counts["by_state"][row["state"]] += row["n"]
        counts["by_kind"][row["kind"]] = counts["by_kind"].get(row["kind"], 0) + row["n"]
        if row["state"] != Task.State.GOLD:
            counts["complete"] += row["complete"]
    return counts


def _replies() -> QuerySet[CandidateReply]:
    return CandidateReply.objects.select_related("model_version").order_by("id")


def task_with_replies(*, task_id: int) -> Task:
    return Task.objects.prefetch_related(Prefetch("replies", queryset=_replies())).get(pk=task_id)


def load_replies(task: Task) -> Task:
    """Attach a task's replies (with their model versions) to a task object already in hand, as
    ``prefetch_related`` would (``task.replies.all()`` then sends no query). Every leased task
    needs this, so on PostgreSQL it is one prepared statement."""
    if connection.vendor != "postgresql":
        prefetch_related_objects([task], Prefetch("replies", queryset=_replies()))
        return task
    rows = prepared.fetchall(_replies_sql(), {"task": task.pk})
    replies = []
    for row in rows:
        reply, reply.model_version = prepared.instances(row, CandidateReply, ModelVersion)
        reply.task = task
        replies.append(reply)
    cached = task.replies.all()
    cached._result_cache, cached._prefetch_done = replies, True
    if not hasattr(task, "_prefetched_objects_cache"):
        task._prefetched_objects_cache = {}
    task._prefetched_objects_cache["replies"] = cached
    return task


@functools.cache
def _replies_sql() -> str:
    return (f"SELECT {prepared.select_list(CandidateReply, 'r')}, {prepared.select_list(ModelVersion, 'mv')} "
            f"FROM {CandidateReply._meta.db_table} r "
            f"LEFT JOIN {ModelVersion._meta.db_table} mv ON mv.id = r.model_version_id "
            "WHERE r.task_id = %(task)s ORDER BY r.id")


def open_leases(*, project: Project, annotator) -> QuerySet[Lease]:
    return Lease.objects.filter(project=project, annotator=annotator, status=Lease.Status.ACTIVE).order_by("id")


def lease_for_annotator(*, project: Project, annotator, lease_id: int, with_task_kind: bool = False) -> Lease | None:
    if connection.vendor != "postgresql":
        leases = Lease.objects.filter(project=project, annotator=annotator, pk=lease_id)
        if with_task_kind:
            leases = leases.annotate(task_kind=F("task__kind"))
        return leases.first()
    # Every submit, skip and release starts here: one prepared statement.
    row = prepared.fetchone(_lease_sql(), {"lease": lease_id, "project": project.pk, "annotator": annotator.pk})
    if row is None:
        return None
    (lease,) = prepared.instances(row, Lease)
    if with_task_kind:
        lease.task_kind = row[-1]
    return lease


@functools.cache
def _lease_sql() -> str:
    return (f"SELECT {prepared.select_list(Lease, 'l')}, t.kind FROM {Lease._meta.db_table} l "
            f"JOIN {Task._meta.db_table} t ON t.id = l.task_id "
            "WHERE l.id = %(lease)s AND l.project_id = %(project)s AND l.annotator_id = %(annotator)s")


def submissions_visible_to(*, project: Project, user, role: str) -> QuerySet[Submission]:
    subs = Submission.objects.filter(project=project).select_related("instruction_version", "reply")
    if role == "annotator":
        subs = subs.filter(annotator=user)
    return subs


def annotator_stats(*, project: Project, annotator, now=None) -> dict:
    now = now or timezone.now()
    subs = Submission.objects.filter(project=project, annotator=annotator)
    agg = subs.aggregate(
        total=Count("id"),
        today=Count("id", filter=Q(created_at__gte=now - timedelta(days=1))),
        accepted=Count("id", filter=Q(status=Submission.Status.ACCEPTED)),
        rejected=Count("id", filter=Q(status=Submission.Status.REJECTED)),
        demonstrations=Count("id", filter=Q(kind="demonstration")),
        comparisons=Count("id", filter=Q(kind="comparison")),
    )
    recent_times = list(subs.order_by("-id").values_list("time_spent_ms", flat=True)[:500])
    leases = Lease.objects.filter(project=project, annotator=annotator)
    return {
        **agg,
        "median_time_ms": int(statistics.median(recent_times)) if recent_times else None,
        "open_leases": leases.filter(status=Lease.Status.ACTIVE).count(),
        "skipped": leases.filter(status=Lease.Status.SKIPPED).count(),
    }


def review_queue(*, project: Project, reviewer) -> QuerySet[Submission]:
    """Submissions sampled for review and waiting for a decision, oldest first; never the
    reviewer's own, never work on gold tasks (scored against the reference instead)."""
    return (Submission.objects.filter(project=project, status=Submission.Status.SUBMITTED, review_required=True)
            .exclude(annotator=reviewer).exclude(task__state=Task.State.GOLD)
            .select_related("task", "reply", "annotator", "instruction_version").order_by("id"))


def latest_review(*, submission: Submission) -> Review | None:
    return submission.reviews.select_related("reviewer", "fixed_reply").order_by("-id").first()


def returned_to_me(*, project: Project, annotator) -> QuerySet[Review]:
    """Rejections of my work with the reviewers' reasons, newest first."""
    return (Review.objects.filter(submission__project=project, submission__annotator=annotator,
                                  decision=Review.Decision.REJECT)
            .select_related("submission", "submission__task", "submission__lease", "reviewer").order_by("-id"))


def audit_entries(*, project: Project, action: str | None = None) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.filter(project_id=project.pk)
    if action:
        entries = entries.filter(action=action)
    return entries.order_by("-id")
