"""Evaluation data: held-out prompt sets, runs that generate replies from several model versions,
blind pairwise battles between those replies, and the votes of people and of the judge model.

Registered under the ``models_service`` app (``models_service.models`` imports this module).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class EvalSet(models.Model):
    """Prompts held out from a training snapshot: its eval side, plus (optionally) the project's
    other prompts that are neither exact nor near duplicates of any prompt it trains on."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="eval_sets")
    name = models.CharField(max_length=200, blank=True)
    snapshot = models.ForeignKey("annotations.DatasetSnapshot", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="eval_sets",
                                 help_text="The training snapshot these prompts are held out from.")
    options = models.JSONField(default=dict, blank=True,
                               help_text="{max_prompts, include_held_out, near_dup_threshold, seed}")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    counts = models.JSONField(default=dict, blank=True, help_text="Where the prompts came from and what was dropped.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "models_service"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"eval set {self.pk} ({self.status})"


class EvalPrompt(models.Model):
    class Source(models.TextChoices):
        SNAPSHOT_EVAL = "snapshot_eval", "Eval side of the snapshot"
        HELD_OUT = "held_out", "Project prompt not in the training data"
        PROJECT = "project", "Project prompt (no training snapshot)"

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="prompts")
    conversation = models.JSONField(help_text="[{role, content}], ending with a user turn.")
    prompt_key = models.CharField(max_length=64, help_text="SHA-256 of the normalised prompt (exports.split).")
    source = models.CharField(max_length=16, choices=Source.choices)
    task = models.ForeignKey("annotations.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        app_label = "models_service"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["eval_set", "prompt_key"], name="eval_prompt_once")]

    def __str__(self) -> str:
        return f"eval prompt {self.pk}"


class EvalRun(models.Model):
    """Replies of two or more model versions to an eval set, the battles between them and the
    judge's votes. Generation and judging are ``ModelJob``s (progress, cancel, idempotent re-runs)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        GENERATING = "generating"
        JUDGING = "judging"
        DONE = "done", "Done (open for votes)"
        FAILED = "failed"
        CANCELLED = "cancelled"

    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="eval_runs")
    eval_set = models.ForeignKey(EvalSet, on_delete=models.PROTECT, related_name="runs")
    model_versions = models.ManyToManyField("annotations.ModelVersion", related_name="eval_runs")
    judge_model = models.ForeignKey("annotations.ModelVersion", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="judged_eval_runs")
    sampling = models.JSONField(default=dict, blank=True, help_text="{temperature, top_p, max_tokens, seed}")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    battles_created = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "models_service"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"eval run {self.pk} ({self.status})"


class EvalReply(models.Model):
    """One model version's reply to one eval prompt, with the sampling that made it."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="replies")
    prompt = models.ForeignKey(EvalPrompt, on_delete=models.CASCADE, related_name="replies")
    model_version = models.ForeignKey("annotations.ModelVersion", on_delete=models.PROTECT, related_name="eval_replies")
    content = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=16, blank=True)
    completion_tokens = models.PositiveIntegerField(default=0)
    sampling_params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "models_service"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "prompt", "model_version"], name="eval_reply_once")]

    def __str__(self) -> str:
        return f"eval reply {self.pk} by {self.model_version_id}"


class Battle(models.Model):
    """Two replies to the same prompt from two model versions, in the sides (A = ``left``,
    B = ``right``) drawn at random when the battle was made and kept for every voter."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="battles")
    prompt = models.ForeignKey(EvalPrompt, on_delete=models.CASCADE, related_name="battles")
    left = models.ForeignKey(EvalReply, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(EvalReply, on_delete=models.CASCADE, related_name="+")
    pair_key = models.CharField(max_length=64, help_text="'<lower model id>:<higher model id>'")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "models_service"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "prompt", "pair_key"], name="battle_once"),
            models.CheckConstraint(condition=~Q(left=F("right")), name="battle_two_replies"),
        ]

    def __str__(self) -> str:
        return f"battle {self.pk}"


class Choice(models.TextChoices):
    """A vote, relative to the sides shown: A is the battle's left reply, B its right one."""

    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both are bad"


class BattleVote(models.Model):
    """A battle shown to a person and, once cast, their vote. The row exists from the moment the
    battle is shown, so nobody is shown the same battle twice and votes go only to battles that
    were served to the voter."""

    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="battle_votes")
    choice = models.CharField(max_length=8, choices=Choice.choices, blank=True)
    shown_at = models.DateTimeField()
    voted_at = models.DateTimeField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "models_service"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["battle", "voter"], name="battle_vote_once"),
            models.CheckConstraint(condition=Q(voted_at__isnull=True, choice="") | Q(voted_at__isnull=False) & ~Q(choice=""),
                                   name="battle_vote_complete"),
        ]
        indexes = [models.Index(fields=["voter", "voted_at"], name="battle_vote_voter_idx")]

    def __str__(self) -> str:
        return f"vote of {self.voter_id} on battle {self.battle_id}: {self.choice or 'open'}"


class JudgeVote(models.Model):
    """The judge model's vote on a battle, asked in both orders (position swap): ``left_first``
    is its answer with the left reply shown as A, ``right_first`` with the right reply shown as A.
    ``choice`` is a side only when both orders agree, else a tie."""

    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="judge_votes")
    judge_model = models.ForeignKey("annotations.ModelVersion", on_delete=models.PROTECT, related_name="+")
    instruction_version = models.ForeignKey("annotations.InstructionVersion", null=True, blank=True,
                                            on_delete=models.PROTECT, related_name="+")
    left_first = models.CharField(max_length=8)
    right_first = models.CharField(max_length=8)
    choice = models.CharField(max_length=8, choices=Choice.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "models_service"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["battle", "judge_model"], name="judge_vote_once")]

    def __str__(self) -> str:
        return f"judge vote on battle {self.battle_id}: {self.choice}"
