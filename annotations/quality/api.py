"""Quality-control endpoints under /api/projects/<id>/: annotator analytics, agreement, gold
references, rules, pausing and resuming, notifications, the review queue. Same project-scoped,
deny-by-default base class as the rest of the API; thin views over ``annotations.quality``."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from ..api import serializers as s
from ..api.views import BOOLEAN_WORDS, ProjectScopedView, SubmissionPagination, _check_params
from ..models import Role
from ..permissions import ADMINS, STAFF
from ..selectors import review_queue
from . import agreement, analytics, gold, rules
from .models import GoldStandard, Notification, QualityRule

QUALITY_READERS = frozenset({Role.ADMIN, Role.REVIEWER})


# --- shapes ---------------------------------------------------------------------------------------
class ThroughputOut(serializers.Serializer):
    days = serializers.IntegerField()
    submissions = serializers.IntegerField(help_text="Submissions in the last `days` days.")
    per_day = serializers.FloatField()
    active_hours = serializers.FloatField(help_text="Sum of the time the labelling page measured.")
    per_active_hour = serializers.FloatField(allow_null=True)


class ReviewStatsOut(serializers.Serializer):
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Sampled for review, not decided yet.")
    acceptance_rate = serializers.FloatField(allow_null=True, help_text="accepted / (accepted + rejected)")


class GoldStatsOut(serializers.Serializer):
    items = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True, help_text="Mean gold score, 0-1.")
    ranking_tau = serializers.FloatField(allow_null=True)
    flags_exact = serializers.FloatField(allow_null=True)
    ratings_exact = serializers.FloatField(allow_null=True)
    text_similarity = serializers.FloatField(allow_null=True)


class PeerStatsOut(serializers.Serializer):
    mean_tau = serializers.FloatField(allow_null=True, help_text="Mean Kendall tau-b with the other annotators.")
    pairs = serializers.IntegerField()
    alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's alpha over the tasks they ranked.")


class DraftStatsOut(serializers.Serializer):
    demonstrations = serializers.IntegerField()
    from_draft = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True)
    median_edit_distance = serializers.FloatField(allow_null=True, help_text="Characters, closest draft used.")
    median_edit_ratio = serializers.FloatField(allow_null=True, help_text="Edit distance / reply length.")


class AnnotatorAnalyticsOut(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField()
    paused_at = serializers.DateTimeField(allow_null=True)
    paused_reason = serializers.CharField(allow_blank=True)
    submissions = serializers.IntegerField()
    demonstrations = serializers.IntegerField()
    comparisons = serializers.IntegerField()
    throughput = ThroughputOut()
    median_time_ms = serializers.IntegerField(allow_null=True)
    review = ReviewStatsOut()
    gold = GoldStatsOut()
    peers = PeerStatsOut()
    drafts = DraftStatsOut()


class GoldScoreOut(serializers.Serializer):
    submission = serializers.IntegerField(source="submission_id")
    task = serializers.IntegerField(source="gold.task_id")
    score = serializers.FloatField()
    ranking_tau = serializers.FloatField(allow_null=True)
    ratings_exact = serializers.FloatField(allow_null=True)
    ratings_partial = serializers.FloatField(allow_null=True)
    flags_exact = serializers.FloatField(allow_null=True)
    flags_partial = serializers.FloatField(allow_null=True)
    text_similarity = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()


class AnnotatorDetailOut(AnnotatorAnalyticsOut):
    gold_history = GoldScoreOut(many=True)


class RankAgreementOut(serializers.Serializer):
    alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's alpha, ordinal, on mid-ranks.")
    units = serializers.IntegerField(help_text="(task, reply) units with two or more annotators.")
    tasks = serializers.IntegerField()
    submissions = serializers.IntegerField()
    mean_tau = serializers.FloatField(allow_null=True, help_text="Mean pairwise Kendall tau-b.")
    pairs = serializers.IntegerField()
    undefined_pairs = serializers.IntegerField(help_text="Pairs where one ranking tied every reply.")


class RatingAgreementOut(serializers.Serializer):
    alpha = serializers.FloatField(allow_null=True)
    units = serializers.IntegerField()


class RatingsAgreementOut(serializers.Serializer):
    helpful = RatingAgreementOut()
    truthful = RatingAgreementOut()
    harmless = RatingAgreementOut()


class VersionAgreementOut(serializers.Serializer):
    instruction_version = serializers.IntegerField()
    rankings = RankAgreementOut()
    ratings = RatingsAgreementOut()


class AnnotatorAgreementOut(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    username = serializers.CharField()
    tasks = serializers.IntegerField()
    alpha = serializers.FloatField(allow_null=True)
    units = serializers.IntegerField()
    mean_tau_with_peers = serializers.FloatField(allow_null=True)
    pairs = serializers.IntegerField()
    undefined_pairs = serializers.IntegerField()


class AgreementOut(serializers.Serializer):
    instruction_version = serializers.IntegerField(allow_null=True)
    rankings = RankAgreementOut()
    ratings = RatingsAgreementOut()
    by_instruction_version = VersionAgreementOut(many=True)
    by_annotator = AnnotatorAgreementOut(many=True)


class GoldIn(serializers.Serializer):
    ranking = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField(min_value=1),
                                                                min_length=1, max_length=16),
                                    min_length=1, max_length=16, required=False)
    ratings = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()), required=False)
    flags = serializers.DictField(child=serializers.ListField(child=serializers.CharField(max_length=32),
                                                              max_length=8), required=False)
    text = serializers.CharField(max_length=50_000, required=False, trim_whitespace=False)
    note = serializers.CharField(max_length=5_000, required=False, allow_blank=True, default="")
    from_submission = serializers.IntegerField(min_value=1, required=False,
                                               help_text="Copy the reference from this submission of the task.")


class GoldCreateIn(GoldIn):
    task = serializers.IntegerField(min_value=1)


class GoldOut(serializers.ModelSerializer):
    task = serializers.IntegerField(source="task_id")
    kind = serializers.CharField(source="task.kind")
    created_by = serializers.CharField(source="created_by.username")
    scored = serializers.IntegerField(read_only=True, default=0)
    mean_score = serializers.FloatField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = GoldStandard
        fields = ["task", "kind", "ranking", "ratings", "flags", "text", "note", "source_submission", "created_by",
                  "created_at", "updated_at", "scored", "mean_score"]


class RuleIn(serializers.Serializer):
    metric = serializers.ChoiceField(choices=QualityRule.Metric.choices)
    threshold = serializers.FloatField(min_value=-1, max_value=1)
    min_samples = serializers.IntegerField(min_value=1, max_value=10_000, required=False, default=5)
    window = serializers.IntegerField(min_value=1, max_value=10_000, required=False, default=20)
    action = serializers.ChoiceField(choices=QualityRule.Action.choices, required=False,
                                     default=QualityRule.Action.PAUSE)
    active = serializers.BooleanField(required=False, default=True)


class RuleOut(serializers.ModelSerializer):
    class Meta:
        model = QualityRule
        fields = ["id", "metric", "threshold", "min_samples", "window", "action", "active", "created_at"]


class NotificationOut(serializers.ModelSerializer):
    subject = serializers.CharField(source="subject.username", default=None)
    subject_id = serializers.IntegerField(allow_null=True)
    read_by = serializers.CharField(source="read_by.username", default=None)

    class Meta:
        model = Notification
        fields = ["id", "kind", "subject", "subject_id", "rule", "message", "data", "created_at", "read_at", "read_by"]


class PauseIn(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class MembershipStateOut(serializers.Serializer):
    user_id = serializers.IntegerField()
    paused_at = serializers.DateTimeField(allow_null=True)
    paused_reason = serializers.CharField(allow_blank=True)


# --- views ----------------------------------------------------------------------------------------
def _int_param(request, name: str, *, lo: int, hi: int, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ValidationError({name: [f"Must be an integer from {lo} to {hi}."]})
    return int(raw)


def _bool_param(request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if raw.lower() not in BOOLEAN_WORDS:
        raise ValidationError({name: ["Must be true or false."]})
    return BOOLEAN_WORDS[raw.lower()]


class AnnotatorAnalyticsListView(ProjectScopedView):
    roles = {"get": QUALITY_READERS}

    @extend_schema(parameters=[OpenApiParameter("days", int, description="Throughput window, 1-365 (default 7)"),
                               OpenApiParameter("peers", bool, description="Compute agreement with peers "
                                                "(a pass over the project's rankings; default true)")],
                   responses=AnnotatorAnalyticsOut(many=True))
    def get(self, request, project_id):
        _check_params(request, {"days", "peers"})
        days = _int_param(request, "days", lo=1, hi=365, default=7)
        peers = None
        if _bool_param(request, "peers", True):
            report = agreement.cached_agreement_report(project=self.project)
            peers = {row["annotator_id"]: row for row in report["by_annotator"]}
        rows = analytics.annotator_analytics(project=self.project, days=days, peers=peers)
        return Response(AnnotatorAnalyticsOut(rows, many=True).data)


class AnnotatorAnalyticsDetailView(ProjectScopedView):
    roles = {"get": QUALITY_READERS}

    @extend_schema(parameters=[OpenApiParameter("days", int)], responses=AnnotatorDetailOut)
    def get(self, request, project_id, user_id):
        _check_params(request, {"days"})
        days = _int_param(request, "days", lo=1, hi=365, default=7)
        report = agreement.cached_agreement_report(project=self.project)
        peers = {row["annotator_id"]: row for row in report["by_annotator"]}
        rows = analytics.annotator_analytics(project=self.project, days=days, annotator_id=user_id, peers=peers)
        if not rows:
            raise NotFound()
        row = {**rows[0], "gold_history": analytics.gold_history(project=self.project, annotator_id=user_id)}
        return Response(AnnotatorDetailOut(row).data)


class PauseView(ProjectScopedView):
    roles = {"post": ADMINS}

    @extend_schema(request=PauseIn, responses=MembershipStateOut)
    def post(self, request, project_id, user_id):
        data = PauseIn(data=request.data)
        data.is_valid(raise_exception=True)
        m = rules.pause_annotator(project=self.project, user_id=user_id, reason=data.validated_data["reason"],
                                  by=request.user)
        return Response(MembershipStateOut({"user_id": m.user_id, "paused_at": m.paused_at,
                                            "paused_reason": m.paused_reason}).data)


class ResumeView(ProjectScopedView):
    roles = {"post": ADMINS}

    @extend_schema(request=None, responses=MembershipStateOut)
    def post(self, request, project_id, user_id):
        m = rules.resume_annotator(project=self.project, user_id=user_id, by=request.user)
        return Response(MembershipStateOut({"user_id": m.user_id, "paused_at": m.paused_at,
                                            "paused_reason": m.paused_reason}).data)


class AgreementView(ProjectScopedView):
    roles = {"get": STAFF}

    @extend_schema(parameters=[OpenApiParameter("instruction_version", int)], responses=AgreementOut)
    def get(self, request, project_id):
        _check_params(request, {"instruction_version"})
        version = _int_param(request, "instruction_version", lo=1, hi=1_000_000, default=None)
        return Response(AgreementOut(agreement.cached_agreement_report(project=self.project,
                                                                instruction_version=version)).data)


def _gold_fields(validated: dict) -> dict:
    return {"ranking": validated.get("ranking"), "ratings": validated.get("ratings"),
            "flags": validated.get("flags"), "text": validated.get("text"), "note": validated.get("note", ""),
            "from_submission_id": validated.get("from_submission")}


class GoldListView(ProjectScopedView):
    roles = {"get": QUALITY_READERS, "post": ADMINS}

    @extend_schema(responses=GoldOut(many=True))
    def get(self, request, project_id):
        return Response(GoldOut(gold.gold_tasks(project=self.project)[:1000], many=True).data)

    @extend_schema(request=GoldCreateIn, responses={201: GoldOut})
    def post(self, request, project_id):
        data = GoldCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        ref = gold.set_gold(project=self.project, task_id=data.validated_data["task"], created_by=request.user,
                            **_gold_fields(data.validated_data))
        return Response(GoldOut(gold.gold_tasks(project=self.project, task_id=ref.task_id).get()).data, status=201)


class GoldDetailView(ProjectScopedView):
    roles = {"get": QUALITY_READERS, "put": ADMINS, "delete": ADMINS}

    @extend_schema(responses=GoldOut)
    def get(self, request, project_id, task_id):
        row = gold.gold_tasks(project=self.project, task_id=task_id).first()
        if row is None:
            raise NotFound()
        return Response(GoldOut(row).data)

    @extend_schema(request=GoldIn, responses=GoldOut)
    def put(self, request, project_id, task_id):
        if not self.project.tasks.filter(pk=task_id).exists():
            raise NotFound()
        data = GoldIn(data=request.data)
        data.is_valid(raise_exception=True)
        gold.set_gold(project=self.project, task_id=task_id, created_by=request.user,
                      **_gold_fields(data.validated_data))
        return Response(GoldOut(gold.gold_tasks(project=self.project, task_id=task_id).get()).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id, task_id):
        gold.unset_gold(project=self.project, task_id=task_id, actor=request.user)
        return Response(status=204)


class RuleListView(ProjectScopedView):
    roles = {"get": QUALITY_READERS, "post": ADMINS}

    @extend_schema(responses=RuleOut(many=True))
    def get(self, request, project_id):
        return Response(RuleOut(QualityRule.objects.filter(project=self.project), many=True).data)

    @extend_schema(request=RuleIn, responses={201: RuleOut})
    def post(self, request, project_id):
        data = RuleIn(data=request.data)
        data.is_valid(raise_exception=True)
        rule = rules.create_rule(project=self.project, created_by=request.user, **data.validated_data)
        return Response(RuleOut(rule).data, status=201)


class RuleDetailView(ProjectScopedView):
    roles = {"patch": ADMINS, "delete": ADMINS}

    @extend_schema(request=RuleIn(partial=True), responses=RuleOut)
    def patch(self, request, project_id, rule_id):
        if not QualityRule.objects.filter(project=self.project, pk=rule_id).exists():
            raise NotFound()
        data = RuleIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return Response(RuleOut(rules.update_rule(project=self.project, rule_id=rule_id, actor=request.user,
                                                  **data.validated_data)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id, rule_id):
        rules.delete_rule(project=self.project, rule_id=rule_id, actor=request.user)
        return Response(status=204)


class NotificationListView(ProjectScopedView):
    roles = {"get": ADMINS}

    @extend_schema(parameters=[OpenApiParameter("unread", bool)], responses=NotificationOut(many=True))
    def get(self, request, project_id):
        _check_params(request, {"unread"})
        notes = Notification.objects.filter(project=self.project).select_related("subject", "read_by")
        if _bool_param(request, "unread", False):
            notes = notes.filter(read_at__isnull=True)
        return Response(NotificationOut(notes[:200], many=True).data)


class NotificationReadView(ProjectScopedView):
    roles = {"post": ADMINS}

    @extend_schema(request=None, responses=NotificationOut)
    def post(self, request, project_id, notification_id):
        return Response(NotificationOut(rules.mark_read(project=self.project, notification_id=notification_id,
                                                        by=request.user)).data)


class ReviewQueueView(ProjectScopedView):
    """The submissions sampled for review and waiting, oldest first (what the review page shows)."""

    roles = {"get": QUALITY_READERS}

    @extend_schema(responses=s.SubmissionOut(many=True))
    def get(self, request, project_id):
        _check_params(request, set())
        queue = review_queue(project=self.project, reviewer=request.user).prefetch_related(
            "reviews__reviewer", "reviews__fixed_reply")
        paginator = SubmissionPagination()
        page = paginator.paginate_queryset(queue, request, view=self)
        return paginator.get_paginated_response(s.SubmissionOut(page, many=True).data)

