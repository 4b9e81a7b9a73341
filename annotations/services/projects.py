from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..errors import InvalidInput
from ..models import Membership, Project, Role, Task
from ..quality import completion
from . import audit

User = get_user_model()

SETTING_FIELDS = ("name", "description", "overlap", "comparison_k", "pending_cap", "lease_seconds", "drafts_n",
                  "draft_model", "draft_on_import", "gold_rate", "review_rate", "review_new_until", "on_reject")


@transaction.atomic
def create_project(*, name: str, created_by, description: str = "", **settings) -> Project:
    unknown = set(settings) - set(SETTING_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown project settings: {', '.join(sorted(unknown))}")
    project = Project(name=name, description=description, created_by=created_by, **settings)
    project.full_clean(exclude=["current_instructions"])
    project.save()
    Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    audit.record(action=audit.Action.PROJECT_CREATED, actor=created_by, project=project, target=f"project {project.pk}",
                 details={"name": name})
    return project


@transaction.atomic
def update_project_settings(*, project: Project, actor=None, **changes) -> Project:
    unknown = set(changes) - set(SETTING_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown project settings: {', '.join(sorted(unknown))}")
    project = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    old_overlap = project.overlap
    before = {field: _plain(getattr(project, field)) for field in changes}
    for field, value in changes.items():
        setattr(project, field, value)
    project.full_clean(exclude=["current_instructions", "created_by"])
    project.save()
    changed = {f: [before[f], _plain(getattr(project, f))] for f in changes if before[f] != _plain(getattr(project, f))}
    if changed:
        audit.record(action=audit.Action.PROJECT_SETTINGS, actor=actor, project=project,
                     target=f"project {project.pk}", details=changed)
    if project.overlap != old_overlap:
        recompute_task_states(project=project)
        completion.recompute_completion(project=project, now=timezone.now())
    return project


def recompute_task_states(*, project: Project) -> int:
    """Bring every task's state in line with the project's overlap after the overlap changed."""
    k = project.overlap
    tasks = Task.objects.filter(project=project).exclude(state=Task.State.GOLD)  # gold keeps its state
    n = tasks.filter(submission_count__gte=k).exclude(state=Task.State.DONE).update(state=Task.State.DONE)
    n += tasks.filter(submission_count__lt=k, lease_count__gte=k - F("submission_count")).exclude(
        state=Task.State.BUSY).update(state=Task.State.BUSY)
    n += tasks.filter(Q(submission_count__lt=k) & Q(lease_count__lt=k - F("submission_count"))).exclude(
        state=Task.State.OPEN).update(state=Task.State.OPEN)
    return n


@transaction.atomic
def set_member(*, project: Project, user, role: str, actor=None) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}; expected one of {', '.join(Role.values)}")
    old = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    _keep_one_admin(project)
    if old != role:
        audit.record(action=audit.Action.MEMBER_SET, actor=actor, project=project, target=audit.user_target(user),
                     details={"role": [old, role]})
    return membership


@transaction.atomic
def remove_member(*, project: Project, user, actor=None) -> None:
    old = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    Membership.objects.filter(project=project, user=user).delete()
    _keep_one_admin(project)
    if old is not None:
        audit.record(action=audit.Action.MEMBER_REMOVED, actor=actor, project=project, target=audit.user_target(user),
                     details={"role": [old, None]})


def _plain(value):
    # JSON-safe form of a setting for the audit log (draft_model is a model instance).
    return value.pk if isinstance(value, models.Model) else value


def _keep_one_admin(project: Project) -> None:
    # A project nobody can administer is lost; refuse the change (the transaction rolls back).
    if not Membership.objects.filter(project=project, role=Role.ADMIN).exists():
        raise InvalidInput("A project must keep at least one admin.")
