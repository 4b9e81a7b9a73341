"""The ML engineer's pages: dataset snapshots and finetune jobs (admins and ML engineers).

Writes go through the same services as the API (``annotations.exports.service.create_snapshot``
and the export Celery job; ``models_service.finetune.service``), so the rules and the audit log are
the same on both paths. The list page renders once and ``datasets.js`` polls
``datasets/status/`` (small: no metrics, no logs) for live progress; a job page polls the finetune
API and refreshes its loss curve, a server-drawn SVG image (``finetunes/<id>/loss.svg``).
Downloads are links to the API's download endpoint, which checks the role and writes the audit
entry."""
from __future__ import annotations

from datetime import datetime, time
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from annotations.errors import DomainError
from annotations.exports import service as export_service
from annotations.models import DatasetSnapshot, ModelVersion, Role
from annotations.permissions import ADMINS
from annotations.queueing import enqueue_on_commit
from annotations.services import projects as project_service
from models_service.backends import default_model_version
from models_service.finetune import service as finetune_service
from models_service.finetune.train import DEFAULTS as TRAIN_DEFAULTS
from models_service.models import FinetuneJob

from .access import membership_or_404, project_page
from .forms import FinetuneForm, SnapshotForm
from .plots import loss_plot

TRAINERS = frozenset({Role.ADMIN, Role.ENGINEER})
LISTED = 50


def _base_models():
    """Models a finetune can start from: every registered version that is not itself an adapter,
    the configured default included (recorded on first use, like the drafting path does)."""
    default_model_version()
    return ModelVersion.objects.filter(adapter_path="").order_by("name")


def _finetune_form(project, data=None):
    ready = project.snapshots.filter(status=DatasetSnapshot.Status.READY).order_by("-id")
    return FinetuneForm(data, snapshots=ready, base_models=_base_models(), defaults=TRAIN_DEFAULTS, prefix="ft")


def _filters_text(filters: dict) -> list[str]:
    f = filters or {}
    out = []
    if f.get("instruction_versions"):
        out.append("instructions " + ", ".join(f"v{v}" for v in f["instruction_versions"]))
    if f.get("accepted_only"):
        out.append("accepted only")
    if f.get("exclude_pending_review"):
        out.append("no pending review")
    if f.get("completed_only"):
        out.append("completed tasks")
    if f.get("min_agreement") is not None:
        out.append(f"agreement ≥ {f['min_agreement']:g}")
    if f.get("exclude_flagged"):
        out.append("no flagged")
    if f.get("exclude_gold", True):
        out.append("no gold")
    if f.get("date_from"):
        out.append("from " + f["date_from"][:10])
    if f.get("date_to"):
        out.append("until " + f["date_to"][:10])
    return out


def _snapshot_row(s: DatasetSnapshot, project_id: int) -> dict:
    download = reverse("snapshot-download", args=[project_id, s.pk])
    files = sorted((s.files or {}).items()) if s.status == DatasetSnapshot.Status.READY else []
    rows = (s.counts or {}).get("rows", {})
    return {
        "id": s.pk, "name": s.name, "status": s.status, "progress": round(s.progress or 0, 4),
        "records_done": s.records_done, "records": (s.counts or {}).get("records"), "rows": rows,
        "content_sha256": s.content_sha256, "error": s.error[:300], "filters": _filters_text(s.filters),
        "cancellable": s.status in DatasetSnapshot.ACTIVE,
        # the training files and the readable datasheet first; Parquet copies and row metadata folded away
        "files": [{"name": name, "bytes": (meta or {}).get("bytes"), "url": f"{download}?{urlencode({'file': name})}",
                   "main": name == "datasheet.md" or (name.endswith(".jsonl") and not name.endswith(".meta.jsonl"))}
                  for name, meta in files],
    }


