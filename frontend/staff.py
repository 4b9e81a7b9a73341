"""Pages for reviewers and admins: submissions, instructions, project settings and members, imports.
Every write goes through the same services as the API."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render

from annotations import selectors
from annotations.errors import DomainError
from annotations.models import AuditEntry, ImportBatch, Role, Submission, TaskKind
from annotations.permissions import ADMINS, STAFF
from annotations.services import imports as import_service
from annotations.services import instructions as instruction_service
from annotations.services import projects as project_service
from annotations.services import url_imports as url_import_service

from .access import membership_or_404, project_page
from .forms import ImportForm, ImportURLForm, InstructionsForm, MemberForm, ProjectSettingsForm
from .rendering import line_diff, render_markdown

User = get_user_model()
REVIEWERS = frozenset({Role.ADMIN, Role.REVIEWER})
IMPORT_READERS = frozenset({Role.ADMIN, Role.ENGINEER})
JOB_RUNNERS = frozenset({Role.ADMIN, Role.ENGINEER})
PAGE_SIZE = 50


@project_page(get=REVIEWERS)
def submission_list(request, project_id: int):
    membership = membership_or_404(request, project_id, REVIEWERS)
    project = membership.project
    subs = selectors.submissions_visible_to(project=project, user=request.user, role=membership.role)
    filters = {}
    kind = request.GET.get("kind", "")
    status = request.GET.get("status", "")
    if kind in TaskKind.values:
        filters["kind"] = kind
    if status in Submission.Status.values:
        filters["status"] = status
    subs = subs.filter(**filters).select_related("annotator", "red_team_session").order_by("-id")
    page = Paginator(subs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "frontend/submissions.html", {
        "project": project, "membership": membership, "page": page, "kind": kind, "status": status,
        "kinds": TaskKind.choices, "statuses": Submission.Status.choices,
    })


@project_page(get=ADMINS, post=ADMINS)
def instructions_editor(request, project_id: int):
    membership = membership_or_404(request, project_id, ADMINS)
    project = membership.project
    current = project.current_instructions
    versions = list(project.instruction_versions.select_related("created_by").order_by("-number"))
    preview = None
    if request.method == "POST":
        form = InstructionsForm(request.POST)
        if form.is_valid():
            if request.POST.get("action") == "publish":
                try:
                    version = instruction_service.publish_instructions(
                        project=project, published_by=request.user, **form.cleaned_data)
                except DomainError as exc:
                    form.add_error("body", exc.message)
                else:
                    messages.success(request, f"Published instructions v{version.number}.")
                    return redirect("instructions", project_id=project.pk)
            preview = render_markdown(form.cleaned_data["body"])
    else:
        form = InstructionsForm(initial={"body": current.body if current else ""})
    # ?diff=N shows what version N changed against the one before it.
    diff_for = None
    by_number = {v.number: v for v in versions}
    wanted = request.GET.get("diff", "")
    if wanted.isdigit() and int(wanted) in by_number:
        new = by_number[int(wanted)]
        old = by_number.get(new.number - 1)
        diff_for = {"new": new, "old": old, "rows": line_diff(old.body if old else "", new.body)}
    return render(request, "frontend/instructions.html", {
        "project": project, "membership": membership, "form": form, "preview": preview, "versions": versions,
        "current": current, "diff_for": diff_for,
    })


@project_page(get=ADMINS, post=ADMINS)
def project_settings(request, project_id: int):
    membership = membership_or_404(request, project_id, ADMINS)
    project = membership.project
    form = ProjectSettingsForm(instance=project)
    member_form = MemberForm()
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "settings":
                form = ProjectSettingsForm(request.POST, instance=project)
                if form.is_valid():
                    changes = {f: form.cleaned_data[f] for f in form.changed_data}
                    if changes:
                        project_service.update_project_settings(project=project, actor=request.user, **changes)
                        messages.success(request, "Settings saved.")
                    return redirect("project-settings", project_id=project.pk)
            elif action == "add-member":
                member_form = MemberForm(request.POST)
                if member_form.is_valid():
                    user = User.objects.filter(username=member_form.cleaned_data["username"], is_active=True).first()
                    if user is None:
                        member_form.add_error("username", "No active user with this username.")
                    else:
                        project_service.set_member(project=project, user=user, role=member_form.cleaned_data["role"],
                                                   actor=request.user)
                        messages.success(request, f"{user.username} is now {member_form.cleaned_data['role']}.")
                        return redirect("project-settings", project_id=project.pk)
            elif action in ("set-role", "remove-member"):
                target = project.memberships.select_related("user").filter(user_id=request.POST.get("user_id")).first()
                if target is None:
                    raise Http404("No such member.")
                if action == "set-role":
                    project_service.set_member(project=project, user=target.user, role=request.POST.get("role", ""),
                                               actor=request.user)
                    messages.success(request, f"{target.user.username}'s role changed.")
                else:
                    project_service.remove_member(project=project, user=target.user, actor=request.user)
                    messages.success(request, f"{target.user.username} removed from the project.")
                return redirect("project-settings", project_id=project.pk)
        except DomainError as exc:
            messages.error(request, exc.message)
        except DjangoValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
    members = project.memberships.select_related("user").order_by("user__username")
    return render(request, "frontend/settings.html", {
        "project": project, "membership": membership, "form": form, "member_form": member_form,
        "members": members, "roles": Role.choices,
    })


@project_page(get=IMPORT_READERS, post=ADMINS)
def imports(request, project_id: int):
    """Upload mirrors the API's ImportListView and the URL form its ImportFromURLView: the same
    services store or fetch the file and queue annotations.tasks.process_import."""
    membership = membership_or_404(request, project_id, IMPORT_READERS)
    project = membership.project
    form, url_form = ImportForm(), ImportURLForm(prefix="url")
    if request.method == "POST":
        if request.POST.get("action") == "url":
            url_form = ImportURLForm(request.POST, prefix="url")
            batch = _start_url_import(project=project, user=request.user, form=url_form) if url_form.is_valid() else None
        else:
            form = ImportForm(request.POST, request.FILES)
            batch = _start_import(project=project, user=request.user, form=form) if form.is_valid() else None
        if batch is not None:
            return redirect("import-detail-page", project_id=project.pk, import_id=batch.pk)
    return render(request, "frontend/imports.html", {
        "project": project, "membership": membership, "form": form, "url_form": url_form,
        "batches": project.imports.all()[:50], "can_upload": membership.role in ADMINS,
        "max_bytes": settings.IMPORT_MAX_BYTES, "url_timeout": settings.IMPORT_URL_TIMEOUT,
    })


def _start_url_import(*, project, user, form) -> ImportBatch | None:
    try:
        return url_import_service.start_url_import(
            project=project, url=form.cleaned_data["url"], fmt=form.cleaned_data.get("format") or None,
            default_kind=form.cleaned_data["kind"], created_by=user)
    except DomainError as exc:
        form.add_error("format" if exc.details.get("field") == "format" else "url", exc.message)
        return None


def _start_import(*, project, user, form) -> ImportBatch | None:
    upload = form.cleaned_data["file"]
    fmt = form.cleaned_data.get("format") or _format_from_name(upload.name)
    if fmt is None:
        form.add_error("format", "Cannot tell the format from the file name; choose JSONL or CSV.")
        return None
    try:
        return import_service.start_import(project=project, upload=upload, fmt=fmt, created_by=user,
                                           default_kind=form.cleaned_data["kind"])
    except DomainError as exc:
        form.add_error("file", exc.message)
        return None


def _format_from_name(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return None


@project_page(get=IMPORT_READERS)
def import_detail(request, project_id: int, import_id: int):
    membership = membership_or_404(request, project_id, IMPORT_READERS)
    project = membership.project
    batch = project.imports.filter(pk=import_id).first()
    if batch is None:
        raise Http404("No such import.")
    progress = cache.get(import_service.progress_key(batch.pk))
    from annotations.models import DataScan

    from .screening import findings_context

    scan = DataScan.objects.filter(import_batch=batch).first()
    return render(request, "frontend/import_detail.html", {
        "project": project, "membership": membership, "batch": batch, "progress_rows": progress,
        "finished": batch.status in (ImportBatch.Status.DONE, ImportBatch.Status.FAILED),
        # The scan is queued when the import commits: its row may not exist yet.
        "scan_pending": settings.SCREENING_ON_IMPORT and batch.status == ImportBatch.Status.DONE
        and batch.tasks_created > 0 and (scan is None or scan.status in (DataScan.Status.PENDING,
                                                                           DataScan.Status.RUNNING)),
        **findings_context(project=project, membership=membership, scans=[scan] if scan else []),
    })


@project_page(get=STAFF)
def model_jobs(request, project_id: int):
    """Drafting and judging jobs with live progress. The page renders the list once; jobs.js polls
    ``GET /api/projects/<id>/model-jobs/`` every 2 s and starts or cancels jobs through the same
    API, so the rules (who may, which parameters) live there."""
    from models_service.models import ModelJob

    membership = membership_or_404(request, project_id, STAFF)
    project = membership.project
    jobs = ModelJob.objects.filter(project=project).select_related("model_version")[:100]
    return render(request, "frontend/jobs.html", {
        "project": project, "membership": membership, "jobs": jobs,
        "can_run": membership.role in JOB_RUNNERS,
        "api_base": f"/api/projects/{project.pk}/model-jobs/",
        "default_n": project.drafts_n or 1, "default_max_tokens": settings.DRAFT_MAX_TOKENS,
    })


@project_page(get=ADMINS)
def audit_log(request, project_id: int):
    membership = membership_or_404(request, project_id, ADMINS)
    project = membership.project
    action = request.GET.get("action", "")
    entries = selectors.audit_entries(project=project, action=action if action in AuditEntry.Action.values else None)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "frontend/audit.html", {
        "project": project, "membership": membership, "page": page, "actions": AuditEntry.Action.choices,
        "action": action if action in AuditEntry.Action.values else "",
    })
