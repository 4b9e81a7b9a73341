"""Every page of the front end: who may see it (anonymous -> login, outsider -> 404, wrong role ->
403, someone else's lease -> 404) and what the forms do. No browser needed."""
from __future__ import annotations

from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotations.models import DataFinding, DataScan, ImportBatch, InstructionVersion, Lease, Membership, Project, Role
from annotations.services import leases, submissions
from annotations.services.instructions import publish_instructions
from frontend.models import InstructionAcknowledgement

from ..factories import ProjectFactory, TaskFactory, UserFactory
from .conftest import demonstration_task, eval_run_with_battles

pytestmark = pytest.mark.django_db

ALL = ("admin", "reviewer", "annotator", "engineer")
# page name -> (method, roles that may use it)
PAGES = {
    "start": ("post", {"admin", "reviewer", "annotator"}),
    "label": ("get", {"admin", "reviewer", "annotator"}),
    "instructions-ack": ("post", set(ALL)),
    "submissions": ("get", {"admin", "reviewer"}),
    "instructions": ("get", {"admin"}),
    "project-settings": ("get", {"admin"}),
    "imports": ("get", {"admin", "engineer"}),
    "import-detail-page": ("get", {"admin", "engineer"}),
    "review": ("get", {"admin", "reviewer"}),
    "model-jobs-page": ("get", {"admin", "reviewer", "engineer"}),
    "arena": ("get", {"admin", "reviewer", "annotator"}),
    "arena-next": ("post", {"admin", "reviewer", "annotator"}),
    "arena-battle": ("get", {"admin", "reviewer", "annotator"}),
    "leaderboard-page": ("get", {"admin", "reviewer", "engineer"}),
    "screening": ("get", {"admin", "reviewer", "engineer"}),
    "finding-exclude": ("post", {"admin"}),
    "datasets": ("get", {"admin", "engineer"}),
    "datasets-status": ("get", {"admin", "engineer"}),
}


@pytest.fixture
def world(project):
    """One project with a member of every role (the admin is its creator), a task and an import."""
    users = {"admin": project.created_by}
    for role in ("reviewer", "annotator", "engineer"):
        users[role] = UserFactory()
        Membership.objects.create(project=project, user=users[role], role=role)
    TaskFactory.create_batch(3, project=project)
    batch = ImportBatch.objects.create(project=project, file_name="a.jsonl", format="jsonl", created_by=users["admin"])
    eval_run_with_battles(project, n=3)
    scan = DataScan.objects.create(project=project, import_batch=batch, status="done")
    finding = DataFinding.objects.create(scan=scan, project=project, kind="hidden_text", title="t", score=1)
    return {"project": project, "users": users, "batch": batch, "finding": finding}


def url_for(name, world, user):
    p = world["project"].pk
    if name == "label":
        lease = Lease.objects.filter(annotator=user, status="active").first() or leases.lease_next_task(
            project=world["project"], annotator=user)
        return f"/projects/{p}/label/{lease.pk}/"
    if name == "import-detail-page":
        return f"/projects/{p}/imports/{world['batch'].pk}/"
    if name == "arena-battle":
        from models_service.evaluation.voting import next_battle

        return f"/projects/{p}/arena/{next_battle(project=world['project'], voter=user).battle_id}/"
    if name == "finding-exclude":
        return f"/projects/{p}/screening/findings/{world['finding'].pk}/exclude/"
    path = {"start": "start", "instructions-ack": "instructions/ack", "submissions": "submissions",
            "instructions": "instructions", "project-settings": "settings", "imports": "imports",
            "review": "review", "model-jobs-page": "jobs", "arena": "arena", "arena-next": "arena/next",
            "leaderboard-page": "leaderboard", "screening": "screening", "datasets": "datasets",
            "datasets-status": "datasets/status"}[name]
    return f"/projects/{p}/{path}/"


def call(client, method, url, data=None):
    return getattr(client, method)(url, data or {})


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("role", ALL)
def test_role_matrix(client, world, name, role):
    method, allowed = PAGES[name]
    user = world["users"][role]
    label_owner = world["users"]["annotator"]
    url = url_for(name, world, user if role in PAGES["label"][1] else label_owner)
    client.force_login(user)
    data = {"version": "1"} if name == "instructions-ack" else None
    response = call(client, method, url, data)
    if role in allowed:
        assert response.status_code in (200, 302), (name, role, response.status_code)
        if response.status_code == 302:
            assert not response.url.startswith("/accounts/login")
    else:
        assert response.status_code == 403, (name, role, response.status_code)


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_is_sent_to_login(client, world, name):
    method, _ = PAGES[name]
    response = call(client, method, url_for(name, world, world["users"]["annotator"]))
    assert response.status_code == 302 and response.url.startswith("/accounts/login/?next=")


@pytest.mark.parametrize("name", PAGES)
def test_outsider_gets_404(client, world, name):
    method, _ = PAGES[name]
    url = url_for(name, world, world["users"]["annotator"])
    outsider = UserFactory()
    ProjectFactory(created_by=outsider)  # an admin elsewhere
    client.force_login(outsider)
    assert call(client, method, url, {"version": "1"}).status_code == 404


