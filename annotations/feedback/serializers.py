"""Input and output shapes of the feedback API. Report bodies are checked by
``reports.clean_report`` (one rule set for the single and the batch form); the input serializers
here describe them for the OpenAPI schema and validate the triage actions."""
from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from ..conversations import ROLE_CHOICES
from .models import MisbehaviourCategory, MisbehaviourReport, RedTeamSession, RedTeamTurn, ReportTask, ReportToken

EXCERPT_CHARS = 300


def excerpt(text: str) -> str:
    text = text or ""
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


# --- ingestion ------------------------------------------------------------------------------------
class MessageIn(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES)
    content = serializers.CharField(trim_whitespace=False)


class ReportIn(serializers.Serializer):
    conversation = MessageIn(many=True, help_text="The conversation as the application saw it, including the bad "
                                                  "reply; a system message may come first.")
    model_version = serializers.CharField(max_length=200, help_text="The model version that gave the bad reply.")
    category = serializers.ChoiceField(choices=MisbehaviourCategory.choices)
    description = serializers.CharField(required=False, allow_blank=True, help_text="What went wrong.")
    bad_turn = serializers.IntegerField(required=False, min_value=1,
                                        help_text="0-based index of the bad assistant reply; default: the last one.")
    metadata = serializers.DictField(required=False, help_text="Small JSON object (request id, app version...).")


class ReportBatchIn(serializers.Serializer):
    reports = ReportIn(many=True)


class IngestResultOut(serializers.Serializer):
    index = serializers.IntegerField(required=False, help_text="Position in the batch (batch form only).")
    result = serializers.ChoiceField(choices=["created", "deduplicated", "invalid"])
    id = serializers.IntegerField(required=False)
    times_reported = serializers.IntegerField(required=False)
    report_status = serializers.CharField(required=False)
    errors = serializers.DictField(required=False)


class IngestBatchOut(serializers.Serializer):
    results = IngestResultOut(many=True)
    created = serializers.IntegerField()
    deduplicated = serializers.IntegerField()
    invalid = serializers.IntegerField()


