"""The labelling domain: data and invariants only. Workflows live in ``annotations.services``."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    REVIEWER = "reviewer", "Reviewer"
    ANNOTATOR = "annotator", "Annotator"
    ENGINEER = "engineer", "ML engineer"


class TaskKind(models.TextChoices):
    DEMONSTRATION = "demonstration", "Demonstration"
    COMPARISON = "comparison", "Comparison"
    # An annotator chats with a live model trying to make it misbehave (annotations.feedback).
    RED_TEAM = "red_team", "Red team"


# Kinds whose tasks are prompts to label; they come from imports and feed the datasets.
LABELLING_KINDS = (TaskKind.DEMONSTRATION, TaskKind.COMPARISON)


class Project(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    # How many different annotators must label each task.
    overlap = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(50)])
    # Replies per comparison task (K-wise ranking).
    comparison_k = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(2), MaxValueValidator(9)])
    # Open leases one annotator may hold in this project at once.
    pending_cap = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(100)])
    lease_seconds = models.PositiveIntegerField(default=1800, validators=[MinValueValidator(30), MaxValueValidator(7 * 86400)])
    # Model drafts requested per prompt.
    drafts_n = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(0), MaxValueValidator(16)])

    current_instructions = models.ForeignKey(
        "InstructionVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The model that drafts replies for this project; empty means the configured default model.
    draft_model = models.ForeignKey("ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    # Queue a drafting job for every successful import (drafts_n > 0).
    draft_on_import = models.BooleanField(default=True)

    # Quality control (annotations.quality). Share of "next task" requests that first try a gold
    # task the annotator has not had; gold tasks look like any other task to the annotator.
    gold_rate = models.FloatField(default=0.0, db_default=0.0,
                                  validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    # Share of submissions sampled for review; an annotator's first ``review_new_until`` accepted
    # submissions are always reviewed.
    review_rate = models.FloatField(default=1.0, db_default=1.0,
                                    validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    review_new_until = models.PositiveIntegerField(default=10, db_default=10,
                                                   validators=[MaxValueValidator(10_000)])

    class OnReject(models.TextChoices):
        RETURN = "return", "Return to the annotator to redo"
        REASSIGN = "reassign", "Give the slot to someone else"

    on_reject = models.CharField(max_length=8, choices=OnReject.choices, default=OnReject.RETURN,
                                 db_default=OnReject.RETURN)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when a quality rule (or an admin) stopped serving this member new tasks; the lease path
    # refuses "next" while it is set. Cleared by annotations.quality.rules.resume_annotator.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True, db_default="")
    # Quality rules look only at work after this moment (set when an admin resumes the member, so
    # the items that caused the pause do not pause them again at once).
    quality_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class InstructionVersion(models.Model):
    """One published version of a project's labelling instructions. Never edited once stored:
    the model refuses updates and PostgreSQL has a trigger that does the same for raw SQL."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="instruction_versions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200, blank=True, help_text="What changed in this version.")
    body = models.TextField()
    body_sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="instructions_version_unique")]

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.pop("_allow_update", False):
            raise ValidationError("Published instruction versions are immutable; publish a new version instead.")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.project} instructions v{self.number}"


class ModelVersion(models.Model):
    """A model that produced text: a base model, optionally with a LoRA adapter, at an endpoint.

    It lives in the ground-floor app because every reply, critique and judgement names the model
    that made it; ``models_service`` holds the code that talks to and trains models.
    """

    name = models.CharField(max_length=200, unique=True, help_text="Name the server serves it under.")
    base = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived")
    base_model = models.CharField(max_length=500, blank=True, help_text="HF folder or hub id of the weights.")
    adapter_path = models.CharField(max_length=500, blank=True)
    endpoint = models.CharField(max_length=500, blank=True)
    backend = models.CharField(max_length=32, default="vllm")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ImportBatch(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    file_name = models.CharField(max_length=255)
    file = models.CharField(max_length=500, blank=True, help_text="Stored upload, relative to MEDIA_ROOT.")
    # Set for "import from URL": the worker fetches it (annotations.url_fetch) into ``file`` first.
    source_url = models.CharField(max_length=2000, blank=True)
    format = models.CharField(max_length=8, choices=[("jsonl", "JSONL"), ("csv", "CSV")])
    default_kind = models.CharField(max_length=16, choices=TaskKind.choices, default=TaskKind.DEMONSTRATION)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    tasks_created = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, reason}], first N only.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]


