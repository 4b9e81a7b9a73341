import io
import json

import pytest
from django.urls import reverse

from annotations.models import ImportBatch, Lease, Membership, ModelVersion, Role, Submission, Task
from tests.factories import ReplyFactory, TaskFactory, UserFactory, comparison_task

pytestmark = pytest.mark.django_db


def url(name, **kw):
    return reverse(name, kwargs=kw)


def test_token_auth_roundtrip(api, annotator, project):
    response = api().post(url("api-token"), {"username": annotator.username, "password": "pw-for-tests-only"})
    assert response.status_code == 200
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.data['token']}")
    assert client.get(url("project-list")).json()[0]["id"] == project.pk
    assert api().get(url("project-list")).status_code in (401, 403)


def test_only_staff_create_projects_and_creator_becomes_admin(api, annotator):
    assert api(annotator).post(url("project-list"), {"name": "Mine"}, format="json").status_code == 403
    boss = UserFactory(is_staff=True)
    response = api(boss).post(url("project-list"), {"name": "New", "overlap": 2}, format="json")
    assert response.status_code == 201 and response.json()["my_role"] == "admin"
    assert Membership.objects.get(project_id=response.json()["id"], user=boss).role == Role.ADMIN


def test_settings_are_validated(api, admin_user, project):
    r = api(admin_user).patch(url("project-detail", project_id=project.pk), {"overlap": 0}, format="json")
    assert r.status_code == 400
    r = api(admin_user).patch(url("project-detail", project_id=project.pk),
                              {"overlap": 3, "comparison_k": 5, "lease_seconds": 600}, format="json")
    assert r.status_code == 200 and (r.json()["overlap"], r.json()["comparison_k"]) == (3, 5)


def test_members_add_change_and_last_admin_guard(api, admin_user, project):
    newcomer = UserFactory()
    client = api(admin_user)
    r = client.post(url("member-list", project_id=project.pk), {"username": newcomer.username, "role": "reviewer"},
                    format="json")
    assert r.status_code == 201
    r = client.patch(url("member-detail", project_id=project.pk, user_id=newcomer.pk), {"role": "engineer"},
                     format="json")
    assert r.json()["role"] == "engineer"
    r = client.patch(url("member-detail", project_id=project.pk, user_id=admin_user.pk), {"role": "annotator"},
                     format="json")
    assert r.status_code == 400 and "at least one admin" in r.json()["detail"]
    assert client.post(url("member-list", project_id=project.pk), {"username": "ghost", "role": "annotator"},
                       format="json").status_code == 400


def test_instructions_publish_and_list(api, admin_user, annotator, project):
    r = api(admin_user).post(url("instruction-list", project_id=project.pk), {"body": "# v2", "title": "ties"},
                             format="json")
    assert r.status_code == 201 and r.json()["number"] == 2
    listed = api(annotator).get(url("instruction-list", project_id=project.pk)).json()
    assert [v["number"] for v in listed] == [2, 1]
    assert api(annotator).get(url("instruction-detail", project_id=project.pk, number=1)).json()["number"] == 1
    assert api(annotator).post(url("instruction-list", project_id=project.pk), {"body": "x"},
                               format="json").status_code == 403


