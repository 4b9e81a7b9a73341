"""Evaluation endpoints under /api/projects/<id>/: eval sets and runs (admins and ML engineers
start them, staff read them), blind battles and votes (labellers), the leaderboard (staff).

Nothing a voter receives before voting names a model: a battle is its conversation and the two
reply texts as A and B. The answer to a vote reveals the two models."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from annotations.api.views import ProjectScopedView
from annotations.models import DatasetSnapshot, ModelVersion
from annotations.permissions import LABELLERS, STAFF

from ..api import ADMIN_OR_ENGINEER, ModelJobOut
from . import eval_sets, runs, selectors, voting
from .models import Choice, EvalRun, EvalSet

MAX_BOOTSTRAP = 5000


class EvalSetIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    snapshot = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                        help_text="Training snapshot to hold the prompts out from")
    max_prompts = serializers.IntegerField(min_value=1, max_value=eval_sets.MAX_PROMPTS, required=False)
    include_held_out = serializers.BooleanField(required=False,
                                                help_text="Also take project prompts that are not in the training "
                                                          "data (nor near duplicates of it)")
    near_dup_threshold = serializers.FloatField(min_value=0.5, max_value=1, required=False)
    seed = serializers.CharField(max_length=100, required=False, allow_blank=True)


class EvalSetOut(serializers.ModelSerializer):
    # Plain text, not an enum: its choices would collide with other "status" enums in the schema.
    status = serializers.CharField(read_only=True, help_text="pending | running | ready | failed")
    prompt_count = serializers.IntegerField(source="prompts.count", read_only=True)

    class Meta:
        model = EvalSet
        fields = ["id", "name", "snapshot", "status", "options", "counts", "prompt_count", "error", "created_at",
                  "finished_at"]


class EvalPromptOut(serializers.Serializer):
    id = serializers.IntegerField()
    conversation = serializers.JSONField()
    source = serializers.CharField()
    task = serializers.IntegerField(source="task_id", allow_null=True)


class EvalSetDetailOut(EvalSetOut):
    prompts = serializers.SerializerMethodField()

    class Meta(EvalSetOut.Meta):
        fields = EvalSetOut.Meta.fields + ["prompts"]

    @extend_schema(exclude=True)
    def get_prompts(self, obj) -> list:
        return EvalPromptOut(obj.prompts.all()[:1000], many=True).data


class EvalRunIn(serializers.Serializer):
    eval_set = serializers.IntegerField(min_value=1)
    models = serializers.ListField(child=serializers.CharField(max_length=200), min_length=2,
                                   max_length=runs.MAX_MODELS, help_text="ModelVersion names")
    judge = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True,
                                  help_text="ModelVersion name of the judge; none: people only")
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    top_p = serializers.FloatField(min_value=0.01, max_value=1, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=4096, required=False)
    seed = serializers.IntegerField(required=False)


class EvalRunOut(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True,
                                   help_text="pending | generating | judging | done | failed | cancelled")
    models = serializers.SerializerMethodField()
    judge = serializers.CharField(source="judge_model.name", default=None)
    battles = serializers.IntegerField(source="battles.count", read_only=True)
    jobs = serializers.SerializerMethodField()

    class Meta:
        model = EvalRun
        fields = ["id", "eval_set", "models", "judge", "sampling", "status", "battles", "jobs", "error",
                  "created_at", "finished_at"]

    def get_models(self, obj) -> list[str]:
        return [m.name for m in obj.model_versions.all()]

    @extend_schema(exclude=True)
    def get_jobs(self, obj) -> list:
        return ModelJobOut(runs.run_jobs(obj).order_by("id"), many=True).data


class BattleOut(serializers.Serializer):
    """What a voter sees: no model names, no reply ids."""

    id = serializers.IntegerField(source="battle_id")
    run = serializers.IntegerField(source="battle.run_id")
    conversation = serializers.JSONField(source="battle.prompt.conversation")
    a = serializers.CharField(source="battle.left.content")
    b = serializers.CharField(source="battle.right.content")
    shown_at = serializers.DateTimeField()


class NextBattleIn(serializers.Serializer):
    run = serializers.IntegerField(min_value=1, required=False)


class VoteIn(serializers.Serializer):
    choice = serializers.ChoiceField(choices=Choice.choices)
    time_spent_ms = serializers.IntegerField(min_value=0, required=False)


class VoteOut(serializers.Serializer):
    battle = serializers.IntegerField(source="battle_id")
    choice = serializers.CharField()
    a_model = serializers.CharField(source="battle.left.model_version.name")
    b_model = serializers.CharField(source="battle.right.model_version.name")
    voted_at = serializers.DateTimeField()


def _model_named(name: str, field: str) -> ModelVersion:
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        raise ValidationError({field: [f"No model version named {name!r}."]})
    return version


class EvalSetListView(ProjectScopedView):
    roles = {"get": STAFF, "post": ADMIN_OR_ENGINEER}

    @extend_schema(responses=EvalSetOut(many=True))
    def get(self, request, project_id):
        return Response(EvalSetOut(EvalSet.objects.filter(project=self.project)[:100], many=True).data)

    @extend_schema(request=EvalSetIn, responses={202: EvalSetOut})
    def post(self, request, project_id):
        data = EvalSetIn(data=request.data)
        data.is_valid(raise_exception=True)
        params = dict(data.validated_data)
        snapshot = None
        if params.get("snapshot"):
            snapshot = DatasetSnapshot.objects.filter(project=self.project, pk=params["snapshot"]).first()
            if snapshot is None:
                raise ValidationError({"snapshot": ["No such snapshot in this project."]})
        params["snapshot"] = snapshot
        eval_set = eval_sets.create_eval_set(project=self.project, created_by=request.user, **params)
        return Response(EvalSetOut(eval_set).data, status=202)


class EvalSetDetailView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(responses=EvalSetDetailOut)
    def get(self, request, project_id, eval_set_id):
        eval_set = EvalSet.objects.filter(project=self.project, pk=eval_set_id).first()
        if eval_set is None:
            raise NotFound()
        return Response(EvalSetDetailOut(eval_set).data)


class EvalRunListView(ProjectScopedView):
    roles = {"get": STAFF, "post": ADMIN_OR_ENGINEER}

    @extend_schema(responses=EvalRunOut(many=True))
    def get(self, request, project_id):
        return Response(EvalRunOut(selectors.runs_for(project=self.project)[:100], many=True).data)

    @extend_schema(request=EvalRunIn, responses={202: EvalRunOut})
    def post(self, request, project_id):
        data = EvalRunIn(data=request.data)
        data.is_valid(raise_exception=True)
        params = dict(data.validated_data)
        eval_set = EvalSet.objects.filter(project=self.project, pk=params.pop("eval_set")).first()
        if eval_set is None:
            raise ValidationError({"eval_set": ["No such eval set in this project."]})
        versions = [_model_named(name, "models") for name in params.pop("models")]
        judge = params.pop("judge", None)
        run = runs.create_eval_run(project=self.project, eval_set=eval_set, model_versions=versions,
                                   judge_model=_model_named(judge, "judge") if judge else None,
                                   created_by=request.user, **params)
        return Response(EvalRunOut(run).data, status=202)


class EvalRunDetailView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(responses=EvalRunOut)
    def get(self, request, project_id, eval_run_id):
        run = selectors.runs_for(project=self.project).filter(pk=eval_run_id).first()
        if run is None:
            raise NotFound()
        return Response(EvalRunOut(run).data)


class EvalRunCancelView(ProjectScopedView):
    roles = {"post": ADMIN_OR_ENGINEER}

    @extend_schema(request=None, responses=EvalRunOut)
    def post(self, request, project_id, eval_run_id):
        run = runs.cancel_eval_run(run_id=eval_run_id, project=self.project)
        return Response(EvalRunOut(run).data)


class NextBattleView(ProjectScopedView):
    roles = {"post": LABELLERS}

    @extend_schema(request=NextBattleIn, responses={200: BattleOut})
    def post(self, request, project_id):
        data = NextBattleIn(data=request.data)
        data.is_valid(raise_exception=True)
        shown = voting.next_battle(project=self.project, voter=request.user, run_id=data.validated_data.get("run"))
        return Response(BattleOut(shown).data)


class BattleVoteView(ProjectScopedView):
    roles = {"post": LABELLERS}

    @extend_schema(request=VoteIn, responses={201: VoteOut, 200: VoteOut})
    def post(self, request, project_id, battle_id):
        if not voting.votable_battles(project=self.project).filter(pk=battle_id).exists():
            raise NotFound()  # an unknown id is 404 before any body is looked at
        data = VoteIn(data=request.data)
        data.is_valid(raise_exception=True)
        vote, replayed = voting.cast_vote(project=self.project, voter=request.user, battle_id=battle_id,
                                          **data.validated_data)
        return Response(VoteOut(vote).data, status=200 if replayed else 201)


LEADERBOARD_PARAMS = ("run", "bootstrap", "seed")


class LeaderboardView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(
        parameters=[OpenApiParameter("run", int, many=True, description="Eval run ids (default: every run)"),
                    OpenApiParameter("bootstrap", int, description=f"Resamples, 0-{MAX_BOOTSTRAP} (default 1000)"),
                    OpenApiParameter("seed", int, description="Bootstrap seed (default 0)")],
        responses={200: OpenApiTypes.OBJECT})
    def get(self, request, project_id):
        return Response(selectors.leaderboard(project=self.project, **leaderboard_params(request.query_params)))


def leaderboard_params(query) -> dict:
    """Allow-listed, validated query parameters (also used by the leaderboard page)."""
    unknown = sorted(set(query) - set(LEADERBOARD_PARAMS))
    if unknown:
        raise ValidationError({"detail": f"Unknown query parameter(s): {', '.join(unknown)}."})
    try:
        run_ids = [int(v) for v in query.getlist("run") if v != ""]
        bootstrap = int(query.get("bootstrap", 1000))
        seed = int(query.get("seed", 0))
    except ValueError:
        raise ValidationError({"detail": "run, bootstrap and seed must be integers."}) from None
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ValidationError({"bootstrap": [f"Must be 0-{MAX_BOOTSTRAP}."]})
    return {"run_ids": run_ids or None, "bootstrap": bootstrap, "seed": seed}