# --- tokens ---------------------------------------------------------------------------------------
class ReportTokenIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class ReportTokenOut(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username")
    revoked_by = serializers.CharField(source="revoked_by.username", default=None)

    class Meta:
        model = ReportToken
        fields = ["id", "name", "prefix", "active", "created_by", "created_at", "last_used_at", "revoked_at",
                  "revoked_by"]


class IssuedReportTokenOut(ReportTokenOut):
    token = serializers.SerializerMethodField(help_text="The full token. Shown this once; it is stored hashed.")

    class Meta(ReportTokenOut.Meta):
        fields = [*ReportTokenOut.Meta.fields, "token"]

    def get_token(self, obj) -> str:
        return self.context["secret"]


# --- triage ---------------------------------------------------------------------------------------
class ReportTaskOut(serializers.ModelSerializer):
    state = serializers.CharField(source="task.state", default=None)

    class Meta:
        model = ReportTask
        fields = ["task", "turn", "state", "created_at"]


class ReportSummaryOut(serializers.ModelSerializer):
    prompt_excerpt = serializers.SerializerMethodField()
    bad_reply_excerpt = serializers.SerializerMethodField()
    token = serializers.CharField(source="token.name", default=None)
    triaged_by = serializers.CharField(source="triaged_by.username", default=None)
    tasks = serializers.SerializerMethodField()

    class Meta:
        model = MisbehaviourReport
        fields = ["id", "source", "status", "category", "model_version_name", "times_reported", "prompt_excerpt",
                  "bad_reply_excerpt", "bad_turn", "token", "red_team_session", "duplicate_of", "status_reason",
                  "triaged_by", "triaged_at", "created_at", "last_reported_at", "tasks"]

    def get_prompt_excerpt(self, report) -> str:
        turn = report.bad_turn
        previous = report.conversation[turn - 1] if 0 < turn <= len(report.conversation) else {}
        return excerpt(previous.get("content", ""))

    def get_bad_reply_excerpt(self, report) -> str:
        turn = report.bad_turn
        return excerpt(report.conversation[turn]["content"]) if turn < len(report.conversation) else ""

    def get_tasks(self, report) -> list[int]:
        return [link.task_id for link in report.task_links.all()]


class ReportOut(ReportSummaryOut):
    task_links = ReportTaskOut(many=True)
    model_version_known = serializers.SerializerMethodField()

    class Meta(ReportSummaryOut.Meta):
        fields = [*ReportSummaryOut.Meta.fields, "conversation", "description", "metadata", "model_version_known",
                  "task_links"]

    def get_model_version_known(self, report) -> bool:
        return report.model_version_id is not None


class CreateTasksIn(serializers.Serializer):
    turns = serializers.ListField(child=serializers.IntegerField(min_value=0), required=False, max_length=50,
                                  help_text="Indexes of bad assistant replies; default: the reported one.")


class CreateTasksOut(serializers.Serializer):
    report = serializers.IntegerField()
    status = serializers.CharField()
    created = serializers.IntegerField(help_text="Tasks made by this call (0 on a repeat).")
    tasks = ReportTaskOut(many=True)


class DismissIn(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class DuplicateIn(serializers.Serializer):
    of = serializers.IntegerField(min_value=1, help_text="Id of the report this one repeats.")


# --- red team -------------------------------------------------------------------------------------
class RedTeamBriefIn(serializers.Serializer):
    goal = serializers.CharField(max_length=4000, help_text="What the red-teamer tries to make the model do.")
    category = serializers.ChoiceField(choices=MisbehaviourCategory.choices)
    system_prompt = serializers.CharField(max_length=8000, required=False, allow_blank=True, default="",
                                          trim_whitespace=False,
                                          help_text="The deployment's system prompt under attack, if any.")


class RedTeamTaskOut(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    goal = serializers.CharField(source="metadata.goal", default="")
    category = serializers.CharField(source="metadata.category", default="")
    system_prompt = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_system_prompt(self, task) -> str:
        first = (task.conversation or [{}])[0]
        return first.get("content", "") if first.get("role") == "system" else ""


class RedTeamTurnOut(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.name", default=None)

    class Meta:
        model = RedTeamTurn
        fields = ["index", "role", "content", "status", "model", "sampling_params", "finish_reason",
                  "completion_tokens", "latency_ms", "attempts", "error", "created_at", "completed_at"]


class RedTeamSessionOut(serializers.Serializer):
    lease = serializers.IntegerField()
    task = RedTeamTaskOut()
    session = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    outcome = serializers.CharField(allow_blank=True)
    category = serializers.CharField(allow_blank=True)
    turns = RedTeamTurnOut(many=True)
    waiting_for_model = serializers.BooleanField()
    can_retry = serializers.BooleanField()
    limits = serializers.DictField(child=serializers.IntegerField())
    user_turns_left = serializers.IntegerField()
    chars_left = serializers.IntegerField()
    report = serializers.IntegerField(allow_null=True)
    tasks = serializers.ListField(child=serializers.IntegerField())


class RedTeamMessageIn(serializers.Serializer):
    content = serializers.CharField(trim_whitespace=False, max_length=100_000)
    index = serializers.IntegerField(min_value=0, help_text="The position this message takes (the number of turns "
                                                            "the client has seen); a repeat of the same message at "
                                                            "the same position is answered, not stored twice.")


class RedTeamOutcomeIn(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=100)
    outcome = serializers.ChoiceField(choices=RedTeamSession.Outcome.choices)
    category = serializers.ChoiceField(choices=MisbehaviourCategory.choices, required=False, allow_blank=True,
                                       default="")
    note = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="",
                                 trim_whitespace=False)
    bad_turn = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                        help_text="Index of the model turn that misbehaved; default: the last one.")
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=7 * 86400 * 1000, required=False, default=0)


def limits() -> dict[str, int]:
    return {"max_user_turns": settings.RED_TEAM_MAX_USER_TURNS,
            "max_message_chars": settings.RED_TEAM_MAX_MESSAGE_CHARS,
            "max_conversation_chars": settings.RED_TEAM_MAX_CONVERSATION_CHARS,
            "max_tokens": settings.RED_TEAM_MAX_TOKENS}
