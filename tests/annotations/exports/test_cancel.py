"""Cancelling a snapshot: a queued build does nothing, a running one stops at its next progress mark
(while PostgreSQL is still streaming rows) and removes what it wrote, a cancel that comes after the
last mark still wins, and ready or failed snapshots cannot be cancelled. Through the service, the
API (roles, audit) and the Datasets page."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.db import connection

from annotations.errors import InvalidInput, NotFound
from annotations.exports import service
from annotations.exports.service import build_snapshot, cancel_snapshot, create_snapshot, snapshot_root
from annotations.models import AuditEntry, DatasetSnapshot, Role

from tests.factories import ProjectFactory

from .helpers import comparison, demonstration


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")


def labelled(project, n=12):
    for i in range(n):
        demonstration(project, [{"role": "user", "content": f"Question {i}?"}], [f"Answer {i}."])
        comparison(project, [{"role": "user", "content": f"Pick {i}"}], ["A", "B", "C"], [[[0], [1], [2]]])


def left_on_disk(snapshot_id: int) -> list[str]:
    root = snapshot_root()
    return sorted(p.name for p in root.iterdir() if str(snapshot_id) in p.name) if root.exists() else []


@pytest.mark.django_db
def test_a_cancelled_pending_snapshot_never_builds(project):
    labelled(project, 2)
    snapshot = create_snapshot(project=project, near_duplicates=False)
    cancelled = cancel_snapshot(snapshot_id=snapshot.pk, project=project, actor=project.created_by)
    assert cancelled.status == "cancelled" and cancelled.error == "cancelled" and cancelled.finished_at
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SNAPSHOT_CANCELLED, target=f"snapshot {snapshot.pk}",
                                     actor=project.created_by).count() == 1
    assert cancel_snapshot(snapshot_id=snapshot.pk, project=project).status == "cancelled"  # twice: no-op
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SNAPSHOT_CANCELLED).count() == 1
    assert build_snapshot(snapshot_id=snapshot.pk).status == "cancelled"  # the queued job does nothing
    assert left_on_disk(snapshot.pk) == []


@pytest.mark.django_db
def test_ready_failed_and_unknown_snapshots_cannot_be_cancelled(project):
    other_project = ProjectFactory()
    labelled(project, 2)
    ready = build_snapshot(snapshot_id=create_snapshot(project=project, near_duplicates=False).pk)
    assert ready.status == "ready"
    with pytest.raises(InvalidInput, match="is ready"):
        cancel_snapshot(snapshot_id=ready.pk, project=project)
    failed = create_snapshot(project=project)
    DatasetSnapshot.objects.filter(pk=failed.pk).update(status="failed", error="boom")
    with pytest.raises(InvalidInput, match="is failed"):
        cancel_snapshot(snapshot_id=failed.pk, project=project)
    # a failed one is still built again when its job runs again (Celery's retry after a lost database)
    assert build_snapshot(snapshot_id=failed.pk).status == "ready"
    pending = create_snapshot(project=project)
    with pytest.raises(NotFound):
        cancel_snapshot(snapshot_id=pending.pk, project=other_project)
    assert DatasetSnapshot.objects.get(pk=ready.pk).status == "ready"
    assert DatasetSnapshot.objects.get(pk=pending.pk).status == "pending"
    assert sorted(Path(ready.path).iterdir())  # the ready one's files are untouched


@pytest.mark.django_db(transaction=True)
def test_a_running_build_stops_at_its_next_progress_mark_and_leaves_nothing(project, monkeypatch):
    """The cancel comes from another connection (the page or the API) while the build streams: the
    build stops mid-stream, removes its folder, and its connection is fine afterwards."""
    labelled(project)
    monkeypatch.setattr(service, "PROGRESS_EVERY", 4)
    monkeypatch.setattr(service, "CHUNK", 8)  # several batches each: the stream is cut mid-way
    snapshot = create_snapshot(project=project, near_duplicates=False)
    marks = []

    def on_progress(records, progress):
        marks.append(records)
        if len(marks) == 1:  # the first mark: cancel from a connection of its own, as a request would
            worker = threading.Thread(target=lambda: (cancel_snapshot(snapshot_id=snapshot.pk),
                                                      connection.close()))
            worker.start()
            worker.join()

    result = build_snapshot(snapshot_id=snapshot.pk, on_progress=on_progress)
    assert result.status == "cancelled" and result.files == {} and not result.path
    assert len(marks) == 1 and marks[0] < 2 * 12  # stopped at the next mark, long before the 24 records
    assert left_on_disk(snapshot.pk) == []
    with connection.cursor() as cursor:  # the export's connection took the cut stream in its stride
        cursor.execute("SELECT count(*) FROM annotations_datasetsnapshot WHERE id = %s", [snapshot.pk])
        assert cursor.fetchone() == (1,)
    # and a new snapshot of the same data builds in full
    again = build_snapshot(snapshot_id=create_snapshot(project=project, near_duplicates=False).pk)
    assert again.status == "ready" and again.records_done == 24


@pytest.mark.django_db
def test_a_cancel_after_the_last_mark_still_wins(project, monkeypatch):
    labelled(project, 2)
    snapshot = create_snapshot(project=project, near_duplicates=False)

    def screen_then_cancel(snap):  # the last step before ready: the data scan
        cancel_snapshot(snapshot_id=snap.pk)
        return {"status": "off"}

    monkeypatch.setattr(service, "_screen", screen_then_cancel)
    result = build_snapshot(snapshot_id=snapshot.pk)
    assert result.status == "cancelled" and not result.content_sha256 and result.files == {}
    assert left_on_disk(snapshot.pk) == []


@pytest.mark.django_db
def test_the_api_cancels_for_exporters_only(project, api, member):
    labelled(project, 1)
    snapshot = create_snapshot(project=project)
    url = f"/api/projects/{project.pk}/snapshots/{snapshot.pk}/cancel/"
    assert api(member(Role.ANNOTATOR)).post(url).status_code == 403
    assert api(member(Role.REVIEWER)).post(url).status_code == 403
    assert DatasetSnapshot.objects.get(pk=snapshot.pk).status == "pending"
    engineer = member(Role.ENGINEER)
    response = api(engineer).post(url)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert AuditEntry.objects.get(action=AuditEntry.Action.SNAPSHOT_CANCELLED).actor == engineer
    elsewhere = ProjectFactory()  # an engineer there cannot reach this project's snapshot
    outsider = member(Role.ENGINEER, project_=elsewhere)
    assert api(outsider).post(f"/api/projects/{elsewhere.pk}/snapshots/{snapshot.pk}/cancel/").status_code == 404
    assert api(outsider).post(url).status_code in (403, 404)
    ready = build_snapshot(snapshot_id=create_snapshot(project=project, near_duplicates=False).pk)
    refused = api(engineer).post(f"/api/projects/{project.pk}/snapshots/{ready.pk}/cancel/")
    assert refused.status_code == 400 and "ready" in refused.content.decode()


@pytest.mark.django_db
def test_the_datasets_page_cancels_an_active_snapshot(client, project, member):
    labelled(project, 1)
    snapshot = create_snapshot(project=project)
    engineer = member(Role.ENGINEER)
    client.force_login(engineer)
    url = f"/projects/{project.pk}/datasets/"
    assert f'aria-label="Cancel snapshot {snapshot.pk}"' in client.get(url).content.decode()
    response = client.post(url, {"action": "cancel_snapshot", "snapshot": str(snapshot.pk)}, follow=True)
    assert DatasetSnapshot.objects.get(pk=snapshot.pk).status == "cancelled"
    page = response.content.decode()
    assert f"Snapshot {snapshot.pk} cancelled." in page and f'aria-label="Cancel snapshot {snapshot.pk}"' not in page
    response = client.post(url, {"action": "cancel_snapshot", "snapshot": "x<script>"}, follow=True)
    assert "No snapshot 0." in response.content.decode() and "<script>" not in response.content.decode()
