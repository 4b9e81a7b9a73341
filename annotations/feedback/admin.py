"""Django admin for deployment feedback and red-teaming (registered through annotations.admin)."""
from django.contrib import admin

from .models import MisbehaviourReport, RedTeamSession, RedTeamTurn, ReportTask, ReportToken
from .tokens import revoke_report_token


@admin.register(ReportToken)
class ReportTokenAdmin(admin.ModelAdmin):
    # Tokens are issued through the project's report-token page or API, where the secret is shown
    # once; the admin only lists and revokes them (it never sees a secret, only its hash).
    list_display = ["id", "project", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    raw_id_fields = ["project", "created_by", "revoked_by"]
    readonly_fields = ["prefix", "key_hash", "created_by", "created_at", "last_used_at", "revoked_at", "revoked_by"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        # Through the service, so each revocation is in the audit log like one made on the page.
        for token in queryset.filter(revoked_at__isnull=True).select_related("project"):
            revoke_report_token(project=token.project, token_id=token.pk, revoked_by=request.user)


class ReportTaskInline(admin.TabularInline):
    model = ReportTask
    extra = 0
    raw_id_fields = ["task", "created_by"]


@admin.register(MisbehaviourReport)
class MisbehaviourReportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "status", "category", "model_version_name", "times_reported",
                    "created_at"]
    list_filter = ["status", "source", "category"]
    search_fields = ["model_version_name", "content_hash"]
    raw_id_fields = ["project", "token", "red_team_session", "model_version", "duplicate_of", "triaged_by"]
    readonly_fields = ["content_hash", "created_at", "last_reported_at"]
    inlines = [ReportTaskInline]
    show_full_result_count = False


@admin.register(ReportTask)
class ReportTaskAdmin(admin.ModelAdmin):
    list_display = ["id", "report", "task", "turn", "created_at"]
    raw_id_fields = ["report", "task", "created_by"]


class RedTeamTurnInline(admin.TabularInline):
    model = RedTeamTurn
    extra = 0
    raw_id_fields = ["model_version"]
    fields = ["index", "role", "status", "content", "model_version", "finish_reason", "latency_ms", "error"]


@admin.register(RedTeamSession)
class RedTeamSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "task", "annotator", "status", "outcome", "category", "created_at", "ended_at"]
    list_filter = ["status", "outcome", "category"]
    raw_id_fields = ["project", "task", "lease", "annotator", "submission"]
    inlines = [RedTeamTurnInline]


@admin.register(RedTeamTurn)
class RedTeamTurnAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "index", "role", "status", "model_version", "latency_ms", "created_at"]
    list_filter = ["status", "role"]
    raw_id_fields = ["session", "model_version"]
