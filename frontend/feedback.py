"""Pages of deployment feedback and red-teaming: the triage queue and a report (admins act with
plain form posts, through the same services as the API), report tokens, the red-team page (briefs,
sessions, start) and the red-team chat.

Everything reported or typed at a model is hostile text: it reaches these pages only through the
``plain`` filter (frontend/rendering.py). The chat's transcript is a server-rendered fragment that
the page fetches while the model answers, so even the model's replies are sanitised on the server,
never assembled in the browser."""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from annotations.errors import DomainError, InvalidInput
from annotations.feedback import redteam, reports, selectors, tokens
from annotations.feedback.models import MisbehaviourCategory, MisbehaviourReport, RedTeamSession
from annotations.feedback.serializers import limits
from annotations.models import Lease, TaskKind
from annotations.permissions import ADMINS, ALL_ROLES, LABELLERS, STAFF
from annotations.services import leases

from .access import membership_or_404, project_page

PAGE_SIZE = 50
ORDERINGS = {"-id": "Newest first", "id": "Oldest first", "-times_reported": "Most reported",
             "-last_reported_at": "Last reported"}


# --- triage ---------------------------------------------------------------------------------------
@project_page(get=STAFF)
def report_queue(request, project_id: int):
    membership = membership_or_404(request, project_id, STAFF)
    project = membership.project
    filters = {key: request.GET.get(key, "") for key in selectors.REPORT_FILTERS}
    if not request.GET:
        filters["status"] = MisbehaviourReport.Status.NEW  # the queue: what waits for a decision
    try:
        items = selectors.report_list(project=project, filters=filters)
    except selectors.FilterError as exc:
        messages.error(request, f"{exc.field}: {exc.message}")
        return redirect("report-queue", project_id=project.pk)
    ordering = request.GET.get("ordering", "-id")
    if ordering not in ORDERINGS:
        ordering = "-id"
    items = items.order_by(*selectors.REPORT_ORDERING[ordering])
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in {**filters, "ordering": ordering}.items() if v})
    counts = selectors.report_counts(project=project)
    return render(request, "frontend/reports.html", {
        "project": project, "membership": membership, "page": page, "filters": filters, "ordering": ordering,
        "orderings": ORDERINGS.items(), "statuses": MisbehaviourReport.Status.choices,
        "categories": MisbehaviourCategory.choices, "sources": MisbehaviourReport.Source.choices,
        "model_versions": selectors.model_version_names(project=project),
        "counts": [(label, counts[value]) for value, label in MisbehaviourReport.Status.choices], "query": query,
        "rows": [_row(r) for r in page],
    })


def _row(report: MisbehaviourReport) -> dict:
    turns = report.conversation or []
    bad = report.bad_turn
    prompt = turns[bad - 1]["content"] if 0 < bad <= len(turns) else ""
    reply = turns[bad]["content"] if bad < len(turns) else ""
    return {"report": report, "prompt": prompt, "reply": reply}


@project_page(get=STAFF, post=ADMINS)
def report_detail(request, project_id: int, report_id: int):
    membership = membership_or_404(request, project_id, STAFF)
    project = membership.project
    report = selectors.report_detail(project=project, report_id=report_id)
    if report is None:
        raise Http404("No such report.")
    form = {"error": "", "field": "", "reason": "", "of": ""}
    if request.method == "POST":
        membership_or_404(request, project_id, ADMINS)
        action = request.POST.get("action", "")
        form.update(reason=request.POST.get("reason", ""), of=request.POST.get("of", ""))
        try:
            _decide(request, project, report, action)
        except InvalidInput as exc:
            form.update(error=exc.message, field=exc.details.get("field", ""))
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("report-detail-page", project_id=project.pk, report_id=report.pk)
        else:
            return redirect("report-detail-page", project_id=project.pk, report_id=report.pk)
    linked = {link.turn: link for link in report.task_links.all()}
    conversation = [{"index": i, "role": str(m.get("role", "")), "content": str(m.get("content", "")),
                     "bad": i == report.bad_turn, "task": linked.get(i),
                     "can_make_task": m.get("role") == "assistant" and i > 0
                     and report.conversation[i - 1].get("role") == "user"}
                    for i, m in enumerate(report.conversation or [])]
    return render(request, "frontend/report_detail.html", {
        "project": project, "membership": membership, "report": report, "conversation": conversation,
        "form": form, "can_act": membership.role in ADMINS, "is_open": report.status in ("new", "tasks_created"),
        "metadata": sorted((report.metadata or {}).items()),
    }, status=400 if form["error"] else 200)


