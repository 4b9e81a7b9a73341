from django.urls import path

from . import api

P = "projects/<int:project_id>/"

urlpatterns = [
    path("feedback/reports/", api.ReportIngestView.as_view(), name="report-ingest"),
    path(P + "report-tokens/", api.ReportTokenListView.as_view(), name="report-token-list"),
    path(P + "report-tokens/<int:token_id>/revoke/", api.ReportTokenRevokeView.as_view(), name="report-token-revoke"),
    path(P + "reports/", api.ReportListView.as_view(), name="report-list"),
    path(P + "reports/<int:report_id>/", api.ReportDetailView.as_view(), name="report-detail"),
    path(P + "reports/<int:report_id>/tasks/", api.ReportCreateTasksView.as_view(), name="report-create-tasks"),
    path(P + "reports/<int:report_id>/dismiss/", api.ReportDismissView.as_view(), name="report-dismiss"),
    path(P + "reports/<int:report_id>/duplicate/", api.ReportDuplicateView.as_view(), name="report-duplicate"),
    path(P + "red-team/briefs/", api.RedTeamBriefListView.as_view(), name="red-team-brief-list"),
    path(P + "leases/<int:lease_id>/red-team/", api.RedTeamSessionView.as_view(), name="red-team-session"),
    path(P + "leases/<int:lease_id>/red-team/messages/", api.RedTeamMessageView.as_view(),
         name="red-team-message"),
    path(P + "leases/<int:lease_id>/red-team/retry/", api.RedTeamRetryView.as_view(), name="red-team-retry"),
]
