"""The audit log: every admin action writes one entry through its real entry point (API or page),
in the action's transaction; entries are append-only in the model and in PostgreSQL; project
admins read their project's entries and nobody else's."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, connection, transaction

from annotations.exports.service import build_snapshot, create_snapshot
from annotations.models import AuditEntry, ModelVersion, Role
from annotations.services import audit
from tests.annotations.exports.helpers import comparison, demonstration
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db
A = AuditEntry.Action


def entries(**filters):
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def only(action, **filters) -> AuditEntry:
    found = entries(action=action, **filters)
    assert len(found) == 1, (action, found)
    return found[0]


@pytest.fixture
def ready_snapshot(project, settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")
    demonstration(project, [{"role": "user", "content": "Hi"}], ["Hello."])
    comparison(project, [{"role": "user", "content": "Pick"}], ["A", "B"], [[[0], [1]]])
    return build_snapshot(snapshot_id=create_snapshot(project=project, eval_fraction=0, near_duplicates=False).pk)


def test_project_creation_and_settings_change(api, project, admin_user):
    boss = UserFactory(is_staff=True)
    created = api(boss).post("/api/projects/", {"name": "Audited"}, format="json").json()
    entry = only(A.PROJECT_CREATED, project_id=created["id"])
    assert (entry.actor_id, entry.actor_name, entry.details) == (boss.pk, boss.username, {"name": "Audited"})

    response = api(admin_user).patch(f"/api/projects/{project.pk}/", {"overlap": 3, "pending_cap": 3}, format="json")
    assert response.status_code == 200
    entry = only(A.PROJECT_SETTINGS, project=project)
    assert entry.actor == admin_user and entry.target == f"project {project.pk}"
    assert entry.details == {"overlap": [1, 3]}  # pending_cap did not change, so it is not logged
    # A refused change (validation) leaves nothing.
    assert api(admin_user).patch(f"/api/projects/{project.pk}/", {"overlap": 0}, format="json").status_code == 400
    assert len(entries(action=A.PROJECT_SETTINGS)) == 1


def test_member_added_role_changed_removed_and_a_refused_change_is_not_logged(api, project, admin_user):
    newcomer = UserFactory()
    client = api(admin_user)
    base = f"/api/projects/{project.pk}/members/"
    assert client.post(base, {"username": newcomer.username, "role": "reviewer"}, format="json").status_code == 201
    assert client.patch(f"{base}{newcomer.pk}/", {"role": "engineer"}, format="json").status_code == 200
    assert client.delete(f"{base}{newcomer.pk}/").status_code == 204
    logged = [(e.action, e.details["role"]) for e in entries(project=project, target__startswith=f"user {newcomer.pk} ")]
    assert logged == [(A.MEMBER_SET, [None, "reviewer"]), (A.MEMBER_SET, ["reviewer", "engineer"]),
                      (A.MEMBER_REMOVED, ["engineer", None])]
    assert all(e.actor == admin_user for e in entries(project=project, action__startswith="member."))
    # Demoting the last admin is refused, and the transaction takes the entry with it.
    before = AuditEntry.objects.count()
    assert client.patch(f"{base}{admin_user.pk}/", {"role": "annotator"}, format="json").status_code == 400
    assert AuditEntry.objects.count() == before


def test_instructions_published(api, project, admin_user):
    response = api(admin_user).post(f"/api/projects/{project.pk}/instructions/", {"body": "# v2", "title": "ties"},
                                    format="json")
    assert response.status_code == 201
    entry = only(A.INSTRUCTIONS_PUBLISHED, project=project, target="instructions v2")
    assert entry.actor == admin_user and entry.details["title"] == "ties" and entry.details["chars"] == 4


def test_import_started_keeps_the_file_name_only_as_a_label(api, project, admin_user, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    upload = SimpleUploadedFile('../../"><svg onload=alert(1)>.jsonl', b'{"prompt": "Hi"}\n')
    response = api(admin_user).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 202
    entry = only(A.IMPORT_STARTED, project=project)
    assert entry.target == f"import {response.json()['id']}"
    assert entry.details == {"file_name": '"><svg onload=alert(1)>.jsonl', "bytes": 17}


def test_snapshot_created_and_export_downloaded(api, project, admin_user, member, ready_snapshot, settings, tmp_path):
    engineer = member(Role.ENGINEER)
    response = api(engineer).post(f"/api/projects/{project.pk}/snapshots/", {"eval_fraction": 0}, format="json")
    assert response.status_code == 202
    entry = only(A.SNAPSHOT_CREATED, project=project, actor=engineer)
    assert entry.target == f"snapshot {response.json()['id']}" and entry.details["formats"] == ["sft", "dpo"]

    url = f"/api/projects/{project.pk}/snapshots/{ready_snapshot.pk}/download/"
    assert api(engineer).get(url, {"file": "sft.train.jsonl"}).status_code == 200
    entry = only(A.EXPORT_DOWNLOADED, project=project)
    assert entry.actor == engineer and entry.details == {
        "file": "sft.train.jsonl", "sha256": ready_snapshot.files["sft.train.jsonl"]["sha256"]}
    # A refused download (a name the snapshot does not list) is not a download.
    assert api(engineer).get(url, {"file": "../../etc/passwd"}).status_code == 400
    assert len(entries(action=A.EXPORT_DOWNLOADED)) == 1


def test_finetune_started(api, project, admin_user, ready_snapshot):
    ModelVersion.objects.create(name="base-for-audit")
    response = api(admin_user).post(f"/api/projects/{project.pk}/finetunes/",
                                    {"snapshot": ready_snapshot.pk, "method": "sft", "base_model": "base-for-audit",
                                     "params": {"max_steps": 2}}, format="json")
    assert response.status_code == 202, response.content
    entry = only(A.FINETUNE_STARTED, project=project)
    assert entry.actor == admin_user and entry.target == f"finetune {response.json()['id']}"
    assert entry.details["snapshot"] == ready_snapshot.pk and entry.details["params"]["max_steps"] == 2


def test_finetune_cancelled_and_retried(api, project, admin_user, member, ready_snapshot):
    from models_service.models import FinetuneJob

    engineer = member(Role.ENGINEER)
    base = ModelVersion.objects.create(name="base-for-audit")
    job = FinetuneJob.objects.create(project=project, snapshot=ready_snapshot, method="sft", base_model=base,
                                     status="running", step=3)
    url = f"/api/projects/{project.pk}/finetunes/{job.pk}/"
    assert api(engineer).post(url + "cancel/").json()["status"] == "cancelled"
    assert api(engineer).post(url + "cancel/").status_code == 200  # cancelling again changes nothing
    entry = only(A.FINETUNE_CANCELLED, project=project)
    assert entry.actor == engineer and entry.target == f"finetune {job.pk}" and entry.details == {"step": 3}
    assert api(admin_user).post(url + "retry/").json()["status"] == "pending"
    assert api(admin_user).post(url + "retry/").status_code == 400  # a pending job is not retried
    entry = only(A.FINETUNE_RETRIED, project=project)
    assert entry.actor == admin_user and entry.target == f"finetune {job.pk}"


def test_token_created_once_and_revoked(api, annotator):
    for _ in range(2):  # asking again returns the same token and logs nothing new
        response = api().post("/api/auth/token/", {"username": annotator.username, "password": "pw-for-tests-only"},
                              REMOTE_ADDR="203.0.113.9")
        assert response.status_code == 200
    entry = only(A.TOKEN_CREATED, actor=annotator)
    assert entry.project_id is None and entry.details == {"ip": "203.0.113.9"}

    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.delete("/api/auth/token/").status_code == 204
    only(A.TOKEN_REVOKED, actor=annotator)
    assert client.get("/api/projects/").status_code == 401  # the token is gone
    assert api().delete("/api/auth/token/").status_code in (401, 403)


def test_page_actions_are_audited_too(client, project, admin_user, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    newcomer = UserFactory()
    client.force_login(admin_user)
    page = f"/projects/{project.pk}/settings/"
    client.post(page, {"action": "add-member", "username": newcomer.username, "role": "annotator"})
    client.post(page, {"action": "set-role", "user_id": newcomer.pk, "role": "reviewer"})
    client.post(page, {"action": "remove-member", "user_id": newcomer.pk})
    client.post(f"/projects/{project.pk}/instructions/", {"action": "publish", "body": "# From the page"})
    client.post(f"/projects/{project.pk}/imports/", {"file": SimpleUploadedFile("p.jsonl", b'{"prompt": "x"}\n'),
                                                     "kind": "demonstration"})
    got = [e.action for e in entries(project=project, actor=admin_user)]
    assert got[-5:] == [A.MEMBER_SET, A.MEMBER_SET, A.MEMBER_REMOVED, A.INSTRUCTIONS_PUBLISHED, A.IMPORT_STARTED]


def test_entries_are_append_only_in_the_model_and_in_postgresql(project):
    entry = AuditEntry.objects.filter(project=project).first()
    assert entry is not None  # the factory published v1
    entry.target = "rewritten"
    with pytest.raises(Exception, match="append-only"):
        entry.save()
    with pytest.raises(Exception, match="append-only"):
        entry.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()  # a queryset delete reaches PostgreSQL
    for sql in ("UPDATE annotations_auditentry SET target = 'x' WHERE id = %s",
                "DELETE FROM annotations_auditentry WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).target == "instructions v1"


@pytest.mark.django_db(transaction=True)
def test_record_refuses_to_write_outside_a_transaction():
    project = ProjectFactory()  # autocommit here: no test-wide transaction around us
    with pytest.raises(audit.AuditOutsideTransaction):
        audit.record(action=A.PROJECT_SETTINGS, project=project)
    with transaction.atomic():
        audit.record(action=A.PROJECT_SETTINGS, project=project)
    with pytest.raises(ValueError), transaction.atomic():
        audit.record(action="made.up", project=project)


def test_admins_read_their_projects_entries_and_nobody_elses(api, client, project, admin_user, member):
    other = ProjectFactory()
    api(admin_user).patch(f"/api/projects/{project.pk}/", {"name": "<script>alert(1)</script>"}, format="json")
    api(other.created_by).patch(f"/api/projects/{other.pk}/", {"name": "Other team secret"}, format="json")
    response = api(admin_user).get(f"/api/projects/{project.pk}/audit/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [r["action"] for r in rows] == [A.PROJECT_SETTINGS, A.INSTRUCTIONS_PUBLISHED]  # newest first
    assert "Other team secret" not in response.content.decode()
    filtered = api(admin_user).get(f"/api/projects/{project.pk}/audit/", {"action": A.INSTRUCTIONS_PUBLISHED})
    assert [r["action"] for r in filtered.json()["results"]] == [A.INSTRUCTIONS_PUBLISHED]
    assert api(admin_user).get(f"/api/projects/{project.pk}/audit/", {"action": "x"}).status_code == 400
    assert api(admin_user).get(f"/api/projects/{project.pk}/audit/", {"actor__password": "x"}).status_code == 400
    for role in (Role.REVIEWER, Role.ANNOTATOR, Role.ENGINEER):
        assert api(member(role)).get(f"/api/projects/{project.pk}/audit/").status_code == 403
    assert api(other.created_by).get(f"/api/projects/{project.pk}/audit/").status_code == 404

    client.force_login(admin_user)
    body = client.get(f"/projects/{project.pk}/audit/").content.decode()
    assert body.count('<tr data-action="') == 2 and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert" not in body and "Other team secret" not in body