class Task(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Open"  # a slot is free: can be leased
        BUSY = "busy", "Busy"  # every slot is leased or submitted
        DONE = "done", "Done"  # `overlap` submissions received
        # A gold task (annotations.quality.gold): outside the normal pool, served only by the gold
        # path, never counted toward completion; its counters still move but never its state.
        GOLD = "gold", "Gold"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    conversation = models.JSONField(help_text="[{role, content}], ending with a user turn.")
    content_hash = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    import_batch = models.ForeignKey(ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    created_at = models.DateTimeField(auto_now_add=True)

    # Counters kept by the lease and submit services in the same statement that changes them, so
    # "next task" never counts rows.
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    lease_count = models.PositiveIntegerField(default=0)
    submission_count = models.PositiveIntegerField(default=0)
    # Submissions that count as accepted: accepted by a reviewer, or not sampled for review and
    # not rejected. The task is complete once this reaches the project's overlap.
    accepted_count = models.PositiveIntegerField(default=0, db_default=0)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="task_unique_content"),
        ]
        indexes = [
            # Only tasks that still need work: keeps the next-task scan short at 1M rows.
            models.Index(fields=["project", "id"], condition=Q(state="open"), name="task_open_idx"),
            models.Index(fields=["project", "state"], name="task_state_idx"),
            models.Index(fields=["project", "id"], condition=Q(state="gold"), name="task_gold_idx"),
            models.Index(fields=["project", "id"], condition=Q(completed_at__isnull=False),
                         name="task_complete_idx"),
            # Task lists page by (project, id): without it, the first page of a project whose ids come
            # after another big project's walks the primary key through that project (454 ms at 1M).
            models.Index(fields=["project", "id"], name="task_project_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} task {self.pk}"

    @property
    def prompt(self) -> str:
        for message in reversed(self.conversation or []):
            if message.get("role") == "user":
                return message.get("content", "")
        return ""


class TaskCount(models.Model):
    """How many tasks a project has per kind and state, kept by PostgreSQL triggers on the task table
    (migration 0007) as appended deltas, so counting a 1M-task project reads a few rows instead of
    the whole table. Writers never update a shared row (that would queue every lease of a project
    behind one lock); ``services.task_counts.compact`` folds the deltas (beat, every minute).

    No foreign key: deleting a project deletes its tasks, whose triggers then append negative
    deltas for a project that is going away; compaction drops rows of projects that are gone."""

    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    kind = models.CharField(max_length=16)
    state = models.CharField(max_length=8)
    complete = models.BooleanField(default=False, help_text="Counts tasks with completed_at set.")
    n = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["project"], name="taskcount_project_idx")]

    def __str__(self) -> str:
        return f"project {self.project_id} {self.kind}/{self.state}: {self.n:+d}"


class CandidateReply(models.Model):
    """A reply to a task's conversation: written by a person, drafted by a model, or a model draft
    a person edited (``parent`` names the draft)."""

    class Source(models.TextChoices):
        HUMAN = "human"
        MODEL = "model"
        EDITED = "edited_draft"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="replies")
    content = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="replies")
    sampling_params = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="edits")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # True for the K replies an annotator ranks on a comparison task; drafts of a demonstration are
    # offered as starting points instead.
    for_ranking = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(source="model") | Q(model_version__isnull=False),
                name="reply_model_named",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} reply {self.pk} to task {self.task_id}"


