from django.urls import path

from . import api

P = "projects/<int:project_id>/screening/"

urlpatterns = [
    path(P + "scans/", api.ScanListView.as_view(), name="screening-scans"),
    path(P + "findings/", api.FindingListView.as_view(), name="screening-findings"),
    path(P + "findings/<int:finding_id>/", api.FindingDetailView.as_view(), name="screening-finding"),
    path(P + "findings/<int:finding_id>/exclude/", api.FindingExcludeView.as_view(), name="screening-exclude"),
]