def _finetune_row(job, project_id: int) -> dict:
    last = next((m.get("loss") for m in reversed(job.metrics or []) if m.get("loss") is not None), None)
    return {
        "id": job.pk, "method": job.method, "snapshot": job.snapshot_id, "base_model": job.base_model.name,
        "status": job.status, "progress": round(job.progress or 0, 4), "step": job.step,
        "total_steps": job.total_steps, "loss": round(last, 4) if last is not None else None,
        "error": job.error[:300], "result_model": job.result_model.name if job.result_model else None,
        "url": reverse("finetune-page", args=[project_id, job.pk]),
    }


def _start_snapshot(*, project, user, form: SnapshotForm) -> DatasetSnapshot | None:
    """The API's SnapshotListView.post, from the form: record the snapshot, queue its build."""
    from annotations.exports.tasks import build_snapshot_task

    data = dict(form.cleaned_data)
    # Whole days in the project's time zone: from the start of the first to the end of the last.
    for key, at in (("date_from", time.min), ("date_to", time.max)):
        data[key] = timezone.make_aware(datetime.combine(data[key], at)) if data[key] else None
    try:
        with transaction.atomic():
            snapshot = export_service.create_snapshot(project=project, created_by=user, **data)
            enqueue_on_commit(build_snapshot_task, snapshot.pk)
    except DomainError as exc:
        field = exc.details.get("field")
        form.add_error(field if field in form.fields else None, exc.message)
        return None
    return snapshot


def _start_finetune(*, project, user, form: FinetuneForm):
    try:
        data = form.cleaned_data
        return finetune_service.create_finetune_job(project=project, snapshot=data["snapshot"], method=data["method"],
                                                    base_model=data["base_model"], created_by=user,
                                                    params=form.params())
    except DomainError as exc:
        field = exc.details.get("field")
        form.add_error(field if field in form.fields else None, exc.message)
        return None


@project_page(get=TRAINERS, post=TRAINERS)
def datasets(request, project_id: int):
    membership = membership_or_404(request, project_id, TRAINERS)
    project = membership.project
    versions = list(project.instruction_versions.order_by("number").values_list("number", flat=True))
    snapshot_form = SnapshotForm(versions=versions, prefix="snap")
    finetune_form = _finetune_form(project)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "snapshot":
            snapshot_form = SnapshotForm(request.POST, versions=versions, prefix="snap")
            if snapshot_form.is_valid():
                snapshot = _start_snapshot(project=project, user=request.user, form=snapshot_form)
                if snapshot is not None:
                    messages.success(request, f"Snapshot {snapshot.pk} queued: it is being exported.")
                    return redirect(reverse("datasets", args=[project.pk]) + f"#snapshot-{snapshot.pk}")
        elif action == "cancel_snapshot":
            snapshot_id = request.POST.get("snapshot", "")
            try:
                export_service.cancel_snapshot(snapshot_id=int(snapshot_id) if snapshot_id.isdigit() else 0,
                                               project=project, actor=request.user)
                messages.success(request, f"Snapshot {snapshot_id} cancelled.")
            except DomainError as exc:
                messages.error(request, exc.message)
            return redirect(reverse("datasets", args=[project.pk]) + f"#snapshot-{snapshot_id}")
        elif action == "finetune":
            finetune_form = _finetune_form(project, request.POST)
            if finetune_form.is_valid():
                job = _start_finetune(project=project, user=request.user, form=finetune_form)
                if job is not None:
                    messages.success(request, f"Finetune {job.pk} queued.")
                    return redirect("finetune-page", project_id=project.pk, finetune_id=job.pk)
        else:
            messages.error(request, "Unknown action.")
            return redirect("datasets", project_id=project.pk)
    snapshots = list(project.snapshots.select_related("created_by").order_by("-id")[:LISTED])
    finetunes = list(FinetuneJob.objects.filter(project=project).select_related("base_model", "result_model")
                     .order_by("-id")[:LISTED])
    return render(request, "frontend/datasets.html", {
        "project": project, "membership": membership, "snapshot_form": snapshot_form,
        "finetune_form": finetune_form, "snapshots": [(s, _snapshot_row(s, project.pk)) for s in snapshots],
        "finetunes": [(j, _finetune_row(j, project.pk)) for j in finetunes],
        "status_url": reverse("datasets-status", args=[project.pk]),
        "open_form": request.method == "POST" and request.POST.get("action"),
    })