class Lease(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUBMITTED = "submitted"
        RELEASED = "released"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="leases")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was skipped or released.")
    # The instructions that were current when the task was handed out: what the annotator read.
    instruction_version = models.ForeignKey("InstructionVersion", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["id"]
        constraints = [
            # Nobody gets the same task twice, whatever happened to the first lease. Led by the
            # annotator, so "tasks I have had" is one index probe per candidate.
            models.UniqueConstraint(fields=["annotator", "task"], name="lease_once_per_annotator"),
        ]
        indexes = [
            models.Index(fields=["project", "expires_at"], condition=Q(status="active"), name="lease_active_expiry_idx"),
            models.Index(fields=["project", "annotator"], condition=Q(status="active"), name="lease_active_mine_idx"),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk} of task {self.task_id} to {self.annotator_id} ({self.status})"


class Submission(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="submissions")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="submissions")
    # Usually one per lease; a rejected submission returned to its annotator is redone on the same
    # lease, so a lease may hold several, at most one of them not rejected.
    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="submissions")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="submissions")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    instruction_version = models.ForeignKey(InstructionVersion, on_delete=models.PROTECT, related_name="submissions")
    idempotency_key = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBMITTED)
    created_at = models.DateTimeField(auto_now_add=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    rationale = models.TextField(blank=True)
    # Sampled for review when it was submitted (annotations.quality.sampling); the review queue
    # holds only these. Not sampled and not rejected counts as accepted for completion.
    review_required = models.BooleanField(default=False, db_default=False)

    # demonstration
    reply = models.OneToOneField(CandidateReply, null=True, blank=True, on_delete=models.PROTECT, related_name="submission")
    draft_sources = models.JSONField(default=list, blank=True, help_text="[{reply_id, edit_distance}] for drafts used.")

    # comparison: tie-groups of reply ids, best first, e.g. [[12], [10, 13], [11]]
    ranking = models.JSONField(default=list, blank=True)
    ratings = models.JSONField(default=dict, blank=True, help_text="{reply_id: {helpful, truthful, harmless}} 1-7")
    flags = models.JSONField(default=dict, blank=True, help_text="{reply_id: [flag, ...]}")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["annotator", "idempotency_key"], name="submission_idempotent"),
            models.UniqueConstraint(fields=["lease"], condition=~Q(status="rejected"),
                                    name="submission_one_live_per_lease"),
        ]
        indexes = [
            models.Index(fields=["project", "annotator", "created_at"], name="submission_mine_idx"),
            models.Index(fields=["project", "id"], condition=Q(review_required=True, status="submitted"),
                         name="submission_review_queue_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} submission {self.pk}"


FLAG_CHOICES = ("unsafe", "personal_data", "factually_wrong", "not_rankable")
RATING_CRITERIA = ("helpful", "truthful", "harmless")


class DatasetSnapshot(models.Model):
    """A frozen export of a project's labelled data: the filters that chose it, what came out, a
    hash of the content and where the files are. Once ``ready`` it is never changed; export again
    for new data. Built by ``annotations.exports.service.build_snapshot``."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.PENDING, Status.RUNNING)  # queued or being built: what a cancel stops

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    filters = models.JSONField(default=dict, blank=True,
                               help_text="{instruction_versions, accepted_only, exclude_flagged, date_from, date_to}")
    formats = models.JSONField(default=list, blank=True, help_text='["sft", "dpo"]')
    options = models.JSONField(default=dict, blank=True, help_text="{eval_fraction, near_dup_threshold, licence}")
    query = models.TextField(blank=True, help_text="The SQL that selected the submissions.")
    counts = models.JSONField(default=dict, blank=True)
    files = models.JSONField(default=dict, blank=True, help_text="{file name: {bytes, rows, sha256}}")
    content_sha256 = models.CharField(max_length=64, blank=True)
    path = models.CharField(max_length=500, blank=True, help_text="Folder that holds the files.")
    progress = models.FloatField(default=0)
    records_done = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    @classmethod
    def from_db(cls, db, field_names, values):
        obj = super().from_db(db, field_names, values)
        obj._loaded_ready = obj.status == cls.Status.READY if "status" in field_names else False
        return obj

    def save(self, *args, **kwargs):
        if getattr(self, "_loaded_ready", False):
            raise ValidationError("A ready snapshot is immutable; export a new one instead.")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"snapshot {self.pk} of {self.project_id} ({self.status})"


class Review(models.Model):
    """A reviewer's decision on a submission: accept, reject with a reason (the annotator sees it
    and the task's slot opens again), or fix (the reviewer's corrected reply is kept beside the
    original)."""

    class Decision(models.TextChoices):
        ACCEPT = "accept"
        REJECT = "reject"
        FIX = "fix"

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reason = models.TextField(blank=True)
    fixed_reply = models.ForeignKey(CandidateReply, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(decision="reject") | ~Q(reason=""), name="review_reject_has_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} of submission {self.submission_id}"


class AuditEntry(models.Model):
    """One admin action: who did what, to what, in which project, when. Append-only: the model
    refuses updates and deletes and a PostgreSQL trigger refuses them for raw SQL too. Written by
    ``annotations.services.audit.record`` inside the transaction of the action it records, so an
    action that rolls back leaves no entry and an entry never describes something that did not
    happen.

    Project and actor are kept as ids without database constraints: deleting a project or a user
    must neither fail nor take its history with it. ``actor_name`` keeps the name readable after
    the user is gone."""

    class Action(models.TextChoices):
        PROJECT_CREATED = "project.created", "Project created"
        PROJECT_SETTINGS = "project.settings_changed", "Project settings changed"
        MEMBER_SET = "member.set", "Member added or role changed"
        MEMBER_REMOVED = "member.removed", "Member removed"
        INSTRUCTIONS_PUBLISHED = "instructions.published", "Instructions published"
        IMPORT_STARTED = "import.started", "Import started"
        SNAPSHOT_CREATED = "snapshot.created", "Dataset snapshot created"
        SNAPSHOT_CANCELLED = "snapshot.cancelled", "Dataset snapshot cancelled"
        EXPORT_DOWNLOADED = "export.downloaded", "Export downloaded"
        FINETUNE_STARTED = "finetune.started", "Finetune started"
        FINETUNE_CANCELLED = "finetune.cancelled", "Finetune cancelled"
        FINETUNE_RETRIED = "finetune.retried", "Finetune retried"
        TOKEN_CREATED = "token.created", "API token created"
        TOKEN_REVOKED = "token.revoked", "API token revoked"
        REPORT_TOKEN_CREATED = "report_token.created", "Report ingestion token created"
        REPORT_TOKEN_REVOKED = "report_token.revoked", "Report ingestion token revoked"
        GOLD_SET = "gold.set", "Gold reference set or changed"
        GOLD_UNSET = "gold.unset", "Gold task back to the pool"
        QUALITY_RULE = "quality_rule.changed", "Quality rule added, changed or deleted"
        MEMBER_PAUSED = "member.paused", "Annotator paused"
        MEMBER_RESUMED = "member.resumed", "Annotator resumed"

    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, related_name="+")
    actor_name = models.CharField(max_length=150, blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                related_name="+")
    action = models.CharField(max_length=40, choices=Action.choices)
    target = models.CharField(max_length=200, blank=True, help_text='What it acted on, e.g. "user 12".')
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="audit_project_idx")]
        verbose_name_plural = "audit entries"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit entries are append-only.")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name or 'system'} {self.action} {self.target}"


# Quality control: gold standards and their scores, rules, notifications (annotations/quality/).
from .quality.models import GoldScore, GoldStandard, Notification, QualityRule  # noqa: E402,F401

# Deployment feedback and red-teaming keep their models in their own module (same app).
from .feedback.models import (  # noqa: E402,F401
    MisbehaviourCategory,
    MisbehaviourReport,
    RedTeamSession,
    RedTeamTurn,
    ReportTask,
    ReportToken,
)


class DataScan(models.Model):
    """One screening of an import batch or of a snapshot's data for data attacks
    (``annotations.screening``). At most one per batch and one per snapshot."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scans")
    import_batch = models.OneToOneField(ImportBatch, null=True, blank=True, on_delete=models.CASCADE,
                                        related_name="scan")
    snapshot = models.OneToOneField(DatasetSnapshot, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="scan")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    items = models.PositiveIntegerField(default=0, help_text="Tasks read.")
    stats = models.JSONField(default=dict, blank=True, help_text="Per detector: seconds and what it counted.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(import_batch__isnull=True) ^ Q(snapshot__isnull=True),
                                   name="scan_has_one_source"),
        ]

    def __str__(self) -> str:
        source = f"import {self.import_batch_id}" if self.import_batch_id else f"snapshot {self.snapshot_id}"
        return f"scan of {source} ({self.status})"


