"""Snapshot endpoints under /api/projects/<id>/snapshots/: admins and ML engineers only."""
from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from ..api.views import ProjectScopedView
from ..models import DatasetSnapshot
from ..queueing import enqueue_on_commit
from . import service

EXPORTERS = frozenset({"admin", "engineer"})


class SnapshotIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    formats = serializers.ListField(child=serializers.ChoiceField(choices=service.FORMATS), required=False,
                                    max_length=2)
    instruction_versions = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False,
                                                 max_length=1000)
    accepted_only = serializers.BooleanField(required=False)
    exclude_flagged = serializers.BooleanField(required=False)
    date_from = serializers.DateTimeField(required=False)
    date_to = serializers.DateTimeField(required=False)
    eval_fraction = serializers.FloatField(min_value=0, max_value=0.9, required=False)
    near_duplicates = serializers.BooleanField(required=False)
    near_dup_threshold = serializers.FloatField(min_value=0.5, max_value=1, required=False)
    licence = serializers.CharField(max_length=200, required=False, allow_blank=True)
    seed = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                 help_text="Changes which prompt groups land in eval (default: none).")
    exclude_gold = serializers.BooleanField(required=False, help_text="Leave out work on gold tasks (default true).")
    completed_only = serializers.BooleanField(
        required=False, help_text="Only tasks with `overlap` accepted submissions.")
    exclude_pending_review = serializers.BooleanField(
        required=False, help_text="Leave out submissions sampled for review and not decided yet.")
    min_agreement = serializers.FloatField(
        min_value=-1, max_value=1, required=False, allow_null=True,
        help_text="DPO: only tasks whose annotators' mean pairwise Kendall tau is at least this.")


class SnapshotOut(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)
    # Plain text, not an enum: its choices would collide with other "status" enums in the schema.
    status = serializers.CharField(read_only=True, help_text="pending | running | ready | failed | cancelled")

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "name", "status", "progress", "records_done", "filters", "formats", "options", "counts",
                  "files", "content_sha256", "error", "created_by", "created_at", "finished_at"]


def _snapshot(view, snapshot_id) -> DatasetSnapshot:
    snapshot = DatasetSnapshot.objects.filter(project=view.project, pk=snapshot_id).select_related("created_by").first()
    if snapshot is None:
        raise NotFound()
    return snapshot


class SnapshotListView(ProjectScopedView):
    roles = {"get": EXPORTERS, "post": EXPORTERS}

    @extend_schema(responses=SnapshotOut(many=True))
    def get(self, request, project_id):
        snapshots = DatasetSnapshot.objects.filter(project=self.project).select_related("created_by")[:100]
        return Response(SnapshotOut(snapshots, many=True).data)

    @extend_schema(request=SnapshotIn, responses={202: SnapshotOut})
    def post(self, request, project_id):
        data = SnapshotIn(data=request.data)
        data.is_valid(raise_exception=True)
        from .tasks import build_snapshot_task

        with transaction.atomic():
            snapshot = service.create_snapshot(project=self.project, created_by=request.user, **data.validated_data)
            enqueue_on_commit(build_snapshot_task, snapshot.pk)
        return Response(SnapshotOut(snapshot).data, status=202)


class SnapshotDetailView(ProjectScopedView):
    roles = {"get": EXPORTERS}

    @extend_schema(responses=SnapshotOut)
    def get(self, request, project_id, snapshot_id):
        return Response(SnapshotOut(_snapshot(self, snapshot_id)).data)


class SnapshotCancelView(ProjectScopedView):
    """Stop a pending or running export; its partial files are removed. 400 for a ready or failed one."""

    roles = {"post": EXPORTERS}

    @extend_schema(request=None, responses=SnapshotOut)
    def post(self, request, project_id, snapshot_id):
        service.cancel_snapshot(snapshot_id=_snapshot(self, snapshot_id).pk, project=self.project, actor=request.user)
        return Response(SnapshotOut(_snapshot(self, snapshot_id)).data)


class SnapshotDownloadView(ProjectScopedView):
    """One file of a ready snapshot, streamed. Only names the snapshot lists are served."""

    roles = {"get": EXPORTERS}

    @extend_schema(parameters=[OpenApiParameter("file", str, required=True, description="e.g. sft.train.jsonl")],
                   responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, project_id, snapshot_id):
        snapshot = _snapshot(self, snapshot_id)
        name = request.query_params.get("file", "")
        if snapshot.status != DatasetSnapshot.Status.READY:
            raise ValidationError({"file": ["The snapshot is not ready."]})
        if name not in snapshot.files:
            raise ValidationError({"file": [f"Choose one of {sorted(snapshot.files)}."]})
        service.record_download(snapshot=snapshot, file_name=name, actor=request.user)
        return FileResponse(open(Path(snapshot.path) / name, "rb"), as_attachment=True,
                            filename=f"snapshot-{snapshot.pk}-{name}")
