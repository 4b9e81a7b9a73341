"""Finetune endpoints under /api/projects/<id>/finetunes/: admins and ML engineers only."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from annotations.api.views import ProjectScopedView
from annotations.models import DatasetSnapshot, ModelVersion

from ..models import FinetuneJob
from . import service

TRAINERS = frozenset({"admin", "engineer"})


class FinetuneIn(serializers.Serializer):
    snapshot = serializers.IntegerField(min_value=1)
    method = serializers.ChoiceField(choices=FinetuneJob.Method.choices)
    base_model = serializers.CharField(max_length=200, help_text="ModelVersion name")
    params = serializers.DictField(required=False, help_text=f"Any of {', '.join(service.TUNABLE)}")


class FinetuneOut(serializers.ModelSerializer):
    base_model = serializers.CharField(source="base_model.name")
    result_model = serializers.CharField(source="result_model.name", default=None)
    # Plain text, not an enum: its choices would collide with other "status" enums in the schema.
    status = serializers.CharField(read_only=True, help_text="pending | running | done | failed | cancelled")

    class Meta:
        model = FinetuneJob
        fields = ["id", "snapshot", "method", "base_model", "params", "status", "progress", "step", "total_steps",
                  "metrics", "summary", "error", "log", "output_path", "result_model", "attempts", "created_at",
                  "started_at", "finished_at"]


def _job(view, finetune_id) -> FinetuneJob:
    job = FinetuneJob.objects.filter(project=view.project, pk=finetune_id).select_related(
        "base_model", "result_model").first()
    if job is None:
        raise NotFound()
    return job


class FinetuneListView(ProjectScopedView):
    roles = {"get": TRAINERS, "post": TRAINERS}

    @extend_schema(responses=FinetuneOut(many=True))
    def get(self, request, project_id):
        jobs = FinetuneJob.objects.filter(project=self.project).select_related("base_model", "result_model")[:100]
        return Response(FinetuneOut(jobs, many=True).data)

    @extend_schema(request=FinetuneIn, responses={202: FinetuneOut})
    def post(self, request, project_id):
        data = FinetuneIn(data=request.data)
        data.is_valid(raise_exception=True)
        snapshot = DatasetSnapshot.objects.filter(project=self.project, pk=data.validated_data["snapshot"]).first()
        if snapshot is None:
            raise serializers.ValidationError({"snapshot": ["No such snapshot in this project."]})
        base = ModelVersion.objects.filter(name=data.validated_data["base_model"]).first()
        if base is None:
            raise serializers.ValidationError({"base_model": ["No model version with this name."]})
        job = service.create_finetune_job(project=self.project, snapshot=snapshot, base_model=base,
                                          method=data.validated_data["method"], created_by=request.user,
                                          params=data.validated_data.get("params"))
        return Response(FinetuneOut(job).data, status=202)


class FinetuneDetailView(ProjectScopedView):
    roles = {"get": TRAINERS}

    @extend_schema(responses=FinetuneOut)
    def get(self, request, project_id, finetune_id):
        return Response(FinetuneOut(_job(self, finetune_id)).data)


class FinetuneCancelView(ProjectScopedView):
    roles = {"post": TRAINERS}

    @extend_schema(request=None, responses=FinetuneOut)
    def post(self, request, project_id, finetune_id):
        service.cancel_finetune_job(job_id=_job(self, finetune_id).pk, project=self.project, actor=request.user)
        return Response(FinetuneOut(_job(self, finetune_id)).data)


class FinetuneRetryView(ProjectScopedView):
    roles = {"post": TRAINERS}

    @extend_schema(request=None, responses={202: FinetuneOut})
    def post(self, request, project_id, finetune_id):
        service.retry_finetune_job(job_id=_job(self, finetune_id).pk, project=self.project, actor=request.user)
        return Response(FinetuneOut(_job(self, finetune_id)).data, status=202)