def _decide(request, project, report, action: str) -> None:
    if action == "tasks":
        raw = request.POST.getlist("turns")
        if any(not t.isdigit() for t in raw):
            raise InvalidInput("Choose replies from the conversation.", field="turns")
        links, created = reports.create_tasks_for_report(project=project, report_id=report.pk,
                                                         created_by=request.user, turns=[int(t) for t in raw])
        ids = ", ".join(f"#{link.task_id}" for link in links)
        messages.success(request, f"{created} new demonstration task(s); this report's tasks: {ids}."
                         if created else f"Nothing new: this report's tasks are {ids}.")
    elif action == "dismiss":
        reports.dismiss_report(project=project, report_id=report.pk, dismissed_by=request.user,
                               reason=request.POST.get("reason", ""))
        messages.success(request, f"Report {report.pk} dismissed.")
    elif action == "duplicate":
        original = request.POST.get("of", "").strip().lstrip("#")
        if not original.isdigit():
            raise InvalidInput("Give the number of the report this one repeats.", field="of")
        reports.mark_duplicate(project=project, report_id=report.pk, marked_by=request.user, original_id=int(original))
        messages.success(request, f"Report {report.pk} marked as a duplicate of #{original}.")
    else:
        raise InvalidInput("Unknown action.", field="action")


# --- report tokens --------------------------------------------------------------------------------
@project_page(get=ADMINS, post=ADMINS)
def report_tokens(request, project_id: int):
    membership = membership_or_404(request, project_id, ADMINS)
    project = membership.project
    issued, error = None, ""
    if request.method == "POST":
        try:
            if request.POST.get("action") == "revoke":
                token_id = request.POST.get("token", "")
                token = tokens.revoke_report_token(project=project, token_id=int(token_id) if token_id.isdigit() else 0,
                                                   revoked_by=request.user)
                messages.success(request, f"Token {token.prefix}… ({token.name}) revoked.")
                return redirect("report-tokens-page", project_id=project.pk)
            issued = tokens.create_report_token(project=project, name=request.POST.get("name", ""),
                                                created_by=request.user)
        except InvalidInput as exc:
            error = exc.message
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("report-tokens-page", project_id=project.pk)
    # A new token is shown in this response only (not after a redirect, not in the session).
    response = render(request, "frontend/report_tokens.html", {
        "project": project, "membership": membership, "issued": issued, "error": error,
        "tokens": project.report_tokens.select_related("created_by", "revoked_by")[:200],
        "endpoint": request.build_absolute_uri(reverse("report-ingest")),
    }, status=400 if error else 200)
    response["Cache-Control"] = "no-store"
    return response


# --- red team -------------------------------------------------------------------------------------
@project_page(get=ALL_ROLES, post=ADMINS)
def red_team(request, project_id: int):
    membership = membership_or_404(request, project_id, ALL_ROLES)
    project = membership.project
    form = {"goal": "", "category": "", "system_prompt": "", "error": "", "field": ""}
    if request.method == "POST":
        membership_or_404(request, project_id, ADMINS)
        form.update({k: request.POST.get(k, "") for k in ("goal", "category", "system_prompt")})
        try:
            task, created = redteam.create_brief(project=project, goal=form["goal"], category=form["category"],
                                                 system_prompt=form["system_prompt"])
        except InvalidInput as exc:
            form.update(error=exc.message, field=exc.details.get("field", ""))
        else:
            messages.success(request, f"Red-team task #{task.pk} added." if created
                             else f"That brief exists already (task #{task.pk}).")
            return redirect("red-team-page", project_id=project.pk)
    is_admin = membership.role in ADMINS
    sessions = selectors.red_team_sessions(project=project, annotator=None if is_admin else request.user)
    sessions = sessions.select_related("report").prefetch_related("report__task_links")[:50]
    return render(request, "frontend/red_team.html", {
        "project": project, "membership": membership, "form": form, "is_admin": is_admin,
        "can_red_team": membership.role in LABELLERS, "categories": MisbehaviourCategory.choices,
        "briefs": selectors.red_team_tasks(project=project)[:200] if is_admin else [],
        "sessions": [_session_row(s) for s in sessions],
    }, status=400 if form["error"] else 200)