@project_page(get=TRAINERS)
def datasets_status(request, project_id: int):
    """What the list page polls: the newest snapshots and finetunes with their progress."""
    membership = membership_or_404(request, project_id, TRAINERS)
    project = membership.project
    snapshots = project.snapshots.order_by("-id")[:LISTED]
    finetunes = (FinetuneJob.objects.filter(project=project).select_related("base_model", "result_model")
                 .defer("log").order_by("-id")[:LISTED])
    return JsonResponse({"snapshots": [_snapshot_row(s, project.pk) for s in snapshots],
                         "finetunes": [_finetune_row(j, project.pk) for j in finetunes]})


def _job_or_404(project, finetune_id: int):
    job = (FinetuneJob.objects.filter(project=project, pk=finetune_id)
           .select_related("snapshot", "base_model", "result_model", "created_by").first())
    if job is None:
        raise Http404("No such finetune job.")
    return job


@project_page(get=TRAINERS, post=TRAINERS)
def finetune_page(request, project_id: int, finetune_id: int):
    """One finetune job: settings, live progress, loss curve, log; cancel, retry, and (admins)
    make its adapter the project's drafting model."""
    membership = membership_or_404(request, project_id, TRAINERS)
    project = membership.project
    job = _job_or_404(project, finetune_id)
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "cancel":
                finetune_service.cancel_finetune_job(job_id=job.pk, project=project, actor=request.user)
                messages.success(request, f"Finetune {job.pk} cancelled.")
            elif action == "retry":
                finetune_service.retry_finetune_job(job_id=job.pk, project=project, actor=request.user)
                messages.success(request, f"Finetune {job.pk} queued again.")
            elif action == "use-for-drafting":
                if membership.role not in ADMINS:
                    raise PermissionDenied("Only admins change the project's drafting model.")
                if job.result_model is None:
                    raise Http404("This job has no finetuned model.")
                project_service.update_project_settings(project=project, actor=request.user,
                                                        draft_model=job.result_model)
                messages.success(request, f"Drafts now come from {job.result_model.name}.")
            else:
                messages.error(request, "Unknown action.")
        except DomainError as exc:
            messages.error(request, exc.message)
        return redirect("finetune-page", project_id=project.pk, finetune_id=job.pk)
    plot = loss_plot(job.metrics, job.total_steps)
    return render(request, "frontend/finetune.html", {
        "project": project, "membership": membership, "job": job, "row": _finetune_row(job, project.pk),
        "plot": plot, "api_url": reverse("finetune-detail", args=[project.pk, job.pk]),
        "loss_url": reverse("finetune-loss", args=[project.pk, job.pk]),
        "active": job.status in finetune_service.ACTIVE, "can_retry": job.status in ("failed", "cancelled"),
        "is_admin": membership.role in ADMINS,
        "drafting_with_it": job.result_model_id is not None and project.draft_model_id == job.result_model_id,
        "params": sorted((job.params or {}).items()),
    })


@project_page(get=TRAINERS)
def finetune_loss(request, project_id: int, finetune_id: int):
    """The loss curve as a standalone SVG image, drawn on the server (no script in it)."""
    membership = membership_or_404(request, project_id, TRAINERS)
    job = _job_or_404(membership.project, finetune_id)
    response = render(request, "frontend/_loss_plot.svg", {"plot": loss_plot(job.metrics, job.total_steps)},
                      content_type="image/svg+xml; charset=utf-8")
    response["Cache-Control"] = "private, no-cache"
    return response
