from django.contrib import admin

from . import models as m


class ReadOnlyAfterCreate(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] if obj else []

    def get_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] if obj else super().get_fields(request, obj)


class MembershipInline(admin.TabularInline):
    model = m.Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(m.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "overlap", "comparison_k", "pending_cap", "lease_seconds", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    raw_id_fields = ["created_by", "current_instructions"]


@admin.register(m.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "paused_at"]
    list_filter = ["role"]
    raw_id_fields = ["project", "user"]


@admin.register(m.InstructionVersion)
class InstructionVersionAdmin(ReadOnlyAfterCreate):
    # Published versions are immutable: the admin shows them read-only.
    list_display = ["project", "number", "title", "published_at"]
    raw_id_fields = ["project"]
    fields = ["project", "title", "body"]

    def save_model(self, request, obj, form, change):
        # Adding through the admin publishes like the API does: next number, hash, current pointer.
        from .services.instructions import publish_instructions

        published = publish_instructions(project=obj.project, body=obj.body, title=obj.title, published_by=request.user)
        obj.pk, obj.number = published.pk, published.number


@admin.register(m.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "backend", "base", "adapter_path", "created_at"]


@admin.register(m.ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "file_name", "status", "rows_total", "tasks_created", "duplicates", "error_count"]
    list_filter = ["status"]
    raw_id_fields = ["project", "created_by"]


class ReplyInline(admin.TabularInline):
    model = m.CandidateReply
    extra = 0
    raw_id_fields = ["model_version", "parent", "created_by"]


@admin.register(m.Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "state", "lease_count", "submission_count", "accepted_count",
                    "completed_at", "created_at"]
    list_filter = ["kind", "state"]
    raw_id_fields = ["project", "import_batch"]
    inlines = [ReplyInline]
    show_full_result_count = False  # counting a 1M-row table on every page view is slow


@admin.register(m.CandidateReply)
class CandidateReplyAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "source", "model_version", "for_ranking"]
    list_filter = ["source"]
    raw_id_fields = ["task", "model_version", "parent", "created_by"]


@admin.register(m.Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "task", "annotator", "status", "expires_at"]
    list_filter = ["status"]
    raw_id_fields = ["project", "task", "annotator", "instruction_version"]
    show_full_result_count = False


@admin.register(m.Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "task", "annotator", "kind", "status", "review_required", "instruction_version",
                    "created_at"]
    list_filter = ["kind", "status", "review_required"]
    raw_id_fields = ["project", "task", "lease", "annotator", "instruction_version", "reply"]
    show_full_result_count = False


@admin.register(m.AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The whole audit log, every project and the site-wide entries (tokens), for staff. Read-only:
    entries are append-only and only the services write them."""

    list_display = ["created_at", "actor_name", "action", "project_id", "target"]
    list_filter = ["action"]
    search_fields = ["actor_name", "target"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(m.GoldStandard)
class GoldStandardAdmin(admin.ModelAdmin):
    """Read-mostly: set and change references through the gold page or API, which rescore the
    task's submissions and move the task out of the pool in one transaction."""

    list_display = ["task", "project", "created_by", "updated_at"]
    raw_id_fields = ["task", "project", "source_submission", "created_by"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.TaskCount)
class TaskCountAdmin(admin.ModelAdmin):
    """The trigger-kept count deltas, read-only: to check a project's counts by hand."""

    list_display = ["project_id", "kind", "state", "n"]
    list_filter = ["kind", "state"]
    search_fields = ["project__id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(m.GoldScore)
class GoldScoreAdmin(admin.ModelAdmin):
    list_display = ["submission", "project", "annotator", "score", "ranking_tau", "created_at"]
    raw_id_fields = ["submission", "gold", "project", "annotator"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.QualityRule)
class QualityRuleAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "metric", "threshold", "min_samples", "window", "action", "active"]
    list_filter = ["metric", "action", "active"]
    raw_id_fields = ["project", "created_by"]


@admin.register(m.Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "subject", "created_at", "read_at"]
    list_filter = ["kind"]
    raw_id_fields = ["project", "subject", "rule", "read_by"]


from .feedback import admin as feedback_admin  # noqa: E402,F401  (registers its models)


@admin.register(m.DataScan)
class DataScanAdmin(ReadOnlyAfterCreate):
    list_display = ["id", "project", "import_batch", "snapshot", "status", "items", "created_at"]
    list_filter = ["status"]
    raw_id_fields = ["project", "import_batch", "snapshot"]


@admin.register(m.DataFinding)
class DataFindingAdmin(ReadOnlyAfterCreate):
    list_display = ["id", "project", "kind", "title", "score", "item_count", "excluded_at"]
    list_filter = ["kind"]
    raw_id_fields = ["scan", "project", "excluded_by"]


@admin.register(m.TaskExclusion)
class TaskExclusionAdmin(ReadOnlyAfterCreate):
    # The audit trail of exclusions: rows are added (by the exclude endpoint or here), never edited.
    list_display = ["id", "project", "task", "finding", "reason", "created_by", "created_at"]
    raw_id_fields = ["project", "task", "finding", "created_by"]
    show_full_result_count = False
