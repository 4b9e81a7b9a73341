"""Django admin for evaluation data. Votes and replies are records of what happened: read-only
after creation, like published instructions."""
from django.contrib import admin

from annotations.admin import ReadOnlyAfterCreate

from . import models as m


class EvalPromptInline(admin.TabularInline):
    model = m.EvalPrompt
    extra = 0
    fields = ["id", "source", "task", "prompt_key"]
    readonly_fields = fields
    show_change_link = True
    max_num = 0


@admin.register(m.EvalSet)
class EvalSetAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "snapshot", "status", "created_at"]
    list_filter = ["status"]
    raw_id_fields = ["project", "snapshot", "created_by"]
    inlines = [EvalPromptInline]


@admin.register(m.EvalPrompt)
class EvalPromptAdmin(ReadOnlyAfterCreate):
    list_display = ["id", "eval_set", "source", "task"]
    list_filter = ["source"]
    raw_id_fields = ["eval_set", "task"]


@admin.register(m.EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "eval_set", "judge_model", "status", "battles_created", "created_at"]
    list_filter = ["status"]
    raw_id_fields = ["project", "eval_set", "judge_model", "created_by"]
    filter_horizontal = ["model_versions"]


@admin.register(m.EvalReply)
class EvalReplyAdmin(ReadOnlyAfterCreate):
    list_display = ["id", "run", "prompt", "model_version", "finish_reason", "completion_tokens"]
    list_filter = ["model_version"]
    raw_id_fields = ["run", "prompt", "model_version"]


@admin.register(m.Battle)
class BattleAdmin(ReadOnlyAfterCreate):
    list_display = ["id", "run", "prompt", "left", "right", "pair_key"]
    raw_id_fields = ["run", "prompt", "left", "right"]


@admin.register(m.BattleVote)
class BattleVoteAdmin(ReadOnlyAfterCreate):
    list_display = ["id", "battle", "voter", "choice", "shown_at", "voted_at"]
    list_filter = ["choice"]
    raw_id_fields = ["battle", "voter"]


@admin.register(m.JudgeVote)
class JudgeVoteAdmin(ReadOnlyAfterCreate):
    list_display = ["id", "battle", "judge_model", "left_first", "right_first", "choice"]
    list_filter = ["choice"]
    raw_id_fields = ["battle", "judge_model", "instruction_version"]
