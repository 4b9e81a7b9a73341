"""Quality-control data. Imported by ``annotations.models`` so Django registers these models in the
``annotations`` app; workflows live beside them in ``annotations.quality``."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class GoldStandard(models.Model):
    """The reference answer of a gold task. A task is gold exactly while it has one (its state is
    then ``gold``; ``annotations.quality.gold`` keeps both in one transaction).

    Comparison tasks: ``ranking`` (tie-groups of reply ids, best first), optionally ``ratings``
    and ``flags`` in the submission's shapes; ``None`` means "no reference for this part" and it is
    not scored. Demonstrations: ``text``."""

    task = models.OneToOneField("annotations.Task", on_delete=models.CASCADE, related_name="gold")
    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="gold_standards")
    ranking = models.JSONField(null=True, blank=True)
    ratings = models.JSONField(null=True, blank=True)
    flags = models.JSONField(null=True, blank=True)
    text = models.TextField(blank=True)
    note = models.TextField(blank=True, help_text="Why this is the right answer (for admins and reviewers).")
    # The submission the reference was taken from, if any: never scored against itself.
    source_submission = models.ForeignKey("annotations.Submission", null=True, blank=True,
                                          on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["task_id"]

    def __str__(self) -> str:
        return f"gold reference of task {self.task_id}"


class GoldScore(models.Model):
    """How one submission on a gold task compares with the reference. Recomputed whenever the
    reference changes. Never shown to annotators (gold must look like any other task)."""

    submission = models.OneToOneField("annotations.Submission", on_delete=models.CASCADE, related_name="gold_score")
    gold = models.ForeignKey(GoldStandard, on_delete=models.CASCADE, related_name="scores")
    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # 0..1: the mean of the parts the reference has (ranking as (tau + 1) / 2, ratings and flags as
    # partial credit, a demonstration as normalised edit similarity).
    score = models.FloatField()
    ranking_tau = models.FloatField(null=True, blank=True)
    ratings_exact = models.FloatField(null=True, blank=True)
    ratings_partial = models.FloatField(null=True, blank=True)
    flags_exact = models.FloatField(null=True, blank=True)
    flags_partial = models.FloatField(null=True, blank=True)
    text_similarity = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "annotator", "created_at"], name="goldscore_annotator_idx")]

    def __str__(self) -> str:
        return f"gold score {self.score:.2f} of submission {self.submission_id}"


class QualityRule(models.Model):
    """"When <metric> over an annotator's last <window> items falls below <threshold> (with at
    least <min_samples> items), pause them / tell the admins." Evaluated after every gold
    submission and every review decision of that annotator."""

    class Metric(models.TextChoices):
        GOLD_ACCURACY = "gold_accuracy", "Gold accuracy (0-1)"
        GOLD_RANKING_TAU = "gold_ranking_tau", "Kendall tau against gold rankings (-1..1)"
        ACCEPTANCE_RATE = "acceptance_rate", "Acceptance rate of reviewed work (0-1)"

    class Action(models.TextChoices):
        PAUSE = "pause", "Stop serving tasks and tell the admins"
        NOTIFY = "notify", "Only tell the admins"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="quality_rules")
    metric = models.CharField(max_length=32, choices=Metric.choices)
    threshold = models.FloatField(validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)])
    min_samples = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1),
                                                                     MaxValueValidator(10_000)])
    window = models.PositiveIntegerField(default=20, validators=[MinValueValidator(1), MaxValueValidator(10_000)])
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.PAUSE)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.metric} < {self.threshold} -> {self.action}"


class Notification(models.Model):
    """Something the project's admins should know (an annotator paused by a rule, a rule breached).
    Shown on the quality page and at ``/api/projects/<id>/notifications/``."""

    class Kind(models.TextChoices):
        ANNOTATOR_PAUSED = "annotator_paused"
        RULE_BREACHED = "rule_breached"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    subject = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+", help_text="The annotator it is about.")
    rule = models.ForeignKey(QualityRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    read_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "id"], condition=Q(read_at__isnull=True),
                                name="notification_unread_idx")]

    def __str__(self) -> str:
        return f"{self.kind} in project {self.project_id}"
