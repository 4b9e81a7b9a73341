from django.contrib.auth import views as auth_views
from django.urls import path

from . import datasets, evaluation, feedback, labelling, quality, review, screening, staff, views

P = "projects/<int:project_id>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(P + "start/", views.start_labelling, name="start"),
    path(P + "label/<int:lease_id>/", labelling.label, name="label"),
    path(P + "instructions/ack/", labelling.acknowledge_instructions, name="instructions-ack"),
    path(P + "submissions/", staff.submission_list, name="submissions"),
    path(P + "review/", review.review, name="review"),
    path(P + "quality/", quality.quality, name="quality"),
    path(P + "quality/annotators/<int:user_id>/", quality.annotator, name="quality-annotator-page"),
    path(P + "gold/", quality.gold_page, name="gold"),
    path(P + "jobs/", staff.model_jobs, name="model-jobs-page"),
    path(P + "datasets/", datasets.datasets, name="datasets"),
    path(P + "datasets/status/", datasets.datasets_status, name="datasets-status"),
    path(P + "finetunes/<int:finetune_id>/", datasets.finetune_page, name="finetune-page"),
    path(P + "finetunes/<int:finetune_id>/loss.svg", datasets.finetune_loss, name="finetune-loss"),
    path(P + "instructions/", staff.instructions_editor, name="instructions"),
    path(P + "settings/", staff.project_settings, name="project-settings"),
    path(P + "audit/", staff.audit_log, name="audit-log"),
    path(P + "imports/", staff.imports, name="imports"),
    path(P + "imports/<int:import_id>/", staff.import_detail, name="import-detail-page"),
    path(P + "arena/", evaluation.arena, name="arena"),
    path(P + "arena/next/", evaluation.arena_next, name="arena-next"),
    path(P + "arena/<int:battle_id>/", evaluation.arena_battle, name="arena-battle"),
    path(P + "leaderboard/", evaluation.leaderboard, name="leaderboard-page"),
    path(P + "reports/", feedback.report_queue, name="report-queue"),
    path(P + "reports/<int:report_id>/", feedback.report_detail, name="report-detail-page"),
    path(P + "report-tokens/", feedback.report_tokens, name="report-tokens-page"),
    path(P + "red-team/", feedback.red_team, name="red-team-page"),
    path(P + "red-team/start/", feedback.red_team_start, name="red-team-start"),
    path(P + "red-team/<int:lease_id>/", feedback.red_team_chat, name="red-team-chat"),
    path(P + "red-team/<int:lease_id>/transcript/", feedback.red_team_transcript, name="red-team-transcript"),
    path(P + "screening/", screening.screening, name="screening"),
    path(P + "screening/findings/<int:finding_id>/exclude/", screening.exclude_finding, name="finding-exclude"),
]
