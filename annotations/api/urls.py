from django.urls import path

from . import views as v

P = "projects/<int:project_id>/"

urlpatterns = [
    path("auth/token/", v.TokenView.as_view(), name="api-token"),
    path("projects/", v.ProjectListView.as_view(), name="project-list"),
    path(P, v.ProjectDetailView.as_view(), name="project-detail"),
    path(P + "members/", v.MemberListView.as_view(), name="member-list"),
    path(P + "members/<int:user_id>/", v.MemberDetailView.as_view(), name="member-detail"),
    path(P + "instructions/", v.InstructionListView.as_view(), name="instruction-list"),
    path(P + "instructions/<int:number>/", v.InstructionDetailView.as_view(), name="instruction-detail"),
    path(P + "imports/", v.ImportListView.as_view(), name="import-list"),
    path(P + "imports/from-url/", v.ImportFromURLView.as_view(), name="import-from-url"),
    path(P + "imports/<int:import_id>/", v.ImportDetailView.as_view(), name="import-detail"),
    path(P + "tasks/", v.TaskListView.as_view(), name="task-list"),
    path(P + "tasks/counts/", v.TaskCountsView.as_view(), name="task-counts"),
    path(P + "tasks/<int:task_id>/", v.TaskDetailView.as_view(), name="task-detail"),
    path(P + "next/", v.NextTaskView.as_view(), name="next-task"),
    path(P + "leases/", v.LeaseListView.as_view(), name="lease-list"),
    path(P + "leases/<int:lease_id>/submit/", v.SubmitView.as_view(), name="lease-submit"),
    path(P + "leases/<int:lease_id>/skip/", v.SkipView.as_view(), name="lease-skip"),
    path(P + "leases/<int:lease_id>/release/", v.ReleaseView.as_view(), name="lease-release"),
    path(P + "submissions/", v.SubmissionListView.as_view(), name="submission-list"),
    path(P + "submissions/<int:submission_id>/", v.SubmissionDetailView.as_view(), name="submission-detail"),
    path(P + "submissions/<int:submission_id>/review/", v.SubmissionReviewView.as_view(), name="submission-review"),
    path(P + "stats/me/", v.MyStatsView.as_view(), name="my-stats"),
    path(P + "audit/", v.AuditListView.as_view(), name="audit-list"),
]
