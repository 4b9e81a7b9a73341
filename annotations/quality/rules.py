"""Rules an admin sets on annotators' quality, what happens when one is broken, and resuming.

A rule: "when <metric> over an annotator's last <window> items is below <threshold>, with at
least <min_samples> items, pause them (stop serving new tasks) and tell the admins" — or only tell
them. Rules are evaluated in the transaction that produced the new evidence: a submission on a
gold task (gold metrics) or a review decision (acceptance rate). The pause is a column on the
membership, which the lease path has locked and read anyway (``serving.ensure_serving``).
"""
from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from ..errors import InvalidInput, NotFound
from ..models import Membership, Project, Submission
from ..services import audit
from .models import GoldScore, Notification, QualityRule

METRIC_LABELS = {
    QualityRule.Metric.GOLD_ACCURACY: "gold accuracy",
    QualityRule.Metric.GOLD_RANKING_TAU: "Kendall tau against gold rankings",
    QualityRule.Metric.ACCEPTANCE_RATE: "acceptance rate",
}


def metric_value(*, project: Project, annotator_id: int, metric: str, window: int,
                 since=None) -> tuple[float | None, int]:
    """(value over the last ``window`` items, number of items)."""
    if metric in (QualityRule.Metric.GOLD_ACCURACY, QualityRule.Metric.GOLD_RANKING_TAU):
        field = "score" if metric == QualityRule.Metric.GOLD_ACCURACY else "ranking_tau"
        scores = GoldScore.objects.filter(project=project, annotator_id=annotator_id, **{f"{field}__isnull": False})
        if since is not None:
            scores = scores.filter(created_at__gte=since)
        values = list(scores.order_by("-created_at", "-id").values_list(field, flat=True)[:window])
        return (sum(values) / len(values) if values else None), len(values)
    if metric == QualityRule.Metric.ACCEPTANCE_RATE:
        reviewed = Submission.objects.filter(project=project, annotator_id=annotator_id,
                                             status__in=(Submission.Status.ACCEPTED, Submission.Status.REJECTED))
        if since is not None:
            reviewed = reviewed.filter(created_at__gte=since)
        statuses = list(reviewed.order_by("-created_at", "-id").values_list("status", flat=True)[:window])
        accepted = sum(s == Submission.Status.ACCEPTED for s in statuses)
        return (accepted / len(statuses) if statuses else None), len(statuses)
    raise InvalidInput(f"Unknown metric {metric!r}.", field="metric")


@transaction.atomic
def evaluate_rules(*, project: Project, annotator_id: int, metrics: Iterable[str] | None = None,
                   now=None) -> list[Notification]:
    """Apply the project's active rules (optionally only those on ``metrics``) to one annotator.
    Idempotent: an annotator already paused is not paused again, and a notify-only rule does not
    repeat itself while its last notification about this annotator is unread."""
    now = now or timezone.now()
    rules = QualityRule.objects.filter(project=project, active=True)
    if metrics is not None:
        rules = rules.filter(metric__in=list(metrics))
    rules = list(rules)
    if not rules:
        return []
    membership = (Membership.objects.select_for_update(of=("self",), no_key=True).select_related("user")
                  .filter(project=project, user_id=annotator_id).first())
    if membership is None:
        return []
    created = []
    for rule in rules:
        value, n = metric_value(project=project, annotator_id=annotator_id, metric=rule.metric, window=rule.window,
                                since=membership.quality_since)
        if value is None or n < rule.min_samples or value >= rule.threshold:
            continue
        label = METRIC_LABELS.get(rule.metric, rule.metric)
        data = {"metric": rule.metric, "value": round(value, 4), "threshold": rule.threshold, "items": n}
        who = membership.user.username
        if rule.action == QualityRule.Action.PAUSE:
            if membership.paused_at is not None:
                continue
            reason = f"{label} {value:.2f} over the last {n} items is below {rule.threshold:g} (rule {rule.pk})"
            membership.paused_at = now
            membership.paused_reason = reason
            membership.save(update_fields=["paused_at", "paused_reason"])
            audit.record(action=audit.Action.MEMBER_PAUSED, project=project,
                         target=audit.user_target(membership.user), details={"rule": rule.pk, **data})
            created.append(Notification.objects.create(
                project=project, kind=Notification.Kind.ANNOTATOR_PAUSED, subject_id=annotator_id, rule=rule,
                message=f"{who} was paused: {reason}. No new tasks are served to them until an admin resumes them.",
                data=data))
        else:
            if Notification.objects.filter(project=project, rule=rule, subject_id=annotator_id,
                                           read_at__isnull=True).exists():
                continue
            created.append(Notification.objects.create(
                project=project, kind=Notification.Kind.RULE_BREACHED, subject_id=annotator_id, rule=rule,
                message=f"{who}: {label} {value:.2f} over the last {n} items is below {rule.threshold:g}.",
                data=data))
    return created