def _session_row(session: RedTeamSession) -> dict:
    report = getattr(session, "report", None)
    return {"session": session, "goal": (session.task.metadata or {}).get("goal", ""),
            "tasks": [link.task_id for link in report.task_links.all()] if report else [], "report": report}


@project_page(post=LABELLERS)
def red_team_start(request, project_id: int):
    """Resume my open red-team lease, or lease the next red-team task."""
    membership = membership_or_404(request, project_id, LABELLERS)
    project = membership.project
    lease = (Lease.objects.filter(project=project, annotator=request.user, status=Lease.Status.ACTIVE,
                                  task__kind=TaskKind.RED_TEAM).order_by("id").first())
    if lease is None:
        try:
            lease = leases.lease_next_task(project=project, annotator=request.user, kinds=[TaskKind.RED_TEAM])
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("red-team-page", project_id=project.pk)
    return redirect("red-team-chat", project_id=project.pk, lease_id=lease.pk)


def _my_red_team_lease(request, project, lease_id: int) -> Lease:
    lease = (Lease.objects.select_related("task").filter(project=project, annotator=request.user, pk=lease_id,
                                                         task__kind=TaskKind.RED_TEAM).first())
    if lease is None:  # someone else's lease, another kind, or none at all: the same answer
        raise Http404("No such red-team lease.")
    return lease


@project_page(get=LABELLERS)
def red_team_chat(request, project_id: int, lease_id: int):
    membership = membership_or_404(request, project_id, LABELLERS)
    project = membership.project
    lease = _my_red_team_lease(request, project, lease_id)
    if lease.status not in (Lease.Status.ACTIVE, Lease.Status.EXPIRED):
        messages.info(request, f"That red-team task is already {lease.status}.")
        return redirect("red-team-page", project_id=project.pk)
    return render(request, "frontend/red_team_chat.html", {
        "project": project, "membership": membership, "lease": lease, "task": lease.task,
        "goal": (lease.task.metadata or {}).get("goal", ""), "brief_category": _category_label(lease.task),
        "system_prompt": redteam.system_prompt_of(lease.task), "categories": MisbehaviourCategory.choices,
        "limits": limits(), "api_base": f"/api/projects/{project.pk}/leases/{lease.pk}/",
        **_transcript_context(lease),
    })


@project_page(get=LABELLERS)
def red_team_transcript(request, project_id: int, lease_id: int):
    """The chat as an HTML fragment, rendered and sanitised here; the page swaps it in while it waits."""
    membership = membership_or_404(request, project_id, LABELLERS)
    lease = _my_red_team_lease(request, membership.project, lease_id)
    response = render(request, "frontend/_red_team_transcript.html", _transcript_context(lease))
    response["Cache-Control"] = "no-store"
    return response


def _category_label(task) -> str:
    value = (task.metadata or {}).get("category", "")
    return MisbehaviourCategory(value).label if value in MisbehaviourCategory.values else ""


def _transcript_context(lease: Lease) -> dict:
    session = selectors.red_team_session_for_lease(lease=lease)
    turns = list(session.turns.all()) if session else []
    last = turns[-1] if turns else None
    waiting = bool(last and last.role == "assistant" and last.status == "pending")
    bounds = limits()
    return {
        "turns": turns, "session": session, "waiting": waiting,
        "can_retry": bool(last and last.role == "assistant" and (last.status == "failed" or redteam.is_stale(last))),
        "user_turns_left": max(0, bounds["max_user_turns"] - sum(t.role == "user" for t in turns)),
        "chars_left": max(0, bounds["max_conversation_chars"] - redteam.chars_used(lease.task, turns)),
        "answered": [t for t in turns if t.role == "assistant" and t.status == "done"],
    }
