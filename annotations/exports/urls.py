from django.urls import path

from . import api

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "snapshots/", api.SnapshotListView.as_view(), name="snapshot-list"),
    path(P + "snapshots/<int:snapshot_id>/", api.SnapshotDetailView.as_view(), name="snapshot-detail"),
    path(P + "snapshots/<int:snapshot_id>/download/", api.SnapshotDownloadView.as_view(), name="snapshot-download"),
    path(P + "snapshots/<int:snapshot_id>/cancel/", api.SnapshotCancelView.as_view(), name="snapshot-cancel"),
]
