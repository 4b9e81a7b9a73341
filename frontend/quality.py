"""Quality pages: annotator analytics with agreement (people with people, and the model with people),
rules, paused annotators and notifications; one annotator's detail; gold references.

Every write goes through ``annotations.quality`` (the same services as the API under
``/api/projects/<id>/quality/`` and ``…/gold/``). Plain forms, server-rendered, no script."""
from __future__ import annotations

import re
import string

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render

from annotations import selectors
from annotations.errors import DomainError, InvalidInput
from annotations.models import Role, Submission, TaskKind
from annotations.permissions import ADMINS
from annotations.quality import agreement, analytics, gold, rules
from annotations.quality.models import GoldStandard, Notification, QualityRule
from models_service import selectors as model_selectors

from .access import membership_or_404, project_page

QUALITY_READERS = frozenset({Role.ADMIN, Role.REVIEWER})
DAY_CHOICES = (1, 7, 30, 90, 365)


@project_page(get=QUALITY_READERS, post=ADMINS)
def quality(request, project_id: int):
    membership = membership_or_404(request, project_id, QUALITY_READERS)
    project = membership.project
    if request.method == "POST":
        _quality_action(request, project)
        return redirect("quality", project_id=project.pk)
    days = int(request.GET["days"]) if request.GET.get("days", "").isdigit() and int(
        request.GET["days"]) in DAY_CHOICES else 7
    report = agreement.cached_agreement_report(project=project)
    peers = {row["annotator_id"]: row for row in report["by_annotator"]}
    is_admin = membership.role == Role.ADMIN
    notes = (Notification.objects.filter(project=project).select_related("subject")[:50] if is_admin else [])
    return render(request, "frontend/quality.html", {
        "project": project, "membership": membership, "days": days, "day_choices": DAY_CHOICES,
        "rows": analytics.annotator_analytics(project=project, days=days, peers=peers),
        "report": report, "ai_human": model_selectors.ai_human_agreement(project=project),
        "rules": QualityRule.objects.filter(project=project), "metrics": QualityRule.Metric.choices,
        "actions": QualityRule.Action.choices, "notifications": notes,
        "unread": sum(1 for n in notes if n.read_at is None), "is_admin": is_admin,
    })


def _quality_action(request, project) -> None:
    action = request.POST.get("action", "")
    try:
        if action == "add-rule":
            rule = rules.create_rule(
                project=project, created_by=request.user, metric=request.POST.get("metric", ""),
                threshold=_number(request.POST.get("threshold"), "threshold", float),
                min_samples=_number(request.POST.get("min_samples") or "5", "min_samples", int),
                window=_number(request.POST.get("window") or "20", "window", int),
                action=request.POST.get("rule_action", QualityRule.Action.PAUSE))
            messages.success(request, f"Rule added: {rule.get_metric_display()} below {rule.threshold:g}.")
        elif action in ("delete-rule", "toggle-rule"):
            rule_id = _number(request.POST.get("rule_id"), "rule", int)
            if action == "delete-rule":
                rules.delete_rule(project=project, rule_id=rule_id, actor=request.user)
                messages.success(request, "Rule deleted.")
            else:
                rule = QualityRule.objects.filter(project=project, pk=rule_id).first()
                if rule is None:
                    raise Http404("No such rule.")
                rules.update_rule(project=project, rule_id=rule_id, actor=request.user, active=not rule.active)
                messages.success(request, f"Rule {'paused' if rule.active else 'active again'}.")
        elif action in ("pause", "resume"):
            user_id = _number(request.POST.get("user_id"), "user", int)
            if action == "pause":
                m = rules.pause_annotator(project=project, user_id=user_id, reason=request.POST.get("reason", ""),
                                          by=request.user)
                messages.success(request, f"{m.user.username} is paused: no new tasks are served to them.")
            else:
                rules.resume_annotator(project=project, user_id=user_id, by=request.user)
                messages.success(request, "Resumed: tasks are served again.")
        elif action == "read":
            rules.mark_read(project=project, notification_id=_number(request.POST.get("notification_id"),
                                                                      "notification", int), by=request.user)
        else:
            messages.error(request, "Unknown action.")
    except DomainError as exc:
        messages.error(request, exc.message)


def _number(raw, field: str, kind):
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a number.", field=field) from None


