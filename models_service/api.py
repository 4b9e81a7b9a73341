"""Model endpoints under /api/projects/<id>/: jobs (drafting, judging), critiques, AI rankings,
AI-human agreement. Same project-scoped, deny-by-default base class as the labelling API."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from annotations.api.views import ProjectScopedView
from annotations.models import ModelVersion, TaskKind
from annotations.permissions import STAFF

from . import drafting, jobs, judge, selectors
from .models import AIRanking, Critique, ModelJob

ADMIN_OR_ENGINEER = frozenset({"admin", "engineer"})


class ModelJobIn(serializers.Serializer):
    # Evaluation jobs belong to an eval run and are started through /eval-runs/, not here.
    kind = serializers.ChoiceField(choices=[(ModelJob.Kind.DRAFTING, "Drafting"), (ModelJob.Kind.JUDGING, "Judging")])
    model = serializers.CharField(max_length=200, required=False, help_text="ModelVersion name; default: configured")
    n = serializers.IntegerField(min_value=1, max_value=16, required=False)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    top_p = serializers.FloatField(min_value=0.01, max_value=1, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=4096, required=False)
    seed = serializers.IntegerField(required=False)
    task_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=10_000, required=False)
    import_batch = serializers.IntegerField(min_value=1, required=False)


class ModelJobOut(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.name")

    class Meta:
        model = ModelJob
        fields = ["id", "kind", "model", "status", "params", "total", "done", "failed", "skipped",
                  "completion_tokens", "error", "created_at", "started_at", "finished_at"]


class CritiqueOut(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.name")
    instruction_version = serializers.IntegerField(source="instruction_version.number")

    class Meta:
        model = Critique
        fields = ["id", "submission", "model", "instruction_version", "status", "verdict", "scores", "issues",
                  "attempts", "error", "created_at", "finished_at"]


class AIRankingOut(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.name")

    class Meta:
        model = AIRanking
        fields = ["id", "task", "model", "status", "ranking", "pairs", "created_at"]


class BuildComparisonsIn(serializers.Serializer):
    k = serializers.IntegerField(min_value=2, max_value=9, required=False)
    task_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=10_000, required=False)


class ModelJobListView(ProjectScopedView):
    roles = {"get": STAFF, "post": ADMIN_OR_ENGINEER}

    @extend_schema(responses=ModelJobOut(many=True))
    def get(self, request, project_id):
        jobs = ModelJob.objects.filter(project=self.project).select_related("model_version")[:100]
        return Response(ModelJobOut(jobs, many=True).data)

    @extend_schema(request=ModelJobIn, responses={202: ModelJobOut})
    def post(self, request, project_id):
        data = ModelJobIn(data=request.data)
        data.is_valid(raise_exception=True)
        params = dict(data.validated_data)
        kind = params.pop("kind")
        model_version = None
        if "model" in params:
            model_version = ModelVersion.objects.filter(name=params.pop("model")).first()
            if model_version is None:
                raise serializers.ValidationError({"model": ["No model version with this name."]})
        create = drafting.create_drafting_job if kind == ModelJob.Kind.DRAFTING else judge.create_judging_job
        job = create(project=self.project, created_by=request.user, model_version=model_version, **params)
        return Response(ModelJobOut(job).data, status=202)


class ModelJobDetailView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(responses=ModelJobOut)
    def get(self, request, project_id, job_id):
        job = ModelJob.objects.filter(project=self.project, pk=job_id).select_related("model_version").first()
        if job is None:
            raise NotFound()
        return Response(ModelJobOut(job).data)


class ModelJobCancelView(ProjectScopedView):
    roles = {"post": ADMIN_OR_ENGINEER}

    @extend_schema(request=None, responses=ModelJobOut)
    def post(self, request, project_id, job_id):
        return Response(ModelJobOut(jobs.cancel_job(job_id=job_id, project=self.project)).data)


class SubmissionCritiqueView(ProjectScopedView):
    roles = {"get": frozenset({"admin", "reviewer", "engineer"})}

    @extend_schema(responses=CritiqueOut(many=True))
    def get(self, request, project_id, submission_id):
        submission = self.project.submissions.filter(pk=submission_id).first()
        if submission is None:
            raise NotFound()
        return Response(CritiqueOut(selectors.critiques_for(submission=submission), many=True).data)


class TaskAIRankingView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(responses=AIRankingOut(many=True))
    def get(self, request, project_id, task_id):
        task = self.project.tasks.filter(pk=task_id, kind=TaskKind.COMPARISON).first()
        if task is None:
            raise NotFound()
        return Response(AIRankingOut(task.ai_rankings.select_related("model_version"), many=True).data)


class AgreementView(ProjectScopedView):
    """AI-human agreement per model version, with the agreement between people beside it
    (``annotations.quality.agreement``; the same as ``GET …/quality/agreement/``)."""

    roles = {"get": STAFF}

    @extend_schema(responses={200: None})
    def get(self, request, project_id):
        from annotations.quality.agreement import cached_agreement_report

        return Response({"ai_human": selectors.ai_human_agreement(project=self.project),
                         "human": cached_agreement_report(project=self.project)})


class BuildComparisonsView(ProjectScopedView):
    roles = {"post": frozenset({"admin"})}

    @extend_schema(request=BuildComparisonsIn, responses={200: None})
    def post(self, request, project_id):
        data = BuildComparisonsIn(data=request.data)
        data.is_valid(raise_exception=True)
        created = drafting.build_comparisons(project=self.project, **data.validated_data)
        return Response({"created": created})
