"""What models produce beside the human work: batch jobs, critiques of submissions, AI rankings.

``ModelVersion`` and ``CandidateReply`` (drafts) live in ``annotations`` because human work refers
to them; everything here refers to ``annotations`` and never the other way round.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class ModelJob(models.Model):
    """A batch of model work on a project, with progress people can watch."""

    class Kind(models.TextChoices):
        DRAFTING = "drafting"
        JUDGING = "judging"
        EVAL_GENERATION = "eval_generation"  # replies of one model version to an eval set
        ARENA_JUDGING = "arena_judging"  # the judge's position-swapped votes on an eval run's battles

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="model_jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model_version = models.ForeignKey("annotations.ModelVersion", on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    params = models.JSONField(default=dict, blank=True, help_text="Sampling parameters and the task selection.")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Already had the work (a re-run).")
    completion_tokens = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"


class Critique(models.Model):
    """The model's review of one submission against the instructions it was made under."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    class Verdict(models.TextChoices):
        ACCEPT = "accept"
        REVISE = "revise"
        REJECT = "reject"

    submission = models.ForeignKey("annotations.Submission", on_delete=models.CASCADE, related_name="critiques")
    model_version = models.ForeignKey("annotations.ModelVersion", on_delete=models.PROTECT, related_name="critiques")
    instruction_version = models.ForeignKey("annotations.InstructionVersion", on_delete=models.PROTECT,
                                            related_name="critiques")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    verdict = models.CharField(max_length=16, choices=Verdict.choices, blank=True)
    scores = models.JSONField(default=dict, blank=True, help_text="{helpful, truthful, harmless}: 1-7")
    issues = models.JSONField(default=list, blank=True, help_text="[{quote, problem, suggestion}]")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    raw = models.TextField(blank=True, help_text="The last raw reply, kept when it could not be used.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["submission", "model_version"], name="critique_once")]

    def __str__(self) -> str:
        return f"critique of submission {self.submission_id} ({self.status})"


class AIRanking(models.Model):
    """A model's ranking of a comparison task's replies, from position-swapped pairwise judgements.
    Kept apart from human submissions so the two are never mixed up."""

    class Status(models.TextChoices):
        DONE = "done"
        FAILED = "failed"

    task = models.ForeignKey("annotations.Task", on_delete=models.CASCADE, related_name="ai_rankings")
    model_version = models.ForeignKey("annotations.ModelVersion", on_delete=models.PROTECT,
                                      related_name="ai_rankings")
    instruction_version = models.ForeignKey("annotations.InstructionVersion", null=True, blank=True,
                                            on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    ranking = models.JSONField(default=list, blank=True, help_text="Tie-groups of reply ids, best first.")
    pairs = models.JSONField(default=list, blank=True,
                             help_text="[{a, b, a_first, b_first, outcome}] with outcome a|b|tie")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["task", "model_version"], name="ai_ranking_once")]

    def __str__(self) -> str:
        return f"AI ranking of task {self.task_id} by {self.model_version_id}"


class FinetuneJob(models.Model):
    """LoRA finetuning of a base model on a dataset snapshot, run by TRL in a child process.

    ``metrics`` holds one entry per optimiser step ({step, loss, tokens, seconds, ...}); ``log`` the
    tail of the child's output. On success the adapter is registered as ``result_model``."""

    class Method(models.TextChoices):
        SFT = "sft", "SFT"
        DPO = "dpo", "DPO"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="finetune_jobs")
    snapshot = models.ForeignKey("annotations.DatasetSnapshot", on_delete=models.PROTECT, related_name="finetunes")
    method = models.CharField(max_length=8, choices=Method.choices)
    base_model = models.ForeignKey("annotations.ModelVersion", on_delete=models.PROTECT, related_name="finetunes")
    params = models.JSONField(default=dict, blank=True, help_text="LoRA and training settings, defaults filled in.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="{train_seconds, tokens, tokens_per_second, ...}")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    output_path = models.CharField(max_length=500, blank=True)
    result_model = models.ForeignKey("annotations.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    child_pid = models.IntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.method} finetune {self.pk} ({self.status})"


# Evaluation lives in its own package; importing it here registers its models with this app.
from .evaluation.models import (  # noqa: E402,F401
    Battle,
    BattleVote,
    EvalPrompt,
    EvalReply,
    EvalRun,
    EvalSet,
    JudgeVote,
)