@project_page(get=QUALITY_READERS)
def annotator(request, project_id: int, user_id: int):
    membership = membership_or_404(request, project_id, QUALITY_READERS)
    project = membership.project
    report = agreement.cached_agreement_report(project=project)
    peers = {row["annotator_id"]: row for row in report["by_annotator"]}
    rows = analytics.annotator_analytics(project=project, annotator_id=user_id, peers=peers)
    if not rows:
        raise Http404("No such member.")
    recent = (Submission.objects.filter(project=project, annotator_id=user_id).select_related(
        "instruction_version", "task").prefetch_related("reviews").order_by("-id")[:30])
    return render(request, "frontend/quality_annotator.html", {
        "project": project, "membership": membership, "row": rows[0], "peer": peers.get(user_id),
        "history": analytics.gold_history(project=project, annotator_id=user_id), "recent": recent,
        "is_admin": membership.role == Role.ADMIN,
    })


# --- gold -----------------------------------------------------------------------------------------
LETTERS = string.ascii_uppercase


def parse_letter_ranking(text: str, letters: dict[str, int]) -> list[list[int]]:
    """"B > A = D > C" -> tie-groups of reply ids, best first ("=" ties, ">" orders). Every reply
    exactly once is checked by the service; here only the letters."""
    groups = []
    for part in (text or "").upper().split(">"):
        names = [n for n in re.split(r"[=\s,]+", part.strip()) if n]
        if not names:
            raise_invalid("Write the ranking as letters, best first, e.g. B > A = D > C.")
        unknown = [n for n in names if n not in letters]
        if unknown:
            raise_invalid(f"Unknown reply letter(s): {', '.join(unknown)}.")
        groups.append([letters[n] for n in names])
    return groups


def raise_invalid(message: str):
    raise InvalidInput(message, field="ranking")


@project_page(get=QUALITY_READERS, post=ADMINS)
def gold_page(request, project_id: int):
    membership = membership_or_404(request, project_id, QUALITY_READERS)
    project = membership.project
    task_id = request.POST.get("task") or request.GET.get("task", "")
    task = None
    if task_id.isdigit():
        task = project.tasks.filter(pk=int(task_id)).first()
        if task is None:
            messages.error(request, f"No task {task_id} in this project.")
    form = {"ranking": request.POST.get("ranking", ""), "text": request.POST.get("text"),
            "note": request.POST.get("note", ""), "from_submission": request.POST.get("from_submission", ""),
            "error": ""}
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if task is None:
                raise Http404("No such task.")
            if action == "unset":
                gold.unset_gold(project=project, task_id=task.pk, actor=request.user)
                messages.success(request, f"Task {task.pk} is a normal task again.")
                return redirect("gold", project_id=project.pk)
            if action == "set":
                gold.set_gold(project=project, task_id=task.pk, created_by=request.user,
                              **_reference_from_form(task, form))
                messages.success(request, f"Task {task.pk} is gold; its submissions were scored.")
                return redirect("gold", project_id=project.pk)
            messages.error(request, "Unknown action.")
        except DomainError as exc:
            form["error"] = exc.message
            status = 400
    context = {"project": project, "membership": membership, "is_admin": membership.role == Role.ADMIN,
               "golds": gold.gold_tasks(project=project)[:500], "task": task, "form": form}
    if task is not None:
        context.update(_task_preview(project, task))
    return render(request, "frontend/gold.html", context, status=status)


def _reference_from_form(task, form) -> dict:
    note = form["note"][:5000]
    if form["from_submission"].strip():
        if not form["from_submission"].strip().isdigit():
            raise_invalid("The submission must be a number.")
        return {"from_submission_id": int(form["from_submission"]), "note": note}
    if task.kind == TaskKind.COMPARISON:
        letters = {LETTERS[i]: r.pk for i, r in enumerate(_ranked_replies(task))}
        return {"ranking": parse_letter_ranking(form["ranking"], letters), "note": note}
    return {"text": form["text"] or "", "note": note}


def _ranked_replies(task):
    return sorted((r for r in task.replies.all() if r.for_ranking), key=lambda r: r.pk)


def _task_preview(project, task) -> dict:
    task = selectors.task_with_replies(task_id=task.pk)
    reference = GoldStandard.objects.filter(task=task).first()
    replies = [{"letter": LETTERS[i % 26], "reply": r} for i, r in enumerate(_ranked_replies(task))]
    letter_of = {item["reply"].pk: item["letter"] for item in replies}
    current = None
    if reference is not None and reference.ranking:
        current = " > ".join(" = ".join(letter_of.get(rid, f"#{rid}") for rid in group) for group in reference.ranking)
    submissions = Submission.objects.filter(task=task).exclude(status=Submission.Status.REJECTED).select_related(
        "annotator").order_by("id")[:20]
    return {
        "task": task, "reference": reference, "current_ranking": current, "replies": replies,
        "conversation": [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                         for m in (task.conversation or []) if isinstance(m, dict)],
        "task_submissions": [{"sub": s, "summary": " > ".join(" = ".join(letter_of.get(rid, f"#{rid}") for rid in g)
                                                             for g in (s.ranking or []))} for s in submissions],
    }

