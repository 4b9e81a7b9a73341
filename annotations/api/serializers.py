"""Explicit input and output shapes of the API. Inputs are validated here (types, sizes); the
rules of the domain (who may, what a ranking must hold) are checked by the services."""
from __future__ import annotations

from rest_framework import serializers

from ..models import (
    AuditEntry,
    LABELLING_KINDS,
    CandidateReply,
    ImportBatch,
    InstructionVersion,
    Lease,
    Membership,
    ModelVersion,
    Project,
    Review,
    Role,
    Submission,
    Task,
    TaskKind,
)
from ..services.projects import SETTING_FIELDS


# --- projects -------------------------------------------------------------------------------------
class ProjectOut(serializers.ModelSerializer):
    current_instructions = serializers.SerializerMethodField()
    my_role = serializers.SerializerMethodField()
    draft_model = serializers.CharField(source="draft_model.name", default=None)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_at", "overlap", "comparison_k", "pending_cap",
                  "lease_seconds", "drafts_n", "draft_model", "draft_on_import", "gold_rate", "review_rate",
                  "review_new_until", "on_reject", "current_instructions", "my_role"]

    # Annotators do not learn how often gold is served or work is checked.
    QUALITY_FIELDS = ("gold_rate", "review_rate", "review_new_until", "on_reject")

    def to_representation(self, project):
        data = super().to_representation(project)
        if self.get_my_role(project) not in (Role.ADMIN, Role.REVIEWER, Role.ENGINEER):
            for field in self.QUALITY_FIELDS:
                data.pop(field, None)
        return data

    def get_current_instructions(self, project) -> int | None:
        v = project.current_instructions
        return v.number if v else None

    def get_my_role(self, project) -> str | None:
        return self.context.get("roles", {}).get(project.pk)


class ProjectSettingsIn(serializers.ModelSerializer):
    draft_model = serializers.SlugRelatedField(slug_field="name", queryset=ModelVersion.objects.all(), required=False,
                                               allow_null=True, help_text="ModelVersion name; null = default model")

    class Meta:
        model = Project
        fields = list(SETTING_FIELDS)
        extra_kwargs = {f: {"required": False} for f in SETTING_FIELDS}


class ProjectCreateIn(ProjectSettingsIn):
    class Meta(ProjectSettingsIn.Meta):
        extra_kwargs = {**ProjectSettingsIn.Meta.extra_kwargs, "name": {"required": True}}


# --- members --------------------------------------------------------------------------------------
class MemberOut(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id")
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "created_at"]


class MemberIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberRoleIn(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


# --- instructions ---------------------------------------------------------------------------------
class InstructionOut(serializers.ModelSerializer):
    published_by = serializers.CharField(source="created_by.username")

    class Meta:
        model = InstructionVersion
        fields = ["number", "title", "body", "body_sha256", "published_by", "published_at"]


class InstructionIn(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    body = serializers.CharField(max_length=200_000, trim_whitespace=False)


# --- imports --------------------------------------------------------------------------------------
class ImportIn(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=False)
    format = serializers.ChoiceField(choices=["jsonl", "csv"], required=False)
    kind = serializers.ChoiceField(choices=[(k.value, k.label) for k in LABELLING_KINDS], default=TaskKind.DEMONSTRATION)


class ImportURLIn(serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="http(s) URL of a JSONL or CSV file on a public host")
    format = serializers.ChoiceField(choices=["jsonl", "csv"], required=False)
    kind = serializers.ChoiceField(choices=[(k.value, k.label) for k in LABELLING_KINDS], default=TaskKind.DEMONSTRATION)


class ImportOut(serializers.ModelSerializer):
    progress_rows = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = ImportBatch
        fields = ["id", "file_name", "source_url", "format", "default_kind", "status", "rows_total", "rows_done", "progress_rows",
                  "tasks_created", "duplicates", "error_count", "errors", "created_at", "finished_at"]


# --- tasks ----------------------------------------------------------------------------------------
class ReplyOut(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.name", default=None)

    class Meta:
        model = CandidateReply
        fields = ["id", "content", "source", "model", "sampling_params", "parent", "for_ranking", "created_at"]


class BlindReplyOut(serializers.ModelSerializer):
    """What an annotator sees of a reply to rank: no source, no model name (no bias)."""

    class Meta:
        model = CandidateReply
        fields = ["id", "content"]


class DraftOut(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.name", default=None)

    class Meta:
        model = CandidateReply
        fields = ["id", "content", "source", "model"]


class TaskOut(serializers.ModelSerializer):
    class Meta:
        model = Task
        fields = ["id", "kind", "state", "conversation", "metadata", "lease_count", "submission_count",
                  "accepted_count", "completed_at", "import_batch", "created_at"]


def task_rows(tasks) -> list[dict]:
    """``TaskOut(tasks, many=True).data`` for a list page, without DRF's per-field machinery (half
    of a page's CPU went there: docs/benchmarks.md). tests/annotations/test_api_task_rows.py checks
    the two agree field for field; TaskOut stays the schema."""
    return [{
        "id": t.pk, "kind": t.kind, "state": t.state, "conversation": t.conversation, "metadata": t.metadata,
        "lease_count": t.lease_count, "submission_count": t.submission_count, "accepted_count": t.accepted_count,
        "completed_at": _iso(t.completed_at), "import_batch": t.import_batch_id, "created_at": _iso(t.created_at),
    } for t in tasks]


_DATETIME = serializers.DateTimeField()


def _iso(value):
    return _DATETIME.to_representation(value) if value else None


class TaskDetailOut(TaskOut):
    replies = ReplyOut(many=True)

    class Meta(TaskOut.Meta):
        fields = [*TaskOut.Meta.fields, "replies"]


class TaskCountsOut(serializers.Serializer):
    total = serializers.IntegerField()
    by_state = serializers.DictField(child=serializers.IntegerField())
    by_kind = serializers.DictField(child=serializers.IntegerField())
    complete = serializers.IntegerField(help_text="Tasks with `overlap` accepted submissions (gold excluded).")


class LeaseTaskOut(serializers.ModelSerializer):
    """A task as the annotator gets it: the conversation, plus the replies to rank (blind) or the
    model drafts to start from. Nothing about other annotators or gold status."""

    replies = serializers.SerializerMethodField()
    drafts = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = ["id", "kind", "conversation", "replies", "drafts"]

    def get_replies(self, task) -> list[dict]:
        return BlindReplyOut(_to_rank(task), many=True).data

    def get_drafts(self, task) -> list[dict]:
        return DraftOut(_drafts(task), many=True).data


# Which of a task's replies an annotator sees, and how: shared by LeaseTaskOut and lease_row so
# the blind list can never differ between the schema and the answer.
def _to_rank(task) -> list:
    return [r for r in task.replies.all() if r.for_ranking]


def _drafts(task) -> list:
    return [r for r in task.replies.all() if not r.for_ranking and r.source == CandidateReply.Source.MODEL]


class LeaseOut(serializers.ModelSerializer):
    task = LeaseTaskOut()
    instruction_version = serializers.IntegerField(source="instruction_version.number")

    class Meta:
        model = Lease
        fields = ["id", "status", "created_at", "expires_at", "instruction_version", "task"]


def lease_row(lease) -> dict:
    """``LeaseOut(lease).data`` without DRF's per-field machinery: every "next" answers with it
    and the serializer was the largest part of that request's CPU (docs/benchmarks.md).
    tests/annotations/test_api_task_rows.py checks the two agree; LeaseOut stays the schema."""
    task = lease.task
    return {
        "id": lease.pk, "status": lease.status, "created_at": _iso(lease.created_at),
        "expires_at": _iso(lease.expires_at), "instruction_version": lease.instruction_version.number,
        "task": {
            "id": task.pk, "kind": task.kind, "conversation": task.conversation,
            "replies": [{"id": r.pk, "content": r.content} for r in _to_rank(task)],
            "drafts": [{"id": r.pk, "content": r.content, "source": r.source,
                        "model": r.model_version.name if r.model_version_id else None} for r in _drafts(task)],
        },
    }


class NextTaskIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TaskKind.choices, required=False,
                                   help_text="Only a task of this kind (red-teaming is started apart); default: any.")


class SkipIn(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class ReleaseIn(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class _SubmitBase(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=100)
    rationale = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="",
                                      trim_whitespace=False)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=7 * 86400 * 1000, required=False, default=0)
    instruction_version = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)


class DemonstrationIn(_SubmitBase):
    text = serializers.CharField(max_length=50_000, trim_whitespace=False)
    draft_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=32, required=False,
                                      default=list)


class RankingIn(_SubmitBase):
    ranking = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=16),
        min_length=1, max_length=16,
    )
    ratings = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField(min_value=1, max_value=7)), required=False,
        default=dict,
    )
    flags = serializers.DictField(child=serializers.ListField(child=serializers.CharField(max_length=32),
                                                              max_length=8), required=False, default=dict)


class ReviewOut(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username")
    fixed_text = serializers.CharField(source="fixed_reply.content", default=None)

    class Meta:
        model = Review
        fields = ["id", "decision", "reason", "reviewer", "fixed_text", "created_at"]


class ReviewIn(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    reason = serializers.CharField(max_length=5_000, required=False, allow_blank=True, default="")
    text = serializers.CharField(max_length=50_000, required=False, allow_blank=True, trim_whitespace=False,
                                 help_text="The corrected reply, for decision=fix.")


class SubmissionOut(serializers.ModelSerializer):
    instruction_version = serializers.IntegerField(source="instruction_version.number")
    annotator = serializers.CharField(source="annotator.username")
    text = serializers.CharField(source="reply.content", default=None)
    review = serializers.SerializerMethodField()

    class Meta:
        model = Submission
        fields = ["id", "task", "lease", "kind", "annotator", "status", "instruction_version", "idempotency_key",
                  "created_at", "time_spent_ms", "rationale", "text", "draft_sources", "ranking", "ratings", "flags",
                  "review"]

    def get_review(self, submission) -> dict | None:
        if self.context.get("unreviewed"):
            return None
        reviews = list(submission.reviews.all())  # prefetched by the views
        latest = max(reviews, key=lambda r: r.pk) if reviews else None
        return ReviewOut(latest).data if latest else None


class StatsOut(serializers.Serializer):
    total = serializers.IntegerField()
    today = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    demonstrations = serializers.IntegerField()
    comparisons = serializers.IntegerField()
    median_time_ms = serializers.IntegerField(allow_null=True)
    open_leases = serializers.IntegerField()
    skipped = serializers.IntegerField()


# --- auth and audit -------------------------------------------------------------------------------
class TokenIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"}, trim_whitespace=False)


class TokenOut(serializers.Serializer):
    token = serializers.CharField()


class AuditEntryOut(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "actor", "actor_name", "action", "target", "details"]