@transaction.atomic
def create_rule(*, project: Project, created_by, metric: str, threshold: float, min_samples: int = 5,
                window: int = 20, action: str = QualityRule.Action.PAUSE, active: bool = True) -> QualityRule:
    rule = QualityRule(project=project, created_by=created_by, metric=metric, threshold=threshold,
                       min_samples=min_samples, window=window, action=action, active=active)
    _check(rule)
    rule.save()
    _audit_rule(rule, "created", created_by)
    return rule


def _audit_rule(rule: QualityRule, what: str, actor) -> None:
    audit.record(action=audit.Action.QUALITY_RULE, actor=actor, project=rule.project_id, target=f"rule {rule.pk}",
                 details={"change": what, "metric": rule.metric, "threshold": rule.threshold, "window": rule.window,
                          "min_samples": rule.min_samples, "action": rule.action, "active": rule.active})


@transaction.atomic
def update_rule(*, project: Project, rule_id: int, actor=None, **changes) -> QualityRule:
    rule = QualityRule.objects.select_for_update(no_key=True).filter(project=project, pk=rule_id).first()
    if rule is None:
        raise NotFound("No such rule in this project.")
    for field in ("metric", "threshold", "min_samples", "window", "action", "active"):
        if field in changes:
            setattr(rule, field, changes[field])
    _check(rule)
    rule.save()
    _audit_rule(rule, "changed", actor)
    return rule


def _check(rule: QualityRule) -> None:
    from django.core.exceptions import ValidationError

    if rule.metric != QualityRule.Metric.GOLD_RANKING_TAU and rule.threshold < 0:
        raise InvalidInput("This metric runs from 0 to 1; choose a threshold in that range.", field="threshold")
    if rule.min_samples > rule.window:
        raise InvalidInput("min_samples cannot be larger than the window.", field="min_samples")
    try:
        rule.full_clean(exclude=["project", "created_by"])
    except ValidationError as exc:
        field, errors = next(iter(exc.message_dict.items()))
        raise InvalidInput(f"{field}: {' '.join(errors)}", field=field) from None


@transaction.atomic
def delete_rule(*, project: Project, rule_id: int, actor=None) -> None:
    rule = QualityRule.objects.filter(project=project, pk=rule_id).first()
    if rule is None:
        raise NotFound("No such rule in this project.")
    _audit_rule(rule, "deleted", actor)
    rule.delete()


@transaction.atomic
def pause_annotator(*, project: Project, user_id: int, reason: str, by=None) -> Membership:
    """An admin stops serving a member by hand (the same switch the rules use)."""
    membership = Membership.objects.select_for_update(of=("self",), no_key=True).select_related("user").filter(
        project=project, user_id=user_id).first()
    if membership is None:
        raise NotFound("No such member.")
    reason = (reason or "").strip()[:2000] or "paused by an admin"
    if membership.paused_at is None:
        membership.paused_at = timezone.now()
        membership.paused_reason = reason
        membership.save(update_fields=["paused_at", "paused_reason"])
        audit.record(action=audit.Action.MEMBER_PAUSED, actor=by, project=project,
                     target=audit.user_target(membership.user), details={"reason": reason})
        Notification.objects.create(
            project=project, kind=Notification.Kind.ANNOTATOR_PAUSED, subject_id=user_id,
            message=f"{membership.user.username} was paused by {getattr(by, 'username', 'an admin')}: {reason}.",
            data={"by": getattr(by, "pk", None)})
    return membership


@transaction.atomic
def resume_annotator(*, project: Project, user_id: int, by=None) -> Membership:
    """Serve the member again. Rules from now on look only at work after this moment."""
    membership = (Membership.objects.select_for_update(of=("self",), no_key=True).select_related("user")
                  .filter(project=project, user_id=user_id).first())
    if membership is None:
        raise NotFound("No such member.")
    now = timezone.now()
    if membership.paused_at is not None:
        audit.record(action=audit.Action.MEMBER_RESUMED, actor=by, project=project,
                     target=audit.user_target(membership.user), details={"was": membership.paused_reason})
    membership.paused_at = None
    membership.paused_reason = ""
    membership.quality_since = now
    membership.save(update_fields=["paused_at", "paused_reason", "quality_since"])
    Notification.objects.filter(project=project, subject_id=user_id, kind=Notification.Kind.ANNOTATOR_PAUSED,
                                read_at__isnull=True).update(read_at=now, read_by=by)
    return membership


def mark_read(*, project: Project, notification_id: int, by) -> Notification:
    note = Notification.objects.filter(project=project, pk=notification_id).first()
    if note is None:
        raise NotFound("No such notification.")
    if note.read_at is None:
        note.read_at = timezone.now()
        note.read_by = by
        note.save(update_fields=["read_at", "read_by"])
    return note

