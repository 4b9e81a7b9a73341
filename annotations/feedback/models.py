"""Data of deployment feedback and red-teaming. Registered through ``annotations.models`` (same
app label); foreign keys name the other models by string so this module imports nothing from it."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


TURN_ROLES = [("user", "user"), ("assistant", "assistant")]


class MisbehaviourCategory(models.TextChoices):
    """What went wrong, shared by deployment reports and red-team outcomes."""

    HARMFUL_CONTENT = "harmful_content", "Harmful or dangerous content"
    JAILBREAK = "jailbreak", "Jailbreak (roleplay, persuasion)"
    PROMPT_INJECTION = "prompt_injection", "Followed injected instructions"
    ENCODED_REQUEST = "encoded_request", "Complied with an encoded or obfuscated request"
    PRIVACY = "privacy", "Leaked personal or confidential data"
    HALLUCINATION = "hallucination", "Made things up"
    BIAS = "bias", "Biased, hateful or demeaning"
    OVER_REFUSAL = "over_refusal", "Refused a harmless request"
    OTHER = "other", "Other"


class ReportToken(models.Model):
    """A credential a deployed application uses to report misbehaving conversations to one project.

    Only a SHA-256 of the token is stored (the token is 256 random bits, so a fast hash is enough:
    there is nothing to brute-force, unlike a password); the full token is shown once, when it is
    created. It authenticates the report endpoint and nothing else."""

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="report_tokens")
    name = models.CharField(max_length=100, help_text="Which deployment uses it, e.g. 'support-bot prod'.")
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognise it in lists.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-id"]

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def __str__(self) -> str:
        return f"report token {self.prefix}… ({self.name})"


class MisbehaviourReport(models.Model):
    """A conversation in which a model misbehaved: reported by a deployed application, or found by
    a red-teamer. Triage turns it into demonstration tasks, dismisses it or marks it a duplicate."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        TASKS_CREATED = "tasks_created", "Tasks created"
        DISMISSED = "dismissed", "Dismissed"
        DUPLICATE = "duplicate", "Duplicate"

    class Source(models.TextChoices):
        DEPLOYMENT = "deployment", "Deployment"
        RED_TEAM = "red_team", "Red team"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="reports")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.DEPLOYMENT)
    token = models.ForeignKey(ReportToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="reports")
    red_team_session = models.OneToOneField("annotations.RedTeamSession", null=True, blank=True,
                                            on_delete=models.CASCADE, related_name="report")
    conversation = models.JSONField(help_text="[{role, content}] as the application saw it.")
    bad_turn = models.PositiveIntegerField(help_text="0-based index in conversation of the reply that went wrong.")
    model_version_name = models.CharField(max_length=200, help_text="The model version the application named.")
    model_version = models.ForeignKey("annotations.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="reports", help_text="Set when the name is a known model.")
    category = models.CharField(max_length=32, choices=MisbehaviourCategory.choices)
    description = models.TextField(blank=True, help_text="What went wrong, in the reporter's words.")
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    times_reported = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    status_reason = models.TextField(blank=True, help_text="Why it was dismissed.")
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="duplicates")
    triaged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    triaged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_reported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # The same conversation, bad reply and model reported again is counted, not stored twice.
            models.UniqueConstraint(fields=["project", "content_hash"], name="report_unique_content"),
            models.CheckConstraint(condition=~Q(status="dismissed") | ~Q(status_reason=""),
                                   name="report_dismissed_has_reason"),
            models.CheckConstraint(condition=~Q(status="duplicate") | Q(duplicate_of__isnull=False),
                                   name="report_duplicate_names_original"),
        ]
        indexes = [
            models.Index(fields=["project", "status", "id"], name="report_queue_idx"),
            models.Index(fields=["project", "category"], name="report_category_idx"),
            models.Index(fields=["project", "model_version_name"], name="report_model_idx"),
        ]

    def __str__(self) -> str:
        return f"report {self.pk} ({self.category}, {self.status})"


class ReportTask(models.Model):
    """A demonstration task made from a report: the conversation up to the bad reply at ``turn``,
    for an annotator to write the reply the model should have given. One per (report, turn), so
    creating tasks twice makes nothing twice."""

    report = models.ForeignKey(MisbehaviourReport, on_delete=models.CASCADE, related_name="task_links")
    task = models.ForeignKey("annotations.Task", on_delete=models.CASCADE, related_name="report_links")
    turn = models.PositiveIntegerField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["report", "turn"], name="report_task_once_per_turn")]

    def __str__(self) -> str:
        return f"task {self.task_id} from report {self.report_id} turn {self.turn}"


class RedTeamSession(models.Model):
    """One annotator's attempt, on one leased red-team task, to make the model misbehave."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        ENDED = "ended"

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded", "The model misbehaved"
        FAILED = "failed", "The model held"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="red_team_sessions")
    task = models.ForeignKey("annotations.Task", on_delete=models.CASCADE, related_name="red_team_sessions")
    lease = models.OneToOneField("annotations.Lease", on_delete=models.CASCADE, related_name="red_team_session")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    category = models.CharField(max_length=32, choices=MisbehaviourCategory.choices, blank=True)
    note = models.TextField(blank=True)
    bad_turn = models.PositiveIntegerField(null=True, blank=True,
                                           help_text="Index of the model turn that misbehaved (successes).")
    submission = models.OneToOneField("annotations.Submission", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="red_team_session")
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status="active") | ~Q(outcome=""), name="red_team_ended_has_outcome"),
        ]

    def __str__(self) -> str:
        return f"red-team session {self.pk} ({self.status} {self.outcome})"


class RedTeamTurn(models.Model):
    """One message of a red-team session: the annotator's (``user``) or the model's
    (``assistant``, generated by a Celery job: pending until it arrives, with the model version and
    sampling that produced it)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    session = models.ForeignKey(RedTeamSession, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField(help_text="0-based position in the chat (after any system prompt).")
    role = models.CharField(max_length=16, choices=TURN_ROLES)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DONE)
    model_version = models.ForeignKey("annotations.ModelVersion", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="red_team_turns")
    sampling_params = models.JSONField(default=dict, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    requested_at = models.DateTimeField(null=True, blank=True, help_text="When generation was last asked for.")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session", "index"]
        constraints = [
            models.UniqueConstraint(fields=["session", "index"], name="red_team_turn_position"),
            models.CheckConstraint(condition=~Q(role="assistant", status="done") | Q(model_version__isnull=False),
                                   name="red_team_model_turn_named"),
        ]

    def __str__(self) -> str:
        return f"{self.role} turn {self.index} of session {self.session_id} ({self.status})"