def test_someone_elses_lease_is_404_even_for_an_admin_of_the_project(client, world):
    url = url_for("label", world, world["users"]["annotator"])
    for role in ("admin", "reviewer"):
        client.force_login(world["users"][role])
        assert client.get(url).status_code == 404


def test_import_of_another_project_is_404(client, world):
    other = ProjectFactory()
    batch = ImportBatch.objects.create(project=other, file_name="b.csv", format="csv", created_by=other.created_by)
    client.force_login(world["users"]["admin"])
    assert client.get(f"/projects/{world['project'].pk}/imports/{batch.pk}/").status_code == 404


def test_new_pages_carry_no_inline_script(client, world):
    admin = world["users"]["admin"]
    client.force_login(admin)
    for name in PAGES:
        if PAGES[name][0] != "get":
            continue
        body = client.get(url_for(name, world, admin)).content.decode()
        for chunk in body.split("<script")[1:]:
            assert chunk.split(">")[0].strip().startswith("src="), (name, chunk[:80])
        assert " style=" not in body and "<style" not in body, name


# --- labelling ---------------------------------------------------------------------------------------
def test_start_resumes_my_oldest_open_lease(client, project, annotator):
    TaskFactory.create_batch(3, project=project)
    first = leases.lease_next_task(project=project, annotator=annotator)
    leases.lease_next_task(project=project, annotator=annotator)
    client.force_login(annotator)
    response = client.post(f"/projects/{project.pk}/start/")
    assert response.url == f"/projects/{project.pk}/label/{first.pk}/"
    assert Lease.objects.filter(annotator=annotator).count() == 2


def test_start_with_nothing_to_do_explains_on_home(client, project, annotator):
    client.force_login(annotator)
    response = client.post(f"/projects/{project.pk}/start/", follow=True)
    assert b"No task is waiting for you" in response.content


def test_home_shows_role_stats_and_start_button(client, project, annotator):
    client.force_login(annotator)
    body = client.get("/").content.decode()
    assert project.name in body and "role-annotator" in body and "Start labelling" in body


def test_finished_lease_sends_me_home(client, project, annotator):
    task, (draft, _) = demonstration_task(project)
    lease = leases.lease_next_task(project=project, annotator=annotator)
    submissions.submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k", text="done")
    client.force_login(annotator)
    response = client.get(f"/projects/{project.pk}/label/{lease.pk}/", follow=True)
    assert response.redirect_chain[-1][0] == "/" and b"already submitted" in response.content


def test_expired_lease_still_opens_so_work_is_not_lost(client, project, annotator):
    demonstration_task(project)
    lease = leases.lease_next_task(project=project, annotator=annotator)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.EXPIRED)
    client.force_login(annotator)
    response = client.get(f"/projects/{project.pk}/label/{lease.pk}/")
    assert response.status_code == 200 and b'data-lease-status="expired"' in response.content


def test_demonstration_page_shows_drafts_but_comparison_is_blind(client, project, annotator):
    from .conftest import comparison_task, model_version

    demonstration_task(project, drafts=("Draft text one.",))
    task, replies = comparison_task(project)
    for r in replies:
        r.source, r.model_version = "model", model_version()
        r.save()
    client.force_login(annotator)
    client.post(f"/projects/{project.pk}/start/")
    demo = client.get(client.post(f"/projects/{project.pk}/start/").url).content.decode()
    assert "Draft text one." in demo and 'data-content="Draft text one."' in demo
    comp_lease = leases.lease_next_task(project=project, annotator=annotator)
    comp = client.get(f"/projects/{project.pk}/label/{comp_lease.pk}/").content.decode()
    assert comp.count('class="reply card"') == 4 and "test-model" not in comp and "source" not in comp.lower()


def test_instruction_banner_diff_and_acknowledgement(client, project, annotator):
    demonstration_task(project)
    v1 = project.current_instructions
    InstructionAcknowledgement.objects.create(user=annotator, project=project, version=v1)
    publish_instructions(project=project, body=v1.body + "\nNever invent citations.", published_by=project.created_by,
                         title="Citations")
    lease = leases.lease_next_task(project=project, annotator=annotator)
    client.force_login(annotator)
    url = f"/projects/{project.pk}/label/{lease.pk}/"
    page = client.get(url).content.decode()
    assert "Instructions changed: v2" in page and '<span class="d-add">Never invent citations.</span>' in page
    response = client.post(f"/projects/{project.pk}/instructions/ack/", {"version": "2", "next": url})
    assert response.url == url
    assert InstructionAcknowledgement.objects.get(user=annotator, project=project).version.number == 2
    assert "instructions-banner" not in client.get(url).content.decode()


def test_acknowledge_refuses_offsite_redirect(client, project, annotator):
    client.force_login(annotator)
    response = client.post(f"/projects/{project.pk}/instructions/ack/", {"version": "1", "next": "https://evil.example/"})
    assert response.url == "/"


