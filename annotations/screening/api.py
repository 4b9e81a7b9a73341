"""Screening endpoints under /api/projects/<id>/screening/: staff read findings, admins exclude."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from ..api.views import ProjectScopedView
from ..models import DataFinding, DataScan
from ..permissions import ADMINS, STAFF
from . import service

FILTERS = ("scan", "import_batch", "snapshot")


class ScanOut(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="pending | running | done | failed")

    class Meta:
        model = DataScan
        fields = ["id", "import_batch", "snapshot", "status", "items", "stats", "error", "created_at", "finished_at"]


class FindingOut(serializers.ModelSerializer):
    excluded_by = serializers.CharField(source="excluded_by.username", default=None)
    import_batch = serializers.IntegerField(source="scan.import_batch_id", default=None)
    snapshot = serializers.IntegerField(source="scan.snapshot_id", default=None)

    class Meta:
        model = DataFinding
        fields = ["id", "scan", "import_batch", "snapshot", "kind", "title", "score", "evidence", "task_ids",
                  "item_count", "excluded_at", "excluded_by", "created_at"]


class ExcludeIn(serializers.Serializer):
    rebuild = serializers.BooleanField(required=False, default=False,
                                       help_text="Snapshot findings: queue a new snapshot with the same filters.")


class ExcludeOut(serializers.Serializer):
    finding = FindingOut()
    newly_excluded = serializers.IntegerField()
    rebuilt_snapshot = serializers.IntegerField(allow_null=True)


def _id_filter(request, key):
    value = request.query_params.get(key)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise ValidationError({key: ["Must be an integer."]})
    return int(value)


class ScanListView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(parameters=[OpenApiParameter(k, int) for k in ("import_batch", "snapshot")],
                   responses=ScanOut(many=True))
    def get(self, request, project_id):
        unknown = set(request.query_params) - {"import_batch", "snapshot", "format"}
        if unknown:
            raise ValidationError({"detail": f"Unknown query parameter(s): {', '.join(sorted(unknown))}."})
        scans = DataScan.objects.filter(project=self.project)
        for key in ("import_batch", "snapshot"):
            value = _id_filter(request, key)
            if value is not None:
                scans = scans.filter(**{f"{key}_id": value})
        return Response(ScanOut(scans[:100], many=True).data)


class FindingListView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(parameters=[OpenApiParameter(k, int) for k in FILTERS], responses=FindingOut(many=True))
    def get(self, request, project_id):
        unknown = set(request.query_params) - set(FILTERS) - {"format"}
        if unknown:
            raise ValidationError({"detail": f"Unknown query parameter(s): {', '.join(sorted(unknown))}."})
        findings = DataFinding.objects.filter(project=self.project).select_related("scan", "excluded_by")
        for key, field in (("scan", "scan_id"), ("import_batch", "scan__import_batch_id"),
                           ("snapshot", "scan__snapshot_id")):
            value = _id_filter(request, key)
            if value is not None:
                findings = findings.filter(**{field: value})
        return Response(FindingOut(findings.order_by("-id")[:200], many=True).data)


def _finding(view, finding_id) -> DataFinding:
    finding = DataFinding.objects.filter(project=view.project, pk=finding_id).select_related(
        "scan", "excluded_by").first()
    if finding is None:
        raise NotFound()
    return finding


class FindingDetailView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(responses=FindingOut)
    def get(self, request, project_id, finding_id):
        return Response(FindingOut(_finding(self, finding_id)).data)


class FindingExcludeView(ProjectScopedView):
    """One click: keep the finding's tasks out of every snapshot built from now on."""

    roles = {"post": ADMINS}

    @extend_schema(request=ExcludeIn, responses=ExcludeOut)
    def post(self, request, project_id, finding_id):
        _finding(self, finding_id)  # 404 before the body is looked at
        data = ExcludeIn(data=request.data)
        data.is_valid(raise_exception=True)
        finding, excluded, rebuilt = service.exclude_finding(finding_id=finding_id, project=self.project,
                                                             by=request.user, rebuild=data.validated_data["rebuild"])
        finding = _finding(self, finding.pk)
        return Response(ExcludeOut({"finding": finding, "newly_excluded": excluded,
                                    "rebuilt_snapshot": rebuilt.pk if rebuilt else None}).data)