def test_demonstration_flow_over_http(api, annotator, project):
    task = TaskFactory(project=project)
    draft = ReplyFactory(task=task, source="model", content="Draft answer",
                         model_version=ModelVersion.objects.create(name="m"))
    client = api(annotator)
    lease = client.post(url("next-task", project_id=project.pk)).json()
    assert lease["task"]["conversation"] == task.conversation
    assert [d["id"] for d in lease["task"]["drafts"]] == [draft.pk] and lease["task"]["replies"] == []
    assert lease["instruction_version"] == 1
    body = {"idempotency_key": "k-1", "text": "Draft answer, fixed.", "draft_ids": [draft.pk], "time_spent_ms": 900}
    first = client.post(url("lease-submit", project_id=project.pk, lease_id=lease["id"]), body, format="json")
    again = client.post(url("lease-submit", project_id=project.pk, lease_id=lease["id"]), body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and Submission.objects.count() == 1
    assert first.json()["text"] == "Draft answer, fixed." and first.json()["draft_sources"][0]["edit_distance"] == len(", fixed.")
    stats = client.get(url("my-stats", project_id=project.pk)).json()
    assert stats["total"] == 1 and stats["median_time_ms"] == 900


def test_comparison_is_blind_and_ranking_with_tie_is_stored(api, annotator, project):
    task = comparison_task(project, k=3)
    client = api(annotator)
    lease = client.post(url("next-task", project_id=project.pk)).json()
    replies = lease["task"]["replies"]
    assert set(replies[0]) == {"id", "content"}  # no source, no model name
    a, b, c = (r["id"] for r in replies)
    r = client.post(url("lease-submit", project_id=project.pk, lease_id=lease["id"]),
                    {"idempotency_key": "r1", "ranking": [[c], [a, b]], "ratings": {str(c): {"helpful": 6}},
                     "flags": {str(a): ["unsafe"]}}, format="json")
    assert r.status_code == 201, r.json()
    assert Submission.objects.get().ranking == [[c], sorted([a, b])]
    assert Task.objects.get(pk=task.pk).state == Task.State.DONE


def test_errors_are_domain_words(api, annotator, project):
    client = api(annotator)
    r = client.post(url("next-task", project_id=project.pk))
    assert (r.status_code, r.json()["error"]) == (404, "no_task_available")
    comparison_task(project, k=2)
    lease = client.post(url("next-task", project_id=project.pk)).json()
    r = client.post(url("lease-submit", project_id=project.pk, lease_id=lease["id"]),
                    {"idempotency_key": "x", "ranking": [[1, 2]]}, format="json")
    assert r.status_code == 400 and r.json()["error"] == "invalid" and "ranking" in r.json()["detail"]
    r = client.post(url("lease-submit", project_id=project.pk, lease_id=lease["id"]), {"ranking": "x"},
                    format="json")
    assert r.status_code == 400 and "idempotency_key" in r.json()


def test_skip_and_release_and_my_leases(api, annotator, project):
    TaskFactory.create_batch(2, project=project)
    client = api(annotator)
    first = client.post(url("next-task", project_id=project.pk)).json()
    second = client.post(url("next-task", project_id=project.pk)).json()
    assert [x["id"] for x in client.get(url("lease-list", project_id=project.pk)).json()] == [first["id"], second["id"]]
    assert client.post(url("lease-skip", project_id=project.pk, lease_id=first["id"]), {}, format="json").status_code == 400
    r = client.post(url("lease-skip", project_id=project.pk, lease_id=first["id"]), {"reason": "unclear"}, format="json")
    assert r.json()["status"] == "skipped"
    r = client.post(url("lease-release", project_id=project.pk, lease_id=second["id"]), {}, format="json")
    assert r.json()["status"] == "released"
    r = client.post(url("lease-release", project_id=project.pk, lease_id=second["id"]), {}, format="json")
    assert (r.status_code, r.json()["error"]) == (409, "lease_not_active")
    assert Lease.objects.get(pk=first["id"]).reason == "unclear"


def test_cap_reached_answers_409(api, annotator, project, admin_user):
    api(admin_user).patch(url("project-detail", project_id=project.pk), {"pending_cap": 1}, format="json")
    TaskFactory.create_batch(2, project=project)
    client = api(annotator)
    client.post(url("next-task", project_id=project.pk))
    r = client.post(url("next-task", project_id=project.pk))
    assert (r.status_code, r.json()["error"], r.json()["open_leases"]) == (409, "lease_cap_reached", 1)


def test_task_list_filters_counts_and_cursor_pagination(api, admin_user, project):
    TaskFactory.create_batch(5, project=project)
    comparison_task(project, k=2)
    client = api(admin_user)
    page = client.get(url("task-list", project_id=project.pk), {"page_size": 2}).json()
    ids = [t["id"] for t in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        ids += [t["id"] for t in page["results"]]
    assert ids == sorted(Task.objects.filter(project=project).values_list("id", flat=True))
    desc = client.get(url("task-list", project_id=project.pk), {"ordering": "-id", "kind": "comparison"}).json()
    assert [t["kind"] for t in desc["results"]] == ["comparison"]
    counts = client.get(url("task-counts", project_id=project.pk)).json()
    assert counts["total"] == 6 and counts["by_kind"] == {"demonstration": 5, "comparison": 1}
    task_id = ids[0]
    assert client.get(url("task-detail", project_id=project.pk, task_id=task_id)).json()["id"] == task_id


@pytest.mark.parametrize("params", [{"ordering": "created_by__password"}, {"ordering": "project__created_by"},
                                    {"created_by__password__startswith": "a"}, {"import_batch": "1 OR 1=1"}])
def test_ordering_and_filters_are_allow_listed(api, admin_user, project, params):
    TaskFactory(project=project)
    assert api(admin_user).get(url("task-list", project_id=project.pk), params).status_code == 400


def test_import_upload_is_queued_and_validated(api, admin_user, project):
    upload = io.BytesIO(b'{"prompt": "hello"}\n')
    upload.name = "../../etc/passwd.jsonl"
    r = api(admin_user).post(url("import-list", project_id=project.pk), {"file": upload}, format="multipart")
    assert r.status_code == 202, r.json()
    batch = ImportBatch.objects.get(pk=r.json()["id"])
    assert batch.file_name == "passwd.jsonl" and batch.file.startswith("imports/") and ".." not in batch.file
    bad = io.BytesIO(b"x")
    bad.name = "data.txt"
    assert api(admin_user).post(url("import-list", project_id=project.pk), {"file": bad},
                                format="multipart").status_code == 400


def test_annotator_sees_only_own_submissions(api, member, project):
    a, b = member(), member()
    TaskFactory.create_batch(2, project=project)
    for user in (a, b):
        client = api(user)
        lease = client.post(url("next-task", project_id=project.pk)).json()
        client.post(url("lease-submit", project_id=project.pk, lease_id=lease["id"]),
                    {"idempotency_key": "k", "text": f"by {user.username}"}, format="json")
    mine = api(a).get(url("submission-list", project_id=project.pk)).json()["results"]
    assert [s["annotator"] for s in mine] == [a.username]
    other = Submission.objects.get(annotator=b)
    assert api(a).get(url("submission-detail", project_id=project.pk, submission_id=other.pk)).status_code == 404
    reviewer = member(Role.REVIEWER)
    assert len(api(reviewer).get(url("submission-list", project_id=project.pk)).json()["results"]) == 2


def test_openapi_schema_and_docs_page(api, annotator, client):
    r = api(annotator).get("/api/schema/", {"format": "json"})
    assert r.status_code == 200
    paths = json.loads(r.content)["paths"]
    assert "/api/projects/{project_id}/next/" in paths
    client.force_login(annotator)
    assert client.get("/api/docs/").status_code == 200