# --- staff pages ---------------------------------------------------------------------------------------
def test_submission_list_shows_work_for_reviewers(client, project, annotator, member):
    task, (draft, _) = demonstration_task(project)
    lease = leases.lease_next_task(project=project, annotator=annotator)
    submissions.submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k",
                                     text="Final <b>answer</b>", draft_ids=[draft.pk], rationale="because")
    client.force_login(member(Role.REVIEWER))
    body = client.get(f"/projects/{project.pk}/submissions/?kind=demonstration").content.decode()
    assert "Final &lt;b&gt;answer&lt;/b&gt;" in body and annotator.username in body and "because" in body
    assert "edit distance" in body


def test_instructions_preview_then_publish(client, project, admin_user):
    client.force_login(admin_user)
    url = f"/projects/{project.pk}/instructions/"
    preview = client.post(url, {"body": "# New\n\n<script>x</script>", "title": "t", "action": "preview"})
    assert preview.status_code == 200 and "<h1>New</h1>" in preview.content.decode()
    assert "<script>x" not in preview.content.decode()
    assert InstructionVersion.objects.filter(project=project).count() == 1
    response = client.post(url, {"body": "# New", "title": "Shorter", "action": "publish"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.current_instructions.number == 2 and project.current_instructions.title == "Shorter"
    history = client.get(url + "?diff=2").content.decode()
    assert '<span class="d-add"># New</span>' in history


def test_settings_form_updates_through_the_service(client, project, admin_user):
    client.force_login(admin_user)
    url = f"/projects/{project.pk}/settings/"
    data = {"action": "settings", "name": "Renamed", "description": "", "overlap": 2, "comparison_k": 3,
            "pending_cap": 5, "lease_seconds": 600, "drafts_n": 2, "gold_rate": 0.1, "review_rate": 0.25,
            "review_new_until": 5, "on_reject": "reassign"}
    assert client.post(url, data).status_code == 302
    project.refresh_from_db()
    assert (project.name, project.overlap, project.comparison_k, project.lease_seconds) == ("Renamed", 2, 3, 600)
    assert (project.gold_rate, project.review_rate, project.review_new_until, project.on_reject) == (
        0.1, 0.25, 5, "reassign")
    bad = client.post(url, {**data, "lease_seconds": 5})
    assert bad.status_code == 200 and b"field-error" in bad.content
    assert Project.objects.get(pk=project.pk).lease_seconds == 600


def test_members_add_change_and_remove(client, project, admin_user):
    client.force_login(admin_user)
    url = f"/projects/{project.pk}/settings/"
    newcomer = UserFactory()
    client.post(url, {"action": "add-member", "username": newcomer.username, "role": "annotator"})
    assert Membership.objects.get(project=project, user=newcomer).role == "annotator"
    client.post(url, {"action": "set-role", "user_id": newcomer.pk, "role": "reviewer"})
    assert Membership.objects.get(project=project, user=newcomer).role == "reviewer"
    client.post(url, {"action": "remove-member", "user_id": newcomer.pk})
    assert not Membership.objects.filter(project=project, user=newcomer).exists()
    unknown = client.post(url, {"action": "add-member", "username": "nobody-here", "role": "annotator"})
    assert b"No active user" in unknown.content
    last_admin = client.post(url, {"action": "remove-member", "user_id": admin_user.pk}, follow=True)
    assert b"at least one admin" in last_admin.content
    assert Membership.objects.filter(project=project, user=admin_user, role="admin").exists()


def test_import_upload_creates_a_batch_and_enqueues_it_on_commit(client, project, admin_user,
                                                                   django_capture_on_commit_callbacks):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "Hi?"}\n', content_type="application/x-ndjson")
    with mock.patch("annotations.tasks.process_import.delay") as delay, \
            django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{project.pk}/imports/", {"file": upload, "kind": "demonstration"})
    batch = ImportBatch.objects.get(project=project)
    assert response.url == f"/projects/{project.pk}/imports/{batch.pk}/"
    assert (batch.format, batch.file_name, batch.status) == ("jsonl", "prompts.jsonl", "pending")
    delay.assert_called_once_with(batch.pk)
    page = client.get(response.url).content.decode()
    assert "prompts.jsonl" in page and "data-poll-url" in page


def test_import_needs_a_known_format(client, project, admin_user):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("prompts.txt", b"x")
    response = client.post(f"/projects/{project.pk}/imports/", {"file": upload, "kind": "demonstration"})
    assert response.status_code == 200 and b"Cannot tell the format" in response.content
    assert not ImportBatch.objects.exists()


def test_engineer_may_read_imports_but_not_upload(client, project, member):
    engineer = member(Role.ENGINEER)
    client.force_login(engineer)
    url = f"/projects/{project.pk}/imports/"
    assert client.get(url).status_code == 200
    assert client.post(url, {"file": SimpleUploadedFile("a.jsonl", b"{}"), "kind": "demonstration"}).status_code == 403
    assert not ImportBatch.objects.exists()