class DataFinding(models.Model):
    """Something a scan found, with the tasks it concerns and the evidence for it."""

    class Kind(models.TextChoices):
        TRIGGER = "trigger_phrase", "Trigger phrase"
        ENCODED = "encoded_payload", "Encoded payload"
        HIDDEN = "hidden_text", "Hidden text"
        SUFFIX = "gibberish_suffix", "Gibberish suffix"
        FLOOD = "near_duplicate_flood", "Near-duplicate flood"

    scan = models.ForeignKey(DataScan, on_delete=models.CASCADE, related_name="findings")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="findings")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    title = models.CharField(max_length=300)
    score = models.FloatField(help_text="Higher is more certain / more serious; comparable within a kind.")
    evidence = models.JSONField(default=dict, blank=True)
    task_ids = models.JSONField(default=list, blank=True, help_text="The tasks it concerns.")
    item_count = models.PositiveIntegerField(default=0)
    excluded_at = models.DateTimeField(null=True, blank=True)
    excluded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scan", "-score", "id"]

    def __str__(self) -> str:
        return self.title


class TaskExclusion(models.Model):
    """A task kept out of every snapshot built from now on, who decided it and why. Rows are the
    audit trail: they are added, never edited."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exclusions")
    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="exclusion")
    finding = models.ForeignKey(DataFinding, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="exclusions")
    reason = models.CharField(max_length=300)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"task {self.task_id} excluded ({self.reason})"
