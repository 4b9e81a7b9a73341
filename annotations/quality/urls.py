from django.urls import path

from . import api as v

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "quality/annotators/", v.AnnotatorAnalyticsListView.as_view(), name="quality-annotators"),
    path(P + "quality/annotators/<int:user_id>/", v.AnnotatorAnalyticsDetailView.as_view(),
         name="quality-annotator"),
    path(P + "quality/annotators/<int:user_id>/pause/", v.PauseView.as_view(), name="quality-pause"),
    path(P + "quality/annotators/<int:user_id>/resume/", v.ResumeView.as_view(), name="quality-resume"),
    path(P + "quality/agreement/", v.AgreementView.as_view(), name="quality-agreement"),
    path(P + "quality/rules/", v.RuleListView.as_view(), name="quality-rules"),
    path(P + "quality/rules/<int:rule_id>/", v.RuleDetailView.as_view(), name="quality-rule"),
    path(P + "gold/", v.GoldListView.as_view(), name="gold-list"),
    path(P + "gold/<int:task_id>/", v.GoldDetailView.as_view(), name="gold-detail"),
    path(P + "notifications/", v.NotificationListView.as_view(), name="notification-list"),
    path(P + "notifications/<int:notification_id>/read/", v.NotificationReadView.as_view(),
         name="notification-read"),
    path(P + "review-queue/", v.ReviewQueueView.as_view(), name="review-queue"),
]
