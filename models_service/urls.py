from django.urls import path

from . import api

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "model-jobs/", api.ModelJobListView.as_view(), name="model-job-list"),
    path(P + "model-jobs/<int:job_id>/", api.ModelJobDetailView.as_view(), name="model-job-detail"),
    path(P + "model-jobs/<int:job_id>/cancel/", api.ModelJobCancelView.as_view(), name="model-job-cancel"),
    path(P + "submissions/<int:submission_id>/critiques/", api.SubmissionCritiqueView.as_view(),
         name="submission-critiques"),
    path(P + "tasks/<int:task_id>/ai-rankings/", api.TaskAIRankingView.as_view(), name="task-ai-rankings"),
    path(P + "agreement/", api.AgreementView.as_view(), name="agreement"),
    path(P + "comparisons/build/", api.BuildComparisonsView.as_view(), name="build-comparisons"),
]
